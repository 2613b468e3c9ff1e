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
the model alone; ``model_from_checkpoint`` does that rebuilding.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nets import comparison
from nets.checkpoint import (
    CHECKPOINT_FORMAT,
    CheckpointError,
    is_project_checkpoint,
    load_checkpoint,
    read_checkpoint,
)
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


def model_from_checkpoint(
    checkpoint: str | Path | Mapping[str, Any],
    map_location: str | torch.device = "cpu",
    *,
    trust: bool = False,
    source: str | Path | None = None,
) -> tuple[nn.Module, dict]:
    """Rebuild the model a project checkpoint records and load its weights.

    Args:
        checkpoint: a file (read with ``nets.checkpoint.read_checkpoint``, safe unless
            `trust`) or an already read project checkpoint dict.
        map_location: device of the returned model.
        source: the file an already read dict came from, for error messages.

    Returns:
        (model in eval mode, the checkpoint dict).

    Raises:
        CheckpointError: not a project checkpoint, or its weights do not fit.
        KeyError: the recorded model name is not in ``MODELS``.
    """
    ckpt = (
        checkpoint
        if isinstance(checkpoint, Mapping)
        else read_checkpoint(checkpoint, map_location, trust=trust)
    )
    if not isinstance(checkpoint, Mapping):
        source = checkpoint
    if not is_project_checkpoint(ckpt):
        raise CheckpointError(
            f"{source or 'checkpoint'} is not a project checkpoint (no 'format': "
            f"{CHECKPOINT_FORMAT!r}); for original or ImageNet weights build the model with "
            "nets.build_model and use nets.load_checkpoint"
        )
    spec = ckpt["model"]
    model = build_model(spec["name"], spec["num_classes"], **spec.get("options", {}))
    load_checkpoint(model, ckpt, source=source)
    return model.to(map_location).eval(), dict(ckpt)


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


__all__ = ["MODELS", "build_model", "model_from_checkpoint", "set_backbone_frozen"]
