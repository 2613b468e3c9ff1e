"""ENet (Paszke et al., "ENet: A Deep Neural Network Architecture for Real-Time Semantic
Segmentation", arXiv:1606.02147, 2016), one of the comparison models of FastSegFormer.

Initial block (3x3 stride-2 conv beside a 2x2 max-pool, concatenated to 16 channels), then
ResNet-like bottlenecks: stage 1 (downsample to 64 channels, 4 regular), stages 2 and 3 at 128
channels with dilations 2/4/8/16 and asymmetric 5x1/1x5 convs, and a small decoder (stages 4-5)
that max-unpools with the encoder's pooling indices, ending in a stride-2 full convolution to
the classes. PReLU in the encoder, ReLU in the decoder, spatial dropout 0.01 (stage 1) / 0.1.
Sizes as the FastSegFormer comparison code builds it (0.36M parameters, 0.46 thop GMACs at
224x224, 4 classes). Trained from scratch (no ImageNet backbone).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nets.comparison.common import ComparisonModel, no_imagenet_weights


def _act(channels: int, prelu: bool) -> nn.Module:
    return nn.PReLU(channels) if prelu else nn.ReLU(inplace=True)


class InitialBlock(nn.Module):
    """3x3 stride-2 conv to 13 channels beside a 2x2 max-pool of the RGB input -> 16 channels."""

    def __init__(self, in_ch: int = 3, out_ch: int = 16) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch - in_ch, 3, stride=2, padding=1)
        self.pool = nn.MaxPool2d(2, stride=2)
        self.bn = nn.BatchNorm2d(out_ch)
        self.act = nn.PReLU(out_ch)

    def forward(self, x: Tensor) -> Tensor:  # (B, 3, H, W) -> (B, 16, H/2, W/2)
        return self.act(self.bn(torch.cat([self.pool(x), self.conv(x)], dim=1)))


class Bottleneck(nn.Module):
    """ENet bottleneck: 1x1 projection (in/4) -> main conv -> 1x1 expansion, BN + activation
    after each, spatial dropout, added to the main branch, activation.

    kind: "regular" (3x3, optionally dilated), "asymmetric" (1x5 then 5x1), "down" (2x2 stride-2
    projection; main branch max-pools with indices and zero-pads the channels) or "up" (3x3
    transposed stride-2 conv; main branch 1x1 conv + BN then max-unpools with the indices).
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int | None = None,
        kind: str = "regular",
        dilation: int = 1,
        dropout: float = 0.1,
        prelu: bool = True,
    ) -> None:
        super().__init__()
        out_ch = out_ch or in_ch
        mid = in_ch // 4
        self.kind = kind
        self.extra_channels = out_ch - in_ch
        if kind == "down":
            self.pool = nn.MaxPool2d(2, stride=2, return_indices=True)
            proj = nn.Conv2d(in_ch, mid, 2, stride=2, bias=False)
        else:
            proj = nn.Conv2d(in_ch, mid, 1, bias=False)
        if kind == "up":
            self.main_conv = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, bias=False), nn.BatchNorm2d(out_ch)
            )
            conv = nn.ConvTranspose2d(
                mid, mid, 3, stride=2, padding=1, output_padding=1, bias=False
            )
        elif kind == "asymmetric":
            conv = nn.Sequential(
                nn.Conv2d(mid, mid, (1, 5), padding=(0, 2)),
                nn.BatchNorm2d(mid),
                _act(1, prelu),
                nn.Conv2d(mid, mid, (5, 1), padding=(2, 0)),
            )
        else:
            conv = nn.Conv2d(mid, mid, 3, padding=dilation, dilation=dilation, bias=False)
        self.branch = nn.Sequential(
            proj,
            nn.BatchNorm2d(mid),
            _act(1, prelu),
            conv,
            nn.BatchNorm2d(mid),
            _act(1, prelu),
            nn.Conv2d(mid, out_ch, 1, bias=False),
            nn.BatchNorm2d(out_ch),
            _act(1, prelu),
            nn.Dropout2d(dropout),
        )
        self.out_act = _act(1, prelu)

    def forward(self, x: Tensor, indices: Tensor | None = None) -> Tensor | tuple[Tensor, Tensor]:
        main = x
        if self.kind == "down":
            main, indices = self.pool(x)  # (B, C_in, H/2, W/2)
            main = F.pad(main, (0, 0, 0, 0, 0, self.extra_channels))  # zero channels to C_out
        elif self.kind == "up":
            if indices is None:
                raise ValueError("an upsampling ENet bottleneck needs the encoder's pool indices")
            main = max_unpool(self.main_conv(x), indices)  # (B, C_out, 2h, 2w)
        out = self.out_act(main + self.branch(x))
        if self.kind == "down":
            return out, indices
        return out


