"""BiSeNet V2 (Yu et al., "BiSeNet V2: Bilateral Network with Guided Aggregation for Real-time
Semantic Segmentation", IJCV 2021), one of the comparison models of FastSegFormer.

- Detail branch: wide and shallow, 3x3 Conv-BN-ReLU stages (64, 64, 128 channels) to 1/8.
- Semantic branch: stem block (conv + max-pool paths, 16 channels, 1/4), gather-and-expansion
  layers (expansion 6; 32 at 1/8, 64 at 1/16, 128 at 1/32) and a context embedding block
  (global average pool, BN, 1x1 Conv-BN-ReLU, add, 3x3 Conv-BN-ReLU).
- Bilateral guided aggregation: the detail features gated by the (upsampled) semantic ones and
  vice versa, summed, 3x3 Conv-BN-ReLU.
- Segmentation head: 3x3 Conv-BN-ReLU (1024 channels, as the FastSegFormer comparison code
  builds it), dropout 0.1, 1x1 conv; bilinear up to the input.
- Booster training (paper, Sec. 3.5): four auxiliary heads (128 channels) on the semantic
  branch at 1/4, 1/8, 1/16 and 1/32, each loss weighted 1.

Sizes as the FastSegFormer comparison builds it for 3 classes at 416x416: 3.62M parameters and
8.53 thop GMACs, both counting the booster heads (the original runs them at inference too).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from nets.blocks import ConvBNReLU
from nets.comparison.common import ComparisonModel, no_imagenet_weights, upsample


def _conv_bn(in_ch: int, out_ch: int, k: int, stride: int = 1, groups: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(in_ch, out_ch, k, stride, k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_ch),
    ]


class StemBlock(nn.Module):
    """3x3 conv (16, stride 2), then a conv path (1x1 to 8, 3x3 stride 2) beside a 3x3 max-pool,
    concatenated and fused by a 3x3 conv -> (B, 16, H/4, W/4)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = ConvBNReLU(3, 16, 3, 2)
        self.left = nn.Sequential(ConvBNReLU(16, 8, 1), ConvBNReLU(8, 16, 3, 2))
        self.right = nn.MaxPool2d(3, stride=2, padding=1)
        self.fuse = ConvBNReLU(32, 16, 3)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        return self.fuse(torch.cat([self.left(x), self.right(x)], dim=1))


class GatherExpand(nn.Module):
    """Gather-and-expansion layer: 3x3 conv, depthwise expansion (x6, stride 1 or 2 with a
    second depthwise conv), 1x1 projection; residual (a depthwise-separable shortcut at stride 2).
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, expansion: int = 6) -> None:
        super().__init__()
        mid = in_ch * expansion
        layers: list[nn.Module] = [ConvBNReLU(in_ch, in_ch, 3)]
        layers += _conv_bn(in_ch, mid, 3, stride, groups=in_ch)
        if stride == 2:
            layers += _conv_bn(mid, mid, 3, 1, groups=mid)
        layers += [nn.ReLU(inplace=True), *_conv_bn(mid, out_ch, 1)]
        self.branch = nn.Sequential(*layers)
        self.shortcut = None
        if stride == 2:
            self.shortcut = nn.Sequential(
                *_conv_bn(in_ch, in_ch, 3, 2, groups=in_ch), *_conv_bn(in_ch, out_ch, 1)
            )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x if self.shortcut is None else self.shortcut(x)
        return self.relu(self.branch(x) + shortcut)


class ContextEmbedding(nn.Module):
    """Global average pool -> BN -> 1x1 Conv-BN-ReLU, broadcast-added, 3x3 Conv-BN-ReLU."""

    def __init__(self, channels: int = 128) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(channels)
        self.conv_gap = ConvBNReLU(channels, channels, 1)
        self.conv_last = ConvBNReLU(channels, channels, 3)

    def forward(self, x: Tensor) -> Tensor:
        ctx = self.conv_gap(self.bn(x.mean(dim=(2, 3), keepdim=True)))  # (B, C, 1, 1)
        return self.conv_last(x + ctx)


class SemanticBranch(nn.Module):
    """Stem (1/4, 16) -> GE 32 (1/8) -> GE 64 (1/16) -> GE 128 x4 (1/32) -> context embedding."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = StemBlock()
        self.s3 = nn.Sequential(GatherExpand(16, 32, 2), GatherExpand(32, 32))
        self.s4 = nn.Sequential(GatherExpand(32, 64, 2), GatherExpand(64, 64))
        self.s5 = nn.Sequential(
            GatherExpand(64, 128, 2), *(GatherExpand(128, 128) for _ in range(3))
        )
        self.context = ContextEmbedding(128)

    def forward(self, x: Tensor) -> list[Tensor]:
        f2 = self.stem(x)  # (B, 16, H/4, W/4)
        f3 = self.s3(f2)  # (B, 32, H/8, W/8)
        f4 = self.s4(f3)  # (B, 64, H/16, W/16)
        f5 = self.s5(f4)  # (B, 128, H/32, W/32)
        return [f2, f3, f4, f5, self.context(f5)]


