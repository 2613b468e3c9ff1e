"""Model registry: one dict of model name -> factory, and ``build_model``.

A factory is a plain function ``factory(num_classes=..., **options) -> nn.Module``. To add a
model, import its factory and add one line to ``MODELS``.

Hooks a model class may define (all optional):
- ``load_pretrained()`` (or ``load_imagenet_backbone(True)``): ImageNet weights for
  ``pretrained=True``;
- ``convert_original_state_dict(state) -> dict``: the original code's full-model layout;
- ``convert_backbone_state_dict(state) -> (dict, skipped keys, layout name)`` (or
  ``convert_imagenet_state_dict(state) -> dict``): ImageNet backbone files.

``build_model`` records what it built in ``model.build_config`` so a checkpoint can rebuild
the model alone.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from torch import nn

from nets import comparison
from nets.checkpoint import load_checkpoint
from nets.fastsegformer import fastsegformer_e, fastsegformer_p
from nets.swin_att_unet import SwinTAttUNet

MODELS: dict[str, Callable[..., nn.Module]] = {
    "fastsegformer_p": fastsegformer_p,
    "fastsegformer_e": fastsegformer_e,
    "swin_t_att_unet": SwinTAttUNet,
    "enet": comparison.enet,
    "fanet18": comparison.fanet18,
    "fanet34": comparison.fanet34,
    "fast_scnn": comparison.fast_scnn,
    "swiftnet_rn18": comparison.swiftnet_rn18,
    "bisenet_r18": comparison.bisenet_r18,
    "bisenetv2": comparison.bisenetv2,
    "pidnet_s": comparison.pidnet_s,
    "pidnet_m": comparison.pidnet_m,
    "pidnet_l": comparison.pidnet_l,
}


def build_model(
    name: str, num_classes: int = 4, pretrained: bool | str | Path | None = None, **options
) -> nn.Module:
    """Build model `name` of ``MODELS``.

    Args:
        name: registry name, e.g. "fastsegformer_p".
        num_classes: output classes.
        pretrained: None/False: random init. True: ImageNet backbone weights (model_data/ file,
            else timm's download; offline, a FileNotFoundError names the file to put in
            model_data/). A path: any checkpoint ``nets.load_checkpoint`` understands.
        **options: model options, e.g. pyramid="ppm", irb=False, backbone="poolformer_s24".

    Raises:
        KeyError: unknown name (the message lists the valid names).
    """
    if name not in MODELS:
        raise KeyError(f"unknown model {name!r}; valid names: {', '.join(sorted(MODELS))}")
    model = MODELS[name](num_classes=num_classes, **options)
    model.build_config = {"name": name, "num_classes": num_classes, "options": dict(options)}
    if pretrained is True:
        if hasattr(model, "load_pretrained"):
            model.load_pretrained()
        elif hasattr(model, "load_imagenet_backbone"):
            model.load_imagenet_backbone(True)
        else:
            raise ValueError(
                f"{name} has no ImageNet weights to fetch; pass pretrained=<checkpoint path>"
            )
    elif pretrained:
        load_checkpoint(model, pretrained)
    return model


def set_backbone_frozen(model: nn.Module, frozen: bool) -> None:
    """Stop (frozen=True) or restart gradients of ``model.backbone``.

    Like the original's freeze/unfreeze: only ``requires_grad`` changes; BatchNorm layers
    keep their train/eval mode.
    """
    backbone = getattr(model, "backbone", None)
    if backbone is None:
        raise ValueError(f"{type(model).__name__} has no backbone to freeze")
    for param in backbone.parameters():
        param.requires_grad_(not frozen)


__all__ = ["MODELS", "build_model", "set_backbone_frozen"]
