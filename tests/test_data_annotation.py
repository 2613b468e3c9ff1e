"""voc_annotation.py: split files, mask checks, histogram, conversions, --force."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

import voc_annotation
from utils.data.labels import index_to_colour, read_mask, save_index_mask

H, W = 24, 32


def _voc(root: Path, n: int = 10) -> Path:
    voc = root / "VOC2007"
    (voc / "JPEGImages").mkdir(parents=True)
    (voc / "SegmentationClass").mkdir()
    for i in range(n):
        cv2.imwrite(str(voc / "JPEGImages" / f"p{i:02d}.jpg"), np.full((H, W, 3), 90, np.uint8))
        mask = np.zeros((H, W), np.uint8)
        mask[2:6, 2:6] = 1 + i % 3
        save_index_mask(voc / "SegmentationClass" / f"p{i:02d}.png", mask)
    return voc


def _split(voc: Path, name: str) -> list[str]:
    return (voc / "ImageSets" / "Segmentation" / f"{name}.txt").read_text().split()


def test_writes_seeded_splits_with_ratios(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    voc = _voc(tmp_path)
    assert voc_annotation.main(["--data", str(tmp_path), "--seed", "3"]) == 0
    train, val, test = (_split(voc, s) for s in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (6, 2, 2)
    assert sorted(train + val + test) == [f"p{i:02d}" for i in range(10)]
    assert sorted(_split(voc, "trainval")) == sorted(train + val)
    out = capsys.readouterr().out
    # Histogram: 4x4 px of class 1 in p00, p03, p06, p09.
    assert re.search(r"sunburn\s+64\s", out), out
    # Same seed, same split; --ratios changes the sizes.
    first = train
    assert voc_annotation.main(["--data", str(tmp_path), "--seed", "3", "--force"]) == 0
    assert _split(voc, "train") == first
    args = ["--data", str(voc), "--ratios", "8", "1", "1", "--force"]
    assert voc_annotation.main(args) == 0
    assert len(_split(voc, "train")) == 8


def test_never_overwrites_without_force(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    voc = _voc(tmp_path)
    split = voc / "ImageSets" / "Segmentation"
    split.mkdir(parents=True)
    (split / "train.txt").write_text("mine\n")
    voc_annotation.main(["--data", str(tmp_path)])
    assert (split / "train.txt").read_text() == "mine\n"
    assert not (split / "val.txt").exists()
    assert "--force" in capsys.readouterr().out


def test_reports_problems_and_leaves_them_out(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    voc = _voc(tmp_path)
    binary = np.zeros((H, W), np.uint8)
    binary[5:20, 5:20] = 255
    Image.fromarray(binary).save(voc / "SegmentationClass" / "p01.png")
    save_index_mask(voc / "SegmentationClass" / "p02.png", np.zeros((H + 1, W), np.uint8))
    (voc / "JPEGImages" / "p03.jpg").unlink()
    cv2.imwrite(str(voc / "JPEGImages" / "extra.jpg"), np.zeros((H, W, 3), np.uint8))
    assert voc_annotation.main(["--data", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "p01.png" in out and "binary" in out
    assert "p02.png" in out and "same size" in out
    assert "p03.png: mask has no photo" in out
    assert "extra.jpg: photo has no mask" in out
    listed = sum((_split(voc, s) for s in ("train", "val", "test")), [])
    assert sorted(listed) == [f"p{i:02d}" for i in range(10) if i not in (1, 2, 3)]


def test_converts_colour_and_binary_masks(tmp_path: Path) -> None:
    voc = _voc(tmp_path, n=4)
    mask = np.zeros((H, W), np.uint8)
    mask[3:9, 3:12] = 3
    Image.fromarray(index_to_colour(mask)).save(voc / "SegmentationClass" / "p00.png")
    binary = np.zeros((H, W), np.uint8)
    binary[5:20, 5:20] = 255
    Image.fromarray(binary).save(voc / "SegmentationClass" / "p01.png")
    args = ["--data", str(tmp_path), "--convert-colour", "--binary-to-index", "2"]
    assert voc_annotation.main(args) == 0
    with Image.open(voc / "SegmentationClass" / "p00.png") as im:
        assert im.mode == "P"
    assert np.array_equal(read_mask(voc / "SegmentationClass" / "p00.png", 4), mask)
    converted = read_mask(voc / "SegmentationClass" / "p01.png", 4)
    assert np.array_equal(converted, np.where(binary == 255, 2, 0))
    backups = sorted(p.name for p in (voc / "SegmentationClass_original").iterdir())
    assert backups == ["p00.png", "p01.png"]


def test_check_only_writes_nothing(tmp_path: Path) -> None:
    voc = _voc(tmp_path, n=3)
    assert voc_annotation.main(["--data", str(tmp_path), "--check-only"]) == 0
    assert not (voc / "ImageSets").exists()
