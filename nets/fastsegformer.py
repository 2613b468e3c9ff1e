"""FastSegFormer-P / -E: the student networks of Cai et al., "FastSegFormer: A knowledge
distillation-based method for real-time semantic segmentation of surface defects in navel
oranges", Computers and Electronics in Agriculture 217, 108604 (2024).

Data flow (channels for -P / -E, input 224x224)::

    image (3, H, W)
      -> backbone (PoolFormer-S12 / EfficientFormerV2-S0, stage norms)   strides 4, 8, 16, 32
      -> stride-32 map: 1x1 ConvBNReLU to 256 / 128
      -> global feature extractor: inverted residuals (t=3)           256 / 128 -> 160
      -> pyramid (MSP or PPM)                                          512 / 320    (H/32)
      -> feature fusion with the stride-8 stage (128 / 48 ch)          512 / 320    (H/8)
      -> classifier: 2 separable ConvBNReLU, dropout, 1x1 conv     num_classes, or 32 with IRB
      -> IRB (image reconstruction branch) at H/2, x2 up, 1x1 conv     num_classes  (H)
         or, without IRB, bilinear resize to (H, W)

``forward_features(x)`` runs the backbone and the neck (reduce, global feature extractor,
pyramid, fusion) and returns the maps distillation taps there; ``forward_head(features, x)``
runs the classifier and the IRB. ``forward(x, return_features=True)`` is the two, returning
the maps in the original's ``fork_feat`` order: 4 backbone stages, pyramid output, fusion
output, [IRB output], and the logits.

The model only computes: which input sizes a deployment accepts and the memory format it runs
in (channels-last on the CPU) are decided by the predictor and the runtimes (``utils``), from
``default_input_size`` and ``fixed_input_size``. (-E runs only at 224x224: its attention
biases are sized for a 7x7 stride-32 map; every model needs sizes divisible by 32.)

Where we depart from the original code: the IRB works at half the *actual* input size (the
original hard-codes 112x112, i.e. a 224 input), so FastSegFormer-P runs at any input size
divisible by 32.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from nets import backbones
from nets.backbones import MODEL_DATA, Backbone, backbone_spec, convert_backbone_state_dict
from nets.blocks import ConvBN, ConvBNReLU, SeparableConvBNReLU, inverted_residual_group
from nets.checkpoint import load_checkpoint
from nets.pyramids import build_pyramid


@dataclass(frozen=True)
class HeadConfig:
    """Head widths of one FastSegFormer variant (the original's per-backbone table)."""

    reduced: int  # 1x1 ConvBNReLU after the last stage
    groups: tuple[tuple[int, int], ...]  # inverted-residual groups: (channels, blocks)
    expansion: int  # inverted-residual expansion t
    width: int  # pyramid / fusion / classifier width
    irb_channels: int = 32  # classifier output and IRB width when the IRB is on


HEADS = {
    "p": HeadConfig(reduced=256, groups=((256, 2),), expansion=3, width=512),
    "e": HeadConfig(reduced=128, groups=((128, 3), (160, 3)), expansion=3, width=320),
}
FAMILY_BACKBONES = {
    "p": ("poolformer_s12", "poolformer_s24", "poolformer_s36"),
    "e": ("efficientformerv2_s0", "efficientformerv2_s1"),
}


class FeatureFusion(nn.Module):
    """Fuse the pyramid output (stride 32) with the stride-8 stage.

    Low-res path: bilinear up to the stride-8 size (x4, align_corners=True), depthwise 3x3
    ConvBNReLU, 1x1 conv + BN. High-res path: 1x1 conv + BN. Sum, ReLU.
    """

    def __init__(self, high_ch: int, low_ch: int, out_ch: int) -> None:
        super().__init__()
        # registration order (dwconv, low, high) is the original's
        self.dwconv = ConvBNReLU(low_ch, out_ch, kernel_size=3, groups=low_ch)
        self.low = ConvBN(out_ch, out_ch, 1)
        self.high = ConvBN(high_ch, out_ch, 1)

    def forward(self, high: Tensor, low: Tensor) -> Tensor:
        # high: (B, C_h, H/8, W/8); low: (B, C_l, H/32, W/32) -> (B, out_ch, H/8, W/8)
        low = F.interpolate(low, high.shape[-2:], mode="bilinear", align_corners=True)
        low = self.low(self.dwconv(low))
        return F.relu(self.high(high) + low, inplace=True)


class Classifier(nn.Sequential):
    """Two depthwise-separable ConvBNReLU blocks, dropout 0.1, 1x1 conv."""

    def __init__(self, channels: int, out_ch: int) -> None:
        super().__init__(
            SeparableConvBNReLU(channels, channels),
            SeparableConvBNReLU(channels, channels),
            nn.Dropout(0.1),
            nn.Conv2d(channels, out_ch, 1),
        )


class ImageReconstructionBranch(nn.Module):
    """IRB (the original's ``cnn_branch``): refines the classifier output with the image.

    At half the input size: classifier output (bilinear) + Conv3x3-BN of the half-size image,
    separable ConvBNReLU (-> IRB feature), bilinear up to the input size, 1x1 conv to classes.
    """

    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__()
        self.image = ConvBN(3, channels, 3, bias=False)
        self.refine = SeparableConvBNReLU(channels, channels)
        # a module (as in the original) so that thop counts it, as the paper's GFLOPs do
        self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
        self.head = nn.Conv2d(channels, num_classes, 1)

    def features(self, coarse: Tensor, image: Tensor) -> Tensor:
        # coarse: (B, C, H/8, W/8); image: (B, 3, H, W) -> (B, C, H/2, W/2)
        half = (image.shape[-2] // 2, image.shape[-1] // 2)
        image = F.interpolate(image, half, mode="bilinear", align_corners=True)
        coarse = F.interpolate(coarse, half, mode="bilinear", align_corners=True)
        return self.refine(coarse + self.image(image))

    def logits(self, feature: Tensor) -> Tensor:
        # (B, C, H/2, W/2) -> (B, num_classes, H, W); H, W even (divisible by 32)
        return self.head(self.up(feature))


class FastSegFormer(nn.Module):
    """FastSegFormer with a PoolFormer (-P) or EfficientFormerV2 (-E) backbone.

    Args:
        num_classes: output classes (4 in the paper: background, sunburn, ulcer, wind scarring).
        backbone: key of ``nets.backbones.BACKBONES``.
        head: "p" or "e", the head widths (see ``HEADS``).
        pyramid: "msp" (multi-scale pyramid, the paper's) or "ppm" (pyramid pooling).
        irb: use the image reconstruction branch (the paper's final models do).
        timm_pretrained: let timm download ImageNet weights for the backbone.
    """

    default_input_size = 224

    def __init__(
        self,
        num_classes: int = 4,
        backbone: str = "poolformer_s12",
        head: str = "p",
        pyramid: str = "msp",
        irb: bool = True,
        timm_pretrained: bool = False,
    ) -> None:
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"unknown head {head!r}: expected one of {sorted(HEADS)}")
        if not isinstance(irb, bool):
            raise ValueError(f"irb must be True or False, got {irb!r}")
        # validates the name before building anything large; the throwaway modules also draw
        # from the random generator, which keeps the seeded initialisation of earlier runs
        build_pyramid(pyramid, 4, 4)
        cfg = HEADS[head]
        self.num_classes = num_classes
        self.fixed_input_size = backbone_spec(backbone).fixed_input_size is not None
        self.backbone = Backbone(backbone, timm_pretrained=timm_pretrained)
        c_high, c_low = self.backbone.channels[1], self.backbone.channels[3]

        self.reduce = ConvBNReLU(c_low, cfg.reduced, 1)
        groups, ch = [], cfg.reduced
        for out_ch, blocks in cfg.groups:
            groups.append(inverted_residual_group(ch, out_ch, blocks, cfg.expansion))
            ch = out_ch
        self.global_feature = nn.Sequential(*groups)
        self.pyramid = build_pyramid(pyramid, ch, cfg.width)
        self.fusion = FeatureFusion(c_high, cfg.width, cfg.width)
        self.classifier = Classifier(cfg.width, cfg.irb_channels if irb else num_classes)
        self.irb = ImageReconstructionBranch(cfg.irb_channels, num_classes) if irb else None

    # ---------------------------------------------------------------------------------------
    def forward_features(self, x: Tensor, all_stages: bool = True) -> list[Tensor | None]:
        """Backbone and neck: x (B, 3, H, W) in [0, 1] -> the maps distillation taps before
        the head, ``[stage 0, stage 1, stage 2, stage 3, pyramid, fusion]``.

        ``all_stages=False`` skips the norms of stages 0 and 2, which only distillation reads
        (their entries are then None); the plain forward uses it.
        """
        # 4 x (B, C_i, H/s_i, W/s_i) at strides 4, 8, 16, 32
        stages = self.backbone(x, (0, 1, 2, 3) if all_stages else (1, 3))
        y = self.global_feature(self.reduce(stages[3]))  # (B, C, H/32, W/32)
        pyramid = self.pyramid(y)  # (B, width, H/32, W/32)
        fused = self.fusion(stages[1], pyramid)  # (B, width, H/8, W/8)
        return [*stages, pyramid, fused]

    def forward_head(self, features: list[Tensor | None], x: Tensor) -> tuple[list[Tensor], Tensor]:
        """Classifier and IRB on ``forward_features(x)`` (it reads the fusion output, the last
        map) and the image x -> (the head's own distillation taps, logits (B, K, H, W)).

        The taps are ``[IRB map (B, 32, H/2, W/2)]`` with the IRB, ``[]`` without.
        """
        y = self.classifier(features[-1])  # (B, 32 or num_classes, H/8, W/8)
        if self.irb is None:
            logits = F.interpolate(y, x.shape[-2:], mode="bilinear", align_corners=True)
            return [], logits
        irb = self.irb.features(y, x)  # (B, 32, H/2, W/2)
        return [irb], self.irb.logits(irb)

    def forward(
        self, x: Tensor, return_features: bool = False
    ) -> Tensor | tuple[list[Tensor], Tensor]:
        """x: (B, 3, H, W) in [0, 1], H and W divisible by 32 (-E: 224 x 224) -> logits
        (B, num_classes, H, W); with ``return_features``, (features, logits), the features in
        the reference order: 4 stages, pyramid, fusion, [IRB]."""
        features = self.forward_features(x, all_stages=return_features)
        head_features, logits = self.forward_head(features, x)
        if return_features:
            return [*features, *head_features], logits
        return logits

    # ---------------------------------------------------------------------------------------
    # Weights
    def convert_original_state_dict(self, state: dict[str, Tensor]) -> dict[str, Tensor]:
        """Original FastSegFormer full-model keys -> ours (the authors' released layout).

        The backbone goes by name (``nets.backbones``). The head modules are registered in
        the same order as the original's (``convert_channel``, ``global_feature``, ``FFM``,
        ``classify``, ``cnn1/cnn2/cnn_up``), so their keys pair up one to one in order; every
        pair's shape is checked (class-count-dependent tensors by ``load_checkpoint``, which
        can drop them).
        """
        backbone_part = {
            k[len("common_backbone.") :]: v
            for k, v in state.items()
            if k.startswith("common_backbone.")
        }
        mapped, skipped, _ = convert_backbone_state_dict(backbone_part, self.backbone)
        skipped = [k for k in skipped if not k.endswith("attention_bias_idxs")]
        if skipped:
            raise ValueError(
                f"FastSegFormer({self.backbone.name}): original backbone keys with no place "
                f"in the model: {skipped[:5]}"
            )
        out = {"backbone." + k: v for k, v in mapped.items()}

        head_pairs = [
            ("convert_channel.", "reduce."),
            ("global_feature.bottleneck", "global_feature."),
            ("global_feature.ppm.", "pyramid."),
            ("FFM.", "fusion."),
            ("classify.", "classifier."),
            ("cnn1.", "irb.image."),
            ("cnn2.", "irb.refine."),
            ("cnn_up.", "irb.head."),
        ]
        ours = self.state_dict()
        for theirs_prefix, ours_prefix in head_pairs:
            theirs_keys = [k for k in state if k.startswith(theirs_prefix)]
            if theirs_prefix == "global_feature.bottleneck":
                theirs_keys = [k for k in theirs_keys if not k.startswith("global_feature.ppm")]
            ours_keys = [k for k in ours if k.startswith(ours_prefix)]
            if len(theirs_keys) != len(ours_keys):
                raise ValueError(
                    f"FastSegFormer({self.backbone.name}): original {theirs_prefix}* has "
                    f"{len(theirs_keys)} tensors, ours {ours_prefix}* has {len(ours_keys)}; "
                    "is the checkpoint for another pyramid / IRB setting?"
                )
            for tk, ok in zip(theirs_keys, ours_keys, strict=True):
                class_dependent = ours[ok].ndim > 0 and ours[ok].shape[0] == self.num_classes
                if state[tk].shape != ours[ok].shape and not class_dependent:
                    raise ValueError(
                        f"FastSegFormer({self.backbone.name}): original {tk} "
                        f"{tuple(state[tk].shape)} does not fit {ok} {tuple(ours[ok].shape)}"
                    )
                out[ok] = state[tk]
        return out

    def convert_backbone_state_dict(
        self, state: dict[str, Tensor]
    ) -> tuple[dict[str, Tensor], list[str], str]:
        """ImageNet backbone checkpoint (original repo or timm layout) -> our keys."""
        mapped, skipped, layout = convert_backbone_state_dict(state, self.backbone)
        return {"backbone." + k: v for k, v in mapped.items()}, skipped, layout

    def load_pretrained(self) -> None:
        """Load ImageNet weights into the backbone: model_data/<file>, else timm's download."""
        spec = self.backbone.spec
        local = MODEL_DATA / spec.weights_file
        if local.is_file():
            load_checkpoint(self, local)
            return
        try:
            state = backbones.timm_imagenet_state_dict(self.backbone.name)
        except Exception as err:  # offline, hub unreachable, no cache
            raise FileNotFoundError(
                f"ImageNet weights for {self.backbone.name} not found: put {spec.weights_file} "
                f"(from {spec.weights_source}) in {MODEL_DATA}/, or pass pretrained=<path> "
                f"(timm's download failed: {type(err).__name__}: {err})"
            ) from err
        self.backbone.body.load_state_dict(state)


def _family_model(family: str, num_classes: int, backbone: str | None, **options) -> FastSegFormer:
    backbone = backbone or FAMILY_BACKBONES[family][0]
    if backbone not in FAMILY_BACKBONES[family]:
        raise ValueError(
            f"fastsegformer_{family} takes backbone= one of {FAMILY_BACKBONES[family]}, "
            f"got {backbone!r}"
        )
    return FastSegFormer(num_classes, backbone=backbone, head=family, **options)


def fastsegformer_p(
    num_classes: int = 4, backbone: str = "poolformer_s12", pyramid: str = "msp", irb: bool = True
) -> FastSegFormer:
    """FastSegFormer-P: PoolFormer-S12 (or -S24/-S36), MSP or PPM, with or without IRB."""
    return _family_model("p", num_classes, backbone, pyramid=pyramid, irb=irb)


def fastsegformer_e(
    num_classes: int = 4,
    backbone: str = "efficientformerv2_s0",
    pyramid: str = "msp",
    irb: bool = True,
) -> FastSegFormer:
    """FastSegFormer-E: EfficientFormerV2-S0 (or -S1), MSP or PPM, with or without IRB."""
    return _family_model("e", num_classes, backbone, pyramid=pyramid, irb=irb)
