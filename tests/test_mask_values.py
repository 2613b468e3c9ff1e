"""Mask values that are no class stop training and fail the check, naming the file and values.

The original code turned values >= num_classes into "ignore"; this project refuses them (255
stays "ignore"): in every mask read (utils/data/labels.py), over whole splits before training
(utils/data/mask_values.py), and in `voc_annotation.py --check-only`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_train_helpers import make_tiny_voc

import utils.data.mask_values as mask_values
import voc_annotation
from train import main as train_main
from train_distillation import main as distill_main
from utils.data.dataset import VOCSegmentation
from utils.data.labels import MaskError, read_mask, save_index_mask
from utils.data.mask_values import CACHE_NAME, check_mask_values
from utils.data.preprocess import VOC_PALETTE


def _mask(*values: int, size: int = 64) -> np.ndarray:
    """A background mask with a 6x6 block of each value."""
    mask = np.zeros((size, size), np.uint8)
    for i, v in enumerate(values):
        mask[2:8, 2 + 8 * i : 8 + 8 * i] = v
    return mask


def test_read_mask_refuses_values_that_are_no_class_but_keeps_255(tmp_path):
    path = tmp_path / "m.png"
    save_index_mask(path, _mask(1, 4, 5, 7, 255))
    with pytest.raises(MaskError) as err:
        read_mask(path, 4)
    text = str(err.value)
    assert text.startswith(f"{path}: values 4 (36 px), 5 (36 px), 7 (36 px) are not classes")
    assert "0..3 or 255 (ignore)" in text and "--num-classes 8" in text
    assert set(np.unique(read_mask(path, 8))) == {0, 1, 4, 5, 7, 255}
    save_index_mask(path, _mask(1, 3, 255))
    assert set(np.unique(read_mask(path, 4))) == {0, 1, 3, 255}


def test_a_colour_mask_with_a_class_beyond_the_count_is_refused(tmp_path):
    rgb = VOC_PALETTE[_mask(2, 5)]  # (H, W, 3) VOC colours of classes 0, 2 and 5
    Image.fromarray(rgb.astype(np.uint8), "RGB").save(tmp_path / "c.png")
    with pytest.raises(MaskError, match=r"c\.png: values 5 \(36 px\) are not classes"):
        read_mask(tmp_path / "c.png", 4)
    assert set(np.unique(read_mask(tmp_path / "c.png", 6))) == {0, 2, 5}


@pytest.fixture
def voc(tmp_path) -> Path:
    return make_tiny_voc(tmp_path / "data", num=6, size=64)


def _spoil(voc: Path, split: str, index: int, *values: int) -> Path:
    """Overwrite the mask of the `index`-th id of `split` with blocks of `values`."""
    ids = (voc / "VOC2007" / "ImageSets" / "Segmentation" / f"{split}.txt").read_text().split()
    path = voc / "VOC2007" / "SegmentationClass" / f"{ids[index]}.png"
    save_index_mask(path, _mask(*values))
    return path


@pytest.mark.parametrize("train", [True, False])
def test_data_set_items_refuse_such_values_naming_the_file(voc, train):
    split = "train" if train else "val"
    bad = _spoil(voc, split, 0, 4, 255)
    ds = VOCSegmentation(voc, split, 64, 4, train=train)
    with pytest.raises(MaskError, match=rf"{bad.name}: values 4 \(36 px\) are not classes"):
        ds[0]


def test_the_split_check_lists_every_bad_mask_and_caches_the_values(voc, monkeypatch):
    bad = [_spoil(voc, "train", 0, 4, 5), _spoil(voc, "train", 1, 7)]
    ds = VOCSegmentation(voc, "train", 64, 4)
    with pytest.raises(MaskError) as err:
        check_mask_values(ds)
    text = str(err.value)
    assert f"2 of {len(ds)} masks hold values that are not classes of --num-classes 4" in text
    assert f"{bad[0]}: 4, 5; {bad[1]}: 7" in text and "use --num-classes 8" in text
    assert (voc / "VOC2007" / CACHE_NAME).is_file()

    reads = []
    real_read = mask_values.read_mask
    monkeypatch.setattr(mask_values, "read_mask", lambda p: reads.append(p) or real_read(p))
    with pytest.raises(MaskError):
        check_mask_values(ds)
    assert reads == [], "unchanged masks come from the cache"
    save_index_mask(bad[0], _mask(1, 255))
    save_index_mask(bad[1], _mask(3))
    assert check_mask_values(ds).read == 2 and reads == bad
    assert check_mask_values(VOCSegmentation(voc, "train", 64, 8)).read == 0


def test_the_split_check_works_without_a_writable_cache(voc, monkeypatch):
    def read_only(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(mask_values, "write_text", read_only)
    _spoil(voc, "val", 0, 9)
    with pytest.raises(MaskError, match=r"1 of \d+ masks hold values .*: 9\."):
        check_mask_values(VOCSegmentation(voc, "val", 64, 4))
    assert not (voc / "VOC2007" / CACHE_NAME).exists()


TRAIN = [
    "--input-size", "64", "--epochs", "1", "--freeze-epochs", "0", "--batch-size", "2",
    "--max-steps", "1", "--workers", "0", "--device", "cpu", "--no-tensorboard", "--name", "r",
]  # fmt: skip


@pytest.mark.parametrize("split", ["train", "val"])
def test_train_py_stops_before_training_naming_the_mask_and_values(voc, tmp_path, capsys, split):
    bad = _spoil(voc, split, 0, 4, 5, 7)
    assert train_main(["--data", str(voc), "--save-dir", str(tmp_path / "runs"), *TRAIN]) == 2
    captured = capsys.readouterr()
    lines = [ln for ln in captured.err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("train.py: error: ")
    assert f"{split}.txt: 1 of" in lines[0] and f"{bad}: 4, 5, 7" in lines[0]
    assert not (tmp_path / "runs").exists(), "nothing is trained or written"


def test_train_distillation_py_stops_alike(voc, tmp_path, capsys):
    bad = _spoil(voc, "val", 0, 6)
    teacher = tmp_path / "teacher.pth"  # never read: the masks are checked first
    teacher.write_bytes(b"not read")
    argv = ["--data", str(voc), "--save-dir", str(tmp_path / "runs"), *TRAIN]
    assert distill_main([*argv, "--teacher-checkpoint", str(teacher)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}: 6" in err and "train_distillation.py: error:" in err


def test_check_only_exits_non_zero_on_such_masks(voc, capsys):
    bad = _spoil(voc, "test", 0, 4)
    args = ["--data", str(voc), "--check-only"]
    assert voc_annotation.main(args) == 1
    out = capsys.readouterr().out
    assert f"{bad}: values 4 (36 px) are not classes of --num-classes 4" in out
    assert voc_annotation.main([*args, "--num-classes", "5"]) == 0
