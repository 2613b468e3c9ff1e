"""How real are the synthetic oranges? A quick proxy (not a test, not the paper's model).

Trains a tiny CNN (about 80k parameters, one CPU thread) only on synthetic oranges for a few
minutes, then scores it on the six real photos of ../shared/samples/orange_real (letterboxed
to 224, per-class IoU and mIoU from one confusion matrix). It answers "does a network that
never saw a real orange find real sunburn and ulcers?" in minutes on a CPU; the real measure
is FastSegFormer-P trained with train.py on the synthetic set and scored with get_miou.py.

    python -m utils.data.synthetic --out data/synthetic_oranges --num 200 --seed 0
    python tools/realism_proxy.py --data data/synthetic_oranges --minutes 6
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from utils.cli import parse_config  # noqa: E402
from utils.data.dataset import VOCSegmentation  # noqa: E402
from utils.data.labels import read_mask  # noqa: E402
from utils.data.preprocess import CLASS_NAMES, letterbox, letterbox_mask, read_image, to_tensor  # noqa: E402
from utils.metrics import confusion_matrix, segmentation_metrics  # noqa: E402

REAL = Path(__file__).resolve().parents[2] / "shared" / "samples" / "orange_real"


@dataclass
class Config:
    data: str  # synthetic VOC root (with trainval.txt); required
    real: str = str(REAL)  # folder with the real photos and masks
    minutes: float = 6.0  # training time
    size: int = 224  # input side (letterboxed)
    seed: int = 0  # random seed


def conv_bn_relu(c_in: int, c_out: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride, dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class TinySegNet(nn.Module):
    """Three-stage encoder (strides 2/4/8, dilated at 8) and a two-step U-Net decoder."""

    def __init__(self, num_classes: int = 4) -> None:
        super().__init__()
        self.enc1 = nn.Sequential(conv_bn_relu(3, 16), conv_bn_relu(16, 16, 2))
        self.enc2 = nn.Sequential(conv_bn_relu(16, 32, 2), conv_bn_relu(32, 32))
        self.enc3 = nn.Sequential(
            conv_bn_relu(32, 64, 2),
            conv_bn_relu(64, 64, dilation=2),
            conv_bn_relu(64, 64, dilation=4),
        )
        self.dec2 = conv_bn_relu(64 + 32, 32)
        self.dec1 = conv_bn_relu(32 + 16, 24)
        self.head = nn.Conv2d(24, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.enc1(x)  # (B, 16, H/2, W/2)
        b = self.enc2(a)  # (B, 32, H/4, W/4)
        c = self.enc3(b)  # (B, 64, H/8, W/8)
        u = F.interpolate(c, size=b.shape[2:], mode="bilinear", align_corners=False)
        u = self.dec2(torch.cat([u, b], 1))
        u = F.interpolate(u, size=a.shape[2:], mode="bilinear", align_corners=False)
        u = self.dec1(torch.cat([u, a], 1))
        return F.interpolate(self.head(u), size=x.shape[2:], mode="bilinear", align_corners=False)


def train(model: nn.Module, data: Path, minutes: float, size: int) -> int:
    ds = VOCSegmentation(data, "trainval", size, 4, train=True)
    loader = DataLoader(ds, batch_size=8, shuffle=True, num_workers=1, drop_last=True)
    opt = torch.optim.Adam(model.parameters(), 2e-3)
    weight = torch.tensor([1.0, 2.0, 3.0, 3.0])  # defects are a few percent of the pixels
    t0, steps = time.perf_counter(), 0
    model.train()
    while time.perf_counter() - t0 < minutes * 60:
        for x, y in loader:
            loss = F.cross_entropy(model(x), y, weight=weight, ignore_index=255)
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps += 1
            if steps % 50 == 0:
                print(f"step {steps}  loss {loss.item():.3f}  {time.perf_counter() - t0:.0f} s")
            if time.perf_counter() - t0 >= minutes * 60:
                break
    return steps


@torch.no_grad()
def score_on_real(model: nn.Module, real: Path, size: int) -> dict:
    model.eval()
    cm = np.zeros((4, 4), np.int64)
    for photo in sorted((real / "JPEGImages").glob("*.jpg")):
        image, _ = letterbox(read_image(photo), (size, size))
        mask = letterbox_mask(
            read_mask(real / "SegmentationClass" / f"{photo.stem}.png", 4), (size, size)
        )
        pred = model(torch.from_numpy(to_tensor(image))[None]).argmax(1)[0].numpy()
        cm += confusion_matrix(pred, mask, 4)
    return segmentation_metrics(cm)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_config(Config, argv, description=__doc__)
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    model = TinySegNet()
    steps = train(model, Path(args.data), args.minutes, args.size)
    met = score_on_real(model, Path(args.real), args.size)
    print(f"{steps} steps of batch 8; real photos ({args.size}x{args.size} letterbox):")
    for name, iou in zip(CLASS_NAMES, met["IoU"], strict=True):
        print(f"  IoU {name:<14} {100 * iou:6.2f}")
    print(f"  mIoU {100 * met['mIoU']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
