"""The inference backends a trained model can be deployed on, by name, and `auto`: the fastest.

FastSegFormer (Cai et al., Computers and Electronics in Agriculture 217, 108604, 2024) is a
real-time model; on a sorting line's CPU the runtime matters as much as the network. One list
of names serves every script (get_miou.py, predict.py, the video pipeline, gui.py; speeding.py
adds its benchmark variants):

| name | what runs | built from the PyTorch model (utils.deploy.build) by |
|---|---|---|
| `torch` | eager PyTorch (CPU channels-last, or CUDA fp32/fp16) | nothing |
| `ort-fp32` | ONNX Runtime, CPU, graph optimised | utils.deploy.onnx_export + optimize |
| `ort-int8` | ONNX Runtime, CPU, static INT8 QDQ | + utils.deploy.optimize.quantize_int8 |
| `ov-fp32` | OpenVINO CPU plugin, float32 | utils.deploy.openvino_export.to_openvino |
| `ov-bf16` | OpenVINO CPU plugin, bfloat16 (native bf16 CPUs only) | the IR of ov-fp32 |
| `ov-int8` | OpenVINO, NNCF INT8, its unquantised remainder in float32 | + quantize_openvino |
| `ov-int8-bf16` | the INT8 IR, its remainder in bfloat16 (native bf16 CPUs only) | as ov-int8 |
| `auto` | the fastest of `AUTO_CANDIDATES` that keeps accuracy, on this CPU | `choose_fastest` |

INT8 backends need calibration photos (an `ImageCalibrationReader`; the caller picks them:
training-split photos, or generated oranges when there is no data set). `auto` quantises, checks
each candidate that is not float32 (INT8, bf16) against float32 PyTorch on held-out photos
(argmax agreement and the class-wise IoU between the two masks, `AUTO_MIN_AGREEMENT` /
`AUTO_MIN_MASK_IOU`), times every candidate that passed, interleaved, and keeps the fastest;
its choice and the timings go in a record (`AutoChoice`) that every output line can name.

bfloat16 runs only where the CPU computes it natively (AVX512-BF16 or AMX; `bf16_unavailable`
asks OpenVINO's `OPTIMIZATION_CAPABILITIES`, else reads the CPU flags): elsewhere OpenVINO would
emulate it, slower than float32, so the bf16 backends are refused with the reason.

Built files (ONNX, OpenVINO IR) go in `workdir`; given a persistent folder (a cache keyed by the
checkpoint, see utils.inference.model_predictor), later runs load them instead of converting
again. This module holds the names and the choice (numpy only); utils.deploy.build converts a
PyTorch model, so an exported model is run without torch.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from utils.deploy.timing import cpu_flags, wait_for_child_processes

BACKENDS = ("torch", "ort-fp32", "ort-int8", "ov-fp32", "ov-bf16", "ov-int8", "ov-int8-bf16")
AUTO = "auto"
BACKEND_CHOICES = (AUTO, *BACKENDS)
INT8_BACKENDS = ("ort-int8", "ov-int8", "ov-int8-bf16")
BF16_BACKENDS = ("ov-bf16", "ov-int8-bf16")  # native bf16 CPUs only
FLOAT32_BACKENDS = ("torch", "ort-fp32", "ov-fp32")  # exact: auto checks the others
# auto on the CPU: OpenVINO first (the CPU's own runtime), ONNX Runtime where it is missing
AUTO_CANDIDATES = ("ov-int8", "ov-int8-bf16", "ov-bf16", "ov-fp32", "ort-int8", "ort-fp32")
AUTO_MIN_AGREEMENT = 0.99  # INT8 / bf16 vs fp32 argmax agreement over held-out photos
AUTO_MIN_MASK_IOU = 0.90  # mean over classes of IoU(INT8 / bf16 mask, fp32 mask)
EXPORTERS = ("auto", "dynamo", "torchscript")  # torch.onnx exporters (utils.deploy.onnx_export)
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo flags of native bf16


def check_backend_name(name: str, allowed: Sequence[str] = BACKEND_CHOICES) -> str:
    """`name` when it is one of `allowed`, else ValueError listing them."""
    if name not in allowed:
        raise ValueError(f"unknown backend {name!r}; valid: {', '.join(allowed)}")
    return name


def runtime_available(name: str) -> str | None:
    """None when backend `name` can run here (its runtime installed, bf16 native), else why not."""
    module = {"ort": "onnxruntime", "ov": "openvino"}.get(name.split("-")[0])
    if module is None:
        return None
    try:
        __import__(module)
        if module == "openvino" and "int8" in name:
            __import__("nncf")
    except ImportError as e:
        return f"{name} needs {e.name} (pip install -r requirements.txt)"
    if name in BF16_BACKENDS:
        missing = bf16_unavailable()
        if missing:
            return f"{name}: {missing}"
    return None


def bf16_unavailable() -> str | None:
    """None when this CPU computes bfloat16 natively, else why not (for a skipped row).

    Asks OpenVINO's CPU plugin (`OPTIMIZATION_CAPABILITIES` lists "BF16" where it has bf16
    kernels); without OpenVINO, reads the CPU flags (avx512_bf16, amx_bf16).
    ``FASTSEGFORMER_NATIVE_BF16=0/1`` overrides both, as for training (tests take either path).
    """
    forced = os.environ.get("FASTSEGFORMER_NATIVE_BF16")
    if forced in ("0", "1"):
        return None if forced == "1" else "native bf16 turned off (FASTSEGFORMER_NATIVE_BF16=0)"
    try:
        import openvino as ov

        caps = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        if "BF16" in caps:
            return None
        return f"this CPU has no native bf16 (OpenVINO CPU capabilities: {' '.join(caps)})"
    except ImportError:
        flags = set(cpu_flags())
        if flags & set(NATIVE_BF16_FLAGS):
            return None
        return f"this CPU has no native bf16 ({' / '.join(NATIVE_BF16_FLAGS)} not in its flags)"


def ov_precision(name: str) -> str:
    """OpenVINO's inference precision of backend `name`: "bf16" for the bf16 ones, else "f32"."""
    return "bf16" if name in BF16_BACKENDS else "f32"


