"""VOC data set (utils/data/dataset.py) and the original's augmentation (utils/data/augment.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from utils.data.augment import AugmentParams, hsv_jitter, random_augment, random_geometry
from utils.data.dataset import VOCSegmentation
from utils.data.labels import MaskError, index_to_colour, save_index_mask
from utils.data.preprocess import letterbox, letterbox_mask, read_image, to_tensor

H, W = 40, 56


def _write_voc(root: Path, n: int = 5) -> Path:
    """A tiny VOC2007 tree: n photos with block masks, train = all, val = the first two."""
    voc = root / "VOC2007"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (voc / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    ids = [f"im{i}" for i in range(n)]
    for i, name in enumerate(ids):
        photo = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
        cv2.imwrite(str(voc / "JPEGImages" / f"{name}.jpg"), photo)
        mask = np.zeros((H, W), np.uint8)
        mask[5:15, 5 + i : 20 + i] = 1 + i % 3
        mask[30:35, 40:50] = 255  # the ignore index
        save_index_mask(voc / "SegmentationClass" / f"{name}.png", mask)
    split = voc / "ImageSets" / "Segmentation"
    (split / "train.txt").write_text("\n".join(ids) + "\n\n")
    (split / "val.txt").write_text("im0\nim1.jpg\n")
    return voc


@pytest.fixture()
def voc(tmp_path: Path) -> Path:
    return _write_voc(tmp_path / "data")


def test_layout_and_items(voc: Path) -> None:
    ds = VOCSegmentation(voc.parent, "train", (32, 48), 4, train=True)
    assert ds.ids == [f"im{i}" for i in range(5)] and len(ds) == 5
    assert ds.class_names == ("background", "sunburn", "ulcer", "wind_scarring")
    x, y = ds[0]
    assert x.shape == (3, 32, 48) and x.dtype == torch.float32
    assert y.shape == (32, 48) and y.dtype == torch.int64
    assert set(torch.unique(y).tolist()) <= {0, 1, 2, 3, 255}
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    # VOC2007 itself is accepted as root; extensions in split files are tolerated.
    val = VOCSegmentation(voc, "val", 32, 4, train=False)
    assert val.ids == ["im0", "im1"] and val.input_size == (32, 32)


def test_eval_items_use_the_shared_preprocessing(voc: Path) -> None:
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    ds = VOCSegmentation(voc, "val", (32, 48), 4, train=False, mean=mean, std=std)
    x, y = ds[1]
    photo = read_image(voc / "JPEGImages" / "im1.jpg")
    expected = to_tensor(letterbox(photo, (32, 48))[0], mean, std)
    assert np.allclose(x.numpy(), expected)
    mask = np.asarray(Image.open(voc / "SegmentationClass" / "im1.png"))
    label = letterbox_mask(mask, (32, 48))
    assert np.array_equal(y.numpy(), label)
    assert (y == 255).any(), "255 stays the ignore index"


def test_missing_split_file(voc: Path) -> None:
    with pytest.raises(ValueError, match=r"split file not found: .*test\.txt"):
        VOCSegmentation(voc, "test", 32, 4)


def test_split_names_a_missing_photo(voc: Path) -> None:
    (voc / "JPEGImages" / "im3.jpg").unlink()
    with pytest.raises(ValueError, match=r"1 of 5 ids in .*train\.txt have no photo.*im3"):
        VOCSegmentation(voc, "train", 32, 4)


def test_split_names_a_missing_mask(voc: Path) -> None:
    (voc / "SegmentationClass" / "im2.png").unlink()
    with pytest.raises(ValueError, match=r"train\.txt have no mask.*im2"):
        VOCSegmentation(voc, "train", 32, 4)


def test_no_voc_folder(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no VOC data set"):
        VOCSegmentation(tmp_path, "train", 32, 4)


def _break(voc: Path, how: str) -> str:
    """Damage im2 in one of the ways users report; return the file name the error must name."""
    mask_path = voc / "SegmentationClass" / "im2.png"
    if how == "size":
        save_index_mask(mask_path, np.zeros((H + 2, W), np.uint8))
        return "im2.png"
    if how == "binary":
        binary = np.zeros((H, W), np.uint8)
        binary[10:30, 10:30] = 255
        Image.fromarray(binary).save(mask_path)
        return "im2.png"
    if how == "colour":
        rgb = index_to_colour(np.zeros((H, W), np.uint8))
        rgb[10:20, 10:20] = (200, 30, 30)
        Image.fromarray(rgb).save(mask_path)
        return "im2.png"
    (voc / "JPEGImages" / "im2.jpg").write_bytes(b"\xff\xd8\xff garbage, not a JPEG")
    return "im2.jpg"


EXPECTED = {
    "size": r"mask is 56x42.*expected the same size",
    "binary": r"0/255 binary mask",
    "colour": r"colours outside the VOC palette.*\(200,30,30\)",
    "jpeg": r"cannot decode image",
}


@pytest.mark.parametrize("workers", [0, 1])
@pytest.mark.parametrize("how", sorted(EXPECTED))
def test_bad_sample_error_surfaces_through_dataloader(voc: Path, how: str, workers: int) -> None:
    name = _break(voc, how)
    ds = VOCSegmentation(voc, "train", 32, 4, train=True)
    loader = DataLoader(ds, batch_size=5, num_workers=workers)
    with pytest.raises(ValueError, match=EXPECTED[how]) as info:
        next(iter(loader))
    assert name in str(info.value), f"the error must name {name}: {info.value}"


def test_bad_mask_error_type_is_mask_error(voc: Path) -> None:
    _break(voc, "binary")
    with pytest.raises(MaskError):
        VOCSegmentation(voc, "train", 32, 4)[2]


def test_real_samples_load_through_dataset(real_samples: Path, tmp_path: Path) -> None:
    voc = tmp_path / "VOC2007"
    shutil.copytree(real_samples / "JPEGImages", voc / "JPEGImages")
    shutil.copytree(real_samples / "SegmentationClass", voc / "SegmentationClass")
    (voc / "ImageSets" / "Segmentation").mkdir(parents=True)
    ids = sorted(p.stem for p in (voc / "JPEGImages").glob("*.jpg"))
    (voc / "ImageSets" / "Segmentation" / "val.txt").write_text("\n".join(ids))
    ds = VOCSegmentation(tmp_path, "val", 224, 4, train=False)
    seen = set()
    for i in range(len(ds)):
        x, y = ds[i]
        assert x.shape == (3, 224, 224) and y.shape == (224, 224)
        seen |= set(torch.unique(y).tolist())
    assert seen == {0, 1, 2, 3}


# ----------------------------------------------------------------------------- augmentation

CLASS_RGB = np.array([[20, 20, 220], [230, 30, 30], [30, 220, 40], [240, 240, 30]], np.uint8)


def _known_pattern() -> tuple[np.ndarray, np.ndarray]:
    """An asymmetric label layout and a photo whose colour encodes the label."""
    mask = np.zeros((96, 128), np.uint8)
    mask[8:40, 10:50] = 1
    mask[50:90, 20:40] = 2
    mask[20:80, 80:120] = 3
    mask[60:70, 50:100] = 1
    return CLASS_RGB[mask], mask


@pytest.mark.parametrize("seed", range(12))
def test_augmentation_keeps_photo_and_mask_aligned(seed: int) -> None:
    photo, mask = _known_pattern()
    params = AugmentParams(hue=0.0, sat=0.0, val=0.0)  # keep colours so they can be read back
    out_photo, out_mask = random_augment(photo, mask, (64, 80), np.random.default_rng(seed), params)
    assert out_photo.shape == (64, 80, 3) and out_mask.shape == (64, 80)
    # Compare away from label edges (bicubic blends colours across them).
    padded = np.pad(out_mask, 2, mode="edge")
    uniform = np.ones_like(out_mask, bool)
    for dy in range(5):
        for dx in range(5):
            uniform &= padded[dy : dy + 64, dx : dx + 80] == out_mask
    grey = (np.abs(out_photo.astype(int) - 128).max(-1) <= 3) & (out_mask == 0)
    dist = np.abs(out_photo[:, :, None, :].astype(int) - CLASS_RGB[None, None].astype(int)).sum(-1)
    nearest = dist.argmin(-1)
    check = uniform & ~grey
    assert check.sum() > 40
    agree = (nearest[check] == out_mask[check]).mean()
    assert agree > 0.99, f"photo and mask disagree on {100 * (1 - agree):.1f}% of pixels"


def test_augmentation_flips_sometimes_and_scales_in_range() -> None:
    rng = np.random.default_rng(0)
    draws = [random_geometry(512, 512, (224, 224), rng) for _ in range(400)]
    flips = np.mean([d[4] for d in draws])
    assert 0.4 < flips < 0.6
    longest = np.array([max(d[0], d[1]) for d in draws]) / 224
    assert longest.min() >= 0.24 and longest.max() <= 2.0
    assert longest.min() < 0.4 and longest.max() > 1.8


def test_hsv_jitter_changes_colour_not_shape() -> None:
    photo, _ = _known_pattern()
    rng = np.random.default_rng(1)
    same = hsv_jitter(photo, np.random.default_rng(0), 0.0, 0.0, 0.0)
    assert np.abs(same.astype(int) - photo.astype(int)).max() <= 3  # HSV round trip only
    moved = hsv_jitter(photo, rng, 0.1, 0.7, 0.3)
    assert moved.shape == photo.shape and not np.array_equal(moved, photo)


def test_training_items_differ_across_workers(voc: Path) -> None:
    torch.manual_seed(0)
    ds = VOCSegmentation(voc, "train", 32, 4, train=True)
    ds.photo_paths = [ds.photo_paths[0]] * 4  # same photo 4 times
    ds.mask_paths = [ds.mask_paths[0]] * 4
    ds.ids = ds.ids[:4]
    batch = next(iter(DataLoader(ds, batch_size=4, num_workers=1)))[0]
    assert not torch.equal(batch[0], batch[1])
