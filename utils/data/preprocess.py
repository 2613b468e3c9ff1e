"""Image preprocessing shared by training, evaluation and inference.

FastSegFormer (Cai et al., Computers and Electronics in Agriculture 217, 108604, 2024)
feeds the network RGB scaled to [0, 1] with no mean/std, letterboxed onto a grey (128)
canvas at 224x224. Every script in this project goes through these functions, so a model
sees the same pixels at training and at deployment. numpy and OpenCV only (no torch): the
deployment path runs without the training stack.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

CLASS_NAMES: tuple[str, ...] = ("background", "sunburn", "ulcer", "wind_scarring")
IGNORE_INDEX = 255
LETTERBOX_FILL = 128


def _voc_palette(n: int = 256) -> np.ndarray:
    """The PASCAL VOC colour map: class k -> RGB, bits of k spread over the channels."""
    palette = np.zeros((n, 3), dtype=np.uint8)
    for k in range(n):
        c, r, g, b = k, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette[k] = (r, g, b)
    return palette


VOC_PALETTE: np.ndarray = _voc_palette()  # (256, 3) uint8: 0 black, 1 (128,0,0), 2 (0,128,0), ...


@dataclass(frozen=True)
class Letterbox:
    """Where a photo sits inside the letterboxed network input."""

    scale: float
    top: int
    left: int
    new_h: int
    new_w: int
    orig_h: int
    orig_w: int


def read_image(path: str | Path) -> np.ndarray:
    """Read a photo as (H, W, 3) uint8 RGB; raise a clear error if it cannot be decoded.

    A truncated or structurally broken file is an error naming it (``file_problem``): decoders
    fill a JPEG's missing end with grey and only print a warning, and a model trained or scored
    on such a photo learns from pixels nobody took.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    data = np.fromfile(str(path), dtype=np.uint8)
    problem = file_problem(data.tobytes()) if data.size else None
    if problem is not None:
        raise ValueError(
            f"cannot decode image {path}: {problem} ({data.size} bytes); expected a complete "
            "photo: copy or export it again, or leave it out of the split files"
        )
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise ValueError(
            f"cannot decode image {path}: expected a readable JPEG/PNG/BMP photo "
            f"({data.size} bytes found)"
        )
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


_TRUNCATED = "truncated {kind}: the file ends before its end marker"
# the next marker after entropy-coded JPEG data: 0xFF not followed by a stuffed 0x00 or a
# restart marker (0xD0-0xD7), fill bytes (0xFF) allowed before it
_JPEG_NEXT_MARKER = re.compile(rb"\xff+[^\x00\xd0-\xd7\xff]")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def file_problem(data: bytes) -> str | None:
    """What is structurally wrong with an encoded JPEG, PNG or BMP file, or None.

    JPEG: the marker segments are walked (their lengths), the entropy-coded data of each scan
    is skipped to the next marker, and the file must reach its end-of-image marker. PNG: the
    chunks are walked to IEND. BMP: the file must be as long as its header says. Other formats
    give None (the decoder alone judges them). Corruption inside compressed data that keeps
    the structure intact is not found here (OpenCV's decoder only prints a warning for it).
    """
    if data[:2] == b"\xff\xd8":
        return _jpeg_problem(data)
    if data[:8] == _PNG_SIGNATURE:
        return _png_problem(data)
    if data[:2] == b"BM" and len(data) >= 6:
        declared = int.from_bytes(data[2:6], "little")
        if declared > len(data):
            return f"truncated BMP: the header says {declared} bytes"
    return None


def _jpeg_problem(data: bytes) -> str | None:
    n, pos = len(data), 2
    truncated = _TRUNCATED.format(kind="JPEG")
    while True:
        if pos >= n:
            return truncated
        if data[pos] != 0xFF:
            return f"corrupt JPEG: no marker at byte {pos}"
        while pos < n and data[pos] == 0xFF:  # fill bytes
            pos += 1
        if pos >= n:
            return truncated
        marker = data[pos]
        pos += 1
        if marker == 0xD9:  # end of image
            return None
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # TEM, restart: no length
            continue
        if pos + 2 > n:
            return truncated
        length = int.from_bytes(data[pos : pos + 2], "big")
        if length < 2:
            return f"corrupt JPEG: segment 0xFF{marker:02X} at byte {pos - 2} has length {length}"
        pos += length
        if pos > n:
            return truncated
        if marker == 0xDA:  # start of scan: entropy-coded data up to the next marker
            found = _JPEG_NEXT_MARKER.search(data, pos)
            if found is None:
                return truncated
            pos = found.start()


