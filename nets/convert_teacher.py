"""Key conversion for the Swin-T-Att-UNet teacher of FastSegFormer (Cai et al., 2024).

Two layouts come in:

- the original full-model layout (the reference cases and the authors' released teacher):
  `common_backbone.*` (Microsoft's Swin layout, where a stage's patch merging sits at the *end*
  of stage i as `layers.i.downsample`), `bottle.*`, `up4.*`, `Att4.*`, `change1.*`,
  `convert1.*`, `conv4.*`, ..., `cnn_up.*`, `final_up_conv.*`;
- ImageNet Swin-T checkpoints for the backbone alone: Microsoft's
  `swin_tiny_patch4_window7_224.pth` (`{"model": ...}`, same Swin layout as above) or timm's
  (`layers.i+1.downsample`, `head.fc.*`).

Ours (`nets/swin_att_unet.py`): `backbone.*` in timm's layout (the merging at the *start* of
stage i+1: `layers.{i+1}.downsample`), and one `decoder{4,3,2,1}` module per U-Net level holding
that level's up-conv, skip projection, attention gate, gated-skip projection and double conv.
The index buffers `relative_position_index` (and Microsoft's `attn_mask`) are not stored by
timm, which computes them; they are dropped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from torch import Tensor

# Original decoder prefix -> ours. Level i of the decoder uses up{i}, Att{i}, conv{i}; the skip
# projections are numbered from the deep end (change1 at level 4) and so are the gated-skip
# projections (convert1 at level 4).
_DECODER_PREFIXES: dict[str, str] = {
    "bottle.": "bottleneck.",
    "cnn_up.1.conv.": "shallow.1.",
    "final_up_conv.": "head.",
}
for _level in (4, 3, 2, 1):
    _DECODER_PREFIXES[f"up{_level}.up."] = f"decoder{_level}.up."
    _DECODER_PREFIXES[f"Att{_level}.W_g."] = f"decoder{_level}.gate.w_g."
    _DECODER_PREFIXES[f"Att{_level}.W_x."] = f"decoder{_level}.gate.w_x."
    _DECODER_PREFIXES[f"Att{_level}.psi."] = f"decoder{_level}.gate.psi."
    _DECODER_PREFIXES[f"convert{5 - _level}."] = f"decoder{_level}.proj."
    _DECODER_PREFIXES[f"conv{_level}.conv."] = f"decoder{_level}.fuse."
    if _level > 1:
        _DECODER_PREFIXES[f"change{5 - _level}."] = f"decoder{_level}.skip."

_SKIPPED_BUFFERS = ("relative_position_index", "attn_mask")


def convert_swin_keys(state_dict: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], list[str], str]:
    """Swin-T backbone keys (no prefix) in Microsoft's or timm's layout -> timm's layout.

    Returns (converted, skipped keys, layout "original" (Microsoft's) or "timm"). Index buffers
    and any classifier (`head.*`) are skipped; the final `norm.*` is kept.
    """
    microsoft_layout = "layers.0.downsample.reduction.weight" in state_dict
    out: dict[str, Tensor] = {}
    skipped: list[str] = []
    for key, value in state_dict.items():
        if key.endswith(_SKIPPED_BUFFERS) or key.startswith("head."):
            skipped.append(key)
            continue
        if microsoft_layout:
            key = re.sub(
                r"^layers\.(\d+)\.downsample", lambda m: f"layers.{int(m[1]) + 1}.downsample", key
            )
        out[key] = value
    return out, skipped, "original" if microsoft_layout else "timm"


def convert_original_teacher(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Original full-model layout -> ours. Raises KeyError naming any key it cannot place."""
    backbone = {
        k[len("common_backbone.") :]: v
        for k, v in state_dict.items()
        if k.startswith("common_backbone.")
    }
    converted, _, _ = convert_swin_keys(backbone)  # skips only the index buffers
    out = {f"backbone.{k}": v for k, v in converted.items()}
    unknown = []
    for key, value in state_dict.items():
        if key.startswith("common_backbone."):
            continue
        prefix = next((p for p in _DECODER_PREFIXES if key.startswith(p)), None)
        if prefix is None:
            unknown.append(key)
            continue
        out[_DECODER_PREFIXES[prefix] + key[len(prefix) :]] = value
    if unknown:
        raise KeyError(
            f"{len(unknown)} key(s) of the original Swin-T-Att-UNet layout have no place in "
            f"SwinTAttUNet: {unknown[:10]}; is this checkpoint a swinTS_Att_Unet with backbone "
            "'swin_T_224'?"
        )
    return out


def convert_swin_imagenet(
    state_dict: Mapping[str, Tensor],
) -> tuple[dict[str, Tensor], list[str], str]:
    """ImageNet Swin-T checkpoint (Microsoft or timm layout, optionally under "model" or
    "state_dict") -> (our keys under `backbone.`, skipped keys, layout)."""
    for wrapper in ("model", "state_dict"):
        inner = state_dict.get(wrapper)
        if isinstance(inner, Mapping):
            state_dict = inner
    converted, skipped, layout = convert_swin_keys(state_dict)
    return {f"backbone.{k}": v for k, v in converted.items()}, skipped, layout
