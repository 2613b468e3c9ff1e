"""SwiftNet (Orsic et al., "In Defense of Pre-trained ImageNet Architectures for Real-time
Semantic Segmentation of Road-driving Images", CVPR 2019), single-scale SwiftNet-RN18, one of
the comparison models of FastSegFormer.

- Encoder: torchvision ResNet-18; the skip connections take each stage's last residual sum
  before its ReLU (as the official code).
- Spatial pyramid pooling on the 1/32 map: BN-ReLU-1x1 conv to 128, three average-pooled levels
  (grids 8, 4, 2 rows, columns by the aspect ratio) each BN-ReLU-1x1 conv to 42 and upsampled,
  concatenated (254) and fused by BN-ReLU-1x1 conv to 128.
- Lightweight decoder: three upsampling modules (1/16, 1/8, 1/4), each BN-ReLU-1x1 conv of the
  skip to 128 added to the bilinearly upsampled decoder map, then BN-ReLU-3x3 conv (128).
- Output: BN-ReLU-3x3 conv to the classes at 1/4; bilinear up to the input.

No auxiliary losses. Sizes as the FastSegFormer comparison code builds it: 11.79M parameters
and 2.49 thop GMACs (4 classes, 224x224); that build leaves out every BatchNorm, this one keeps
them as the paper (see docs/comparison_models.md).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nets.comparison.common import (
    ComparisonModel,
    ResNetBackboneMixin,
    adaptive_avg_pool,
    torchvision_resnet,
    upsample,
)

SPP_BN_MOMENTUM = 0.01 / 2  # the official code's momentum for the pyramid's BatchNorms


class BNReLUConv(nn.Sequential):
    """Pre-activation block: BN -> ReLU -> conv (no bias)."""

    def __init__(self, in_ch: int, out_ch: int, k: int = 3, momentum: float = 0.1) -> None:
        super().__init__(
            nn.BatchNorm2d(in_ch, momentum=momentum),
            nn.ReLU(inplace=True),
            nn.Conv2d(in_ch, out_ch, k, padding=k // 2, bias=False),
        )


class SpatialPyramidPooling(nn.Module):
    """SwiftNet's SPP: bottleneck, pooled levels on a grid following the aspect ratio, fuse."""

    def __init__(self, in_ch: int, ch: int = 128, grids: tuple[int, ...] = (8, 4, 2)) -> None:
        super().__init__()
        level_ch = ch // len(grids)
        self.grids = grids
        self.bottleneck = BNReLUConv(in_ch, ch, 1, SPP_BN_MOMENTUM)
        self.levels = nn.ModuleList(BNReLUConv(ch, level_ch, 1, SPP_BN_MOMENTUM) for _ in grids)
        self.fuse = BNReLUConv(ch + level_ch * len(grids), ch, 1, SPP_BN_MOMENTUM)

    def forward(self, x: Tensor) -> Tensor:  # (B, C_in, h, w) -> (B, ch, h, w)
        size = x.shape[-2:]
        aspect = int(size[1]) / int(size[0])  # python numbers, also while tracing for ONNX
        x = self.bottleneck(x)
        levels = [x]
        for grid, conv in zip(self.grids, self.levels, strict=True):
            pooled = adaptive_avg_pool(x, (grid, max(1, round(aspect * grid))))
            levels.append(upsample(conv(pooled), size))
        return self.fuse(torch.cat(levels, dim=1))


class UpsampleBlend(nn.Module):
    """1x1 projection of the skip, added to the upsampled coarser map, 3x3 blend conv."""

    def __init__(self, skip_ch: int, ch: int = 128) -> None:
        super().__init__()
        self.bottleneck = BNReLUConv(skip_ch, ch, 1)
        self.blend = BNReLUConv(ch, ch, 3)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        skip = self.bottleneck(skip)
        return self.blend(upsample(x, skip.shape[-2:]) + skip)


def _stage_pre_relu(layer: nn.Sequential, x: Tensor) -> tuple[Tensor, Tensor]:
    """Run a torchvision ResNet stage; return (output, last residual sum before its ReLU)."""
    for block in layer[:-1]:
        x = block(x)
    last = layer[-1]
    identity = x if last.downsample is None else last.downsample(x)
    pre = last.bn2(last.conv2(last.relu(last.bn1(last.conv1(x))))) + identity
    return F.relu(pre), pre


class SwiftNet(ResNetBackboneMixin, ComparisonModel):
    """SwiftNet-RN18 (single scale); `backbone` is the torchvision ResNet-18."""

    def __init__(self, num_classes: int = 4, channels: int = 128) -> None:
        super().__init__(num_classes, "swiftnet_rn18")
        self.resnet_depth = 18
        self.backbone = torchvision_resnet(18)
        self.spp = SpatialPyramidPooling(512, channels)
        self.up16 = UpsampleBlend(256, channels)
        self.up8 = UpsampleBlend(128, channels)
        self.up4 = UpsampleBlend(64, channels)
        self.logits = BNReLUConv(channels, num_classes, 3)

    def _forward(self, x: Tensor, with_aux: bool) -> tuple[Tensor, dict, list[Tensor]]:
        net = self.backbone
        x = net.maxpool(net.relu(net.bn1(net.conv1(x))))  # (B, 64, H/4, W/4)
        x, skip4 = _stage_pre_relu(net.layer1, x)
        x, skip8 = _stage_pre_relu(net.layer2, x)
        x, skip16 = _stage_pre_relu(net.layer3, x)
        _, pre32 = _stage_pre_relu(net.layer4, x)  # (B, 512, H/32, W/32)
        context = self.spp(pre32)  # (B, 128, H/32, W/32)
        y = self.up16(context, skip16)
        y = self.up8(y, skip8)
        y = self.up4(y, skip4)  # (B, 128, H/4, W/4)
        return self.logits(y), {}, [skip4, skip8, skip16, context, y]


def swiftnet_rn18(num_classes: int = 4, pretrained: bool | str | Path | None = None) -> SwiftNet:
    """SwiftNet-RN18; pretrained=True loads torchvision's ResNet-18 ImageNet weights."""
    model = SwiftNet(num_classes)
    if pretrained:
        model.load_pretrained(pretrained)
    return model
