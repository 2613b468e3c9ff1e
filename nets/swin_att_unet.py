"""Swin-T-Att-UNet: the teacher of FastSegFormer's knowledge distillation.

FastSegFormer (Cai et al., "FastSegFormer: A knowledge distillation-based method for real-time
semantic segmentation of surface defects in navel oranges", Computers and Electronics in
Agriculture 217, 108604, 2024) distils its students from this network, trained at 512x512.
Structure (learned from the authors' `nets/UNet/swinTS_Att_Unet.py`, written anew here):

    input (B, 3, H, W)
     |- shallow: 2x2 max-pool -> double conv 3->64 ................ s1 (B, 64, H/2, W/2)
     |- Swin-T (timm, nets/swin.py) -> f1 96 @ H/4, f2 192 @ H/8, f3 384 @ H/16,
     |                                 f4 768 @ H/32 (after the final LayerNorm)
     bottleneck: 3x3 conv 768->1024 + BN + ReLU                    (B, 1024, H/32, W/32)
     decoder level 4..1, each (attention U-Net, Oktay et al. 2018):
        d = up(x)             nearest x2 -> 3x3 conv + BN + ReLU
        s = skip(f)           1x1 conv + BN + ReLU to d's channels (level 1: s1 as is)
        e = proj(gate(d, s))  attention gate s * sigmoid(BN(psi(relu(W_g d + W_x s)))),
                              then a 1x1 conv
        out = fuse([d, e])    double 3x3 conv + BN + ReLU
        level 4: 1024 -> 512 @ H/16 (skip f3, proj 512->192)
        level 3:  512 -> 256 @ H/8  (skip f2, proj 256->96)
        level 2:  256 -> 128 @ H/4  (skip f1, proj 128->128)
        level 1:  128 ->  64 @ H/2  (skip s1, proj  64->64)
     head: bilinear x2 -> 3x3 conv 64->num_classes                  (B, K, H, W)

`forward_features(x)` runs everything up to the decoder and returns the maps distillation taps,
in the order of the reference cases (`shared/reference/README.md`): f1, f2, f3, f4, bottleneck,
level-3 output (H/8), level-1 output (H/2); `forward_head(features)` is the head.
`model(x, return_features=True)` is the two, returning `(features, logits)`.

The original's checkpoints (key layout `common_backbone.*`, `Att4.*`, `up4.*`, ...) convert with
`SwinTAttUNet.convert_original_state_dict` (`nets/convert_teacher.py`).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from nets.backbones import MODEL_DATA
from nets.checkpoint import load_checkpoint
from nets.convert_teacher import convert_original_teacher, convert_swin_imagenet
from nets.swin import SWIN_T_CHANNELS, SWIN_T_TIMM_NAME, create_swin_t, swin_stage_features

SWIN_T_IMAGENET_FILE = "swin_tiny_patch4_window7_224.pth"
SWIN_T_IMAGENET_URL = (
    "https://github.com/SwinTransformer/storage/releases/download/v1.0.0/"
    "swin_tiny_patch4_window7_224.pth"
)
SIZE_DIVISOR = 32  # the Swin stride of the last stage

# Decoder levels, deep to shallow: (level, in channels, out channels, skip channels in
# (None: the shallow path, already at out channels), gated-skip projection channels).
# The projection widths are the original's: 2*embed, embed, 2*base, base (embed 96, base 64).
_LEVELS = (
    (4, 1024, 512, 384, 192),
    (3, 512, 256, 192, 96),
    (2, 256, 128, 96, 128),
    (1, 128, 64, None, 64),
)


class DoubleConv(nn.Sequential):
    """(3x3 conv + BN + ReLU) x 2, convs with bias as in the original."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__(
            nn.Conv2d(in_ch, out_ch, 3, padding=1),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_ch, out_ch, 3, padding=1),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
        )


