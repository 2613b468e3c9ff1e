"""Checkpoint files: the project format, the one safe reader, the one atomic writer, and
loading weights of any published layout into a model.

**The project format** (``CHECKPOINT_FORMAT``, "fastsegformer-checkpoint/1") holds everything
``get_miou.py`` and ``predict.py`` need to rebuild the model from the file alone, plus the
training state that ``train.py --resume`` continues from (``build_checkpoint``)::

    {"format", "model": model.build_config, "state_dict", "input_size": [h, w], "class_names",
     "preprocess": {"mean", "std", "fill"}, "epoch" (completed), "best_metric" (val mIoU 0..1),
     "config", "optimizer", "scheduler", "scaler", "extra"}

interrupted.pth (a run stopped by a signal inside an epoch) also holds "progress": the step
reached and, per training process, its random generators and loss sums, from which
``train.py --resume`` continues that epoch exactly.

**Reading never runs code** (``read_checkpoint``). Users load files they did not make: the
authors' published students and teacher, ImageNet backbone files, a colleague's run. A
``.pth`` file is a pickle, and unpickling can call any function the file names, so files are
read with ``torch.load(weights_only=True)`` (tensors, numbers, strings and plain containers
only) or as safetensors. A file that needs more (a pickled ``argparse.Namespace``, a whole
pickled model) stops with a ``CheckpointError`` naming the file and the refused type, and two
ways on: ``trust=True`` (``--trust-checkpoint`` in the scripts) for a file you trust, or a
one-time conversion that itself runs no code from the file (``convert_checkpoint``)::

    python -m nets.checkpoint convert OLD.pth NEW.safetensors   # or NEW.pth

**Writing is atomic** (``save_checkpoint``): a temporary file in the same folder, flushed to
disk, then ``os.replace``d over the target, so a kill during a save leaves the previous file
intact. The temporary file is named as ``utils.fileio`` names them, so the next run finds and
removes one that a killed save left behind. ``.safetensors`` targets take a flat dict of tensors.
A checkpoint holding a NaN or infinite value anywhere (weights, buffers, optimizer state) is
refused before anything is written (``NonFiniteCheckpointError`` naming the tensor), and a full
disk ends the write with one ``CheckpointError`` line ("no space left on device writing PATH;
the previous checkpoint is intact"). ``non_finite_tensors`` is the check both use, and the
training loop too: one fused pass decides, and only a failure counts tensor by tensor.

**Loading into a model** (``load_checkpoint(model, path_or_state_dict)``) recognises:

- project checkpoints, loaded strictly (refusing another model's checkpoint);
- plain state dicts of our own modules (``model.state_dict()``), loaded strictly;
- the original full-model layout (``common_backbone.network.0...``, the layout of the
  checkpoints published with the FastSegFormer paper and of ``shared/reference``): converted
  by the model's ``convert_original_state_dict`` and loaded strictly;
- ImageNet backbone checkpoints in the original repositories' layouts (PoolFormer
  ``network.N...``; EfficientFormerV2 wrapped in ``{"model": ...}``) or timm's layout:
  converted by the model's ``convert_backbone_state_dict``; the backbone is filled and the
  report lists what was loaded and skipped (classifier heads, final norms).

A tensor whose shape does not fit raises a ``CheckpointError`` naming the model, the key and
both shapes; a NaN or inf weight one naming the file and the tensor (files written before the
writer refused them). ``drop_classifier=True`` (``--drop-classifier`` in the training scripts)
leaves out the class-count-dependent tensors instead (those whose first dimension is
``model.num_classes`` in the model), to fine-tune on another set of classes. Rebuilding the
model a project checkpoint records is ``nets.registry.model_from_checkpoint`` (it needs the
registry, which imports the models).

This module imports nothing from ``nets``: the models import it to read their ImageNet files.
"""

from __future__ import annotations

import argparse
import errno
import os
import pickle
import re
import secrets
import socket
import sys
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import safetensors.torch
import torch
from torch import Tensor, nn

