"""get_miou.py / utils.inference.evaluate on a tiny hand-made VOC split.

The metrics of get_miou.py must equal an independent computation (torchmetrics) on the very
PNGs it wrote; the three modes, the report files and the bad-input errors are checked.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_predict_helpers import make_tiny, orange_photo, register_tiny, write_project_checkpoint
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassJaccardIndex,
    MulticlassPrecision,
    MulticlassRecall,
)

import get_miou
from utils.data.labels import read_mask, save_index_mask
from utils.data.preprocess import VOC_PALETTE

IDS = ["a1", "b2", "c3", "d4"]


def make_split(root: Path, ids=IDS) -> Path:
    """VOC2007 with photos of two sizes, palette masks, one RGB colour mask, an ignore band."""
    voc = root / "VOC2007"
    (voc / "JPEGImages").mkdir(parents=True)
    (voc / "ImageSets" / "Segmentation").mkdir(parents=True)
    rng = np.random.default_rng(1)
    for n, i in enumerate(ids):
        h, w = (40, 56) if n % 2 else (48, 48)
        Image.fromarray(orange_photo(h, w, seed=n)).save(voc / "JPEGImages" / f"{i}.jpg")
        mask = rng.integers(0, 4, (h // 8, w // 8)).repeat(8, 0).repeat(8, 1).astype(np.uint8)
        mask[:2] = 255  # ignored rows
        path = voc / "SegmentationClass" / f"{i}.png"
        if n == 1:  # a colour mask drawn in VOC palette colours
            rgb = VOC_PALETTE[mask]
            rgb[mask == 255] = 0  # colour masks cannot draw "ignore"; background instead
            path.parent.mkdir(exist_ok=True)
            Image.fromarray(rgb).save(path)
        else:
            save_index_mask(path, mask)
    (voc / "ImageSets" / "Segmentation" / "test.txt").write_text("\n".join(ids) + "\n")
    return root


def torchmetrics_scores(pred_dir: Path, mask_dir: Path, ids, k: int = 4) -> dict:
    preds, targets = [], []
    for i in ids:
        preds.append(torch.from_numpy(read_mask(pred_dir / f"{i}.png", k).astype(np.int64)))
        gt = read_mask(mask_dir / f"{i}.png", k).astype(np.int64)
        gt[gt >= k] = 255
        targets.append(torch.from_numpy(gt))
    p = torch.cat([x.reshape(-1) for x in preds])
    t = torch.cat([x.reshape(-1) for x in targets])
    kw = {"num_classes": k, "ignore_index": 255}
    return {
        "IoU": MulticlassJaccardIndex(average=None, **kw)(p, t).tolist(),
        "PA": MulticlassRecall(average=None, **kw)(p, t).tolist(),
        "Precision": MulticlassPrecision(average=None, **kw)(p, t).tolist(),
        "accuracy": MulticlassAccuracy(average="micro", **kw)(p, t).item(),
        "pred_classes": set(p[t != 255].unique().tolist()),
    }


@pytest.fixture
def tiny_ckpt(tmp_path, monkeypatch) -> Path:
    register_tiny(monkeypatch)
    return write_project_checkpoint(make_tiny(seed=3), tmp_path / "tiny.pth", input_size=32)


def test_get_miou_equals_torchmetrics_on_the_written_pngs(tmp_path, tiny_ckpt):
    data = make_split(tmp_path / "data")
    out = tmp_path / "out"
    rc = get_miou.main(
        [
            "--checkpoint",
            str(tiny_ckpt),
            "--data",
            str(data),
            "--split",
            "test",
            "--out",
            str(out),
            "--no-progress",
            "--batch-size",
            "3",
        ]
    )
    assert rc == 0
    doc = json.loads((out / "metrics.json").read_text())
    ref = torchmetrics_scores(out / "predictions", data / "VOC2007" / "SegmentationClass", IDS)
    assert len(ref["pred_classes"]) >= 2, "the tiny model should predict several classes"
    assert doc["units"] == "fraction"
    for key in ("IoU", "PA", "Precision"):
        ours = [np.nan if v is None else v for v in doc[key]]
        valid = ~np.isnan(ours)
        np.testing.assert_allclose(np.array(ours)[valid], np.array(ref[key])[valid], atol=1e-6)
        mean_key = {"IoU": "mIoU", "PA": "mPA", "Precision": "mPrecision"}[key]
        assert doc[mean_key] == pytest.approx(np.mean(np.array(ref[key])[valid]), abs=1e-6)
    assert doc["accuracy"] == pytest.approx(ref["accuracy"], abs=1e-6)
    # predictions are written at the photos' own sizes
    for i in IDS:
        photo = Image.open(data / "VOC2007" / "JPEGImages" / f"{i}.jpg")
        assert Image.open(out / "predictions" / f"{i}.png").size == photo.size
    # the CSV holds the same confusion matrix; the charts exist
    rows = list(csv.reader((out / "confusion_matrix.csv").open()))
    assert rows[0][1:] == doc["class_names"]
    np.testing.assert_array_equal(
        [[int(v) for v in r[1:]] for r in rows[1:]], doc["confusion_matrix"]
    )
    for name in ("IoU.png", "Recall.png", "Precision.png", "confusion_matrix.png"):
        assert Image.open(out / name).size[0] > 100


def test_predict_only_then_score_only(tmp_path, tiny_ckpt, capsys):
    data = make_split(tmp_path / "data")
    pred_dir = tmp_path / "preds"
    rc = get_miou.main(
        [
            "--mode",
            "predict",
            "--checkpoint",
            str(tiny_ckpt),
            "--data",
            str(data),
            "--pred-dir",
            str(pred_dir),
            "--out",
            str(tmp_path / "o1"),
            "--no-progress",
        ]
    )
    assert rc == 0
    assert sorted(p.stem for p in pred_dir.glob("*.png")) == sorted(IDS)
    assert not (tmp_path / "o1" / "metrics.json").exists()
    # score mode needs no model; it reads RGB palette PNGs as well as index PNGs
    rgb = VOC_PALETTE[read_mask(pred_dir / "a1.png", 4)]
    Image.fromarray(rgb).save(pred_dir / "a1.png")
    rc = get_miou.main(
        [
            "--mode",
            "score",
            "--data",
            str(data),
            "--pred-dir",
            str(pred_dir),
            "--out",
            str(tmp_path / "o2"),
            "--no-progress",
        ]
    )
    assert rc == 0
    doc = json.loads((tmp_path / "o2" / "metrics.json").read_text())
    ref = torchmetrics_scores(pred_dir, data / "VOC2007" / "SegmentationClass", IDS)
    assert doc["accuracy"] == pytest.approx(ref["accuracy"], abs=1e-6)
    printed = capsys.readouterr().out
    assert "IoU(%)" in printed and f"{100 * doc['mIoU']:6.2f}" in printed  # the table


def test_original_weights_need_and_accept_model_name(tmp_path, monkeypatch, capsys):
    register_tiny(monkeypatch)
    data = make_split(tmp_path / "data")
    plain = tmp_path / "plain.pth"
    torch.save(make_tiny().state_dict(), plain)  # a bare state_dict, like published weights
    args = [
        "--checkpoint",
        str(plain),
        "--data",
        str(data),
        "--out",
        str(tmp_path / "o"),
        "--no-progress",
    ]
    assert get_miou.main(args) == 2
    assert "--model" in capsys.readouterr().err
    assert get_miou.main([*args, "--model", "tiny_seg"]) == 0


def test_bad_inputs_say_what_is_wrong(tmp_path, tiny_ckpt, capsys):
    data = make_split(tmp_path / "data")
    common = ["--data", str(data), "--out", str(tmp_path / "o"), "--no-progress"]
    assert get_miou.main(["--checkpoint", str(tmp_path / "missing.pth"), *common]) == 2
    assert "not found" in capsys.readouterr().err
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    assert get_miou.main(["--checkpoint", str(garbage), *common]) == 2
    assert "cannot read checkpoint" in capsys.readouterr().err
    assert get_miou.main(["--checkpoint", str(tiny_ckpt), "--num-classes", "3", *common]) == 2
    assert "4 classes" in capsys.readouterr().err
    assert get_miou.main(["--mode", "score", "--pred-dir", str(tmp_path / "none"), *common]) == 2
    assert "missing" in capsys.readouterr().err
    assert get_miou.main(["--checkpoint", str(tiny_ckpt), "--split", "nosuch", *common]) == 2
    assert "nosuch.txt" in capsys.readouterr().err


def test_score_mode_on_the_real_photos_without_split_files(tmp_path, real_samples):
    """`--split all` takes every mask of a folder without ImageSets/ (the six real samples)."""
    out = tmp_path / "real"
    rc = get_miou.main(
        [
            "--mode",
            "score",
            "--data",
            str(real_samples),
            "--split",
            "all",
            "--pred-dir",
            str(real_samples / "original_predictions"),
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert rc == 0
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["num_images"] == 6
    assert [round(100 * v, 2) for v in doc["IoU"]] == [99.44, 93.64, 86.76, 71.63]
    assert (round(100 * doc["mIoU"], 2), round(100 * doc["mPA"], 2)) == (87.87, 91.47)
