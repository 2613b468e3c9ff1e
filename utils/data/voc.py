"""The PASCAL-VOC folder layout: where a split's photos and masks are, checked.

FastSegFormer's data set (Orange_Navel_1.5k, Cai et al., Computers and Electronics in
Agriculture 217, 108604, 2024) ships in the VOC layout (``root`` is the folder holding
``VOC2007/``, or ``VOC2007`` itself)::

    VOC2007/JPEGImages/<id>.jpg
    VOC2007/SegmentationClass/<id>.png          class-id masks (see utils/data/labels.py)
    VOC2007/ImageSets/Segmentation/{train,val,test}.txt   one <id> per line

Paths only, no torch: the training data set (utils.data.dataset), evaluation and the sorting
line's grading on a deployment box list a split through the same functions.
"""

from __future__ import annotations

import os
from pathlib import Path

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def resolve_voc_root(root: str | Path) -> Path:
    """The VOC2007 folder: ``root/VOC2007`` if it exists, else ``root`` if it has JPEGImages/."""
    root = Path(root)
    if (root / "VOC2007").is_dir():
        return root / "VOC2007"
    if (root / "JPEGImages").is_dir():
        return root
    raise ValueError(
        f"no VOC data set at {root}: expected {root}/VOC2007/JPEGImages (or {root}/JPEGImages), "
        "SegmentationClass/ and ImageSets/Segmentation/. Make one with "
        "`python -m utils.data.synthetic --out DIR` or see docs/data.md"
    )


def read_split(voc: Path, split: str) -> tuple[Path, list[str]]:
    """(split file path, ids listed in it); blank lines skipped, extensions tolerated."""
    split_file = voc / "ImageSets" / "Segmentation" / f"{split}.txt"
    if not split_file.is_file():
        raise ValueError(
            f"split file not found: {split_file}; expected one image id per line. "
            "Write the split files with `python voc_annotation.py --data ...`"
        )
    ids = [name for _, name in read_split_lines(split_file)]
    if not ids:
        raise ValueError(f"split file {split_file} lists no images; expected one id per line")
    return split_file, ids


def read_split_lines(split_file: Path) -> list[tuple[int, str]]:
    """(line number, id) of every non-blank line of a split file (UTF-8; a photo extension
    after the id is dropped). A line that is not UTF-8 text is a ValueError naming the file,
    the line and its bytes."""
    entries = []
    data = split_file.read_bytes()
    if data.startswith(b"\xef\xbb\xbf"):  # a UTF-8 byte-order mark (some Windows editors)
        data = data[3:]
    for number, raw in enumerate(data.splitlines(), start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise ValueError(
                f"{split_file}, line {number}: not UTF-8 text ({raw[:80]!r}: {err.reason} at "
                f"byte {err.start}); expected one image id per line in UTF-8. A photo whose "
                "name is not UTF-8 cannot be listed: rename it, then rewrite the split files "
                "(python voc_annotation.py --data ... --force)"
            ) from None
        name = line.strip().split()[0] if line.strip() else ""
        if not name:
            continue
        stem, ext = os.path.splitext(name)
        entries.append((number, stem if ext.lower() in PHOTO_SUFFIXES else name))
    return entries


def _index_photos(folder: Path) -> dict[str, str]:
    """stem -> file name of the photos directly in `folder` (.jpg preferred over other suffixes)."""
    if not folder.is_dir():
        return {}
    found: dict[str, str] = {}
    for name in os.listdir(folder):
        suffix = os.path.splitext(name)[1].lower()
        if suffix not in PHOTO_SUFFIXES:
            continue
        stem = os.path.splitext(name)[0]
        old = found.get(stem)
        if old is None or PHOTO_SUFFIXES.index(suffix) < PHOTO_SUFFIXES.index(
            os.path.splitext(old)[1].lower()
        ):
            found[stem] = name
    return found


def _missing_message(kind: str, folder: Path, missing: list[str], split_file: Path, n: int) -> str:
    shown = ", ".join(missing[:5]) + (f", ... ({len(missing)} in all)" if len(missing) > 5 else "")
    return (
        f"{len(missing)} of {n} ids in {split_file} have no {kind} in {folder}: {shown}; "
        f"expected {folder}/<id>{'.jpg' if kind == 'photo' else '.png'} for every id. "
        "Fix the split file (python voc_annotation.py --force) or add the files."
    )


def split_paths(voc: Path, split: str) -> tuple[Path, list[str], list[Path], list[Path]]:
    """(split file, ids, photo paths, mask paths) of a split of the VOC folder `voc`.

    Every listed id must have a photo in JPEGImages/ (.jpg preferred over other suffixes) and a
    mask SegmentationClass/<id>.png; otherwise a ValueError names the missing files.
    """
    split_file, ids = read_split(voc, split)
    photo_dir, mask_dir = voc / "JPEGImages", voc / "SegmentationClass"
    photos = _index_photos(photo_dir)
    masks = set(os.listdir(mask_dir)) if mask_dir.is_dir() else set()
    missing_photo = [i for i in ids if i not in photos]
    if missing_photo:
        raise ValueError(_missing_message("photo", photo_dir, missing_photo, split_file, len(ids)))
    missing_mask = [i for i in ids if f"{i}.png" not in masks]
    if missing_mask:
        raise ValueError(_missing_message("mask", mask_dir, missing_mask, split_file, len(ids)))
    photo_paths = [photo_dir / photos[i] for i in ids]
    return split_file, ids, photo_paths, [mask_dir / f"{i}.png" for i in ids]