class GuidedAggregation(nn.Module):
    """Bilateral guided aggregation of the detail (1/8) and semantic (1/32) features."""

    def __init__(self, channels: int = 128) -> None:
        super().__init__()
        c = channels
        self.detail_keep = nn.Sequential(
            *_conv_bn(c, c, 3, groups=c), nn.Conv2d(c, c, 1, bias=False)
        )
        self.detail_down = nn.Sequential(
            *_conv_bn(c, c, 3, 2), nn.AvgPool2d(3, stride=2, padding=1)
        )
        self.semantic_up = nn.Sequential(*_conv_bn(c, c, 3))
        self.semantic_keep = nn.Sequential(
            *_conv_bn(c, c, 3, groups=c), nn.Conv2d(c, c, 1, bias=False)
        )
        self.conv = ConvBNReLU(c, c, 3)

    def forward(self, detail: Tensor, semantic: Tensor) -> Tensor:  # -> (B, C, H/8, W/8)
        size = detail.shape[-2:]
        low = self.detail_down(detail)  # (B, C, H/32, W/32)
        gate_low = upsample(self.semantic_keep(semantic), low.shape[-2:], align_corners=True)
        high = self.detail_keep(detail) * torch.sigmoid(
            upsample(self.semantic_up(semantic), size, align_corners=True)
        )
        low = upsample(low * torch.sigmoid(gate_low), size, align_corners=True)
        return self.conv(high + low)


class SegmentHead(nn.Sequential):
    """3x3 Conv-BN-ReLU to `mid_ch`, dropout 0.1, 1x1 conv (with bias) to classes."""

    def __init__(self, in_ch: int, mid_ch: int, num_classes: int) -> None:
        super().__init__(
            ConvBNReLU(in_ch, mid_ch, 3), nn.Dropout(0.1), nn.Conv2d(mid_ch, num_classes, 1)
        )


class BiSeNetV2(ComparisonModel):
    """BiSeNet V2; `backbone` holds the detail and semantic branches."""

    default_input_size = 416
    original_by_order = True
    aux_weights = {"boost_4": 1.0, "boost_8": 1.0, "boost_16": 1.0, "boost_32": 1.0}
    align_corners = True

    def __init__(self, num_classes: int = 4, head_channels: int = 1024) -> None:
        super().__init__(num_classes, "bisenetv2", {"head_channels": head_channels})
        self.backbone = nn.ModuleDict(
            {
                "detail": nn.Sequential(
                    ConvBNReLU(3, 64, 3, 2),
                    ConvBNReLU(64, 64, 3),
                    ConvBNReLU(64, 64, 3, 2),
                    ConvBNReLU(64, 64, 3),
                    ConvBNReLU(64, 64, 3),
                    ConvBNReLU(64, 128, 3, 2),
                    ConvBNReLU(128, 128, 3),
                    ConvBNReLU(128, 128, 3),
                ),
                "semantic": SemanticBranch(),
            }
        )
        self.aggregation = GuidedAggregation(128)
        self.head = SegmentHead(128, head_channels, num_classes)
        # booster heads on the semantic branch (training only in the paper)
        self.aux_heads = nn.ModuleDict(
            {
                "boost_4": SegmentHead(16, 128, num_classes),
                "boost_8": SegmentHead(32, 128, num_classes),
                "boost_16": SegmentHead(64, 128, num_classes),
                "boost_32": SegmentHead(128, 128, num_classes),
            }
        )

    def _forward(self, x: Tensor, with_aux: bool) -> tuple[Tensor, dict, list[Tensor]]:
        detail = self.backbone["detail"](x)  # (B, 128, H/8, W/8)
        f2, f3, f4, f5, semantic = self.backbone["semantic"](x)  # semantic: (B, 128, H/32, W/32)
        fused = self.aggregation(detail, semantic)  # (B, 128, H/8, W/8)
        logits = self.head(fused)  # (B, K, H/8, W/8)
        aux = {}
        if with_aux:
            for (name, head), feat in zip(self.aux_heads.items(), (f2, f3, f4, f5), strict=True):
                aux[name] = head(feat)
        return logits, aux, [detail, semantic, fused]


def bisenetv2(num_classes: int = 4, pretrained: bool | str | Path | None = None) -> BiSeNetV2:
    """BiSeNet V2 as the FastSegFormer comparison builds it (trained from scratch, 416x416)."""
    no_imagenet_weights("bisenetv2", pretrained)
    return BiSeNetV2(num_classes)
