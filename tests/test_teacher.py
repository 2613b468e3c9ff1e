"""Swin-T-Att-UNet teacher: fidelity to the original at 512x512, sizes, conversion, weights.

The reference case runs the 49M-parameter model once at 512x512 (a few seconds on a 2-core CPU);
every other check uses small inputs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import nets
from nets import convert_teacher
from nets.swin import PadFirstSwinBlock
from nets.swin_att_unet import SWIN_T_IMAGENET_FILE, SwinTAttUNet

CASE = "teacher_swin_t_att_unet_512"


@pytest.fixture(scope="module")
def case(shared_dir: Path):
    """(meta, original-layout state dict, input, reference outputs) of the teacher case."""
    reference = shared_dir / "reference"
    if not (reference / "cases" / f"{CASE}.json").is_file():
        pytest.skip(f"{reference}/cases/{CASE}.json not found")
    sys.path.insert(0, str(reference))
    try:
        from synth_weights import load_case
    finally:
        sys.path.remove(str(reference))
    return load_case(str(reference / "cases" / CASE))


@pytest.fixture(scope="module")
def teacher(case) -> SwinTAttUNet:
    """The teacher at 512 with the case's weights, loaded from the original layout."""
    _, state, _, _ = case
    torch.manual_seed(0)
    model = nets.build_model("swin_t_att_unet", num_classes=4).eval()
    report = nets.load_checkpoint(model, state)
    assert report.layout == "original" and not report.missing and not report.skipped, report
    return model


@pytest.fixture(scope="module")
def outputs_512(case, teacher):
    _, _, inp, _ = case
    with torch.no_grad():
        features, logits = teacher(inp, return_features=True)
    return [t.numpy() for t in [*features, logits]]


def test_reference_case_matches_original(case, outputs_512):
    meta, _, _, refs = case
    assert len(outputs_512) == meta["num_outputs"] == len(refs)
    for i, (ours, ref) in enumerate(zip(outputs_512, refs, strict=True)):
        assert ours.shape == ref.shape, f"output {i}: {ours.shape} != {ref.shape}"
        atol = 1e-3 * np.abs(ref).max()
        err = np.abs(ours - ref).max()
        assert np.allclose(ours, ref, rtol=1e-3, atol=atol), f"output {i}: max error {err:g}"


def test_parameter_count_equals_original(case, teacher):
    meta = case[0]
    assert sum(p.numel() for p in teacher.parameters()) == meta["num_params"]


def test_index_buffers_equal_the_originals(case, teacher):
    """The dropped `relative_position_index` buffers are the ones timm computes."""
    _, state, _, _ = case
    keys = [k for k in state if k.endswith("relative_position_index")]
    assert len(keys) == 12
    for key in keys:
        ours = teacher.get_submodule(key.replace("common_backbone.", "backbone.").rsplit(".", 1)[0])
        assert torch.equal(ours.relative_position_index, torch.as_tensor(state[key]).long()), key


def test_blocks_use_the_original_window_order(teacher):
    blocks = [m for m in teacher.backbone.modules() if type(m).__name__.endswith("Block")]
    assert len(blocks) == 12
    assert all(isinstance(b, PadFirstSwinBlock) for b in blocks)
    assert all(
        b.window_size == (7, 7) and b.shift_size == ((3, 3) if i % 2 else (0, 0))
        for stage in teacher.backbone.layers
        for i, b in enumerate(stage.blocks)
    )


def test_contract_attributes(teacher):
    assert teacher.num_classes == 4
    assert teacher.default_input_size == 512
    assert teacher.fixed_input_size is False
    assert teacher.backbone is not None
    assert teacher.build_config == {"name": "swin_t_att_unet", "num_classes": 4, "options": {}}
    assert SwinTAttUNet(num_classes=2, input_size=224).build_config == {
        "name": "swin_t_att_unet",
        "num_classes": 2,
        "options": {"input_size": 224},
    }


def test_runs_at_224_for_distillation():
    model = nets.build_model("swin_t_att_unet", num_classes=3, input_size=224).eval()
    assert model.default_input_size == 224
    assert model.build_config["options"] == {"input_size": 224}
    with torch.no_grad():
        features, logits = model(torch.rand(2, 3, 224, 224), return_features=True)
    assert logits.shape == (2, 3, 224, 224)
    expected = [(96, 56), (192, 28), (384, 14), (768, 7), (1024, 7), (256, 28), (64, 112)]
    assert [(f.shape[1], f.shape[2]) for f in features] == expected


