"""labelme annotation files -> VOC index masks, rasterised as labelme's own tools do.

Most groups that annotate fruit defects for FastSegFormer-style training (Cai et al., Computers
and Electronics in Agriculture 217, 108604, 2024) draw them in labelme. A labelme file is one
JSON per photo (labelme's documented format)::

    {"shapes": [{"label": "ulcer", "points": [[x, y], ...], "shape_type": "polygon",
                 "group_id": null, "flags": {}, "description": "", "mask": null}, ...],
     "imagePath": "img001.jpg", "imageData": "<base64 of the photo file, or null>",
     "imageHeight": 512, "imageWidth": 512, "version": "5.x", "flags": {}}

The photo is `imageData` when it is embedded, else the file `imagePath` names, relative to the
JSON file (Windows separators allowed); labelme shows a photo turned by its EXIF orientation,
so its points are in that frame. Points are (x, y) pixel coordinates, floats allowed.

Shapes are painted in file order, a later shape over an earlier one, each with PIL's
ImageDraw as labelme's ``shapes_to_label`` does (fill and 1-pixel outline):

- polygon (or no shape_type): the polygon through its points (at least 3);
- rectangle: two opposite corners, in either order;
- circle: two points, the centre and a point on the circle; radius = their distance, drawn as
  the ellipse in the box (cx - r, cy - r, cx + r, cy + r);
- oriented_rectangle: a polygon through its 4 corners;
- line / linestrip: a line 10 px wide (linestrip with rounded joints); point: a disc of radius 5;
- mask: a base64 PNG patch whose top-left is the first point (labelme's placement rules).

The class of a shape is its label through `ClassTable` (``--classes``, ``--label-map``).
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from utils.data.convert import (
    ClassTable,
    ConversionError,
    ConversionPlan,
    ConversionResult,
    Item,
    Photo,
    VocWriter,
    check_items,
    decode_photo,
)

LINE_WIDTH = 10  # labelme's width for line / linestrip shapes
POINT_RADIUS = 5  # labelme's radius for point shapes
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
# shape_type -> exact number of points labelme requires (polygon / linestrip: see below)
_POINT_COUNTS = {"point": 1, "rectangle": 2, "line": 2, "circle": 2, "mask": 2,
                 "oriented_rectangle": 4}  # fmt: skip


@dataclass
class LabelmeFile:
    """One labelme JSON: its photo (EXIF orientation settled), its shapes, the photo's id."""

    path: Path
    stem: str
    photo: Photo
    photo_path: Path | None  # the file `imagePath` names, when the photo was read from it
    shapes: list[dict[str, Any]]


def _b64decode(text: str, what: str, source: Path) -> bytes:
    try:
        return base64.b64decode(text, validate=False)
    except (binascii.Error, ValueError) as err:
        raise ConversionError(f"{source}: {what} is not valid base64 ({err})") from err


def _points(shape: dict, index: int, source: Path) -> list[tuple[float, float]]:
    points = shape.get("points")
    ok = isinstance(points, list) and all(
        isinstance(p, (list, tuple))
        and len(p) == 2
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in p)
        and all(math.isfinite(v) for v in p)
        for p in points
    )
    if not ok or not points:
        raise ConversionError(
            f"{source}: shapes[{index}] ({shape.get('label')!r}) has points {points!r}; "
            "expected a list of [x, y] numbers"
        )
    return [(float(x), float(y)) for x, y in points]


def _patch_mask(shape: dict, index: int, source: Path) -> np.ndarray:
    data = shape.get("mask")
    if not isinstance(data, str):
        raise ConversionError(
            f"{source}: shapes[{index}] is a 'mask' shape without a base64 PNG in 'mask'"
        )
    try:
        with Image.open(io.BytesIO(_b64decode(data, "mask", source))) as im:
            return np.asarray(im).astype(bool)
    except ConversionError:
        raise
    except Exception as err:
        raise ConversionError(f"{source}: shapes[{index}] 'mask' is not a PNG ({err})") from err


