"""Synthetic navel oranges (utils/data/synthetic.py): layout, determinism, photo/mask agreement."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from utils.data.dataset import VOCSegmentation
from utils.data.synthetic import generate_dataset, main, render_orange

SIZE = 128  # small frames keep the tests fast; the generator scales with size


def _files(voc: Path) -> dict[str, bytes]:
    return {str(p.relative_to(voc)): p.read_bytes() for p in sorted(voc.rglob("*")) if p.is_file()}


def test_layout_splits_and_loading(tmp_path: Path) -> None:
    out = generate_dataset(tmp_path / "syn", num=10, seed=3, size=SIZE, workers=1)
    voc = out / "VOC2007"
    photos = sorted(p.stem for p in (voc / "JPEGImages").glob("*.jpg"))
    masks = sorted(p.stem for p in (voc / "SegmentationClass").glob("*.png"))
    assert len(photos) == 10 and photos == masks
    splits = {
        s: (voc / "ImageSets" / "Segmentation" / f"{s}.txt").read_text().split()
        for s in ("train", "val", "test")
    }
    assert [len(splits[s]) for s in ("train", "val", "test")] == [6, 2, 2]
    assert sorted(sum(splits.values(), [])) == photos  # disjoint and complete
    with Image.open(voc / "SegmentationClass" / f"{photos[0]}.png") as im:
        assert im.mode == "P" and im.size == (SIZE, SIZE)
    report = json.loads((voc / "class_frequencies.json").read_text())
    assert sum(report["pixels"].values()) == 10 * SIZE * SIZE
    ds = VOCSegmentation(out, "train", 64, 4, train=True)
    x, y = ds[0]
    assert x.shape == (3, 64, 64) and int(y.max()) <= 3


def test_same_seed_same_files(tmp_path: Path) -> None:
    a = generate_dataset(tmp_path / "a", num=4, seed=7, size=SIZE, workers=1) / "VOC2007"
    b = generate_dataset(tmp_path / "b", num=4, seed=7, size=SIZE, workers=1) / "VOC2007"
    c = generate_dataset(tmp_path / "c", num=4, seed=8, size=SIZE, workers=1) / "VOC2007"
    assert _files(a) == _files(b)
    assert _files(a) != _files(c)


def test_refuses_to_overwrite(tmp_path: Path) -> None:
    generate_dataset(tmp_path / "s", num=3, seed=0, size=96, workers=1)
    with pytest.raises(FileExistsError, match="VOC2007 already exists"):
        generate_dataset(tmp_path / "s", num=3, seed=0, size=96, workers=1)
    generate_dataset(tmp_path / "s", num=3, seed=1, size=96, workers=1, overwrite=True)


def test_masks_match_what_the_photo_shows() -> None:
    """Defect pixels lie on the fruit and look different from the peel right around them."""
    rng = np.random.default_rng(11)
    classes_seen, clean = set(), 0
    for _ in range(24):
        s = render_orange(rng, 256)
        assert s.image.shape == (256, 256, 3) and s.mask.shape == (256, 256)
        assert set(np.unique(s.mask).tolist()) <= {0, 1, 2, 3}
        defect = s.mask > 0
        if not defect.any():
            clean += 1
            continue
        assert not (defect & ~s.fruit).any(), "a defect label lies off the fruit"
        lab = cv2.cvtColor(s.image, cv2.COLOR_RGB2LAB).astype(np.float32)
        for k in np.unique(s.mask[defect]):
            inside = s.mask == k
            ring = cv2.dilate(inside.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
            ring &= (s.mask == 0) & s.fruit
            if inside.sum() < 20 or ring.sum() < 20:
                continue
            diff = np.linalg.norm(lab[inside].mean(0) - lab[ring].mean(0))
            assert diff > 6, f"class {k} is hard to see: Lab difference {diff:.1f}"
            classes_seen.add(int(k))
    assert classes_seen == {1, 2, 3}
    assert clean >= 1, "some oranges must be clean"


def test_cli_prints_frequencies(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert (
        main(["--out", str(tmp_path / "cli"), "--num", "3", "--size", "96", "--workers", "1"]) == 0
    )
    assert main(["--out", str(tmp_path / "cli"), "--num", "3", "--size", "96"]) == 2
    out = capsys.readouterr()
    assert "sunburn" in out.out and "share %" in out.out
    assert "already exists" in out.err


def test_same_files_whatever_the_number_of_workers(tmp_path: Path) -> None:
    one = generate_dataset(tmp_path / "one", num=8, seed=2, size=96, workers=1) / "VOC2007"
    two = generate_dataset(tmp_path / "two", num=8, seed=2, size=96, workers=2) / "VOC2007"
    assert _files(one) == _files(two)
