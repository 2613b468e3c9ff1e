"""COCO instance annotations -> VOC index masks, decoded with pycocotools.

The FastSegFormer authors (Cai et al., Computers and Electronics in Agriculture 217, 108604,
2024) also report a Lemon data set, published as COCO JSON with nine categories that they
remap to six classes. A COCO file holds ``images`` (``id``, ``file_name``, ``width``,
``height``), ``categories`` (``id``, ``name``) and ``annotations`` (``image_id``,
``category_id``, ``segmentation``, ``iscrowd``). A segmentation is either

- polygons: a list of flat ``[x1, y1, x2, y2, ...]`` lists, the parts of one object;
- RLE: ``{"size": [h, w], "counts": ...}``, uncompressed (``counts`` a list of run lengths,
  column-major, starting with background) or compressed (``counts`` a string), as crowd
  regions (``iscrowd: 1``) are stored.

Each annotation is rasterised as pycocotools' ``COCO.annToMask`` does (``frPyObjects``, parts
merged, ``decode``) and painted in file order, a later annotation over an earlier one, with
the class its category *name* maps to through `ClassTable`; category ids are only the link
between annotations and names. Crowd regions are painted like the others (in a semantic mask
they are that class). Photos are ``--images DIR / file_name`` (or its base name); images
without annotations become all-background masks (COCO lists them on purpose).

pycocotools is imported on first use (a heavy optional dependency of the converter).
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

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


def mask_api(purpose: str = "--from-coco") -> ModuleType:
    """pycocotools' mask module; a `ConversionError` naming `purpose` and what to install when
    it is missing."""
    try:
        from pycocotools import mask as api
    except ImportError as err:
        raise ConversionError(
            f"{purpose} needs pycocotools: pip install 'pycocotools>=2.0.8'"
        ) from err
    return api


def segmentation_mask(segm: Any, hw: tuple[int, int], where: str) -> np.ndarray | None:
    """(H, W) bool mask of one COCO segmentation (polygons or RLE); None for empty polygons.

    Raises `ConversionError` naming `where` for a malformed segmentation or an RLE whose size is
    not the image's.
    """
    api = mask_api()
    height, width = hw
    if isinstance(segm, list):
        parts = [p for p in segm if isinstance(p, list)]
        if len(parts) != len(segm) or any(
            not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in p)
            for p in parts
        ):
            raise ConversionError(f"{where}: polygons must be lists of numbers [x1, y1, ...]")
        # pycocotools reads a 4-number list as a box, and a polygon needs 3 points: drop those.
        parts = [[float(v) for v in p] for p in parts if len(p) >= 6 and len(p) % 2 == 0]
        if not parts:
            return None
        rle = api.merge(api.frPyObjects(parts, height, width))
    elif isinstance(segm, dict) and "counts" in segm and "size" in segm:
        size = [int(v) for v in segm["size"]]
        if size != [height, width]:
            raise ConversionError(
                f"{where}: RLE size {size} (h, w) differs from the image's {[height, width]}"
            )
        counts = segm["counts"]
        if isinstance(counts, list):  # uncompressed
            rle = api.frPyObjects({"size": size, "counts": counts}, height, width)
        elif isinstance(counts, (str, bytes)):  # compressed
            rle = {"size": size, "counts": counts.encode() if isinstance(counts, str) else counts}
        else:
            raise ConversionError(f"{where}: RLE counts must be a list or a string")
    else:
        raise ConversionError(
            f"{where}: segmentation must be a list of polygons or an RLE dict with "
            f"'size' and 'counts'; found {type(segm).__name__}"
        )
    try:
        decoded = api.decode(rle)
    except Exception as err:  # pycocotools raises bare ValueErrors/TypeErrors on bad RLE
        raise ConversionError(f"{where}: cannot decode the RLE ({err})") from err
    return decoded.astype(bool)  # (H, W)


def _load(path: Path) -> dict:
    if not path.is_file():
        raise ConversionError(f"--from-coco {path}: file not found")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConversionError(f"--from-coco {path}: not valid JSON ({err})") from err
    missing = [k for k in ("images", "annotations", "categories") if k not in doc]
    if not isinstance(doc, dict) or missing:
        raise ConversionError(
            f"--from-coco {path}: not a COCO annotation file (missing {', '.join(missing)}); "
            "expected 'images', 'annotations' and 'categories'"
        )
    return doc


def _photo_path(images: Path, file_name: str) -> Path | None:
    for candidate in (images / file_name, images / Path(file_name).name):
        if candidate.is_file():
            return candidate
    return None


def _coco_item(
    path: Path, image: dict, photo_path: Path, anns: list[dict], names: dict, table: ClassTable
) -> Item:
    file_name = image["file_name"]

    def read() -> tuple[Photo, np.ndarray]:
        declared = (image.get("height"), image.get("width"))
        expect = declared if all(isinstance(v, int) for v in declared) else None
        photo = decode_photo(photo_path.read_bytes(), photo_path, expect, orientation="match")
        hw = (photo.height, photo.width)
        mask = np.zeros(hw, dtype=np.uint8)
        for ann in anns:
            where = f"{path}: annotations[{ann['_index']}] (image {file_name!r})"
            if ann.get("category_id") not in names:
                raise ConversionError(
                    f"{where}: category_id {ann.get('category_id')!r} is not in 'categories'"
                )
            label = names[ann["category_id"]]
            segm = ann.get("segmentation")
            region = segmentation_mask(segm, hw, where) if segm else None
            if region is None:
                continue  # box only or empty: noted when the source was listed
            mask[region] = table.index(label, f"{path} (category {label!r}, {file_name})")
        return photo, mask

    return Item(Path(file_name).stem, photo_path, read)


def plan_coco(annotations: str | Path, images: str | Path, table: ClassTable) -> ConversionPlan:
    """Every image of a COCO file, read and checked (`check_items`; module docstring)."""
    path, images = Path(annotations), Path(images)
    if not images.is_dir():
        raise ConversionError(f"--images {images}: not a folder (the photos of {path})")
    doc = _load(path)
    names: dict[Any, str] = {}
    for cat in doc["categories"]:
        if not isinstance(cat, dict) or "id" not in cat or not isinstance(cat.get("name"), str):
            raise ConversionError(f"{path}: category {cat!r} needs an 'id' and a 'name'")
        names[cat["id"]] = cat["name"]
    problems: list[str] = []
    notes: list[str] = []
    by_image: dict[Any, list[dict]] = defaultdict(list)
    image_ids = {im.get("id") for im in doc["images"] if isinstance(im, dict)}
    for i, ann in enumerate(doc["annotations"]):
        if not isinstance(ann, dict) or ann.get("image_id") not in image_ids:
            image_id = ann.get("image_id") if isinstance(ann, dict) else None
            problems.append(
                f"{path}: annotations[{i}] names image_id {image_id!r}, which 'images' does not "
                "list; its region would be lost"
            )
            continue
        by_image[ann["image_id"]].append({**ann, "_index": i})
        if not ann.get("segmentation"):
            notes.append(
                f"{path}: annotations[{i}]: no segmentation (box only or empty); not painted"
            )
    items: list[Item] = []
    for image in doc["images"]:
        file_name = image.get("file_name") if isinstance(image, dict) else None
        if not isinstance(file_name, str) or not file_name:
            problems.append(f"{path}: image {image!r} has no 'file_name'")
            continue
        photo_path = _photo_path(images, file_name)
        if photo_path is None:
            problems.append(
                f"{path}: photo {file_name!r} (image id {image.get('id')}) not found in "
                f"{images}; expected --images to be the folder the file names are relative to"
            )
            continue
        anns = by_image.get(image.get("id"), [])
        items.append(_coco_item(path, image, photo_path, anns, names, table))
    plan = check_items(items, notes, table, str(path), problems)
    unused = sorted(set(names.values()) - set(table.used))
    if unused:
        plan.notes.append(f"{path}: categories with no annotation: {', '.join(unused)}")
    return plan


def convert_coco(
    annotations: str | Path, images: str | Path, writer: VocWriter, table: ClassTable
) -> ConversionResult:
    """`plan_coco`, then written by `writer` (nothing is written on a problem)."""
    return writer.write(plan_coco(annotations, images, table))