def max_unpool(x: Tensor, indices: Tensor) -> Tensor:
    """2x2 max-unpooling: each value goes to the flat position its max-pool index recorded.

    Same result as `nn.MaxUnpool2d(2, 2)`, written as a scatter so it exports to ONNX.
    """
    b, c, h, w = x.shape  # (B, C, h, w) -> (B, C, 2h, 2w)
    out = x.new_zeros(b, c, 4 * h * w)
    out = out.scatter(2, indices.flatten(2), x.flatten(2))
    return out.view(b, c, 2 * h, 2 * w)


def _stage(channels: int, dropout: float) -> nn.Sequential:
    """Stages 2/3 of the encoder: regular, dilated 2, asymmetric, dilated 4, regular, dilated 8,
    asymmetric, dilated 16."""
    layout = [
        ("regular", 1),
        ("regular", 2),
        ("asymmetric", 1),
        ("regular", 4),
        ("regular", 1),
        ("regular", 8),
        ("asymmetric", 1),
        ("regular", 16),
    ]
    return nn.Sequential(*(Bottleneck(channels, None, k, d, dropout) for k, d in layout))


class ENet(ComparisonModel):
    """ENet; `backbone` is the encoder (initial block and stages 1-3)."""

    original_by_order = True

    def __init__(self, num_classes: int = 4) -> None:
        super().__init__(num_classes, "enet")
        self.backbone = nn.ModuleDict(
            {
                "initial": InitialBlock(3, 16),
                "down1": Bottleneck(16, 64, "down", dropout=0.01),
                "stage1": nn.Sequential(*(Bottleneck(64, dropout=0.01) for _ in range(4))),
                "down2": Bottleneck(64, 128, "down", dropout=0.1),
                # stage 2 without its downsampling bottleneck, then stage 3
                "stage2": _stage(128, 0.1),
                "stage3": _stage(128, 0.1),
            }
        )
        self.up4 = Bottleneck(128, 64, "up", prelu=False)
        self.stage4 = nn.Sequential(*(Bottleneck(64, prelu=False) for _ in range(2)))
        self.up5 = Bottleneck(64, 16, "up", prelu=False)
        self.stage5 = Bottleneck(16, prelu=False)
        self.fullconv = nn.ConvTranspose2d(
            16, num_classes, 3, stride=2, padding=1, output_padding=1, bias=False
        )

    def _forward(self, x: Tensor, with_aux: bool) -> tuple[Tensor, dict, list[Tensor]]:
        h, w = x.shape[-2:]
        # three stride-2 steps with max-unpooling: pad to a multiple of 8, crop at the end
        x = F.pad(x, (0, -w % 8, 0, -h % 8))
        enc = self.backbone
        x = enc["initial"](x)  # (B, 16, H/2, W/2)
        x, idx1 = enc["down1"](x)  # (B, 64, H/4, W/4)
        s1 = enc["stage1"](x)
        x, idx2 = enc["down2"](s1)  # (B, 128, H/8, W/8)
        s3 = enc["stage3"](enc["stage2"](x))
        x = self.stage4(self.up4(s3, idx2))  # (B, 64, H/4, W/4)
        s5 = self.stage5(self.up5(x, idx1))  # (B, 16, H/2, W/2)
        logits = self.fullconv(s5)[..., :h, :w]  # (B, K, H, W)
        return logits, {}, [s1, s3, s5]


def enet(num_classes: int = 4, pretrained: bool | str | Path | None = None) -> ENet:
    """ENet as the FastSegFormer comparison builds it (trained from scratch)."""
    no_imagenet_weights("enet", pretrained)
    return ENet(num_classes)
