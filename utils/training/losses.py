"""Segmentation losses of FastSegFormer's supervised training: CE, focal and dice.

FastSegFormer (Cai et al., Computers and Electronics in Agriculture 217, 108604, 2024) trains
with pixel-wise cross-entropy with per-class weights, optionally replaced by a focal loss
(alpha 0.5, gamma 2) and optionally plus a dice loss, as the unet-pytorch code it builds on.

Differences from the original code, on purpose:
- Pixels labelled `ignore_index` (255 by the data-set contract) are left out of every term.
  The original's focal loss averages over all pixels (ignored ones count as zero) and its dice
  counts the predicted probability of ignored pixels as false positives.
- Logits smaller than the label (comparison models output at 1/4 or 1/8 resolution) are
  bilinearly upsampled to the label size before the loss, as the original CE does.

Every loss is a small function of (logits (B, K, h, w), target (B, H, W) long) -> scalar.
`build_seg_loss` assembles the configured combination into a `SegLoss` callable whose
`terms()` gives each named term (for logging) and whose call gives their sum.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

IGNORE_INDEX = 255


def resize_to_target(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Bilinearly resize (B, K, h, w) logits to the (B, H, W) label size when they differ."""
    if logits.shape[-2:] != target.shape[-2:]:
        logits = F.interpolate(logits, size=target.shape[-2:], mode="bilinear", align_corners=False)
    return logits


def _check(logits: torch.Tensor, target: torch.Tensor) -> None:
    if logits.dim() != 4 or target.dim() != 3 or logits.shape[0] != target.shape[0]:
        raise ValueError(
            "expected logits (B, K, h, w) and target (B, H, W) with the same B, got "
            f"{tuple(logits.shape)} and {tuple(target.shape)}"
        )


def _weights(class_weights: torch.Tensor | None, logits: torch.Tensor) -> torch.Tensor | None:
    if class_weights is None:
        return None
    if class_weights.numel() != logits.shape[1]:
        raise ValueError(
            f"class_weights has {class_weights.numel()} values but the model predicts "
            f"{logits.shape[1]} classes"
        )
    return class_weights.to(device=logits.device, dtype=torch.float32)


def cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    class_weights: torch.Tensor | None = None,
    ignore_index: int = IGNORE_INDEX,
) -> torch.Tensor:
    """Weighted pixel-wise CE: logits (B, K, h, w), target (B, H, W) long -> scalar.

    With class weights the mean is weighted (sum w_y * nll / sum w_y), as PyTorch's CE.
    A batch whose pixels are all ignored gives 0 (not NaN) so training can go on.
    """
    _check(logits, target)
    logits = resize_to_target(logits, target).float()
    weight = _weights(class_weights, logits)
    if not (target != ignore_index).any():
        return logits.sum() * 0.0
    return F.cross_entropy(logits, target, weight=weight, ignore_index=ignore_index)


def focal_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    class_weights: torch.Tensor | None = None,
    ignore_index: int = IGNORE_INDEX,
    alpha: float = 0.5,
    gamma: float = 2.0,
) -> torch.Tensor:
    """Focal loss -alpha (1 - p_t)^gamma log p_t averaged over non-ignored pixels.

    logits (B, K, h, w), target (B, H, W) long -> scalar. As the original, log p_t is the
    (class-weighted) per-pixel CE, so p_t = exp(-w_y * nll).
    """
    _check(logits, target)
    logits = resize_to_target(logits, target).float()
    weight = _weights(class_weights, logits)
    ce = F.cross_entropy(logits, target, weight=weight, ignore_index=ignore_index, reduction="none")
    valid = target != ignore_index  # (B, H, W)
    if not valid.any():
        return logits.sum() * 0.0
    pt = torch.exp(-ce)
    loss = alpha * (1.0 - pt) ** gamma * ce  # (B, H, W), 0 where ignored
    return loss[valid].mean()


def dice_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    ignore_index: int = IGNORE_INDEX,
    beta: float = 1.0,
    smooth: float = 1e-5,
) -> torch.Tensor:
    """1 - mean over classes of the soft F-beta score (beta=1: dice), batch-wide.

    logits (B, K, h, w), target (B, H, W) long -> scalar; tp/fp/fn are sums of softmax
    probabilities over every non-ignored pixel of the batch, per class (as the original).
    """
    _check(logits, target)
    logits = resize_to_target(logits, target).float()
    num_classes = logits.shape[1]
    valid = (target != ignore_index).unsqueeze(1).float()  # (B, 1, H, W)
    prob = logits.softmax(dim=1) * valid  # (B, K, H, W)
    onehot = F.one_hot(target.clamp(0, num_classes - 1), num_classes)  # (B, H, W, K)
    onehot = onehot.permute(0, 3, 1, 2).float() * valid  # (B, K, H, W)
    tp = (prob * onehot).sum(dim=(0, 2, 3))  # (K,)
    fp = prob.sum(dim=(0, 2, 3)) - tp
    fn = onehot.sum(dim=(0, 2, 3)) - tp
    b2 = beta**2
    score = ((1 + b2) * tp + smooth) / ((1 + b2) * tp + b2 * fn + fp + smooth)
    return 1.0 - score.mean()


# The main segmentation losses by name, each (logits, target, class_weights, ignore_index) ->
# scalar. `--loss` offers these keys; adding a loss is adding its function here.
LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None, int], torch.Tensor]
LOSSES: dict[str, LossFn] = {
    "ce": cross_entropy,
    "focal": focal_loss,
}


class SegLoss:
    """The configured supervised loss: CE or focal, plus dice if enabled.

    `loss(logits, target)` -> scalar sum; `loss.terms(logits, target)` -> {"ce"|"focal": ...,
    "dice": ...}. Logits of any size are upsampled to the label size. Picklable (no lambdas).
    """

    def __init__(
        self,
        name: str = "ce",
        dice: bool = False,
        class_weights: Sequence[float] | torch.Tensor | None = None,
        ignore_index: int = IGNORE_INDEX,
    ) -> None:
        if name not in LOSSES:
            raise ValueError(f"unknown segmentation loss {name!r}: expected one of {tuple(LOSSES)}")
        self.name = name
        self.dice = dice
        self.ignore_index = ignore_index
        if class_weights is not None and len(class_weights) > 0:
            w = torch.as_tensor(class_weights, dtype=torch.float32).flatten()
            if (w < 0).any() or not torch.isfinite(w).all():
                raise ValueError(f"class weights must be finite and >= 0, got {w.tolist()}")
            self.class_weights: torch.Tensor | None = w
        else:
            self.class_weights = None

    def terms(self, logits: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each named loss term (unweighted sum = the total)."""
        _check(logits, target)
        logits = resize_to_target(logits, target)  # once for every term (low-res models)
        main = LOSSES[self.name](logits, target, self.class_weights, self.ignore_index)
        out = {self.name: main}
        if self.dice:
            out["dice"] = dice_loss(logits, target, self.ignore_index)
        return out

    def __call__(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return sum(self.terms(logits, target).values())

    def __repr__(self) -> str:
        weights = None if self.class_weights is None else self.class_weights.tolist()
        return f"SegLoss(name={self.name!r}, dice={self.dice}, class_weights={weights})"


def build_seg_loss(
    name: str = "ce",
    dice: bool = False,
    class_weights: Sequence[float] | torch.Tensor | None = None,
    ignore_index: int = IGNORE_INDEX,
) -> SegLoss:
    """The shared contract: a callable (logits, target) -> scalar, upsampling logits."""
    return SegLoss(name, dice, class_weights, ignore_index)
