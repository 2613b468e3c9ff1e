"""Tests of the paper's comparison models (nets/comparison/): sizes against the original
FastSegFormer comparison code, the auxiliary-loss contract, full-size logits, pretrained
weights, PIDNet's boundary targets.

Targets: DESIGN.md (params / thop GMACs at 224x224, 4 classes; BiSeNetV2 at 416x416, 3 classes).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
import torchvision

import nets
from nets.comparison import COMPARISON_MODELS
from nets.comparison.pidnet import balanced_bce, boundary_target
from nets.profile import count_params, thop_profile

torch.set_num_threads(1)

# name: (params M, thop GMACs, num_classes, input size, counts include the auxiliary heads)
TARGETS = {
    "enet": (0.36, 0.46, 4, 224, False),
    "fanet18": (13.82, 1.17, 4, 224, False),
    "fanet34": (23.92, 1.65, 4, 224, False),
    "fast_scnn": (1.14, 0.17, 4, 224, False),
    "swiftnet_rn18": (11.79, 2.49, 4, 224, False),
    "bisenet_r18": (13.24, 2.84, 4, 224, False),
    "pidnet_s": (7.62, 1.15, 4, 224, False),
    "pidnet_m": (28.54, 4.30, 4, 224, False),
    "pidnet_l": (36.94, 6.63, 4, 224, False),
    # the original runs BiSeNetV2's four booster heads at inference, so its figures count them
    "bisenetv2": (3.62, 8.53, 3, 416, True),
}
# the rounding of the published figures (2 decimals) is folded into the tolerance
PARAM_TOL, MACS_TOL = 0.01, 0.02


def seg_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The trainer's contract: logits of any size, upsampled to the target, CE with ignore."""
    logits = F.interpolate(logits, size=target.shape[-2:], mode="bilinear", align_corners=False)
    return F.cross_entropy(logits, target, ignore_index=255)


def test_registry_holds_every_comparison_model() -> None:
    assert set(TARGETS) == set(COMPARISON_MODELS)
    assert set(TARGETS) <= set(nets.MODELS)


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_size_matches_the_original_comparison_code(name: str) -> None:
    params_m, gmacs, num_classes, size, with_aux = TARGETS[name]
    model = nets.build_model(name, num_classes=num_classes)
    params = count_params(model, include_aux=with_aux)
    macs, _ = thop_profile(model, size, with_aux=with_aux)
    assert math.isclose(params / 1e6, params_m, rel_tol=PARAM_TOL, abs_tol=0.005), params
    assert math.isclose(macs / 1e9, gmacs, rel_tol=MACS_TOL, abs_tol=0.005), macs


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_aux_contract_and_full_size_logits(name: str) -> None:
    torch.manual_seed(0)
    model = nets.build_model(name, num_classes=3).train()
    x = torch.randn(2, 3, 64, 64)
    target = torch.randint(0, 3, (2, 64, 64))
    target[:, :4] = 255  # an ignored band
    logits, aux = model(x, return_aux=True)
    assert logits.shape == (2, 3, 64, 64)
    if not hasattr(model, "aux_heads"):
        assert aux == {}
        return
    losses = model.aux_losses(aux, target, seg_loss)
    assert losses and all(k.startswith("aux_") for k in losses)
    total = seg_loss(logits, target)
    for key, value in losses.items():
        assert value.dim() == 0 and torch.isfinite(value), key
        total = total + value
    total.backward()
    for head_name, head in model.aux_heads.items():
        grads = [p.grad for p in head.parameters() if p.grad is not None]
        assert grads and any(g.abs().sum() > 0 for g in grads), head_name


@pytest.mark.parametrize("name", ["enet", "fanet18", "fast_scnn", "bisenetv2", "pidnet_s"])
def test_odd_input_sizes_give_full_size_logits(name: str) -> None:
    model = nets.build_model(name, num_classes=2).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 70, 54))
    assert out.shape == (1, 2, 70, 54)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", ["swiftnet_rn18", "bisenet_r18", "pidnet_s"])
def test_features_for_distillation(name: str) -> None:
    model = nets.build_model(name, num_classes=3).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        features, logits = model(x, return_features=True)
        plain = model(x)
    assert torch.equal(logits, plain)
    assert len(features) >= 3
    assert all(f.dim() == 4 and f.shape[0] == 1 for f in features)


def test_fanet_lists_the_modules_the_original_builds_but_does_not_use() -> None:
    model = nets.build_model("fanet18", num_classes=3)
    unused = set(model.unused_parameters)
    # fam32's 3x3 smoothing (512 -> 128), fam8's (128 -> 128), fam4's 1x1 up (64 -> 32), + BN
    expected = 512 * 128 * 9 + 128 * 128 * 9 + 64 * 32 + 2 * 2 * 128 + 2 * 32
    assert sum(p.numel() for n, p in model.named_parameters() if n in unused) == expected
    logits = model(torch.randn(2, 3, 64, 64))
    logits.mean().backward()
    for name, param in model.named_parameters():
        assert (param.grad is None) == (name in unused), name


def test_aux_losses_name_missing_outputs() -> None:
    model = nets.build_model("bisenet_r18", num_classes=3)
    with pytest.raises(KeyError, match="return_aux=True"):
        model.aux_losses({}, torch.zeros(1, 8, 8, dtype=torch.long), seg_loss)


