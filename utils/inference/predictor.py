"""The one predictor: photo in, class mask out, on any runtime of utils.deploy.runtimes.

FastSegFormer (Cai et al., Computers and Electronics in Agriculture 217, 108604, 2024) segments
navel-orange defects at 224x224. Every script that runs a trained model -- get_miou.py,
predict.py, the video pipeline and the desktop app -- goes through `Predictor`, so all of them
see the same pixels as training did:

1. `preprocess`: letterbox the RGB photo onto grey (128) at the model's input size, /255, then
   mean/std when the checkpoint says so (utils.data.preprocess, shared with the data set).
2. `infer`: a (B, 3, h, w) float32 batch -> (B, K, h, w) float32 logits, on the chosen backend.
3. `postprocess`: softmax over classes, crop the letterbox padding, bilinear resize to the photo,
   argmax -> (H, W) uint8 class mask (the original's order: probabilities are resized, not ids).

Build one with `Predictor.from_checkpoint` (a project checkpoint rebuilds its model alone; the
original's published weights need `model_name`), `Predictor.from_onnx`, or directly from a model.
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
from nets.registry import build_model, model_from_checkpoint
from utils.data.class_names import default_class_names
from utils.data.preprocess import (
    CLASS_NAMES,
    LETTERBOX_FILL,
    Letterbox,
    letterbox,
    read_image,
    to_tensor,
    unletterbox,
)
from utils.deploy.backends import (
    AUTO,
    AUTO_CANDIDATES,
    INT8_BACKENDS,
    AutoChoice,
    build_backend,
    check_backend_name,
    choose_fastest,
    runtime_available,
)
from utils.deploy.onnx_export import export_copy
from utils.deploy.optimize import ImageCalibrationReader
from utils.deploy.runtimes import OnnxBackend, OpenVinoBackend, TorchBackend, runtime_versions
from utils.deploy.timing import cpu_name
from utils.fileio import write_text
from utils.inference.calibration import calibration_photos


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


class Predictor:
    """Photo -> class mask with the training preprocessing; one object per loaded model.

    Attributes: num_classes, class_names, input_size (h, w), mean, std, fill, backend.
    """

    def __init__(
        self,
        model: torch.nn.Module | None,
        input_size: Sequence[int] | int,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        device: str = "cpu",
        half: bool = False,
        class_names: Sequence[str] | None = None,
        fill: int = LETTERBOX_FILL,
        backend: Any = None,
        num_classes: int | None = None,
    ) -> None:
        if isinstance(input_size, int):
            input_size = (input_size, input_size)
        self.input_size: tuple[int, int] = (int(input_size[0]), int(input_size[1]))
        self.mean = list(mean) if mean is not None else None
        self.std = list(std) if std is not None else None
        self.fill = int(fill)
        self._model = model
        self._device, self._half = device, half
        self.backend_note = ""  # how the backend was chosen (auto), for describe()
        self.calibration_note = ""  # where INT8 calibration photos came from
        self.auto_choice: AutoChoice | None = None
        if backend is None:
            if model is None:
                raise ValueError("Predictor needs a model or a backend")
            _check_fixed_size(model, self.input_size)
            backend = TorchBackend(model, device, half)
            num_classes = num_classes or int(model.num_classes)
        if num_classes is None:
            raise ValueError("Predictor needs num_classes when built from a backend")
        self.backend = backend
        self.num_classes = int(num_classes)
        names = list(class_names) if class_names else default_class_names(self.num_classes)
        if len(names) != self.num_classes:
            raise ValueError(f"{len(names)} class names for {self.num_classes} classes: {names}")
        self.class_names = names
        self.checkpoint: dict | None = None  # the loaded project checkpoint, when there is one

    # ------------------------------------------------------------------ construction
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
    ) -> Predictor:
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
            model, ckpt = model_from_checkpoint(ckpt, map_location="cpu")
            pre = ckpt.get("preprocess") or {}
            size = input_size or ckpt.get("input_size") or model.default_input_size
            _check_fixed_size(model, size)
            predictor = cls(
                model,
                size,
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
        _check_fixed_size(model, size)
        return cls(model.eval(), size, device=device, half=half)

    @classmethod
    def from_onnx(
        cls,
        path: str | Path,
        providers: Sequence[str] | None = None,
        input_size: Sequence[int] | int | None = None,
        class_names: Sequence[str] | None = None,
    ) -> Predictor:
        """Load an ONNX model written by utils.deploy.onnx_export (metadata gives names, mean/std).

        `input_size`, when given, must match a fixed-size ONNX input, else ValueError.
        """
        return cls._from_exported(
            OnnxBackend(path, providers), path, "ONNX", input_size, class_names
        )

    @classmethod
    def from_openvino(
        cls,
        path: str | Path,
        input_size: Sequence[int] | int | None = None,
        class_names: Sequence[str] | None = None,
        threads: int = 0,
    ) -> Predictor:
        """Load an OpenVINO IR (.xml + .bin) written by utils.deploy.openvino_export (fp32 or
        INT8); its metadata gives names and preprocessing, as for ONNX."""
        backend = OpenVinoBackend(path, threads=threads)
        return cls._from_exported(backend, path, "OpenVINO", input_size, class_names)

    @classmethod
    def from_file(
        cls,
        path: str | Path,
        input_size: Sequence[int] | int | None = None,
        threads: int = 0,
    ) -> Predictor:
        """An exported model by its suffix: .onnx (ONNX Runtime) or .xml (OpenVINO IR)."""
        suffix = Path(path).suffix.lower()
        if suffix == ".onnx":
            return cls.from_onnx(path, input_size=input_size)
        if suffix == ".xml":
            return cls.from_openvino(path, input_size=input_size, threads=threads)
        raise ValueError(f"{path}: expected an exported model, .onnx or OpenVINO .xml")

    @classmethod
    def _from_exported(
        cls,
        backend: OnnxBackend | OpenVinoBackend,
        path: str | Path,
        kind: str,
        input_size: Sequence[int] | int | None,
        class_names: Sequence[str] | None,
    ) -> Predictor:
        meta = backend.metadata
        if isinstance(input_size, int):
            input_size = (input_size, input_size)
        file_size = backend.input_size or (
            tuple(meta["input_size"]) if "input_size" in meta else None
        )
        if input_size is not None and file_size is not None and tuple(input_size) != file_size:
            raise ValueError(
                f"{kind} model {path} was exported for {file_size[0]}x{file_size[1]} input, but "
                f"{input_size[0]}x{input_size[1]} was asked for; export it again at that size"
            )
        size = input_size or file_size
        if size is None:
            raise ValueError(f"{kind} model {path} has no fixed input size; pass input_size")
        k = backend.num_classes
        if k is None:
            raise ValueError(f"{kind} model {path}: cannot tell the class count from its output")
        pre = meta.get("preprocess") or {}
        return cls(
            None,
            size,
            mean=pre.get("mean"),
            std=pre.get("std"),
            class_names=class_names or meta.get("class_names"),
            fill=pre.get("fill", LETTERBOX_FILL),
            backend=backend,
            num_classes=int(k),
        )

    # ------------------------------------------------------------------ choosing the runtime
    @property
    def model(self) -> torch.nn.Module | None:
        """The PyTorch model behind this predictor (None for one loaded from an exported file)."""
        return self._model

    def metadata(self) -> dict[str, Any]:
        """What an export writes beside the graph, so the file alone rebuilds this predictor."""
        model = self._model
        return {
            "model": getattr(model, "build_config", None),
            "num_classes": self.num_classes,
            "class_names": self.class_names,
            "input_size": list(self.input_size),
            "preprocess": {"mean": self.mean, "std": self.std, "fill": self.fill},
        }

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
        if self._model is None:
            if name in ("torch", AUTO) or name == getattr(self.backend, "label", None):
                return self
            raise ValueError(
                f"backend {name} needs the PyTorch model (a checkpoint); this predictor runs an "
                f"exported file ({self.describe()})"
            )
        self.backend_note, self.calibration_note, self.auto_choice = "", "", None
        if name == "torch":
            self.backend = TorchBackend(self._model, self._device, self._half)
            return self
        if name == AUTO and torch.device(self._device).type != "cpu":
            self.backend = TorchBackend(self._model, self._device, self._half)
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
            self.backend = build_backend(name, self._model, self.input_size, **common)
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
        record = folder / f"auto_{threads}threads.json" if folder is not None else None
        if record is not None and record.is_file():
            saved = json.loads(record.read_text())
            if saved.get("cpu") == cpu:
                choice = AutoChoice(**saved)
                backend = build_backend(choice.chosen, self._model, self.input_size, **common)
                return backend, choice
        names = [n for n in AUTO_CANDIDATES if runtime_available(n) is None]
        if "ov-int8" in names:  # OpenVINO there: ONNX Runtime is not tried
            names = [n for n in names if n.startswith("ov-")]
        candidates, failed = {}, {}
        for n in names:
            say(f"auto: preparing {n} ...")
            try:
                candidates[n] = build_backend(n, self._model, self.input_size, **common)
            except Exception as e:  # noqa: BLE001 - a model a runtime cannot take: next one
                failed[n] = f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"
        if not candidates:
            candidates["torch"] = TorchBackend(self._model, "cpu")
        inputs = np.stack([self.preprocess(_as_image(p))[0] for p in held_out])
        reference = TorchBackend(export_copy(self._model), "cpu", channels_last=False)(inputs)
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
        for key, tensor in self._model.state_dict().items():
            digest.update(key.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        settings = {
            "meta": self.metadata(),
            "exclude": exclude,
            "calibration": self.calibration_note,
            "versions": runtime_versions(),
        }
        digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
        name = (getattr(self._model, "build_config", None) or {}).get("name", "model")
        return Path(cache_dir).expanduser() / f"{name}_{digest.hexdigest()[:16]}"

    # ------------------------------------------------------------------ the three steps
    def preprocess(self, image_rgb: np.ndarray) -> tuple[np.ndarray, Letterbox]:
        """(H, W, 3) uint8 RGB photo -> ((3, h, w) float32 network input, letterbox geometry)."""
        if image_rgb.ndim != 3 or image_rgb.shape[2] != 3 or image_rgb.dtype != np.uint8:
            raise ValueError(
                f"expected an (H, W, 3) uint8 RGB photo, got {image_rgb.shape} {image_rgb.dtype}"
            )
        boxed, box = letterbox(image_rgb, self.input_size, fill=self.fill)
        return to_tensor(boxed, self.mean, self.std), box

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """(B, 3, h, w) float32 -> (B, K, h, w) float32 logits."""
        logits = self.backend(batch)
        if logits.ndim != 4 or logits.shape[1] != self.num_classes:
            raise ValueError(
                f"model returned shape {logits.shape}, expected (B, {self.num_classes}, h, w)"
            )
        return logits

    def probabilities(self, logits: np.ndarray, box: Letterbox) -> torch.Tensor:
        """(K, h, w) logits -> (K, H, W) class probabilities on the photo's pixel grid."""
        probs = torch.from_numpy(np.ascontiguousarray(logits)).float().softmax(dim=0)
        return unletterbox(probs[None], box)[0]

    def postprocess(self, logits: np.ndarray, box: Letterbox) -> np.ndarray:
        """(K, h, w) logits -> (H, W) uint8 class mask at the photo's size."""
        # numpy's argmax over the class axis: torch's takes ~5x longer on CPU (outer-dim reduce)
        return self.probabilities(logits, box).numpy().argmax(axis=0).astype(np.uint8)

    def predict(self, image_rgb: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 RGB photo -> (H, W) uint8 class mask."""
        x, box = self.preprocess(image_rgb)
        return self.postprocess(self.infer(x[None])[0], box)

    def predict_batch(self, images: Sequence[np.ndarray], batch_size: int = 8) -> list[np.ndarray]:
        """Masks for several photos (any sizes), `batch_size` network inputs at a time."""
        masks: list[np.ndarray] = []
        for start in range(0, len(images), batch_size):
            chunk = [self.preprocess(im) for im in images[start : start + batch_size]]
            logits = self.infer(np.stack([x for x, _ in chunk]))  # (B, K, h, w)
            masks.extend(
                self.postprocess(lg, box) for lg, (_, box) in zip(logits, chunk, strict=True)
            )
        return masks

    def describe(self) -> str:
        """One line naming the backend, device/precision and input size."""
        describe = getattr(self.backend, "describe", None)
        where = describe() if describe is not None else type(self.backend).__name__
        int8 = getattr(self.backend, "label", "").endswith("int8")
        if self.calibration_note and int8:
            where += f", calibrated on {self.calibration_note}"
        if self.backend_note:
            calibrated = f"; INT8 calibrated on {self.calibration_note}" if not int8 else ""
            where += f" [{self.backend_note}{calibrated if self.calibration_note else ''}]"
        h, w = self.input_size
        return f"{where}, input {h}x{w}, {self.num_classes} classes"


def _as_image(item: str | Path | np.ndarray) -> np.ndarray:
    return item if isinstance(item, np.ndarray) else read_image(item)
