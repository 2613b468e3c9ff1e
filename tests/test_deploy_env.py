"""The sorting line without the training stack: the deploy entry points run from an exported
model with torch, torchvision, timm (and the other packages requirements-deploy.txt leaves out)
unimportable, and give the same masks, scores and grades as in the full install.

Each run is a fresh interpreter whose import system refuses the blocked packages before the
script starts (`BLOCKER`), so a module-level `import torch` anywhere on the path fails the test
the way it would fail on a line box. The exported files are written here, from a tiny model.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from test_evaluate import make_split
from test_predict_helpers import make_tiny, orange_photo, write_project_checkpoint

import get_miou
import predict
from utils.data.labels import read_mask
from utils.inference.model_predictor import ModelPredictor
from utils.line import grading

ROOT = Path(__file__).resolve().parents[1]
# what requirements-deploy.txt does not install (and so must not be needed)
BLOCKED = (
    "torch",
    "torchvision",
    "timm",
    "safetensors",
    "matplotlib",
    "onnx",
    "onnxscript",
    "nncf",
    "thop",
    "tensorboard",
    "pycocotools",
)
BLOCKER = """
import importlib.abc, runpy, sys
BLOCKED = set(sys.argv[1].split(","))
class Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (deploy environment)", name=name)
        return None
sys.meta_path.insert(0, Blocked())
args = sys.argv[2:]
if args[0] == "-m":  # python -m MODULE ARGS
    sys.argv = args[1:]
    runpy.run_module(args[1], run_name="__main__", alter_sys=True)
else:  # python SCRIPT ARGS
    sys.argv = args
    runpy.run_path(args[0], run_name="__main__")
"""


def run_deploy(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    """`python SCRIPT|MODULE ARGS` in the repository root with the training stack blocked."""
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    return subprocess.run(
        [sys.executable, "-c", BLOCKER, ",".join(BLOCKED), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, Path]:
    """A tiny model as a project checkpoint, an ONNX file and OpenVINO IRs (fp32)."""
    folder = tmp_path_factory.mktemp("exported")
    model = make_tiny(seed=5)
    predictor = ModelPredictor(model, 32, class_names=["bg", "sun", "ulcer", "wind"])
    predictor.export_onnx(folder / "m.onnx", opset=18)
    predictor.export_openvino(folder / "m.xml")
    ModelPredictor(model, 32).export_openvino(folder / "paper.xml")  # the paper's class names
    return {
        "onnx": folder / "m.onnx",
        "xml": folder / "m.xml",
        "paper_xml": folder / "paper.xml",
        "pth": write_project_checkpoint(model, folder / "m.pth"),
    }


def test_the_blocker_blocks() -> None:
    done = run_deploy("-m", "json.tool", "--help")
    assert done.returncode == 0
    probe = run_deploy("-m", "torch")
    assert probe.returncode != 0 and "deploy environment" in probe.stderr


@pytest.mark.parametrize("kind", ["onnx", "xml"])
def test_predict_without_torch_gives_the_same_masks(exported, tmp_path, kind) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    for seed, (h, w) in enumerate(((48, 64), (70, 40))):
        cv2.imwrite(str(photos / f"p{seed}.png"), orange_photo(h, w, seed)[..., ::-1])
    common = ["--checkpoint", str(exported[kind]), "--inputs", str(photos), "--save-masks"]
    assert predict.main([*common, "--out", str(tmp_path / "full")]) == 0
    done = run_deploy("predict.py", *common, "--out", str(tmp_path / "deploy"))
    assert done.returncode == 0, done.stderr
    for name in ("p0", "p1"):
        full = read_mask(tmp_path / "full" / "masks" / f"{name}.png", 4)
        deploy = read_mask(tmp_path / "deploy" / "masks" / f"{name}.png", 4)
        np.testing.assert_array_equal(deploy, full)
    rows = (tmp_path / "deploy" / "defect_areas.csv").read_text()
    assert rows == (tmp_path / "full" / "defect_areas.csv").read_text()
    assert "sun" in rows.splitlines()[0]  # the class names came from the file's metadata


def test_get_miou_without_torch_scores_like_the_full_install(exported, tmp_path) -> None:
    data = make_split(tmp_path / "data")
    common = ["--checkpoint", str(exported["xml"]), "--data", str(data), "--no-progress"]
    assert get_miou.main([*common, "--out", str(tmp_path / "full")]) == 0
    done = run_deploy("get_miou.py", *common, "--out", str(tmp_path / "deploy"))
    assert done.returncode == 0, done.stderr
    assert "charts left out: matplotlib is not installed" in done.stdout
    full = json.loads((tmp_path / "full" / "metrics.json").read_text())
    deploy = json.loads((tmp_path / "deploy" / "metrics.json").read_text())
    assert deploy["confusion_matrix"] == full["confusion_matrix"]
    assert deploy["class_names"] == ["bg", "sun", "ulcer", "wind"]


def test_grading_evaluate_without_torch(exported, tmp_path) -> None:
    video = tmp_path / "belt.mp4"
    made = run_deploy(
        "-m", "utils.line.conveyor", "--out", str(video), "--seconds", "0.3",
        "--height", "96", "--width", "160", "--seed", "3", "--ground-truth",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    # the tiny model's names are not the rules' classes: grade on the paper's names
    rules = tmp_path / "rules.yaml"
    rules.write_text("grades:\n  - {name: premium, max_share: {total: 0.5}}\nreject: reject\n")
    common = [
        "--checkpoint", str(exported["onnx"]), "--source", str(video), "--evaluate",
        "--no-model-fps", "--threads", "0", "--rules", str(rules),
    ]  # fmt: skip
    assert grading.main([*common, "--out", str(tmp_path / "full")]) == 0
    done = run_deploy("-m", "utils.line.grading", *common, "--out", str(tmp_path / "deploy"))
    assert done.returncode == 0, done.stderr
    with (tmp_path / "deploy" / "grades.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert rows, "no fruit graded"
    assert (tmp_path / "deploy" / "grades.csv").read_text() == (
        tmp_path / "full" / "grades.csv"
    ).read_text()
    doc = json.loads((tmp_path / "deploy" / "grading_eval.json").read_text())
    full = json.loads((tmp_path / "full" / "grading_eval.json").read_text())
    assert doc == full  # grades, confusion, per-fruit shares and mIoU alike
    assert (tmp_path / "deploy" / "belt_graded.mp4").stat().st_size > 0


def test_gui_without_torch_opens_an_ir(exported, tmp_path) -> None:
    pytest.importorskip("PySide6")
    photo = tmp_path / "a.png"
    cv2.imwrite(str(photo), orange_photo(60, 80)[..., ::-1])
    shot = tmp_path / "shot.png"
    done = run_deploy(
        "gui.py", "--checkpoint", str(exported["paper_xml"]), "--source", str(photo),
        "--screenshot", str(shot),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert shot.is_file() and "failed" not in done.stdout, done.stdout


def test_a_checkpoint_in_the_deploy_env_gets_one_line(exported, tmp_path) -> None:
    cv2.imwrite(str(tmp_path / "a.png"), orange_photo())
    done = run_deploy("predict.py", "--checkpoint", str(exported["pth"]), "--inputs",
                      str(tmp_path / "a.png"), "--out", str(tmp_path / "o"))  # fmt: skip
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "needs the full install" in lines[0] and "pip install -r requirements.txt" in lines[0]
    assert f"--checkpoint {exported['pth']} --ov-out model.xml" in lines[0]
