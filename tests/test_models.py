"""Checks every model in ``nets.MODELS`` must pass (the brief's model contract).

``TestRegistryModel`` is parametrised over every registry name, so a model added to the
registry inherits the checks: attributes, output shape in train and eval, finite output,
gradients reaching every trainable parameter, state-dict round trip, the
``return_features`` contract and backbone freezing. Large models run at a smaller input
where their size is not fixed (``TEST_INPUT_SIZE``).
"""

from __future__ import annotations

import io

import pytest
import torch
import torch.nn.functional as F

import nets
from nets.profile import complexity

NAMES = sorted(nets.MODELS)
# Inputs smaller than the default where the model allows it, to keep each test in seconds.
TEST_INPUT_SIZE = {"swin_t_att_unet": 224}
NUM_CLASSES = 3  # not the paper's 4, so a hard-coded class count shows up


def _seg_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy after upsampling logits (any size) to the label size (as the trainer's)."""
    logits = F.interpolate(logits, target.shape[-2:], mode="bilinear", align_corners=False)
    return F.cross_entropy(logits, target, ignore_index=255)


def _input_size(model: torch.nn.Module, name: str) -> int:
    if model.fixed_input_size:
        return model.default_input_size
    return TEST_INPUT_SIZE.get(name, model.default_input_size)


@pytest.fixture(scope="module", params=NAMES)
def built(request) -> tuple[str, torch.nn.Module, int]:
    torch.manual_seed(0)
    name = request.param
    model = nets.build_model(name, num_classes=NUM_CLASSES)
    return name, model, _input_size(model, name)


class TestRegistryModel:
    def test_attributes(self, built) -> None:
        name, model, _ = built
        assert model.num_classes == NUM_CLASSES
        assert isinstance(model.default_input_size, int) and model.default_input_size % 32 == 0
        assert isinstance(model.fixed_input_size, bool)
        assert model.build_config["name"] == name
        assert model.build_config["num_classes"] == NUM_CLASSES
        assert isinstance(model.build_config["options"], dict)
        assert model.backbone is None or isinstance(model.backbone, torch.nn.Module)

    def test_output_shape_and_finite_eval(self, built) -> None:
        _, model, size = built
        model.eval()
        with torch.no_grad():
            logits = model(torch.rand(1, 3, size, size))
        assert logits.shape == (1, NUM_CLASSES, size, size)
        assert torch.isfinite(logits).all()

    def test_gradients_reach_every_trainable_parameter(self, built) -> None:
        _, model, size = built
        model.train()
        model.zero_grad(set_to_none=True)
        x = torch.rand(2, 3, size, size)
        target = torch.randint(0, NUM_CLASSES, (2, size, size))
        if hasattr(model, "aux_losses"):
            logits, aux = model(x, return_aux=True)
            loss = _seg_loss(logits, target)
            loss = loss + sum(model.aux_losses(aux, target, _seg_loss).values())
        else:  # the features are outputs too (distillation trains through them)
            features, logits = model(x, return_features=True)
            loss = F.cross_entropy(logits, target) + sum(f.mean() for f in features)
        assert logits.shape == (2, NUM_CLASSES, size, size)  # full size in train mode too
        loss.backward()
        # A model may list parameters its original builds but never uses (kept so that the
        # parameter count matches the paper) in `unused_parameters`.
        unused = set(getattr(model, "unused_parameters", ()))
        params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        no_grad = [n for n, p in params if p.grad is None and n not in unused]
        assert not no_grad, f"parameters without gradient: {no_grad[:5]}"
        bad = [n for n, p in params if p.grad is not None and not p.grad.isfinite().all()]
        assert not bad, f"non-finite gradients: {bad[:5]}"
        model.zero_grad(set_to_none=True)

    def test_state_dict_round_trip(self, built) -> None:
        name, model, size = built
        buffer = io.BytesIO()
        torch.save(model.state_dict(), buffer)
        buffer.seek(0)
        torch.manual_seed(123)  # a differently initialised twin
        twin = nets.build_model(name, num_classes=NUM_CLASSES, **model.build_config["options"])
        twin.load_state_dict(torch.load(buffer, weights_only=True))
        model.eval()
        twin.eval()
        x = torch.rand(1, 3, size, size)
        with torch.no_grad():
            assert torch.equal(model(x), twin(x))

    def test_return_features(self, built) -> None:
        _, model, size = built
        model.eval()
        x = torch.rand(1, 3, size, size)
        with torch.no_grad():
            features, logits = model(x, return_features=True)
            plain = model(x)
        assert torch.allclose(logits, plain)
        assert isinstance(features, list) and len(features) >= 2
        for f in features:
            assert f.ndim == 4 and f.shape[0] == 1 and torch.isfinite(f).all()

    def test_set_backbone_frozen(self, built) -> None:
        _, model, _ = built
        if model.backbone is None:
            pytest.skip("model has no backbone")
        backbone_ids = {id(p) for p in model.backbone.parameters()}
        nets.set_backbone_frozen(model, True)
        assert not any(p.requires_grad for p in model.backbone.parameters())
        assert all(p.requires_grad for p in model.parameters() if id(p) not in backbone_ids)
        nets.set_backbone_frozen(model, False)
        assert all(p.requires_grad for p in model.parameters())


# --- FastSegFormer specifics ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "options", "count"),
    [
        ("fastsegformer_p", {}, 7),
        ("fastsegformer_p", {"irb": False, "pyramid": "ppm"}, 6),
        ("fastsegformer_e", {}, 7),
    ],
)
def test_fastsegformer_feature_order(name: str, options: dict, count: int) -> None:
    """Reference order: 4 stages (strides 4..32), pyramid (/32), fusion (/8), [IRB (/2)]."""
    model = nets.build_model(name, **options).eval()
    with torch.no_grad():
        features, logits = model(torch.rand(1, 3, 224, 224), return_features=True)
    assert len(features) == count
    sizes = [f.shape[-1] for f in features]
    assert sizes[:6] == [56, 28, 14, 7, 7, 28]
    assert [f.shape[1] for f in features[:4]] == model.backbone.channels
    if options.get("irb", True):
        assert features[6].shape[1:] == (32, 112, 112)
    assert logits.shape == (1, 4, 224, 224)


