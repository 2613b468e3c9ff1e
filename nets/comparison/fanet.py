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
13.82M / 23.92M parameters and 1.17 / 1.65 thop GMACs for FANet-18 / -34. That count includes
three convs the original builds but whose outputs nothing uses (`unused_parameters`, 0.74M);
we keep them, without running them. See docs/comparison_models.md.
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

    Every module has a 1x1 "up" conv (to C/2, handed to the next finer stage) and a 3x3
    "smooth" conv (to 128, used by the output), as the original builds them; `use_up` /
    `use_smooth` say which of the two this stage runs.
    """

    def __init__(self, in_ch: int, use_up: bool, use_smooth: bool, smooth_ch: int = 128) -> None:
        super().__init__()
        self.use_up, self.use_smooth = use_up, use_smooth
        self.query = ConvBNAct(in_ch, ATTENTION_CHANNELS, act=False)
        self.key = ConvBNAct(in_ch, ATTENTION_CHANNELS, act=False)
        self.value = ConvBNAct(in_ch, in_ch)
        self.out = ConvBNAct(in_ch, in_ch)
        self.up = ConvBNAct(in_ch, in_ch // 2)
        self.smooth = ConvBNAct(in_ch, smooth_ch, 3)

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
        up = self.up(x) if self.use_up else None
        smooth = self.smooth(x) if self.use_smooth else None
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
        self.fam32 = FastAttention(512, use_up=True, use_smooth=False)
        self.fam16 = FastAttention(256, use_up=True, use_smooth=True)
        self.fam8 = FastAttention(128, use_up=True, use_smooth=False)
        self.fam4 = FastAttention(64, use_up=False, use_smooth=True)
        self.classifier = nn.Sequential(
            ConvBNAct(256, 256, 3), nn.Conv2d(256, num_classes, 1, bias=False)
        )

    @property
    def unused_parameters(self) -> list[str]:
        """Parameters the original builds but whose output nothing uses (fam32's smoothing
        conv, which it computes and discards, fam8's smoothing and fam4's up conv, which it
        never calls). Kept so that checkpoints and the parameter count match the original;
        they get no gradient (DDP needs find_unused_parameters, the trainer's default)."""
        names = []
        for fam in ("fam32", "fam16", "fam8", "fam4"):
            module = getattr(self, fam)
            for part, used in (("up", module.use_up), ("smooth", module.use_smooth)):
                if not used:
                    names += [
                        f"{fam}.{part}.{n}" for n, _ in getattr(module, part).named_parameters()
                    ]
        return names

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
