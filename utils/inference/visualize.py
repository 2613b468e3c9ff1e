"""Drawing segmentation results and measuring defect areas on navel-orange photos.

FastSegFormer (Cai et al., Computers and Electronics in Agriculture 217, 108604, 2024)
segments four classes: 0 background, 1 sunburn, 2 ulcer, 3 wind scarring. This module turns a
class mask into pictures and numbers:

- `overlay`: the original predict.py's three `mix_type` styles -- "blend" (photo mixed with the
  colour mask), "mask" (colour mask only), "cutout" (photo pixels of the defects on black),
  with a colour legend (`draw_legend`: each defect class's colour and name) when given the
  class names.
- `fruit_mask`: which pixels belong to the fruit, from colour thresholding (see its docstring).
- `defect_areas`: pixel count and share of each defect class, of the image and of the fruit.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from utils.data.labels import index_to_colour
from utils.data.preprocess import CLASS_NAMES
from utils.fileio import atomic_open, atomic_path

OVERLAY_MODES = ("blend", "mask", "cutout")


def overlay(
    image: np.ndarray,
    mask: np.ndarray,
    mode: str = "blend",
    alpha: float = 0.5,
    class_names: Sequence[str] | None = None,
) -> np.ndarray:
    """Draw a class mask on an (H, W, 3) uint8 RGB photo; returns a new RGB image.

    mode "blend": defect pixels become (1 - alpha) * photo + alpha * class colour; background
    pixels keep the photo (the original blended the whole frame with black, darkening the fruit;
    keeping the photo makes small defects easier to see). "mask": the colour mask alone.
    "cutout": the photo where a defect was found, black elsewhere (the original's mix_type 2).
    With `class_names` (index order, background first) a colour legend is drawn
    (`draw_legend`).
    """
    if mode not in OVERLAY_MODES:
        raise ValueError(f"unknown overlay mode {mode!r}; expected one of {OVERLAY_MODES}")
    if image.shape[:2] != mask.shape[:2]:
        raise ValueError(f"photo {image.shape[:2]} and mask {mask.shape[:2]} sizes differ")
    colour = index_to_colour(mask)
    defect = (mask != 0)[..., None]  # (H, W, 1)
    if mode == "mask":
        drawn = colour
    elif mode == "cutout":
        drawn = np.where(defect, image, 0).astype(np.uint8)
    else:
        mixed = cv2.addWeighted(image, 1.0 - alpha, colour, alpha, 0.0)
        drawn = np.where(defect, mixed, image).astype(np.uint8)
    if class_names is not None:
        draw_legend(drawn, class_names)
    return drawn


@dataclass(frozen=True)
class LegendLayout:
    """Where `draw_legend` draws: the panel (x0, y0, x1, y1) in the bottom-left corner and one
    row per defect class: (class id, name, swatch box (x0, y0, x1, y1), text origin (x, y))."""

    panel: tuple[int, int, int, int]
    rows: list[tuple[int, str, tuple[int, int, int, int], tuple[int, int]]]
    scale: float  # OpenCV font scale
    thickness: int


def legend_layout(image_hw: Sequence[int], class_names: Sequence[str]) -> LegendLayout | None:
    """The legend of every class but 0 (background) on an image of size `image_hw`, or None
    when it would cover more than half of the image's width or height (small images are left
    as they are)."""
    h, w = int(image_hw[0]), int(image_hw[1])
    names = list(class_names)[1:]
    if not names:
        return None
    scale = max(0.35, h / 900)  # about 14 px letters on a 1080-line frame
    thickness = 1 if scale < 0.8 else 2
    sizes = [cv2.getTextSize(n, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)[0] for n in names]
    text_h = max(th for _, th in sizes)
    pad = max(3, text_h // 2)
    row_h = text_h + pad
    panel_w = 3 * pad + text_h + max(tw for tw, _ in sizes) + pad
    panel_h = row_h * len(names) + pad
    if panel_w > w // 2 or panel_h > h // 2:
        return None
    top = h - panel_h
    rows = []
    for k, name in enumerate(names):
        y0 = top + pad + k * row_h
        swatch = (pad, y0, pad + text_h, y0 + text_h)
        rows.append((k + 1, name, swatch, (2 * pad + text_h, y0 + text_h)))
    return LegendLayout((0, top, panel_w, h), rows, scale, thickness)


def draw_legend(image: np.ndarray, class_names: Sequence[str]) -> np.ndarray:
    """Draw the colour legend of the defect classes in the bottom-left corner, in place.

    One row per class but background (class 0): a swatch in the class's VOC palette colour
    (the colours of `overlay` and of the data set's masks) and the class name, white on a
    darkened panel. Left out when it would cover more than half of the image's width or
    height (`legend_layout`). Returns `image`.
    """
    layout = legend_layout(image.shape[:2], class_names)
    if layout is None:
        return image
    x0, y0, x1, y1 = layout.panel
    image[y0:y1, x0:x1] = (image[y0:y1, x0:x1] * 0.3).astype(np.uint8)  # dark under the text
    for k, name, (sx0, sy0, sx1, sy1), origin in layout.rows:
        image[sy0:sy1, sx0:sx1] = index_to_colour(np.array([[k]]))[0, 0]
        cv2.putText(
            image, name, origin, cv2.FONT_HERSHEY_SIMPLEX, layout.scale, (255, 255, 255),
            layout.thickness, cv2.LINE_AA,
        )  # fmt: skip
    return image


def fruit_mask(
    image: np.ndarray,
    mask: np.ndarray | None = None,
    min_saturation: int = 60,
    min_value: int = 40,
) -> np.ndarray:
    """(H, W) bool: pixels that belong to the fruit, found by colour thresholding.

    The paper's photos show one orange on a pale grey/white table; rotated training photos have
    black corners, and letterboxed inputs grey (128) bands. All of those are unsaturated, while
    peel (yellow-green to deep orange) is strongly saturated. So: HSV saturation >= min_saturation
    and value >= min_value (OpenCV's 0-255 scales), united with the predicted defect pixels
    (a defect lies on the fruit even where it is pale, like a sunburn's centre), closed with a
    7x7 ellipse, holes filled, and connected regions smaller than 1% of the largest dropped.
    The photo must be the original one (not the letterboxed network input).
    """
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
    fruit = (hsv[..., 1] >= min_saturation) & (hsv[..., 2] >= min_value)
    if mask is not None:
        fruit |= mask != 0
    fruit_u8 = fruit.astype(np.uint8)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))
    fruit_u8 = cv2.morphologyEx(fruit_u8, cv2.MORPH_CLOSE, kernel)
    contours, _ = cv2.findContours(fruit_u8, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    filled = np.zeros_like(fruit_u8)
    if contours:
        areas = [cv2.contourArea(c) for c in contours]
        keep = [c for c, a in zip(contours, areas, strict=True) if a >= 0.01 * max(areas)]
        cv2.drawContours(filled, keep, -1, 1, thickness=cv2.FILLED)
    out = filled.astype(bool)
    if mask is not None:
        out |= mask != 0  # tiny defect specks dropped with small regions still count as fruit
    return out


def defect_areas(
    mask: np.ndarray,
    num_classes: int,
    fruit_mask: np.ndarray | None = None,
    class_names: Sequence[str] | None = None,
) -> dict:
    """Pixel count and area share of each defect class (every class but 0, background).

    Returns {"image_pixels": int, "fruit_pixels": int | None, "defects": {name: {"pixels": int,
    "image_share": float, "fruit_share": float | None}}, "defect_pixels": int,
    "defect_image_share": float, "defect_fruit_share": float | None}. Shares are fractions in
    [0, 1]. The fruit region is `fruit_mask` united with the defect pixels (a defect is on the
    fruit); without a fruit mask the fruit shares are None. Ignore-index pixels count for nothing.
    """
    mask = np.asarray(mask)
    names = list(class_names) if class_names is not None else _default_names(num_classes)
    if len(names) != num_classes:
        raise ValueError(f"{len(names)} class names given for {num_classes} classes: {names}")
    counts = np.bincount(mask[mask < num_classes].ravel().astype(np.intp), minlength=num_classes)
    image_pixels = int(mask.size)
    fruit_pixels = None
    if fruit_mask is not None:
        if fruit_mask.shape != mask.shape:
            raise ValueError(f"fruit mask {fruit_mask.shape} and class mask {mask.shape} differ")
        fruit_pixels = int(((fruit_mask != 0) | ((mask != 0) & (mask < num_classes))).sum())

    def share(n: int, total: int | None) -> float | None:
        if total is None:
            return None
        return n / total if total > 0 else 0.0

    defects = {
        names[k]: {
            "pixels": int(counts[k]),
            "image_share": share(int(counts[k]), image_pixels),
            "fruit_share": share(int(counts[k]), fruit_pixels),
        }
        for k in range(1, num_classes)
    }
    total = int(counts[1:].sum())
    return {
        "image_pixels": image_pixels,
        "fruit_pixels": fruit_pixels,
        "defects": defects,
        "defect_pixels": total,
        "defect_image_share": share(total, image_pixels),
        "defect_fruit_share": share(total, fruit_pixels),
    }


def _default_names(num_classes: int) -> list[str]:
    if num_classes == len(CLASS_NAMES):
        return list(CLASS_NAMES)
    return [f"class_{k}" for k in range(num_classes)]


def _pct(x: float | None) -> str:
    return "" if x is None else f"{100.0 * x:.3f}"


def area_row(name: str, areas: dict) -> dict[str, object]:
    """One flat CSV row for an image: pixels and shares (in percent) per defect class."""
    row: dict[str, object] = {
        "image": name,
        "image_pixels": areas["image_pixels"],
        "fruit_pixels": "" if areas["fruit_pixels"] is None else areas["fruit_pixels"],
    }
    for cls, a in areas["defects"].items():
        row[f"{cls}_pixels"] = a["pixels"]
        row[f"{cls}_image_pct"] = _pct(a["image_share"])
        row[f"{cls}_fruit_pct"] = _pct(a["fruit_share"])
    row["defect_pixels"] = areas["defect_pixels"]
    row["defect_image_pct"] = _pct(areas["defect_image_share"])
    row["defect_fruit_pct"] = _pct(areas["defect_fruit_share"])
    return row


def write_area_csv(rows: Sequence[dict[str, object]], path: str | Path) -> Path:
    """Write `area_row` rows to a CSV file (columns from the first row), atomically."""
    path = Path(path)
    with atomic_open(path, "w", newline="") as f:
        if rows:
            writer = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
            writer.writeheader()
            writer.writerows(rows)
    return path


def format_areas(name: str, areas: dict) -> str:
    """A short human-readable line per defect class for the console."""
    lines = [f"{name}: fruit {areas['fruit_pixels']} px of {areas['image_pixels']} px"]
    for cls, a in areas["defects"].items():
        fruit = "" if a["fruit_share"] is None else f", {100 * a['fruit_share']:.2f}% of fruit"
        lines.append(
            f"  {cls:<14} {a['pixels']:>8d} px  {100 * a['image_share']:6.2f}% of image{fruit}"
        )
    return "\n".join(lines)


def draw_text(image: np.ndarray, text: str, origin: tuple[int, int] = (8, 24)) -> np.ndarray:
    """Write `text` (e.g. a running FPS) on an RGB image in place, white on a dark outline."""
    scale = max(0.4, image.shape[0] / 640)
    for colour, thick in (((0, 0, 0), 3), ((255, 255, 255), 1)):
        cv2.putText(
            image, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, thick, cv2.LINE_AA
        )
    return image


def save_rgb(path: str | Path, image: np.ndarray) -> Path:
    """Write an (H, W, 3) RGB uint8 image atomically; the format follows the suffix."""
    path = Path(path)
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
            raise OSError(f"cannot write {path}: OpenCV has no writer for {path.suffix!r}")
    return path