def test_fastsegformer_p_other_input_sizes() -> None:
    """The IRB works at half the actual input, so -P runs at any size divisible by 32."""
    model = nets.build_model("fastsegformer_p").eval()
    with torch.no_grad():
        assert model(torch.rand(1, 3, 256, 320)).shape == (1, 4, 256, 320)
        features, _ = model(torch.rand(1, 3, 256, 320), return_features=True)
    assert features[-1].shape[-2:] == (128, 160)


@pytest.mark.parametrize("backbone", ["poolformer_s24", "efficientformerv2_s1"])
def test_fastsegformer_other_backbones(backbone: str) -> None:
    name = "fastsegformer_p" if backbone.startswith("poolformer") else "fastsegformer_e"
    model = nets.build_model(name, backbone=backbone).eval()
    with torch.no_grad():
        assert model(torch.rand(1, 3, 224, 224)).shape == (1, 4, 224, 224)


def test_bad_options_raise() -> None:
    with pytest.raises(KeyError, match="fastsegformer_p") as err:
        nets.build_model("fastsegformer_x")
    assert all(name in str(err.value) for name in nets.MODELS)
    with pytest.raises(ValueError, match="unknown pyramid 'aspp'"):
        nets.build_model("fastsegformer_p", pyramid="aspp")
    with pytest.raises(ValueError, match="fastsegformer_e takes backbone="):
        nets.build_model("fastsegformer_e", backbone="poolformer_s12")
    with pytest.raises(ValueError, match="unknown backbone|takes backbone="):
        nets.build_model("fastsegformer_p", backbone="resnet18")
    with pytest.raises(ValueError, match="irb must be True or False"):
        nets.build_model("fastsegformer_p", irb="yes")
    with pytest.raises(TypeError):
        nets.build_model("fastsegformer_p", pyramids="msp")  # misspelt option


def test_efficientformer_declares_its_fixed_input_size() -> None:
    """-E runs only at 224x224; the model says so and the predictor and training enforce it."""
    e, p = nets.build_model("fastsegformer_e"), nets.build_model("fastsegformer_p")
    assert e.fixed_input_size and e.default_input_size == 224
    assert not p.fixed_input_size and p.default_input_size == 224


@pytest.mark.parametrize(("name", "irb"), [("fastsegformer_p", True), ("fastsegformer_e", False)])
def test_fastsegformer_forward_is_features_then_head(name: str, irb: bool) -> None:
    """forward = forward_head(forward_features(x)), features in the reference order."""
    model = nets.build_model(name, irb=irb).eval()
    x = torch.rand(1, 3, 224, 224)
    with torch.no_grad():
        features = model.forward_features(x)  # 4 stages, pyramid, fusion
        head_features, logits = model.forward_head(features, x)
        tapped, plain = model(x, return_features=True)
        lean = model.forward_features(x, all_stages=False)
    assert len(features) == 6 and len(head_features) == (1 if irb else 0)
    assert all(torch.equal(a, b) for a, b in zip([*features, *head_features], tapped, strict=True))
    assert torch.equal(logits, plain)
    # the plain forward skips the norms of stages 0 and 2 (only distillation reads them)
    assert lean[0] is None and lean[2] is None
    assert all(torch.equal(a, b) for a, b in zip(lean[3:], features[3:], strict=True))


@pytest.mark.parametrize(
    ("name", "options", "params_m", "gflops"),
    [
        ("fastsegformer_p", {}, 14.87, 2.70),
        ("fastsegformer_e", {}, 5.01, 0.80),
        ("fastsegformer_p", {"pyramid": "ppm", "irb": False}, 13.53, 2.57),
        ("fastsegformer_e", {"pyramid": "ppm", "irb": False}, 4.48, 0.71),
    ],
)
def test_params_and_gflops_match_the_paper(name, options, params_m, gflops) -> None:
    """nets.profile.complexity reproduces DESIGN.md's figures (thop convention) within 0.5%."""
    model = nets.build_model(name, **options)
    figures = complexity(model, 224)
    assert figures["params_m"] == pytest.approx(params_m, rel=5e-3)
    assert figures["gflops"] == pytest.approx(gflops, rel=5e-3)
    assert not any(k.endswith(("total_ops", "total_params")) for k in model.state_dict())


@pytest.mark.parametrize("name", ["fastsegformer_p", "fastsegformer_e"])
def test_fastsegformer_computes_the_same_in_channels_last(name: str) -> None:
    """The model keeps whatever memory format it is given; a runtime may feed it channels-last
    (NHWC, faster on the CPU) and gets the same logits."""
    model = nets.build_model(name).eval()
    x = torch.rand(1, 3, 224, 224)
    with torch.no_grad():
        plain = model(x)
        nhwc = model(x.contiguous(memory_format=torch.channels_last))
    assert plain.is_contiguous()
    assert torch.allclose(nhwc, plain, rtol=1e-4, atol=1e-4 * plain.abs().max().item())
