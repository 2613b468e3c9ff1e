"""DistillationTask (utils/training/distillation.py) with a tiny teacher and student of our own.

The tiny models honour the project's forward contract: ``model(x)`` -> logits at input size and
``model(x, return_features=True)`` -> (features list, logits).
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from utils.training.distillation import (
    KD_TERMS,
    DistillationTask,
    feature_channels,
    parse_kd,
    parse_pairs,
    resize_labels,
)

NUM_CLASSES = 3


class TinySegNet(nn.Module):
    """Two stride-2 conv stages (features) and a 1x1 classifier, logits upsampled to the input."""

    def __init__(self, channels: tuple[int, ...], num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        layers, c_in = [], 3
        for c in channels:
            layers.append(nn.Sequential(nn.Conv2d(c_in, c, 3, 2, 1), nn.BatchNorm2d(c), nn.ReLU()))
            c_in = c
        self.stages = nn.ModuleList(layers)
        self.classifier = nn.Conv2d(c_in, num_classes, 1)

    def forward(self, x: torch.Tensor, return_features: bool = False):
        features, h = [], x
        for stage in self.stages:
            h = stage(h)
            features.append(h)
        logits = F.interpolate(self.classifier(h), x.shape[-2:], mode="bilinear")
        return (features, logits) if return_features else logits


def _batch(size: int = 32, batch: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    images = torch.rand(batch, 3, size, size, generator=g)
    labels = torch.randint(0, NUM_CLASSES, (batch, size, size), generator=g)
    labels[:, :2] = 255  # a strip of ignored pixels
    return images, labels


def _task(kd: str = "logits+nfd", **kwargs) -> DistillationTask:
    torch.manual_seed(0)
    student = TinySegNet((4, 6))
    teacher = TinySegNet((8, 12, 16))
    return DistillationTask(
        student,
        teacher,
        lambda logits, labels: F.cross_entropy(logits, labels, ignore_index=255),
        student_size=(16, 16),
        teacher_size=(32, 32),
        kd=kd,
        **kwargs,
    )


def test_default_pairs_are_index_aligned_and_connectors_map_channels() -> None:
    task = _task()
    assert task.feature_pairs == [(0, 0), (1, 1)]  # the student returns 2 maps, the teacher 3
    assert [(c.in_channels, c.out_channels) for c in task.connectors] == [(4, 8), (6, 12)]
    assert feature_channels(task.teacher, (32, 32)) == [8, 12, 16]


def test_selected_pairs_and_errors() -> None:
    task = _task(feature_pairs=parse_pairs(["1:2"]))
    assert [(c.in_channels, c.out_channels) for c in task.connectors] == [(6, 16)]
    with pytest.raises(ValueError, match="out of range"):
        _task(feature_pairs=[(2, 0)])
    with pytest.raises(ValueError, match="student_index:teacher_index"):
        parse_pairs(["1-2"])
    with pytest.raises(ValueError, match="unknown kd mode"):
        _task(kd="features")


def test_forward_returns_named_terms_with_weights() -> None:
    task = _task(kd_weight=0.5, nfd_weight=5.0)
    terms = task(*_batch())
    assert set(terms) == {"ce", "pkl", "nfd", "loss"}
    expected = terms["ce"] + 0.5 * terms["pkl"] + 5.0 * terms["nfd"]
    torch.testing.assert_close(terms["loss"], expected)


def test_few_steps_loss_falls_connectors_learn_teacher_frozen() -> None:
    task = _task()
    task.train()
    teacher_before = copy.deepcopy(task.teacher.state_dict())
    connector_before = task.connectors[0].weight.detach().clone()
    optimizer = torch.optim.Adam([p for p in task.parameters() if p.requires_grad], lr=1e-2)
    images, labels = _batch()
    losses = []
    for _ in range(15):
        optimizer.zero_grad()
        terms = task(images, labels)
        terms["loss"].backward()
        assert all(
            c.weight.grad is not None and c.weight.grad.abs().sum() > 0 for c in task.connectors
        )
        optimizer.step()
        losses.append(terms["loss"].item())
    assert losses[-1] < 0.8 * losses[0]
    assert not torch.equal(task.connectors[0].weight, connector_before)
    assert not task.teacher.training  # task.train() leaves the teacher in eval mode
    for key, value in task.teacher.state_dict().items():  # weights and BN statistics unchanged
        assert torch.equal(value, teacher_before[key]), key
    assert all(p.grad is None for p in task.teacher.parameters())


def test_teacher_runs_without_autograd_graph() -> None:
    task = _task()
    seen = []
    task.teacher.register_forward_hook(lambda m, i, out: seen.append(out[1].requires_grad))
    task(*_batch())
    assert seen == [False]


def test_logits_mode_adds_no_connectors() -> None:
    task = _task(kd="logits")
    terms = task(*_batch())
    assert set(terms) == {"ce", "pkl", "loss"}
    assert len(task.connectors) == 0 and task.extra_state() == {}
    assert {id(p) for p in task.parameters()} == {id(p) for p in task.model.parameters()}


def test_parse_kd_terms_in_any_order() -> None:
    assert parse_kd("logits") == ("logits",)
    assert parse_kd("logits+nfd") == parse_kd("nfd+logits") == ("logits", "nfd")
    assert parse_kd(" CWD + dist ") == ("dist", "cwd")
    assert parse_kd("cwd+nfd+dist+logits") == KD_TERMS
    for bad, message in [
        ("features", "unknown kd term"),
        ("logits+", "-joined list"),
        ("", "-joined list"),
        ("dist+dist", "twice"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_kd(bad)


@pytest.mark.parametrize(("kd", "name"), [("dist", "dist"), ("cwd", "cwd")])
def test_logit_only_modes_run_the_teacher_without_features(kd: str, name: str) -> None:
    task = _task(kd=kd, dist_weight=2.0, cwd_weight=3.0)
    seen = []
    task.teacher.register_forward_hook(lambda m, i, out: seen.append(type(out)))
    terms = task(*_batch())
    assert set(terms) == {"ce", name, "loss"} and seen == [torch.Tensor]
    weight = 2.0 if kd == "dist" else 3.0
    torch.testing.assert_close(terms["loss"], terms["ce"] + weight * terms[name])
    assert len(task.connectors) == 0 and task.extra_state() == {}
    assert f"kd {kd}: loss = seg + " in task.describe()


def test_all_terms_combine_with_their_weights() -> None:
    weights = {"kd_weight": 0.5, "nfd_weight": 5.0, "dist_weight": 2.0, "cwd_weight": 3.0}
    task = _task(kd="cwd+dist+nfd+logits", dist_tau=2.0, cwd_tau=1.0, **weights)
    assert task.kd == "logits+nfd+dist+cwd" and len(task.connectors) == 2
    terms = task(*_batch())
    assert set(terms) == {"ce", "pkl", "nfd", "dist", "cwd", "loss"}
    expected = (
        terms["ce"] + 0.5 * terms["pkl"] + 5.0 * terms["nfd"] + 2.0 * terms["dist"]
        + 3.0 * terms["cwd"]
    )  # fmt: skip
    torch.testing.assert_close(terms["loss"], expected)
    with pytest.raises(ValueError, match="--kd logits"):  # no connectors to take them
        _task(kd="dist").load_extra_state(task.extra_state())


def test_state_dicts_hold_no_teacher_and_student_holds_no_connectors() -> None:
    task = _task()
    keys = set(task.state_dict())
    assert keys == {f"model.{k}" for k in task.model.state_dict()} | {
        f"connectors.{k}" for k in task.connectors.state_dict()
    }
    assert not any("connector" in k for k in task.model.state_dict())


def test_extra_state_round_trip_and_mismatch() -> None:
    task = _task()
    with torch.no_grad():
        task.connectors[1].weight.fill_(0.25)
    extra = task.extra_state()
    other = _task()
    other.load_extra_state(extra)
    assert torch.equal(other.connectors[1].weight, task.connectors[1].weight)
    with pytest.raises(ValueError, match="feature pairs"):
        _task(feature_pairs=[(1, 1)]).load_extra_state(extra)
    with pytest.raises(ValueError, match="--kd logits"):
        _task(kd="logits").load_extra_state(extra)


def test_resize_labels_nearest_keeps_ignore() -> None:
    labels = torch.zeros(1, 8, 8, dtype=torch.long)
    labels[:, :4] = 255
    labels[:, 4:, 4:] = 2
    small = resize_labels(labels, (4, 4))
    assert small.dtype == torch.long
    assert set(small.unique().tolist()) == {0, 2, 255}
    assert torch.equal(small[0, :2], torch.full((2, 4), 255))
