"""Convolutions padded beyond their input get their zeros explicitly in bfloat16 CPU training.

FastSegFormer (Cai et al., Computers and Electronics in Agriculture 217, 108604, 2024) mixes
its stride-32 map with 1x1, 3x3, 5x5 and 7x7 convolutions (the MSP pyramid), each padded to
keep the map's size. Below a 96x96 input that map is 2x2 or 1x1, smaller than the padding of
the 7x7 (3) or 5x5 (2) branch.

The fault. On a CPU, a bfloat16 convolution's weight gradient comes from oneDNN's
``jit_bf16:avx512_core_bf16`` backward-weights kernel (torch 2.14.1's bundled oneDNN; seen
with ``ONEDNN_VERBOSE=1``). When the vertical padding is larger than the input height, that
kernel leaves the gradient of the kernel rows that only ever meet padding unwritten: they
hold whatever the memory held before, often 0, else stale values, NaN or inf. Those taps
multiply nothing but zeros, so their true gradient is exactly 0. The forward pass, the input's
gradient, the other taps and float32 are right, and so are convolutions whose padding fits
inside the input (dilated 3x3 ones included). ``python tools/check_conv_grad.py`` shows it on
any machine. In training, Adam turns that garbage into NaN or wrong values in the weights
(``pyramid.spatial.3.0.weight``, the 7x7 branch, at a 64x64 input): a different count each
run, because it depends on what the allocator hands back.

The fix. ``explicit_conv_padding`` pads such an input with zeros itself (``F.pad``) and runs
the convolution without padding: the same sums (up to rounding order), and no padding for
oneDNN's kernel to mishandle. Only convolutions whose padding exceeds their input
change, so a 224x224 FastSegFormer step runs as before. The mode adds about 1.2 us to
each PyTorch call of the forward pass (~300 calls for FastSegFormer-P: under 0.5 ms of a step
of several hundred; ``tools/check_conv_grad.py`` measures both), and it is on only where the
fault lives: bfloat16 on the CPU.

A plain part of ``utils.training``: imports torch only.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

# the parameters of torch.conv2d (= F.conv2d) in their positional order
_CONV2D_PARAMS = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")


def _pair(value: Any) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    return int(value[0]), int(value[-1])


def padding_sides(padding: Any, weight: torch.Tensor, dilation: Any) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) zeros of a conv2d's `padding` (int, pair, 'valid', 'same')."""
    if isinstance(padding, str):
        if padding == "valid":
            return 0, 0, 0, 0
        # 'same' (stride 1): dilation * (kernel - 1) zeros per dimension, the odd one at the end
        (kh, kw), (dh, dw) = weight.shape[-2:], _pair(dilation)
        th, tw = dh * (kh - 1), dw * (kw - 1)
        return th // 2, th - th // 2, tw // 2, tw - tw // 2
    ph, pw = _pair(padding)
    return ph, ph, pw, pw


def conv2d_padded_explicitly(*args: Any, **kwargs: Any) -> torch.Tensor:
    """``torch.conv2d(*args, **kwargs)``, with the zero padding applied by ``F.pad`` first when
    it is larger than the input (the case the module docstring describes); else unchanged."""
    bound = dict(zip(_CONV2D_PARAMS, args, strict=False)) | kwargs
    x, weight = bound["input"], bound["weight"]
    top, bottom, left, right = padding_sides(
        bound.get("padding", 0), weight, bound.get("dilation", 1)
    )
    h, w = x.shape[-2:]
    if max(top, bottom) > h or max(left, right) > w:
        bound["input"] = F.pad(x, (left, right, top, bottom))
        bound["padding"] = 0
    return torch.conv2d(**bound)


class ExplicitConvPadding(TorchFunctionMode):
    """While active, every ``conv2d`` call goes through `conv2d_padded_explicitly`."""

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        if func is torch.conv2d:  # nn.Conv2d and F.conv2d both call it
            return conv2d_padded_explicitly(*args, **(kwargs or {}))
        return func(*args, **(kwargs or {}))


def explicit_conv_padding(device_type: str, precision: str) -> contextlib.AbstractContextManager:
    """The `ExplicitConvPadding` mode for a bfloat16 step on the CPU, else a no-op context."""
    if device_type == "cpu" and precision == "bf16":
        return ExplicitConvPadding()
    return contextlib.nullcontext()
