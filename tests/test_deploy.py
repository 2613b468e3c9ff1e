"""Deployment optimisations (utils/deploy/optimize.py): BN folding, ONNX optimisation, INT8 QDQ.

Tiny models and 32x32 inputs so each test runs in a second or two on a CPU.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from utils.deploy.optimize import (
    ImageCalibrationReader,
    excluded_nodes,
    fold_batchnorm,
    optimize_onnx,
    ort_session,
    pointwise_before_upsample,
    quantize_int8,
)
from utils.inference.calibration import calibration_images

SIZE = 32


class TinySeg(nn.Module):
    """Conv-BN-ReLU stem, a conv-BN-ReLU block, a 1x1 classifier: the shape of a student."""

    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU()
        )  # conv with bias
        self.conv = nn.Conv2d(8, 8, 3, padding=1, bias=False, groups=2)
        self.bn = nn.BatchNorm2d(8)
        self.cls = nn.Conv2d(8, num_classes, 1)
        self.num_classes = num_classes
        self.default_input_size = SIZE
        self.build_config = {"name": "tiny", "num_classes": num_classes, "options": {}}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        # BN applied through the attributes, in an order the source does not show
        return self.cls(torch.relu(self.bn(self.conv(x))))


class ResidualOnConv(nn.Module):
    """The conv output is read by the BN *and* by an add: that pair must not be folded."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.default_input_size = SIZE

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.conv(x)
        return self.bn(c) + c


def randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=g) - 0.5)
    return model.eval()


def count_bn(model: nn.Module) -> int:
    return sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def test_fold_batchnorm_equal_outputs_and_no_bn_left() -> None:
    model = randomize_bn(TinySeg())
    folded, pairs = fold_batchnorm(model, SIZE)
    assert pairs == 2
    assert count_bn(folded) == 0 and count_bn(model) == 2  # the original is untouched
    x = torch.rand(2, 3, SIZE, SIZE)
    with torch.inference_mode():
        ref, got = model(x), folded(x)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


def test_fold_batchnorm_keeps_timm_bn_activation() -> None:
    from timm.layers import BatchNormAct2d

    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), BatchNormAct2d(4, act_layer=nn.ReLU))
    model.default_input_size = SIZE
    randomize_bn(model)
    folded, pairs = fold_batchnorm(model)
    assert pairs == 1 and count_bn(folded) == 0
    x = torch.rand(1, 3, SIZE, SIZE)
    with torch.inference_mode():
        out = folded(x)
        torch.testing.assert_close(out, model(x), rtol=1e-5, atol=1e-5)
    assert (out >= 0).all()  # the ReLU survived the fold


def test_fold_batchnorm_skips_conv_output_read_twice() -> None:
    model = randomize_bn(ResidualOnConv())
    folded, pairs = fold_batchnorm(model)
    assert pairs == 0 and count_bn(folded) == 1
    x = torch.rand(1, 3, SIZE, SIZE)
    with torch.inference_mode():
        torch.testing.assert_close(folded(x), model(x))


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory):
    from utils.deploy.onnx_export import export_onnx

    torch.manual_seed(0)
    model = randomize_bn(TinySeg())
    path = tmp_path_factory.mktemp("onnx") / "tiny_fp32.onnx"
    meta = {"class_names": ["a", "b", "c"], "preprocess": {"mean": None, "std": None}}
    export_onnx(model, path, SIZE, exporter="torchscript", metadata=meta)
    return model, path


def tiny_photos(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (40 + 4 * i, 48, 3), dtype=np.uint8) for i in range(n)]


class UpThenPointwise(nn.Module):
    """conv 3x3 -> x2 bilinear up -> 1x1 conv (the end of FastSegFormer's IRB); `residual` also
    reads the upsampled tensor in a functional op, which hooks do not see."""

    def __init__(self, out_channels: int = 3, residual: bool = False) -> None:
        super().__init__()
        self.body = nn.Conv2d(3, 8, 3, padding=1)
        self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
        self.head = nn.Conv2d(8, out_channels, 1)
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        up = self.up(self.body(x))  # (B, 8, 2H, 2W)
        out = self.head(up)
        return out + up[:, : out.shape[1]] if self.residual else out


