"""Project checkpoints: self-describing files written atomically, read with clear errors.

A checkpoint holds everything `get_miou.py` and `predict.py` need to rebuild the model from
the file alone (model name and options, class names, input size, preprocessing) plus the
training state that `train.py --resume` continues from. Format "fastsegformer-checkpoint/1":

    {"format", "model": model.build_config, "state_dict", "input_size": [h, w], "class_names",
     "preprocess": {"mean", "std", "fill"}, "epoch" (completed), "best_metric" (val mIoU 0..1),
     "config", "optimizer", "scheduler", "scaler", "extra"}

Saving goes to a temporary file in the same folder, flushed to disk, then `os.replace`d over
the target, so a kill during a save leaves the previous file intact.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

FORMAT = "fastsegformer-checkpoint/1"
REQUIRED_KEYS = ("format", "model", "state_dict", "input_size", "class_names", "preprocess")


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable or not in the project format."""


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain module inside DistributedDataParallel / DataParallel wrappers."""
    while isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        model = model.module
    return model


def _cpu(obj: Any) -> Any:
    """Tensors moved to the CPU (so a checkpoint loads anywhere), containers kept."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_cpu(v) for v in obj)
    return obj


def build_checkpoint(
    model: nn.Module,
    *,
    input_size: Sequence[int],
    class_names: Sequence[str],
    preprocess: dict | None = None,
    epoch: int = 0,
    best_metric: float | None = None,
    config: dict | None = None,
    optimizer: dict | None = None,
    scheduler: dict | None = None,
    scaler: dict | None = None,
    extra: dict | None = None,
) -> dict:
    """The checkpoint dict of `model` (unwrapped; needs `model.build_config`)."""
    model = unwrap_model(model)
    build_config = getattr(model, "build_config", None)
    if not isinstance(build_config, dict) or "name" not in build_config:
        raise CheckpointError(
            f"{type(model).__name__} has no build_config {{'name', 'num_classes', 'options'}}: "
            "build models with nets.build_model so checkpoints can rebuild them"
        )
    h, w = (int(input_size[0]), int(input_size[-1]))
    return {
        "format": FORMAT,
        "model": dict(build_config),
        "state_dict": _cpu(model.state_dict()),
        "input_size": [h, w],
        "class_names": list(class_names),
        "preprocess": dict(preprocess or {"mean": None, "std": None, "fill": 128}),
        "epoch": int(epoch),
        "best_metric": None if best_metric is None else float(best_metric),
        "config": dict(config or {}),
        "optimizer": _cpu(optimizer),
        "scheduler": scheduler,
        "scaler": scaler,
        "extra": _cpu(dict(extra or {})),
    }


def save_checkpoint(checkpoint: dict, path: str | Path) -> Path:
    """Write `checkpoint` to `path` atomically (temporary file + fsync + os.replace)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(checkpoint, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        # a failed or interrupted save must not leave a stray temp file; the target is untouched
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Load a project checkpoint, checking its format; errors name the file and the problem."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated zip, pickle of arbitrary objects, not a torch file
        raise CheckpointError(
            f"cannot read checkpoint {path}: {type(exc).__name__}: {str(exc).splitlines()[0]} "
            "(is the file complete and written by torch.save?)"
        ) from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        found = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(
            f"{path} is not a project checkpoint (format {found!r}, expected {FORMAT!r}); "
            "plain or original state dicts load with nets.load_checkpoint(model, path)"
        )
    missing = [k for k in REQUIRED_KEYS if k not in ckpt]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks the keys {missing}")
    return ckpt


def is_resumable(ckpt: dict) -> bool:
    """True when the checkpoint carries the optimizer state needed by --resume."""
    return ckpt.get("optimizer") is not None and "epoch" in ckpt
