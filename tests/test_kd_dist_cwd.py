"""Known-answer tests for DIST and CWD (utils/training/kd_losses.py).

DIST: Huang et al., "Knowledge Distillation from A Stronger Teacher", NeurIPS 2022.
CWD: Shu et al., "Channel-wise Knowledge Distillation for Dense Prediction", ICCV 2021.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from utils.training.kd_losses import cwd_loss, dist_loss, dist_terms, pearson_distance, pkl_loss


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _logits_of(probs: torch.Tensor) -> torch.Tensor:
    """Logits whose softmax over dim 1 is `probs` (each pixel's column sums to 1)."""
    return probs.log()


# ---------------------------------------------------------------------------------------- DIST


def test_pearson_distance_known_value_and_invariance() -> None:
    x = torch.tensor([1.0, 2.0, 3.0])
    y = torch.tensor([1.0, 3.0, 2.0])
    # centred (-1, 0, 1) and (-1, 1, 0): r = 1 / (sqrt 2 * sqrt 2) = 0.5
    assert pearson_distance(x, y, dim=0).item() == pytest.approx(0.5, abs=1e-6)
    u, v = torch.rand(4, 7), torch.rand(4, 7)
    d = pearson_distance(u, v, dim=1)  # (4,)
    # invariant to separate positive scale and shift of either input (the paper's reason for
    # choosing it: a relation, not an exact match)
    torch.testing.assert_close(pearson_distance(3.0 * u + 2.0, 0.5 * v - 1.0, dim=1), d)
    # a negative scale flips the correlation: 1 - (-r) = 2 - d
    torch.testing.assert_close(pearson_distance(-u, v, dim=1), 2.0 - d)
    assert pearson_distance(u, u, dim=1).abs().max() < 1e-6


def test_dist_zero_for_identical_logits() -> None:
    t = torch.randn(2, 4, 5, 6)
    inter, intra = dist_terms(t.clone(), t)
    assert inter.item() == pytest.approx(0.0, abs=1e-6)
    assert intra.item() == pytest.approx(0.0, abs=1e-6)
    assert dist_loss(t.clone(), t, tau=2.0).item() == pytest.approx(0.0, abs=1e-5)


def test_dist_zero_for_affine_related_probabilities_unlike_kl() -> None:
    """Student probabilities a * q_t + b (a > 0, a + K b = 1): DIST is 0, P&KL is not."""
    k = 4
    q_t = F.softmax(torch.randn(2, k, 5, 6) * 2, dim=1)
    a = 0.4
    b = (1 - a) / k  # keeps every pixel's probabilities summing to 1
    q_s = a * q_t + b  # a softened teacher
    s, t = _logits_of(q_s), _logits_of(q_t)
    torch.testing.assert_close(F.softmax(s, dim=1), q_s)
    assert dist_loss(s, t).item() == pytest.approx(0.0, abs=1e-5)
    assert pkl_loss(s, t).item() > 0.05


def test_dist_hand_computed_two_classes_three_pixels() -> None:
    # one image, K = 2, pixels in a 1x3 row; probabilities of class 0 (class 1 = 1 - class 0)
    q_t0 = torch.tensor([0.2, 0.4, 0.6])
    q_s0 = torch.tensor([0.2, 0.6, 0.4])
    q_t = torch.stack([q_t0, 1 - q_t0])[None, :, None, :]  # (1, 2, 1, 3)
    q_s = torch.stack([q_s0, 1 - q_s0])[None, :, None, :]
    s, t = _logits_of(q_s), _logits_of(q_t)
    inter, intra = dist_terms(s, t)
    # inter-class, per pixel across the 2 classes: two values are always perfectly (anti-)
    # correlated. Pixel 0 agrees (r = 1, d = 0); pixels 1 and 2 swap the order (r = -1, d = 2).
    assert inter.item() == pytest.approx((0 + 2 + 2) / 3, abs=1e-6)
    # intra-class, per class across the 3 pixels: class 0 centred (-0.2, 0, 0.2) vs
    # (-0.2, 0.2, 0): r = 0.04 / (sqrt 0.08 sqrt 0.08) = 0.5; class 1 is the negative of both.
    assert intra.item() == pytest.approx(0.5, abs=1e-6)
    assert dist_loss(s, t).item() == pytest.approx(4 / 3 + 0.5, abs=1e-5)
    assert dist_loss(s, t, beta=2.0, gamma=0.5).item() == pytest.approx(8 / 3 + 0.25, abs=1e-5)


def test_dist_tau_squared_and_temperature_softening() -> None:
    s, t = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    tau = 3.0
    inter, intra = dist_terms(s, t, tau)
    torch.testing.assert_close(dist_loss(s, t, tau=tau), tau**2 * (inter + intra))
    # softmax(z / tau) is what the relations see: dividing the logits by tau by hand matches
    torch.testing.assert_close(
        torch.stack(dist_terms(s / tau, t / tau)), torch.stack(dist_terms(s, t, tau))
    )


def test_dist_intra_per_image_and_batch_pooled_for_one_image() -> None:
    s, t = torch.randn(2, 3, 6, 6), torch.randn(2, 3, 9, 9)
    both = dist_loss(s, t)
    apart = (dist_loss(s[:1], t[:1]) + dist_loss(s[1:], t[1:])) / 2
    torch.testing.assert_close(both, apart)  # independent of the batch size
    # for one image, the reference code's batch pooling (pixels flattened) gives the same
    t1 = F.interpolate(t[:1], size=(6, 6), mode="bilinear", align_corners=True)
    y_s = F.softmax(s[:1], dim=1).permute(0, 2, 3, 1).reshape(-1, 3)  # (pixels, K)
    y_t = F.softmax(t1, dim=1).permute(0, 2, 3, 1).reshape(-1, 3)
    inter = pearson_distance(y_s, y_t, dim=1).mean()
    intra = pearson_distance(y_s.T, y_t.T, dim=1).mean()
    torch.testing.assert_close(dist_loss(s[:1], t[:1]), inter + intra)


def test_dist_and_cwd_gradients_reach_student_not_teacher() -> None:
    for loss_fn in (dist_loss, cwd_loss):
        s = torch.randn(2, 3, 5, 5, requires_grad=True)
        t = torch.randn(2, 3, 10, 10, requires_grad=True)
        loss_fn(s, t).backward()
        assert s.grad is not None and s.grad.abs().sum() > 0
        assert t.grad is None


def test_dist_and_cwd_reject_bad_inputs() -> None:
    with pytest.raises(ValueError, match="number of classes"):
        dist_loss(torch.randn(1, 3, 4, 4), torch.randn(1, 4, 4, 4))
    with pytest.raises(ValueError, match="tau must be > 0"):
        cwd_loss(torch.randn(1, 3, 4, 4), torch.randn(1, 3, 4, 4), tau=0.0)


# ----------------------------------------------------------------------------------------- CWD


def test_cwd_zero_for_identical_and_per_channel_shifted_logits() -> None:
    t = torch.randn(2, 4, 5, 6)
    assert cwd_loss(t.clone(), t).item() == pytest.approx(0.0, abs=1e-6)
    # each channel's spatial softmax ignores a constant added to that channel
    shift = torch.randn(1, 4, 1, 1) * 5
    assert cwd_loss(t + shift, t).item() == pytest.approx(0.0, abs=1e-5)
    assert cwd_loss(2 * t, t).item() > 0.01  # but not a change of contrast


def test_cwd_hand_computed_two_channels_two_positions() -> None:
    temp = 4.0
    t = torch.zeros(1, 2, 1, 2)
    t[0, 0, 0, 1] = temp * math.log(3.0)  # channel 0: phi_t = (1/4, 3/4) at T = 4
    t[0, 1] = torch.tensor([1.0, -2.0])  # channel 1: the student copies it
    s = torch.zeros(1, 2, 1, 2)  # channel 0: phi_s = (1/2, 1/2)
    s[0, 1] = t[0, 1]
    kl = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)  # KL(teacher || student)
    expected = temp**2 * kl / 2  # T^2 / C * (kl + 0)
    assert cwd_loss(s, t, tau=temp).item() == pytest.approx(expected, rel=1e-5)
    reverse = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)  # KL(student || teacher)
    assert temp**2 * reverse / 2 != pytest.approx(expected, rel=1e-3)  # the direction matters


def test_cwd_equals_kl_div_sum_over_batch_times_channels() -> None:
    """The reference normalisation: sum over (N, C, H*W) of KL terms, / (N C), times T^2."""
    s, t = torch.randn(3, 4, 6, 6), torch.randn(3, 4, 12, 12)
    temp = 2.0
    t_small = F.interpolate(t, size=(6, 6), mode="bilinear", align_corners=True)
    kl_sum = F.kl_div(
        F.log_softmax(s.reshape(12, -1) / temp, dim=1),
        F.softmax(t_small.reshape(12, -1) / temp, dim=1),
        reduction="sum",
    )
    torch.testing.assert_close(cwd_loss(s, t, tau=temp), temp**2 * kl_sum / (3 * 4))
    apart = sum(cwd_loss(s[i : i + 1], t[i : i + 1], tau=temp) for i in range(3)) / 3
    torch.testing.assert_close(cwd_loss(s, t, tau=temp), apart)