def test_pointwise_before_upsample_is_exact_and_convolves_the_small_map() -> None:
    torch.manual_seed(0)
    model = UpThenPointwise().eval()
    swapped, n = pointwise_before_upsample(model, 16)
    assert n == 1 and isinstance(swapped.up, nn.Identity)
    seen: list[tuple[int, ...]] = []
    swapped.head[0].register_forward_pre_hook(lambda m, inp: seen.append(tuple(inp[0].shape)))
    x = torch.rand(2, 3, 16, 16)
    with torch.inference_mode():
        torch.testing.assert_close(swapped(x), model(x), rtol=1e-5, atol=1e-5)
    assert seen == [(2, 8, 16, 16)]  # the 1x1 conv ran before the x2 upsample
    assert isinstance(model.up, nn.Upsample)  # the caller's model is left as it was


def test_pointwise_before_upsample_leaves_what_it_cannot_swap() -> None:
    torch.manual_seed(0)
    for model in (UpThenPointwise(residual=True), UpThenPointwise(out_channels=16)):
        model.eval()  # upsample also read by a residual; more outputs than inputs
        swapped, n = pointwise_before_upsample(model, 16)
        assert n == 0 and isinstance(swapped.up, nn.Upsample)
        x = torch.rand(1, 3, 16, 16)
        with torch.inference_mode():
            torch.testing.assert_close(swapped(x), model(x))


def test_pointwise_before_upsample_on_fastsegformer() -> None:
    """FastSegFormer's IRB head (x2 up of 32 channels, then 1x1 to the classes) is swapped."""
    import nets

    torch.manual_seed(0)
    model = nets.build_model("fastsegformer_p").eval()
    swapped, n = pointwise_before_upsample(model, 64)
    assert n == 1 and isinstance(swapped.irb.up, nn.Identity)
    x = torch.rand(1, 3, 64, 64)
    with torch.inference_mode():
        ref = model(x)
        assert (swapped(x) - ref).abs().max() <= 1e-4 * ref.abs().max()


def test_optimize_onnx_same_logits_and_metadata(tiny_onnx, tmp_path) -> None:
    from utils.inference.predictor import Predictor

    model, path = tiny_onnx
    opt = optimize_onnx(path, tmp_path / "tiny_opt.onnx")
    x = np.random.default_rng(1).random((1, 3, SIZE, SIZE), dtype=np.float32)
    got = ort_session(opt, level="disable").run(None, {"images": x})[0]
    with torch.inference_mode():
        ref = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)
    assert Predictor.from_exported(opt).class_names == ["a", "b", "c"]


def test_calibration_reader_shapes_and_rewind() -> None:
    reader = ImageCalibrationReader(tiny_photos(3), SIZE, "images", mean=[0.5] * 3, std=[0.5] * 3)
    batches = []
    while (item := reader.get_next()) is not None:
        batches.append(item["images"])
    assert len(batches) == 3 and len(reader) == 3
    assert all(b.shape == (1, 3, SIZE, SIZE) and b.dtype == np.float32 for b in batches)
    assert min(b.min() for b in batches) < 0  # mean/std applied: [0, 1] -> [-1, 1]
    reader.rewind()
    np.testing.assert_array_equal(reader.get_next()["images"], batches[0])


