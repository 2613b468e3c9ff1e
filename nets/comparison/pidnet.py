"""PIDNet (Xu et al., "PIDNet: A Real-time Semantic Segmentation Network Inspired by PID
Controllers", CVPR 2023), one of the comparison models of FastSegFormer.

Three branches after a shared stem (two stride-2 3x3 convs, residual stages at 1/4 and 1/8):
- I (integral, context): residual stages to 1/16, 1/32, 1/64, then a pyramid pooling module
  (PAPPM for S/M, DAPPM for L) to 4*planes channels;
- P (proportional, detail): residual blocks kept at 1/8, fused with the I branch by
  pixel-attention-guided fusion (Pag) after I's 1/16 and 1/32 stages;
- D (derivative, boundary): light residual blocks at 1/8 adding I's features through 3x3 convs;
the Bag / Light-Bag module fuses P and I guided by sigmoid(D), then a segmentation head.

Training (paper, Sec. 3.4, and the official code): an extra semantic head on the P branch after
the first Pag (loss weight 0.4), a boundary head on the D branch (class-balanced binary
cross-entropy against label boundaries, weight 20) and a boundary-awareness loss: the main
logits' segmentation loss restricted to pixels where the boundary head is confident (> 0.8),
weight 1. The heads exist only for training; counts without them match the paper.

Sizes (m, n, planes, ppm_planes, head_planes): S (2, 3, 32, 96, 128), M (2, 3, 64, 96, 128),
L (3, 4, 64, 112, 256): 7.62M / 28.54M / 36.94M parameters and 1.15 / 4.30 / 6.63 thop GMACs at
224x224 with 4 classes. Not in timm or torchvision, so written here; module names follow the
official code so its ImageNet weights (PIDNet_{S,M,L}_ImageNet.pth.tar) load by name.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nets.comparison.common import (
    ComparisonModel,
    SegLoss,
    load_weights,
    upsample,
    weights_path,
)

IGNORE_INDEX = 255
CONFIGS = {  # m, n, planes, ppm_planes, head_planes
    "s": (2, 3, 32, 96, 128),
    "m": (2, 3, 64, 96, 128),
    "l": (3, 4, 64, 112, 256),
}
LOSS_WEIGHTS = {"p": 0.4, "boundary": 20.0, "boundary_seg": 1.0}


class BasicBlock(nn.Module):
    """Two 3x3 Conv-BN with a residual; ReLU after the sum unless `no_relu`."""

    expansion = 1

    def __init__(
        self,
        in_ch: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        no_relu: bool = False,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.no_relu = no_relu

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        out = out + (x if self.downsample is None else self.downsample(x))
        return out if self.no_relu else self.relu(out)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (stride) -> 1x1 (x2 channels) Conv-BN with a residual; no ReLU after the sum
    unless `no_relu=False`."""

    expansion = 2

    def __init__(
        self,
        in_ch: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        no_relu: bool = True,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 2, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 2)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.no_relu = no_relu

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out = out + (x if self.downsample is None else self.downsample(x))
        return out if self.no_relu else self.relu(out)


def _downsample(block: type, in_ch: int, planes: int, stride: int) -> nn.Module | None:
    if stride == 1 and in_ch == planes * block.expansion:
        return None
    return nn.Sequential(
        nn.Conv2d(in_ch, planes * block.expansion, 1, stride, bias=False),
        nn.BatchNorm2d(planes * block.expansion),
    )


