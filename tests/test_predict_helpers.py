"""Shared pieces for the prediction, ONNX and evaluation tests (no tests of its own).

`TinySegNet` honours the model contract of nets (num_classes, default_input_size,
fixed_input_size, build_config, backbone, logits at input size) with a few hundred weights, so
the tests run in milliseconds. `register_tiny` puts it in the nets registry for a test, so
project checkpoints of it go through nets.model_from_checkpoint like a real model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from nets.checkpoint import build_checkpoint, save_checkpoint
from utils.data.dataset import VOCSegmentation
from utils.data.preprocess import CLASS_NAMES, IGNORE_INDEX


class TinySegNet(nn.Module):
    """Conv(3->8, stride 2) + BN + ReLU, conv(8->K), bilinear up: logits (B, K, H, W)."""

    def __init__(self, num_classes: int = 4, width: int = 8) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.default_input_size = 32
        self.fixed_input_size = False
        self.build_config = {
            "name": "tiny_seg",
            "num_classes": num_classes,
            "options": {"width": width},
        }
        self.backbone = nn.Sequential(
            nn.Conv2d(3, width, 3, stride=2, padding=1), nn.BatchNorm2d(width), nn.ReLU()
        )
        self.head = nn.Conv2d(width, num_classes, 1)

    def forward(self, x: torch.Tensor, return_features: bool = False):
        f = self.backbone(x)  # (B, W, H/2, W/2)
        logits = F.interpolate(self.head(f), size=x.shape[-2:], mode="bilinear")
        return ([f], logits) if return_features else logits


def make_tiny(num_classes: int = 4, seed: int = 0) -> TinySegNet:
    torch.manual_seed(seed)
    model = TinySegNet(num_classes).eval()
    with torch.no_grad():  # non-trivial BN statistics, so eval differs from identity
        model.backbone[1].running_mean.uniform_(-0.2, 0.2)
        model.backbone[1].running_var.uniform_(0.5, 2.0)
    return model


def train_tiny(
    root: str | Path, steps: int = 200, size: int = 64, width: int = 16, seed: int = 0
) -> TinySegNet:
    """A TinySegNet trained on the train split of the VOC set at `root`, letterboxed to `size`.

    Full-batch Adam on class-weighted cross-entropy (defects x5: they cover a few percent of the
    pixels) for `steps` steps, a few seconds on a CPU: a model that finds some of the defects,
    so that comparing the mIoU of its float, bf16 and INT8 deployments means something (at
    random weights a model scores near zero whatever runs it). Register it with
    `register_tiny` before loading a checkpoint of it.
    """
    torch.manual_seed(seed)
    data = VOCSegmentation(root, "train", size)
    pairs = [data[i] for i in range(len(data))]
    x = torch.stack([p[0] for p in pairs])  # (N, 3, size, size)
    y = torch.stack([p[1] for p in pairs]).long()  # (N, size, size)
    model = TinySegNet(len(CLASS_NAMES), width).train()
    weights = torch.tensor([1.0] + [5.0] * (len(CLASS_NAMES) - 1))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(steps):
        loss = F.cross_entropy(model(x), y, weight=weights, ignore_index=IGNORE_INDEX)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def write_project_checkpoint(
    model: nn.Module, path: Path, input_size: int = 32, class_names=None
) -> Path:
    """A checkpoint in the project format of the team brief."""
    names = list(class_names or CLASS_NAMES[: model.num_classes])
    if len(names) != model.num_classes:
        names = [f"class_{k}" for k in range(model.num_classes)]
    ckpt = build_checkpoint(model, input_size=(input_size, input_size), class_names=names, epoch=1)
    return save_checkpoint(ckpt, path)


def register_tiny(monkeypatch) -> None:
    """Make nets.build_model("tiny_seg", ...) build a TinySegNet for this test."""
    import nets

    monkeypatch.setitem(
        nets.MODELS,
        "tiny_seg",
        lambda num_classes=4, width=8, **kw: TinySegNet(num_classes, width),
    )


def orange_photo(h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    """A small synthetic RGB photo: an orange disc on a pale background with a dark spot."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    image = np.full((h, w, 3), 220, np.uint8)
    disc = (yy - h / 2) ** 2 + (xx - w / 2) ** 2 < (0.4 * min(h, w)) ** 2
    image[disc] = (235, 140, 30)
    spot = (yy - h / 2) ** 2 + (xx - w / 2 - 4) ** 2 < 9
    image[spot] = (90, 60, 30)
    noise = rng.integers(-5, 6, image.shape)
    return np.clip(image.astype(int) + noise, 0, 255).astype(np.uint8)
