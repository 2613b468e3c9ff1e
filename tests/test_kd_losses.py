"""Known-answer tests for the distillation losses (utils/training/kd_losses.py): P&KL and NFD."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from utils.training.kd_losses import nfd_loss, nfd_pair, pixel_kl, pixel_mse, pkl_loss, standardize


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def test_pixel_kl_equals_kl_div_batchmean_per_pixel() -> None:
    s, t = torch.randn(3, 4, 5, 6), torch.randn(3, 4, 5, 6)
    temperature = 2.0
    # F.kl_div(input=log q_s, target=q_t) computes sum q_t (log q_t - log q_s) = KL(q_t || q_s);
    # "batchmean" divides the sum over (K, H, W) by B, so / (H W) gives the per-pixel mean.
    expected = F.kl_div(
        F.log_softmax(s / temperature, dim=1),
        F.softmax(t / temperature, dim=1),
        reduction="batchmean",
    ) / (5 * 6)
    torch.testing.assert_close(pixel_kl(s, t, temperature), expected)


def test_pixel_kl_known_value_two_classes() -> None:
    # student uniform (0.5, 0.5); teacher logits t*log(4), 0 -> q_t = (0.8, 0.2) at t = 2.
    s = torch.zeros(1, 2, 3, 3)
    t = torch.zeros(1, 2, 3, 3)
    t[:, 0] = 2.0 * math.log(4.0)
    expected = 0.8 * math.log(0.8 / 0.5) + 0.2 * math.log(0.2 / 0.5)
    assert pixel_kl(s, t, temperature=2.0).item() == pytest.approx(expected, rel=1e-6)
    assert pixel_kl(t, t, temperature=2.0).item() == pytest.approx(0.0, abs=1e-7)


def test_pkl_formula_t2_k05_with_teacher_resized() -> None:
    s = torch.randn(2, 4, 7, 7)
    t = torch.randn(2, 4, 16, 16)  # teacher at a larger resolution
    t_small = F.interpolate(t, size=(7, 7), mode="bilinear", align_corners=True)
    kl_sum = F.kl_div(F.log_softmax(s / 2, dim=1), F.softmax(t_small / 2, dim=1), reduction="sum")
    kl = kl_sum / (2 * 7 * 7)  # per-pixel mean, batch mean
    mse = ((s - t_small) ** 2).mean()
    expected = 0.5 * 2.0**2 * kl + (1 - 0.5) * mse
    torch.testing.assert_close(pkl_loss(s, t, temperature=2.0, k1=0.5), expected)
    torch.testing.assert_close(pixel_mse(s, t), mse)


def test_losses_average_over_batch() -> None:
    s, t = torch.randn(2, 3, 6, 6), torch.randn(2, 3, 9, 9)
    both = pkl_loss(s, t)
    apart = (pkl_loss(s[:1], t[:1]) + pkl_loss(s[1:], t[1:])) / 2
    torch.testing.assert_close(both, apart)
    fs, ft = torch.randn(2, 5, 6, 6), torch.randn(2, 5, 12, 12)
    torch.testing.assert_close(
        nfd_pair(fs, ft), (nfd_pair(fs[:1], ft[:1]) + nfd_pair(fs[1:], ft[1:])) / 2
    )


def test_pkl_gradient_reaches_student_not_teacher() -> None:
    s = torch.randn(2, 4, 5, 5, requires_grad=True)
    t = torch.randn(2, 4, 8, 8, requires_grad=True)
    pkl_loss(s, t).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert t.grad is None


def test_pkl_rejects_mismatched_classes() -> None:
    with pytest.raises(ValueError, match="number of classes"):
        pkl_loss(torch.randn(1, 4, 5, 5), torch.randn(1, 3, 5, 5))


def test_standardize_zero_mean_unit_variance_per_channel() -> None:
    x = torch.randn(2, 3, 8, 8) * 5 + 2
    z = standardize(x)
    torch.testing.assert_close(z.mean(dim=(2, 3)), torch.zeros(2, 3), atol=1e-5, rtol=0)
    torch.testing.assert_close(
        z.var(dim=(2, 3), unbiased=False), torch.ones(2, 3), atol=1e-4, rtol=0
    )


def test_nfd_zero_for_identical_features() -> None:
    f = torch.randn(2, 6, 9, 9)
    assert nfd_pair(f, f.clone()).item() == pytest.approx(0.0, abs=1e-7)
    assert nfd_loss([f, f], [f, f]).item() == pytest.approx(0.0, abs=1e-7)


def test_nfd_known_value_for_opposite_features() -> None:
    # Normal(-x) = -Normal(x); ||2 z|| = 2 sqrt(C H W) for standardised z.
    c, h, w = 4, 6, 5
    f = torch.randn(1, c, h, w)
    expected = 2 * math.sqrt(c * h * w) / (h * w)
    assert nfd_pair(-f, f).item() == pytest.approx(expected, rel=1e-4)


def test_nfd_unchanged_by_per_channel_affine_change() -> None:
    fs, ft = torch.randn(2, 5, 7, 7), torch.randn(2, 12, 14, 14)
    connector = nn.Conv2d(5, 12, 1)
    base = nfd_pair(fs, ft, connector)
    scale_s, shift_s = torch.rand(1, 5, 1, 1) + 0.5, torch.randn(1, 5, 1, 1) * 3
    scale_t, shift_t = torch.rand(1, 12, 1, 1) + 0.5, torch.randn(1, 12, 1, 1) * 3
    torch.testing.assert_close(
        nfd_pair(fs * scale_s + shift_s, ft, connector), base, rtol=1e-4, atol=0
    )
    torch.testing.assert_close(
        nfd_pair(fs, ft * scale_t + shift_t, connector), base, rtol=1e-4, atol=0
    )


def test_nfd_differing_sizes_and_channels() -> None:
    fs = torch.randn(2, 8, 7, 7, requires_grad=True)
    ft = torch.randn(2, 16, 13, 11, requires_grad=True)
    connector = nn.Conv2d(8, 16, 1)
    loss = nfd_pair(fs, ft, connector)
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    assert connector.weight.grad is not None and connector.weight.grad.abs().sum() > 0
    assert fs.grad is not None and ft.grad is None
    # The teacher side is standardised at its own size, then resized (bilinear, corners aligned).
    target = F.interpolate(standardize(ft.detach()), (7, 7), mode="bilinear", align_corners=True)
    manual = (target - connector(standardize(fs))).flatten(1).norm(dim=1).mean() / 49
    torch.testing.assert_close(loss, manual)


def test_nfd_needs_connector_when_channels_differ() -> None:
    with pytest.raises(ValueError, match="connector from 8 to 16"):
        nfd_pair(torch.randn(1, 8, 4, 4), torch.randn(1, 16, 4, 4))


def test_nfd_loss_sums_pairs() -> None:
    pairs = [(torch.randn(2, 3, 8, 8), torch.randn(2, 6, 16, 16)), (torch.randn(2, 4, 4, 4),) * 2]
    connectors = [nn.Conv2d(3, 6, 1), None]
    total = nfd_loss([p[0] for p in pairs], [p[1] for p in pairs], connectors)
    expected = nfd_pair(*pairs[0], connectors[0]) + nfd_pair(*pairs[1], None)
    torch.testing.assert_close(total, expected)
    with pytest.raises(ValueError, match="2 connectors for 1 feature pairs"):
        nfd_loss([pairs[0][0]], [pairs[0][1]], connectors)