def mask_agreement(got: np.ndarray, ref: np.ndarray, num_classes: int) -> tuple[float, float]:
    """(pixel agreement, mean over classes present of IoU(got == k, ref == k)) of two masks."""
    agree = float((got == ref).mean())
    ious = []
    for k in range(num_classes):
        a, b = got == k, ref == k
        union = np.logical_or(a, b).sum()
        if union:
            ious.append(np.logical_and(a, b).sum() / union)
    return agree, float(np.mean(ious)) if ious else 1.0


@dataclass
class AutoChoice:
    """What `choose_fastest` measured and chose; `line()` is the text every output names."""

    chosen: str
    median_ms: dict[str, float] = field(default_factory=dict)
    agreement: dict[str, float] = field(default_factory=dict)  # vs fp32 PyTorch, held-out photos
    mask_iou: dict[str, float] = field(default_factory=dict)
    rejected: dict[str, str] = field(default_factory=dict)  # candidate -> why
    threads: int = 0
    cpu: str = ""
    held_out: int = 0

    def line(self) -> str:
        timed = ", ".join(f"{k} {v:.1f} ms" for k, v in self.median_ms.items())
        text = f"auto chose {self.chosen} on {self.cpu} ({timed}"
        if self.rejected:
            text += "; not " + ", ".join(f"{k}: {v}" for k, v in self.rejected.items())
        return text + ")"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def choose_fastest(
    candidates: dict[str, Any],
    reference: np.ndarray,
    inputs: np.ndarray,
    num_classes: int,
    rounds: int = 3,
    runs: int = 7,
    cpu: str = "",
    threads: int = 0,
) -> AutoChoice:
    """The fastest of `candidates` (name -> runtime) whose masks match fp32 on held-out inputs.

    `inputs` (N, 3, h, w) held-out preprocessed photos and `reference` their fp32 PyTorch
    logits (N, K, h, w). Float32 candidates (`FLOAT32_BACKENDS`) are taken as exact (their
    exports are checked); the others (INT8, bf16) must reach AUTO_MIN_AGREEMENT pixel agreement
    and AUTO_MIN_MASK_IOU mean class IoU against the fp32 masks. Timing: batch 1, after a
    warm-up, `rounds` x `runs` calls per candidate, candidates interleaved round by round so a
    drifting machine hurts all alike.
    """
    choice = AutoChoice(chosen="", threads=threads, cpu=cpu, held_out=len(inputs))
    ref_mask = reference.argmax(1)
    passed: dict[str, Any] = {}
    for name, backend in candidates.items():
        got = np.concatenate([backend(inputs[i : i + 1]) for i in range(len(inputs))])
        agree, iou = mask_agreement(got.argmax(1), ref_mask, num_classes)
        choice.agreement[name], choice.mask_iou[name] = agree, iou
        exact = name in FLOAT32_BACKENDS
        if not exact and (agree < AUTO_MIN_AGREEMENT or iou < AUTO_MIN_MASK_IOU):
            choice.rejected[name] = (
                f"agreement {100 * agree:.2f}%, mask IoU {100 * iou:.1f}% vs fp32 (need "
                f"{100 * AUTO_MIN_AGREEMENT:.0f}% / {100 * AUTO_MIN_MASK_IOU:.0f}%)"
            )
            continue
        passed[name] = backend
    if not passed:
        raise RuntimeError(f"no backend kept accuracy: {choice.rejected}")
    x = np.ascontiguousarray(inputs[:1])
    wait_for_child_processes()  # helpers started on import (OpenVINO telemetry) are gone
    times: dict[str, list[float]] = {name: [] for name in passed}
    for backend in passed.values():  # warm-up
        for _ in range(3):
            backend(x)
    for _ in range(rounds):
        for name, backend in passed.items():
            for _ in range(runs):
                t0 = time.perf_counter()
                backend(x)
                times[name].append(time.perf_counter() - t0)
    choice.median_ms = {name: 1e3 * float(np.median(t)) for name, t in times.items()}
    choice.chosen = min(choice.median_ms, key=choice.median_ms.get)
    return choice
