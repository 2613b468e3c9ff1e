"""utils.training.distillation.load_teacher: project and original checkpoints, and its refusals."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import timm
import torch

import nets
from nets.checkpoint import build_checkpoint, save_checkpoint
from utils.training.distillation import load_teacher

REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference"


def _project_file(tmp_path: Path, name: str = "fastsegformer_p", num_classes: int = 4) -> Path:
    torch.manual_seed(0)
    model = nets.build_model(name, num_classes)
    names = [f"c{i}" for i in range(num_classes)]
    return save_checkpoint(
        build_checkpoint(model, input_size=(64, 64), class_names=names), tmp_path / "t.pth"
    )


def test_project_checkpoint_loads_frozen_in_eval(tmp_path) -> None:
    path = _project_file(tmp_path)
    teacher = load_teacher("fastsegformer_p", path, 4)
    assert not teacher.training
    assert not any(p.requires_grad for p in teacher.parameters())
    saved = torch.load(path, weights_only=True)["state_dict"]
    for key, value in teacher.state_dict().items():
        assert torch.equal(value, saved[key]), key


def test_project_checkpoint_of_another_model_or_class_count_is_refused(tmp_path) -> None:
    path = _project_file(tmp_path)
    with pytest.raises(ValueError, match="holds a fastsegformer_p model, not --teacher swin"):
        load_teacher("swin_t_att_unet", path, 4)
    with pytest.raises(ValueError, match="predicts 4 classes, the student 3"):
        load_teacher("fastsegformer_p", path, 3)


def test_original_layout_loads(tmp_path) -> None:
    if not (REFERENCE / "synth_weights.py").is_file():
        pytest.skip(f"{REFERENCE} not found: the shared reference cases are not beside the repo")
    spec = importlib.util.spec_from_file_location("synth_weights", REFERENCE / "synth_weights.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    _, state, _, _ = module.load_case(str(REFERENCE / "cases" / "fastsegformer_p"))
    torch.save(state, tmp_path / "original.pth")
    teacher = load_teacher("fastsegformer_p", tmp_path / "original.pth", 4)
    expected = nets.build_model("fastsegformer_p")
    nets.load_checkpoint(expected, state)
    for key, value in teacher.state_dict().items():
        assert torch.equal(value, expected.state_dict()[key]), key


def test_backbone_only_weights_are_refused(tmp_path) -> None:
    torch.save(timm.create_model("poolformer_s12").state_dict(), tmp_path / "imagenet.pth")
    with pytest.raises(ValueError, match="only backbone weights"):
        load_teacher("fastsegformer_p", tmp_path / "imagenet.pth", 4)