def _png_problem(data: bytes) -> str | None:
    n, pos = len(data), 8
    while True:
        if pos + 8 > n:
            return _TRUNCATED.format(kind="PNG")
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8]
        pos += 12 + length  # length, type, data, CRC
        if pos > n:
            return _TRUNCATED.format(kind="PNG")
        if kind == b"IEND":
            return None


def letterbox_geometry(orig_h: int, orig_w: int, size: Sequence[int]) -> Letterbox:
    """Scale that fits (orig_h, orig_w) inside size=(h, w) keeping aspect, centred."""
    h, w = int(size[0]), int(size[1])
    scale = min(h / orig_h, w / orig_w)
    new_h, new_w = max(1, int(orig_h * scale)), max(1, int(orig_w * scale))
    return Letterbox(scale, (h - new_h) // 2, (w - new_w) // 2, new_h, new_w, orig_h, orig_w)


def letterbox(
    image: np.ndarray, size: Sequence[int], fill: int = LETTERBOX_FILL
) -> tuple[np.ndarray, Letterbox]:
    """Bicubic-resize an (H, W, 3) uint8 photo to fit size=(h, w), centred on a grey canvas."""
    box = letterbox_geometry(image.shape[0], image.shape[1], size)
    canvas = np.full((int(size[0]), int(size[1]), 3), fill, dtype=np.uint8)
    resized = cv2.resize(image, (box.new_w, box.new_h), interpolation=cv2.INTER_CUBIC)
    canvas[box.top : box.top + box.new_h, box.left : box.left + box.new_w] = resized
    return canvas, box


def letterbox_mask(mask: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """Nearest-resize an (H, W) index mask like `letterbox`, padding with background (0)."""
    box = letterbox_geometry(mask.shape[0], mask.shape[1], size)
    canvas = np.zeros((int(size[0]), int(size[1])), dtype=mask.dtype)
    # NEAREST_EXACT samples pixel centres like PIL's NEAREST (plain INTER_NEAREST is shifted).
    resized = cv2.resize(mask, (box.new_w, box.new_h), interpolation=cv2.INTER_NEAREST_EXACT)
    canvas[box.top : box.top + box.new_h, box.left : box.left + box.new_w] = resized
    return canvas


def to_tensor(
    image: np.ndarray,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (3, H, W) float32 in [0, 1], then (x - mean) / std if given."""
    x = image.astype(np.float32) * (1.0 / 255.0)
    if mean is not None:
        x -= np.asarray(mean, dtype=np.float32)
    if std is not None:
        x /= np.asarray(std, dtype=np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def softmax(logits: np.ndarray, axis: int = 0) -> np.ndarray:
    """Softmax of float32 `logits` over `axis` (the class axis), numerically stable."""
    e = np.exp(logits - logits.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def unletterbox(maps: np.ndarray, box: Letterbox, channels_last: bool = False) -> np.ndarray:
    """Crop the letterbox padding from (K, h, w) float maps and resize them to the photo size.

    Bilinear with half-pixel centres (cv2.INTER_LINEAR, the original's post-processing: it
    resizes the softmax probabilities with OpenCV before the argmax). Returns (K, H, W) float32,
    or (H, W, K) with `channels_last` (OpenCV's own layout: no copy back, and an argmax over
    the last axis is the fast one).
    """
    crop = maps[:, box.top : box.top + box.new_h, box.left : box.left + box.new_w]
    hwk = np.ascontiguousarray(crop.transpose(1, 2, 0), dtype=np.float32)
    out = cv2.resize(hwk, (box.orig_w, box.orig_h), interpolation=cv2.INTER_LINEAR)
    if out.ndim == 2:  # OpenCV drops a single channel axis
        out = out[:, :, None]
    return out if channels_last else np.ascontiguousarray(out.transpose(2, 0, 1))
