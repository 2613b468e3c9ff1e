"""Interleaved rounds: speed figures that hold on a machine whose speed drifts.

FastSegFormer (Cai et al., Computers and Electronics in Agriculture 217, 108604, 2024) reports
speed as latency / FPS at batch 1. On a shared machine, a cloud VM or a laptop with turbo, the
CPU's speed moves between levels (on this project's 2-core EPYC, about 1.5x apart for seconds
at a time), so one measurement of a row is a draw from whichever level it hit, and the ratio of
two rows measured a minute apart can be off by that much. What pyperf and hyperfine do about it
is what this module holds:

- every row runs once per round, each time in a fresh process (`in_fresh_process`), and the
  rounds are interleaved (A B C, A B C, ...: `schedule`), so a slow spell lands on every row
  alike instead of on one row's whole measurement;
- a row reports the median over rounds of each round's median latency, every round's figure,
  and their spread (`over_rounds`), so a reader sees when a figure is shaky;
- a ratio between two rows (a speed-up) is taken round by round and the median of those kept
  (`ratio_by_round`): two rows of the same round saw the same machine;
- the harness checks itself (`bare_latency`): the same file timed in a process holding nothing
  but numpy and the runtime (utils/deploy/bare_timing.py), in the same round; a row more than
  `BIAS_TOLERANCE` away from it is measuring its own process.

Plain module: imports the standard library and numpy only.
"""

from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

BIAS_TOLERANCE = 0.10  # a row within 10% of the same file timed in a bare process passes
BIAS_CHECKS = {  # which rows get a bare twin (--check-bias); only CPU runtime rows can have one
    "first": "the first batch-1 row of each runtime",
    "all": "every batch-1 ONNX Runtime and OpenVINO row",
    "none": "no row",
}
BARE_SCRIPT = Path(__file__).with_name("bare_timing.py")


def in_fresh_process(fn: Callable[..., Any], *args: Any) -> Any:
    """fn(*args) in a fresh spawned process (no runtime, thread pool or memory inherited)."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def schedule(items: int, rounds: int) -> list[tuple[int, int]]:
    """(round, item) pairs in the order they run: every item once per round, A B C, A B C."""
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    return [(r, i) for r in range(rounds) for i in range(items)]


def over_rounds(latencies_ms: Sequence[float | None]) -> dict[str, Any]:
    """The figures of a row measured once per round (None: the round did not measure it).

    latency_ms: median over rounds of the per-round medians; round_latencies_ms: every round's
    figure in order; round_min_ms / round_max_ms; round_spread_pct: (max - min) / median, in %.
    """
    got = [float(v) for v in latencies_ms if v is not None]
    if not got:
        return {"latency_ms": None, "round_latencies_ms": list(latencies_ms),
                "round_min_ms": None, "round_max_ms": None, "round_spread_pct": None}  # fmt: skip
    median = float(np.median(got))
    return {
        "latency_ms": median,
        "round_latencies_ms": [None if v is None else float(v) for v in latencies_ms],
        "round_min_ms": min(got),
        "round_max_ms": max(got),
        "round_spread_pct": 100.0 * (max(got) - min(got)) / median if median > 0 else 0.0,
    }


def ratio_by_round(
    numerators: Sequence[float | None], denominators: Sequence[float | None]
) -> float | None:
    """Median over rounds of numerators[r] / denominators[r], over the rounds that measured both.

    A speed-up against a baseline is ratio_by_round(baseline, row): each round's pair saw the
    same state of the machine, so the ratio holds even when the rounds' levels differ.
    """
    if len(numerators) != len(denominators):
        raise ValueError(f"{len(numerators)} rounds against {len(denominators)}: not paired")
    ratios = [n / d for n, d in zip(numerators, denominators, strict=True) if n and d and d > 0]
    return float(np.median(ratios)) if ratios else None


def bare_latency(
    runtime: str,
    path: str | Path,
    shape: Sequence[int],
    threads: int = 0,
    runs: int = 100,
    warmup: int = 10,
    precision: str = "f32",
    ort_level: str = "all",
    timeout: float = 600.0,
) -> dict[str, Any]:
    """`path` timed on `runtime` in a bare process (utils/deploy/bare_timing.py, `python -I`).

    Returns its JSON: times_ms (every call), median_ms, loaded (project modules or torch found
    loaded there: none, or the control is not bare). RuntimeError with its stderr on failure.
    """
    spec = {
        "runtime": runtime, "path": str(path), "shape": [int(d) for d in shape],
        "batch": int(shape[0]), "threads": int(threads), "runs": int(runs),
        "warmup": int(warmup), "precision": precision, "ort_level": ort_level,
    }  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-I", str(BARE_SCRIPT), json.dumps(spec)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"bare timing of {path} on {runtime} failed: {tail[0]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bias_verdict(ratio: float | None) -> str:
    """'ok' when a row/bare ratio is within BIAS_TOLERANCE of 1, 'biased' when not, '-' unknown."""
    if ratio is None:
        return "-"
    return "ok" if abs(ratio - 1.0) <= BIAS_TOLERANCE else "biased"


def wants_bias_check(mode: str, runtime: str, checked: set[str]) -> bool:
    """Whether a measured batch-1 row of `runtime` (onnxruntime / openvino) gets a bare twin
    under --check-bias `mode` (BIAS_CHECKS); `checked` holds the runtimes that have one."""
    if mode not in BIAS_CHECKS:
        raise ValueError(f"--check-bias {mode!r}: use one of {', '.join(BIAS_CHECKS)}")
    if mode == "none" or runtime not in ("onnxruntime", "openvino"):
        return False
    if mode == "first" and runtime in checked:
        return False
    checked.add(runtime)
    return True


def bare_median(
    runtime: str, path: str | Path, shape: Sequence[int], log: Callable[[str], None], **settings
) -> float | None:
    """The median latency (ms) of `path` in a bare process (`bare_latency`, with its
    `settings`), or None with the reason logged when that failed or the process was not bare."""
    try:
        got = bare_latency(runtime, path, shape, **settings)
    except (RuntimeError, OSError, ValueError) as e:
        log(f"  bias check failed: {e}")
        return None
    if got["loaded"]:
        log(f"  bias check: the bare process had {got['loaded']} loaded; not bare")
        return None
    log(f"  the same file in a bare {runtime} process: {got['median_ms']:.2f} ms")
    return got["median_ms"]


def bias_fields(
    latencies_ms: Sequence[float | None], bare_ms: Sequence[float | None]
) -> dict[str, Any]:
    """A checked row's bias keys: every round's bare figure, the row / bare ratio round by
    round (`ratio_by_round`) and its verdict (`bias_verdict`)."""
    ratio = ratio_by_round(latencies_ms, bare_ms)
    return {"bare_round_latencies_ms": list(bare_ms), "bias_ratio": ratio,
            "bias_check": bias_verdict(ratio)}  # fmt: skip
