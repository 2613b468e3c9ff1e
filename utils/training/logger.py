"""Training feedback written to the run folder: TensorBoard scalars, overlays, curves.

Per epoch: each loss term, the lr and the throughput; per evaluation: val mIoU, mPA, every
class's IoU and a few prediction overlays (image | ground truth | prediction). The history is
kept in ``history.json`` (so a resumed run continues its curves) and drawn as ``loss.png``
and ``miou.png`` with matplotlib, like the original's ``epoch_loss.png`` / ``epoch_miou.png``.
Only rank 0 creates a logger.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from utils.data.labels import index_to_colour
from utils.fileio import atomic_path, write_text


def denormalize(image: torch.Tensor, mean=None, std=None) -> np.ndarray:  # noqa: ANN001
    """(3, H, W) network input -> (H, W, 3) uint8 RGB, undoing the optional mean/std."""
    x = image.detach().float().cpu().numpy().transpose(1, 2, 0)
    if std is not None:
        x = x * np.asarray(std, dtype=np.float32)
    if mean is not None:
        x = x + np.asarray(mean, dtype=np.float32)
    return (x * 255.0).clip(0, 255).round().astype(np.uint8)


def overlay_panel(image: np.ndarray, label: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Side by side: photo | ground truth blended | prediction blended; (H, 3W, 3) uint8."""
    label = np.where(label == 255, 0, label)

    def blend(mask: np.ndarray) -> np.ndarray:
        colour = index_to_colour(mask).astype(np.float32)
        alpha = np.where(mask[..., None] > 0, 0.5, 0.0)
        return (image * (1 - alpha) + colour * alpha).astype(np.uint8)

    return np.concatenate([image, blend(label), blend(pred)], axis=1)


class TrainingLogger:
    """History, TensorBoard and plots of one run (rank 0 only)."""

    def __init__(self, run_dir: str | Path, class_names: Sequence[str], tensorboard: bool = True):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.class_names = list(class_names)
        self.history_path = self.run_dir / "history.json"
        self.history: dict[str, list[dict]] = {"train": [], "eval": []}
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(self.run_dir / "tensorboard"))

    def resume(self, epoch: int) -> None:
        """Reload history.json, keeping entries of epochs <= `epoch` (the checkpoint's)."""
        if self.history_path.is_file():
            old = json.loads(self.history_path.read_text())
            self.history = {
                key: [e for e in old.get(key, []) if e["epoch"] <= epoch]
                for key in ("train", "eval")
            }

    def log_train(self, epoch: int, terms: dict[str, float], lr: float, images_per_s: float):
        """One finished training epoch (1-based `epoch`): mean loss terms, lr, throughput."""
        entry = {"epoch": epoch, "lr": lr, "images_per_s": images_per_s, **terms}
        self.history["train"].append(entry)
        if self.writer is not None:
            for name, value in terms.items():
                self.writer.add_scalar(f"train/{name}", value, epoch)
            self.writer.add_scalar("train/lr", lr, epoch)
            self.writer.add_scalar("train/images_per_s", images_per_s, epoch)
        self._save()

    def log_eval(
        self,
        epoch: int,
        metrics: dict,
        overlays: Sequence[np.ndarray] = (),
    ) -> None:
        """One evaluation: mIoU, mPA, accuracy, per-class IoU, val loss, overlay panels."""
        entry = {
            "epoch": epoch,
            "mIoU": metrics["mIoU"],
            "mPA": metrics["mPA"],
            "accuracy": metrics["accuracy"],
            "IoU": list(metrics["IoU"]),
        }
        if metrics.get("loss") is not None:
            entry["loss"] = metrics["loss"]
        self.history["eval"].append(entry)
        if self.writer is not None:
            for key in ("mIoU", "mPA", "accuracy", "loss"):
                if entry.get(key) is not None and math.isfinite(entry[key]):
                    self.writer.add_scalar(f"val/{key}", entry[key], epoch)
            for name, iou in zip(self.class_names, entry["IoU"], strict=False):
                if iou is not None and math.isfinite(iou):
                    self.writer.add_scalar(f"val_IoU/{name}", iou, epoch)
            for i, panel in enumerate(overlays):
                self.writer.add_image(f"val_overlay/{i}", panel, epoch, dataformats="HWC")
            self.writer.flush()
        self._save()

    def _save(self) -> None:
        write_text(self.history_path, json.dumps(self.history, indent=1, allow_nan=True))

    def plot(self) -> None:
        """Write loss.png (every train term, val loss) and miou.png (val mIoU) to the run.

        Plain matplotlib Figures (no pyplot): no GUI backend, no global figure state.
        """
        train = self.history["train"]
        if train:
            fig = Figure(figsize=(6, 4))
            ax = fig.subplots()
            epochs = [e["epoch"] for e in train]
            skip = {"epoch", "lr", "images_per_s"}
            for name in [k for k in train[-1] if k not in skip]:
                ax.plot(epochs, [e.get(name, float("nan")) for e in train], label=f"train {name}")
            val = [e for e in self.history["eval"] if "loss" in e]
            if val:
                ax.plot([e["epoch"] for e in val], [e["loss"] for e in val], "o-", label="val loss")
            ax.set_xlabel("epoch")
            ax.set_ylabel("loss")
            ax.grid(alpha=0.3)
            ax.legend()
            fig.tight_layout()
            with atomic_path(self.run_dir / "loss.png") as tmp:
                fig.savefig(tmp, dpi=100)
        evals = self.history["eval"]
        if evals:
            fig = Figure(figsize=(6, 4))
            ax = fig.subplots()
            ax.plot(
                [e["epoch"] for e in evals],
                [100 * e["mIoU"] for e in evals],
                "o-",
                label="val mIoU",
            )
            ax.set_xlabel("epoch")
            ax.set_ylabel("mIoU (%)")
            ax.grid(alpha=0.3)
            ax.legend()
            fig.tight_layout()
            with atomic_path(self.run_dir / "miou.png") as tmp:
                fig.savefig(tmp, dpi=100)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
