"""Segmentation metrics from a confusion matrix accumulated over a whole split.

The paper reports mIoU and mPA (mean pixel accuracy per class, i.e. mean recall). Like
mmsegmentation, scores come from intersection/union areas summed over every image of the
split, never from an average of per-batch scores; pixels labelled `ignore_index` do not count.
"""

from __future__ import annotations

import numpy as np


def confusion_matrix(
    pred: np.ndarray, target: np.ndarray, num_classes: int, ignore_index: int = 255
) -> np.ndarray:
    """(K, K) int64 counts; rows are ground truth, columns prediction.

    `pred` and `target` are integer arrays of the same shape (any number of images; anything
    numpy can read, a CPU tensor included). Target pixels equal to `ignore_index` (or otherwise
    outside [0, K)) are skipped. numpy only: evaluation on a deployment box needs no torch.
    """
    pred_a = np.asarray(pred)
    target_a = np.asarray(target)
    if pred_a.shape != target_a.shape:
        raise ValueError(f"prediction and label sizes differ: {pred_a.shape} vs {target_a.shape}")
    pred_a = pred_a.reshape(-1).astype(np.int64, copy=False)
    target_a = target_a.reshape(-1).astype(np.int64, copy=False)
    keep = (target_a != ignore_index) & (target_a >= 0) & (target_a < num_classes)
    pred_a, target_a = pred_a[keep], target_a[keep]
    if pred_a.size and (int(pred_a.min()) < 0 or int(pred_a.max()) >= num_classes):
        raise ValueError(
            f"prediction holds class ids outside [0, {num_classes}): "
            f"min {int(pred_a.min())}, max {int(pred_a.max())}"
        )
    counts = np.bincount(target_a * num_classes + pred_a, minlength=num_classes**2)
    return counts.reshape(num_classes, num_classes).astype(np.int64)


class ConfusionMatrix:
    """Accumulates a confusion matrix batch by batch (`matrix`, (K, K) int64); under torchrun
    the training loop sums the matrices of every process (utils.training.distributed)."""

    def __init__(self, num_classes: int, ignore_index: int = 255) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = np.zeros((num_classes, num_classes), dtype=np.int64)

    def update(self, pred: np.ndarray, target: np.ndarray) -> None:
        self.matrix += confusion_matrix(pred, target, self.num_classes, self.ignore_index)

    def reset(self) -> None:
        self.matrix[:] = 0

    def compute(self) -> dict:
        return segmentation_metrics(self.matrix)


def segmentation_metrics(cm: np.ndarray) -> dict:
    """IoU, PA (recall), Precision per class and their means, plus overall accuracy.

    All values are fractions in [0, 1]. A class absent from both labels and predictions has
    NaN scores and is left out of the means.
    """
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    gt = cm.sum(axis=1)
    pr = cm.sum(axis=0)
    union = gt + pr - tp
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
        recall = np.where(gt > 0, tp / gt, np.where(union > 0, 0.0, np.nan))
        precision = np.where(pr > 0, tp / pr, np.where(union > 0, 0.0, np.nan))
    total = cm.sum()

    def mean(x: np.ndarray) -> float:
        return float(np.nanmean(x)) if np.isfinite(x).any() else float("nan")

    return {
        "IoU": iou.tolist(),
        "PA": recall.tolist(),
        "Precision": precision.tolist(),
        "mIoU": mean(iou),
        "mPA": mean(recall),
        "mPrecision": mean(precision),
        "accuracy": float(tp.sum() / total) if total > 0 else float("nan"),
    }