def test_non_square_input_and_gradients(teacher):
    """Any size divisible by 32 runs (here 64x96, train mode); every parameter gets a gradient."""
    teacher.train()
    try:
        logits = teacher(torch.rand(2, 3, 64, 96))
        assert logits.shape == (2, 4, 64, 96)
        logits.square().mean().backward()
        no_grad = [n for n, p in teacher.named_parameters() if p.grad is None]
        assert not no_grad, f"parameters without gradient: {no_grad[:5]}"
    finally:
        teacher.eval()
        teacher.zero_grad(set_to_none=True)


@pytest.mark.parametrize("size", [500, 100, 0])
def test_build_size_not_divisible_by_32_is_refused(size):
    """The model refuses to be built for a size it cannot run at; the size of each input is
    checked by the predictor and the training configuration, not by the forward."""
    with pytest.raises(ValueError, match="not divisible by 32"):
        SwinTAttUNet(input_size=size)


def test_forward_is_features_then_head(teacher):
    """forward = forward_head(forward_features(x)); the features are what distillation taps."""
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        features = teacher.forward_features(x)
        logits = teacher.forward_head(features)
        tapped, plain = teacher(x, return_features=True)
    assert len(features) == len(tapped) == 7
    assert all(torch.equal(a, b) for a, b in zip(features, tapped, strict=True))
    assert torch.equal(logits, plain)


def test_unknown_original_key_is_named(case):
    _, state, _, _ = case
    bad = dict(state)
    bad["Att5.W_g.0.weight"] = torch.zeros(1)
    with pytest.raises(KeyError, match="Att5.W_g.0.weight"):
        convert_teacher.convert_original_teacher(bad)


def _microsoft_swin_file(state, path: Path) -> Path:
    """The case's backbone as Microsoft's ImageNet release stores Swin-T: {"model": ...},
    merging at the end of each stage, classifier, index and mask buffers."""
    swin = {k[len("common_backbone.") :]: v for k, v in state.items() if "common_backbone." in k}
    swin["head.weight"] = torch.zeros(1000, 768)
    swin["head.bias"] = torch.zeros(1000)
    swin["layers.0.blocks.1.attn_mask"] = torch.zeros(64, 49, 49)
    torch.save({"model": swin}, path)
    return path


def _assert_same_backbone(model, teacher) -> None:
    theirs = teacher.backbone.state_dict()
    for key, value in model.backbone.state_dict().items():
        assert torch.equal(value, theirs[key]), key


def test_imagenet_backbone_from_microsoft_file(case, teacher, tmp_path):
    path = _microsoft_swin_file(case[1], tmp_path / "swin_t.pth")
    model = SwinTAttUNet(num_classes=4, input_size=224)
    report = nets.load_checkpoint(model, path)
    assert report.layout == "backbone:original", report
    assert not [k for k in report.missing if k.startswith("backbone.")], report
    assert "head.weight" in report.skipped and "layers.0.blocks.1.attn_mask" in report.skipped
    _assert_same_backbone(model, teacher)


def test_pretrained_reads_model_data_file(case, teacher, tmp_path, monkeypatch):
    import nets.swin_att_unet as module

    _microsoft_swin_file(case[1], tmp_path / SWIN_T_IMAGENET_FILE)
    monkeypatch.setattr(module, "MODEL_DATA", tmp_path)
    monkeypatch.setattr(module, "create_swin_t_pretrained_state", _no_network)
    model = nets.build_model("swin_t_att_unet", input_size=224, pretrained=True)
    _assert_same_backbone(model, teacher)


def _no_network():
    raise OSError("no network")


def test_offline_pretrained_names_the_model_data_file(monkeypatch, tmp_path):
    import nets.swin_att_unet as module

    monkeypatch.setattr(module, "MODEL_DATA", tmp_path)  # no local file there
    monkeypatch.setattr(module, "create_swin_t_pretrained_state", _no_network)
    with pytest.raises(FileNotFoundError, match=SWIN_T_IMAGENET_FILE):
        nets.build_model("swin_t_att_unet", input_size=224, pretrained=True)
