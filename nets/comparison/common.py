"""Plumbing shared by the paper's comparison models (FastSegFormer, Cai et al. 2024).

- `ComparisonModel`: the base class that gives every comparison network the project's model
  contract: `model(x)` returns logits at the input size in train and eval (the networks
  themselves predict at 1/8 or 1/4 and are upsampled here), `model(x, return_aux=True)` adds the
  auxiliary outputs their papers train with, `model(x, return_features=True)` exposes a few
  intermediate maps for distillation, and `aux_losses` turns the auxiliary outputs into weighted
  loss terms.
- `torchvision_resnet` and `load_weights`: ImageNet ResNet backbones from torchvision (built
  without weights, then filled from a local file in `model_data/` or downloaded where online).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn

from nets.backbones import MODEL_DATA
from nets.checkpoint import read_checkpoint

# torchvision's ImageNet ResNet weights: file name (in model_data/) and where it comes from.
RESNET_WEIGHTS = {
    18: ("resnet18-f37072fd.pth", "https://download.pytorch.org/models/resnet18-f37072fd.pth"),
    34: ("resnet34-b627a593.pth", "https://download.pytorch.org/models/resnet34-b627a593.pth"),
}

SegLoss = Callable[[Tensor, Tensor], Tensor]


def upsample(x: Tensor, size: tuple[int, int] | torch.Size, align_corners: bool = False) -> Tensor:
    """Bilinear resize of (B, C, h, w) to (B, C, *size); a no-op when already that size."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=align_corners)


def _pool_matrix(n: int, bins: int, ref: Tensor) -> Tensor:
    """(bins, n) averaging matrix of adaptive average pooling along one axis."""
    rows = []
    for i in range(bins):
        start, end = (i * n) // bins, -(-(i + 1) * n // bins)  # floor, ceil as PyTorch's
        rows.append([1.0 / (end - start) if start <= j < end else 0.0 for j in range(n)])
    return torch.tensor(rows, dtype=ref.dtype, device=ref.device)


def adaptive_avg_pool(x: Tensor, bins: int | tuple[int, int]) -> Tensor:
    """`F.adaptive_avg_pool2d` that also exports to ONNX when the bins do not divide the size.

    (B, C, h, w) -> (B, C, bh, bw); the non-dividing case is two matrix products with constant
    averaging matrices (the same windows as PyTorch's adaptive pooling).
    """
    bh, bw = (bins, bins) if isinstance(bins, int) else bins
    h, w = int(x.shape[-2]), int(x.shape[-1])
    if h % bh == 0 and w % bw == 0:
        return F.adaptive_avg_pool2d(x, (bh, bw))
    return _pool_matrix(h, bh, x) @ x @ _pool_matrix(w, bw, x).T


