"""Segmentation masks: reading every format users have, converting, and checking them.

The FastSegFormer data set (Orange_Navel_1.5k, Cai et al. 2024) stores one PNG per photo in
``SegmentationClass/`` whose pixel values are class ids (0 background, 1 sunburn, 2 ulcer,
3 wind scarring). Masks found in the wild are not that uniform, so `read_mask` accepts:

- 8-bit palette ("P") PNGs: the palette indices are the class ids (VOC convention);
- greyscale ("L", "I;16", "LA") PNGs whose values are the class ids;
- RGB / RGBA PNGs drawn in the PASCAL VOC palette colours ((0,0,0), (128,0,0), (0,128,0),
  (128,128,0), ...): converted to class ids; the alpha channel is ignored.

and stops with a `MaskError` naming the file, what was found and what was expected for what
would otherwise become silently wrong labels: a binary 0/255 mask (all defects would become
"ignore"), colours outside the palette (anti-aliased or hand-picked colours), a colour mask
converted to greyscale, a file that is not an image, and any value that is not a class
(>= num_classes) other than 255, the ignore index. The original code turned such values into
"ignore" without a word, so a mask of classes 4, 5 and 7 trained to a perfect score with four
classes; this project refuses them (docs/data.md).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from utils.data.preprocess import IGNORE_INDEX, VOC_PALETTE
from utils.fileio import write_bytes

# A 0/255 mask is "binary" (not a VOC mask with a thin 255 border) when its 255 pixels contain
# a solid block this wide: VOC ignore borders are about 5 px wide, defect blobs are solid.
_BINARY_SOLID_KERNEL = 7


class MaskError(ValueError):
    """A mask file that cannot be turned into correct class ids; the message says why."""


def _colour_keys(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 -> (...) int32 key r << 16 | g << 8 | b."""
    rgb = rgb.astype(np.int32)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def _describe_colours(keys: np.ndarray, counts: np.ndarray, limit: int = 6) -> str:
    order = np.argsort(-counts)[:limit]
    parts = []
    for i in order:
        k = int(keys[i])
        parts.append(f"({k >> 16},{(k >> 8) & 255},{k & 255}) x{int(counts[i])}")
    more = f", ... {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(parts) + more


def expected_colours(num_classes: int) -> str:
    """'0=(0,0,0), 1=(128,0,0), ...' for error messages."""
    n = min(num_classes, 256)
    return ", ".join(f"{k}=({','.join(str(int(c)) for c in VOC_PALETTE[k])})" for k in range(n))


# Every VOC palette channel value is a multiple of 32 (the 8 bits of k spread over the top
# three bits of R, G, B), so a colour maps to a 9-bit code and one 512-entry table finds k.
_CODE_TO_INDEX = np.full(512, -1, dtype=np.int16)
_CODE_TO_INDEX[
    (VOC_PALETTE[:, 0] >> 5).astype(int) << 6
    | (VOC_PALETTE[:, 1] >> 5).astype(int) << 3
    | (VOC_PALETTE[:, 2] >> 5).astype(int)
] = np.arange(256)


def colour_to_index(
    rgb: np.ndarray, source: str | Path = "<array>", num_classes: int = 256
) -> np.ndarray:
    """(H, W, 3) uint8 VOC-palette colours -> (H, W) uint8 class ids.

    Every one of the 256 VOC palette colours maps to its index (so the VOC boundary colour
    (224,224,192) becomes 255, ignore); any other colour raises `MaskError` naming `source`.
    """
    rgb = np.ascontiguousarray(rgb[..., :3], dtype=np.uint8)
    on_grid = ((rgb & 31) == 0).all(axis=-1)  # (H, W) channel values multiples of 32
    code = (rgb[..., 0].astype(np.int16) >> 5) << 6 | (rgb[..., 1] >> 5) << 3 | (rgb[..., 2] >> 5)
    index = _CODE_TO_INDEX[code]  # (H, W) int16, -1 where not a palette colour
    bad = ~on_grid | (index < 0)
    if bad.any():
        keys, counts = np.unique(_colour_keys(rgb[bad]), return_counts=True)
        raise MaskError(
            f"{source}: colour mask has {int(bad.sum())} pixels in colours outside the "
            f"VOC palette: {_describe_colours(keys, counts)}; expected only palette "
            f"colours {expected_colours(num_classes)} (255=(224,224,192) ignore). Anti-aliased "
            "edges or hand-picked colours cause this: redraw without smoothing, or save an "
            "index/palette PNG."
        )
    return index.astype(np.uint8)


