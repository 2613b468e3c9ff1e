"""The memory benchmark's baseline (tools/kd_memory.py) really keeps the teacher's graph."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from test_kd_task import TinySegNet

from tools.kd_memory import TeacherGraphKeptTask
from utils.training.distillation import DistillationTask


def _tasks() -> list[DistillationTask]:
    tasks = []
    for cls in (DistillationTask, TeacherGraphKeptTask):
        torch.manual_seed(0)
        tasks.append(
            cls(
                TinySegNet((4, 6)),
                TinySegNet((8, 12)),
                lambda logits, labels: F.cross_entropy(logits, labels),
                student_size=(16, 16),
                teacher_size=(32, 32),
            )
        )
    return tasks


def test_graph_kept_variant_differs_only_in_the_teacher_graph() -> None:
    ours, kept = _tasks()
    images = torch.rand(2, 3, 32, 32)
    labels = torch.randint(0, 3, (2, 32, 32))
    seen = []
    for task in (ours, kept):
        task.teacher.register_forward_hook(lambda m, i, out: seen.append(out[1].grad_fn))
        terms = task(images, labels)
        terms["loss"].backward()
        seen.append(terms["loss"].detach())
    # ours: no teacher graph; baseline: a graph, alive until the step ends
    assert seen[0] is None and seen[2] is not None
    assert kept.kept and kept.kept[0][1].grad_fn is not None
    torch.testing.assert_close(seen[1], seen[3])  # the same loss: only memory differs
