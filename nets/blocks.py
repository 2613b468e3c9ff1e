"""Convolution blocks of the FastSegFormer head (Cai et al., Computers and Electronics in
Agriculture 217, 108604, 2024); ``ConvBNReLU`` also serves the comparison models.

The head follows Fast-SCNN's building blocks: Conv-BN-ReLU, depthwise and depthwise-separable
convolutions and MobileNetV2 inverted residuals ("linear bottlenecks"). Each block is an
``nn.Sequential`` so its parameters are numbered in the order they run; the original's key
layout converts to ours by that order (see ``nets/fastsegformer.py``).
"""

from __future__ import annotations

from torch import Tensor, nn


class ConvBNReLU(nn.Sequential):
    """Conv (no bias) -> BatchNorm -> ReLU; padding keeps the size unless given.

    The one Conv-BN-ReLU of the project: FastSegFormer's head and the comparison models
    (``nets/comparison``) both build it. Keys ``0.weight`` (conv), ``1.*`` (BatchNorm).
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel_size: int,
        stride: int = 1,
        groups: int = 1,
        dilation: int = 1,
        padding: int | None = None,
    ) -> None:
        pad = dilation * (kernel_size // 2) if padding is None else padding
        super().__init__(
            nn.Conv2d(in_ch, out_ch, kernel_size, stride, pad, dilation, groups, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
        )


class DepthwiseConvBNReLU(ConvBNReLU):
    """Depthwise 3x3 Conv-BN-ReLU (channels unchanged)."""

    def __init__(self, channels: int) -> None:
        super().__init__(channels, channels, kernel_size=3, groups=channels)


class SeparableConvBNReLU(nn.Sequential):
    """Depthwise 3x3 Conv-BN-ReLU then pointwise 1x1 Conv-BN-ReLU."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__(
            *DepthwiseConvBNReLU(in_ch),
            *ConvBNReLU(in_ch, out_ch, kernel_size=1),
        )


class ConvBN(nn.Sequential):
    """Conv -> BatchNorm, no activation (projections that are summed or added to)."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 1, bias: bool = True) -> None:
        super().__init__(
            nn.Conv2d(in_ch, out_ch, kernel_size, padding=kernel_size // 2, bias=bias),
            nn.BatchNorm2d(out_ch),
        )


class InvertedResidual(nn.Module):
    """MobileNetV2 inverted residual: 1x1 expand (t x) -> depthwise 3x3 -> 1x1 linear project.

    Stride 1 always (the global feature extractor keeps the stride-32 size); the identity
    shortcut is used when the channel count is unchanged.
    """

    def __init__(self, in_ch: int, out_ch: int, expansion: int = 3) -> None:
        super().__init__()
        hidden = in_ch * expansion
        self.use_shortcut = in_ch == out_ch
        self.block = nn.Sequential(
            ConvBNReLU(in_ch, hidden, kernel_size=1),
            DepthwiseConvBNReLU(hidden),
            ConvBN(hidden, out_ch, kernel_size=1, bias=False),
        )

    def forward(self, x: Tensor) -> Tensor:  # (B, C_in, h, w) -> (B, C_out, h, w)
        out = self.block(x)
        return x + out if self.use_shortcut else out


def inverted_residual_group(
    in_ch: int, out_ch: int, num_blocks: int, expansion: int
) -> nn.Sequential:
    """`num_blocks` inverted residuals, the first changing `in_ch` to `out_ch`."""
    blocks = [InvertedResidual(in_ch, out_ch, expansion)]
    blocks += [InvertedResidual(out_ch, out_ch, expansion) for _ in range(num_blocks - 1)]
    return nn.Sequential(*blocks)
