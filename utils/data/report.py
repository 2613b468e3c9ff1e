"""A data-set report: photos per split, sizes, class pixel shares, images per class, oddities.

Written by voc_annotation.py next to the data (``VOC2007/dataset_report.json`` and
``dataset_report.png``) so that a user sees what a data set holds before training on it. The
paper's Orange_Navel_1.5k (Cai et al., Computers and Electronics in Agriculture 217, 108604,
2024) is 1.5k photos of 512x512 split 6:2:2, with defects a few percent of the pixels; a set
brought from elsewhere can differ in ways that quietly hurt training, which the "odd" list names:
classes that no photo shows (or that a split lacks), identical photos in two splits (leakage
into the test score), photos smaller than the network input, several photo sizes, tiny
regions, masks that are all ignore, photos not in any split, and the problems the checks found.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from matplotlib.figure import Figure

from utils.data.labels import read_mask
from utils.fileio import atomic_path, write_text

SPLITS = ("train", "val", "test")
SMALL_SIDE = 224  # the paper's network input: photos smaller than this are upscaled
TINY_REGION_PX = 16  # connected regions smaller than this are listed as odd (likely slips)
_MAX_LISTED = 10  # file names listed per odd item before "... and N more"


def _listed(items: Sequence[str]) -> str:
    shown = ", ".join(items[:_MAX_LISTED])
    more = f" ... and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else ""
    return shown + more


def _read_splits(voc: Path) -> dict[str, list[str]]:
    folder = voc / "ImageSets" / "Segmentation"
    out: dict[str, list[str]] = {}
    for split in SPLITS:
        path = folder / f"{split}.txt"
        if path.is_file():
            out[split] = [Path(line.strip()).stem for line in path.read_text().splitlines()]
            out[split] = [i for i in out[split] if i]
    return out


def _photo_paths(voc: Path, ids: Sequence[str]) -> dict[str, Path]:
    photos: dict[str, Path] = {}
    folder = voc / "JPEGImages"
    for p in sorted(folder.iterdir()) if folder.is_dir() else []:
        if p.stem in ids and p.stem not in photos:
            photos[p.stem] = p
    return photos


def _tiny_regions(mask: np.ndarray, num_classes: int) -> int:
    """Connected regions (8-neighbours) of any defect class smaller than TINY_REGION_PX."""
    tiny = 0
    for k in range(1, num_classes):
        binary = (mask == k).astype(np.uint8)
        if not binary.any():
            continue
        n, _, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
        tiny += int((stats[1:n, cv2.CC_STAT_AREA] < TINY_REGION_PX).sum())
    return tiny


def build_report(
    voc: str | Path,
    ids: Sequence[str],
    class_names: Sequence[str],
    problems: Sequence[str] = (),
    notes: Sequence[str] = (),
    input_side: int = SMALL_SIDE,
) -> dict:
    """The report of the photo/mask pairs `ids` of a VOC folder (masks read again, photos hashed).

    `problems` (from the checks) and `notes` (from a conversion) are stored beside "odd", the
    findings of the report itself.
    """
    voc = Path(voc)
    k = len(class_names)
    splits = _read_splits(voc)
    photos = _photo_paths(voc, set(ids))
    pixels = np.zeros(k + 1, dtype=np.int64)  # last: ignored (255 or >= K)
    images_per_class = np.zeros(k, dtype=np.int64)
    per_image_classes: dict[str, set[int]] = {}
    sizes: Counter = Counter()
    hashes: dict[str, list[str]] = defaultdict(list)
    small, all_ignore, tiny_in = [], [], []
    for i in ids:
        mask = read_mask(voc / "SegmentationClass" / f"{i}.png", k)
        counts = np.bincount(mask.ravel(), minlength=256)
        pixels[:k] += counts[:k]
        pixels[k] += counts[k:].sum()
        present = {c for c in range(k) if counts[c] > 0}
        per_image_classes[i] = present
        for c in present:
            images_per_class[c] += 1
        h, w = mask.shape
        sizes[(w, h)] += 1
        if min(h, w) < input_side:
            small.append(i)
        if counts[:k].sum() == 0:
            all_ignore.append(i)
        if _tiny_regions(mask, k):
            tiny_in.append(i)
        if i in photos:
            hashes[hashlib.sha1(photos[i].read_bytes()).hexdigest()].append(i)

    total = max(int(pixels.sum()), 1)
    split_of = {i: s for s, members in splits.items() for i in members}
    per_split = {}
    for split, members in splits.items():
        members = [m for m in members if m in per_image_classes]
        counts = [sum(c in per_image_classes[m] for m in members) for c in range(k)]
        per_split[split] = {"photos": len(members), "images_per_class": counts}

    odd: list[str] = []
    for c in range(1, k):
        if images_per_class[c] == 0:
            odd.append(f"class {class_names[c]!r} appears in no photo")
        missing_in = [
            s for s, d in per_split.items() if d["photos"] and not d["images_per_class"][c]
        ]
        if images_per_class[c] and missing_in:
            odd.append(f"class {class_names[c]!r} appears in no photo of: {', '.join(missing_in)}")
    for members in hashes.values():
        if len(members) > 1:
            where = sorted({split_of.get(m, "no split") for m in members})
            leak = " (in different splits: leaks into the score)" if len(where) > 1 else ""
            odd.append(f"identical photos {', '.join(members)}{leak}")
    if len(sizes) > 1:
        shown = ", ".join(f"{w}x{h} ({n})" for (w, h), n in sizes.most_common(5))
        odd.append(f"photos come in {len(sizes)} sizes: {shown}")
    if small:
        odd.append(f"{len(small)} photos smaller than {input_side} px on a side: {_listed(small)}")
    if all_ignore:
        odd.append(f"{len(all_ignore)} masks are all ignore (255): {_listed(all_ignore)}")
    if tiny_in:
        odd.append(
            f"{len(tiny_in)} masks hold defect regions under {TINY_REGION_PX} px: "
            f"{_listed(tiny_in)}"
        )
    no_split = sorted(set(ids) - set(split_of)) if splits else []
    if no_split:
        odd.append(f"{len(no_split)} photos are in no split file: {_listed(no_split)}")

    return {
        "data": str(voc),
        "class_names": list(class_names),
        "photos": len(ids),
        "photos_per_split": {s: d["photos"] for s, d in per_split.items()},
        "sizes": [{"width": w, "height": h, "photos": n} for (w, h), n in sorted(sizes.items())],
        "class_pixels": pixels[:k].tolist(),
        "class_pixel_share": (pixels[:k] / total).tolist(),
        "ignored_pixels": int(pixels[k]),
        "images_per_class": images_per_class.tolist(),
        "images_without_defects": sum(1 for v in per_image_classes.values() if v <= {0}),
        "per_split": per_split,
        "odd": odd,
        "problems": list(problems),
        "conversion_notes": list(notes),
        "units": "class_pixel_share: fraction of all labelled and ignored pixels",
    }


def plot_report(report: dict, path: str | Path) -> Path:
    """Bar charts: photos per split, class pixel share (log scale), images per class."""
    names = report["class_names"]
    fig = Figure(figsize=(12, 0.45 * len(names) + 2.4), layout="constrained")
    ax_split, ax_share, ax_images = fig.subplots(1, 3)
    splits = report["photos_per_split"] or {"all": report["photos"]}
    ax_split.bar(list(splits), list(splits.values()), color="slategray")
    for x, v in enumerate(splits.values()):
        ax_split.text(x, v, str(v), ha="center", va="bottom")
    ax_split.set_title(f"photos per split ({report['photos']} in all)")
    shares = [100.0 * s for s in report["class_pixel_share"]]
    ax_share.barh(names, [max(s, 1e-4) for s in shares], color="darkorange")
    ax_share.set_xscale("log")
    positive = [s for s in shares if s > 0] or [1.0]
    ax_share.set_xlim(min(positive) / 3, max(positive) * 20)  # room for the labels
    for y, s in enumerate(shares):
        ax_share.text(max(s, 1e-4), y, f" {s:.3g}%", va="center")
    ax_share.set_title("class pixel share (%, log scale)")
    ax_share.invert_yaxis()
    counts = report["images_per_class"]
    ax_images.barh(names, counts, color="seagreen")
    for y, n in enumerate(counts):
        ax_images.text(n, y, f" {n}", va="center")
    ax_images.set_title("photos showing each class")
    ax_images.invert_yaxis()
    ax_images.set_xlim(0, max(counts + [1]) * 1.2)
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    return path


def write_report(report: dict, voc: str | Path) -> tuple[Path, Path]:
    """VOC2007/dataset_report.json and dataset_report.png, written atomically."""
    voc = Path(voc)
    json_path = write_text(voc / "dataset_report.json", json.dumps(report, indent=2))
    return json_path, plot_report(report, voc / "dataset_report.png")


def format_report(report: dict) -> str:
    """Console lines: photos per split, sizes, photos per class, then the odd findings."""
    splits = ", ".join(f"{s} {n}" for s, n in report["photos_per_split"].items()) or "none"
    sizes = ", ".join(f"{d['width']}x{d['height']} ({d['photos']})" for d in report["sizes"][:5])
    per_class = ", ".join(
        f"{name} {n}"
        for name, n in zip(report["class_names"], report["images_per_class"], strict=True)
    )
    lines = [
        f"photos: {report['photos']} (splits: {splits}); sizes: {sizes}",
        f"photos showing each class: {per_class}",
    ]
    if report["odd"]:
        lines.append(f"{len(report['odd'])} odd things:")
        lines += [f"  - {item}" for item in report["odd"]]
    return "\n".join(lines)
