"""Learning-rate rules of FastSegFormer's training (the unet-pytorch / YOLOX recipe).

The original sets the lr once per epoch from a function of the epoch index:

- ``cos``: YOLOX warm-up + cosine. A quadratic warm-up from ``max(0.1 lr, 1e-6)`` to ``lr`` over
  ``min(max(0.05 T, 1), 3)`` epochs, a cosine from ``lr`` to ``min_lr``, and the last
  ``min(max(0.05 T, 1), 15)`` epochs held at ``min_lr`` (T = total epochs).
- ``step``: ten equal steps, each multiplying the lr by ``(min_lr / lr) ** (1 / 9)``.

Before that, the base lr is scaled by ``batch / 16`` and clamped: for Adam(W) to exactly 1e-4
(so ``lr`` has no effect with the original clamp, min lr 1e-6), for SGD to [5e-4, 0.1]
(min lr [5e-6, 1e-3]). The clamp can be switched off (``scale=False``) to use lr as given.

Everything here is a pure function of the epoch, so a resumed run gets exactly the lr it
would have had (`EpochLR.state_dict` records the values for checking).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

NOMINAL_BATCH = 16  # the original's "nbs"


def scaled_lr(
    lr: float, min_lr: float, batch_size: int, optimizer: str, scale: bool = True
) -> tuple[float, float]:
    """(lr, min_lr) scaled by batch/16 and clamped to the original's limits for `optimizer`."""
    if not scale:
        return lr, min_lr
    adam_like = optimizer.lower() in ("adam", "adamw")
    limit_max = 1e-4 if adam_like else 1e-1
    limit_min = 1e-4 if adam_like else 5e-4
    lr_fit = min(max(batch_size / NOMINAL_BATCH * lr, limit_min), limit_max)
    min_fit = min(max(batch_size / NOMINAL_BATCH * min_lr, limit_min * 1e-2), limit_max * 1e-2)
    return lr_fit, min_fit


def warmup_cosine_lr(
    epoch: int,
    lr: float,
    min_lr: float,
    total: int,
    warmup_ratio: float = 0.05,
    warmup_lr_ratio: float = 0.1,
    flat_ratio: float = 0.05,
) -> float:
    """YOLOX warm-up + cosine at `epoch` (0-based) of `total`."""
    warmup = min(max(warmup_ratio * total, 1), 3)
    warmup_start = max(warmup_lr_ratio * lr, 1e-6)
    flat = min(max(flat_ratio * total, 1), 15)
    if epoch <= warmup:
        return (lr - warmup_start) * (epoch / float(warmup)) ** 2 + warmup_start
    if epoch >= total - flat:
        return min_lr
    progress = (epoch - warmup) / (total - warmup - flat)
    return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * progress))


def step_lr(epoch: int, lr: float, min_lr: float, total: int, steps: int = 10) -> float:
    """Step decay: `steps` equal stages from lr down to min_lr."""
    decay = (min_lr / lr) ** (1.0 / (steps - 1))
    step_size = total / steps
    return lr * decay ** int(epoch // step_size)


# The schedules by name: (epoch, lr, min_lr, total epochs) -> lr. `--lr-schedule` offers these
# keys; adding a schedule is adding its function here.
SCHEDULES: dict[str, Callable[[int, float, float, int], float]] = {
    "cos": warmup_cosine_lr,
    "step": step_lr,
}


def lr_function(kind: str, lr: float, min_lr: float, total: int) -> Callable[[int], float]:
    """epoch -> lr for the named schedule."""
    if kind not in SCHEDULES:
        raise ValueError(f"unknown lr schedule {kind!r}: expected one of {tuple(SCHEDULES)}")
    schedule = SCHEDULES[kind]
    return lambda epoch: schedule(epoch, lr, min_lr, total)


@dataclass
class EpochLR:
    """The per-epoch lr rule of one training phase; `apply` writes it into an optimizer."""

    kind: str
    lr: float  # base lr after batch scaling
    min_lr: float
    total_epochs: int
    last_epoch: int = -1
    last_lr: float | None = None

    def value(self, epoch: int) -> float:
        return lr_function(self.kind, self.lr, self.min_lr, self.total_epochs)(epoch)

    def apply(self, optimizer, epoch: int) -> float:  # noqa: ANN001 (torch optimizer)
        """Set every param group's lr for `epoch`; return it."""
        value = self.value(epoch)
        for group in optimizer.param_groups:
            group["lr"] = value
        self.last_epoch, self.last_lr = epoch, value
        return value

    def state_dict(self) -> dict:
        return asdict(self)


def build_epoch_lr(
    kind: str,
    lr: float,
    min_lr: float,
    total_epochs: int,
    batch_size: int,
    optimizer: str,
    scale: bool = True,
) -> EpochLR:
    """The phase's lr rule: base values scaled for `batch_size` (global), then `kind`."""
    if kind not in SCHEDULES:
        raise ValueError(f"unknown lr schedule {kind!r}: expected one of {tuple(SCHEDULES)}")
    lr_fit, min_fit = scaled_lr(lr, min_lr, batch_size, optimizer, scale)
    return EpochLR(kind, lr_fit, min_fit, total_epochs)
