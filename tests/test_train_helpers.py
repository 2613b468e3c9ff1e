"""A tiny model and in-memory data set for the training-loop tests (CPU, milliseconds).

The tiny model honours the nets contract the trainer relies on: ``num_classes``,
``build_config``, ``backbone`` (what freezing freezes), logits at input size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from utils.training.config import TrainConfig


class TinySegNet(nn.Module):
    """Conv backbone at stride 2 + 1x1 head, upsampled to the input size."""

    def __init__(self, num_classes: int = 3, width: int = 8) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.default_input_size = 32
        self.fixed_input_size = False
        self.build_config = {"name": "tiny_test", "num_classes": num_classes, "options": {}}
        self.backbone = nn.Sequential(
            nn.Conv2d(3, width, 3, stride=2, padding=1), nn.BatchNorm2d(width), nn.ReLU()
        )
        self.head = nn.Conv2d(width, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.head(self.backbone(x))  # (B, K, H/2, W/2)
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)


class TinySegSet(Dataset):
    """Random colour blobs: label k where channel k-1 dominates (learnable in a few steps)."""

    def __init__(self, n: int = 16, size: int = 32, num_classes: int = 3, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.images = torch.rand(n, 3, size, size, generator=g)  # (N, 3, H, W)
        labels = torch.zeros(n, size, size, dtype=torch.long)
        for k in range(1, num_classes):
            labels[self.images[:, k - 1] > 0.75] = k
        labels[:, :2, :2] = 255  # a few ignored pixels
        self.labels = labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[i], self.labels[i]


def tiny_config(tmp_path, **overrides) -> TrainConfig:  # noqa: ANN001
    """A TrainConfig for seconds-long runs into tmp_path."""
    values = dict(
        model="tiny_test",
        num_classes=3,
        input_size=(32, 32),
        epochs=2,
        freeze_epochs=1,
        batch_size=4,
        freeze_batch_size=8,
        lr=1e-2,
        min_lr=1e-4,
        scale_lr=False,
        eval_period=1,
        save_period=1,
        save_dir=str(tmp_path),
        name="run",
        workers=0,
        device="cpu",
        overlays=2,
        seed=3,
    )
    values.update(overrides)
    return TrainConfig(**values)


def make_tiny_voc(root, num: int = 12, size: int = 64):  # noqa: ANN001, ANN201
    """A small synthetic VOC set (utils.data.synthetic) for end-to-end runs of train.py."""
    from utils.data.synthetic import generate_dataset

    return generate_dataset(root, num=num, seed=0, size=size)


def run_env() -> dict:
    """Environment for train.py subprocesses: one thread each, repository importable."""
    import os
    from pathlib import Path

    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    return env
