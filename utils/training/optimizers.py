"""Optimisers of FastSegFormer's training, by name (the unet-pytorch recipe the paper uses).

FastSegFormer (Cai et al., Computers and Electronics in Agriculture 217, 108604, 2024) trains
with Adam, betas (0.9, 0.999), no weight decay; the original code also offers SGD with
Nesterov momentum. ``OPTIMIZERS`` maps each ``--optimizer`` name to its factory; adding an
optimiser is adding its factory here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn


def adam(
    params: Sequence[nn.Parameter], lr: float, momentum: float, weight_decay: float
) -> torch.optim.Optimizer:
    """Adam with betas (momentum, 0.999), as the original."""
    return torch.optim.Adam(params, lr, betas=(momentum, 0.999), weight_decay=weight_decay)


def adamw(
    params: Sequence[nn.Parameter], lr: float, momentum: float, weight_decay: float
) -> torch.optim.Optimizer:
    """AdamW with betas (momentum, 0.999)."""
    return torch.optim.AdamW(params, lr, betas=(momentum, 0.999), weight_decay=weight_decay)


def sgd(
    params: Sequence[nn.Parameter], lr: float, momentum: float, weight_decay: float
) -> torch.optim.Optimizer:
    """SGD with Nesterov momentum (plain SGD at momentum 0), as the original."""
    return torch.optim.SGD(
        params, lr, momentum=momentum, nesterov=momentum > 0, weight_decay=weight_decay
    )


# name -> factory(params, lr, momentum, weight_decay); `--optimizer` offers these keys
OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "adam": adam,
    "adamw": adamw,
    "sgd": sgd,
}


def build_optimizer(
    name: str,
    params: Sequence[nn.Parameter],
    lr: float,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
) -> torch.optim.Optimizer:
    """The optimiser `name` of ``OPTIMIZERS`` over `params`."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}: expected one of {tuple(OPTIMIZERS)}")
    if not params:
        raise ValueError("the task has no trainable parameters (all requires_grad=False)")
    return OPTIMIZERS[name](list(params), lr, momentum, weight_decay)
