"""Known answers for the supervised losses, the lr rules and the segmentation task."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from utils.training.losses import build_seg_loss, cross_entropy, dice_loss, focal_loss
from utils.training.schedulers import build_epoch_lr, scaled_lr, step_lr, warmup_cosine_lr
from utils.training.task import SegmentationTask


def logits_and_target(seed: int = 0, size: int = 8):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 4, size, size, generator=g)  # (B, K, H, W)
    target = torch.randint(0, 4, (2, size, size), generator=g)  # (B, H, W)
    return logits, target


def test_cross_entropy_matches_manual_and_skips_ignored_pixels():
    logits, target = logits_and_target()
    target[0, :3] = 255
    valid = target != 255
    logp = logits.log_softmax(1).permute(0, 2, 3, 1)[valid]  # (N, K)
    manual = -logp.gather(1, target[valid][:, None]).mean()
    assert cross_entropy(logits, target) == pytest.approx(float(manual), rel=1e-5)
    weights = torch.tensor([1.0, 2.0, 0.5, 3.0])
    w = weights[target[valid]]
    manual_w = (-logp.gather(1, target[valid][:, None])[:, 0] * w).sum() / w.sum()
    assert cross_entropy(logits, target, weights) == pytest.approx(float(manual_w), rel=1e-5)


def test_all_ignored_batch_gives_zero_not_nan():
    logits, target = logits_and_target()
    target[:] = 255
    for fn in (cross_entropy, focal_loss):
        assert fn(logits, target).item() == 0.0


def test_focal_loss_known_values():
    logits, target = logits_and_target()
    ce_map = F.cross_entropy(logits, target, reduction="none")
    # gamma 0: alpha * CE
    assert focal_loss(logits, target, gamma=0.0) == pytest.approx(
        0.5 * float(ce_map.mean()), rel=1e-5
    )
    pt = torch.exp(-ce_map)
    expected = (0.5 * (1 - pt) ** 2 * ce_map).mean()
    assert focal_loss(logits, target) == pytest.approx(float(expected), rel=1e-5)
    # confident right answers cost (almost) nothing
    perfect = F.one_hot(target, 4).permute(0, 3, 1, 2).float() * 20
    assert focal_loss(perfect, target) < 1e-12


def test_dice_loss_perfect_and_wrong():
    _, target = logits_and_target()
    perfect = F.one_hot(target, 4).permute(0, 3, 1, 2).float() * 50
    assert dice_loss(perfect, target) == pytest.approx(0.0, abs=1e-5)
    wrong = F.one_hot((target + 1) % 4, 4).permute(0, 3, 1, 2).float() * 50
    assert dice_loss(wrong, target) == pytest.approx(1.0, abs=1e-4)
    # ignored pixels do not count, whatever is predicted there
    t2 = target.clone()
    t2[:, :4] = 255
    mixed = perfect.clone()
    mixed[:, :, :4] = wrong[:, :, :4]
    assert dice_loss(mixed, t2) == pytest.approx(0.0, abs=1e-5)


def test_small_logits_are_upsampled_to_the_label():
    logits, target = logits_and_target(size=16)
    small = logits[:, :, ::4, ::4]  # (B, K, 4, 4): a 1/4-resolution output
    up = F.interpolate(small, size=(16, 16), mode="bilinear", align_corners=False)
    assert cross_entropy(small, target) == pytest.approx(float(cross_entropy(up, target)))


def test_build_seg_loss_terms_and_errors():
    logits, target = logits_and_target()
    loss = build_seg_loss("focal", dice=True, class_weights=[1, 1, 1, 1])
    terms = loss.terms(logits, target)
    assert set(terms) == {"focal", "dice"}
    assert float(loss(logits, target)) == pytest.approx(float(sum(terms.values())))
    with pytest.raises(ValueError, match="3 values but the model predicts 4"):
        build_seg_loss("ce", class_weights=[1, 1, 1])(logits, target)
    with pytest.raises(ValueError, match="unknown segmentation loss"):
        build_seg_loss("lovasz")


def test_lr_scaling_and_clamps_of_the_original():
    # Adam: always 1e-4 / 1e-6 with the original clamps
    assert scaled_lr(1e-4, 1e-6, 32, "adam") == pytest.approx((1e-4, 1e-6))
    assert scaled_lr(5e-3, 5e-5, 8, "adam") == pytest.approx((1e-4, 1e-6))
    # SGD: batch/16 scaling inside [5e-4, 0.1] and [5e-6, 1e-3]
    assert scaled_lr(1e-2, 1e-4, 32, "sgd") == pytest.approx((2e-2, 2e-4))
    assert scaled_lr(1.0, 1e-1, 32, "sgd") == pytest.approx((0.1, 1e-3))
    assert scaled_lr(3e-3, 1e-5, 32, "adam", scale=False) == (3e-3, 1e-5)


def test_warmup_cosine_shape():
    lr, min_lr, total = 1e-3, 1e-5, 100
    values = [warmup_cosine_lr(e, lr, min_lr, total) for e in range(total)]
    assert values[0] == pytest.approx(1e-4)  # warm-up starts at 0.1 lr
    assert values[3] == pytest.approx(lr)  # 3 warm-up epochs (5% of 100, at most 3)
    assert all(a < b for a, b in zip(values[:3], values[1:4], strict=True))
    assert all(a >= b for a, b in zip(values[3:-1], values[4:], strict=True))
    assert values[95:] == [min_lr] * 5  # last 5% held at min_lr
    mid = 3 + (100 - 3 - 5) / 2
    assert warmup_cosine_lr(int(mid), lr, min_lr, total) == pytest.approx(
        min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * (int(mid) - 3) / 92))
    )


def test_step_schedule_reaches_min_lr_in_ten_steps():
    values = [step_lr(e, 1e-2, 1e-4, 100) for e in range(100)]
    assert values[0] == 1e-2 and values[9] == 1e-2
    assert values[10] == pytest.approx(1e-2 * (1e-2) ** (1 / 9))
    assert values[99] == pytest.approx(1e-4)


def test_epoch_lr_applies_to_every_group_and_records_state():
    rule = build_epoch_lr("cos", 1e-2, 1e-4, 10, batch_size=32, optimizer="sgd")
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    value = rule.apply(opt, 4)
    assert opt.param_groups[0]["lr"] == value == rule.value(4)
    assert rule.state_dict()["last_epoch"] == 4 and rule.lr == pytest.approx(2e-2)


class AuxNet(nn.Module):
    """A model with an auxiliary head, as the comparison models (aux_losses contract)."""

    def __init__(self):
        super().__init__()
        self.num_classes = 4
        self.conv = nn.Conv2d(3, 4, 1)
        self.aux = nn.Conv2d(3, 4, 1)

    def forward(self, x, return_aux=False):  # noqa: ANN001
        logits = self.conv(x)
        if return_aux:
            return logits, {"aux1": self.aux(x[:, :, ::2, ::2])}  # a 1/2-resolution aux map
        return logits

    def aux_losses(self, aux, target, seg_loss):  # noqa: ANN001
        return {"aux1": 0.4 * seg_loss(aux["aux1"], target)}


def test_segmentation_task_adds_weighted_aux_terms():
    net = AuxNet()
    loss = build_seg_loss("ce")
    task = SegmentationTask(net, loss)
    images = torch.rand(2, 3, 8, 8)
    _, target = logits_and_target()
    terms = task(images, target)
    assert set(terms) == {"ce", "aux1", "loss"}
    expected = loss(net(images), target) + 0.4 * loss(net.aux(images[:, :, ::2, ::2]), target)
    assert float(terms["loss"].detach()) == pytest.approx(float(expected.detach()), rel=1e-6)
    assert task.extra_state() == {}
    with pytest.raises(ValueError, match="distillation"):
        task.load_extra_state({"kd_connectors": {}})
