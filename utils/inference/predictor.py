"""The one predictor: photo in, class mask out, on any runtime of utils.deploy.runtimes.

FastSegFormer (Cai et al., Computers and Electronics in Agriculture 217, 108604, 2024) segments
navel-orange defects at 224x224. Every script that runs a trained model -- get_miou.py,
predict.py, the video pipeline and the desktop app -- goes through `Predictor`, so all of them
see the same pixels as training did:

1. `preprocess`: letterbox the RGB photo onto grey (128) at the model's input size, /255, then
   mean/std when the checkpoint says so (utils.preprocess, shared with the data set).
2. `infer`: a (B, 3, h, w) float32 batch -> (B, K, h, w) float32 logits, on the chosen backend.
3. `postprocess`: softmax over classes, crop the letterbox padding, bilinear resize to the photo,
   argmax -> (H, W) uint8 class mask (the original's order: probabilities are resized, not ids).

Build one with `Predictor.from_checkpoint` (a project checkpoint rebuilds its model alone; the
original's published weights need `model_name`), `Predictor.from_onnx`, or directly from a model.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from utils.deploy.runtimes import OnnxBackend, TorchBackend
from utils.preprocess import (
    CLASS_NAMES,
    LETTERBOX_FILL,
    Letterbox,
    letterbox,
    to_tensor,
    unletterbox,
)

CHECKPOINT_FORMAT = "fastsegformer-checkpoint/1"


def default_class_names(num_classes: int) -> list[str]:
    """The paper's four class names, or class_0..class_{K-1} for another class count."""
    if num_classes == len(CLASS_NAMES):
        return list(CLASS_NAMES)
    return [f"class_{k}" for k in range(num_classes)]


def read_checkpoint(path: str | Path) -> Any:
    """torch.load a checkpoint file on the CPU with clear errors for a missing or foreign file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"checkpoint not found: {path} (expected a .pth written by train.py or the "
            f"original's published weights in model_data/)"
        )
    from nets.checkpoint import read_checkpoint as load_file

    try:
        return load_file(path, map_location="cpu")
    except Exception as e:  # pickle, zip and EOF errors all mean "not a checkpoint"
        raise ValueError(
            f"cannot read checkpoint {path}: not a PyTorch checkpoint file ({type(e).__name__}: "
            f"{e})"
        ) from e


def is_project_checkpoint(obj: Any) -> bool:
    return isinstance(obj, dict) and str(obj.get("format", "")).startswith(
        "fastsegformer-checkpoint/"
    )


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
        backend: TorchBackend | OnnxBackend | None = None,
        num_classes: int | None = None,
    ) -> None:
        if isinstance(input_size, int):
            input_size = (input_size, input_size)
        self.input_size: tuple[int, int] = (int(input_size[0]), int(input_size[1]))
        self.mean = list(mean) if mean is not None else None
        self.std = list(std) if std is not None else None
        self.fill = int(fill)
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
    ) -> Predictor:
        """Rebuild the model from a project checkpoint, or load the original's published weights.

        A project checkpoint ("format": "fastsegformer-checkpoint/1") carries its model name,
        options, class names, input size and preprocessing. Any other file (the original's full
        model state_dict, a timm layout, ...) needs `model_name` (and `num_classes` when not 4),
        and is loaded with nets.load_checkpoint. A `num_classes` that disagrees with the
        checkpoint raises ValueError.
        """
        import nets

        path = Path(path)
        ckpt = read_checkpoint(path)
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
            model, ckpt = nets.model_from_checkpoint(path, map_location="cpu")
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
        model = nets.build_model(model_name, num_classes=k)
        try:
            report = nets.load_checkpoint(model, ckpt)
        except (KeyError, ValueError, RuntimeError) as e:
            raise ValueError(
                f"checkpoint {path} does not fit model {model_name} with {k} classes: {e}"
            ) from e
        if report.missing:
            # e.g. ImageNet backbone weights: the decoder would stay random.
            raise ValueError(
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
        backend = OnnxBackend(path, providers)
        meta = backend.metadata
        if isinstance(input_size, int):
            input_size = (input_size, input_size)
        file_size = backend.input_size or (
            tuple(meta["input_size"]) if "input_size" in meta else None
        )
        if input_size is not None and file_size is not None and tuple(input_size) != file_size:
            raise ValueError(
                f"ONNX model {path} was exported for {file_size[0]}x{file_size[1]} input, but "
                f"{input_size[0]}x{input_size[1]} was asked for; export it again at that size"
            )
        size = input_size or file_size
        if size is None:
            raise ValueError(f"ONNX model {path} has no fixed input size; pass input_size")
        out_shape = backend.session.get_outputs()[0].shape
        k = out_shape[1] if isinstance(out_shape[1], int) else meta.get("num_classes")
        if k is None:
            raise ValueError(f"ONNX model {path}: cannot tell the class count from its output")
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
        h, w = self.input_size
        return f"{where}, input {h}x{w}, {self.num_classes} classes"