def shape_mask(hw: tuple[int, int], shape: dict, index: int = 0, source: Path = Path("?")):
    """(H, W) bool mask of one labelme shape, drawn as labelme draws it (module docstring)."""
    height, width = hw
    shape_type = shape.get("shape_type") or "polygon"
    xy = _points(shape, index, source)
    need = _POINT_COUNTS.get(shape_type)
    where = f"{source}: shapes[{index}] ({shape.get('label')!r}, {shape_type})"
    if need is not None and len(xy) != need:
        raise ConversionError(f"{where} has {len(xy)} points; expected {need}")
    if shape_type == "mask":
        patch = _patch_mask(shape, index, source)
        if patch.ndim != 2:
            raise ConversionError(f"{where}: mask patch has shape {patch.shape}; expected 2-D")
        out = np.zeros(hw, dtype=bool)
        corners = np.asarray(xy)
        (x1, y1), (x2, y2) = corners.round().astype(int)
        if np.array_equal(corners, np.trunc(corners)):
            ph, pw = y2 - y1 + 1, x2 - x1 + 1
        else:
            ph, pw = patch.shape
        ys, ye = max(y1, 0), min(y1 + ph, height)
        xs, xe = max(x1, 0), min(x1 + pw, width)
        if ys < ye and xs < xe:
            crop = patch[ys - y1 : ye - y1, xs - x1 : xe - x1]
            out[ys : ys + crop.shape[0], xs : xs + crop.shape[1]] = crop
        return out

    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    if shape_type == "circle":
        (cx, cy), (px, py) = xy
        r = math.hypot(cx - px, cy - py)
        draw.ellipse(((cx - r, cy - r), (cx + r, cy + r)), outline=1, fill=1)
    elif shape_type == "rectangle":
        (x0, y0), (x1, y1) = xy
        box = ((min(x0, x1), min(y0, y1)), (max(x0, x1), max(y0, y1)))
        draw.rectangle(box, outline=1, fill=1)
    elif shape_type == "line":
        draw.line(xy, fill=1, width=LINE_WIDTH)
    elif shape_type == "linestrip":
        draw.line(xy, fill=1, width=LINE_WIDTH, joint="curve")
    elif shape_type == "point":
        (cx, cy), r = xy[0], POINT_RADIUS
        draw.ellipse(((cx - r, cy - r), (cx + r, cy + r)), outline=1, fill=1)
    elif shape_type in ("polygon", "oriented_rectangle"):
        if len(xy) < 3:
            raise ConversionError(f"{where} has {len(xy)} points; a polygon needs 3 or more")
        draw.polygon(xy, outline=1, fill=1)
    else:
        raise ConversionError(
            f"{where}: shape_type {shape_type!r} cannot be painted; expected polygon, "
            "rectangle, circle, oriented_rectangle, line, linestrip, point or mask"
        )
    return np.asarray(canvas, dtype=bool)


def paint_shapes(
    hw: tuple[int, int], shapes: list[dict], table: ClassTable, source: Path
) -> np.ndarray:
    """(H, W) uint8 class ids: the shapes painted in order, a later one over an earlier one."""
    mask = np.zeros(hw, dtype=np.uint8)
    for i, shape in enumerate(shapes):
        if not isinstance(shape, dict) or not isinstance(shape.get("label"), str):
            raise ConversionError(f"{source}: shapes[{i}] has no text 'label'")
        class_id = table.index(shape["label"], source)
        mask[shape_mask(hw, shape, i, source)] = class_id
    return mask


def is_labelme(doc: Any) -> bool:
    """A labelme file has a list of shapes and an imagePath or imageData."""
    return (
        isinstance(doc, dict)
        and isinstance(doc.get("shapes"), list)
        and ("imagePath" in doc or "imageData" in doc)
    )


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConversionError(f"{path}: cannot read as JSON ({err})") from err


def _photo_ref(path: Path, doc: dict[str, Any]) -> tuple[str, Path | None]:
    """(the photo's id, the photo file `imagePath` names or None) of a labelme document."""
    image_path = doc.get("imagePath") or ""
    relative = Path(PureWindowsPath(image_path).as_posix()) if image_path else None
    stem = relative.stem if relative is not None and relative.stem else path.stem
    return stem, (path.parent / relative if relative is not None else None)


