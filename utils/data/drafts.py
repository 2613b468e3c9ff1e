"""Drafts for a person to correct: class masks -> labelme shapes and COCO annotations.

Pre-annotation (docs/data.md, "Pre-annotation"): a trained FastSegFormer (Cai et al., Computers
and Electronics in Agriculture 217, 108604, 2024) predicts the masks of new photos, and this
module writes them in the formats people correct masks in. The drafts are written so that this
project's readers (`utils.data.labelme`, `utils.data.coco`, i.e. ``voc_annotation.py
--from-labelme / --from-coco``) paint them back into the same mask.

**Regions.** A region is one 8-connected area of one class other than background (background is
never a region of its own). A hole is a 4-connected area inside a region's outline that is not
the region (OpenCV's contour convention: regions 8-connected, holes 4-connected). Regions under
`min_area` pixels are left out (their pixels take the class that surrounds them in the
drawing), and so are holes under it (they take the region's class). Regions are listed in
painting order: one inside another's hole comes after it. (A region's filled outline is smaller
than that of every region whose hole holds it, so sorting by it, largest first, does that.)

**labelme** has no hole type: its ``shapes_to_label`` (and `utils.data.labelme.paint_shapes`)
paints shapes in file order, a later one over an earlier one. A region is a polygon through the
centres of its boundary pixels (OpenCV's contour), which labelme's rasteriser (PIL: fill plus a
1-pixel outline) turns back into exactly those pixels; each hole is a polygon labelled with the
background class's name, written right after its region, so that painting in file order clears
it again. A hole that the regions written after it cover completely is not written.

**COCO** holds one annotation per region, its category id the class id. pycocotools counts a
pixel in when its centre is inside the polygon, with coordinates on pixel edges (pixel (x, y)
spans x..x+1, y..y+1), so a polygon through the boundary pixel centres would lose half of every
boundary pixel. The polygon a quarter pixel outside them (traced on the region upsampled by two)
gives back exactly the region. A COCO polygon cannot hold a hole (the parts of a polygon
segmentation are merged as a union), so a region with a hole, or with a region drawn inside it,
is a compressed RLE of the pixels it keeps (pycocotools); ``rle=True`` writes every region so.

`tolerance` (pixels) simplifies polygons with Douglas-Peucker (``cv2.approxPolyDP``): fewer
points to drag in the annotation tool, at most that far from the exact outline. 0 keeps every
corner of the pixel outline and gives back the exact mask.

Imports numpy, OpenCV and, for RLE only, pycocotools: no torch, so it runs where only an
exported model does.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from utils.data.coco import mask_api

LABELME_VERSION = "5.5.0"  # the labelme file format written (labelme 5 and later read it)
POLYGON = "polygon"  # the labelme shape type of every draft shape


@dataclass(eq=False)  # holds arrays: compared by identity
class Region:
    """One region of a draft: its class, outline and written holes, and the pixels it keeps."""

    class_id: int
    outline: np.ndarray  # (N, 2) int32 x, y: the centres of its boundary pixels, in order
    holes: list[np.ndarray]  # the holes written as background, each like `outline`
    box: tuple[int, int, int, int]  # x, y, w, h of the outline's bounding box
    pixels: np.ndarray  # (h, w) bool inside `box`: what the region holds once all is painted

    @property
    def area(self) -> int:
        """Pixels the region holds in the finished drawing."""
        return int(self.pixels.sum())

    @property
    def plain(self) -> bool:
        """True when it holds its whole outline: no hole, nothing painted over it."""
        return not self.holes and _filled_equal(self)


@dataclass(eq=False)  # holds arrays: compared by identity
class Draft:
    """The regions of one predicted mask, and the mask they paint."""

    regions: list[Region]  # in painting order
    mask: np.ndarray  # (H, W) uint8 class ids: what the regions paint (min_area applied)
    dropped: int  # pixels whose class differs from the input mask: regions and holes < min_area

    @property
    def hw(self) -> tuple[int, int]:
        return int(self.mask.shape[0]), int(self.mask.shape[1])


def _filled_equal(region: Region) -> bool:
    x, y, _, _ = region.box
    inside = np.zeros(region.pixels.shape, np.uint8)
    cv2.drawContours(inside, [region.outline], -1, 1, cv2.FILLED, offset=(-x, -y))
    return bool(np.array_equal(inside.astype(bool), region.pixels))


def _check_mask(mask: Any, num_classes: int) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 2 or not np.issubdtype(mask.dtype, np.integer):
        raise ValueError(f"expected an (H, W) integer class mask, got {mask.shape} {mask.dtype}")
    if num_classes < 2:
        raise ValueError(f"num_classes {num_classes}: need background and at least one class")
    return mask


@dataclass(eq=False)  # holds arrays: compared by identity
class _Component:
    """One 8-connected area of one class, before the painting order is known."""

    class_id: int
    outline: np.ndarray  # (N, 2) int32 x, y of its boundary pixel centres
    own: np.ndarray  # (h, w) bool: its pixels inside `box`
    box: tuple[int, int, int, int]  # x, y, w, h
    filled: int  # pixels inside its outline, holes included


def _components(mask: np.ndarray, num_classes: int, min_area: int) -> list[_Component]:
    found = []
    for class_id in range(1, num_classes):
        binary = (mask == class_id).astype(np.uint8)
        if not binary.any():
            continue
        n, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
        for i in range(1, n):
            x, y, w, h, area = (int(v) for v in stats[i])
            if area < min_area:
                continue
            own = labels[y : y + h, x : x + w] == i
            contours, _ = cv2.findContours(
                own.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE, offset=(x, y)
            )
            outline = max(contours, key=len)[:, 0, :].astype(np.int32)  # one per component
            inside = np.zeros((h, w), np.uint8)
            cv2.drawContours(inside, [outline], -1, 1, cv2.FILLED, offset=(-x, -y))
            found.append(_Component(class_id, outline, own, (x, y, w, h), int(inside.sum())))
    return found


def _holes(gaps: np.ndarray, later: np.ndarray, min_area: int) -> list[np.ndarray]:
    """Outlines (local x, y) of the 4-connected areas of `gaps` to write as background: those of
    `min_area` pixels or more that the regions painted later (`later`) do not cover."""
    holes = []
    n, labels, stats, _ = cv2.connectedComponentsWithStats(gaps.astype(np.uint8), connectivity=4)
    for j in range(1, n):
        x, y, w, h, area = (int(v) for v in stats[j])
        hole = labels[y : y + h, x : x + w] == j
        if area < min_area or later[y : y + h, x : x + w][hole].all():
            continue
        contours, _ = cv2.findContours(
            hole.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE, offset=(x, y)
        )
        holes.append(max(contours, key=len)[:, 0, :].astype(np.int32))
    return holes


def draft_regions(mask: np.ndarray, num_classes: int, min_area: int = 0) -> Draft:
    """The regions of a (H, W) class mask, in painting order (module docstring).

    Values >= `num_classes` are treated as background. `min_area` in pixels (0 keeps all).
    """
    mask = _check_mask(mask, num_classes)
    found = _components(mask, num_classes, min_area)
    found.sort(key=lambda c: -c.filled)  # a region inside another's hole is painted after it
    turn = np.full(mask.shape, -1, np.int32)  # when a pixel's own region is painted (-1: none)
    for index, comp in enumerate(found):
        x, y, w, h = comp.box
        turn[y : y + h, x : x + w][comp.own] = index
    owner = np.full(mask.shape, -1, np.int32)  # the region painted last on a pixel (-1: none)
    regions: list[Region] = []
    for index, comp in enumerate(found):
        x, y, w, h = comp.box
        window = owner[y : y + h, x : x + w]  # a view: drawing on it paints `owner`
        cv2.drawContours(window, [comp.outline], -1, index, cv2.FILLED, offset=(-x, -y))
        gaps = (window == index) & ~comp.own
        holes = _holes(gaps, turn[y : y + h, x : x + w] > index, min_area) if gaps.any() else []
        cv2.drawContours(window, holes, -1, -1, cv2.FILLED)
        shift = np.array([x, y], np.int32)
        regions.append(
            Region(comp.class_id, comp.outline, [e + shift for e in holes], comp.box, comp.own)
        )
    classes = np.array([r.class_id for r in regions] + [0], np.uint8)  # owner -1: background
    painted = classes[owner]
    for index, region in enumerate(regions):
        x, y, w, h = region.box
        region.pixels = owner[y : y + h, x : x + w] == index
    clean = np.where(mask < num_classes, mask, 0)
    return Draft(regions, painted, int((painted != clean).sum()))


# ------------------------------------------------------------------------------ polygons


def simplify(contour: np.ndarray, tolerance: float) -> np.ndarray:
    """(N, 2) contour with Douglas-Peucker at `tolerance` pixels (0: as it is)."""
    if tolerance <= 0 or len(contour) < 4:
        return contour
    return cv2.approxPolyDP(contour.reshape(-1, 1, 2), float(tolerance), True)[:, 0, :]


def _points(contour: np.ndarray) -> list[list[float]]:
    points = [[float(x), float(y)] for x, y in contour]
    while len(points) < 3:  # a one-pixel region or a straight one-pixel line: PIL draws it
        points.append(list(points[len(points) % len(contour)]))
    return points


def _labelme_shape(label: str, contour: np.ndarray) -> dict[str, Any]:
    return {
        "label": label,
        "points": _points(contour),
        "group_id": None,
        "description": "",
        "shape_type": POLYGON,
        "flags": {},
        "mask": None,
    }


def labelme_shapes(
    draft: Draft, class_names: Sequence[str], tolerance: float = 0.0
) -> list[dict[str, Any]]:
    """labelme polygon shapes of `draft` in painting order; holes labelled `class_names[0]`."""
    shapes = []
    for region in draft.regions:
        shapes.append(
            _labelme_shape(class_names[region.class_id], simplify(region.outline, tolerance))
        )
        for hole in region.holes:
            shapes.append(_labelme_shape(class_names[0], simplify(hole, tolerance)))
    return shapes


def labelme_image_path(photo: str | Path, json_path: str | Path) -> str:
    """`photo` relative to the folder of `json_path`, with forward slashes (labelme's
    imagePath)."""
    relative = os.path.relpath(Path(photo).absolute(), Path(json_path).absolute().parent)
    return Path(relative).as_posix()


def labelme_document(
    shapes: list[dict[str, Any]],
    image_path: str,
    hw: tuple[int, int],
    image_data: bytes | None = None,
) -> dict[str, Any]:
    """A labelme file: its shapes, the photo by `image_path` (relative to the JSON file), the
    photo's size, and the photo's bytes embedded only when `image_data` is given."""
    return {
        "version": LABELME_VERSION,
        "flags": {},
        "shapes": shapes,
        "imagePath": image_path,
        "imageData": base64.b64encode(image_data).decode("ascii") if image_data else None,
        "imageHeight": int(hw[0]),
        "imageWidth": int(hw[1]),
    }


# ------------------------------------------------------------------------------ COCO


def coco_categories(class_names: Sequence[str]) -> list[dict[str, Any]]:
    """One category per class but background; its id is the class id."""
    return [
        {"id": k, "name": name, "supercategory": "defect"}
        for k, name in enumerate(class_names)
        if k > 0
    ]


def _coco_polygon(region: Region, tolerance: float) -> list[float]:
    x, y, _, _ = region.box
    up = np.repeat(np.repeat(region.pixels.astype(np.uint8), 2, axis=0), 2, axis=1)
    contours, _ = cv2.findContours(up, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    edge = simplify(max(contours, key=len)[:, 0, :], 2 * tolerance)
    # upsampled pixel u has its centre at u / 2 + 0.25 in pixel-edge coordinates
    xy = edge.astype(np.float64) / 2 + 0.25 + np.array([x, y])
    while len(xy) < 3:
        xy = np.concatenate([xy, xy[:1]])
    return [round(float(v), 2) for v in xy.reshape(-1)]


def _coco_rle(region: Region, hw: tuple[int, int]) -> dict[str, Any]:
    api = mask_api("COCO RLE drafts")
    x, y, w, h = region.box
    full = np.zeros(hw, np.uint8, order="F")
    full[y : y + h, x : x + w] = region.pixels
    rle = api.encode(full)
    return {"size": [int(hw[0]), int(hw[1])], "counts": rle["counts"].decode("ascii")}


def _bbox(region: Region) -> list[float]:
    x, y, _, _ = region.box
    rows = np.flatnonzero(region.pixels.any(axis=1))
    cols = np.flatnonzero(region.pixels.any(axis=0))
    return [
        float(x + cols[0]),
        float(y + rows[0]),
        float(cols[-1] - cols[0] + 1),
        float(rows[-1] - rows[0] + 1),
    ]


def coco_annotations(
    draft: Draft, image_id: int, first_id: int, tolerance: float = 0.0, rle: bool = False
) -> list[dict[str, Any]]:
    """COCO annotations of `draft`'s regions for image `image_id`, ids from `first_id`: polygons
    for plain regions, RLE for the others (every region with `rle`). Area and bbox are those of
    the pixels the region holds."""
    annotations = []
    for region in draft.regions:
        if region.area == 0:
            continue
        if rle or not region.plain:
            segmentation: Any = _coco_rle(region, draft.hw)
        else:
            segmentation = [_coco_polygon(region, tolerance)]
        annotations.append(
            {
                "id": first_id + len(annotations),
                "image_id": image_id,
                "category_id": region.class_id,
                "segmentation": segmentation,
                "area": region.area,
                "bbox": _bbox(region),
                "iscrowd": 0,
            }
        )
    return annotations


def coco_document(
    images: list[dict[str, Any]],
    annotations: list[dict[str, Any]],
    class_names: Sequence[str],
    description: str = "",
) -> dict[str, Any]:
    """A COCO instance-segmentation file (images, annotations, categories, info)."""
    return {
        "info": {"description": description, "version": "1.0"},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": coco_categories(class_names),
    }