def index_to_colour(mask: np.ndarray) -> np.ndarray:
    """(H, W) class ids -> (H, W, 3) uint8 VOC palette colours (255, ignore, is the VOC border
    colour); the colours of the data set's masks, used for every drawing of a mask."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"expected an (H, W) class mask, got shape {mask.shape}")
    return VOC_PALETTE[np.clip(mask, 0, len(VOC_PALETTE) - 1).astype(np.intp)]


def _is_binary_mask(mask: np.ndarray, counts: np.ndarray) -> bool:
    """Only 0 and 255 present, and the 255 pixels form solid areas (not a thin ignore border)."""
    present = np.flatnonzero(counts)
    if counts[255] == 0 or not set(present.tolist()) <= {0, 255}:
        return False
    if counts[255] >= 0.05 * mask.size:
        return True
    k = _BINARY_SOLID_KERNEL
    core = cv2.erode((mask == 255).astype(np.uint8), np.ones((k, k), np.uint8))
    return bool(core.any())


# Greyscale luminance (ITU-R 601, as PIL's convert("L")) of VOC colours 1..: what a colour
# mask becomes when someone converts it to greyscale. (0,0,0) stays 0.
_VOC_LUMA = np.round(VOC_PALETTE.astype(np.float64) @ np.array([0.299, 0.587, 0.114])).astype(int)

# Grey levels g for which (g, g, g) is itself a VOC palette colour (0, 64, 128, 192, ...).
_VOC_GREY_LEVELS = np.array(sorted({int(c[0]) for c in VOC_PALETTE if c[0] == c[1] == c[2]}))


def check_class_range(
    mask: np.ndarray,
    num_classes: int,
    source: str | Path = "<array>",
    counts: np.ndarray | None = None,
) -> None:
    """Raise `MaskError` naming `source`, the values and their pixel counts when `mask` holds
    a value >= num_classes other than 255 (ignore). `counts`: its bincount, if already made."""
    if num_classes >= IGNORE_INDEX:
        return
    counts = np.bincount(mask.ravel(), minlength=256) if counts is None else counts
    present = np.flatnonzero(counts)
    above = present[(present >= num_classes) & (present != IGNORE_INDEX)]
    if above.size:
        found = ", ".join(f"{int(v)} ({int(counts[v])} px)" for v in above[:8])
        more = f", ... {above.size - 8} more" if above.size > 8 else ""
        raise MaskError(
            f"{source}: values {found}{more} are not classes of --num-classes {num_classes}; "
            f"expected class ids 0..{num_classes - 1} or 255 (ignore). If they are classes, use "
            f"--num-classes {int(above.max()) + 1}; if those pixels should not count, set them "
            "to 255 (values >= num_classes are refused, not ignored as in the original code)"
        )


def check_index_mask(mask: np.ndarray, num_classes: int, source: str | Path = "<array>") -> None:
    """Raise `MaskError` for index masks that would silently give wrong labels.

    - binary 0/255 masks (every defect would become ignore);
    - colour masks converted to greyscale (values 38, 75, 113, ... instead of 1, 2, 3);
    - any other value >= num_classes but 255 (`check_class_range`).
    """
    if num_classes >= IGNORE_INDEX:
        return
    counts = np.bincount(mask.ravel(), minlength=256)
    if _is_binary_mask(mask, counts):
        raise MaskError(
            f"{source}: looks like a 0/255 binary mask ({int(counts[255])} px of 255 forming "
            f"solid areas, {int(counts[0])} px of 0); expected class ids 0..{num_classes - 1} "
            f"(255 = ignore). Convert it with `python voc_annotation.py --binary-class NAME` "
            f"(or --binary-to-index CLASS_ID), or save it with class ids instead of 255."
        )
    present = np.flatnonzero(counts)
    above = present[(present >= num_classes) & (present != IGNORE_INDEX)]
    within = present[(present > 0) & (present < num_classes)]
    luma = set(_VOC_LUMA[1:num_classes].tolist())
    if above.size and within.size == 0 and set(above.tolist()) <= luma:
        names = ", ".join(
            f"{int(v)}->class {int(np.flatnonzero(v == _VOC_LUMA[1:num_classes])[0]) + 1}"
            for v in above
        )
        raise MaskError(
            f"{source}: values {sorted(above.tolist())} are the grey levels of VOC palette colours "
            f"({names}): this looks like a colour mask converted to greyscale; expected class ids "
            f"0..{num_classes - 1}. Re-export the original colour mask or an index PNG."
        )
    check_class_range(mask, num_classes, source, counts)


def read_mask(path: str | Path, num_classes: int = 256) -> np.ndarray:
    """Read a mask PNG of any supported kind as (H, W) uint8 class ids (not yet ignore-mapped).

    Raises `MaskError` (a ValueError) naming the file for unreadable files, colours outside the
    VOC palette, binary 0/255 masks, greyscale-converted colour masks and values >= num_classes
    other than 255 (the default 256 checks none of the last three).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"mask not found: {path}")
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            array = np.asarray(im)
    except Exception as err:  # PIL raises many types for broken files
        raise MaskError(f"{path}: cannot read mask image ({err}); expected a PNG mask") from err

    if mode in ("P", "L"):
        mask = array.astype(np.uint8, copy=False)
    elif mode == "LA":
        mask = array[..., 0].astype(np.uint8, copy=False)
    elif mode == "1":
        mask = array.astype(np.uint8) * 255  # bilevel: its "on" pixels are 255 in a viewer
    elif mode in ("I", "I;16", "I;16B", "I;16L"):
        if array.size and (array.min() < 0 or array.max() > 255):
            raise MaskError(
                f"{path}: 16/32-bit mask with values {int(array.min())}..{int(array.max())}; "
                "expected class ids 0..255"
            )
        mask = array.astype(np.uint8)
    elif mode in ("RGB", "RGBA"):
        rgb = array[..., :3]
        grey = (rgb[..., 0] == rgb[..., 1]) & (rgb[..., 1] == rgb[..., 2])
        if grey.all():
            # An index (or 0/255) mask saved as RGB: grey levels that are not VOC colours are
            # read as values; (0,0,0), (128,128,128), ... stay palette colours.
            levels = np.unique(rgb[..., 0])
            if not np.isin(levels, _VOC_GREY_LEVELS).all():
                mask = rgb[..., 0].copy()
                check_index_mask(mask, num_classes, path)
                return mask
        mask = colour_to_index(rgb, path, num_classes)
        check_class_range(mask, num_classes, path)
        return mask
    else:
        raise MaskError(
            f"{path}: unsupported mask image mode {mode!r}; expected a palette (P), greyscale "
            "(L) index PNG or an RGB/RGBA PNG in VOC palette colours"
        )
    if mask.ndim != 2:
        raise MaskError(f"{path}: mask array has shape {mask.shape}; expected (H, W)")
    check_index_mask(mask, num_classes, path)
    return mask