CHECKPOINT_FORMAT = "fastsegformer-checkpoint/1"
REQUIRED_KEYS = ("format", "model", "state_dict", "input_size", "class_names", "preprocess")


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable, refused by the safe reader, not in the
    project format, or does not fit the model, or could not be written; the message names the
    file and what to do."""


class NonFiniteCheckpointError(CheckpointError):
    """A checkpoint to be written holds NaN or infinite values; nothing was written."""


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def read_checkpoint(
    path: str | Path, map_location: str | torch.device = "cpu", *, trust: bool = False
) -> Any:
    """The object stored in a weights file, read without running code from it.

    ``.safetensors`` files (recognised by their header, whatever the suffix) give a dict of
    tensors; anything else goes through ``torch.load(weights_only=True)``. ``trust=True``
    unpickles in full (``weights_only=False``): only for a file you trust.

    Raises:
        CheckpointError: the file is missing or unreadable, or holds objects the safe reader
            refuses (the message names them and says how to proceed).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if _is_safetensors(path):
        try:
            return safetensors.torch.load_file(str(path), device=str(map_location))
        except Exception as exc:  # truncated file, bad header
            raise CheckpointError(
                f"cannot read safetensors file {path}: {type(exc).__name__}: {exc} (is the "
                "file complete?)"
            ) from exc
    try:
        return torch.load(path, map_location=map_location, weights_only=not trust)
    except pickle.UnpicklingError as exc:
        refused = _refused_globals(path, str(exc))
        if refused and not trust:
            raise CheckpointError(_refusal_message(path, refused)) from None
        raise CheckpointError(_unreadable_message(path, exc)) from None
    except Exception as exc:  # truncated zip, not a torch file, CUDA tensors without CUDA
        raise CheckpointError(_unreadable_message(path, exc)) from exc


def read_project_checkpoint(
    path: str | Path, map_location: str | torch.device = "cpu", *, trust: bool = False
) -> dict:
    """``read_checkpoint``, then check the project format and its required keys."""
    ckpt = read_checkpoint(path, map_location, trust=trust)
    if not is_project_checkpoint(ckpt):
        found = ckpt.get("format") if isinstance(ckpt, Mapping) else type(ckpt).__name__
        raise CheckpointError(
            f"{path} is not a project checkpoint (format {found!r}, expected "
            f"{CHECKPOINT_FORMAT!r}); plain or original state dicts load with "
            "nets.load_checkpoint(model, path), or with --model NAME in get_miou.py / predict.py"
        )
    missing = [k for k in REQUIRED_KEYS if k not in ckpt]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks the keys {missing}")
    return dict(ckpt)


def is_project_checkpoint(obj: Any) -> bool:
    """True for a dict in the project format (``CHECKPOINT_FORMAT``)."""
    return isinstance(obj, Mapping) and obj.get("format") == CHECKPOINT_FORMAT


def _is_safetensors(path: Path) -> bool:
    """A safetensors file: an 8-byte little-endian header length, then a JSON header."""
    if path.suffix == ".safetensors":
        return True
    with path.open("rb") as f:
        head = f.read(9)
    if len(head) < 9:
        return False
    size = int.from_bytes(head[:8], "little")
    return head[8:9] == b"{" and 0 < size < path.stat().st_size


# torch names the refused global in its UnpicklingError: "Unsupported global: GLOBAL
# argparse.Namespace was not an allowed global ..." or "Trying to load unsupported GLOBAL
# posix.system whose module posix is blocked."; builtins lose their "builtins." prefix.
_REFUSED_GLOBAL = re.compile(r"GLOBAL ([A-Za-z_][\w.]*)")
_BLOCKED = re.compile(r"whose module \S+ is blocked")


def _global_name(text: str) -> str | None:
    """The global torch refused, from its message (None when it names none)."""
    match = _REFUSED_GLOBAL.search(text)
    if match is None:
        return None
    name = match[1].rstrip(".")
    return name if "." in name else f"builtins.{name}"


