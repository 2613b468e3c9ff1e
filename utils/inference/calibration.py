"""Photos to calibrate INT8 quantisation on: the training split, or generated oranges.

FastSegFormer (Cai et al., Computers and Electronics in Agriculture 217, 108604, 2024) runs on
fruit-sorting lines, often on a CPU; INT8 (utils.deploy.optimize for ONNX Runtime,
utils.deploy.openvino_export for OpenVINO/NNCF) needs the activation ranges of real inputs, so
calibration reads photos of the training split, never the split that is scored afterwards.
Without a data set (a fresh clone, a deployed model), `calibration_photos` renders a few
synthetic navel oranges (utils.data.synthetic) instead, and says so in its note.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np

from utils.data.synthetic import render_orange
from utils.inference.evaluate import split_files

SYNTHETIC_CALIBRATION = 24  # generated oranges when there is no data set
SYNTHETIC_SIZE = 512  # rendered like the data set's photos, then letterboxed like any photo


def calibration_images(
    data: str | Path, split: str = "train", num: int = 200, seed: int = 0
) -> list[Path]:
    """Up to `num` photo paths of a VOC split (a seeded sample when the split is larger)."""
    _, photos, _ = split_files(data, split, num_classes=256, need_masks=False)
    photos = list(photos)
    if not photos:
        raise ValueError(f"no photos in split {split!r} of {data}")
    if len(photos) > num:
        photos = random.Random(seed).sample(photos, num)
    return photos


def synthetic_oranges(num: int, seed: int = 0, size: int = SYNTHETIC_SIZE) -> list[np.ndarray]:
    """`num` rendered navel-orange photos, (size, size, 3) uint8 RGB, the same for a seed."""
    rng = np.random.default_rng(seed)
    return [render_orange(rng, size).image for _ in range(num)]


def calibration_photos(
    data: str | Path | None,
    split: str = "train",
    num: int = 200,
    seed: int = 0,
    synthetic: int = SYNTHETIC_CALIBRATION,
) -> tuple[list[Path | np.ndarray], str]:
    """(photos, note): up to `num` photos of `split` of `data`, else `synthetic` generated ones.

    The note says where the photos came from ("120 train photos of data/x" or "24 generated
    synthetic oranges (no train split: ...)"), for the rows and lines that report INT8.
    """
    reason = "no data set given"
    if data:
        try:
            photos = calibration_images(data, split, num, seed)
            return list(photos), f"{len(photos)} {split} photos of {data}"
        except (FileNotFoundError, ValueError) as e:
            reason = str(e).splitlines()[0]
    n = min(num, synthetic)
    return list(synthetic_oranges(n, seed)), f"{n} generated synthetic oranges ({reason})"
