"""Convolutions padded beyond their input: explicit zeros give the same output and a right
bfloat16 weight gradient (utils/training/conv_padding.py has the oneDNN fault this avoids)."""

from __future__ import annotations

import contextlib

import pytest
import torch
import torch.nn.functional as F

from nets.pyramids import MultiScalePyramid
from utils.training.conv_padding import (
    ExplicitConvPadding,
    conv2d_padded_explicitly,
    explicit_conv_padding,
)
from utils.training.speed import SpeedPlan, TrainStep

torch.set_num_threads(1)


@pytest.mark.parametrize(
    ("kernel", "size", "kwargs"),
    [
        (7, 2, {"padding": 3}),
        (5, 1, {"padding": 2}),
        (7, (2, 9), {"padding": (3, 1)}),
        (3, 1, {"padding": 4, "dilation": 2}),
        (7, 2, {"padding": "same"}),
        (4, 1, {"padding": "same", "dilation": 3}),  # 9 zeros: 4 before, 5 after
        (7, 3, {"padding": 5, "stride": 2}),
        (5, 1, {"padding": 2, "groups": 4}),
        (3, 8, {"padding": 1}),  # padding within the input: the plain call
        (3, 4, {"padding": "valid"}),
    ],
)
@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
def test_explicit_padding_gives_the_same_convolution(kernel, size, kwargs):
    torch.manual_seed(0)
    h, w = (size, size) if isinstance(size, int) else size
    groups = kwargs.get("groups", 1)
    x = torch.randn(2, 8, h, w)
    weight = torch.randn(6 if groups == 1 else 8, 8 // groups, kernel, kernel)
    bias = torch.randn(weight.shape[0])
    expected = F.conv2d(x, weight, bias, **kwargs)
    got = conv2d_padded_explicitly(x, weight, bias, **kwargs)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    with ExplicitConvPadding():  # as nn.Conv2d calls it: positional arguments
        args = [kwargs.get(k, d) for k, d in (("stride", 1), ("padding", 0), ("dilation", 1))]
        torch.testing.assert_close(F.conv2d(x, weight, bias, *args, groups), expected)


def _dirty_free_memory(numel: int) -> None:
    """Leave NaN in freed memory, where an unwritten gradient element would read it from."""
    blocks = [torch.full((numel + i,), float("nan")) for i in range(8)]
    del blocks


@pytest.mark.parametrize(("kernel", "size"), [(7, 2), (7, 1), (5, 1)])
def test_bf16_weight_gradient_matches_float64_under_the_mode(kernel, size):
    """The case that wrote NaN into the MSP's 7x7 weights at a 64x64 input: every tap right,
    those that only meet padding exactly 0."""
    torch.manual_seed(0)
    pad = kernel // 2
    w = torch.randn(64, 256, kernel, kernel).contiguous(memory_format=torch.channels_last)
    w.requires_grad_()
    for _ in range(3):
        x = torch.randn(4, 256, size, size).contiguous(memory_format=torch.channels_last)
        _dirty_free_memory(w.numel())
        w.grad = None
        with ExplicitConvPadding(), torch.autocast("cpu", dtype=torch.bfloat16):
            y = F.conv2d(x, w, None, 1, pad)
        dy = torch.randn(y.shape)
        y.float().backward(dy)
        ref = w.detach().bfloat16().double().requires_grad_()
        F.conv2d(x.bfloat16().double(), ref, padding=pad).backward(dy.bfloat16().double())
        assert torch.isfinite(w.grad).all()
        tol = 0.02 * float(ref.grad.abs().max())
        assert float((w.grad.double() - ref.grad).abs().max()) <= tol
        reached = slice(pad - (size - 1), pad + size)
        outside = torch.ones(kernel, kernel, dtype=torch.bool)
        outside[reached, reached] = False
        assert (w.grad[:, :, outside] == 0).all()


def test_the_mode_is_on_only_for_bf16_on_the_cpu():
    assert isinstance(explicit_conv_padding("cpu", "bf16"), ExplicitConvPadding)
    for device, precision in (("cpu", "fp32"), ("cuda", "bf16"), ("cuda", "fp16")):
        assert isinstance(explicit_conv_padding(device, precision), contextlib.nullcontext)


def test_a_bf16_train_step_leaves_taps_outside_a_tiny_map_at_zero_gradient():
    """TrainStep (the loop's step) on the MSP pyramid at a 2x2 map, its 7x7 branch included."""
    torch.manual_seed(0)
    pyramid = MultiScalePyramid(256, 64).to(memory_format=torch.channels_last)
    params = list(pyramid.parameters())
    step = TrainStep(torch.optim.SGD(params, lr=0.0), params, SpeedPlan("bf16"))

    def task(images, labels):  # noqa: ANN001, ANN202
        return {"loss": pyramid(images).float().square().mean()}

    weight = pyramid.spatial[3][0].weight  # (64, 256, 7, 7)
    for _ in range(3):
        x = torch.randn(4, 256, 2, 2).contiguous(memory_format=torch.channels_last)
        _dirty_free_memory(weight.numel())
        step(task, x, None)
        assert torch.isfinite(weight.grad).all()
        assert (weight.grad[:, :, :2] == 0).all() and (weight.grad[:, :, 5:] == 0).all()
