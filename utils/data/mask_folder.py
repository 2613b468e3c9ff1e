"""A folder of photos and a folder of mask images -> the VOC layout.

For data sets whose masks already exist as images (exports of other tools, single-defect sets
drawn in an image editor), paired with their photos by file name (``img7.jpg`` <->
``img7.png``). Masks are read by `utils.data.labels.read_mask` (palette or greyscale index PNGs,
RGB/RGBA in VOC palette colours). A 0/255 binary mask (one defect class, drawn white on black)
is never guessed: it converts only when the class of its white pixels is named explicitly
(``--binary-class NAME``), and stops with an error naming the file otherwise.
FastSegFormer (Cai et al., Computers and Electronics in Agriculture 217, 108604, 2024) needs
index masks, and a silent guess would turn every defect into "ignore" (255).
"""

from __future__ import annotations

from pathlib import Path

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
from utils.data.labels import MaskError, binary_to_index, read_mask

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
MASK_SUFFIXES = (".png", ".bmp", ".tif", ".tiff")


def _by_stem(folder: Path, suffixes: tuple[str, ...], what: str) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for p in sorted(folder.iterdir(), key=lambda q: q.name.lower()):
        if p.is_file() and p.suffix.lower() in suffixes:
            if p.stem in found:
                raise ConversionError(
                    f"{p}: two {what} named {p.stem!r} ({found[p.stem].name}, {p.name}); keep one"
                )
            found[p.stem] = p
    return found


def _mask_item(
    stem: str,
    mask_path: Path,
    photo_path: Path,
    num_classes: int,
    binary_id: int | None,
    binary: set[str],
) -> Item:
    def read() -> tuple[Photo, np.ndarray]:
        # With --binary-class every 0/255 mask is binary (the user said so); else never.
        mask = binary_to_index(mask_path, binary_id) if binary_id is not None else None
        if mask is not None:
            binary.add(stem)  # counted for the notes
        else:
            try:
                mask = read_mask(mask_path, num_classes)
            except MaskError as err:
                raise ConversionError(str(err)) from err
        photo = decode_photo(photo_path.read_bytes(), photo_path, mask.shape, orientation="apply")
        return photo, mask

    return Item(stem, mask_path, read)


def _background_item(stem: str, photo_path: Path) -> Item:
    def read() -> tuple[Photo, np.ndarray]:
        photo = decode_photo(photo_path.read_bytes(), photo_path)
        return photo, np.zeros((photo.height, photo.width), np.uint8)

    return Item(stem, photo_path, read)


def plan_mask_folder(
    masks: str | Path,
    images: str | Path,
    table: ClassTable,
    binary_class: str | None = None,
    unlabelled_as_background: bool = False,
) -> ConversionPlan:
    """Pair `masks/<id>.png` with `images/<id>.*`, every pair read and checked (`check_items`).

    A mask without its photo is a problem (its annotation would be lost); a photo without a
    mask is unlabelled: skipped with a note, or kept all background when
    `unlabelled_as_background`. `binary_class`: the class name of the 255 pixels of 0/255 masks
    (None: such masks are problems).
    """
    masks, images = Path(masks), Path(images)
    for folder, flag in ((masks, "--from-masks"), (images, "--images")):
        if not folder.is_dir():
            raise ConversionError(f"{flag} {folder}: not a folder")
    if masks.resolve() == images.resolve():
        raise ConversionError(
            f"--from-masks and --images are the same folder ({masks}); keep the masks apart"
        )
    binary_id = None
    if binary_class is not None:
        binary_id = table.index(binary_class, f"--binary-class {binary_class}")
    mask_files = _by_stem(masks, MASK_SUFFIXES, "masks")
    photo_files = _by_stem(images, PHOTO_SUFFIXES, "photos")
    if not mask_files:
        raise ConversionError(f"--from-masks {masks}: no mask images ({', '.join(MASK_SUFFIXES)})")
    problems: list[str] = []
    notes: list[str] = []
    items: list[Item] = []
    binary: set[str] = set()  # ids of the 0/255 masks read as --binary-class
    for stem, mask_path in mask_files.items():
        photo_path = photo_files.get(stem)
        if photo_path is None:
            problems.append(f"{mask_path}: no photo {stem}.* in {images}")
            continue
        k = len(table.classes)
        items.append(_mask_item(stem, mask_path, photo_path, k, binary_id, binary))
    for stem in sorted(set(photo_files) - set(mask_files)):
        if unlabelled_as_background:
            items.append(_background_item(stem, photo_files[stem]))
            notes.append(f"{photo_files[stem]}: no mask; written as all background")
        else:
            notes.append(
                f"{photo_files[stem]}: no mask in {masks}; skipped (--unlabelled-as-background "
                "keeps it as a photo without defects)"
            )
    plan = check_items(items, notes, table, str(masks), problems)
    if binary:
        plan.notes.append(f"{len(binary)} binary 0/255 masks: 255 -> {binary_class!r}")
    return plan


def convert_mask_folder(
    masks: str | Path,
    images: str | Path,
    writer: VocWriter,
    table: ClassTable,
    binary_class: str | None = None,
    unlabelled_as_background: bool = False,
) -> ConversionResult:
    """`plan_mask_folder`, then written by `writer` (nothing is written on a problem)."""
    plan = plan_mask_folder(masks, images, table, binary_class, unlabelled_as_background)
    return writer.write(plan)
