"""Fast-SCNN (Poudel et al., "Fast-SCNN: Fast Semantic Segmentation Network", BMVC 2019), one
of the comparison models of FastSegFormer.

- Learning to downsample: 3x3 Conv-BN-ReLU (32, stride 2, unpadded as the original
  comparison code), two depthwise-separable convs (48 and 64 channels, stride 2) -> 1/8.
- Global feature extractor: MobileNetV2 bottlenecks (expansion 6) 3 x 64 (stride 2), 3 x 96
  (stride 2), 3 x 128 (stride 1) -> 1/32, then a pyramid pooling module (average pools 1, 2, 3,
  6, each 1x1 Conv-BN-ReLU to C/4, upsampled and concatenated with the input, 1x1 Conv-BN-ReLU).
- Feature fusion: the 1/32 branch x4 upsampled, depthwise 3x3 conv with dilation 4 (as in the
  paper's Table 3), 1x1 conv + BN; the 1/8 branch 1x1 conv + BN; sum, ReLU.
- Classifier: two depthwise-separable convs, dropout 0.1, 1x1 conv; bilinear up to the input.
- Training (paper, Sec. 4.1): auxiliary segmentation losses on the outputs of the learning-to-
  downsample module and of the global feature extractor, weight 0.4 each.

Sizes as the FastSegFormer comparison code builds it: 1.14M parameters (without the auxiliary
heads, which only exist for training), 0.17 thop GMACs at 224x224, 4 classes.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from nets.blocks import ConvBNReLU
from nets.comparison.common import (
    ComparisonModel,
    SegHead,
    adaptive_avg_pool,
    no_imagenet_weights,
    upsample,
)


class SeparableConv(nn.Sequential):
    """Depthwise 3x3 Conv-BN-ReLU (with the stride) -> pointwise 1x1 Conv-BN-ReLU."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__(
            ConvBNReLU(in_ch, in_ch, 3, stride, groups=in_ch), ConvBNReLU(in_ch, out_ch, 1)
        )


class LinearBottleneck(nn.Module):
    """MobileNetV2 inverted residual: 1x1 expand (t x), depthwise 3x3 (stride), 1x1 linear."""

    def __init__(self, in_ch: int, out_ch: int, t: int = 6, stride: int = 1) -> None:
        super().__init__()
        hidden = in_ch * t
        self.use_shortcut = stride == 1 and in_ch == out_ch
        self.block = nn.Sequential(
            ConvBNReLU(in_ch, hidden, 1),
            ConvBNReLU(hidden, hidden, 3, stride, groups=hidden),
            nn.Conv2d(hidden, out_ch, 1, bias=False),
            nn.BatchNorm2d(out_ch),
        )

    def forward(self, x: Tensor) -> Tensor:
        out = self.block(x)
        return x + out if self.use_shortcut else out


class PyramidPooling(nn.Module):
    """Average pools to 1, 2, 3, 6 bins, 1x1 Conv-BN-ReLU to C/4, up, concat with x, fuse."""

    bins = (1, 2, 3, 6)

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.stages = nn.ModuleList(ConvBNReLU(in_ch, in_ch // 4, 1) for _ in self.bins)
        self.out = ConvBNReLU(in_ch * 2, out_ch, 1)

    def forward(self, x: Tensor) -> Tensor:  # (B, C, h, w) -> (B, out, h, w)
        size = x.shape[-2:]
        levels = [x]
        for bins, conv in zip(self.bins, self.stages, strict=True):
            levels.append(upsample(conv(adaptive_avg_pool(x, bins)), size, align_corners=True))
        return self.out(torch.cat(levels, dim=1))


def _bottlenecks(in_ch: int, out_ch: int, n: int, stride: int) -> list[nn.Module]:
    return [LinearBottleneck(in_ch, out_ch, 6, stride)] + [
        LinearBottleneck(out_ch, out_ch, 6, 1) for _ in range(n - 1)
    ]


class FeatureFusion(nn.Module):
    """Fuses the 1/8 (higher resolution) and 1/32 (global) features."""

    def __init__(self, high_ch: int, low_ch: int, out_ch: int, dilation: int = 4) -> None:
        super().__init__()
        self.low_dw = ConvBNReLU(low_ch, out_ch, 3, groups=low_ch, dilation=dilation)
        self.low_proj = nn.Sequential(nn.Conv2d(out_ch, out_ch, 1), nn.BatchNorm2d(out_ch))
        self.high_proj = nn.Sequential(nn.Conv2d(high_ch, out_ch, 1), nn.BatchNorm2d(out_ch))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, high: Tensor, low: Tensor) -> Tensor:  # (B, C, H/8, W/8)
        low = upsample(low, high.shape[-2:], align_corners=True)  # x4
        return self.relu(self.high_proj(high) + self.low_proj(self.low_dw(low)))


class FastSCNN(ComparisonModel):
    """Fast-SCNN; `backbone` is the encoder (learning to downsample + global features)."""

    aux_weights = {"downsample": 0.4, "global": 0.4}
    original_by_order = True
    align_corners = True

    def __init__(self, num_classes: int = 4, fusion_dilation: int = 4) -> None:
        super().__init__(num_classes, "fast_scnn", {"fusion_dilation": fusion_dilation})
        self.backbone = nn.ModuleDict(
            {
                "downsample": nn.Sequential(
                    # unpadded, as the original: 224 -> 111 -> 56 -> 28
                    ConvBNReLU(3, 32, 3, stride=2, padding=0),
                    SeparableConv(32, 48, 2),
                    SeparableConv(48, 64, 2),
                ),
                "global_features": nn.Sequential(
                    *_bottlenecks(64, 64, 3, 2),
                    *_bottlenecks(64, 96, 3, 2),
                    *_bottlenecks(96, 128, 3, 1),
                    PyramidPooling(128, 128),
                ),
            }
        )
        # dilation 4 as the paper's Table 3; 1 reproduces the original comparison code
        self.fusion = FeatureFusion(64, 128, 128, fusion_dilation)
        self.classifier = nn.Sequential(
            SeparableConv(128, 128),
            SeparableConv(128, 128),
            nn.Dropout(0.1),
            nn.Conv2d(128, num_classes, 1),
        )
        # training-only heads of the paper's auxiliary losses
        self.aux_heads = nn.ModuleDict(
            {"downsample": SegHead(64, 32, num_classes), "global": SegHead(128, 32, num_classes)}
        )

    def _forward(self, x: Tensor, with_aux: bool) -> tuple[Tensor, dict, list[Tensor]]:
        high = self.backbone["downsample"](x)  # (B, 64, H/8, W/8)
        low = self.backbone["global_features"](high)  # (B, 128, H/32, W/32)
        fused = self.fusion(high, low)  # (B, 128, H/8, W/8)
        logits = self.classifier(fused)  # (B, K, H/8, W/8)
        aux = {}
        if with_aux:
            aux = {
                "downsample": self.aux_heads["downsample"](high),
                "global": self.aux_heads["global"](low),
            }
        return logits, aux, [high, low, fused]


def fast_scnn(
    num_classes: int = 4, pretrained: bool | str | Path | None = None, fusion_dilation: int = 4
) -> FastSCNN:
    """Fast-SCNN as the FastSegFormer comparison builds it (trained from scratch)."""
    no_imagenet_weights("fast_scnn", pretrained)
    return FastSCNN(num_classes, fusion_dilation)