def _refused_globals(path: Path, message: str) -> list[str]:
    """Every global of `path` the safe reader refuses: the one torch's message names, then
    (zip files) the others found by reading the pickle's opcodes, which runs nothing."""
    first = _global_name(message)
    if first is None:
        return []
    names = [first]
    try:
        others = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except Exception:  # legacy (non-zip) files: the first one is all torch tells
        others = []
    return names + sorted({_global_name("GLOBAL " + n) or n for n in others} - {first})


def _refusal_message(path: Path, refused: Sequence[str]) -> str:
    target = path.with_name(path.name.split(".")[0] + "_safe.safetensors")
    return (
        f"{path}: refused to unpickle {', '.join(refused)} (the safe loader rebuilds only "
        "tensors, numbers, strings and plain containers; unpickling other types can run any "
        "code the file's author chose). If you trust this file, load it with "
        "--trust-checkpoint (trust=True in Python); or convert it once, without running code "
        f"from it: python -m nets.checkpoint convert {path} {target}"
    )


def _unreadable_message(path: Path, exc: BaseException) -> str:
    damage = _damage(path)
    if damage is not None:
        return f"cannot read checkpoint {path}: {damage}"
    text = str(exc).strip()
    marker = "WeightsUnpickler error: "
    if marker in text:  # torch wraps the reason in advice about weights_only
        text = text.split(marker, 1)[1]
    lines = [line for line in text.splitlines() if line.strip()]
    first = lines[0].strip() if lines else ""
    first = first.split(". This is an internal miniz error")[0]  # torch's advice follows
    return (
        f"cannot read checkpoint {path}: {type(exc).__name__}: {first} "
        "(is the file complete and written by torch.save or safetensors?)"
    )


_ZIP_DIRECTORY_END = b"PK\x05\x06"  # the end-of-central-directory record of a zip file
_ZIP_DIRECTORY_REACH = 22 + 65535  # that record, with its longest comment, ends the file


def _damage(path: Path) -> str | None:
    """What is wrong with the file itself when its bytes show it: empty, or a zip-format
    ``torch.save`` file cut short (its central directory, written last, is missing)."""
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(4)
            f.seek(max(0, size - _ZIP_DIRECTORY_REACH))
            tail = f.read()
    except OSError:
        return None
    if size == 0:
        return "the file is empty (0 bytes)"
    if head == b"PK\x03\x04" and _ZIP_DIRECTORY_END not in tail:
        return (
            f"the file is cut short ({size} bytes, without the directory a torch.save file "
            "ends with): a save, copy or download that did not finish. Use another checkpoint "
            "of the run (last.pth, best.pth, epNNN.pth) or copy the file again"
        )
    return None


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def _unwrap_parallel(model: nn.Module) -> nn.Module:
    """The plain module inside DistributedDataParallel / DataParallel wrappers."""
    while isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        model = model.module
    return model


