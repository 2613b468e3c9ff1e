"""A bare timing process: one model file on one runtime, in a process that loads nothing else.

FastSegFormer (Cai et al., Computers and Electronics in Agriculture 217, 108604, 2024) is
judged by its speed, so the harness that times it (speeding.py, tools/versus_original.py) must
not be what is measured. This file is the control: it imports only numpy and the runtime (no
torch, nothing of the project; run by path with `python -I`, so the project is not even on its
import path), loads the file with the settings a row used (threads, OpenVINO's latency hint and
inference precision, ONNX Runtime's graph level), and times it with the same protocol as
utils.deploy.timing.benchmark (warm-up, then each call timed on its own). A row whose latency
is more than `utils.deploy.rounds.BIAS_TOLERANCE` away from this one's, in the same round, is
measuring its own process as well as the model.

It deliberately does not go through utils.deploy.runtimes: a control must not share the code it
checks. Input: one JSON object on the command line; output: one JSON object on stdout.

    python -I utils/deploy/bare_timing.py '{"runtime": "openvino", "path": "m.xml", "threads": 2,
        "precision": "f32", "runs": 100, "warmup": 10}'
"""

from __future__ import annotations

import json
import multiprocessing
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

RUNTIMES = ("openvino", "onnxruntime")
ORT_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC",
              "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}  # fmt: skip


def _openvino(spec: dict[str, Any]) -> Callable[[np.ndarray], Any]:
    """A compiled OpenVINO request for spec["path"] (.xml or .onnx): latency hint, threads."""
    import openvino as ov

    core = ov.Core()
    model = core.read_model(spec["path"])
    shape = model.inputs[0].get_partial_shape()
    if shape[0].is_dynamic or shape[0].get_length() != spec["batch"]:
        model.reshape({0: [spec["batch"], *[d.get_length() for d in list(shape)[1:]]]})
    config: dict[str, Any] = {
        "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_PRECISION_HINT": spec.get("precision", "f32"),
    }
    if spec["threads"] > 0:
        config["INFERENCE_NUM_THREADS"] = spec["threads"]
    request = core.compile_model(model, "CPU", config).create_infer_request()
    return lambda x: request.infer({0: x})


def _onnxruntime(spec: dict[str, Any]) -> Callable[[np.ndarray], Any]:
    """An ONNX Runtime CPU session for spec["path"]: graph level, intra-op threads."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = getattr(
        ort.GraphOptimizationLevel, ORT_LEVELS[spec.get("ort_level", "all")]
    )
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if spec["threads"] > 0:
        opts.intra_op_num_threads = spec["threads"]
        opts.inter_op_num_threads = 1
    session = ort.InferenceSession(spec["path"], opts, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x})


def input_shape(spec: dict[str, Any]) -> tuple[int, ...]:
    """(batch, 3, h, w) of the run: spec["shape"] with its batch set to spec["batch"]."""
    shape = list(spec["shape"])
    shape[0] = spec["batch"]
    return tuple(int(d) for d in shape)


def time_file(spec: dict[str, Any]) -> dict[str, Any]:
    """Per-call wall times (ms) of spec["runtime"] running spec["path"] on a random input."""
    if spec.get("runtime") not in RUNTIMES:
        raise ValueError(f"runtime {spec.get('runtime')!r}: expected one of {RUNTIMES}")
    spec = {"threads": 0, "batch": 1, "runs": 100, "warmup": 10, **spec}
    run = _openvino(spec) if spec["runtime"] == "openvino" else _onnxruntime(spec)
    x = np.random.default_rng(0).random(input_shape(spec), dtype=np.float32)
    deadline = time.monotonic() + 10  # OpenVINO's telemetry helper process, as the harness does
    while multiprocessing.active_children() and time.monotonic() < deadline:
        time.sleep(0.05)
    for _ in range(spec["warmup"]):
        run(x)
    times = []
    cpu0 = time.process_time()
    for _ in range(spec["runs"]):
        t0 = time.perf_counter()
        run(x)
        times.append(1e3 * (time.perf_counter() - t0))
    cpu_ms = 1e3 * (time.process_time() - cpu0) / spec["runs"]  # all threads, per call
    modules = sorted(m for m in sys.modules if m in ("torch", "utils", "nets"))
    return {"times_ms": times, "median_ms": float(np.median(times)), "cpu_ms_per_call": cpu_ms,
            "loaded": modules}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        raise SystemExit("usage: bare_timing.py '<JSON spec>' (see the module docstring)")
    print(json.dumps(time_file(json.loads(argv[0]))))


if __name__ == "__main__":
    main()
