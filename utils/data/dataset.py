"""PASCAL-VOC-layout segmentation data set, as the FastSegFormer data set (Orange_Navel_1.5k) ships.

Layout (``root`` is the folder holding ``VOC2007/``, or ``VOC2007`` itself)::

    VOC2007/JPEGImages/<id>.jpg
    VOC2007/SegmentationClass/<id>.png          class-id masks (see utils/data/labels.py)
    VOC2007/ImageSets/Segmentation/{train,val,test}.txt   one <id> per line

Items are ``(image, label)``: image float32 (3, H, W) from `utils.data.preprocess.to_tensor`
(RGB / 255, then mean/std if given: the same function inference uses), label int64 (H, W)
with values >= num_classes set to 255 (ignore). Training items go through the original
random augmentation (utils/data/augment.py); evaluation items are letterboxed like inference.

The split is checked when the data set is built (every listed photo and mask must exist), and
each sample is checked when loaded (mask readable, same size as its photo, colours in the VOC
palette, not a 0/255 binary mask, photo decodable); problems raise a ValueError that names the
file, which a DataLoader worker passes on to the main process unchanged.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from utils.data.augment import AugmentParams, random_augment
from utils.data.class_names import default_class_names
from utils.data.labels import check_sizes, map_ignore, read_mask
from utils.data.preprocess import CLASS_NAMES, letterbox, letterbox_mask, read_image, to_tensor

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


class VOCSegmentation(Dataset):
    """One split of a VOC-layout segmentation data set (see the module docstring).

    Args:
        root: folder containing VOC2007/ (or VOC2007 itself).
        split: "train", "val", "test" or any ImageSets/Segmentation/<split>.txt.
        input_size: network input (h, w) or one int for a square.
        num_classes: label values >= num_classes become 255 (ignore).
        train: random augmentation if True, letterbox otherwise.
        mean, std: optional normalisation after /255 (None = the paper's plain /255).
    """

    def __init__(
        self,
        root: str | Path,
        split: str,
        input_size: int | Sequence[int],
        num_classes: int = len(CLASS_NAMES),
        train: bool = False,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        augment: AugmentParams | None = None,
        class_names: Sequence[str] | None = None,
    ) -> None:
        self.voc = resolve_voc_root(root)
        self.split = split
        if isinstance(input_size, int):
            input_size = (input_size, input_size)
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.num_classes = int(num_classes)
        self.train = bool(train)
        self.mean = None if mean is None else tuple(float(m) for m in mean)
        self.std = None if std is None else tuple(float(s) for s in std)
        self.augment = augment or AugmentParams()
        if class_names is None:
            class_names = default_class_names(self.num_classes)
        self.class_names = tuple(class_names)

        self.split_file, self.ids = read_split(self.voc, split)
        photo_dir, mask_dir = self.voc / "JPEGImages", self.voc / "SegmentationClass"
        photos = _index_photos(photo_dir)
        masks = set(os.listdir(mask_dir)) if mask_dir.is_dir() else set()
        missing_photo = [i for i in self.ids if i not in photos]
        if missing_photo:
            raise ValueError(
                _missing_message("photo", photo_dir, missing_photo, self.split_file, len(self.ids))
            )
        missing_mask = [i for i in self.ids if f"{i}.png" not in masks]
        if missing_mask:
            raise ValueError(
                _missing_message("mask", mask_dir, missing_mask, self.split_file, len(self.ids))
            )
        self.photo_paths = [photo_dir / photos[i] for i in self.ids]
        self.mask_paths = [mask_dir / f"{i}.png" for i in self.ids]

    def __len__(self) -> int:
        return len(self.ids)

    def load_pair(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Checked (photo (H, W, 3) uint8 RGB, mask (H, W) uint8 class ids) at full size."""
        photo_path, mask_path = self.photo_paths[index], self.mask_paths[index]
        image = read_image(photo_path)
        mask = read_mask(mask_path, self.num_classes)
        check_sizes(image.shape, mask.shape, photo_path, mask_path)
        return image, mask

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = self.load_pair(index)
        if self.train:
            # Drawn from torch's generator: distinct in every DataLoader worker and epoch, and
            # reproducible under torch.manual_seed (numpy's global state is copied per worker).
            seed = int(torch.randint(0, 2**62, (1,)).item())
            image, mask = random_augment(
                image, mask, self.input_size, np.random.default_rng(seed), self.augment
            )
        else:
            image, _ = letterbox(image, self.input_size)
            mask = letterbox_mask(mask, self.input_size)
        mask = map_ignore(mask, self.num_classes)
        x = torch.from_numpy(to_tensor(image, self.mean, self.std))  # (3, H, W) float32
        y = torch.from_numpy(mask.astype(np.int64))  # (H, W) int64
        return x, y

    def __repr__(self) -> str:
        return (
            f"VOCSegmentation({str(self.voc)!r}, split={self.split!r}, n={len(self)}, "
            f"input_size={self.input_size}, num_classes={self.num_classes}, train={self.train})"
        )
