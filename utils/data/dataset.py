"""PASCAL-VOC-layout segmentation data set, as the FastSegFormer data set (Orange_Navel_1.5k) ships.

Layout (``root`` is the folder holding ``VOC2007/``, or ``VOC2007`` itself)::

    VOC2007/JPEGImages/<id>.jpg
    VOC2007/SegmentationClass/<id>.png          class-id masks (see utils/data/labels.py)
    VOC2007/ImageSets/Segmentation/{train,val,test}.txt   one <id> per line

Items are ``(image, label)``: image float32 (3, H, W) from `utils.data.preprocess.to_tensor`
(RGB / 255, then mean/std if given: the same function inference uses), label int64 (H, W)
of class ids 0..num_classes-1 and 255 (ignore). Training items go through the original
random augmentation (utils/data/augment.py); evaluation items are letterboxed like inference.

The split is checked when the data set is built (every listed photo and mask must exist,
utils.data.voc), and each sample is checked when loaded (mask readable, same size as its
photo, colours in the VOC palette, not a 0/255 binary mask, no value >= num_classes but 255,
photo decodable); problems raise a ValueError that names the file, which a DataLoader worker
passes on to the main process unchanged. The original code turned mask values >= num_classes
into "ignore"; we refuse them, so a wrong label never reaches the loss. `check_mask_values`
(utils/data/mask_values.py) finds them in a whole split before training starts.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from utils.data.augment import AugmentParams, random_augment
from utils.data.class_names import default_class_names
from utils.data.labels import check_sizes, read_mask
from utils.data.preprocess import CLASS_NAMES, letterbox, letterbox_mask, read_image, to_tensor
from utils.data.voc import resolve_voc_root, split_paths


class VOCSegmentation(Dataset):
    """One split of a VOC-layout segmentation data set (see the module docstring).

    Args:
        root: folder containing VOC2007/ (or VOC2007 itself).
        split: "train", "val", "test" or any ImageSets/Segmentation/<split>.txt.
        input_size: network input (h, w) or one int for a square.
        num_classes: label values >= num_classes other than 255 (ignore) are refused.
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

        self.split_file, self.ids, self.photo_paths, self.mask_paths = split_paths(self.voc, split)

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
        x = torch.from_numpy(to_tensor(image, self.mean, self.std))  # (3, H, W) float32
        y = torch.from_numpy(mask.astype(np.int64))  # (H, W) int64
        return x, y

    def __repr__(self) -> str:
        return (
            f"VOCSegmentation({str(self.voc)!r}, split={self.split!r}, n={len(self)}, "
            f"input_size={self.input_size}, num_classes={self.num_classes}, train={self.train})"
        )