def read_labelme(path: str | Path) -> LabelmeFile:
    """Read one labelme JSON and its photo; `ConversionError` naming the file on any problem."""
    path = Path(path)
    doc = _load_json(path)
    if not is_labelme(doc):
        raise ConversionError(
            f"{path}: not a labelme file; expected 'shapes' and 'imagePath'/'imageData' keys"
        )
    image_path = doc.get("imagePath") or ""
    stem, photo_path = _photo_ref(path, doc)
    if doc.get("imageData"):
        data = _b64decode(doc["imageData"], "imageData", path)
        what = f"{path} (imageData)"
        photo_path = None
    else:
        if photo_path is None:
            raise ConversionError(f"{path}: neither imageData nor imagePath is set")
        if not photo_path.is_file():
            raise ConversionError(
                f"{path}: imagePath {image_path!r} not found (looked for {photo_path}) and no "
                "imageData embedded; put the photo beside the JSON file"
            )
        data = photo_path.read_bytes()
        what = str(photo_path)
    declared = (doc.get("imageHeight"), doc.get("imageWidth"))
    expect = declared if all(isinstance(v, int) for v in declared) else None
    photo = decode_photo(data, what, expect_hw=expect, orientation="apply")
    return LabelmeFile(path, stem, photo, photo_path, doc["shapes"])


def _labelme_item(path: Path, stem: str, table: ClassTable) -> Item:
    def read() -> tuple[Photo, np.ndarray]:
        item = read_labelme(path)
        mask = paint_shapes((item.photo.height, item.photo.width), item.shapes, table, path)
        return item.photo, mask

    return Item(stem, path, read)


def _background_item(photo_path: Path) -> Item:
    """An unlabelled photo kept with an all-background mask."""

    def read() -> tuple[Photo, np.ndarray]:
        photo = decode_photo(photo_path.read_bytes(), photo_path, orientation="apply")
        return photo, np.zeros((photo.height, photo.width), np.uint8)

    return Item(photo_path.stem, photo_path, read)


def plan_labelme_folder(
    src: str | Path, table: ClassTable, unlabelled_as_background: bool = False
) -> ConversionPlan:
    """Every labelme JSON in `src` (not its subfolders), read and checked (`check_items`).

    Photos in `src` that no JSON file names are unlabelled: skipped (listed in the notes), or
    kept with an all-background mask when `unlabelled_as_background`. JSON files that are not
    labelme files are skipped with a note.
    """
    src = Path(src)
    if not src.is_dir():
        raise ConversionError(f"--from-labelme {src}: not a folder")
    json_files = sorted(src.glob("*.json"), key=lambda p: p.name.lower())
    if not json_files:
        raise ConversionError(f"--from-labelme {src}: no .json files in this folder")
    notes: list[str] = []
    items: list[Item] = []
    used_photos: set[Path] = set()
    for path in json_files:
        try:
            doc = _load_json(path)
        except ConversionError:
            items.append(_labelme_item(path, path.stem, table))  # read() reports it
            continue
        if not is_labelme(doc):
            notes.append(f"{path}: not a labelme file (no 'shapes'/'imagePath'); skipped")
            continue
        stem, photo_path = _photo_ref(path, doc)
        items.append(_labelme_item(path, stem, table))
        if photo_path is not None:
            used_photos.add(photo_path.resolve())
        if not doc["shapes"]:
            notes.append(f"{path}: no shapes; written as all background")
    written = {item.stem for item in items}
    photos = sorted(p for p in src.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES and p.is_file())
    for photo_path in photos:
        if photo_path.resolve() in used_photos or photo_path.stem in written:
            continue
        if unlabelled_as_background:
            items.append(_background_item(photo_path))
            notes.append(f"{photo_path}: no labelme file; written as all background")
        else:
            notes.append(
                f"{photo_path}: no labelme file names it; skipped (--unlabelled-as-background "
                "keeps it as a photo without defects)"
            )
    return check_items(items, notes, table, str(src), [])


def convert_labelme_folder(
    src: str | Path,
    writer: VocWriter,
    table: ClassTable,
    unlabelled_as_background: bool = False,
) -> ConversionResult:
    """`plan_labelme_folder`, then written by `writer` (nothing is written on a problem)."""
    return writer.write(plan_labelme_folder(src, table, unlabelled_as_background))