@pytest.mark.parametrize("ops", ["conv", "all"])
def test_quantize_int8_loads_runs_and_tracks_fp32(ops: str, tiny_onnx, tmp_path) -> None:
    import onnx

    from utils.inference.predictor import Predictor

    model, path = tiny_onnx
    reader = ImageCalibrationReader(tiny_photos(6), SIZE, "images")
    dst = quantize_int8(path, tmp_path / "tiny_int8.onnx", reader, exclude="none", ops=ops)
    ops = {n.op_type for n in onnx.load(str(dst)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert not (tmp_path / "tiny_int8_prep.onnx").exists()  # intermediate removed

    predictor = Predictor.from_exported(dst)
    assert predictor.class_names == ["a", "b", "c"]  # metadata carried over
    photo = tiny_photos(1, seed=5)[0]
    mask = predictor.predict(photo)
    assert mask.shape == photo.shape[:2] and mask.dtype == np.uint8
    x, _ = predictor.preprocess(photo)
    q = predictor.infer(x[None])
    with torch.inference_mode():
        ref = model(torch.from_numpy(x[None])).numpy()
    # 8-bit, not garbage. The mean error, not the largest: on x86 CPUs without VNNI, ONNX
    # Runtime's u8s8 kernels have been seen to cap a few outputs of this random network
    # (largest error 0.14 of 0.62), while the rest tracked float32 as on a VNNI CPU
    # (largest 0.008 there).
    err = np.abs(q - ref)
    assert err.mean() <= 0.03 * np.abs(ref).max()
    assert (q.argmax(1) == ref.argmax(1)).mean() >= 0.8


def test_excluded_nodes_policies(tiny_onnx) -> None:
    import onnx

    _, path = tiny_onnx
    nodes = list(onnx.load(str(path)).graph.node)
    convs = [n.name for n in nodes if n.op_type == "Conv"]
    assert excluded_nodes(path, "none") == []
    head = excluded_nodes(path, "head")
    assert convs[-1] in head and convs[0] not in head
    assert convs[0] in excluded_nodes(path, "head+stem")
    with pytest.raises(ValueError, match="exclusion policy"):
        excluded_nodes(path, "everything")


def test_quantize_int8_rejects_unknown_settings(tiny_onnx, tmp_path) -> None:
    _, path = tiny_onnx
    reader = ImageCalibrationReader(tiny_photos(1), SIZE)
    with pytest.raises(ValueError, match="op set"):
        quantize_int8(path, tmp_path / "q.onnx", reader, ops="most")
    with pytest.raises(ValueError, match="calibration method"):
        quantize_int8(path, tmp_path / "q.onnx", reader, method="kl")
    with pytest.raises(ValueError, match="INT8 format"):
        quantize_int8(path, tmp_path / "q.onnx", reader, quant_format="qx")
    with pytest.raises(FileNotFoundError, match="not found"):
        quantize_int8(tmp_path / "missing.onnx", tmp_path / "q.onnx", reader)


def test_calibration_images_sample_the_split(tmp_path) -> None:
    from utils.data.synthetic import generate_dataset

    root = generate_dataset(tmp_path / "voc", num=5, seed=0, size=64, workers=1)
    all_train = calibration_images(root, "train", num=100)
    assert all_train and all(p.suffix == ".jpg" and p.is_file() for p in all_train)
    two = calibration_images(root, "train", num=2, seed=1)
    assert len(two) == min(2, len(all_train)) and set(two) <= set(all_train)


def test_quantize_int8_qoperator_format(tiny_onnx, tmp_path) -> None:
    import onnx

    model, path = tiny_onnx
    reader = ImageCalibrationReader(tiny_photos(6), SIZE, "images")
    dst = quantize_int8(path, tmp_path / "q.onnx", reader, exclude="none", quant_format="qoperator")
    assert "QLinearConv" in {n.op_type for n in onnx.load(str(dst)).graph.node}
    x = np.random.default_rng(2).random((1, 3, SIZE, SIZE), dtype=np.float32)
    got = ort_session(dst).run(None, {"images": x})[0]
    with torch.inference_mode():
        ref = model(torch.from_numpy(x)).numpy()
    assert np.abs(got - ref).max() <= 0.1 * np.abs(ref).max()
