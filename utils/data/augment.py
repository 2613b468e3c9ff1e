"""Training augmentation of FastSegFormer (Cai et al. 2024), as its original data loader does it.

One random draw per sample, applied identically to photo and mask:

1. aspect-ratio jitter 0.3 and scale U(0.25, 2) of the network input size;
2. resize: bicubic for the photo, nearest for the mask;
3. horizontal flip with p = 0.5;
4. random placement on a grey (128) canvas of the input size (mask padding = 0, background),
   cropping where the resized photo is larger than the canvas;
5. HSV jitter of the photo: hue x U(0.9, 1.1), saturation x U(0.3, 1.7), value x U(0.7, 1.3),
   through 256-entry lookup tables (OpenCV 8-bit HSV, hue in 0..179).

Evaluation uses `utils.data.preprocess.letterbox` / `letterbox_mask` instead. Everything is OpenCV
or vectorised numpy on uint8 so that two loader workers keep up with training on a CPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from utils.data.preprocess import LETTERBOX_FILL


@dataclass(frozen=True)
class AugmentParams:
    """Strengths of the original augmentation (defaults = the original's values)."""

    jitter: float = 0.3  # aspect ratio x U(1-j, 1+j) / U(1-j, 1+j)
    scale: tuple[float, float] = (0.25, 2.0)  # longer side / input side
    flip: float = 0.5  # probability of a horizontal flip
    hue: float = 0.1  # hue x U(1-hue, 1+hue)
    sat: float = 0.7
    val: float = 0.3
    fill: int = LETTERBOX_FILL  # grey of the canvas


def _uniform(rng: np.random.Generator, a: float, b: float) -> float:
    return float(rng.random() * (b - a) + a)


def hsv_jitter(
    image: np.ndarray, rng: np.random.Generator, hue: float, sat: float, val: float
) -> np.ndarray:
    """Multiply H, S, V of an (H, W, 3) uint8 RGB photo by random gains through lookup tables."""
    gains = rng.uniform(-1.0, 1.0, 3) * np.array([hue, sat, val]) + 1.0
    h, s, v = cv2.split(cv2.cvtColor(image, cv2.COLOR_RGB2HSV))
    x = np.arange(256, dtype=np.float64)
    lut_h = ((x * gains[0]) % 180).astype(np.uint8)
    lut_s = np.clip(x * gains[1], 0, 255).astype(np.uint8)
    lut_v = np.clip(x * gains[2], 0, 255).astype(np.uint8)
    hsv = cv2.merge((cv2.LUT(h, lut_h), cv2.LUT(s, lut_s), cv2.LUT(v, lut_v)))
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def _paste(canvas: np.ndarray, patch: np.ndarray, dy: int, dx: int) -> None:
    """Copy `patch` into `canvas` with its top-left at (dy, dx), clipping both at the borders."""
    ch, cw = canvas.shape[:2]
    ph, pw = patch.shape[:2]
    y0, x0 = max(dy, 0), max(dx, 0)
    y1, x1 = min(dy + ph, ch), min(dx + pw, cw)
    if y1 <= y0 or x1 <= x0:
        return
    canvas[y0:y1, x0:x1] = patch[y0 - dy : y1 - dy, x0 - dx : x1 - dx]


def random_geometry(
    orig_h: int,
    orig_w: int,
    size: Sequence[int],
    rng: np.random.Generator,
    params: AugmentParams = AugmentParams(),
) -> tuple[int, int, int, int, bool]:
    """Draw (new_h, new_w, dy, dx, flip) the way the original loader does."""
    h, w = int(size[0]), int(size[1])
    j = params.jitter
    aspect = orig_w / orig_h * _uniform(rng, 1 - j, 1 + j) / _uniform(rng, 1 - j, 1 + j)
    scale = _uniform(rng, *params.scale)
    if aspect < 1:
        new_h = int(scale * h)
        new_w = int(new_h * aspect)
    else:
        new_w = int(scale * w)
        new_h = int(new_w / aspect)
    new_h, new_w = max(new_h, 1), max(new_w, 1)
    dx = int(_uniform(rng, 0, w - new_w))  # negative when the photo is larger: a crop
    dy = int(_uniform(rng, 0, h - new_h))
    flip = bool(rng.random() < params.flip)
    return new_h, new_w, dy, dx, flip


def random_augment(
    image: np.ndarray,
    mask: np.ndarray,
    size: Sequence[int],
    rng: np.random.Generator,
    params: AugmentParams = AugmentParams(),
) -> tuple[np.ndarray, np.ndarray]:
    """Augment an (H, W, 3) uint8 RGB photo and its (H, W) uint8 mask to size=(h, w).

    Returns (photo (h, w, 3) uint8, mask (h, w) uint8); the same geometry is applied to both.
    """
    h, w = int(size[0]), int(size[1])
    new_h, new_w, dy, dx, flip = random_geometry(image.shape[0], image.shape[1], size, rng, params)
    photo = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_CUBIC)
    label = cv2.resize(mask, (new_w, new_h), interpolation=cv2.INTER_NEAREST_EXACT)
    if flip:
        photo, label = photo[:, ::-1], label[:, ::-1]
    out_photo = np.full((h, w, 3), params.fill, dtype=np.uint8)
    out_label = np.zeros((h, w), dtype=np.uint8)
    _paste(out_photo, photo, dy, dx)
    _paste(out_label, label, dy, dx)
    out_photo = hsv_jitter(out_photo, rng, params.hue, params.sat, params.val)
    return out_photo, out_label