class ComparisonModel(nn.Module):
    """Base of the comparison networks: subclasses implement `_forward`.

    `_forward(x, with_aux)` returns `(logits, aux, features)`: logits (B, K, h, w) at the
    network's own output stride, a dict of auxiliary outputs (empty unless `with_aux`), and a
    list of intermediate feature maps. `forward` resizes the logits to the input size.
    """

    default_input_size: int = 224
    fixed_input_size: bool = False
    # name of an auxiliary output -> weight of its segmentation loss (the paper's coefficient)
    aux_weights: dict[str, float] = {}
    # how the network's own code resizes its prediction to the label size
    align_corners: bool = False
    # True where the original FastSegFormer repository's copy of the network registers the
    # same tensors in the same order (checked against it), so its checkpoints convert by order
    original_by_order: bool = False

    def __init__(self, num_classes: int, name: str, options: dict | None = None) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.build_config = {"name": name, "num_classes": num_classes, "options": options or {}}

    def _forward(self, x: Tensor, with_aux: bool) -> tuple[Tensor, dict[str, Tensor], list[Tensor]]:
        raise NotImplementedError

    def forward(
        self, x: Tensor, return_aux: bool = False, return_features: bool = False
    ) -> Tensor | tuple:
        """(B, 3, H, W) -> logits (B, K, H, W).

        return_aux: also return the auxiliary outputs `(logits, aux)` (at their own size);
        return_features: return `(features, logits)`; both: `(features, logits, aux)`.
        """
        logits, aux, features = self._forward(x, with_aux=return_aux)
        logits = upsample(logits, x.shape[-2:], self.align_corners)  # (B, K, H, W)
        if return_features and return_aux:
            return features, logits, aux
        if return_features:
            return features, logits
        if return_aux:
            return logits, aux
        return logits

    def convert_original_state_dict(self, state: dict[str, Tensor]) -> dict[str, Tensor]:
        """A checkpoint of the original FastSegFormer comparison code -> our names.

        The tensors are matched in registration order and must agree in shape one by one;
        auxiliary heads the original does not have keep their initialisation.
        """
        if not self.original_by_order:
            raise ValueError(
                f"{type(self).__name__}: no conversion from the original code's layout; "
                "load weights saved by this project instead"
            )
        own = self.state_dict()
        src = [(k, v) for k, v in state.items() if not k.endswith("num_batches_tracked")]
        dst = [k for k in own if not k.endswith("num_batches_tracked")]
        if len(src) != len(dst):  # the original may lack the training-only heads
            dst = [k for k in dst if not k.startswith("aux_heads.")]
        if len(src) != len(dst):
            raise ValueError(
                f"{type(self).__name__}: the checkpoint has {len(src)} tensors, the model "
                f"{len(dst)}; it is not the original code's {type(self).__name__}"
            )
        out = {k: v for k, v in own.items() if k.startswith("aux_heads.")}
        for (src_key, value), key in zip(src, dst, strict=True):
            if value.shape != own[key].shape:
                raise ValueError(
                    f"{type(self).__name__}: original tensor {src_key} {tuple(value.shape)} does "
                    f"not fit {key} {tuple(own[key].shape)}"
                )
            out[key] = value
        return out

    def aux_losses(self, aux: dict[str, Tensor], target: Tensor, seg_loss: SegLoss) -> dict:
        """Weighted auxiliary segmentation losses: {"aux_<name>": weight * seg_loss(aux, target)}.

        `seg_loss(logits (B, K, h, w), target (B, H, W))` upsamples the logits to the target.
        """
        missing = [name for name in self.aux_weights if name not in aux]
        if missing:
            raise KeyError(
                f"aux outputs {missing} missing (got {sorted(aux)}); "
                "call the model with return_aux=True"
            )
        return {
            f"aux_{name}": weight * seg_loss(aux[name], target)
            for name, weight in self.aux_weights.items()
        }


class SegHead(nn.Sequential):
    """3x3 Conv-BN-ReLU -> dropout -> 1x1 conv to classes (the common auxiliary head)."""

    def __init__(self, in_ch: int, mid_ch: int, num_classes: int, dropout: float = 0.1) -> None:
        super().__init__(
            nn.Conv2d(in_ch, mid_ch, 3, padding=1, bias=False),
            nn.BatchNorm2d(mid_ch),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Conv2d(mid_ch, num_classes, 1),
        )


def weights_path(
    pretrained: bool | str | Path | None, file_name: str, url: str | None
) -> Path | None:
    """Where the pretrained weights are: None (no weights), a given path, or model_data/file_name.

    `pretrained=True` looks for `model_data/<file_name>` and downloads it from `url` when absent
    (offline: FileNotFoundError naming the file to put there).
    """
    if pretrained is None or pretrained is False:
        return None
    if pretrained is not True:
        path = Path(pretrained)
        if not path.is_file():
            raise FileNotFoundError(f"pretrained weights file {path} not found")
        return path
    path = MODEL_DATA / file_name
    if path.is_file():
        return path
    if url is None:
        raise FileNotFoundError(
            f"pretrained weights not found: put {file_name} in {MODEL_DATA} "
            "(see docs/comparison_models.md for where it comes from)"
        )
    try:
        MODEL_DATA.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(url, str(path), progress=False)
    except Exception as err:  # offline, proxy, disk: say which file is wanted
        path.unlink(missing_ok=True)
        raise FileNotFoundError(
            f"could not download {url} ({err}); put {file_name} in {MODEL_DATA} or pass "
            "pretrained=False"
        ) from err
    return path


