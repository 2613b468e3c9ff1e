"""A PyTorch model behind the Predictor: checkpoints, conversion to the other runtimes, export.

FastSegFormer (Cai et al., Computers and Electronics in Agriculture 217, 108604, 2024) is
trained in PyTorch and deployed on a CPU through ONNX Runtime or OpenVINO. `ModelPredictor` is
the utils.inference.predictor.Predictor of a PyTorch module: it rebuilds the model from a
project checkpoint (or loads the original's published weights), runs it eagerly
(`TorchBackend`), converts it to any backend of utils.deploy.backends (`use_backend`, `auto`:
the fastest that keeps accuracy), and exports it to ONNX or an OpenVINO IR whose metadata lets
the file alone rebuild the predictor on a machine without torch.

The torch side of inference: utils.inference.open_model imports it only for .pth files.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nets.checkpoint import (
    CHECKPOINT_FORMAT,
    CheckpointError,
    is_project_checkpoint,
    load_checkpoint,
    read_checkpoint,
)
from nets.registry import MODELS, build_model, model_from_checkpoint
from utils.data.preprocess import CLASS_NAMES, LETTERBOX_FILL, read_image
from utils.deploy.backends import (
    AUTO,
    AUTO_CANDIDATES,
    INT8_BACKENDS,
    AutoChoice,
    check_backend_name,
    choose_fastest,
    runtime_available,
)
from utils.deploy.build import build_backend
from utils.deploy.onnx_export import ExportReport, export_copy, export_onnx
from utils.deploy.openvino_export import OpenVinoReport, export_openvino
from utils.deploy.optimize import ImageCalibrationReader
from utils.deploy.runtimes import runtime_versions
from utils.deploy.timing import cpu_name
from utils.deploy.torch_runtime import TorchBackend
from utils.fileio import write_text
from utils.inference.calibration import calibration_photos
from utils.inference.predictor import Predictor


def model_names() -> list[str]:
    """The registry's model names (nets.MODELS), for asking which model plain weights hold."""
    return sorted(MODELS)


def _check_fixed_size(model: torch.nn.Module, size: Sequence[int] | int) -> None:
    """ValueError unless `model` can run at `size`: a model with `fixed_input_size` (the
    EfficientFormerV2 students, whose attention biases are sized for one grid) runs only at its
    `default_input_size`."""
    if not getattr(model, "fixed_input_size", False):
        return
    want = model.default_input_size
    h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if (h, w) != (want, want):
        name = getattr(model, "build_config", {}).get("name", type(model).__name__)
        raise ValueError(
            f"{name} runs only at {want}x{want} input, not {h}x{w} (a fixed-size model, e.g. "
            f"EfficientFormerV2's attention biases); use input size {want}"
        )


