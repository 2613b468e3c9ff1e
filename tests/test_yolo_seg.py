"""tools/yolo_seg.py: VOC masks -> YOLO-seg polygons and back, offline ultralytics, one epoch.

The label conversion is checked without ultralytics (exactly on hand-made masks, IoU >= 0.9
per defect class on synthetic oranges); training and evaluation run ultralytics on a tiny
synthetic set for one epoch (about 20-30 s on the 2-core CPU).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import socket
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from utils.data.labels import read_mask
from utils.data.synthetic import generate_dataset
from utils.inference.evaluate import metrics_document

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import yolo_seg  # noqa: E402


@pytest.fixture(scope="module")
def voc_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("yolo") / "oranges"
    generate_dataset(root, num=12, seed=3, size=128, workers=1)
    return root


def _ring_mask() -> np.ndarray:
    mask = np.zeros((40, 48), np.uint8)
    mask[5:30, 5:35] = 1  # sunburn square with two holes
    mask[10:15, 10:15] = 0
    mask[18:26, 20:30] = 0
    mask[20:24, 23:27] = 3  # wind scarring inside the second hole (an island)
    mask[33:36, 40:46] = 2  # an ulcer apart
    mask[38, 2] = 2  # a single-pixel ulcer
    return mask


def test_polygons_reproduce_regions_with_holes_exactly() -> None:
    mask = _ring_mask()
    lines = yolo_seg.label_lines(mask, 4)
    classes = sorted(int(line.split()[0]) for line in lines)
    assert classes == [0, 1, 1, 2]  # YOLO class = VOC class - 1; one line per region
    assert np.array_equal(yolo_seg.rasterise_labels(lines, mask.shape), mask)


def test_prepare_labels_rerasterise_to_the_masks(voc_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "yolo"
    assert yolo_seg.main(["prepare", "--data", str(voc_root), "--out", str(out)]) == 0
    inter, union = np.zeros(4), np.zeros(4)
    labels = sorted((out / "labels").glob("*/*.txt"))
    assert len(labels) == 12
    for label in labels:
        gt = read_mask(voc_root / "VOC2007" / "SegmentationClass" / f"{label.stem}.png", 4)
        back = yolo_seg.rasterise_labels(label.read_text().splitlines(), gt.shape)
        for k in range(1, 4):
            inter[k] += np.sum((gt == k) & (back == k))
            union[k] += np.sum((gt == k) | (back == k))
    iou = inter[1:] / union[1:]
    assert (iou >= 0.9).all(), iou
    doc = yaml.safe_load((out / "data.yaml").read_text())
    assert doc["names"] == {0: "sunburn", 1: "ulcer", 2: "wind_scarring"}
    assert Path(doc["path"]) == out.resolve() and doc["train"] == "images/train"
    n_train = len((voc_root / "VOC2007/ImageSets/Segmentation/train.txt").read_text().split())
    assert len(list((out / "images" / "train").iterdir())) == n_train


def test_instances_paint_in_ascending_confidence() -> None:
    masks = np.zeros((3, 4, 4), np.float32)
    masks[0, :2] = 1  # class 0, confidence 0.9
    masks[1, 1:3] = 1  # class 2, confidence 0.3: under instance 0 where they overlap
    masks[2, 3] = 1  # class 1, confidence 0.5
    out = yolo_seg.paint_instances(masks, np.array([0, 2, 1]), np.array([0.9, 0.3, 0.5]), (4, 4))
    assert out[:, 0].tolist() == [1, 1, 3, 2]


def test_network_is_refused_with_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    with yolo_seg.no_network():
        with pytest.raises(yolo_seg.NetworkAccessError, match="example.org"):
            socket.create_connection(("example.org", 443), timeout=1)
        assert socket.getaddrinfo("localhost", 80)  # this machine stays reachable
    assert socket.getaddrinfo is not None and socket.socket.connect is not None

    def fetch(cfg: yolo_seg.PrepareConfig) -> dict:
        with yolo_seg.no_network():
            socket.create_connection(("github.com", 443), timeout=1)
        return {}

    monkeypatch.setattr(yolo_seg, "prepare", fetch)
    assert yolo_seg.main(["prepare"]) == 2
    err = capsys.readouterr().err
    assert "tried to reach the network" in err and "github.com" in err


def test_command_and_file_errors(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    assert yolo_seg.main(["fit"]) == 2
    assert "unknown command 'fit'" in capsys.readouterr().err
    (tmp_path / "data.yaml").write_text("path: .\n")
    args = ["train", "--yolo-data", str(tmp_path / "data.yaml"), "--weights", "yolov8n-seg.pt"]
    assert yolo_seg.main(args) == 2
    assert "never downloads weights" in capsys.readouterr().err


def test_one_cv2_and_one_thop_distribution() -> None:
    """ultralytics is installed without its opencv-python and ultralytics-thop (see
    requirements-yolo.txt): cv2 and thop each come from one distribution."""
    pytest.importorskip("ultralytics")
    installed = {d.metadata["Name"].lower() for d in importlib.metadata.distributions()}
    assert "opencv-python-headless" in installed
    assert not installed & {"opencv-python", "opencv-contrib-python", "ultralytics-thop"}


@pytest.mark.slow
def test_train_one_epoch_and_evaluate(voc_root: Path, tmp_path: Path) -> None:
    pytest.importorskip("ultralytics")
    threads, cv2_threads = torch.get_num_threads(), cv2.getNumThreads()
    omp = os.environ.get("OMP_NUM_THREADS")
    data = tmp_path / "yolo"
    assert yolo_seg.main(["prepare", "--data", str(voc_root), "--out", str(data)]) == 0
    run = tmp_path / "run"
    args = ["train", "--yolo-data", str(data / "data.yaml"), "--model", "yolov8n-seg",
            "--epochs", "1", "--imgsz", "64", "--batch", "4", "--workers", "0",
            "--out", str(run)]  # fmt: skip
    assert yolo_seg.main(args) == 0
    weights = run / "weights" / "best.pt"
    assert weights.is_file()
    out = tmp_path / "eval"
    args = ["evaluate", "--weights", str(weights), "--data", str(voc_root), "--split", "test",
            "--out", str(out), "--no-progress"]  # fmt: skip
    assert yolo_seg.main(args) == 0
    doc = json.loads((out / "metrics.json").read_text())
    names = ["background", "sunburn", "ulcer", "wind_scarring"]
    get_miou_keys = set(metrics_document(np.eye(4, dtype=np.int64), names)) | {
        "split", "data", "num_images", "model"}  # fmt: skip
    assert get_miou_keys <= set(doc)
    assert doc["class_names"] == names and doc["yolo"]["imgsz"] == 64
    test_ids = (voc_root / "VOC2007/ImageSets/Segmentation/test.txt").read_text().split()
    assert sorted(p.stem for p in (out / "predictions").glob("*.png")) == sorted(test_ids)
    assert sum(doc["gt_pixels"]) == len(test_ids) * 128 * 128
    # the process's thread settings are as they were
    assert torch.get_num_threads() == threads and cv2.getNumThreads() == cv2_threads
    assert os.environ.get("OMP_NUM_THREADS") == omp
