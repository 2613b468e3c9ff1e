"""Model size: the parameter count and thop's multiply-accumulates, in the paper's convention.

FastSegFormer (Cai et al., Computers and Electronics in Agriculture 217, 108604, 2024) reports
"Params" and "GFLOPs" as thop computes them: thop counts multiply-accumulates (MACs) per image
at batch 1, printed as GFLOPs, and a parameter count that only includes the parameters of
module types thop has a hook for (it skips GroupNorm, layer scales, attention biases, ...).

- ``count_params``: every parameter (``sum(p.numel())``, the original code's count and the
  reference cases' ``num_params``), optionally without training-only auxiliary heads.
- ``thop_profile``: thop's (MACs, parameters) for one input, run on a copy of the model.
- ``complexity``: the row ``model_flop_params.py`` and ``speeding.py`` print.

Used by ``model_flop_params.py``, ``speeding.py`` and ``python -m nets.comparison``.
"""

from __future__ import annotations

import copy
import warnings

import torch
from timm.layers import BatchNormAct2d
from torch import Tensor, nn


def count_params(model: nn.Module, include_aux: bool = True) -> int:
    """Number of parameters; ``include_aux=False`` leaves out ``model.aux_heads`` (the
    comparison models' training-only heads)."""
    total = sum(p.numel() for p in model.parameters())
    heads = getattr(model, "aux_heads", None)
    if not include_aux and heads is not None:
        total -= sum(p.numel() for p in heads.parameters())
    return total


class _WithAux(nn.Module):
    """Runs the wrapped model with its auxiliary heads, so thop counts them too."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x, return_aux=True)[0]


def thop_profile(
    model: nn.Module, input_size: int | tuple[int, int], with_aux: bool = False
) -> tuple[float, float]:
    """thop's (MACs, parameters) of `model` on one (1, 3, H, W) input, in eval mode.

    `model` is untouched: thop adds ``total_ops``/``total_params`` buffers, so it runs on a deep
    copy. timm's ``BatchNormAct2d`` (EfficientFormerV2's fused BatchNorm + activation, a
    subclass thop does not recognise) is counted like the ``nn.BatchNorm2d`` the original
    backbones use. ``with_aux`` also runs the auxiliary heads (``model(x, return_aux=True)``).
    """
    from thop import profile  # optional: only the size tables need it
    from thop.vision.basic_hooks import count_normalization

    h, w = (input_size, input_size) if isinstance(input_size, int) else input_size
    probe = copy.deepcopy(model).eval()
    if with_aux:
        probe = _WithAux(probe)
    x = torch.rand(1, 3, h, w)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # thop's "API is being deprecated"
        macs, params = profile(
            probe, inputs=(x,), custom_ops={BatchNormAct2d: count_normalization}, verbose=False
        )
    return float(macs), float(params)


def complexity(model: nn.Module, input_size: int) -> dict[str, float]:
    """Size of `model` at a square `input_size`: ``params_m`` (thop's count, the paper's
    "Params"), ``params_all_m`` (every parameter) and ``gflops`` (thop MACs / 1e9, the paper's
    "GFLOPs"), all in millions / billions."""
    macs, thop_params = thop_profile(model, input_size)
    return {
        "params_m": thop_params / 1e6,
        "params_all_m": count_params(model) / 1e6,
        "gflops": macs / 1e9,
    }
