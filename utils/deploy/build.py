"""Build the runtime of a named backend (utils.deploy.backends) from a PyTorch model.

FastSegFormer (Cai et al., Computers and Electronics in Agriculture 217, 108604, 2024) is
deployed on a sorting line's CPU: `build_backend` exports the trained module (ONNX or OpenVINO
IR), optimises or quantises it (INT8 with calibration photos), and returns the runtime that
runs it. The torch side of deployment; running an exported file needs none of it.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from utils.deploy.backends import (
    BACKENDS,
    INT8_BACKENDS,
    check_backend_name,
    ov_precision,
    runtime_available,
)
from utils.deploy.onnx_export import export_onnx
from utils.deploy.openvino_export import quantize_openvino, save_openvino, to_openvino
from utils.deploy.optimize import (
    ImageCalibrationReader,
    optimize_onnx,
    quantize_int8,
    session_options,
)
from utils.deploy.runtimes import OnnxBackend, OpenVinoBackend
from utils.deploy.torch_runtime import TorchBackend


def build_backend(
    name: str,
    model: torch.nn.Module,
    input_size: Sequence[int],
    *,
    device: str = "cpu",
    half: bool = False,
    threads: int = 0,
    calibration: ImageCalibrationReader | None = None,
    exclude: str = "head",
    workdir: str | Path | None = None,
    metadata: dict[str, Any] | None = None,
) -> Any:
    """A runtime callable ((B, 3, h, w) -> (B, K, h, w) float32) of backend `name` for `model`.

    Every backend but `torch` runs on the CPU. Files are written to (and, when present, read
    from) `workdir` (a temporary folder when None).
    """
    check_backend_name(name, BACKENDS)
    if name == "torch":
        return TorchBackend(model, device, half)
    if torch.device(device).type != "cpu":
        raise ValueError(f"backend {name} runs on the CPU; use --backend torch on {device}")
    missing = runtime_available(name)
    if missing:
        raise ValueError(missing)
    if name in INT8_BACKENDS and calibration is None:
        raise ValueError(f"backend {name} needs calibration photos")
    folder = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="deploy_"))
    folder.mkdir(parents=True, exist_ok=True)
    size = (int(input_size[0]), int(input_size[1]))
    meta = dict(metadata or {})
    meta.setdefault("input_size", list(size))

    path = deployed_file(name, folder)
    if name.startswith("ov-"):
        int8 = name in INT8_BACKENDS
        if not path.is_file():
            ov_model = to_openvino(model, size)
            if int8:
                ov_model = quantize_openvino(ov_model, calibration.inputs(), exclude=exclude)
            save_openvino(ov_model, path, {**meta, "precision": "int8" if int8 else "fp32"})
        return open_deployed(name, path, threads)

    raw = folder / "ort-raw.onnx"
    if not path.is_file():
        if not raw.is_file():
            export_onnx(model, raw, size, opset=20, metadata=meta)
        if name == "ort-int8":
            quantize_int8(raw, path, calibration, exclude=exclude)
        else:
            optimize_onnx(raw, path)
    return open_deployed(name, path, threads)


def deployed_file(name: str, workdir: str | Path) -> Path:
    """The file `build_backend` keeps backend `name` in, in `workdir` (a bf16 backend runs the
    IR of its float32 or INT8 twin)."""
    if name.startswith("ov-"):
        return Path(workdir) / ("ov-int8.xml" if name in INT8_BACKENDS else "ov-fp32.xml")
    return Path(workdir) / f"{name}.onnx"


def open_deployed(name: str, path: str | Path, threads: int = 0) -> Any:
    """The runtime of CPU backend `name` on its built file (`deployed_file`)."""
    if name.startswith("ov-"):
        return OpenVinoBackend(path, threads=threads, label=name, precision=ov_precision(name))
    backend = OnnxBackend(path, ["CPUExecutionProvider"], session_options("all", threads))
    backend.label = name
    return backend
