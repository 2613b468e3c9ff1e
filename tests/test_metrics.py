"""Known-answer tests of the segmentation metrics (utils/metrics.py) and the mask scoring.

The hand-made case below was worked out on paper; the real-photo case reproduces the figures
the shared samples' README gives for the authors' own predictions.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from utils.inference.evaluate import score_split
from utils.metrics import ConfusionMatrix, confusion_matrix, segmentation_metrics

I = 255  # noqa: E741 -- ignore index, short for the hand-made arrays
TARGET = np.array(
    [
        [0, 0, 1, 1],
        [0, 0, 1, 1],
        [2, 2, I, I],
        [2, 2, I, I],
    ]
)
PRED = np.array(
    [
        [0, 1, 1, 1],
        [0, 0, 1, 0],
        [2, 0, 3, 3],  # class 3 only where the label is ignored: absent from both
        [2, 2, 1, 0],
    ]
)


def test_hand_made_confusion_matrix():
    cm = confusion_matrix(PRED, TARGET, num_classes=4)
    expected = np.array(
        [
            [3, 1, 0, 0],  # gt 0: three right, one called 1
            [1, 3, 0, 0],  # gt 1: one called 0
            [1, 0, 3, 0],  # gt 2: one called 0
            [0, 0, 0, 0],  # gt 3: none
        ]
    )
    np.testing.assert_array_equal(cm, expected)
    assert cm.sum() == 12  # the four ignored pixels are left out


def test_hand_made_scores_with_ignore_and_absent_class():
    m = segmentation_metrics(confusion_matrix(PRED, TARGET, num_classes=4))
    np.testing.assert_allclose(m["IoU"][:3], [3 / 6, 3 / 5, 3 / 4])
    np.testing.assert_allclose(m["PA"][:3], [3 / 4, 3 / 4, 3 / 4])
    np.testing.assert_allclose(m["Precision"][:3], [3 / 5, 3 / 4, 3 / 3])
    assert all(math.isnan(m[k][3]) for k in ("IoU", "PA", "Precision"))
    assert m["mIoU"] == pytest.approx((0.5 + 0.6 + 0.75) / 3)
    assert m["mPA"] == pytest.approx(0.75)
    assert m["mPrecision"] == pytest.approx((0.6 + 0.75 + 1.0) / 3)
    assert m["accuracy"] == pytest.approx(9 / 12)


def test_class_predicted_but_never_labelled_counts_as_zero():
    target = np.zeros((2, 2), int)
    pred = np.array([[0, 1], [0, 0]])
    m = segmentation_metrics(confusion_matrix(pred, target, num_classes=2))
    assert m["IoU"] == pytest.approx([0.75, 0.0])
    assert m["PA"] == pytest.approx([0.75, 0.0])
    assert m["Precision"] == pytest.approx([1.0, 0.0])
    assert m["mIoU"] == pytest.approx(0.375)


def test_accumulating_images_equals_one_matrix_and_accepts_tensors():
    rng = np.random.default_rng(0)
    preds = rng.integers(0, 4, (3, 8, 8))
    targets = rng.integers(0, 4, (3, 8, 8))
    targets[0, :2] = 255
    acc = ConfusionMatrix(4)
    for p, t in zip(preds, targets, strict=True):
        acc.update(torch.from_numpy(p), torch.from_numpy(t))
    np.testing.assert_array_equal(acc.matrix, confusion_matrix(preds, targets, 4))
    # a split's mIoU is not the mean of per-image mIoUs
    per_image = np.mean(
        [
            segmentation_metrics(confusion_matrix(p, t, 4))["mIoU"]
            for p, t in zip(preds, targets, strict=True)
        ]
    )
    assert acc.compute()["mIoU"] != pytest.approx(per_image, abs=1e-9)


def test_prediction_out_of_range_is_an_error():
    with pytest.raises(ValueError, match="outside"):
        confusion_matrix(np.full((2, 2), 7), np.zeros((2, 2)), num_classes=4)
    with pytest.raises(ValueError, match="differ"):
        confusion_matrix(np.zeros((2, 3)), np.zeros((2, 2)), num_classes=4)


def test_authors_predictions_on_real_photos_match_their_readme(real_samples):
    """Mixed mask formats (palette, RGB, RGBA) and RGB palette predictions, read like the data
    set reads them, give the README's per-class IoU 99.44/93.64/86.76/71.63, mIoU 87.87 and
    mPA 91.47."""
    masks = sorted((real_samples / "SegmentationClass").glob("*.png"))
    ids = [p.stem for p in masks]
    cm = score_split(real_samples / "original_predictions", ids, masks, 4, progress=False)
    m = segmentation_metrics(cm)
    assert np.round(100 * np.array(m["IoU"]), 2).tolist() == [99.44, 93.64, 86.76, 71.63]
    assert round(100 * m["mIoU"], 2) == 87.87
    assert round(100 * m["mPA"], 2) == 91.47
