"""The one predictor: photo in, class mask out, on PyTorch (CPU/CUDA, fp32/fp16) or ONNX Runtime.

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

import json
from collections.abc import Sequence
from pathlib import Path

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
from utils.preprocess import (
    CLASS_NAMES,
    LETTERBOX_FILL,
    Letterbox,
    letterbox,
    to_tensor,
    unletterbox,
)

ONNX_METADATA_KEY = "fastsegformer"  # ONNX metadata_props entry written by utils.deploy.onnx_export


def default_class_names(num_classes: int) -> list[str]:
    """The paper's four class names, or class_0..class_{K-1} for another class count."""
    if num_classes == len(CLASS_NAMES):
        return list(CLASS_NAMES)
    return [f"class_{k}" for k in range(num_classes)]


def _check_fixed_size(model: torch.nn.Module, size: Sequence[int] | int) -> None:
    """EfficientFormerV2 students only run at their training size (attention biases)."""
    if not getattr(model, "fixed_input_size", False):
        return
    want = model.default_input_size
    h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if (h, w) != (want, want):
        name = getattr(model, "build_config", {}).get("name", type(model).__name__)
        raise ValueError(f"{name} runs only at {want}x{want} input, not {h}x{w}")


class TorchBackend:
    """Runs an nn.Module on CPU or CUDA, in float32 or float16."""

    name = "torch"

    def __init__(self, model: torch.nn.Module, device: str = "cpu", half: bool = False) -> None:
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"device {device!r} asked for, but CUDA is not available here")
        self.dtype = torch.float16 if half else torch.float32
        self.model = model.to(self.device, self.dtype).eval()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device, self.dtype)
        with torch.inference_mode():
            logits = self.model(x)  # (B, K, h, w)
        return logits.float().cpu().numpy()


class OnnxBackend:
    """Runs an exported model with ONNX Runtime (CUDA provider when present, else CPU)."""

    name = "onnxruntime"

    def __init__(self, path: str | Path, providers: Sequence[str] | None = None) -> None:
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"ONNX model not found: {path}")
        if providers is None:
            available = ort.get_available_providers()
            providers = [
                p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available
            ]
        try:
            self.session = ort.InferenceSession(str(path), providers=list(providers))
        except Exception as e:
            raise ValueError(f"cannot load ONNX model {path}: {e}") from e
        self.path = path
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.input_shape = list(inp.shape)  # e.g. [1, 3, 224, 224] or ["batch", 3, 224, 224]
        self.input_dtype = np.float16 if inp.type == "tensor(float16)" else np.float32
        meta = self.session.get_modelmeta().custom_metadata_map.get(ONNX_METADATA_KEY)
        self.metadata: dict = json.loads(meta) if meta else {}

    @property
    def static_batch(self) -> int | None:
        b = self.input_shape[0]
        return b if isinstance(b, int) else None

    @property
    def input_size(self) -> tuple[int, int] | None:
        h, w = self.input_shape[2], self.input_shape[3]
        return (h, w) if isinstance(h, int) and isinstance(w, int) else None

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        if self.input_size is not None and tuple(batch.shape[2:]) != self.input_size:
            raise ValueError(
                f"ONNX model {self.path} takes {self.input_size[0]}x{self.input_size[1]} input, "
                f"got {batch.shape[2]}x{batch.shape[3]}"
            )
        x = batch.astype(self.input_dtype, copy=False)
        if self.static_batch is not None and x.shape[0] != self.static_batch:
            # A fixed-batch export: run the images one static batch at a time.
            n = self.static_batch
            if x.shape[0] % n:
                raise ValueError(f"ONNX model {self.path} has fixed batch {n}, got {x.shape[0]}")
            outs = [
                self.session.run(None, {self.input_name: x[i : i + n]})[0]
                for i in range(0, x.shape[0], n)
            ]
            return np.concatenate(outs).astype(np.float32, copy=False)
        return self.session.run(None, {self.input_name: x})[0].astype(np.float32, copy=False)


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
        b = self.backend
        if isinstance(b, TorchBackend):
            where = f"torch {b.device} {'fp16' if b.dtype == torch.float16 else 'fp32'}"
        else:
            where = f"onnxruntime {b.session.get_providers()[0]} ({b.path.name})"
        h, w = self.input_size
        return f"{where}, input {h}x{w}, {self.num_classes} classes"