class UpConv(nn.Sequential):
    """Nearest x2 upsampling -> 3x3 conv + BN + ReLU."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__(
            nn.Upsample(scale_factor=2),  # nearest, as the original
            nn.Conv2d(in_ch, out_ch, 3, padding=1),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
        )


class AttentionGate(nn.Module):
    """Additive attention gate (Attention U-Net): skip * sigmoid(BN(psi(relu(W_g g + W_x s))))."""

    def __init__(self, channels: int, inner: int) -> None:
        super().__init__()
        self.w_g = nn.Sequential(nn.Conv2d(channels, inner, 1), nn.BatchNorm2d(inner))
        self.w_x = nn.Sequential(nn.Conv2d(channels, inner, 1), nn.BatchNorm2d(inner))
        self.psi = nn.Sequential(nn.Conv2d(inner, 1, 1), nn.BatchNorm2d(1), nn.Sigmoid())
        self.relu = nn.ReLU(inplace=True)

    def forward(self, gate: Tensor, skip: Tensor) -> Tensor:  # both (B, C, h, w)
        weight = self.psi(self.relu(self.w_g(gate) + self.w_x(skip)))  # (B, 1, h, w) in (0, 1)
        return skip * weight


class DecoderLevel(nn.Module):
    """One attention U-Net level: up-conv, gated skip, concat, double conv."""

    def __init__(self, in_ch: int, out_ch: int, skip_ch: int | None, proj_ch: int) -> None:
        super().__init__()
        self.up = UpConv(in_ch, out_ch)
        if skip_ch is None:
            self.skip = nn.Identity()
        else:  # 1x1 conv (with bias) + BN + ReLU
            self.skip = nn.Sequential(
                nn.Conv2d(skip_ch, out_ch, 1), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True)
            )
        self.gate = AttentionGate(out_ch, out_ch // 2)
        self.proj = nn.Conv2d(out_ch, proj_ch, 1)
        self.fuse = DoubleConv(out_ch + proj_ch, out_ch)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        up = self.up(x)  # (B, out_ch, 2h, 2w)
        gated = self.proj(self.gate(up, self.skip(skip)))  # (B, proj_ch, 2h, 2w)
        return self.fuse(torch.cat([up, gated], dim=1))  # (B, out_ch, 2h, 2w)


class SwinTAttUNet(nn.Module):
    """Swin-T backbone + attention U-Net decoder (the FastSegFormer teacher, 49.23M params).

    Args:
        num_classes: output classes (4 for Orange_Navel_1.5k).
        input_size: the size the model is built for and reports as `default_input_size`
            (512, the teacher's training size; 224 for single-resolution distillation). The
            forward runs at any height and width divisible by 32; it does not check (the
            predictor and the training configuration do).
    """

    fixed_input_size = False

    def __init__(
        self,
        num_classes: int = 4,
        input_size: int = 512,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"SwinTAttUNet: num_classes must be >= 1, got {num_classes}")
        if input_size <= 0 or input_size % SIZE_DIVISOR:
            raise ValueError(
                f"SwinTAttUNet: input_size {input_size} is not divisible by {SIZE_DIVISOR} (the "
                "Swin stride); use 512 (the teacher's training size) or 224"
            )
        self.num_classes = num_classes
        self.default_input_size = input_size
        self.build_config = {
            "name": "swin_t_att_unet",
            "num_classes": num_classes,
            "options": {"input_size": input_size},
        }

        self.backbone = create_swin_t(input_size)
        self.shallow = nn.Sequential(nn.MaxPool2d(2, 2), DoubleConv(3, 64))
        self.bottleneck = nn.Sequential(
            nn.Conv2d(SWIN_T_CHANNELS[3], 1024, 3, padding=1, bias=False),
            nn.BatchNorm2d(1024),
            nn.ReLU(inplace=True),
        )
        for level, in_ch, out_ch, skip_ch, proj_ch in _LEVELS:
            self.add_module(f"decoder{level}", DecoderLevel(in_ch, out_ch, skip_ch, proj_ch))
        self.head = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="bilinear"),  # align_corners=False
            nn.Conv2d(64, num_classes, 3, padding=1),
        )

    def forward_features(self, x: Tensor) -> list[Tensor]:
        """Backbone, bottleneck and decoder: x (B, 3, H, W), H and W divisible by 32 -> the maps
        distillation taps, ``[f1, f2, f3, f4, bottleneck, level-3 output, level-1 output]``."""
        s1 = self.shallow(x)  # (B, 64, H/2, W/2)
        f1, f2, f3, f4 = swin_stage_features(self.backbone, x)  # strides 4, 8, 16, 32
        bottleneck = self.bottleneck(f4)  # (B, 1024, H/32, W/32)
        d4 = self.decoder4(bottleneck, f3)  # (B, 512, H/16, W/16)
        d3 = self.decoder3(d4, f2)  # (B, 256, H/8, W/8)
        d2 = self.decoder2(d3, f1)  # (B, 128, H/4, W/4)
        d1 = self.decoder1(d2, s1)  # (B, 64, H/2, W/2)
        return [f1, f2, f3, f4, bottleneck, d3, d1]

    def forward_head(self, features: list[Tensor]) -> Tensor:
        """``forward_features``' maps -> logits (B, K, H, W) from the level-1 output (the last)."""
        return self.head(features[-1])

    def forward(
        self, x: Tensor, return_features: bool = False
    ) -> Tensor | tuple[list[Tensor], Tensor]:
        """x (B, 3, H, W) -> logits (B, K, H, W); with ``return_features``, (features, logits)."""
        features = self.forward_features(x)
        logits = self.forward_head(features)
        if return_features:
            return features, logits
        return logits

    def convert_original_state_dict(self, state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """The original full-model layout (`common_backbone.*`, `Att4.*`, `up4.*`, ...) -> ours."""
        return convert_original_teacher(state_dict)

    def convert_backbone_state_dict(
        self, state_dict: Mapping[str, Tensor]
    ) -> tuple[dict[str, Tensor], list[str], str]:
        """ImageNet Swin-T checkpoint (Microsoft's or timm's layout) -> (our `backbone.*` keys,
        skipped keys, layout)."""
        return convert_swin_imagenet(state_dict)

    def load_pretrained(self) -> None:
        """ImageNet weights into the backbone: model_data/swin_tiny_patch4_window7_224.pth
        (Microsoft's release or timm's layout), else timm's download from the model hub."""
        local = MODEL_DATA / SWIN_T_IMAGENET_FILE
        if local.is_file():
            report = load_checkpoint(self, local)
            unfilled = [k for k in report.missing if k.startswith("backbone.")]
            if unfilled:
                raise ValueError(
                    f"{local}: not a Swin-T checkpoint, {len(unfilled)} backbone tensors have "
                    f"no weights in it (e.g. {unfilled[:3]})"
                )
            return
        try:
            state = create_swin_t_pretrained_state()
        except Exception as err:  # offline, hub unreachable, no cache
            raise FileNotFoundError(
                f"ImageNet weights for the teacher's Swin-T not found: put {SWIN_T_IMAGENET_FILE} "
                f"(from {SWIN_T_IMAGENET_URL}) in {MODEL_DATA}/, or pass pretrained=<path> "
                f"(timm's download of {SWIN_T_TIMM_NAME} failed: {type(err).__name__}: {err})"
            ) from err
        load_checkpoint(self, state)


def create_swin_t_pretrained_state() -> Mapping[str, Tensor]:
    """State dict of timm's Swin-T with ImageNet weights (downloads through timm)."""
    return create_swin_t(pretrained=True).state_dict()
