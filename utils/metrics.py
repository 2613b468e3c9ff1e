"""Segmentation metrics from a confusion matrix accumulated over a whole split.

The paper reports mIoU and mPA (mean pixel accuracy per class, i.e. mean recall). Like
mmsegmentation, scores come from intersection/union areas summed over every image of the
split, never from an average of per-batch scores; pixels labelled `ignore_index` do not count.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist

ArrayLike = np.ndarray | torch.Tensor


def _flat_long(x: ArrayLike) -> torch.Tensor:
    """1-D int64 tensor; numpy input is copied (read-only arrays from PIL warn in torch)."""
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.array(x, dtype=np.int64).reshape(-1))
    return torch.as_tensor(x).reshape(-1).long()


def confusion_matrix(
    pred: ArrayLike, target: ArrayLike, num_classes: int, ignore_index: int = 255
) -> np.ndarray:
    """(K, K) int64 counts; rows are ground truth, columns prediction.

    `pred` and `target` are integer arrays of the same shape (any number of images).
    Target pixels equal to `ignore_index` (or otherwise outside [0, K)) are skipped.
    """
    pred_t = _flat_long(pred)
    target_t = _flat_long(target)
    if pred_t.shape != target_t.shape:
        raise ValueError(
            f"prediction and label sizes differ: {tuple(torch.as_tensor(pred).shape)} vs "
            f"{tuple(torch.as_tensor(target).shape)}"
        )
    keep = (target_t != ignore_index) & (target_t >= 0) & (target_t < num_classes)
    pred_t, target_t = pred_t[keep], target_t[keep]
    if pred_t.numel() and (int(pred_t.min()) < 0 or int(pred_t.max()) >= num_classes):
        raise ValueError(
            f"prediction holds class ids outside [0, {num_classes}): "
            f"min {int(pred_t.min())}, max {int(pred_t.max())}"
        )
    counts = torch.bincount(target_t * num_classes + pred_t, minlength=num_classes**2)
    return counts.reshape(num_classes, num_classes).cpu().numpy().astype(np.int64)


class ConfusionMatrix:
    """Accumulates a confusion matrix batch by batch (and across processes)."""

    def __init__(self, num_classes: int, ignore_index: int = 255) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = np.zeros((num_classes, num_classes), dtype=np.int64)

    def update(self, pred: ArrayLike, target: ArrayLike) -> None:
        self.matrix += confusion_matrix(pred, target, self.num_classes, self.ignore_index)

    def reset(self) -> None:
        self.matrix[:] = 0

    def all_reduce(self) -> None:
        """Sum the matrices of every process when torch.distributed is initialised."""
        if dist.is_available() and dist.is_initialized():
            t = torch.from_numpy(self.matrix)
            if dist.get_backend() == "nccl":
                t = t.cuda()
            dist.all_reduce(t)
            self.matrix = t.cpu().numpy()

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