def binary_to_index(path: str | Path, class_id: int) -> np.ndarray | None:
    """(H, W) uint8 class ids from a 0/255 binary mask file (255 -> `class_id`, 0 -> 0), or
    None when the file holds other values (it is not a binary mask)."""
    with Image.open(path) as im:
        array = np.asarray(im.convert("L"))
    values = set(np.unique(array).tolist())
    if not values <= {0, 255}:
        return None
    return np.where(array == 255, class_id, 0).astype(np.uint8)


def save_index_mask(path: str | Path, mask: np.ndarray) -> Path:
    """Write (H, W) class ids as an 8-bit palette PNG with the VOC palette (VOC convention),
    atomically (a temporary file, then a replace: a mask rewritten in place is never half
    written)."""
    path = Path(path)
    if mask.ndim != 2:
        raise ValueError(f"mask for {path} has shape {mask.shape}; expected (H, W)")
    image = Image.fromarray(mask.astype(np.uint8), mode="P")
    image.putpalette(VOC_PALETTE.reshape(-1).tolist())
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=False)
    return write_bytes(path, buf.getvalue())


def check_sizes(
    image_shape: Sequence[int], mask_shape: Sequence[int], image_path, mask_path
) -> None:
    """Raise `MaskError` naming both files if a mask's (H, W) differs from its photo's."""
    if tuple(image_shape[:2]) != tuple(mask_shape[:2]):
        raise MaskError(
            f"{mask_path}: mask is {mask_shape[1]}x{mask_shape[0]} (WxH) but its photo "
            f"{image_path} is {image_shape[1]}x{image_shape[0]}; expected the same size. "
            "Resize the mask with nearest-neighbour interpolation (never bilinear)."
        )


def class_histogram(mask: np.ndarray, num_classes: int) -> np.ndarray:
    """Pixel count per class 0..num_classes-1, then one entry for ignored (255, and any other
    value >= num_classes)."""
    counts = np.bincount(mask.ravel(), minlength=256)
    return np.concatenate([counts[:num_classes], [counts[num_classes:].sum()]]).astype(np.int64)
