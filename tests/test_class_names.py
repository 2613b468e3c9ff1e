"""Class names travel: converter -> class_names.txt -> train.py -> config and checkpoints ->
predict's CSV and legend, get_miou's table, ONNX / OpenVINO metadata, grading, the app.

One tiny 3-class model (background, scab, rot) is trained once for the module on a data set
made by voc_annotation.py's mask converter; every consumer is then run in-process on it.
"""

from __future__ import annotations

import csv
import json
import os

import cv2
import numpy as np
import pytest
import yaml
from test_train_helpers import TinySegNet

import nets
from nets.checkpoint import read_project_checkpoint
from utils.data.class_names import (
    ClassNamesError,
    check_class_names,
    read_class_names,
    write_class_names,
)
from utils.data.labels import read_mask
from utils.inference.open_model import open_model
from utils.inference.visualize import overlay

NAMES = ["background", "scab", "rot"]
TRAIN = [
    "--model", "tiny_test", "--input-size", "32", "--epochs", "1", "--freeze-epochs", "0",
    "--batch-size", "4", "--freeze-batch-size", "4", "--workers", "0", "--device", "cpu",
    "--no-tensorboard", "--eval-period", "1", "--save-period", "1",
]  # fmt: skip


def _photo(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """An RGB photo and its mask: scab where red dominates, rot where blue does."""
    image = rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8)
    image = cv2.resize(image, (size, size), interpolation=cv2.INTER_NEAREST)
    mask = np.zeros((size, size), np.uint8)
    mask[image[..., 0] > 200] = 1
    mask[image[..., 2] > 200] = 2
    return image, mask


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(data set root, run folder) of a 3-class run whose names came from class_names.txt."""
    import train
    import voc_annotation

    tmp = tmp_path_factory.mktemp("names")
    rng = np.random.default_rng(0)
    (tmp / "photos").mkdir()
    (tmp / "masks").mkdir()
    for i in range(8):
        image, mask = _photo(rng, 64)
        cv2.imwrite(str(tmp / "photos" / f"p{i}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(tmp / "masks" / f"p{i}.png"), mask)
    data = tmp / "data"
    convert = ["--from-masks", str(tmp / "masks"), "--images", str(tmp / "photos")]
    convert += ["--data", str(data), "--classes", *NAMES, "--ratios", "2", "1", "1", "--no-report"]
    assert voc_annotation.main(convert) == 0
    assert read_class_names(data / "VOC2007") == tuple(NAMES)
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(nets.MODELS, "tiny_test", TinySegNet)
        args = [*TRAIN, "--data", str(data), "--num-classes", "3", "--save-dir", str(tmp)]
        assert train.main([*args, "--name", "run"]) == 0
        yield data, tmp / "run"


def test_names_reach_the_config_and_every_checkpoint(trained):
    _, run = trained
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["class_names"] == NAMES
    for name in ("best.pth", "last.pth", "ep001.pth"):
        ckpt = read_project_checkpoint(run / name)
        assert ckpt["class_names"] == NAMES and ckpt["config"]["class_names"] == NAMES, name


def test_count_that_disagrees_with_num_classes_is_refused(trained, tmp_path, capsys):
    import train

    data, _ = trained
    base = [*TRAIN, "--data", str(data), "--save-dir", str(tmp_path)]
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(nets.MODELS, "tiny_test", TinySegNet)
        assert train.main([*base, "--num-classes", "4"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "class_names.txt names 3 classes" in err[0]
        assert "--num-classes 3" in err[0]
        assert train.main([*base, "--num-classes", "3", "--class-names", "bg", "scab"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "--class-names" in err[0] and "--num-classes is 3" in err[0]
        assert train.main([*base, "--num-classes", "3", "--class-names", "a", "b", "a"]) == 2
        assert "a given more than once" in capsys.readouterr().err
        assert not any(tmp_path.iterdir()), "a run folder was created for a refused config"
        # --class-names wins over the file, and says so
        args = [*base, "--num-classes", "3", "--class-names", "background", "canker", "mould"]
        assert train.main([*args, "--name", "renamed"]) == 0
        assert "used instead of" in capsys.readouterr().out
    ckpt = read_project_checkpoint(tmp_path / "renamed" / "best.pth")
    assert ckpt["class_names"] == ["background", "canker", "mould"]


def test_predict_csv_columns_and_legend_use_the_names(trained, tmp_path):
    import predict

    _, run = trained
    rng = np.random.default_rng(5)
    image, _ = _photo(rng, 256)  # large enough for the legend
    photo = tmp_path / "big.png"
    cv2.imwrite(str(photo), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    out = tmp_path / "out"
    args = ["--checkpoint", str(run / "best.pth"), "--inputs", str(photo), "--out", str(out)]
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(nets.MODELS, "tiny_test", TinySegNet)
        assert predict.main([*args, "--backend", "torch", "--save-masks", "--quiet"]) == 0
    with (out / "defect_areas.csv").open() as f:
        header = next(csv.reader(f))
    assert {"scab_image_pct", "rot_image_pct", "scab_fruit_pct", "rot_fruit_pct"} <= set(header)
    assert not any("sunburn" in h or "class_1" in h for h in header)
    drawn = cv2.cvtColor(cv2.imread(str(out / "big.png")), cv2.COLOR_BGR2RGB)
    mask = read_mask(out / "masks" / "big.png")
    assert np.array_equal(drawn, overlay(image, mask, "blend", 0.5, class_names=NAMES))
    other = overlay(image, mask, "blend", 0.5, class_names=["background", "sunburn", "ulcer"])
    assert not np.array_equal(drawn, other)  # the legend's text is the model's names


def test_get_miou_table_uses_the_names(trained, tmp_path, capsys):
    import get_miou

    data, run = trained
    args = ["--checkpoint", str(run / "best.pth"), "--data", str(data), "--split", "val"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(nets.MODELS, "tiny_test", TinySegNet)
        assert get_miou.main([*args, "--out", str(tmp_path), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "scab" in printed and "rot" in printed and "sunburn" not in printed
    doc = json.loads((tmp_path / "metrics.json").read_text())
    assert doc["class_names"] == NAMES


def test_exports_carry_the_names(trained, tmp_path):
    import predict

    _, run = trained
    ckpt = ["--checkpoint", str(run / "best.pth")]
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(nets.MODELS, "tiny_test", TinySegNet)
        onnx_file = tmp_path / "m.onnx"
        assert predict.main(["--mode", "export_onnx", *ckpt, "--onnx-out", str(onnx_file)]) == 0
        assert open_model(onnx_file).class_names == NAMES
        pytest.importorskip("openvino")
        ir = tmp_path / "m.xml"
        assert predict.main(["--mode", "export_openvino", *ckpt, "--ov-out", str(ir)]) == 0
        assert open_model(ir).class_names == NAMES


def test_grading_uses_the_names_and_refuses_rules_of_other_classes(trained, tmp_path, capsys):
    from utils.line.grading import main

    _, run = trained
    photo = tmp_path / "p.png"
    image, _ = _photo(np.random.default_rng(1), 64)
    cv2.imwrite(str(photo), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    base = ["--checkpoint", str(run / "best.pth"), "--source", str(photo), "--backend", "torch"]
    base += ["--threads", "0", "--no-model-fps"]
    fitting = tmp_path / "scab.yaml"
    fitting.write_text("grades: [{name: good, max_share: {scab: 0.01, rot: 0.0}}]\nreject: cull\n")
    paper = tmp_path / "paper.yaml"
    paper.write_text("grades: [{name: good, max_share: {sunburn: 0.01}}]\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(nets.MODELS, "tiny_test", TinySegNet)
        assert main([*base, "--rules", str(paper), "--out", str(tmp_path / "x")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [
            f"error: {paper}: grade 1 'good', key max_share.sunburn: the model has no class "
            "'sunburn' (its defect classes: scab, rot; or 'total')"
        ]
        assert main([*base, "--rules", str(fitting), "--out", str(tmp_path / "g")]) == 0
    header = (tmp_path / "g" / "grades.csv").read_text().splitlines()[0].split(",")
    assert header[-4:] == ["scab_pct", "rot_pct", "defect_pct", "grade"]


def test_the_app_shows_the_names_and_checks_its_rules(trained, tmp_path):
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    widgets = pytest.importorskip("PySide6.QtWidgets", reason="PySide6 is not installed")
    import gui

    _, run = trained
    app = widgets.QApplication.instance() or widgets.QApplication([])
    assert app is not None
    window = gui.MainWindow(backend="torch")
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(nets.MODELS, "tiny_test", TinySegNet)
        window.load_model(run / "best.pth")
    labels = [window.legend.itemAt(i).widget() for i in range(window.legend.count())]
    texts = [w.text() for w in labels if isinstance(w, widgets.QLabel) and w.text()]
    assert texts == ["0 background", "1 scab", "2 rot"]
    # the default rules limit sunburn, ulcer, wind_scarring: Start stays off until rules fit
    assert window.rules_problems and "no class 'sunburn'" in window.rules_problems[0]
    window.open_source("folder", tmp_path)
    assert not window.act_start.isEnabled()
    rules = tmp_path / "scab.yaml"
    rules.write_text("grades: [{name: good, max_share: {total: 0.01}}]\nreject: cull\n")
    assert window.load_rules(rules) and not window.rules_problems
    assert window.act_start.isEnabled()
    window.close()


def test_the_app_refuses_rules_of_other_classes_in_one_line_per_problem(trained, tmp_path, capsys):
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    widgets = pytest.importorskip("PySide6.QtWidgets", reason="PySide6 is not installed")
    import gui

    _, run = trained
    assert widgets.QApplication.instance() or widgets.QApplication([])
    paper = tmp_path / "paper.yaml"
    paper.write_text("grades: [{name: good, max_share: {sunburn: 0.01, ulcer: 0.01}}]\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(nets.MODELS, "tiny_test", TinySegNet)
        args = ["--checkpoint", str(run / "best.pth"), "--backend", "torch", "--rules", str(paper)]
        rc = gui.main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2, err
    assert [line.split(", key ")[1].split(":")[0] for line in err] == [
        "max_share.sunburn",
        "max_share.ulcer",
    ]
    assert all(line.startswith(f"gui.py: error: {paper}: grade 1 'good'") for line in err)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("background\nscab\n\nrot\n", "line 3: blank"),
        ("background\nscab\nscab\n", "scab given more than once"),
        ("background\n", "need at least two"),
        (b"background\nsch\xf6rf\n", "not UTF-8 text"),
    ],
)
def test_a_broken_class_names_file_is_refused_naming_it(tmp_path, content, message):
    path = tmp_path / "class_names.txt"
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    with pytest.raises(ClassNamesError, match=message) as err:
        read_class_names(tmp_path)
    assert str(err.value).startswith(str(path))


def test_class_names_file_round_trip_and_tolerated_forms(tmp_path):
    write_class_names(tmp_path, ["background", "wind scar", "rot"])
    assert read_class_names(tmp_path) == ("background", "wind scar", "rot")  # spaces kept
    (tmp_path / "class_names.txt").write_bytes(b"\xef\xbb\xbfbackground\r\nrot\r\n\r\n")
    assert read_class_names(tmp_path) == ("background", "rot")
    assert read_class_names(tmp_path / "none") is None
    with pytest.raises(ClassNamesError, match="class 1 is named ' rot'"):
        check_class_names(["background", " rot"], "--class-names")


def test_voc_annotation_check_only_reads_the_names(trained, capsys):
    import voc_annotation

    data, _ = trained
    assert voc_annotation.main(["--data", str(data), "--check-only"]) == 0
    out = capsys.readouterr().out
    assert "scab" in out and "rot" in out and "sunburn" not in out
    assert voc_annotation.main(["--data", str(data), "--check-only", "--num-classes", "4"]) == 2
    assert "class_names.txt names 3 classes" in capsys.readouterr().err