def make_layer(block: type, in_ch: int, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
    """`blocks` residual blocks; the last one leaves out its final ReLU (the caller applies it)."""
    layers = [block(in_ch, planes, stride, _downsample(block, in_ch, planes, stride))]
    in_ch = planes * block.expansion
    for i in range(1, blocks):
        layers.append(block(in_ch, planes, 1, no_relu=i == blocks - 1))
    return nn.Sequential(*layers)


def make_single(block: type, in_ch: int, planes: int) -> nn.Module:
    return block(in_ch, planes, 1, _downsample(block, in_ch, planes, 1), no_relu=True)


def _bn_relu_conv(in_ch: int, out_ch: int, k: int = 1, groups: int = 1) -> list[nn.Module]:
    return [
        nn.BatchNorm2d(in_ch),
        nn.ReLU(inplace=True),
        nn.Conv2d(in_ch, out_ch, k, padding=k // 2, groups=groups, bias=False),
    ]


def _pool_branch(pool: nn.Module, in_ch: int, out_ch: int) -> nn.Sequential:
    return nn.Sequential(pool, *_bn_relu_conv(in_ch, out_ch))


class _PyramidPooling(nn.Module):
    """Shared parts of DAPPM and PAPPM: average pools with kernels 5/9/17 (strides 2/4/8) and a
    global pool, each BN-ReLU-1x1 conv; an unpooled branch; compression and shortcut."""

    def __init__(self, in_ch: int, branch_ch: int, out_ch: int) -> None:
        super().__init__()
        self.scale1 = _pool_branch(nn.AvgPool2d(5, 2, 2), in_ch, branch_ch)
        self.scale2 = _pool_branch(nn.AvgPool2d(9, 4, 4), in_ch, branch_ch)
        self.scale3 = _pool_branch(nn.AvgPool2d(17, 8, 8), in_ch, branch_ch)
        self.scale4 = _pool_branch(nn.AdaptiveAvgPool2d((1, 1)), in_ch, branch_ch)
        self.scale0 = nn.Sequential(*_bn_relu_conv(in_ch, branch_ch))
        self.compression = nn.Sequential(*_bn_relu_conv(branch_ch * 5, out_ch))
        self.shortcut = nn.Sequential(*_bn_relu_conv(in_ch, out_ch))

    def _scales(self, x: Tensor) -> list[Tensor]:
        size = x.shape[-2:]
        return [upsample(s(x), size) for s in (self.scale1, self.scale2, self.scale3, self.scale4)]


class DAPPM(_PyramidPooling):
    """Deep aggregation PPM (DDRNet): each scale adds the previous one, then a 3x3 conv."""

    def __init__(self, in_ch: int, branch_ch: int, out_ch: int) -> None:
        super().__init__(in_ch, branch_ch, out_ch)
        self.process1 = nn.Sequential(*_bn_relu_conv(branch_ch, branch_ch, 3))
        self.process2 = nn.Sequential(*_bn_relu_conv(branch_ch, branch_ch, 3))
        self.process3 = nn.Sequential(*_bn_relu_conv(branch_ch, branch_ch, 3))
        self.process4 = nn.Sequential(*_bn_relu_conv(branch_ch, branch_ch, 3))

    def forward(self, x: Tensor) -> Tensor:
        outs = [self.scale0(x)]
        processes = (self.process1, self.process2, self.process3, self.process4)
        for scaled, process in zip(self._scales(x), processes, strict=True):
            outs.append(process(scaled + outs[-1]))
        return self.compression(torch.cat(outs, dim=1)) + self.shortcut(x)


class PAPPM(_PyramidPooling):
    """Parallel aggregation PPM: every scale adds the unpooled branch, one grouped 3x3 conv."""

    def __init__(self, in_ch: int, branch_ch: int, out_ch: int) -> None:
        super().__init__(in_ch, branch_ch, out_ch)
        self.scale_process = nn.Sequential(
            *_bn_relu_conv(branch_ch * 4, branch_ch * 4, 3, groups=4)
        )

    def forward(self, x: Tensor) -> Tensor:
        base = self.scale0(x)
        scales = self.scale_process(torch.cat([s + base for s in self._scales(x)], dim=1))
        return self.compression(torch.cat([base, scales], dim=1)) + self.shortcut(x)


class PagFM(nn.Module):
    """Pixel-attention-guided fusion: P (x) takes I (y) where their embeddings agree."""

    def __init__(self, in_ch: int, mid_ch: int) -> None:
        super().__init__()
        self.f_x = nn.Sequential(nn.Conv2d(in_ch, mid_ch, 1, bias=False), nn.BatchNorm2d(mid_ch))
        self.f_y = nn.Sequential(nn.Conv2d(in_ch, mid_ch, 1, bias=False), nn.BatchNorm2d(mid_ch))

    def forward(self, x: Tensor, y: Tensor) -> Tensor:  # x (B, C, h, w), y (B, C, h', w')
        size = x.shape[-2:]
        y_q = upsample(self.f_y(y), size)
        sim = torch.sigmoid((self.f_x(x) * y_q).sum(dim=1, keepdim=True))  # (B, 1, h, w)
        return (1 - sim) * x + sim * upsample(y, size)


class LightBag(nn.Module):
    """Light boundary-attention-guided fusion (S/M): 1x1 Conv-BN on each mix, summed."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv_p = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, bias=False), nn.BatchNorm2d(out_ch))
        self.conv_i = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, bias=False), nn.BatchNorm2d(out_ch))

    def forward(self, p: Tensor, i: Tensor, d: Tensor) -> Tensor:
        att = torch.sigmoid(d)
        return self.conv_p((1 - att) * i + p) + self.conv_i(i + att * p)


class Bag(nn.Module):
    """Boundary-attention-guided fusion (L): BN-ReLU-3x3 conv of att * P + (1 - att) * I."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(*_bn_relu_conv(in_ch, out_ch, 3))

    def forward(self, p: Tensor, i: Tensor, d: Tensor) -> Tensor:
        att = torch.sigmoid(d)
        return self.conv(att * p + (1 - att) * i)


class SegmentHead(nn.Module):
    """BN-ReLU-3x3 conv to `mid_ch`, BN-ReLU-1x1 conv (with bias) to `out_ch`."""

    def __init__(self, in_ch: int, mid_ch: int, out_ch: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.conv1 = nn.Conv2d(in_ch, mid_ch, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid_ch)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(mid_ch, out_ch, 1, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(self.relu(self.bn1(x)))
        return self.conv2(self.relu(self.bn2(x)))


def boundary_target(target: Tensor, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """Boundary map of a label (B, H, W): 1 where the 3x3 neighbourhood holds another class,
    0 elsewhere, `ignore_index` at ignored pixels (ignored neighbours do not make a boundary)."""
    valid = target != ignore_index
    lab = target.float().unsqueeze(1)  # (B, 1, H, W)
    big = float(ignore_index) + 1.0
    hi = F.max_pool2d(torch.where(valid.unsqueeze(1), lab, torch.full_like(lab, -1.0)), 3, 1, 1)
    lo = -F.max_pool2d(-torch.where(valid.unsqueeze(1), lab, torch.full_like(lab, big)), 3, 1, 1)
    edge = ((hi != lab) | (lo != lab)).squeeze(1)
    out = edge.long()
    out[~valid] = ignore_index
    return out


def balanced_bce(logits: Tensor, target: Tensor, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """Class-balanced binary cross-entropy (PIDNet's boundary loss).

    logits (B, 1, H, W), target (B, H, W) in {0, 1, ignore}: boundary pixels weigh the share of
    non-boundary pixels and vice versa; the mean runs over the non-ignored pixels.
    """
    logits = logits.squeeze(1)
    valid = target != ignore_index
    pos = (target == 1) & valid
    n_valid = valid.sum().clamp(min=1)
    pos_share = pos.sum() / n_valid
    weight = torch.where(pos, 1.0 - pos_share, pos_share) * valid
    bce = F.binary_cross_entropy_with_logits(logits, pos.float(), reduction="none")
    return (weight * bce).sum() / n_valid


class PIDNet(ComparisonModel):
    """PIDNet-S/M/L; `backbone` is the whole ImageNet-pretrained trunk (all but the heads)."""

    def __init__(self, num_classes: int = 4, size: str = "s") -> None:
        if size not in CONFIGS:
            raise ValueError(f"PIDNet size {size!r} unknown, expected one of {sorted(CONFIGS)}")
        super().__init__(num_classes, f"pidnet_{size}")
        self.size = size
        m, n, planes, ppm_planes, head_planes = CONFIGS[size]
        self.conv1 = nn.Sequential(
            nn.Conv2d(3, planes, 3, 2, 1),
            nn.BatchNorm2d(planes),
            nn.ReLU(inplace=True),
            nn.Conv2d(planes, planes, 3, 2, 1),
            nn.BatchNorm2d(planes),
            nn.ReLU(inplace=True),
        )
        self.relu = nn.ReLU(inplace=True)
        # I branch
        self.layer1 = make_layer(BasicBlock, planes, planes, m)
        self.layer2 = make_layer(BasicBlock, planes, planes * 2, m, stride=2)
        self.layer3 = make_layer(BasicBlock, planes * 2, planes * 4, n, stride=2)
        self.layer4 = make_layer(BasicBlock, planes * 4, planes * 8, n, stride=2)
        self.layer5 = make_layer(Bottleneck, planes * 8, planes * 8, 2, stride=2)
        # P branch
        self.compression3 = nn.Sequential(
            nn.Conv2d(planes * 4, planes * 2, 1, bias=False), nn.BatchNorm2d(planes * 2)
        )
        self.compression4 = nn.Sequential(
            nn.Conv2d(planes * 8, planes * 2, 1, bias=False), nn.BatchNorm2d(planes * 2)
        )
        self.pag3 = PagFM(planes * 2, planes)
        self.pag4 = PagFM(planes * 2, planes)
        self.layer3_ = make_layer(BasicBlock, planes * 2, planes * 2, m)
        self.layer4_ = make_layer(BasicBlock, planes * 2, planes * 2, m)
        self.layer5_ = make_layer(Bottleneck, planes * 2, planes * 2, 1)
        # D branch
        if m == 2:
            self.layer3_d = make_single(BasicBlock, planes * 2, planes)
            self.layer4_d = make_layer(Bottleneck, planes, planes, 1)
            diff3_ch = planes
            self.spp = PAPPM(planes * 16, ppm_planes, planes * 4)
            self.dfm = LightBag(planes * 4, planes * 4)
        else:
            self.layer3_d = make_single(BasicBlock, planes * 2, planes * 2)
            self.layer4_d = make_single(BasicBlock, planes * 2, planes * 2)
            diff3_ch = planes * 2
            self.spp = DAPPM(planes * 16, ppm_planes, planes * 4)
            self.dfm = Bag(planes * 4, planes * 4)
        self.diff3 = nn.Sequential(
            nn.Conv2d(planes * 4, diff3_ch, 3, padding=1, bias=False), nn.BatchNorm2d(diff3_ch)
        )
        self.diff4 = nn.Sequential(
            nn.Conv2d(planes * 8, planes * 2, 3, padding=1, bias=False), nn.BatchNorm2d(planes * 2)
        )
        self.layer5_d = make_layer(Bottleneck, planes * 2, planes * 2, 1)
        self.final_layer = SegmentHead(planes * 4, head_planes, num_classes)
        # training-only heads: semantics of the P branch, boundaries of the D branch
        self.aux_heads = nn.ModuleDict(
            {
                "p": SegmentHead(planes * 2, head_planes, num_classes),
                "boundary": SegmentHead(planes * 2, planes, 1),
            }
        )
        for mod in self.modules():
            if isinstance(mod, nn.Conv2d):
                nn.init.kaiming_normal_(mod.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(mod, nn.BatchNorm2d):
                nn.init.ones_(mod.weight)
                nn.init.zeros_(mod.bias)

    @property
    def backbone(self) -> nn.ModuleList:
        """Every module but the heads (the part PIDNet pretrains on ImageNet)."""
        heads = {"final_layer", "aux_heads", "relu"}
        return nn.ModuleList(mod for name, mod in self.named_children() if name not in heads)

    def _forward(self, x: Tensor, with_aux: bool) -> tuple[Tensor, dict, list[Tensor]]:
        relu = self.relu
        x = self.layer1(self.conv1(x))  # (B, c, H/4, W/4)
        x = relu(self.layer2(relu(x)))  # (B, 2c, H/8, W/8)
        p = self.layer3_(x)  # P: (B, 2c, H/8, W/8)
        d = self.layer3_d(x)  # D: (B, c or 2c, H/8, W/8)
        size = d.shape[-2:]
        x = relu(self.layer3(x))  # I: (B, 4c, H/16, W/16)
        p = self.pag3(p, self.compression3(x))
        d = d + upsample(self.diff3(x), size)
        p_aux = p
        x = relu(self.layer4(x))  # I: (B, 8c, H/32, W/32)
        p = self.layer4_(relu(p))
        d = self.layer4_d(relu(d))  # (B, 2c, H/8, W/8)
        p = self.pag4(p, self.compression4(x))
        d = d + upsample(self.diff4(x), size)
        d_aux = d
        p = self.layer5_(relu(p))  # (B, 4c, H/8, W/8)
        d = self.layer5_d(relu(d))  # (B, 4c, H/8, W/8)
        i = upsample(self.spp(self.layer5(x)), size)  # (B, 4c, H/8, W/8) from 1/64
        fused = self.dfm(p, i, d)
        logits = self.final_layer(fused)  # (B, K, H/8, W/8)
        aux = {}
        if with_aux:
            aux = {"p": self.aux_heads["p"](p_aux), "boundary": self.aux_heads["boundary"](d_aux)}
            aux["main"] = logits  # the boundary-awareness loss needs the main logits
        return logits, aux, [p, i, d, fused]

    def aux_losses(self, aux: dict[str, Tensor], target: Tensor, seg_loss: SegLoss) -> dict:
        """PIDNet's extra terms: 0.4 * semantic loss of the P head, 20 * balanced BCE of the
        boundary head against label boundaries, 1 * the main logits' loss on pixels where
        sigmoid(boundary) > 0.8 (the boundary-awareness loss). Zero where a term has no pixels."""
        missing = [k for k in ("p", "boundary", "main") if k not in aux]
        if missing:
            raise KeyError(
                f"aux outputs {missing} missing (got {sorted(aux)}); call with return_aux=True"
            )
        edges = boundary_target(target)
        bd_logits = upsample(aux["boundary"], target.shape[-2:])  # (B, 1, H, W)
        confident = torch.sigmoid(bd_logits.squeeze(1)) > 0.8
        sb_target = torch.where(confident, target, torch.full_like(target, IGNORE_INDEX))
        has_boundary = bool((sb_target != IGNORE_INDEX).any())
        sb_loss = seg_loss(aux["main"], sb_target) if has_boundary else aux["main"].sum() * 0.0
        return {
            "aux_p": LOSS_WEIGHTS["p"] * seg_loss(aux["p"], target),
            "aux_boundary": LOSS_WEIGHTS["boundary"] * balanced_bce(bd_logits, edges),
            "aux_boundary_seg": LOSS_WEIGHTS["boundary_seg"] * sb_loss,
        }

    def convert_backbone_state_dict(self, state: dict) -> tuple[dict, list[str], str]:
        """Official PIDNet files (ImageNet or Cityscapes): keep what fits by name and shape."""
        own = self.state_dict()
        converted, skipped = {}, []
        for key, value in state.items():
            for old, new in _HEAD_KEYS.items():
                if key.startswith(old):
                    key = new + key[len(old) :]
            if key in own and own[key].shape == value.shape:
                converted[key] = value
            else:
                skipped.append(key)
        return converted, skipped, "official-pidnet"

    def load_pretrained(self, pretrained: bool | str | Path = True) -> None:
        """Official ImageNet weights from model_data/PIDNet_{S,M,L}_ImageNet.pth.tar (no download:
        the authors publish them on Google Drive, see docs/comparison_models.md)."""
        size = self.size
        path = weights_path(pretrained, f"PIDNet_{size.upper()}_ImageNet.pth.tar", url=None)
        if path is None:
            return
        converted, _, _ = self.convert_backbone_state_dict(load_weights(path))
        if not converted:
            raise ValueError(f"{path}: no tensor fits PIDNet-{size.upper()} by name and shape")
        self.load_state_dict(converted, strict=False)


# official key names of the training heads -> ours
_HEAD_KEYS = {"seghead_p.": "aux_heads.p.", "seghead_d.": "aux_heads.boundary."}


def _build(size: str, num_classes: int, pretrained: bool | str | Path | None) -> PIDNet:
    model = PIDNet(num_classes, size)
    if pretrained:
        model.load_pretrained(pretrained)
    return model


def pidnet_s(num_classes: int = 4, pretrained: bool | str | Path | None = None) -> PIDNet:
    """PIDNet-S; pretrained=True loads model_data/PIDNet_S_ImageNet.pth.tar (official release)."""
    return _build("s", num_classes, pretrained)


def pidnet_m(num_classes: int = 4, pretrained: bool | str | Path | None = None) -> PIDNet:
    """PIDNet-M; pretrained=True loads model_data/PIDNet_M_ImageNet.pth.tar (official release)."""
    return _build("m", num_classes, pretrained)


def pidnet_l(num_classes: int = 4, pretrained: bool | str | Path | None = None) -> PIDNet:
    """PIDNet-L; pretrained=True loads model_data/PIDNet_L_ImageNet.pth.tar (official release)."""
    return _build("l", num_classes, pretrained)
