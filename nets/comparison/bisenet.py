"""BiSeNet (Yu et al., "BiSeNet: Bilateral Segmentation Network for Real-time Semantic
Segmentation", ECCV 2018) with a ResNet-18 context path, one of the comparison models of
FastSegFormer.

- Spatial path: three stride-2 Conv-BN-ReLU (7x7 to 64, 3x3, 3x3) and a 1x1 Conv-BN-ReLU to
  128 channels at 1/8.
- Context path: torchvision ResNet-18; attention refinement modules (3x3 Conv-BN-ReLU to 128,
  then global pool, 1x1 conv, BN, sigmoid gate) on the 1/16 and 1/32 maps; the global context
  (global pool of the 1/32 map, 1x1 Conv-BN-ReLU) added at 1/32; each sum nearest-upsampled and
  refined by a 3x3 Conv-BN-ReLU, giving 128-channel maps at 1/16 and 1/8.
- Feature fusion module: concat (256), 1x1 Conv-BN-ReLU, channel attention (global pool, 1x1
  conv to 64, ReLU, 1x1 conv, sigmoid) applied and added back.
- Output: 3x3 Conv-BN-ReLU (256), 1x1 conv; bilinear up to the input.
- Training (paper, Sec. 3.4): two auxiliary losses on the context path outputs (1/8 and 1/16
  maps, heads 3x3 Conv-BN-ReLU to 64 + 1x1 conv), weight alpha = 1.

Sizes as the FastSegFormer comparison code builds it (4 classes, 224x224): 13.24M parameters
(without the training-only auxiliary heads) and 2.84 thop GMACs.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nets.blocks import ConvBNReLU
from nets.comparison.common import (
    ComparisonModel,
    ResNetBackboneMixin,
    resnet_stages,
    torchvision_resnet,
)


class OutputHead(nn.Sequential):
    """3x3 Conv-BN-ReLU to `mid_ch`, 1x1 conv (no bias) to the classes."""

    def __init__(self, in_ch: int, mid_ch: int, num_classes: int) -> None:
        super().__init__(
            ConvBNReLU(in_ch, mid_ch, 3), nn.Conv2d(mid_ch, num_classes, 1, bias=False)
        )


class AttentionRefinement(nn.Module):
    """3x3 Conv-BN-ReLU, then a channel gate from the global average (1x1 conv, BN, sigmoid)."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv = ConvBNReLU(in_ch, out_ch, 3)
        self.attention = nn.Sequential(
            nn.Conv2d(out_ch, out_ch, 1, bias=False), nn.BatchNorm2d(out_ch)
        )

    def forward(self, x: Tensor) -> Tensor:
        feat = self.conv(x)
        gate = torch.sigmoid(self.attention(feat.mean(dim=(2, 3), keepdim=True)))  # (B, C, 1, 1)
        return feat * gate


class ContextPath(nn.Module):
    """ResNet-18 + ARMs + global context -> (1/8 map, 1/16 map), 128 channels each."""

    def __init__(self, resnet: nn.Module) -> None:
        super().__init__()
        self.resnet = resnet
        self.arm16 = AttentionRefinement(256, 128)
        self.arm32 = AttentionRefinement(512, 128)
        self.conv_head32 = ConvBNReLU(128, 128, 3)
        self.conv_head16 = ConvBNReLU(128, 128, 3)
        self.conv_avg = ConvBNReLU(512, 128, 1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        _, f8, f16, f32 = resnet_stages(self.resnet, x)
        context = self.conv_avg(f32.mean(dim=(2, 3), keepdim=True))  # (B, 128, 1, 1)
        up32 = F.interpolate(self.arm32(f32) + context, size=f16.shape[-2:], mode="nearest")
        up32 = self.conv_head32(up32)  # (B, 128, H/16, W/16)
        up16 = F.interpolate(self.arm16(f16) + up32, size=f8.shape[-2:], mode="nearest")
        up16 = self.conv_head16(up16)  # (B, 128, H/8, W/8)
        return up16, up32


class FeatureFusion(nn.Module):
    """Concat, 1x1 Conv-BN-ReLU, squeeze-and-excitation style gate added back."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv = ConvBNReLU(in_ch, out_ch, 1)
        self.attention = nn.Sequential(
            nn.Conv2d(out_ch, out_ch // 4, 1, bias=False),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_ch // 4, out_ch, 1, bias=False),
        )

    def forward(self, spatial: Tensor, context: Tensor) -> Tensor:
        feat = self.conv(torch.cat([spatial, context], dim=1))
        gate = torch.sigmoid(self.attention(feat.mean(dim=(2, 3), keepdim=True)))
        return feat * gate + feat


class BiSeNet(ResNetBackboneMixin, ComparisonModel):
    """BiSeNet (ResNet-18); `backbone` is the torchvision ResNet-18 of the context path."""

    aux_weights = {"context8": 1.0, "context16": 1.0}
    align_corners = True

    def __init__(self, num_classes: int = 4) -> None:
        super().__init__(num_classes, "bisenet_r18")
        self.resnet_depth = 18
        self.context_path = ContextPath(torchvision_resnet(18))
        self.spatial_path = nn.Sequential(
            ConvBNReLU(3, 64, 7, 2),
            ConvBNReLU(64, 64, 3, 2),
            ConvBNReLU(64, 64, 3, 2),
            ConvBNReLU(64, 128, 1),
        )
        self.fusion = FeatureFusion(256, 256)
        self.head = OutputHead(256, 256, num_classes)
        # training-only heads of the paper's auxiliary losses
        self.aux_heads = nn.ModuleDict(
            {
                "context8": OutputHead(128, 64, num_classes),
                "context16": OutputHead(128, 64, num_classes),
            }
        )

    @property
    def backbone(self) -> nn.Module:
        return self.context_path.resnet

    def convert_backbone_state_dict(self, state: dict) -> tuple[dict, list[str], str]:
        converted, skipped, layout = super().convert_backbone_state_dict(state)
        prefix = "context_path.resnet."
        return {prefix + k[len("backbone.") :]: v for k, v in converted.items()}, skipped, layout

    def _forward(self, x: Tensor, with_aux: bool) -> tuple[Tensor, dict, list[Tensor]]:
        spatial = self.spatial_path(x)  # (B, 128, H/8, W/8)
        context8, context16 = self.context_path(x)  # (B, 128, H/8 | H/16, ...)
        fused = self.fusion(spatial, context8)  # (B, 256, H/8, W/8)
        logits = self.head(fused)
        aux = {}
        if with_aux:
            aux = {
                "context8": self.aux_heads["context8"](context8),
                "context16": self.aux_heads["context16"](context16),
            }
        return logits, aux, [spatial, context8, context16, fused]


def bisenet_r18(num_classes: int = 4, pretrained: bool | str | Path | None = None) -> BiSeNet:
    """BiSeNet (ResNet-18); pretrained=True loads torchvision's ResNet-18 ImageNet weights."""
    model = BiSeNet(num_classes)
    if pretrained:
        model.load_pretrained(pretrained)
    return model
