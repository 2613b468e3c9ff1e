"""Latency measurement: warm-up -> synchronize -> time N runs -> median, spread and FPS.

FastSegFormer (Cai et al., Computers and Electronics in Agriculture 217, 108604, 2024) reports
inference speed as FPS at batch 1 on a random input after a warm-up, with the GPU synchronised
around the timed runs. `benchmark` is that protocol (the shape of nanoGPT's bench.py), with
every run timed on its own so the spread is visible: the median is the headline figure (robust
to the other processes of a shared machine), the 10th/90th percentiles and min/max show how
noisy the machine was. Before it times, it waits for the helper processes this process has
started (`wait_for_child_processes`): `import openvino` sends a telemetry event from a child
process that lives up to 3 s, and in a process that multiprocessing spawned (each benchmark
row) that child re-imports the whole parent script, torch included, on one of the cores being
timed (docs/benchmarks.md, "The harness checks itself"). `environment` records what the
numbers were measured on. No torch
here (the sorting line times exported models without it); `cuda_sync` lives beside the torch
runtime (utils.deploy.torch_runtime).
"""

from __future__ import annotations

import importlib.metadata
import multiprocessing
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass
class Timing:
    """Per-call latency statistics of one benchmark (milliseconds) and the derived FPS."""

    runs: int
    warmup: int
    batch: int
    median_ms: float
    mean_ms: float
    std_ms: float
    min_ms: float
    max_ms: float
    p10_ms: float
    p90_ms: float
    fps: float  # images per second at the median latency: batch * 1000 / median_ms

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def spread(self) -> str:
        """'median (p10-p90)' in ms, for tables."""
        return f"{self.median_ms:.2f} ({self.p10_ms:.2f}-{self.p90_ms:.2f})"


def summarize(times_s: list[float], batch: int = 1, warmup: int = 0) -> Timing:
    """Statistics of per-run wall times in seconds."""
    if not times_s:
        raise ValueError("summarize needs at least one timed run, got none")
    ms = np.asarray(times_s, dtype=np.float64) * 1e3
    median = float(np.median(ms))
    return Timing(
        runs=len(ms),
        warmup=warmup,
        batch=batch,
        median_ms=median,
        mean_ms=float(ms.mean()),
        std_ms=float(statistics.pstdev(ms.tolist())) if len(ms) > 1 else 0.0,
        min_ms=float(ms.min()),
        max_ms=float(ms.max()),
        p10_ms=float(np.percentile(ms, 10)),
        p90_ms=float(np.percentile(ms, 90)),
        fps=batch * 1e3 / median if median > 0 else float("inf"),
    )


def benchmark(
    fn: Callable[[], Any],
    runs: int = 100,
    warmup: int = 10,
    batch: int = 1,
    sync: Callable[[], None] | None = None,
) -> Timing:
    """Time `fn()`: `warmup` untimed calls, synchronize, then `runs` calls timed one by one.

    First waits for this process's helper processes to end (`wait_for_child_processes`).
    `sync` (e.g. torch.cuda.synchronize) is called after the warm-up and after each timed call,
    inside its timing, so asynchronous GPU work is counted where it happens.
    """
    if runs < 1:
        raise ValueError(f"runs must be >= 1, got {runs}")
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    wait_for_child_processes()
    for _ in range(warmup):
        fn()
    if sync is not None:
        sync()
    times: list[float] = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        if sync is not None:
            sync()
        times.append(time.perf_counter() - t0)
    return summarize(times, batch=batch, warmup=warmup)


def wait_for_child_processes(timeout: float = 10.0) -> list[str]:
    """Wait until this process has no multiprocessing child alive, at most `timeout` seconds;
    return the names of those still alive then.

    Libraries start helpers behind the caller's back: OpenVINO's telemetry sends the event of
    each `import openvino` from a `multiprocessing.Process` that it terminates after 3 s. Under
    the spawn start method (inherited by every process multiprocessing spawns) that helper
    re-imports the parent's main module, so in a benchmark row of speeding.py it spent 1.5-3 s
    of CPU importing torch on one of the two cores the runtime was being timed on, and the
    row's median read up to 1.7x slow. Timing starts after such helpers are gone.
    """
    deadline = time.monotonic() + timeout
    while multiprocessing.active_children() and time.monotonic() < deadline:
        time.sleep(0.05)
    return [p.name for p in multiprocessing.active_children()]


def cpu_name() -> str:
    """The CPU model name (from /proc/cpuinfo on Linux, else platform)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    """The CPU features that decide which kernels run: AVX2, AVX-512 (incl. VNNI/BF16), AMX."""
    wanted = ("avx2", "avx512", "vnni", "amx", "bf16", "fma")
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = line.split(":", 1)[1].split()
                    return sorted(f for f in flags if f.startswith(wanted) or "vnni" in f)
    except OSError:
        pass
    return []


def package_version(name: str) -> str | None:
    """The installed version of a distribution (its -gpu build too), without importing it."""
    for dist in (name, f"{name}-gpu"):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def environment(device: str = "cpu") -> dict[str, Any]:
    """Machine, library versions and thread counts, saved next to every benchmark (torch's
    threads and GPU when the process uses torch)."""
    torch = sys.modules.get("torch")  # imported by the caller, or not needed
    cuda = torch is not None and torch.cuda.is_available()
    info: dict[str, Any] = {
        "cpu": cpu_name(),
        "cpu_flags": cpu_flags(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": package_version("torch"),
        "torch_threads": torch.get_num_threads() if torch is not None else None,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "numpy": np.__version__,
        "device": str(device),
        "cuda_available": cuda,
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
    }
    try:
        info["load_average_1_5_15"] = list(os.getloadavg())
    except OSError:
        info["load_average_1_5_15"] = None
    for name in ("onnxruntime", "onnx", "timm", "openvino", "nncf"):
        info[name] = package_version(name)
    try:
        import onnxruntime

        info["onnxruntime_providers"] = onnxruntime.get_available_providers()
    except ImportError:
        info["onnxruntime_providers"] = []
    return info
