"""Context pyramids of FastSegFormer (Cai et al., 2024, Sec. 2 "Multi-scale pyramid").

Both take the stride-32 map of the global feature extractor, run four parallel branches with
C/4 channels each, concatenate them with the input (2C channels) and mix with a 1x1
Conv-BN-ReLU:

- ``PyramidPooling`` (PPM, PSPNet / Fast-SCNN style): adaptive average pools to 1, 2, 3 and
  6 cells, 1x1 Conv-BN-ReLU, bilinear upsampling back (align_corners=True).
- ``MultiScalePyramid`` (MSP, the paper's choice): Conv-BN-ReLU with kernels 1, 3, 5, 7,
  each followed by a 1x1 Conv-BN-ReLU; no pooling, so it is exportable at any input size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nets.blocks import ConvBNReLU


class PyramidPooling(nn.Module):
    """Pyramid pooling module; bins (1, 2, 3, 6)."""

    def __init__(self, in_ch: int, out_ch: int, bins: tuple[int, ...] = (1, 2, 3, 6)) -> None:
        super().__init__()
        inter = in_ch // 4
        self.bins = bins
        self.branches = nn.ModuleList(ConvBNReLU(in_ch, inter, 1) for _ in bins)
        self.out = ConvBNReLU(in_ch + inter * len(bins), out_ch, 1)

    def forward(self, x: Tensor) -> Tensor:  # (B, C, h, w) -> (B, out_ch, h, w)
        size = x.shape[-2:]
        feats = [x]
        for bin_size, branch in zip(self.bins, self.branches, strict=True):
            y = branch(F.adaptive_avg_pool2d(x, bin_size))  # (B, C/4, bin, bin)
            feats.append(F.interpolate(y, size, mode="bilinear", align_corners=True))
        return self.out(torch.cat(feats, dim=1))  # cat: (B, 2C, h, w)


class MultiScalePyramid(nn.Module):
    """Multi-scale convolution pyramid; kernels (1, 3, 5, 7)."""

    def __init__(self, in_ch: int, out_ch: int, kernels: tuple[int, ...] = (1, 3, 5, 7)) -> None:
        super().__init__()
        inter = in_ch // 4
        # Registration order (all k x k convs, then all 1x1 convs, then out) is the original's.
        self.spatial = nn.ModuleList(ConvBNReLU(in_ch, inter, k) for k in kernels)
        self.pointwise = nn.ModuleList(ConvBNReLU(inter, inter, 1) for _ in kernels)
        self.out = ConvBNReLU(in_ch + inter * len(kernels), out_ch, 1)

    def forward(self, x: Tensor) -> Tensor:  # (B, C, h, w) -> (B, out_ch, h, w)
        feats = [x] + [pw(sp(x)) for sp, pw in zip(self.spatial, self.pointwise, strict=True)]
        return self.out(torch.cat(feats, dim=1))  # cat: (B, 2C, h, w)


# pyramid name (the ``pyramid=`` model option) -> module class
PYRAMIDS: dict[str, type[nn.Module]] = {"msp": MultiScalePyramid, "ppm": PyramidPooling}


def build_pyramid(kind: str, in_ch: int, out_ch: int) -> nn.Module:
    """The pyramid ``PYRAMIDS[kind]`` from `in_ch` to `out_ch` channels; ValueError listing the
    valid names for an unknown `kind`."""
    if kind not in PYRAMIDS:
        raise ValueError(f"unknown pyramid {kind!r}: expected one of {tuple(PYRAMIDS)}")
    return PYRAMIDS[kind](in_ch, out_ch)
