"""Swin-T backbone of the teacher, from timm, with the original's pad-then-shift window order.

Swin Transformer (Liu et al., "Swin Transformer: Hierarchical Vision Transformer using Shifted
Windows", ICCV 2021) as timm builds it (`swin_tiny_patch4_window7_224`: embed 96, depths
2/2/6/2, heads 3/6/12/24, window 7), returning four NCHW maps at strides 4/8/16/32
(96/192/384/768 channels) for the Swin-T-Att-UNet teacher of FastSegFormer (Cai et al.,
Computers and Electronics in Agriculture 217, 108604, 2024).

Why a subclass: when the token grid is not a multiple of the 7x7 window (at 512x512 the grids are
128, 64, 32 and 16), the original implementation pads the grid to a window multiple *before* the
cyclic shift and builds the shifted-window mask for the padded grid, while timm shifts first and
pads after. The two give different features, and the teacher was trained with the original order,
so `PadFirstSwinBlock` replaces only the attention step of timm's block. The original also always
shifts every second block, even when a stage's grid is no larger than the window (7x7 at 224x224,
where timm would drop the shift); `always_partition=True` keeps that. Everything else (patch
embedding, patch merging, attention, MLP, the weights' layout) is timm's.
"""

from __future__ import annotations

import timm
import torch
import torch.nn.functional as F
from timm.models.swin_transformer import (
    SwinTransformer,
    SwinTransformerBlock,
    window_partition,
    window_reverse,
)
from torch import Tensor

SWIN_T_TIMM_NAME = "swin_tiny_patch4_window7_224"
SWIN_T_CHANNELS = (96, 192, 384, 768)


class PadFirstSwinBlock(SwinTransformerBlock):
    """timm's Swin block with the original's order: pad to a window multiple, then shift.

    The shifted-window mask is built for the padded grid on every forward (its cost is tiny
    next to the attention), so one model runs at any input size.
    """

    def _attn(self, x: Tensor) -> Tensor:  # (B, H, W, C) -> (B, H, W, C)
        _, H, W, C = x.shape
        win_h, win_w = self.window_size
        pad_h = (win_h - H % win_h) % win_h
        pad_w = (win_w - W % win_w) % win_w
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))  # zeros at the right and bottom
        _, Hp, Wp, _ = x.shape  # (B, Hp, Wp, C), window multiples

        has_shift = any(self.shift_size)
        if has_shift:
            x = torch.roll(x, shifts=(-self.shift_size[0], -self.shift_size[1]), dims=(1, 2))
            mask = self.get_attn_mask(x)  # (nW, win_h*win_w, win_h*win_w) for the padded grid
        else:
            mask = None  # as in the original, padded tokens take part in unshifted windows

        windows = window_partition(x, self.window_size).view(-1, self.window_area, C)
        windows = self.attn(windows, mask=mask)  # (nW*B, win_h*win_w, C)
        x = window_reverse(windows.view(-1, win_h, win_w, C), self.window_size, Hp, Wp)

        if has_shift:
            x = torch.roll(x, shifts=self.shift_size, dims=(1, 2))
        return x[:, :H, :W, :].contiguous()


def create_swin_t(input_size: int = 512, pretrained: bool = False) -> SwinTransformer:
    """timm's Swin-T without its classifier, with `PadFirstSwinBlock` blocks.

    Keys keep timm's layout (`patch_embed.*`, `layers.{0..3}.blocks.*`,
    `layers.{1..3}.downsample.*`, `norm.*`); the final `norm`, which the original applies to the
    last stage, is kept. Inputs of any size divisible by 32 are accepted (`strict_img_size=False`);
    `input_size` is only the size timm records. `pretrained=True` asks timm for its ImageNet-1k
    weights (needs the model hub).
    """
    model = timm.create_model(
        SWIN_T_TIMM_NAME,
        pretrained=pretrained,
        num_classes=0,
        img_size=input_size,
        always_partition=True,  # shift every second block at any grid size, as the original
        strict_img_size=False,
    )
    for module in model.modules():
        if type(module) is SwinTransformerBlock:
            module.__class__ = PadFirstSwinBlock  # same state, only `_attn` differs
    return model


def swin_stage_features(model: SwinTransformer, x: Tensor) -> list[Tensor]:
    """Four NCHW stage outputs; the last one after the final LayerNorm, as the original.

    x (B, 3, H, W) -> [(B, 96, H/4, W/4), (B, 192, H/8, W/8), (B, 384, H/16, W/16),
    (B, 768, H/32, W/32)].
    """
    return model.forward_intermediates(x, norm=True, intermediates_only=True)
