"""FANet (Hu et al., "Real-time Semantic Segmentation with Fast Attention", IEEE RA-L 2021,
arXiv:2007.03815), one of the comparison models of FastSegFormer.

- Encoder: torchvision ResNet-18 / ResNet-34 with the paper's "additional spatial reduction":
  its first residual stage also has stride 2 (as in the official code, whose complexity figure,
  49 GFLOPs at 1024x2048, this reproduces), so the four stages sit at 1/8, 1/16, 1/32, 1/64.
- Fast attention module on every stage: L2-normalised query and key (1x1 conv to 32 channels)
  and a value (1x1 conv), attention computed as Q (K^T V) / n (linear in the pixel count n),
  a 1x1 conv, and a residual; the top-down path adds the upsampled coarser map, then a 1x1 conv
  (to C/2) feeds the next finer stage and a 3x3 conv (to 128) smooths the map for the output.
- Output: the 1/16 and 1/8 smoothed maps concatenated (256), 3x3 Conv-BN-LeakyReLU, 1x1 conv;
  bilinear up to the input. Heads use BN + LeakyReLU as the official code.

No auxiliary losses. Sizes as the FastSegFormer comparison code builds it (4 classes, 224x224):
13.82M / 23.92M parameters and 1.17 / 1.65 thop GMACs for FANet-18 / -34; see
docs/comparison_models.md for the small differences of this build.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nets.comparison.common import (
    ComparisonModel,
    ResNetBackboneMixin,
    resnet_stages,
    torchvision_resnet,
    upsample,
)

ATTENTION_CHANNELS = 32


class ConvBNAct(nn.Sequential):
    """Conv (no bias) -> BN -> LeakyReLU (or no activation)."""

    def __init__(self, in_ch: int, out_ch: int, k: int = 1, act: bool = True) -> None:
        layers = [nn.Conv2d(in_ch, out_ch, k, padding=k // 2, bias=False), nn.BatchNorm2d(out_ch)]
        if act:
            layers.append(nn.LeakyReLU(inplace=True))
        super().__init__(*layers)


class FastAttention(nn.Module):
    """Fast attention on one encoder stage plus its top-down fusion.

    `up_ch`: channels of the 1x1 conv handed to the next finer stage (0: none);
    `smooth_ch`: channels of the 3x3 smoothing conv used by the output (0: none).
    """

    def __init__(self, in_ch: int, up_ch: int, smooth_ch: int) -> None:
        super().__init__()
        self.query = ConvBNAct(in_ch, ATTENTION_CHANNELS, act=False)
        self.key = ConvBNAct(in_ch, ATTENTION_CHANNELS, act=False)
        self.value = ConvBNAct(in_ch, in_ch)
        self.out = ConvBNAct(in_ch, in_ch)
        self.up = ConvBNAct(in_ch, up_ch) if up_ch else None
        self.smooth = ConvBNAct(in_ch, smooth_ch, 3) if smooth_ch else None

    def attend(self, x: Tensor) -> Tensor:  # (B, C, h, w) -> (B, C, h, w)
        b, c, h, w = x.shape
        q = F.normalize(self.query(x).flatten(2), dim=1).transpose(1, 2)  # (B, n, 32)
        k = F.normalize(self.key(x).flatten(2), dim=1)  # (B, 32, n)
        v = self.value(x).flatten(2).transpose(1, 2)  # (B, n, C)
        y = q @ (k @ v) / (h * w)  # (B, n, C): cosine-similarity attention, linear in n
        return self.out(y.transpose(1, 2).reshape(b, c, h, w)) + x

    def forward(self, x: Tensor, coarser: Tensor | None) -> tuple[Tensor | None, Tensor | None]:
        x = self.attend(x)
        if coarser is not None:
            x = x + upsample(coarser, x.shape[-2:], align_corners=True)
        up = self.up(x) if self.up is not None else None
        smooth = self.smooth(x) if self.smooth is not None else None
        return up, smooth


class FANet(ResNetBackboneMixin, ComparisonModel):
    """FANet-18 / FANet-34; `backbone` is the torchvision ResNet."""

    align_corners = True

    def __init__(self, num_classes: int = 4, depth: int = 18) -> None:
        super().__init__(num_classes, f"fanet{depth}")
        self.resnet_depth = depth
        self.backbone = torchvision_resnet(depth)
        # the paper's extra spatial reduction: stride 2 in the first residual stage
        first = self.backbone.layer1[0]
        first.conv1.stride = (2, 2)
        first.downsample = nn.Sequential(
            nn.Conv2d(64, 64, 1, stride=2, bias=False), nn.BatchNorm2d(64)
        )
        self.fam32 = FastAttention(512, 256, 128)
        self.fam16 = FastAttention(256, 128, 128)
        self.fam8 = FastAttention(128, 64, 0)
        self.fam4 = FastAttention(64, 0, 128)
        self.classifier = nn.Sequential(
            ConvBNAct(256, 256, 3), nn.Conv2d(256, num_classes, 1, bias=False)
        )

    def _forward(self, x: Tensor, with_aux: bool) -> tuple[Tensor, dict, list[Tensor]]:
        # stage names follow the ResNet's nominal strides; here they sit at 1/8 .. 1/64
        f4, f8, f16, f32 = resnet_stages(self.backbone, x)
        up32, smooth32 = self.fam32(f32, None)
        up16, smooth16 = self.fam16(f16, up32)
        up8, _ = self.fam8(f8, up16)
        _, smooth4 = self.fam4(f4, up8)  # (B, 128, H/8, W/8)
        fused = torch.cat(
            [upsample(smooth16, smooth4.shape[-2:], align_corners=True), smooth4], dim=1
        )
        logits = self.classifier(fused)  # (B, K, H/8, W/8)
        return logits, {}, [f4, f8, f16, f32, fused]


def fanet18(num_classes: int = 4, pretrained: bool | str | Path | None = None) -> FANet:
    """FANet-18; pretrained=True loads torchvision's ResNet-18 ImageNet weights."""
    model = FANet(num_classes, 18)
    if pretrained:
        model.load_pretrained(pretrained)
    return model


def fanet34(num_classes: int = 4, pretrained: bool | str | Path | None = None) -> FANet:
    """FANet-34; pretrained=True loads torchvision's ResNet-34 ImageNet weights."""
    model = FANet(num_classes, 34)
    if pretrained:
        model.load_pretrained(pretrained)
    return model