def load_weights(path: Path) -> dict[str, Tensor]:
    """A state dict from a weights file.

    Unwraps {"state_dict": ...} / {"model": ...} and strips "module." / "model." key prefixes.
    """
    state = read_checkpoint(path)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds a {type(state).__name__}, expected a state dict")
    out = {}
    for key, value in state.items():
        for prefix in ("module.", "model."):
            if key.startswith(prefix):
                key = key[len(prefix) :]
        out[key] = value
    return out


def torchvision_resnet(depth: int) -> nn.Module:
    """torchvision ResNet-18/34 built without weights and without its classifier (avgpool, fc).

    ImageNet weights come later from `ResNetBackboneMixin.load_pretrained`.
    """
    if depth not in RESNET_WEIGHTS:
        raise ValueError(
            f"ResNet depth {depth} not supported, expected one of {list(RESNET_WEIGHTS)}"
        )
    net = getattr(torchvision.models, f"resnet{depth}")(weights=None)
    del net.avgpool, net.fc
    return net


class ResNetBackboneMixin:
    """ImageNet weights for models whose `backbone` is a torchvision ResNet (`resnet_depth`).

    `load_pretrained()` is what `nets.build_model(..., pretrained=True)` calls;
    `convert_backbone_state_dict` lets `nets.load_checkpoint` take torchvision ResNet files.
    Tensors the model adds to the ResNet (e.g. FANet's stride-2 shortcut in layer1) stay random.
    """

    resnet_depth: int = 18

    def convert_backbone_state_dict(self, state: dict) -> tuple[dict, list[str], str]:
        converted, skipped = {}, []
        for key, value in state.items():
            if key.startswith("fc."):
                skipped.append(key)
            else:
                converted[key if key.startswith("backbone.") else f"backbone.{key}"] = value
        return converted, skipped, f"torchvision-resnet{self.resnet_depth}"

    def load_pretrained(self, pretrained: bool | str | Path = True) -> None:
        """Fill the backbone with ImageNet weights (model_data/ file, else download)."""
        path = weights_path(pretrained, *RESNET_WEIGHTS[self.resnet_depth])
        if path is None:
            return
        state, _, layout = self.convert_backbone_state_dict(load_weights(path))
        own = self.state_dict()  # type: ignore[attr-defined]
        bad = [k for k, v in state.items() if k not in own or own[k].shape != v.shape]
        if bad:
            raise ValueError(f"{path} is not a {layout} state dict (e.g. {bad[:3]} do not fit)")
        self.load_state_dict(state, strict=False)  # type: ignore[attr-defined]


def resnet_stages(net: nn.Module, x: Tensor) -> list[Tensor]:
    """The four stage outputs of a torchvision ResNet (layer1..layer4)."""
    x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
    feats = []
    for layer in (net.layer1, net.layer2, net.layer3, net.layer4):
        x = layer(x)
        feats.append(x)
    return feats


def no_imagenet_weights(name: str, pretrained: bool | str | Path | None) -> None:
    """Raise for `pretrained` on a network its paper trains from scratch."""
    if pretrained not in (None, False):
        raise ValueError(
            f"{name} has no ImageNet backbone (its paper trains it from scratch); got "
            f"pretrained={pretrained!r}, pass pretrained=False or load a project checkpoint "
            "with nets.load_checkpoint"
        )
