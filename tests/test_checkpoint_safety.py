"""Loading a weights file never runs code from it (nets.checkpoint), at every entry point.

A hand-made malicious pickle (its ``__reduce__`` writes a marker file when unpickled) is
refused by the loader APIs, the scripts' ``main()`` functions, the ImageNet-file lookups and
the desktop app, and the marker never appears; a pickled ``argparse.Namespace`` is refused
with its type named and loads with trust or after conversion; the authors' key layouts
(``shared/reference`` state dicts as plain ``.pth``) and project checkpoints load safely.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import os
import pickle
import runpy
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from test_predict_helpers import TinySegNet, make_tiny, orange_photo, register_tiny
from test_train_helpers import make_tiny_voc

import get_miou
import nets
import predict
import speeding
import train
import train_distillation
from nets.checkpoint import (
    CheckpointError,
    build_checkpoint,
    convert_checkpoint,
    load_checkpoint,
    read_checkpoint,
    read_project_checkpoint,
    save_checkpoint,
)
from utils.inference.model_predictor import ModelPredictor
from utils.training.config import TrainConfig
from utils.training.distillation import load_teacher
from utils.training.run import load_initial_weights, parse_train_config

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT.parent / "shared" / "reference"


class WriteMarker:
    """Unpickling this calls ``exec`` (not a module torch blocks), which writes the marker."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (exec, (f"open({str(self.marker)!r}, 'w').close()",))


class SystemMarker(WriteMarker):
    """Unpickling this runs ``os.system("touch MARKER")``."""

    def __reduce__(self):  # noqa: ANN204
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture()
def marker(tmp_path: Path):
    path = tmp_path / "MARKER"
    yield path
    assert not path.exists(), "unpickling ran the file's code"


def _evil_files(folder: Path, marker: Path) -> dict[str, Path]:
    """The payload beside real weights: as torch.save writes it today (zip), in torch's legacy
    layout (before 1.6), as a bare pickle, and calling os.system (a module torch blocks)."""
    folder.mkdir(parents=True, exist_ok=True)
    weights = make_tiny().state_dict()
    files = {kind: folder / f"evil_{kind}.pth" for kind in ("exec", "legacy", "pickle", "system")}
    torch.save({"state_dict": weights, "hook": WriteMarker(marker)}, files["exec"])
    legacy = {"model": weights, "hook": WriteMarker(marker)}
    torch.save(legacy, files["legacy"], _use_new_zipfile_serialization=False)
    with files["pickle"].open("wb") as f:  # the payload alone, as pickle.dump writes it
        pickle.dump(WriteMarker(marker), f, protocol=2)
    torch.save({**weights, "hook": SystemMarker(marker)}, files["system"])
    return files


@pytest.fixture()
def evil(tmp_path: Path, marker: Path) -> dict[str, Path]:
    return _evil_files(tmp_path / "evil", marker)


@pytest.fixture()
def evil_path(evil: dict[str, Path]) -> Path:
    return evil["exec"]


def _assert_refused(text: str, path: Path, type_name: str = "builtins.exec") -> None:
    assert str(path) in text and type_name in text
    assert "--trust-checkpoint" in text and "python -m nets.checkpoint convert" in text


