"""Photos to calibrate INT8 quantisation on: a seeded sample of a VOC split's photos.

FastSegFormer (Cai et al., Computers and Electronics in Agriculture 217, 108604, 2024) runs on
fruit-sorting lines, often on a CPU; INT8 (utils.deploy.optimize) needs the activation ranges
of real inputs, so calibration reads photos of the training split, never the split that is
scored afterwards.
"""

from __future__ import annotations

import random
from pathlib import Path

from utils.inference.evaluate import split_files


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
