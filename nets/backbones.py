"""Backbones of FastSegFormer: timm's PoolFormer and EfficientFormerV2 with per-stage norms.

FastSegFormer-P uses PoolFormer-S12 (Yu et al., "MetaFormer is actually what you need for
vision", CVPR 2022) and FastSegFormer-E uses EfficientFormerV2-S0 (Li et al., "Rethinking
vision transformers for MobileNet size and speed", ICCV 2023). Both come from timm with
``features_only=True``; on top, as the original FastSegFormer does, every stage output that is
handed on goes through a norm layer (GroupNorm(1, C) for PoolFormer, BatchNorm for
EfficientFormerV2). Those norms are ours (timm has no equivalent).

Contract: ``Backbone(x)`` -> list of 4 maps at strides 4/8/16/32, channels in ``.channels``.

This module also converts backbone weights from the layouts they are published in (the
original PoolFormer / EfficientFormerV2 repositories, timm) to ours; see
``convert_backbone_state_dict``.
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path

import timm
import torch
from timm.models.metaformer import checkpoint_filter_fn
from torch import Tensor, nn

# Where every pretrained (ImageNet) weights file is looked up: the repository's model_data/
# (model_data/README.md lists the files). The one definition: the model files import it.
MODEL_DATA = Path(__file__).resolve().parents[1] / "model_data"


@dataclass(frozen=True)
class BackboneSpec:
    """What we need to know about one backbone variant (its key is timm's model name)."""

    family: str  # "poolformer" | "efficientformerv2"
    fixed_input_size: int | None  # EfficientFormerV2's attention biases are sized for 224
    weights_file: str  # file name of the original ImageNet release, looked up in model_data/
    weights_source: str  # where that file comes from


_POOLFORMER_URL = "https://github.com/sail-sg/poolformer/releases (v1.0)"
_EFFICIENTFORMER_URL = "https://github.com/snap-research/EfficientFormer (EfficientFormerV2)"

_PF, _EF = "poolformer", "efficientformerv2"
BACKBONES: dict[str, BackboneSpec] = {
    "poolformer_s12": BackboneSpec(_PF, None, "poolformer_s12.pth.tar", _POOLFORMER_URL),
    "poolformer_s24": BackboneSpec(_PF, None, "poolformer_s24.pth.tar", _POOLFORMER_URL),
    "poolformer_s36": BackboneSpec(_PF, None, "poolformer_s36.pth.tar", _POOLFORMER_URL),
    "efficientformerv2_s0": BackboneSpec(_EF, 224, "eformer_s0_450.pth", _EFFICIENTFORMER_URL),
    "efficientformerv2_s1": BackboneSpec(_EF, 224, "eformer_s1_650.pth", _EFFICIENTFORMER_URL),
}


def backbone_spec(name: str) -> BackboneSpec:
    """The spec of backbone `name`; ValueError listing the valid names otherwise."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}: expected one of {sorted(BACKBONES)}")
    return BACKBONES[name]


class Backbone(nn.Module):
    """timm ``features_only`` backbone + one norm per stage output.

    ``body`` is timm's FeatureListNet (keys ``stem...``/``stages_N...``), ``norms[i]`` the norm
    of stage i. Both are part of the backbone, so freezing the backbone freezes the norms,
    as in the original.
    """

    def __init__(self, name: str, timm_pretrained: bool = False) -> None:
        super().__init__()
        self.name = name
        self.spec = backbone_spec(name)
        self.body = timm.create_model(name, pretrained=timm_pretrained, features_only=True)
        self.channels: list[int] = list(self.body.feature_info.channels())
        self.strides: list[int] = list(self.body.feature_info.reduction())
        if self.spec.family == "poolformer":
            self.norms = nn.ModuleList(nn.GroupNorm(1, c) for c in self.channels)
        else:
            self.norms = nn.ModuleList(nn.BatchNorm2d(c) for c in self.channels)

    def forward(self, x: Tensor, stages: tuple[int, ...] = (0, 1, 2, 3)) -> list[Tensor | None]:
        """(B, 3, H, W) -> 4 x (B, C_i, H/s_i, W/s_i); only `stages` are normalised, the
        others are None (saves the norms nobody reads)."""
        feats = self.body(x)
        return [self.norms[i](f) if i in stages else None for i, f in enumerate(feats)]


def timm_imagenet_state_dict(name: str) -> dict[str, Tensor]:
    """ImageNet weights of backbone `name` in timm's ``features_only`` layout, downloaded by
    timm from the Hugging Face hub.

    Raises ConnectionError at once when the hub cannot be reached (rather than after
    huggingface_hub's minute of retries).
    """
    if not _hub_reachable():
        raise ConnectionError("huggingface.co cannot be reached (offline, or HF_HUB_OFFLINE set)")
    return timm.create_model(name, pretrained=True, features_only=True).state_dict()


def _hub_reachable(host: str = "huggingface.co", timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() not in ("0", "", "false"):
        return False
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError:
        return False
    return True


# --------------------------------------------------------------------------------------------
# Weight layouts
# --------------------------------------------------------------------------------------------

_OUT_NORM = re.compile(r"^norm([0246])\.(.*)$")  # the original's per-stage output norms


def _timm_full_to_features(key: str) -> str:
    """timm full-model key -> key of timm's flattened ``features_only`` wrapper."""
    key = re.sub(r"^stages\.(\d+)\.", r"stages_\1.", key)
    return re.sub(r"^stem\.conv(\d)\.", r"stem_conv\1.", key)  # EfficientFormerV2 stem


def _poolformer_original_to_timm(state: dict[str, Tensor], timm_name: str) -> dict[str, Tensor]:
    """Original PoolFormer keys (``network.N...``) -> timm full-model keys.

    Uses timm's own ``metaformer.checkpoint_filter_fn`` (the rules timm uses for the same
    files), applied against a meta-device model so nothing is allocated.
    """
    with torch.device("meta"):
        reference = timm.create_model(timm_name)
    return checkpoint_filter_fn(state, reference)


# Original EfficientFormerV2 (snap-research) names -> timm names, applied in order.
# Blocks: layer_scale_N (C,1,1) -> lsN.gamma (C,); Sequential(conv, bn) pairs -> .conv/.bn.
_EFFICIENTFORMER_RULES: list[tuple[str, str]] = [
    (r"^patch_embed\.0\.", "stem.conv1.conv."),
    (r"^patch_embed\.1\.", "stem.conv1.bn."),
    (r"^patch_embed\.3\.", "stem.conv2.conv."),
    (r"^patch_embed\.4\.", "stem.conv2.bn."),
    # downsampling embeddings between stages: network.1/3/5 -> stages.1/2/3.downsample
    (r"^network\.([135])\.(proj|conv)\.", r"downsample\1.conv.conv."),
    (r"^network\.([135])\.(norm|bn)\.", r"downsample\1.conv.bn."),
    (r"^network\.([135])\.attn\.", r"downsample\1.attn."),
    # stages: network.0/2/4/6.j -> stages.0/1/2/3.blocks.j
    (r"^network\.([0246])\.(\d+)\.", r"stage\1.blocks.\2."),
    (r"\.layer_scale_([12])$", r".ls\1.gamma"),
    (r"\.mlp\.fc1\.", ".mlp.fc1.conv."),
    (r"\.mlp\.norm1\.", ".mlp.fc1.bn."),
    (r"\.mlp\.mid\.", ".mlp.mid.conv."),
    (r"\.mlp\.mid_norm\.", ".mlp.mid.bn."),
    (r"\.mlp\.fc2\.", ".mlp.fc2.conv."),
    (r"\.mlp\.norm2\.", ".mlp.fc2.bn."),
    (r"\.q\.local\.0\.", ".q.local."),
    (r"\.q\.proj\.0\.", ".q.proj.conv."),
    (r"\.q\.proj\.1\.", ".q.proj.bn."),
    (r"\.(stride_conv|q|k|v|v_local)\.0\.", r".\1.conv."),
    (r"\.(stride_conv|q|k|v|v_local)\.1\.", r".\1.bn."),
    (r"\.proj\.1\.", ".proj.conv."),  # proj.0 is the activation in the original
    (r"\.proj\.2\.", ".proj.bn."),
]
_STAGE_OF_NETWORK = {"0": "0", "2": "1", "4": "2", "6": "3", "1": "1", "3": "2", "5": "3"}


def _efficientformer_original_to_timm(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Original EfficientFormerV2 keys -> timm full-model keys (by name; order differs)."""
    out = {}
    for key, value in state.items():
        if key.endswith("attention_bias_idxs"):
            continue  # index tables: timm computes them itself (non-persistent buffers)
        new = key
        for pattern, repl in _EFFICIENTFORMER_RULES:
            new = re.sub(pattern, repl, new)
        new = re.sub(r"^stage(\d)\.", lambda m: f"stages.{_STAGE_OF_NETWORK[m[1]]}.", new)
        new = re.sub(
            r"^downsample(\d)\.", lambda m: f"stages.{_STAGE_OF_NETWORK[m[1]]}.downsample.", new
        )
        if new.endswith(("ls1.gamma", "ls2.gamma")):
            value = value.reshape(-1)  # (C, 1, 1) -> (C,)
        out[new] = value
    return out


def detect_backbone_layout(state: dict[str, Tensor]) -> str:
    """ "original" (network.N...), "timm" (stem./stages.N.) or "timm_features" (stages_N.)."""
    keys = list(state)
    if any(k.startswith("network.") for k in keys):
        return "original"
    if any(k.startswith("stages_") for k in keys):
        return "timm_features"
    if any(k.startswith(("stages.", "stem.")) for k in keys):
        return "timm"
    return "unknown"


def convert_backbone_state_dict(
    state: dict[str, Tensor], backbone: Backbone
) -> tuple[dict[str, Tensor], list[str], str]:
    """Map a backbone checkpoint onto ``Backbone`` keys (``body.*``, ``norms.i.*``).

    Accepts the original repositories' layouts (PoolFormer ``network.N...``, EfficientFormerV2
    ``network.N...``; ImageNet files or the original FastSegFormer's ``common_backbone.*``
    with its ``norm0/2/4/6``) and timm's layouts (full model or ``features_only``).
    Returns (mapped state, keys of `state` that have no place in the backbone, layout name).
    Classifier heads and the final norm of ImageNet files land in the skipped list.
    """
    layout = detect_backbone_layout(state)
    if layout == "unknown":
        sample = ", ".join(list(state)[:5])
        raise ValueError(
            f"unrecognised {backbone.name} checkpoint layout (first keys: {sample}); expected "
            "the original repository layout (network.N...) or timm's (stem./stages.N.)"
        )
    mapped: dict[str, Tensor] = {}
    origin: dict[str, str] = {}  # our key -> key in `state`, for the skipped list
    rest = {}
    for key, value in state.items():
        m = _OUT_NORM.match(key)
        if m:
            ours = f"norms.{int(m[1]) // 2}.{m[2]}"
            mapped[ours], origin[ours] = value, key
        else:
            rest[key] = value

    if layout == "original":
        family = backbone.spec.family
        if family == "poolformer":
            # timm's filter maps key by key, in order; keep the original names beside
            converted = _poolformer_original_to_timm(rest, backbone.name)
        else:
            converted = _efficientformer_original_to_timm(rest)
        sources = [k for k in rest if not k.endswith("attention_bias_idxs")]
        pairs = zip(converted.items(), sources, strict=True)
    else:
        pairs = (((k, v), k) for k, v in rest.items())

    body_keys = backbone.body.state_dict().keys()
    skipped = [k for k in rest if k.endswith("attention_bias_idxs")]
    for (key, value), source in pairs:
        ours = _timm_full_to_features(key)
        if ours in body_keys:
            mapped["body." + ours], origin["body." + ours] = value, source
        else:
            skipped.append(source)
    return mapped, skipped, layout
