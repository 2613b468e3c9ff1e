"""The one predictor: photo in, class mask out, on any runtime of utils.deploy.

FastSegFormer (Cai et al., Computers and Electronics in Agriculture 217, 108604, 2024) segments
navel-orange defects at 224x224. Every script that runs a trained model -- get_miou.py,
predict.py, the video pipeline, the sorting line and the desktop app -- goes through
`Predictor`, so all of them see the same pixels as training did:

1. `preprocess`: letterbox the RGB photo onto grey (128) at the model's input size, /255, then
   mean/std when the model's file says so (utils.data.preprocess, shared with the data set).
2. `infer`: a (B, 3, h, w) float32 batch -> (B, K, h, w) float32 logits, on the backend.
3. `postprocess`: softmax over classes, crop the letterbox padding, bilinear resize to the photo,
   argmax -> (H, W) uint8 class mask (the original's order: probabilities are resized, not ids).

numpy and OpenCV only: a sorting-line box runs an exported model (.onnx, OpenVINO .xml) with
no torch installed. Open a model file with utils.inference.open_model.open_model (it decides
by the suffix); a PyTorch model is wrapped by utils.inference.model_predictor.ModelPredictor,
which adds converting it to the other runtimes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from utils.data.class_names import default_class_names
from utils.data.preprocess import (
    LETTERBOX_FILL,
    Letterbox,
    letterbox,
    softmax,
    to_tensor,
    unletterbox,
)
from utils.deploy.backends import AutoChoice
from utils.deploy.runtimes import OnnxBackend, OpenVinoBackend


class Predictor:
    """Photo -> class mask with the training preprocessing; one object per loaded model.

    `backend` is a runtime of utils.deploy ((B, 3, h, w) float32 -> (B, K, h, w) float32).
    Attributes: num_classes, class_names, input_size (h, w), mean, std, fill, backend, model
    (None here; the PyTorch module in a ModelPredictor), checkpoint (the loaded project
    checkpoint, or None), file_metadata (an exported file's metadata, or {}).
    """

    model: Any = None
    checkpoint: dict | None = None

    def __init__(
        self,
        backend: Any,
        input_size: Sequence[int] | int,
        num_classes: int,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        class_names: Sequence[str] | None = None,
        fill: int = LETTERBOX_FILL,
    ) -> None:
        if isinstance(input_size, int):
            input_size = (input_size, input_size)
        self.input_size: tuple[int, int] = (int(input_size[0]), int(input_size[1]))
        self.mean = list(mean) if mean is not None else None
        self.std = list(std) if std is not None else None
        self.fill = int(fill)
        self.backend = backend
        self.num_classes = int(num_classes)
        names = list(class_names) if class_names else default_class_names(self.num_classes)
        if len(names) != self.num_classes:
            raise ValueError(f"{len(names)} class names for {self.num_classes} classes: {names}")
        self.class_names = names
        self.backend_note = ""  # how the backend was chosen (auto), for describe()
        self.calibration_note = ""  # where INT8 calibration photos came from
        self.auto_choice: AutoChoice | None = None
        self.file_metadata: dict[str, Any] = {}

    # ------------------------------------------------------------------ exported files
    @classmethod
    def from_exported(
        cls,
        path: str | Path,
        input_size: Sequence[int] | int | None = None,
        threads: int = 0,
        precision: str = "f32",
    ) -> Predictor:
        """An exported model by its suffix: .onnx (ONNX Runtime) or .xml (OpenVINO IR, fp32 or
        INT8), written by utils.deploy.onnx_export / openvino_export: the file's metadata gives
        the input size, class names and preprocessing. `input_size`, when given, must match a
        fixed-size input, else ValueError. `threads` > 0: the runtime's CPU threads.
        `precision`: OpenVINO's inference precision of an IR's float ops ("f32" or "bf16")."""
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix == ".onnx":
            backend: Any = OnnxBackend(path, threads=threads)
            kind = "ONNX"
        elif suffix == ".xml":
            backend = OpenVinoBackend(path, threads=threads, precision=precision)
            kind = "OpenVINO"
        else:
            raise ValueError(f"{path}: expected an exported model, .onnx or OpenVINO .xml")
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
        predictor = cls(
            backend,
            size,
            int(k),
            mean=pre.get("mean"),
            std=pre.get("std"),
            class_names=meta.get("class_names"),
            fill=pre.get("fill", LETTERBOX_FILL),
        )
        predictor.file_metadata = dict(meta)
        return predictor

    def metadata(self) -> dict[str, Any]:
        """What an export writes beside the graph, so the file alone rebuilds this predictor."""
        return {
            "model": self.file_metadata.get("model"),
            "num_classes": self.num_classes,
            "class_names": self.class_names,
            "input_size": list(self.input_size),
            "preprocess": {"mean": self.mean, "std": self.std, "fill": self.fill},
        }

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

    def probabilities(self, logits: np.ndarray, box: Letterbox) -> np.ndarray:
        """(K, h, w) logits -> (K, H, W) float32 class probabilities on the photo's pixel grid."""
        return unletterbox(softmax(np.asarray(logits, dtype=np.float32), axis=0), box)

    def postprocess(self, logits: np.ndarray, box: Letterbox) -> np.ndarray:
        """(K, h, w) logits -> (H, W) uint8 class mask at the photo's size."""
        probs = softmax(np.asarray(logits, dtype=np.float32), axis=0)
        return unletterbox(probs, box, channels_last=True).argmax(axis=-1).astype(np.uint8)

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
