"""Does data loading keep up with training? A benchmark (not a test).

Measures, on this machine:

1. samples/s of the training loader alone (VOCSegmentation with the original augmentation,
   224x224, batch 8, 2 workers): decoding JPEG + PNG, checks, augmentation, to tensors;
2. samples/s one FastSegFormer-P training step consumes (forward, CE loss, backward, Adam
   step) on tensors already in memory, batch 8 at 224x224;
3. samples/s of the same training step fed by that loader (what training actually gets).

If (1) is well above (2), and (3) is close to (2), loading does not starve training.

    python tools/loader_speed.py                      # synthetic oranges in a temp folder
    python tools/loader_speed.py --data data/Orange_Navel_1.5k --batches 30
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import nets  # noqa: E402
from utils.cli import parse_config  # noqa: E402
from utils.data.dataset import VOCSegmentation  # noqa: E402
from utils.data.synthetic import generate_dataset  # noqa: E402


@dataclass
class Config:
    data: str = ""  # VOC root (default: 64 synthetic oranges in a temporary folder)
    size: int = 224  # input side
    batch: int = 8  # batch size
    workers: int = 2  # data-loading worker processes
    batches: int = 40  # loader batches to time
    steps: int = 3  # training steps to time
    model: str = "fastsegformer_p"  # registry model of the training step


def _loader(root: Path, size: int, batch: int, workers: int) -> DataLoader:
    ds = VOCSegmentation(root, "train", size, 4, train=True)
    return DataLoader(
        ds,
        batch_size=batch,
        shuffle=True,
        num_workers=workers,
        drop_last=True,
        persistent_workers=workers > 0,
    )


def loader_rate(loader: DataLoader, batches: int) -> float:
    """Samples/s of iterating the loader (first batch excluded: worker start-up)."""
    it = iter(loader)
    next(it)
    n, t0 = 0, time.perf_counter()
    for _ in range(batches):
        try:
            x, _ = next(it)
        except StopIteration:
            it = iter(loader)
            x, _ = next(it)
        n += x.shape[0]
    return n / (time.perf_counter() - t0)


def _step_fn(model: torch.nn.Module):  # noqa: ANN202
    opt = torch.optim.Adam((p for p in model.parameters() if p.requires_grad), lr=1e-4)
    loss_fn = torch.nn.CrossEntropyLoss(ignore_index=255)

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        logits = model(x)  # (B, 4, H, W)
        loss = loss_fn(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def step_rate(step, batch: int, size: int, steps: int) -> float:  # noqa: ANN001
    x = torch.rand(batch, 3, size, size)
    y = torch.randint(0, 4, (batch, size, size))
    step(x, y)  # warm-up
    t0 = time.perf_counter()
    for _ in range(steps):
        step(x, y)
    return batch * steps / (time.perf_counter() - t0)


def fed_rate(step, loader: DataLoader, steps: int) -> float:  # noqa: ANN001
    it = iter(loader)
    x, y = next(it)
    step(x, y)
    n, t0 = 0, time.perf_counter()
    for _ in range(steps):
        try:
            x, y = next(it)
        except StopIteration:
            it = iter(loader)
            x, y = next(it)
        step(x, y)
        n += x.shape[0]
    return n / (time.perf_counter() - t0)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_config(Config, argv, description=__doc__)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.data) if args.data else None
        if root is None:
            root = generate_dataset(Path(tmp) / "syn", num=64, seed=0, size=512)
        loader = _loader(root, args.size, args.batch, args.workers)
        print(
            f"torch {torch.__version__}, {torch.get_num_threads()} threads; data {root}; "
            f"{args.size}x{args.size}, batch {args.batch}, {args.workers} workers"
        )
        rate = loader_rate(loader, args.batches)
        print(f"training loader alone:               {rate:7.1f} samples/s")
        try:
            model = nets.build_model(args.model, 4).train()
        except Exception as err:  # the model zoo is optional for this benchmark
            print(f"no model ({err}); step rates skipped")
            return 0
        step = _step_fn(model)
        alone = step_rate(step, args.batch, args.size, args.steps)
        print(f"{args.model} training step alone:  {alone:7.1f} samples/s")
        fed = fed_rate(step, loader, args.steps)
        print(f"{args.model} step fed by loader:   {fed:7.1f} samples/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
