"""``nets.load_checkpoint`` on every layout it recognises, and its errors.

Original-layout dicts are rebuilt from ``../shared/reference`` (``synth_weights.load_case``);
ImageNet layouts are derived from them the way the original repositories store them.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import timm
import torch

import nets
from nets.checkpoint import CheckpointError, build_checkpoint, save_checkpoint

REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference"


@pytest.fixture(scope="module")
def load_case():
    if not (REFERENCE / "synth_weights.py").is_file():
        pytest.skip(f"{REFERENCE} not found: the shared reference cases are not beside the repo")
    spec = importlib.util.spec_from_file_location("synth_weights", REFERENCE / "synth_weights.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return lambda case: module.load_case(str(REFERENCE / "cases" / case))


def _imagenet_layout(original_full: dict, embed_dim: int, extra_heads: tuple[str, ...]) -> dict:
    """Original FastSegFormer `common_backbone.*` -> the backbone repo's ImageNet layout.

    Drops the per-stage output norms (norm0/2/4/6) and adds the classifier's final norm and
    head(s), as in the released ImageNet files.
    """
    state = {
        k[len("common_backbone.") :]: v
        for k, v in original_full.items()
        if k.startswith("common_backbone.") and not k.startswith("common_backbone.norm")
    }
    state["norm.weight"] = torch.ones(embed_dim)
    state["norm.bias"] = torch.zeros(embed_dim)
    for head in extra_heads:
        state[f"{head}.weight"] = torch.zeros(1000, embed_dim)
        state[f"{head}.bias"] = torch.zeros(1000)
    return state


def _reference_model(load_case, case: str, name: str):
    """A model loaded from the original full layout, to compare the backbone against."""
    _, state, _, _ = load_case(case)
    model = nets.build_model(name)
    nets.load_checkpoint(model, state)
    return model, state


def _assert_backbone_equal(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.backbone.body.state_dict(), b.backbone.body.state_dict()
    for key in sa:
        if key.endswith("num_batches_tracked"):
            continue
        assert torch.equal(sa[key], sb[key]), key


def test_original_full_layout_loads_strictly(load_case) -> None:
    _, state, _, _ = load_case("fastsegformer_p")
    model = nets.build_model("fastsegformer_p")
    report = nets.load_checkpoint(model, state)
    assert report.layout == "original"
    assert len(report.loaded) == len(model.state_dict())
    # one missing head tensor makes the strict load fail, naming the key
    del state["classify.conv.1.bias"]
    with pytest.raises(ValueError, match="classify"):
        nets.load_checkpoint(nets.build_model("fastsegformer_p"), state)


def test_original_layout_of_other_variant_is_refused(load_case) -> None:
    _, state, _, _ = load_case("fastsegformer_p_ppm_noirb")
    with pytest.raises(ValueError, match="pyramid / IRB"):
        nets.load_checkpoint(nets.build_model("fastsegformer_p"), state)


def test_poolformer_imagenet_layout(load_case, tmp_path: Path) -> None:
    reference, full = _reference_model(load_case, "fastsegformer_p", "fastsegformer_p")
    imagenet = _imagenet_layout(full, 512, ("head",))
    path = tmp_path / "poolformer_s12.pth.tar"
    torch.save(imagenet, path)

    model = nets.build_model("fastsegformer_p")
    report = nets.load_checkpoint(model, path)
    assert report.layout == "backbone:original"
    assert sorted(report.skipped) == ["head.bias", "head.weight", "norm.bias", "norm.weight"]
    assert len(report.loaded) == len(model.backbone.body.state_dict())
    # what an ImageNet file cannot hold stays at its initial values: the head and stage norms
    assert all(not k.startswith("backbone.body.") for k in report.missing)
    assert any(k.startswith("backbone.norms.") for k in report.missing)
    _assert_backbone_equal(model, reference)


def test_efficientformerv2_imagenet_layout_wrapped_in_model(load_case) -> None:
    reference, full = _reference_model(load_case, "fastsegformer_e", "fastsegformer_e")
    imagenet = {"model": _imagenet_layout(full, 176, ("head", "dist_head"))}

    model = nets.build_model("fastsegformer_e")
    report = nets.load_checkpoint(model, imagenet)
    assert report.layout == "backbone:original"
    assert len(report.loaded) == len(model.backbone.body.state_dict())
    assert {"norm.weight", "head.weight", "dist_head.weight"} <= set(report.skipped)
    _assert_backbone_equal(model, reference)
    assert all(not k.startswith("backbone.body.") for k in report.missing)


@pytest.mark.parametrize("name", ["fastsegformer_p", "fastsegformer_e"])
def test_timm_layout(name: str) -> None:
    torch.manual_seed(0)
    model = nets.build_model(name)
    source = timm.create_model(model.backbone.name)  # timm's full classification model
    for param in source.parameters():
        param.data.normal_()
    report = nets.load_checkpoint(model, source.state_dict())
    assert report.layout == "backbone:timm"
    assert any(k.startswith("head") for k in report.skipped)
    body, full = model.backbone.body.state_dict(), source.state_dict()
    for key, value in full.items():  # stages.N -> stages_N (and stem.convK -> stem_convK)
        ours = key.replace("stages.", "stages_", 1).replace("stem.conv1.", "stem_conv1.")
        ours = ours.replace("stem.conv2.", "stem_conv2.")
        if not key.startswith(("head", "norm")):
            assert torch.equal(body[ours], value), key


def test_project_checkpoint_and_model_from_checkpoint(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = nets.build_model("fastsegformer_p", pyramid="ppm", irb=False).eval()
    path = tmp_path / "best.pth"
    names = ["background", "sunburn", "ulcer", "wind_scarring"]
    ckpt = build_checkpoint(model, input_size=(224, 224), class_names=names, epoch=3)
    save_checkpoint(ckpt, path)

    other = nets.build_model("fastsegformer_p", pyramid="ppm", irb=False)
    assert nets.load_checkpoint(other, path).layout == "project"

    rebuilt, ckpt = nets.model_from_checkpoint(path)
    assert not rebuilt.training and ckpt["epoch"] == 3
    assert rebuilt.build_config == model.build_config
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), model(x))

    with pytest.raises(ValueError, match="fastsegformer_p model, cannot load it into"):
        nets.load_checkpoint(nets.build_model("fastsegformer_e"), path)


def test_model_from_checkpoint_refuses_plain_state_dict(tmp_path: Path) -> None:
    path = tmp_path / "plain.pth"
    torch.save(nets.build_model("fastsegformer_p").state_dict(), path)
    with pytest.raises(CheckpointError, match="not a project checkpoint"):
        nets.model_from_checkpoint(path)
    # ...but load_checkpoint takes it as our own layout
    assert nets.load_checkpoint(nets.build_model("fastsegformer_p"), path).layout == "native"


def test_wrong_class_count_names_key_and_shapes(load_case) -> None:
    _, state, _, _ = load_case("fastsegformer_p")  # 4 classes
    model = nets.build_model("fastsegformer_p", num_classes=3)
    with pytest.raises(ValueError) as err:
        nets.load_checkpoint(model, state)
    text = str(err.value)
    assert "fastsegformer_p" in text and "irb.head.weight" in text
    assert "(4, 32, 1, 1)" in text and "(3, 32, 1, 1)" in text and "drop_classifier" in text


def test_drop_classifier_loads_the_rest(load_case) -> None:
    _, state, _, _ = load_case("fastsegformer_p")
    model = nets.build_model("fastsegformer_p", num_classes=3)
    before = model.irb.head.weight.clone()
    report = nets.load_checkpoint(model, state, drop_classifier=True)
    assert sorted(report.dropped) == ["irb.head.bias", "irb.head.weight"]
    assert torch.equal(model.irb.head.weight, before)  # left at its initialisation
    assert torch.equal(model.fusion.high[0].weight, state["FFM.conv_higher_res.0.weight"])


def test_unrecognised_layout_and_missing_file(tmp_path: Path) -> None:
    model = nets.build_model("fastsegformer_p")
    with pytest.raises(ValueError, match="unrecognised"):
        nets.load_checkpoint(model, {"foo.weight": torch.zeros(3)})
    with pytest.raises(CheckpointError, match="nope.pth"):
        nets.load_checkpoint(model, tmp_path / "nope.pth")


def test_pretrained_offline_names_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    import nets.backbones
    import nets.fastsegformer

    def offline(name: str):
        raise OSError("network is unreachable")

    monkeypatch.setattr(nets.fastsegformer, "MODEL_DATA", Path("/nonexistent/model_data"))
    monkeypatch.setattr(nets.backbones, "timm_imagenet_state_dict", offline)
    with pytest.raises(FileNotFoundError, match=r"put poolformer_s12\.pth\.tar .* in"):
        nets.build_model("fastsegformer_p", pretrained=True)
    with pytest.raises(FileNotFoundError, match=r"eformer_s0_450\.pth"):
        nets.build_model("fastsegformer_e", pretrained=True)


def test_pretrained_from_model_data(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import nets.fastsegformer

    source = timm.create_model("poolformer_s12")
    torch.save(source.state_dict(), tmp_path / "poolformer_s12.pth.tar")
    monkeypatch.setattr(nets.fastsegformer, "MODEL_DATA", tmp_path)
    model = nets.build_model("fastsegformer_p", pretrained=True)
    assert torch.equal(model.backbone.body.stem.conv.weight, source.stem.conv.weight)