def test_boundary_target_marks_class_changes_and_keeps_ignore() -> None:
    label = torch.zeros(1, 6, 6, dtype=torch.long)
    label[0, :, 3:] = 1
    label[0, 0, 0] = 255
    edges = boundary_target(label)
    expected = torch.zeros(6, 6, dtype=torch.long)
    expected[:, 2:4] = 1  # both sides of the vertical class border
    expected[0, 0] = 255
    assert torch.equal(edges[0], expected)
    # an ignored neighbour alone does not make a boundary
    assert edges[0, 1, 0] == 0 and edges[0, 0, 1] == 0


def test_balanced_bce_weighs_the_rare_class_up() -> None:
    target = torch.zeros(1, 4, 4, dtype=torch.long)
    target[0, 0, 0] = 1
    logits = torch.zeros(1, 1, 4, 4)
    loss = balanced_bce(logits, target)
    # every pixel has BCE log 2; weights 15/16 (one boundary pixel) and 1/16 (15 others)
    assert math.isclose(loss.item(), math.log(2) * (15 / 16 + 15 / 16) / 16, rel_tol=1e-5)
    target[0, 1, 1] = 255
    assert torch.isfinite(balanced_bce(logits, target))


def test_pidnet_boundary_aware_loss_is_zero_without_confident_boundaries() -> None:
    model = nets.build_model("pidnet_s", num_classes=3).train()
    # batch 2: in training, BatchNorm after PIDNet's global pool needs more than one value
    logits, aux = model(torch.randn(2, 3, 64, 64), return_aux=True)
    aux["boundary"] = torch.full_like(aux["boundary"], -10.0)  # sigmoid << 0.8 everywhere
    losses = model.aux_losses(aux, torch.randint(0, 3, (2, 64, 64)), seg_loss)
    assert losses["aux_boundary_seg"].item() == 0.0
    assert set(losses) == {"aux_p", "aux_boundary", "aux_boundary_seg"}


def test_resnet_weights_load_from_a_local_file(tmp_path) -> None:
    reference = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    for factory in (COMPARISON_MODELS["fanet18"], COMPARISON_MODELS["bisenet_r18"]):
        model = factory(num_classes=3, pretrained=str(path))
        assert torch.equal(model.backbone.layer3[1].conv2.weight, reference.layer3[1].conv2.weight)
        assert torch.equal(model.backbone.conv1.weight, reference.conv1.weight)


def test_pretrained_without_file_names_the_file(tmp_path, monkeypatch) -> None:
    import nets.comparison.common as common

    monkeypatch.setattr(common, "MODEL_DATA", tmp_path)
    with pytest.raises(FileNotFoundError, match="PIDNet_S_ImageNet.pth.tar"):
        nets.build_model("pidnet_s", pretrained=True)
    with pytest.raises(ValueError, match="no ImageNet weights"):
        nets.build_model("enet", pretrained=True)


def test_pidnet_backbone_freezing_leaves_the_heads_trainable() -> None:
    model = nets.build_model("pidnet_s", num_classes=3)
    nets.set_backbone_frozen(model, True)
    assert not model.conv1[0].weight.requires_grad
    assert not model.spp.shortcut[2].weight.requires_grad
    assert model.final_layer.conv2.weight.requires_grad
    assert model.aux_heads["boundary"].conv2.weight.requires_grad
    nets.set_backbone_frozen(model, False)
    assert all(p.requires_grad for p in model.parameters())


def test_exportable_pooling_ops_match_torch() -> None:
    from nets.comparison.common import adaptive_avg_pool
    from nets.comparison.enet import max_unpool

    x = torch.randn(2, 3, 7, 9)
    for bins in [(3, 3), (8, 8), (6, 2), (7, 9), (1, 1)]:
        assert torch.allclose(adaptive_avg_pool(x, bins), F.adaptive_avg_pool2d(x, bins), atol=1e-6)
    pooled, idx = F.max_pool2d(torch.randn(2, 3, 8, 10), 2, 2, return_indices=True)
    assert torch.equal(max_unpool(pooled, idx), F.max_unpool2d(pooled, idx, 2, 2))


@pytest.mark.parametrize("name", ["enet", "fast_scnn"])
def test_onnx_export_matches_pytorch(name: str, tmp_path) -> None:
    ort = pytest.importorskip("onnxruntime")
    model = nets.build_model(name, num_classes=3).eval()
    x = torch.randn(1, 3, 96, 96)  # 1/32 map 3x3: Fast-SCNN's 2- and 6-bin pools do not divide it
    path = tmp_path / f"{name}.onnx"
    torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=18)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        expected = model(x).numpy()
    assert out.shape == expected.shape
    assert abs(out - expected).max() < 1e-4 * max(1.0, abs(expected).max())


@pytest.mark.parametrize("name", ["enet", "fast_scnn", "bisenetv2"])
def test_original_layout_converts_by_tensor_order(name: str) -> None:
    torch.manual_seed(1)
    source = nets.build_model(name, num_classes=3).eval()
    # the original names its modules differently but registers the same tensors in order;
    # its Fast-SCNN has no auxiliary heads
    drop_aux = name == "fast_scnn"
    original = {
        f"orig_{i}.{key.rsplit('.', 1)[-1]}": value
        for i, (key, value) in enumerate(source.state_dict().items())
        if not (drop_aux and key.startswith("aux_heads."))
    }
    torch.manual_seed(2)
    model = nets.build_model(name, num_classes=3).eval()
    report = nets.load_checkpoint(model, original)
    assert report.layout == "original"
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), source(x))
    shuffled = dict(reversed(list(original.items())))
    with pytest.raises(ValueError, match="does not fit|tensors"):
        nets.load_checkpoint(nets.build_model(name, num_classes=3), shuffled)