def _cpu(obj: Any) -> Any:
    """Tensors moved to the CPU (so a checkpoint loads anywhere), containers kept."""
    if isinstance(obj, Tensor):
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
    """The project checkpoint dict of `model` (unwrapped from DDP; needs ``model.build_config``)."""
    model = _unwrap_parallel(model)
    build_config = getattr(model, "build_config", None)
    if not isinstance(build_config, dict) or "name" not in build_config:
        raise CheckpointError(
            f"{type(model).__name__} has no build_config {{'name', 'num_classes', 'options'}}: "
            "build models with nets.build_model so checkpoints can rebuild them"
        )
    h, w = (int(input_size[0]), int(input_size[-1]))
    return {
        "format": CHECKPOINT_FORMAT,
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


def save_checkpoint(checkpoint: Mapping[str, Any], path: str | Path) -> Path:
    """Write `checkpoint` to `path` atomically (temporary file + fsync + os.replace).

    ``.pth`` (any suffix but ``.safetensors``): ``torch.save`` of the dict. ``.safetensors``:
    the dict must map names to tensors (a state dict). Returns `path`.

    Raises:
        NonFiniteCheckpointError: a tensor anywhere in `checkpoint` holds NaN or inf (named
            in the message); nothing is written.
        CheckpointError: the disk is full ("no space left on device writing PATH; ...");
            `path` is as it was and the temporary file is removed.
    """
    path = Path(path)
    non_finite = non_finite_tensors(checkpoint_tensors(checkpoint))
    if non_finite:
        raise NonFiniteCheckpointError(
            f"refusing to write {path}: {describe_non_finite(non_finite)}; "
            f"{_previous_state(path, 'checkpoint')}"
        )
    if path.suffix == ".safetensors":
        bad = [
            k for k, v in checkpoint.items() if not (isinstance(k, str) and isinstance(v, Tensor))
        ]
        if bad:
            raise CheckpointError(
                f"{path}: a .safetensors file holds only named tensors; {bad[:3]} are not "
                "(save the whole checkpoint as .pth, or its state dict as .safetensors)"
            )
        # safetensors refuses views that share memory: give each tensor its own copy
        tensors = {k: v.detach().cpu().contiguous().clone() for k, v in checkpoint.items()}
        data = safetensors.torch.save(tensors)
        _write_atomically(path, lambda f: f.write(data))
    else:
        _write_atomically(path, lambda f: torch.save(dict(checkpoint), f))
    return path


def checkpoint_tensors(obj: Any, prefix: str = "") -> Iterator[tuple[str, Tensor]]:
    """(dotted key, tensor) of every tensor in nested dicts, lists and tuples, e.g.
    ("state_dict.head.weight", ...), ("optimizer.state.3.exp_avg", ...)."""
    if isinstance(obj, Tensor):
        yield prefix, obj
    elif isinstance(obj, Mapping):
        for key, value in obj.items():
            yield from checkpoint_tensors(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            yield from checkpoint_tensors(value, f"{prefix}[{i}]")


def non_finite_tensors(named: Iterable[tuple[str, Tensor]]) -> list[tuple[str, int, int]]:
    """(name, NaN/inf count, size) of every floating-point tensor of `named` holding NaN or inf.

    One fused pass decides (``torch.nn.utils.get_total_norm``: the L2 norm of all of them is
    finite unless a value is NaN or inf, or unless it overflows float32); only then is each
    tensor counted, so the common case costs one read of the tensors.
    """
    tensors = [(n, t.detach()) for n, t in named if t.is_floating_point() and t.numel()]
    if not tensors:
        return []
    total = torch.nn.utils.get_total_norm([t for _, t in tensors], norm_type=2.0)
    if bool(torch.isfinite(total)):
        return []
    bad = []
    for name, t in tensors:
        count = int(t.numel() - torch.isfinite(t).sum())
        if count:
            bad.append((name, count, t.numel()))
    return bad


def describe_non_finite(bad: Sequence[tuple[str, int, int]], limit: int = 3) -> str:
    """'w (12 of 784 values NaN or inf), ... and 2 more tensors' for messages."""
    parts = [f"{name} ({count} of {size} values NaN or inf)" for name, count, size in bad[:limit]]
    more = f" and {len(bad) - limit} more tensors" if len(bad) > limit else ""
    return ", ".join(parts) + more


def _previous_state(path: Path, kind: str) -> str:
    """What a failed write left at `path`: true whether or not a previous file was there."""
    if path.exists():
        return f"the previous {kind} is intact"
    return f"nothing was written ({path.name} did not exist before)"


def _disk_full(exc: BaseException) -> bool:
    """Whether `exc` or an exception it was raised from or during is ENOSPC / EDQUOT (torch
    reports a failed write as a RuntimeError of its zip writer, raised during the OSError).
    ``utils.fileio.is_disk_full`` is the same test (``nets`` never imports ``utils``)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _temp_path(path: Path) -> Path:
    """The temporary name ``utils.fileio.temp_path_for`` gives (``nets`` cannot import it):
    ``.<name>.<pid>-<host>-<random>.tmp<suffix>``, so that the next run finds what a killed
    save left behind (``utils.fileio.stale_temp_files``)."""
    host = zlib.crc32(socket.gethostname().encode("utf-8", "replace")) & 0xFFFFFF
    token = secrets.token_hex(4)
    return path.with_name(f".{path.name}.{os.getpid()}-{host:06x}-{token}.tmp{path.suffix}")


def _write_atomically(path: Path, write: Callable[[IO[bytes]], Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_path(path)
    try:
        with open(tmp, "xb") as f:  # noqa: PTH123
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        # a failed or interrupted save must not leave a stray temp file; the target is untouched
        tmp.unlink(missing_ok=True)
        if isinstance(exc, Exception) and _disk_full(exc):
            raise CheckpointError(
                f"no space left on device writing {path}; {_previous_state(path, 'checkpoint')}"
            ) from None
        raise


# --------------------------------------------------------------------------------------------
# Converting a legacy file without running it
# --------------------------------------------------------------------------------------------


class _Placeholder:
    """Stands in for an object of a refused type while converting: it records the arguments
    and state the pickle gives it and runs nothing (no method of the real type is called)."""

    type_name = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> _Placeholder:
        inst = object.__new__(cls)
        inst.args, inst.state = args, None
        return inst

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def is_module(self) -> bool:
        """A pickled ``nn.Module``: its state holds ``_parameters`` and ``_modules``."""
        return isinstance(self.state, dict) and {"_parameters", "_modules"} <= set(self.state)

    def module_state_dict(self, prefix: str = "", out: dict | None = None) -> dict[str, Tensor]:
        """``state_dict()`` of a pickled module, rebuilt from its recorded attributes."""
        out = {} if out is None else out
        state = self.state
        skip = set(state.get("_non_persistent_buffers_set") or ())
        for name, value in (state.get("_parameters") or {}).items():
            if isinstance(value, Tensor):
                out[prefix + name] = value.detach()
        for name, value in (state.get("_buffers") or {}).items():
            if isinstance(value, Tensor) and name not in skip:
                out[prefix + name] = value
        for name, child in (state.get("_modules") or {}).items():
            if isinstance(child, _Placeholder) and child.is_module():
                child.module_state_dict(f"{prefix}{name}.", out)
        return out


def _placeholder(name: str) -> type[_Placeholder]:
    return type(f"Placeholder[{name}]", (_Placeholder,), {"type_name": name})


def _read_with_placeholders(path: Path) -> tuple[Any, list[str]]:
    """Unpickle `path` with every refused global replaced by an inert placeholder class.

    Runs no code of the file: torch's weights-only unpickler does the reading, and the only
    names added to its allowlist are placeholders. Globals of modules torch blocks outright
    (os, sys, ...) still stop the reading: no weights file needs them.
    """
    try:
        names = {
            _global_name("GLOBAL " + n) or n
            for n in torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
        }
    except Exception:  # legacy (non-zip) files: found one refusal at a time below
        names = set()
    for _ in range(1000):
        stubs = [(_placeholder(n), n) for n in sorted(names)]
        try:
            with torch.serialization.safe_globals(stubs):
                return torch.load(path, map_location="cpu", weights_only=True), sorted(names)
        except pickle.UnpicklingError as exc:
            refused = _global_name(str(exc))
            if refused is None or refused in names or _BLOCKED.search(str(exc)):
                reason = f"it calls {refused}, which no weights file needs" if refused else ""
                raise CheckpointError(
                    f"cannot convert {path}: {reason or _unreadable_message(path, exc)}"
                ) from None
            names.add(refused)
        except Exception as exc:
            raise CheckpointError(_unreadable_message(path, exc)) from exc
    raise CheckpointError(f"cannot convert {path}: too many object types")


def _strip_placeholders(obj: Any, where: str, dropped: list[str]) -> Any:
    """A copy of `obj` without placeholders: pickled modules become their state dicts, other
    placeholders are left out (their location and type are appended to `dropped`)."""
    if isinstance(obj, _Placeholder):
        if obj.is_module():
            return obj.module_state_dict()
        dropped.append(f"{where or '<file>'} ({obj.type_name})")
        return _DROP
    if isinstance(obj, Mapping):
        out = OrderedDict() if isinstance(obj, OrderedDict) else {}
        for key, value in obj.items():
            kept = _strip_placeholders(value, f"{where}.{key}" if where else str(key), dropped)
            if kept is not _DROP and not isinstance(key, _Placeholder):
                out[key] = kept
        return out
    if isinstance(obj, (list, tuple)):
        items = [_strip_placeholders(v, f"{where}[{i}]", dropped) for i, v in enumerate(obj)]
        if all(a is b for a, b in zip(items, obj, strict=True)):
            return obj  # nothing replaced: keep the container as it is (torch.Size, ...)
        kept = [v for v in items if v is not _DROP]
        return tuple(kept) if isinstance(obj, tuple) else kept
    return obj


_DROP = object()


def convert_checkpoint(source: str | Path, target: str | Path) -> list[str]:
    """Rewrite `source` as a file the safe reader loads, without running code from `source`.

    Objects of refused types are read as inert placeholders: a pickled ``nn.Module`` becomes
    its state dict, anything else (an ``argparse.Namespace`` of training arguments, numpy
    scalars) is left out. `target` ``.safetensors``: the weights only (the project
    checkpoint's ``state_dict``, or the state dict found in the file). Any other suffix: the
    whole cleaned object, saved with ``torch.save``. Returns what was left out ("key (type)").
    """
    source, target = Path(source), Path(target)
    if not source.is_file():
        raise CheckpointError(f"checkpoint not found: {source}")
    if target.resolve() == source.resolve():
        raise CheckpointError(f"convert {source}: write to another file, keep the original")
    if _is_safetensors(source):
        obj: Any = read_checkpoint(source)
        dropped: list[str] = []
    else:
        raw, _ = _read_with_placeholders(source)
        dropped = []
        obj = _strip_placeholders(raw, "", dropped)
        if obj is _DROP:
            raise CheckpointError(f"cannot convert {source}: it holds no tensors ({dropped[0]})")
    if target.suffix == ".safetensors":
        state, _ = _unwrap(obj, source)
        save_checkpoint(state, target)
    elif isinstance(obj, Mapping):
        save_checkpoint(obj, target)
    else:
        raise CheckpointError(
            f"cannot convert {source} to {target.suffix}: it holds a {type(obj).__name__}, not "
            "a dict; convert it to .safetensors"
        )
    return dropped


# --------------------------------------------------------------------------------------------
# Loading into a model
# --------------------------------------------------------------------------------------------


@dataclass
class LoadReport:
    """What ``load_checkpoint`` did.

    layout: "project" | "native" | "original" | "backbone:<original|timm|timm_features>".
    loaded: model keys that received a tensor. skipped: keys of the file that were not used.
    missing: model keys left as they were (only for backbone checkpoints: the head).
    dropped: keys left out by ``drop_classifier``.
    """

    layout: str
    loaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        text = (
            f"{self.layout} layout: loaded {len(self.loaded)} tensors, skipped "
            f"{len(self.skipped)}, left {len(self.missing)} at their initial values"
        )
        if self.dropped:
            text += f", dropped {len(self.dropped)} classifier tensors"
        if self.skipped:
            shown = ", ".join(self.skipped[:8]) + (" ..." if len(self.skipped) > 8 else "")
            text += f"; skipped: {shown}"
        return text


def _model_name(model: nn.Module) -> str:
    config = getattr(model, "build_config", None)
    return config["name"] if config else type(model).__name__


def _unwrap(obj: Any, source: Any = "checkpoint") -> tuple[dict[str, Tensor], str | None]:
    """Peel containers off a loaded file: returns (state dict, "project" or None)."""
    if isinstance(obj, nn.Module):  # a whole pickled model, read with trust=True
        return obj.state_dict(), None
    if not isinstance(obj, Mapping):
        raise CheckpointError(
            f"{source}: expected a state dict or a checkpoint dict, got {type(obj).__name__}"
        )
    if is_project_checkpoint(obj):
        return dict(obj["state_dict"]), "project"
    if "format" in obj and isinstance(obj["format"], str):
        raise CheckpointError(
            f"{source}: unsupported checkpoint format {obj['format']!r}; expected "
            f"{CHECKPOINT_FORMAT!r}"
        )
    for wrapper in ("model", "state_dict", "model_state", "net"):  # EfficientFormerV2: "model"
        inner = obj.get(wrapper)
        if (
            isinstance(inner, Mapping)
            and inner
            and all(isinstance(v, Tensor) for v in inner.values())
        ):
            return _unwrap(inner, source)
    state = {k: v for k, v in obj.items() if isinstance(v, Tensor)}
    if not state:
        raise CheckpointError(f"{source}: no tensors found (keys: {list(obj)[:8]})")
    if all(k.startswith("module.") for k in state):  # saved from DistributedDataParallel
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state, None


def _check_shapes(
    model: nn.Module, state: dict[str, Tensor], drop_classifier: bool
) -> tuple[dict[str, Tensor], list[str]]:
    """Shape check against the model; returns (state without dropped keys, dropped keys)."""
    own = model.state_dict()
    num_classes = getattr(model, "num_classes", None)
    kept, dropped = {}, []
    for key, value in state.items():
        if key in own and own[key].shape != value.shape:
            target = own[key]
            if drop_classifier and target.ndim >= 1 and target.shape[0] == num_classes:
                dropped.append(key)
                continue
            hint = (
                f" (a different number of classes: {value.shape[0]} in the file, {num_classes} "
                "in the model? To predict or evaluate, give the file's number of classes "
                f"(--num-classes {value.shape[0]}); to fine-tune it on {num_classes} classes, "
                "train with --pretrained FILE --drop-classifier, which re-initialises the "
                "classifier (drop_classifier=True in Python))"
                if target.ndim >= 1 and target.shape[0] == num_classes and value.ndim >= 1
                else ""
            )
            raise CheckpointError(
                f"{_model_name(model)}: {key} has shape {tuple(value.shape)} in the checkpoint "
                f"but {tuple(target.shape)} in the model{hint}"
            )
        kept[key] = value
    return kept, dropped


def _load(
    model: nn.Module, state: dict[str, Tensor], layout: str, strict: bool, drop: bool
) -> LoadReport:
    state, dropped = _check_shapes(model, state, drop)
    own = model.state_dict()
    unexpected = [k for k in state if k not in own]
    missing = [k for k in own if k not in state and k not in dropped]
    # BatchNorm step counters are not weights; files written without them still load
    missing_weights = [k for k in missing if not k.endswith("num_batches_tracked")]
    if strict and (unexpected or missing_weights):
        raise CheckpointError(
            f"{_model_name(model)}: {layout} checkpoint does not match the model: "
            f"{len(missing_weights)} model keys missing (e.g. {missing_weights[:3]}), "
            f"{len(unexpected)} "
            f"unexpected keys (e.g. {unexpected[:3]})"
        )
    usable = {k: v for k, v in state.items() if k in own}
    if not usable:
        raise CheckpointError(
            f"{_model_name(model)}: no tensor of the {layout} checkpoint fits the model "
            f"(first keys: {list(state)[:5]})"
        )
    model.load_state_dict(usable, strict=False)
    return LoadReport(
        layout=layout, loaded=list(usable), skipped=unexpected, missing=missing, dropped=dropped
    )


def load_checkpoint(
    model: nn.Module,
    path_or_state_dict: str | Path | Mapping[str, Any],
    *,
    drop_classifier: bool = False,
    trust: bool = False,
    source: str | Path | None = None,
) -> LoadReport:
    """Load weights of any supported layout into `model` (see the module docstring).

    A path is read with ``read_checkpoint`` (safe unless ``trust=True``). `source` names the
    file an already read dict came from, for error messages.
    """
    if isinstance(path_or_state_dict, str | Path):
        source = path_or_state_dict
        obj = read_checkpoint(path_or_state_dict, trust=trust)
    else:
        source, obj = source or "checkpoint", path_or_state_dict
    state, kind = _unwrap(obj, source)
    bad = non_finite_tensors(state.items())
    if bad:
        raise CheckpointError(
            f"{source} holds NaN or inf weights: {describe_non_finite(bad)}; a model with them "
            "predicts wrongly without a warning. Use another checkpoint (an earlier epNNN.pth "
            "of the run) or retrain"
        )
    if kind == "project":
        recorded = obj.get("model", {}).get("name")
        ours = getattr(model, "build_config", {}).get("name")
        if recorded and ours and recorded != ours:
            raise CheckpointError(f"{source} holds a {recorded} model, cannot load it into {ours}")
        return _load(model, state, "project", strict=True, drop=drop_classifier)

    own = model.state_dict()
    if set(state) == set(own) or (set(state) <= set(own) and _only_buffers_missing(own, state)):
        return _load(model, state, "native", strict=True, drop=drop_classifier)
    if any(k.startswith("common_backbone.") for k in state) and hasattr(
        model, "convert_original_state_dict"
    ):
        converted = model.convert_original_state_dict(state)
        return _load(model, converted, "original", strict=True, drop=drop_classifier)
    if hasattr(model, "convert_backbone_state_dict"):
        converted, skipped, layout = model.convert_backbone_state_dict(state)
        report = _load(model, converted, f"backbone:{layout}", strict=False, drop=drop_classifier)
        report.skipped = skipped + report.skipped
        return report
    if hasattr(model, "convert_imagenet_state_dict"):
        converted = model.convert_imagenet_state_dict(state)
        return _load(model, converted, "backbone", strict=False, drop=drop_classifier)
    if hasattr(model, "convert_original_state_dict"):
        converted = model.convert_original_state_dict(state)
        return _load(model, converted, "original", strict=True, drop=drop_classifier)
    sample = ", ".join(list(state)[:5])
    raise CheckpointError(
        f"{_model_name(model)}: unrecognised checkpoint layout in {source} (first keys: {sample})"
    )


def _only_buffers_missing(own: Mapping[str, Tensor], state: Mapping[str, Tensor]) -> bool:
    """True when the keys absent from `state` are only BatchNorm step counters."""
    return all(k.endswith("num_batches_tracked") for k in own if k not in state)


# --------------------------------------------------------------------------------------------
# python -m nets.checkpoint convert OLD NEW
# --------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """``convert OLD NEW``: rewrite a legacy weights file as one the safe reader loads."""
    parser = argparse.ArgumentParser(
        prog="python -m nets.checkpoint",
        description="Rewrite a weights file that the safe reader refuses (a pickled "
        "argparse.Namespace, a whole pickled model) as one it loads. Reads OLD without "
        "running code from it; refused objects are left out, pickled models become state "
        "dicts.",
        allow_abbrev=False,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    convert = commands.add_parser("convert", help="OLD.pth -> NEW.safetensors or NEW.pth")
    convert.add_argument("old", help="the file to convert")
    convert.add_argument("new", help=".safetensors: the weights only; other suffix: torch.save")
    args = parser.parse_args(argv)
    try:
        dropped = convert_checkpoint(args.old, args.new)
    except CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.new}")
    if dropped:
        print(f"left out {len(dropped)} object(s) of refused types: {', '.join(dropped)}")
    return 0


__all__ = [
    "CHECKPOINT_FORMAT",
    "REQUIRED_KEYS",
    "CheckpointError",
    "LoadReport",
    "NonFiniteCheckpointError",
    "build_checkpoint",
    "checkpoint_tensors",
    "convert_checkpoint",
    "describe_non_finite",
    "is_project_checkpoint",
    "load_checkpoint",
    "main",
    "non_finite_tensors",
    "read_checkpoint",
    "read_project_checkpoint",
    "save_checkpoint",
]
