"""Open a model file for inference: the one way every script does it.

FastSegFormer (Cai et al., Computers and Electronics in Agriculture 217, 108604, 2024) is
trained in PyTorch and deployed on a sorting line's CPU. `open_model(path, ...)` decides by the
file's suffix:

- `.onnx`: an export of `predict.py --mode export_onnx`, run by ONNX Runtime;
- `.xml` (+ `.bin`): an OpenVINO IR of `--mode export_openvino` (fp32 or INT8), run by
  OpenVINO;
- anything else (`.pth`, `.pt`, `.safetensors`, ...): a project checkpoint, or the original's
  published weights (with `model_name`), run on `backend` (torch, ONNX Runtime or OpenVINO,
  fp32 or INT8; `auto`: the fastest that keeps accuracy). Needs the full install (torch).

An exported file carries its input size, class names and preprocessing, and runs on its own
runtime; a checkpoint is rebuilt in PyTorch (utils.inference.model_predictor, imported only
here and only for checkpoints) and converted to `backend`. This module imports no torch: on a
box with only requirements-deploy.txt installed, exported files open and a checkpoint gets one
line saying what to install or how to export it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from utils.deploy.backends import (
    AUTO,
    BACKEND_CHOICES,
    BF16_BACKENDS,
    bf16_unavailable,
    check_backend_name,
)
from utils.inference.predictor import Predictor

EXPORTED_SUFFIXES = (".onnx", ".xml")
# the packages a checkpoint needs beyond requirements-deploy.txt
TRAINING_STACK = ("torch", "torchvision", "timm", "safetensors")


class NeedsFullInstall(ValueError):
    """A PyTorch checkpoint was opened where the training stack (torch) is not installed."""


def torch_side(path: str | Path = "the checkpoint") -> ModuleType:
    """utils.inference.model_predictor (the PyTorch model side), or NeedsFullInstall naming
    what is missing and how to export `path` to a file that runs without it."""
    try:
        from utils.inference import model_predictor  # the training stack: torch, timm
    except ImportError as e:
        if e.name is None or e.name.split(".")[0] not in TRAINING_STACK:
            raise
        raise NeedsFullInstall(
            f"{path} is a PyTorch checkpoint: it needs the full install ({e.name} is missing: "
            f"pip install -r requirements.txt), or export it once where that is installed -- "
            f"python predict.py --mode export_openvino --checkpoint {path} --ov-out model.xml "
            f"(or --mode export_onnx --onnx-out model.onnx) -- and pass --checkpoint model.xml"
        ) from None
    return model_predictor


def model_names() -> list[str]:
    """The registry's model names, for asking which model a file of plain weights holds."""
    return torch_side().model_names()


def open_model(
    path: str | Path,
    *,
    backend: str | None = None,
    default_backend: str = AUTO,
    model_name: str | None = None,
    num_classes: int | None = None,
    input_size: Sequence[int] | int | None = None,
    device: str = "cpu",
    half: bool = False,
    threads: int = 0,
    trust: bool = False,
    calib_data: str | Path | None = None,
    calib_images: int = 64,
    cache_dir: str | Path | None = None,
    log: Callable[[str], None] | None = None,
) -> Predictor:
    """The Predictor of the model file `path`, ready to run (see the module docstring).

    `backend`: the runtime of a checkpoint (a name of utils.deploy.backends.BACKEND_CHOICES;
    None: `default_backend`, the script's default); an exported file runs on its own runtime,
    and a `backend` naming another is a ValueError. `model_name` / `num_classes`: for the
    original's published weights (a project checkpoint or an exported file knows its own; a
    disagreeing value is a ValueError). `trust`: unpickle the checkpoint in full (trusted files
    only). `calib_data`, `calib_images`: INT8 calibration photos; `cache_dir`: where converted
    models are kept between runs; `threads`: CPU runtime threads (0: the runtime's default).
    Every refusal is a ValueError (FileNotFoundError for a missing file) with one line to show.
    """
    path = Path(path)
    if backend is not None:
        check_backend_name(backend, BACKEND_CHOICES)
    check_model_name(model_name)
    if not path.is_file():
        raise FileNotFoundError(
            f"model file not found: {path} (expected a .pth checkpoint, an .onnx file or an "
            f"OpenVINO .xml)"
        )
    if path.suffix.lower() in EXPORTED_SUFFIXES:
        precision = "f32"
        if backend in BF16_BACKENDS and path.suffix.lower() == ".xml":
            missing = bf16_unavailable()
            if missing:
                raise ValueError(f"--backend {backend}: {missing}")
            precision = "bf16"
        predictor = Predictor.from_exported(
            path, input_size=input_size, threads=threads, precision=precision
        )
        _check_exported(path, predictor, backend, model_name)
    else:
        predictor = torch_side(path).ModelPredictor.from_checkpoint(
            path,
            device=device,
            half=half,
            model_name=model_name,
            num_classes=num_classes,
            input_size=input_size,
            trust=trust,
        )
        predictor.use_backend(
            backend or default_backend,
            calib_data=calib_data,
            calib_images=calib_images,
            threads=threads,
            cache_dir=cache_dir,
            log=log,
        )
    if num_classes is not None and int(num_classes) != predictor.num_classes:
        raise ValueError(
            f"{path} predicts {predictor.num_classes} classes, but {num_classes} were asked for "
            f"(--num-classes)"
        )
    return predictor


def check_model_name(name: str | None) -> None:
    """ValueError when `name` (--model) is a file rather than a registry model name: every
    script takes a model file as --checkpoint."""
    if name is None:
        return
    suffix = Path(name).suffix.lower()
    if suffix in (*EXPORTED_SUFFIXES, ".pth", ".pt", ".bin", ".safetensors") or (
        "/" in name or "\\" in name or Path(name).is_file()
    ):
        raise ValueError(
            f"--model takes a registry model name (e.g. fastsegformer_p), not a file "
            f"({name}); pass a model file with --checkpoint PATH"
        )


def _check_exported(
    path: Path, predictor: Predictor, backend: str | None, model_name: str | None
) -> None:
    """An exported file runs on its own runtime (an IR also in bf16, as ov-bf16 / ov-int8-bf16):
    refuse a backend or model name it is not."""
    onnx = path.suffix.lower() == ".onnx"
    label = "ort-fp32" if onnx else getattr(predictor.backend, "label", "")
    if backend not in (None, AUTO, label):
        kind = "an ONNX file (ort-fp32)" if onnx else f"an OpenVINO IR ({label})"
        raise ValueError(
            f"{path} is {kind} and runs as it is; --backend {backend} needs a .pth checkpoint "
            f"(leave --backend out, or export the checkpoint for that backend)"
        )
    saved: Any = (predictor.file_metadata.get("model") or {}).get("name")
    if model_name is not None and saved is not None and model_name != saved:
        raise ValueError(f"{path} holds a {saved} model, but --model {model_name} was given")