class ModelPredictor(Predictor):
    """The Predictor of a PyTorch model (eager on `device`, or converted by `use_backend`)."""

    def __init__(
        self,
        model: torch.nn.Module,
        input_size: Sequence[int] | int,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        device: str = "cpu",
        half: bool = False,
        class_names: Sequence[str] | None = None,
        fill: int = LETTERBOX_FILL,
    ) -> None:
        _check_fixed_size(model, input_size)
        backend = TorchBackend(model, device, half)
        super().__init__(backend, input_size, int(model.num_classes), mean, std, class_names, fill)
        self.model = model
        self._device, self._half = device, half

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        device: str = "cpu",
        half: bool = False,
        model_name: str | None = None,
        num_classes: int | None = None,
        input_size: Sequence[int] | int | None = None,
        trust: bool = False,
    ) -> ModelPredictor:
        """Rebuild the model from a project checkpoint, or load the original's published weights.

        A project checkpoint ("format": "fastsegformer-checkpoint/1") carries its model name,
        options, class names, input size and preprocessing. Any other file (the original's full
        model state_dict, a timm layout, a .safetensors state dict, ...) needs `model_name` (and
        `num_classes` when not 4), and is loaded with nets.load_checkpoint. A `num_classes` that
        disagrees with the checkpoint raises ValueError. The file is read without running code
        from it (nets.checkpoint.read_checkpoint) unless `trust` is set; a refused file raises
        CheckpointError (a ValueError) saying how to proceed.
        """
        path = Path(path)
        ckpt = read_checkpoint(path, map_location="cpu", trust=trust)
        if is_project_checkpoint(ckpt):
            saved = ckpt["model"]
            if model_name is not None and model_name != saved["name"]:
                raise ValueError(
                    f"checkpoint {path} holds a {saved['name']} model, but {model_name} was asked "
                    f"for; leave the model name out to use the checkpoint's own"
                )
            if num_classes is not None and int(num_classes) != int(saved["num_classes"]):
                raise ValueError(
                    f"checkpoint {path} is for {saved['num_classes']} classes, but "
                    f"{num_classes} were asked for"
                )
            model, ckpt = model_from_checkpoint(ckpt, map_location="cpu", source=path)
            pre = ckpt.get("preprocess") or {}
            predictor = cls(
                model,
                input_size or ckpt.get("input_size") or model.default_input_size,
                mean=pre.get("mean"),
                std=pre.get("std"),
                device=device,
                half=half,
                class_names=ckpt.get("class_names"),
                fill=pre.get("fill", LETTERBOX_FILL),
            )
            predictor.checkpoint = ckpt
            return predictor

        if model_name is None:
            raise ValueError(
                f"{path} is not a project checkpoint (no 'format': '{CHECKPOINT_FORMAT}' entry); "
                f"for the original's published weights name the model, e.g. "
                f"--model fastsegformer_p [--num-classes K]"
            )
        k = int(num_classes) if num_classes is not None else len(CLASS_NAMES)
        model = build_model(model_name, num_classes=k)
        try:
            report = load_checkpoint(model, ckpt)
        except (KeyError, ValueError, RuntimeError) as e:
            raise CheckpointError(
                f"checkpoint {path} does not fit model {model_name} with {k} classes: {e}"
            ) from e
        if report.missing:
            # e.g. ImageNet backbone weights: the decoder would stay random.
            raise CheckpointError(
                f"checkpoint {path} ({report.layout} layout) leaves {len(report.missing)} "
                f"weights of {model_name} unset (e.g. {report.missing[:3]}); expected a trained "
                f"segmentation model, not backbone-only weights"
            )
        size = input_size or model.default_input_size
        return cls(model.eval(), size, device=device, half=half)

    @classmethod
    def from_registry(cls, name: str, seed: int = 0, **options: Any) -> ModelPredictor:
        """Model `name` of nets.MODELS with random weights (seeded): for speed, not masks."""
        torch.manual_seed(seed)
        model = build_model(name, **options).eval()
        return cls(model, model.default_input_size)

    def metadata(self) -> dict[str, Any]:
        """What an export writes beside the graph, so the file alone rebuilds this predictor."""
        return {**super().metadata(), "model": getattr(self.model, "build_config", None)}

    def use_backend(
        self,
        name: str,
        *,
        calib_data: str | Path | None = None,
        calib_split: str = "train",
        calib_images: int = 64,
        threads: int = 0,
        exclude: str = "head",
        cache_dir: str | Path | None = None,
        log: Callable[[str], None] | None = None,
    ) -> Predictor:
        """Run this predictor's PyTorch model on backend `name` of utils.deploy.backends.

        INT8 backends (and `auto`) calibrate on up to `calib_images` photos of `calib_split` of
        `calib_data`, or on generated synthetic oranges when there is none (`calibration_note`
        says which). `auto` keeps the fastest backend that matches fp32 on held-out photos
        (`auto_choice` holds the timings). With `cache_dir`, converted models (and auto's
        choice, per CPU and thread count) are kept in a folder keyed by the weights and
        settings, and loaded on the next run. Returns self.
        """
        check_backend_name(name)
        say = log or (lambda _text: None)
        self.backend_note, self.calibration_note, self.auto_choice = "", "", None
        if name == "torch":
            if threads > 0 and torch.device(self._device).type == "cpu":
                torch.set_num_threads(threads)  # process-wide: torch has no per-module threads
            self.backend = TorchBackend(self.model, self._device, self._half)
            return self
        if name == AUTO and torch.device(self._device).type != "cpu":
            self.backend = TorchBackend(self.model, self._device, self._half)
            self.backend_note = f"auto: torch on {self._device} (the other backends are CPU-only)"
            return self
        needs_int8 = name in INT8_BACKENDS or name == AUTO
        reader, held_out = None, []
        if needs_int8:
            photos, self.calibration_note = calibration_photos(
                calib_data, calib_split, calib_images
            )
            if name == AUTO:  # keep a quarter (at least 2) out of calibration for the check
                n_out = max(2, len(photos) // 4)
                photos, held_out = photos[:-n_out], photos[-n_out:]
                self.calibration_note += f", {n_out} of them held out to check INT8"
            reader = ImageCalibrationReader(
                photos, self.input_size, "images", self.mean, self.std, self.fill
            )
        folder = self._cache_folder(cache_dir, exclude) if cache_dir else None
        common = {
            "threads": threads,
            "calibration": reader,
            "exclude": exclude,
            "workdir": folder,
            "metadata": self.metadata(),
        }
        if name != AUTO:
            say(f"preparing backend {name} ...")
            self.backend = build_backend(name, self.model, self.input_size, **common)
            return self
        self.backend, self.auto_choice = self._auto(common, held_out, folder, threads, say)
        self.backend_note = self.auto_choice.line()
        return self

    def _auto(
        self,
        common: dict[str, Any],
        held_out: list,
        folder: Path | None,
        threads: int,
        say: Callable[[str], None],
    ) -> tuple[Any, AutoChoice]:
        cpu = cpu_name()
        names = [n for n in AUTO_CANDIDATES if runtime_available(n) is None]
        if "ov-int8" in names:  # OpenVINO there: ONNX Runtime is not tried
            names = [n for n in names if n.startswith("ov-")]
        record = folder / f"auto_{threads}threads.json" if folder is not None else None
        if record is not None and record.is_file():
            saved = json.loads(record.read_text())
            weighed = set(saved.get("agreement", {})) | set(saved.get("rejected", {}))
            # the same CPU model name can have other flags (bf16 or not): the saved choice
            # holds only where the same candidates would be weighed now
            if saved.get("cpu") == cpu and weighed == set(names):
                choice = AutoChoice(**saved)
                backend = build_backend(choice.chosen, self.model, self.input_size, **common)
                return backend, choice
        candidates, failed = {}, {}
        for n in names:
            say(f"auto: preparing {n} ...")
            try:
                candidates[n] = build_backend(n, self.model, self.input_size, **common)
            except Exception as e:  # noqa: BLE001 - a model a runtime cannot take: next one
                failed[n] = f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"
        if not candidates:
            candidates["torch"] = TorchBackend(self.model, "cpu")
        inputs = np.stack([self.preprocess(_as_image(p))[0] for p in held_out])
        reference = TorchBackend(export_copy(self.model), "cpu", channels_last=False)(inputs)
        time.sleep(0.5)  # let PyTorch's worker threads go idle before the runtimes are timed
        say(f"auto: timing {', '.join(candidates)} ...")
        choice = choose_fastest(
            candidates, reference, inputs, self.num_classes, cpu=cpu, threads=threads
        )
        choice.rejected.update(failed)
        if record is not None:
            write_text(record, json.dumps(choice.as_dict(), indent=2))
        return candidates[choice.chosen], choice

    def _cache_folder(self, cache_dir: str | Path, exclude: str) -> Path:
        """cache_dir/<hash of the weights, input size, preprocessing, settings and versions>."""
        digest = hashlib.sha1()
        for key, tensor in self.model.state_dict().items():
            digest.update(key.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        settings = {
            "meta": self.metadata(),
            "exclude": exclude,
            "calibration": self.calibration_note,
            "versions": runtime_versions(),
        }
        digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
        name = (getattr(self.model, "build_config", None) or {}).get("name", "model")
        return Path(cache_dir).expanduser() / f"{name}_{digest.hexdigest()[:16]}"

    # ------------------------------------------------------------------ export
    def export_metadata(self, source: str | Path | None = None) -> dict[str, Any]:
        """metadata() plus where the weights came from (the checkpoint file and its epoch)."""
        ckpt = self.checkpoint or {}
        return {**self.metadata(), "source_checkpoint": str(source), "epoch": ckpt.get("epoch")}

    def export_onnx(
        self, out: str | Path, source: str | Path | None = None, **options: Any
    ) -> ExportReport:
        """Write this model as ONNX (utils.deploy.onnx_export.export_onnx `options`: opset,
        dynamic_batch, half, exporter), checked against PyTorch, with the metadata."""
        return export_onnx(
            self.model,
            out,
            self.input_size,
            metadata=self.export_metadata(source),
            **options,
        )

    def export_openvino(
        self,
        out: str | Path,
        source: str | Path | None = None,
        int8: bool = False,
        calib_data: str | Path | None = None,
        calib_images: int = 64,
        log: Callable[[str], None] | None = None,
    ) -> OpenVinoReport:
        """Write this model as an OpenVINO IR (.xml + .bin), float32 or INT8 (NNCF, calibrated
        on `calib_data`'s train split or generated oranges), checked, with the metadata."""
        metadata = self.export_metadata(source)
        calibration = None
        if int8:
            photos, note = calibration_photos(calib_data, "train", calib_images)
            reader = ImageCalibrationReader(
                photos, self.input_size, "images", self.mean, self.std, self.fill
            )
            calibration = reader.inputs()
            metadata["calibration"] = note
            (log or print)(f"calibrating INT8 on {note}")
        return export_openvino(self.model, out, self.input_size, metadata, calibration=calibration)


def _as_image(item: str | Path | np.ndarray) -> np.ndarray:
    return item if isinstance(item, np.ndarray) else read_image(item)
