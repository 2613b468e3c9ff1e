"""Loading weights into any registry model, whatever layout they were saved in.

``load_checkpoint(model, path_or_state_dict)`` recognises:

- **project checkpoints**: ``{"format": "fastsegformer-checkpoint/1", "model": ...,
  "state_dict": ...}`` written by training (see the team brief), loaded strictly;
- **plain state dicts of our own modules** (``model.state_dict()``), loaded strictly;
- **the original full-model layout** (``common_backbone.network.0...``, the layout of the
  checkpoints published with the FastSegFormer paper and of ``shared/reference``): converted
  by the model's ``convert_original_state_dict`` and loaded strictly;
- **ImageNet backbone checkpoints** in the original repositories' layouts (PoolFormer
  ``network.N...``; EfficientFormerV2 wrapped in ``{"model": ...}``) or timm's layout:
  converted by the model's ``convert_backbone_state_dict``; the backbone is filled and the
  report lists what was loaded and skipped (classifier heads, final norms).

A tensor whose shape does not fit raises a ``ValueError`` naming the model, the key and both
shapes. ``drop_classifier=True`` leaves out the class-count-dependent tensors instead (those
whose first dimension is ``model.num_classes`` in the model), to fine-tune on another set of
classes.

``model_from_checkpoint(path)`` rebuilds the model recorded in a project checkpoint.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

PROJECT_FORMAT = "fastsegformer-checkpoint/1"


@dataclass
class LoadReport:
    """What ``load_checkpoint`` did.

    layout: "project" | "native" | "original" | "backbone:<original|timm|timm_features>".
    loaded: model keys that received a tensor. skipped: keys of the file that were not used.
    missing: model keys left as they were (only for backbone checkpoints: the head).
    dropped: keys left out by ``drop_classifier``.
    """

    layout: str
    loaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        text = (
            f"{self.layout} layout: loaded {len(self.loaded)} tensors, skipped "
            f"{len(self.skipped)}, left {len(self.missing)} at their initial values"
        )
        if self.dropped:
            text += f", dropped {len(self.dropped)} classifier tensors"
        if self.skipped:
            shown = ", ".join(self.skipped[:8]) + (" ..." if len(self.skipped) > 8 else "")
            text += f"; skipped: {shown}"
        return text


def _model_name(model: nn.Module) -> str:
    config = getattr(model, "build_config", None)
    return config["name"] if config else type(model).__name__


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load`` with a clear error for a missing file.

    Uses ``weights_only=False`` because project checkpoints carry configs and optimiser
    state: load only files you trust.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device=str(map_location))
    return torch.load(path, map_location=map_location, weights_only=False)


def _unwrap(obj: Any) -> tuple[dict[str, Tensor], str | None]:
    """Peel containers off a loaded file: returns (state dict, "project" or None)."""
    if isinstance(obj, nn.Module):
        return obj.state_dict(), None
    if not isinstance(obj, Mapping):
        raise ValueError(f"expected a state dict or a checkpoint dict, got {type(obj).__name__}")
    if obj.get("format") == PROJECT_FORMAT:
        return dict(obj["state_dict"]), "project"
    if "format" in obj and isinstance(obj["format"], str):
        raise ValueError(
            f"unsupported checkpoint format {obj['format']!r}; expected {PROJECT_FORMAT!r}"
        )
    for wrapper in ("model", "state_dict", "model_state", "net"):  # EfficientFormerV2: "model"
        inner = obj.get(wrapper)
        if (
            isinstance(inner, Mapping)
            and inner
            and all(isinstance(v, Tensor) for v in inner.values())
        ):
            return _unwrap(inner)
    state = {k: v for k, v in obj.items() if isinstance(v, Tensor)}
    if not state:
        raise ValueError(f"no tensors found in the checkpoint (keys: {list(obj)[:8]})")
    if all(k.startswith("module.") for k in state):  # saved from DistributedDataParallel
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state, None


def _check_shapes(
    model: nn.Module, state: dict[str, Tensor], drop_classifier: bool
) -> tuple[dict[str, Tensor], list[str]]:
    """Shape check against the model; returns (state without dropped keys, dropped keys)."""
    own = model.state_dict()
    num_classes = getattr(model, "num_classes", None)
    kept, dropped = {}, []
    for key, value in state.items():
        if key in own and own[key].shape != value.shape:
            target = own[key]
            if drop_classifier and target.ndim >= 1 and target.shape[0] == num_classes:
                dropped.append(key)
                continue
            hint = (
                " (a different number of classes? pass drop_classifier=True to leave the "
                "classifier out)"
                if target.ndim >= 1 and target.shape[0] == num_classes
                else ""
            )
            raise ValueError(
                f"{_model_name(model)}: {key} has shape {tuple(value.shape)} in the checkpoint "
                f"but {tuple(target.shape)} in the model{hint}"
            )
        kept[key] = value
    return kept, dropped


def _load(
    model: nn.Module, state: dict[str, Tensor], layout: str, strict: bool, drop: bool
) -> LoadReport:
    state, dropped = _check_shapes(model, state, drop)
    own = model.state_dict()
    unexpected = [k for k in state if k not in own]
    missing = [k for k in own if k not in state and k not in dropped]
    # BatchNorm step counters are not weights; files written without them still load
    missing_weights = [k for k in missing if not k.endswith("num_batches_tracked")]
    if strict and (unexpected or missing_weights):
        raise ValueError(
            f"{_model_name(model)}: {layout} checkpoint does not match the model: "
            f"{len(missing_weights)} model keys missing (e.g. {missing_weights[:3]}), "
            f"{len(unexpected)} "
            f"unexpected keys (e.g. {unexpected[:3]})"
        )
    usable = {k: v for k, v in state.items() if k in own}
    if not usable:
        raise ValueError(
            f"{_model_name(model)}: no tensor of the {layout} checkpoint fits the model "
            f"(first keys: {list(state)[:5]})"
        )
    model.load_state_dict(usable, strict=False)
    return LoadReport(
        layout=layout, loaded=list(usable), skipped=unexpected, missing=missing, dropped=dropped
    )


def load_checkpoint(
    model: nn.Module,
    path_or_state_dict: str | Path | Mapping[str, Any],
    *,
    drop_classifier: bool = False,
) -> LoadReport:
    """Load weights of any supported layout into `model` (see the module docstring)."""
    obj = (
        read_checkpoint(path_or_state_dict)
        if isinstance(path_or_state_dict, str | Path)
        else path_or_state_dict
    )
    state, kind = _unwrap(obj)
    if kind == "project":
        recorded = obj.get("model", {}).get("name")
        ours = getattr(model, "build_config", {}).get("name")
        if recorded and ours and recorded != ours:
            raise ValueError(f"checkpoint holds a {recorded} model, cannot load it into {ours}")
        return _load(model, state, "project", strict=True, drop=drop_classifier)

    own = model.state_dict()
    if set(state) == set(own) or (set(state) <= set(own) and _only_buffers_missing(own, state)):
        return _load(model, state, "native", strict=True, drop=drop_classifier)
    if any(k.startswith("common_backbone.") for k in state) and hasattr(
        model, "convert_original_state_dict"
    ):
        converted = model.convert_original_state_dict(state)
        return _load(model, converted, "original", strict=True, drop=drop_classifier)
    if hasattr(model, "convert_backbone_state_dict"):
        converted, skipped, layout = model.convert_backbone_state_dict(state)
        report = _load(model, converted, f"backbone:{layout}", strict=False, drop=drop_classifier)
        report.skipped = skipped + report.skipped
        return report
    if hasattr(model, "convert_imagenet_state_dict"):
        converted = model.convert_imagenet_state_dict(state)
        return _load(model, converted, "backbone", strict=False, drop=drop_classifier)
    if hasattr(model, "convert_original_state_dict"):
        converted = model.convert_original_state_dict(state)
        return _load(model, converted, "original", strict=True, drop=drop_classifier)
    sample = ", ".join(list(state)[:5])
    raise ValueError(f"{_model_name(model)}: unrecognised checkpoint layout (first keys: {sample})")


def _only_buffers_missing(own: Mapping[str, Tensor], state: Mapping[str, Tensor]) -> bool:
    """True when the keys absent from `state` are only BatchNorm step counters."""
    return all(k.endswith("num_batches_tracked") for k in own if k not in state)


def model_from_checkpoint(
    path: str | Path, map_location: str | torch.device = "cpu"
) -> tuple[nn.Module, dict]:
    """Rebuild the model of a project checkpoint, load its weights; returns (model.eval(), ckpt)."""
    from nets.registry import build_model

    ckpt = read_checkpoint(path, map_location)
    if not isinstance(ckpt, Mapping) or ckpt.get("format") != PROJECT_FORMAT:
        raise ValueError(
            f"{path} is not a project checkpoint (no 'format': {PROJECT_FORMAT!r}); for "
            "original or ImageNet weights build the model with nets.build_model and use "
            "nets.load_checkpoint"
        )
    spec = ckpt["model"]
    model = build_model(spec["name"], spec["num_classes"], **spec.get("options", {}))
    load_checkpoint(model, ckpt)
    return model.to(map_location).eval(), dict(ckpt)