def test_the_payload_is_real(tmp_path: Path) -> None:
    """Control: unpickled without the safe reader, the file does run its code."""
    marker = tmp_path / "control"
    files = _evil_files(tmp_path, marker)
    torch.load(files["exec"], weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("kind", ["exec", "legacy", "pickle", "system"])
def test_loader_apis_refuse_the_payload(evil: dict[str, Path], kind: str) -> None:
    path = evil[kind]
    refused = "system" if kind == "system" else "builtins.exec"  # posix.system on Linux
    with pytest.raises(CheckpointError) as err:
        read_checkpoint(path)
    _assert_refused(str(err.value), path, refused)
    with pytest.raises(CheckpointError, match="refused to unpickle"):
        read_project_checkpoint(path)
    with pytest.raises(CheckpointError, match="refused to unpickle"):
        load_checkpoint(TinySegNet(), path)
    with pytest.raises(CheckpointError, match="refused to unpickle"):
        nets.model_from_checkpoint(path)
    with pytest.raises(CheckpointError, match="refused to unpickle"):
        nets.build_model("enet", pretrained=path)


def test_predictor_refuses_the_payload(evil_path: Path, monkeypatch) -> None:  # noqa: ANN001
    register_tiny(monkeypatch)
    for model_name in (None, "tiny_seg"):
        with pytest.raises(CheckpointError, match="builtins.exec"):
            ModelPredictor.from_checkpoint(evil_path, model_name=model_name)


def test_get_miou_and_predict_refuse_the_payload(evil_path: Path, tmp_path: Path, capsys) -> None:
    args = ["--checkpoint", str(evil_path), "--model", "fastsegformer_p"]
    assert get_miou.main([*args, "--out", str(tmp_path / "miou")]) == 2
    _assert_refused(capsys.readouterr().err, evil_path)
    photo = tmp_path / "a.png"
    photo.write_bytes(b"")  # never read: the model is refused first
    assert predict.main([*args, "--inputs", str(photo), "--out", str(tmp_path / "out")]) == 2
    _assert_refused(capsys.readouterr().err, evil_path)


def test_speeding_refuses_the_payload(evil_path: Path, tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as err:
        speeding.main(["--checkpoint", str(evil_path), "--out", str(tmp_path)])
    _assert_refused(str(err.value.code), evil_path)


def test_train_resume_and_teacher_refuse_the_payload(evil_path: Path, tmp_path: Path, capsys):
    assert train.main(["--resume", str(evil_path), "--save-dir", str(tmp_path)]) == 2
    _assert_refused(capsys.readouterr().err, evil_path)
    argv = ["--teacher-checkpoint", str(evil_path), "--save-dir", str(tmp_path), "--epochs", "1"]
    assert train_distillation.main(argv) == 2
    _assert_refused(capsys.readouterr().err, evil_path)
    with pytest.raises(CheckpointError, match="builtins.exec"):
        load_teacher("swin_t_att_unet", evil_path, 4)


def test_train_pretrained_refuses_the_payload(
    evil_path: Path, tmp_path: Path, monkeypatch, capsys
) -> None:  # noqa: ANN001
    register_tiny(monkeypatch)
    voc = make_tiny_voc(tmp_path / "voc", num=4, size=32)
    argv = [
        "--model", "tiny_seg", "--pretrained", str(evil_path), "--data", str(voc),
        "--save-dir", str(tmp_path / "logs"), "--input-size", "32", "--epochs", "1",
        "--freeze-epochs", "0", "--batch-size", "2", "--freeze-batch-size", "2",
        "--workers", "0", "--device", "cpu", "--no-tensorboard",
    ]  # fmt: skip
    assert train.main(argv) == 2
    _assert_refused(capsys.readouterr().err, evil_path)
    # the student of train_distillation.py arrives as --pretrained through the same loader
    cfg = dataclasses.replace(train_distillation.Config(), student_checkpoint=str(evil_path))
    with pytest.raises(CheckpointError, match="builtins.exec"):
        load_initial_weights(TinySegNet(), cfg, is_main=True)


def test_imagenet_files_in_model_data_refuse_the_payload(
    evil_path: Path, tmp_path: Path, monkeypatch
) -> None:  # noqa: ANN001
    import nets.comparison.common
    import nets.fastsegformer
    import nets.swin_att_unet

    folder = tmp_path / "model_data"
    folder.mkdir()
    for name in (
        "poolformer_s12.pth.tar",  # FastSegFormer-P's backbone
        nets.swin_att_unet.SWIN_T_IMAGENET_FILE,  # the teacher's Swin-T
        nets.comparison.common.RESNET_WEIGHTS[18][0],  # comparison models' ResNet-18
    ):
        (folder / name).write_bytes(evil_path.read_bytes())
    for module in (nets.fastsegformer, nets.swin_att_unet, nets.comparison.common):
        monkeypatch.setattr(module, "MODEL_DATA", folder)
    with pytest.raises(CheckpointError, match="poolformer_s12.pth.tar"):
        nets.build_model("fastsegformer_p", pretrained=True)
    with pytest.raises(CheckpointError, match="swin_tiny_patch4_window7_224.pth"):
        nets.build_model("swin_t_att_unet", input_size=224, pretrained=True)
    with pytest.raises(CheckpointError, match="resnet18"):
        nets.build_model("swiftnet_rn18", pretrained=True)


def test_desktop_app_refuses_the_payload(evil_path: Path) -> None:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    pytest.importorskip("PySide6.QtWidgets", reason="PySide6 is not installed")
    from PySide6 import QtWidgets

    import gui

    _app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    window = gui.MainWindow()  # not shown: no dialog asks for a model name
    assert not window.load_model(evil_path)
    assert not window.load_model(evil_path, "fastsegformer_p")
    _assert_refused(window.statusBar().currentMessage(), evil_path)
    assert window.predictor is None
    window.close()


def test_conversion_never_runs_the_payload(evil: dict[str, Path], tmp_path: Path) -> None:
    target = tmp_path / "clean.safetensors"
    assert convert_checkpoint(evil["exec"], target) == ["hook (builtins.exec)"]
    assert set(read_checkpoint(target)) == set(make_tiny().state_dict())
    kept = convert_checkpoint(evil["legacy"], tmp_path / "clean.pth")
    assert kept == ["hook (builtins.exec)"]
    clean = torch.load(tmp_path / "clean.pth", weights_only=True)  # loads with torch's safe path
    assert set(clean) == {"model"} and set(clean["model"]) == set(make_tiny().state_dict())
    with pytest.raises(CheckpointError, match="evil_pickle.pth"):  # not a torch file at all
        convert_checkpoint(evil["pickle"], tmp_path / "never.pth")
    with pytest.raises(CheckpointError, match="system"):  # torch blocks os/posix outright
        convert_checkpoint(evil["system"], tmp_path / "never.safetensors")
    assert not (tmp_path / "never.safetensors").exists()


# ------------------------------------------------------------------------- legacy files


def _namespace_checkpoint(path: Path) -> dict:
    """A training-script checkpoint of the DeiT/timm kind: weights plus argparse arguments."""
    weights = make_tiny(seed=3).state_dict()
    torch.save({"model": weights, "args": argparse.Namespace(lr=0.1, epochs=300)}, path)
    return weights


def test_namespace_is_refused_with_its_type_and_loads_with_trust(tmp_path: Path) -> None:
    path = tmp_path / "deit_style.pth"
    weights = _namespace_checkpoint(path)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(TinySegNet(), path)
    _assert_refused(str(err.value), path, "argparse.Namespace")

    model = TinySegNet()
    assert load_checkpoint(model, path, trust=True).layout == "native"
    assert all(torch.equal(model.state_dict()[k], v) for k, v in weights.items())
    assert read_checkpoint(path, trust=True)["args"].epochs == 300


def test_trust_flag_of_the_scripts(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    register_tiny(monkeypatch)
    path = tmp_path / "deit_style.pth"
    _namespace_checkpoint(path)
    for script in (get_miou, predict):
        cfg = script.Config(checkpoint=str(path), model="tiny_seg")
        with pytest.raises(CheckpointError, match="argparse.Namespace"):
            script.build_predictor(cfg)
        trusted = script.build_predictor(dataclasses.replace(cfg, trust_checkpoint=True))
        assert trusted.num_classes == 4
    cfg = TrainConfig(pretrained=str(path), trust_checkpoint=True)
    load_initial_weights(TinySegNet(num_classes=4), cfg, is_main=False)


def test_resume_never_takes_trust_from_the_file(tmp_path: Path) -> None:
    model = TinySegNet()
    ckpt = build_checkpoint(
        model, input_size=(32, 32), class_names=list("abcd"), config={"trust_checkpoint": True}
    )
    path = save_checkpoint(ckpt, tmp_path / "last.pth")
    merged = parse_train_config(TrainConfig, ["--resume", str(path)])
    assert merged.trust_checkpoint is False


def test_namespace_checkpoint_converts_once_then_loads_safely(
    tmp_path: Path, monkeypatch, capsys
) -> None:  # noqa: ANN001
    path = tmp_path / "deit_style.pth"
    weights = _namespace_checkpoint(path)
    target = tmp_path / "deit_style.safetensors"
    # python -m nets.checkpoint convert OLD NEW, run in this process
    monkeypatch.setattr(sys, "argv", ["nets.checkpoint", "convert", str(path), str(target)])
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # runpy's "found in sys.modules" warning
        with pytest.raises(SystemExit) as done:
            runpy.run_module("nets.checkpoint", run_name="__main__")
    assert done.value.code == 0
    assert "args (argparse.Namespace)" in capsys.readouterr().out
    model = TinySegNet()
    assert load_checkpoint(model, target).layout == "native"
    assert all(torch.equal(model.state_dict()[k], v) for k, v in weights.items())


def test_whole_pickled_model_is_refused_and_converts_to_its_state_dict(tmp_path: Path) -> None:
    model = make_tiny(seed=5)
    path = tmp_path / "whole_model.pth"
    torch.save(model, path)
    with pytest.raises(CheckpointError, match="TinySegNet"):
        read_checkpoint(path)
    assert load_checkpoint(TinySegNet(), path, trust=True).layout == "native"
    assert convert_checkpoint(path, tmp_path / "weights.pth") == []
    state = read_checkpoint(tmp_path / "weights.pth")
    assert state.keys() == model.state_dict().keys()
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


# ------------------------------------------------------------------ what must keep loading


def _load_reference_case(case: str):
    if not (REFERENCE / "synth_weights.py").is_file():
        pytest.skip(f"{REFERENCE} not found: the shared reference cases are not beside the repo")
    spec = importlib.util.spec_from_file_location("synth_weights", REFERENCE / "synth_weights.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.load_case(str(REFERENCE / "cases" / case))


@pytest.mark.parametrize(
    ("case", "name", "options"),
    [
        ("fastsegformer_p", "fastsegformer_p", {}),
        ("fastsegformer_e", "fastsegformer_e", {}),
        ("fastsegformer_p_ppm_noirb", "fastsegformer_p", {"pyramid": "ppm", "irb": False}),
        ("fastsegformer_e_ppm_noirb", "fastsegformer_e", {"pyramid": "ppm", "irb": False}),
        ("teacher_swin_t_att_unet_512", "swin_t_att_unet", {}),
    ],
)
def test_authors_layouts_as_plain_pth_load_safely(
    case: str, name: str, options: dict, tmp_path: Path
) -> None:
    _, state, _, _ = _load_reference_case(case)
    path = tmp_path / f"{case}.pth"
    torch.save(state, path)  # how the original code saves: torch.save(model.state_dict())
    model = nets.build_model(name, **options)
    report = load_checkpoint(model, path)
    assert report.layout == "original"
    assert len(report.loaded) == len(model.state_dict()) and not report.missing


def test_project_checkpoint_round_trips_through_the_safe_path(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    register_tiny(monkeypatch)
    model = nets.build_model("tiny_seg")
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.rand(2, 3, 32, 32)).mean().backward()
    optimizer.step()
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    ckpt = build_checkpoint(
        model.eval(),
        input_size=(32, 32),
        class_names=["background", "sunburn", "ulcer", "wind_scarring"],
        epoch=7,
        best_metric=0.5,
        config={"model": "tiny_seg", "input_size": [32, 32], "class_weights": [1.0, 2.0]},
        optimizer=optimizer.state_dict(),
        scheduler={"last_epoch": 7, "frozen": False},
        scaler=scaler.state_dict(),
    )
    path = save_checkpoint(ckpt, tmp_path / "last.pth")
    raw = torch.load(path, weights_only=True)  # torch's own safe path reads it all
    assert raw["optimizer"]["state"][0]["step"] == 1
    back = read_project_checkpoint(path)
    assert back["epoch"] == 7 and back["config"] == ckpt["config"]
    rebuilt, _ = nets.model_from_checkpoint(path)
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), model(x))
    photo = orange_photo()
    assert np.array_equal(
        ModelPredictor.from_checkpoint(path).predict(photo), predict_with(model, photo)
    )


def predict_with(model: torch.nn.Module, photo: np.ndarray) -> np.ndarray:
    return ModelPredictor(model, 32).predict(photo)


@pytest.mark.parametrize("suffix", [".safetensors", ".bin"])
def test_safetensors_weights_with_model_name(tmp_path: Path, monkeypatch, suffix: str) -> None:  # noqa: ANN001
    """predict.py / get_miou.py --checkpoint W.safetensors --model NAME (header, not suffix)."""
    register_tiny(monkeypatch)
    model = make_tiny(seed=2)
    target = tmp_path / f"weights{suffix}"
    if suffix == ".safetensors":
        save_checkpoint(model.state_dict(), target)
    else:  # a safetensors file under another name, as model hubs ship them
        save_checkpoint(model.state_dict(), tmp_path / "w.safetensors").rename(target)
    photo = orange_photo()
    for script in (get_miou, predict):
        predictor = script.build_predictor(script.Config(checkpoint=str(target), model="tiny_seg"))
        assert np.array_equal(predictor.predict(photo), predict_with(model, photo))


def test_safetensors_target_takes_only_tensors(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="only named tensors"):
        save_checkpoint({"w": torch.ones(1), "epoch": 3}, tmp_path / "bad.safetensors")
    assert list(tmp_path.iterdir()) == []
