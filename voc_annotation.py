"""Check a VOC-layout segmentation data set and write its train/val/test split files.

FastSegFormer (Cai et al. 2024) splits Orange_Navel_1.5k 6:2:2. This script, like the
original's voc_annotation.py, writes ImageSets/Segmentation/{train,val,test,trainval}.txt, and
before that checks every mask (readable, same size as its photo, palette/index values or VOC
palette colours, not a 0/255 binary mask), prints a per-class pixel histogram and every
problem found. Masks with problems are left out of the splits.

    python voc_annotation.py --data data/Orange_Navel_1.5k             # check + write splits
    python voc_annotation.py --data DIR --ratios 7 2 1 --seed 1 --force  # replace split files
    python voc_annotation.py --data DIR --convert-colour               # RGB masks -> index PNGs
    python voc_annotation.py --data DIR --binary-to-index 1            # 0/255 masks: 255 -> 1

Existing split files are never overwritten without --force. Converted masks are rewritten in
place as palette PNGs; the originals are moved to SegmentationClass_original/ first.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from utils.cli import parse_config
from utils.data.dataset import PHOTO_SUFFIXES, resolve_voc_root
from utils.data.labels import MaskError, check_sizes, class_histogram, read_mask, save_index_mask
from utils.preprocess import CLASS_NAMES, IGNORE_INDEX, read_image

SPLITS = ("train", "val", "test")


@dataclass
class Config:
    data: str = "data/synthetic_oranges"  # folder containing VOC2007/ (or VOC2007 itself)
    ratios: tuple[float, float, float] = (6.0, 2.0, 2.0)  # train val test (the paper: 6:2:2)
    seed: int = 0  # split shuffling seed
    num_classes: int = len(CLASS_NAMES)  # classes; mask values >= it are ignored in training
    force: bool = False  # replace existing split files
    check_only: bool = False  # only check the masks and print the histogram; write nothing
    convert_colour: bool = False  # rewrite RGB/RGBA VOC-palette masks as palette index PNGs
    binary_to_index: int | None = None  # rewrite 0/255 masks as index masks: 255 -> this id
    check_photos: bool = True  # also decode every photo (slower; finds corrupt JPEGs)


def _photo_index(folder: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    if folder.is_dir():
        for name in sorted(os.listdir(folder), key=lambda n: n.lower()):
            stem, ext = os.path.splitext(name)
            if ext.lower() in PHOTO_SUFFIXES and stem not in found:
                found[stem] = folder / name
    return found


def _backup(mask_path: Path) -> None:
    backup_dir = mask_path.parent.parent / "SegmentationClass_original"
    backup_dir.mkdir(exist_ok=True)
    target = backup_dir / mask_path.name
    if not target.exists():
        shutil.copy2(mask_path, target)


def _binary_to_index(path: Path, class_id: int) -> np.ndarray | None:
    """Index mask from a 0/255 binary mask (255 -> class_id), or None if it is not binary."""
    with Image.open(path) as im:
        array = np.asarray(im.convert("L"))
    values = set(np.unique(array).tolist())
    if not values <= {0, 255}:
        return None
    return np.where(array == 255, class_id, 0).astype(np.uint8)


def check_dataset(cfg: Config) -> tuple[list[str], list[str], np.ndarray, int]:
    """Check every photo/mask pair; convert masks on request.

    Returns (good ids, problems, histogram (num_classes + 1,) with ignored last, conversions).
    """
    voc = resolve_voc_root(cfg.data)
    photos = _photo_index(voc / "JPEGImages")
    mask_dir = voc / "SegmentationClass"
    masks = {Path(n).stem: mask_dir / n for n in os.listdir(mask_dir)} if mask_dir.is_dir() else {}
    masks = {k: v for k, v in masks.items() if v.suffix.lower() == ".png"}
    problems: list[str] = []
    for stem in sorted(set(photos) - set(masks)):
        problems.append(f"{photos[stem]}: photo has no mask (expected {mask_dir / stem}.png)")
    for stem in sorted(set(masks) - set(photos)):
        problems.append(f"{masks[stem]}: mask has no photo in {voc / 'JPEGImages'}")

    hist = np.zeros(cfg.num_classes + 1, dtype=np.int64)
    good: list[str] = []
    converted = 0
    for stem in sorted(set(photos) & set(masks)):
        photo_path, mask_path = photos[stem], masks[stem]
        try:
            if cfg.check_photos:
                shape = read_image(photo_path).shape
            else:
                with Image.open(photo_path) as im:
                    shape = (im.height, im.width)
            try:
                mask = read_mask(mask_path, cfg.num_classes)
            except MaskError as err:
                fixed = (
                    _binary_to_index(mask_path, cfg.binary_to_index)
                    if cfg.binary_to_index is not None and "binary" in str(err)
                    else None
                )
                if fixed is None or cfg.check_only:
                    raise
                _backup(mask_path)
                save_index_mask(mask_path, fixed)
                converted += 1
                mask = fixed
            check_sizes(shape, mask.shape, photo_path, mask_path)
            if cfg.convert_colour and not cfg.check_only:
                with Image.open(mask_path) as im:
                    colour = im.mode in ("RGB", "RGBA")
                if colour:
                    _backup(mask_path)
                    save_index_mask(mask_path, mask)
                    converted += 1
        except (MaskError, ValueError, FileNotFoundError) as err:
            problems.append(str(err))
            continue
        h = class_histogram(mask, cfg.num_classes)
        outside = np.unique(mask[(mask >= cfg.num_classes) & (mask != IGNORE_INDEX)])
        if outside.size:
            problems.append(
                f"{mask_path}: values {outside.tolist()} >= num_classes={cfg.num_classes} "
                f"({int(h[-1])} px incl. 255) will be ignored in training (warning; kept)"
            )
        hist += h
        good.append(stem)
    return good, problems, hist, converted


def write_splits(cfg: Config, ids: list[str]) -> dict[str, list[str]] | None:
    """Shuffle `ids` with the seed and write the split files; None if they exist (no --force)."""
    voc = resolve_voc_root(cfg.data)
    folder = voc / "ImageSets" / "Segmentation"
    existing = [
        folder / f"{s}.txt" for s in (*SPLITS, "trainval") if (folder / f"{s}.txt").exists()
    ]
    if existing and not cfg.force:
        return None
    if len(cfg.ratios) != 3 or min(cfg.ratios) < 0 or sum(cfg.ratios) <= 0:
        raise ValueError(f"--ratios {cfg.ratios}: expected three non-negative numbers, e.g. 6 2 2")
    total = float(sum(cfg.ratios))
    order = np.random.default_rng(cfg.seed).permutation(len(ids))
    n_train = int(round(cfg.ratios[0] / total * len(ids)))
    n_val = int(round(cfg.ratios[1] / total * len(ids)))
    picks = {
        "train": order[:n_train],
        "val": order[n_train : n_train + n_val],
        "test": order[n_train + n_val :],
    }
    picks["trainval"] = order[: n_train + n_val]
    folder.mkdir(parents=True, exist_ok=True)
    result = {}
    for split, idx in picks.items():
        names = sorted(ids[i] for i in idx)
        (folder / f"{split}.txt").write_text("".join(f"{n}\n" for n in names))
        result[split] = names
    return result


def format_histogram(hist: np.ndarray, class_names: list[str]) -> str:
    total = max(int(hist.sum()), 1)
    lines = [f"{'class':<18}{'pixels':>14}{'share %':>10}"]
    for name, count in zip([*class_names, "ignored (>=K)"], hist, strict=True):
        lines.append(f"{name:<18}{int(count):>14}{100 * count / total:>10.3f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    cfg = parse_config(Config, argv, description=__doc__)
    try:
        voc = resolve_voc_root(cfg.data)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    names = (
        list(CLASS_NAMES)
        if cfg.num_classes == len(CLASS_NAMES)
        else [f"class_{k}" for k in range(cfg.num_classes)]
    )
    good, problems, hist, converted = check_dataset(cfg)
    print(f"data set: {voc}")
    print(f"{len(good)} photo/mask pairs passed the checks")
    if converted:
        print(
            f"converted {converted} masks to index PNGs (originals in SegmentationClass_original/)"
        )
    print(format_histogram(hist, names))
    if problems:
        print(f"\n{len(problems)} problems:")
        for p in problems:
            print(f"  - {p}")
    errors = [p for p in problems if "(warning; kept)" not in p]
    if errors and len(good) > 0:
        print(f"\n{len(errors)} files are left out of the splits until fixed.")
    if cfg.check_only:
        return 1 if errors else 0
    if not good:
        print("error: no usable photo/mask pairs; no split files written", file=sys.stderr)
        return 1
    splits = write_splits(cfg, good)
    folder = voc / "ImageSets" / "Segmentation"
    if splits is None:
        print(f"\nsplit files already exist in {folder}; not overwritten (use --force to replace)")
    else:
        counts = ", ".join(f"{k} {len(v)}" for k, v in splits.items())
        print(f"\nwrote split files to {folder}: {counts} (seed {cfg.seed}, ratios {cfg.ratios})")
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
