"""The one training / evaluation loop of the project (supervised and distillation).

FastSegFormer (Cai et al., Computers and Electronics in Agriculture 217, 108604, 2024) is
trained with the unet-pytorch recipe: Adam, lr scaled by batch/16 and clamped, YOLOX warm-up
+ cosine set once per epoch, the backbone frozen for the first 50 epochs (with its own batch
size) then unfrozen until epoch 1000, evaluation and checkpoints every 5 epochs. This module
runs that recipe for any *task* (see utils/training/task.py), on one CPU/GPU or under torchrun/DDP.

API (what train.py and train_distillation.py use)
-------------------------------------------------
``TrainConfig``            dataclass of every training field with the paper's defaults; a
                           script's ``Config`` subclasses it (redeclaring the defaults it shows
                           in its editable block, adding its own fields).
``validate_config(cfg)``   raises ``ConfigError`` (a ValueError) naming the bad value; call it
                           before any work. ``merge_resume_config`` applies --resume.
``prepare_run_dir(cfg, info)`` the run folder (same on every rank; resume -> checkpoint's folder).
``Trainer(cfg, task, train_set, val_set, class_names=..., run_dir=..., info=...,
          eval_input_size=None, preprocess=None, eval_loss=None)``
    ``task(images, labels) -> dict`` of loss terms with "loss"; ``task.model`` is evaluated,
    (un)frozen (``model.backbone``) and saved; ``task.extra_state()/load_extra_state()`` go to
    the checkpoint's "extra". The optimizer covers ``p for p in task.parameters() if
    p.requires_grad`` at construction (so freeze teachers before). ``train_set`` yields
    (image (3, H, W) float, label (H, W) long) at the *train* size (teacher size for KD);
    ``val_set`` at ``eval_input_size`` (default cfg.input_size), the size saved in
    checkpoints. ``eval_loss(logits, labels)`` (optional) adds a val loss curve.
``Trainer.fit() -> TrainResult``  trains epochs [start, cfg.epochs); writes last.pth every
    epoch, best.pth on a better val mIoU, ep{N:03d}.pth every save period, config.yaml,
    history.json, TensorBoard events, loss.png and miou.png into the run folder. Resumes from
    cfg.resume exactly (epoch, lr, optimizer/scaler state, freeze phase, data order).
    Ctrl-C writes interrupted.pth (resumable) and raises KeyboardInterrupt; a NaN/inf loss
    raises ``NonFiniteLossError`` without touching the last good checkpoint.
``evaluate_model(model, dataset, num_classes, ...) -> dict``  mIoU etc. from one confusion
    matrix over the whole split (utils.metrics.segmentation_metrics keys, plus "loss").
"""

from __future__ import annotations

import dataclasses
import datetime
import gc
import math
import random
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm import tqdm

from utils.checkpoint import (
    CheckpointError,
    build_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from utils.cli import config_to_dict, save_config
from utils.metrics import ConfusionMatrix, segmentation_metrics
from utils.training import distributed
from utils.training.distributed import DistInfo, ShardSampler
from utils.training.logger import TrainingLogger, denormalize, overlay_panel
from utils.training.losses import resize_to_target
from utils.training.schedulers import EpochLR, build_epoch_lr

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("cos", "step")
LOSSES = ("ce", "focal")


def opt(default: Any, help: str, choices: Sequence[str] | None = None) -> Any:  # noqa: A002
    """A Config field with its help text (and choices) for utils.cli.parse_config."""
    metadata: dict[str, Any] = {"help": help}
    if choices is not None:
        metadata["choices"] = list(choices)
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class TrainConfig:
    """Every field the training loop reads, with the paper's defaults."""

    model: str = opt("fastsegformer_p", "registry model name (nets.MODELS)")
    data: str = opt("", "VOC root (holds VOC2007/); empty: the real set if present, else synthetic")
    num_classes: int = opt(4, "classes including background")
    input_size: tuple[int, ...] = opt((224, 224), "network input h w (one value: square)")
    pretrained: str = opt("", "weights to start from (ImageNet backbone, original or project file)")
    resume: str = opt("", "project checkpoint to continue training from (e.g. logs/run/last.pth)")
    epochs: int = opt(1000, "total epochs (the original's UnFreeze_Epoch)")
    freeze_epochs: int = opt(50, "epochs with the backbone frozen at the start (0: never)")
    batch_size: int = opt(32, "global batch size once unfrozen (split over torchrun processes)")
    freeze_batch_size: int = opt(32, "global batch size while the backbone is frozen")
    lr: float = opt(1e-4, "base learning rate (before batch/16 scaling)")
    min_lr: float = opt(1e-6, "final learning rate (before batch/16 scaling)")
    scale_lr: bool = opt(True, "scale lr by batch/16 and clamp like the original (adam: 1e-4)")
    optimizer: str = opt("adam", "optimizer", OPTIMIZERS)
    momentum: float = opt(0.9, "SGD momentum / Adam beta1")
    weight_decay: float = opt(0.0, "weight decay (the original: 0 for Adam)")
    lr_schedule: str = opt("cos", "warm-up + cosine (YOLOX) or step decay", SCHEDULES)
    loss: str = opt("ce", "main segmentation loss", LOSSES)
    dice: bool = opt(False, "add the dice loss")
    class_weights: list[float] = opt([], "per-class CE weights (empty: all 1)")
    grad_clip: float = opt(0.0, "clip the gradient norm to this value (0: off)")
    amp: bool = opt(False, "mixed precision (float16 autocast + GradScaler) on CUDA")
    eval_period: int = opt(5, "evaluate val mIoU every N epochs (and at the last epoch)")
    save_period: int = opt(5, "write ep{N}.pth every N epochs")
    save_dir: str = opt("logs", "folder that holds the run folders")
    run_name: str = opt("", "run folder name (empty: <model>_<date-time>)")
    workers: int = opt(2, "data-loading worker processes per training process")
    seed: int = opt(11, "random seed (data order, augmentation, init)")
    device: str = opt("auto", "auto, cpu, cuda or cuda:N")
    sync_bn: bool = opt(False, "SyncBatchNorm across torchrun processes")
    ddp_find_unused: bool = opt(
        True, "DDP find_unused_parameters, as the original (FastSegFormer's unused stage norms)"
    )
    max_steps: int = opt(
        0, "train at most N batches per epoch (0: the whole split); for smoke runs"
    )
    overlays: int = opt(4, "prediction overlays written to TensorBoard per evaluation")
    tensorboard: bool = opt(True, "write TensorBoard events")


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the flag and what is expected."""


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the run stopped keeping the last good checkpoint."""


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def input_hw(size: Sequence[int]) -> tuple[int, int]:
    """(h, w) from a one- or two-value size."""
    size = tuple(int(s) for s in size)
    return (size[0], size[0]) if len(size) == 1 else (size[0], size[1])


def validate_config(cfg: TrainConfig, world_size: int = 1) -> None:
    """Raise ConfigError naming the first invalid field; touches no data and builds nothing."""

    def fail(name: str, msg: str) -> None:
        raise ConfigError(f"{_flag(name)}={getattr(cfg, name)!r}: {msg}")

    if not cfg.model:
        fail("model", "give a registry model name, e.g. fastsegformer_p")
    if cfg.num_classes < 2:
        fail("num_classes", "need at least 2 classes (background + one defect)")
    if len(cfg.input_size) not in (1, 2) or any(int(s) < 32 for s in cfg.input_size):
        fail("input_size", "expected one or two sizes >= 32, e.g. 224 or 224 224")
    if any(int(s) % 32 for s in cfg.input_size):
        fail("input_size", "must be a multiple of 32 (backbones downsample 32x), try 224 or 256")
    if cfg.epochs < 1:
        fail("epochs", "must be >= 1")
    if not 0 <= cfg.freeze_epochs <= cfg.epochs:
        fail("freeze_epochs", f"must be between 0 and --epochs ({cfg.epochs})")
    for name in ("batch_size", "freeze_batch_size"):
        value = getattr(cfg, name)
        if value < 1:
            fail(name, "must be >= 1")
        if value % world_size:
            fail(name, f"must be divisible by the {world_size} torchrun processes")
    if not (cfg.lr > 0 and math.isfinite(cfg.lr)):
        fail("lr", "must be a positive number")
    if not 0 <= cfg.min_lr <= cfg.lr:
        fail("min_lr", f"must be between 0 and --lr ({cfg.lr})")
    if cfg.optimizer not in OPTIMIZERS:
        fail("optimizer", f"expected one of {OPTIMIZERS}")
    if cfg.lr_schedule not in SCHEDULES:
        fail("lr_schedule", f"expected one of {SCHEDULES}")
    if cfg.loss not in LOSSES:
        fail("loss", f"expected one of {LOSSES}")
    if not 0 <= cfg.momentum < 1:
        fail("momentum", "must be in [0, 1)")
    if cfg.weight_decay < 0:
        fail("weight_decay", "must be >= 0")
    if cfg.class_weights:
        if len(cfg.class_weights) != cfg.num_classes:
            fail("class_weights", f"give {cfg.num_classes} values (one per class) or none")
        if any(not (w >= 0 and math.isfinite(w)) for w in cfg.class_weights):
            fail("class_weights", "weights must be finite and >= 0")
    if cfg.grad_clip < 0:
        fail("grad_clip", "must be >= 0 (0 turns clipping off)")
    for name in ("eval_period", "save_period"):
        if getattr(cfg, name) < 1:
            fail(name, "must be >= 1")
    if cfg.workers < 0:
        fail("workers", "must be >= 0")
    if cfg.max_steps < 0:
        fail("max_steps", "must be >= 0 (0: whole epochs)")
    if cfg.overlays < 0:
        fail("overlays", "must be >= 0")
    dev = cfg.device.strip().lower()
    if dev not in ("auto", "cpu", "cuda") and not (dev.startswith("cuda:") and dev[5:].isdigit()):
        fail("device", "expected auto, cpu, cuda or cuda:N")
    if dev.startswith("cuda") and not torch.cuda.is_available():
        fail("device", "CUDA is not available on this machine; use --device cpu or auto")
    for name in ("pretrained", "resume"):
        path = getattr(cfg, name)
        if path and not Path(path).is_file():
            fail(name, "file not found")
    if cfg.data and not Path(cfg.data).is_dir():
        fail("data", "folder not found (it should contain VOC2007/)")


def explicit_fields(config_cls: type, argv: Sequence[str]) -> set[str]:
    """Names of the Config fields whose flag appears in `argv` (--name, --name=, --no-name)."""
    names = set()
    for f in dataclasses.fields(config_cls):
        flag = _flag(f.name)
        negative = "--no-" + f.name.replace("_", "-")
        for token in argv:
            if token in (flag, negative) or token.startswith(flag + "="):
                names.add(f.name)
    return names


def merge_resume_config(cfg: Any, argv: Sequence[str]) -> Any:
    """For --resume: the checkpoint's config, overridden only by flags given on the command line.

    So ``train.py --resume logs/run/last.pth`` alone continues with the run's own settings,
    and ``--resume ... --epochs 300`` extends it.
    """
    if not cfg.resume:
        return cfg
    if not Path(cfg.resume).is_file():
        raise ConfigError(f"--resume={cfg.resume!r}: file not found")
    ckpt = read_checkpoint(cfg.resume)
    saved = dict(ckpt.get("config") or {})
    given = explicit_fields(type(cfg), argv) | {"resume"}
    values = {}
    for f in dataclasses.fields(cfg):
        if f.name in saved and f.name not in given:
            value = saved[f.name]
            current = getattr(cfg, f.name)
            values[f.name] = tuple(value) if isinstance(current, tuple) else value
        else:
            values[f.name] = getattr(cfg, f.name)
    return type(cfg)(**values)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _worker_init(worker_id: int) -> None:
    # torch seeds `random` and itself per worker; numpy needs it explicitly
    np.random.seed(torch.initial_seed() % 2**32)


def prepare_run_dir(cfg: TrainConfig, info: DistInfo | None = None) -> Path:
    """The run folder, agreed by every process: the checkpoint's folder when resuming."""
    info = info or DistInfo()
    if cfg.resume:
        path = Path(cfg.resume).resolve().parent
    else:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        path = Path(cfg.save_dir) / (cfg.run_name or f"{cfg.model}_{stamp}")
    if info.distributed:
        holder = [str(path)]
        dist.broadcast_object_list(holder, src=0)
        path = Path(holder[0])
    if not cfg.resume and (path / "last.pth").exists():
        raise ConfigError(
            f"run folder {path} already holds last.pth: continue it with "
            f"--resume {path / 'last.pth'} or choose another --run-name"
        )
    if info.is_main:
        path.mkdir(parents=True, exist_ok=True)
    distributed.barrier()
    return path


def set_backbone_frozen(model: nn.Module, frozen: bool) -> bool:
    """Stop/allow gradients in `model.backbone`; False if the model has no backbone."""
    backbone = getattr(model, "backbone", None)
    if backbone is None:
        return False
    try:
        import nets

        nets.set_backbone_frozen(model, frozen)
    except (ImportError, AttributeError):
        for p in backbone.parameters():
            p.requires_grad_(not frozen)
    return True


def build_optimizer(cfg: TrainConfig, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    """Adam(W) with betas (momentum, 0.999) or SGD with Nesterov momentum, as the original."""
    if not params:
        raise ValueError("the task has no trainable parameters (all requires_grad=False)")
    if cfg.optimizer == "adam":
        return torch.optim.Adam(
            params, cfg.lr, betas=(cfg.momentum, 0.999), weight_decay=cfg.weight_decay
        )
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(
            params, cfg.lr, betas=(cfg.momentum, 0.999), weight_decay=cfg.weight_decay
        )
    return torch.optim.SGD(
        params, cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0,
        weight_decay=cfg.weight_decay,
    )  # fmt: skip


@torch.no_grad()
def evaluate_model(
    model: nn.Module,
    dataset: Dataset,
    num_classes: int,
    *,
    device: torch.device | str = "cpu",
    batch_size: int = 8,
    workers: int = 0,
    info: DistInfo | None = None,
    eval_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    amp: bool = False,
    overlays: int = 0,
    preprocess: dict | None = None,
    ignore_index: int = 255,
    progress: bool = False,
) -> dict:
    """Scores of `model` on every image of `dataset` from one accumulated confusion matrix.

    Under torchrun each process takes every N-th image and the matrices are summed. Returns
    utils.metrics.segmentation_metrics(cm) plus "loss" (mean eval_loss per image, or None),
    "confusion_matrix" (list of lists) and "overlays" (rank 0: up to `overlays` panels).
    """
    info = info or DistInfo(device=torch.device(device))
    device = torch.device(device)
    was_training = model.training
    model.eval()
    sampler = ShardSampler(dataset, info.rank, info.world_size)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        pin_memory=device.type == "cuda",
    )
    cm = ConfusionMatrix(num_classes, ignore_index)
    loss_sum = torch.zeros(2, dtype=torch.float64)  # (sum of per-batch loss * B, images)
    panels = []
    mean = (preprocess or {}).get("mean")
    std = (preprocess or {}).get("std")
    use_amp = amp and device.type == "cuda"
    for images, labels in tqdm(loader, desc="eval", leave=False, disable=not progress):
        images = images.to(device, non_blocking=True)  # (B, 3, H, W)
        labels = labels.to(device, non_blocking=True).long()  # (B, H, W)
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
            logits = model(images)  # (B, K, h, w)
        logits = resize_to_target(logits.float(), labels)
        pred = logits.argmax(dim=1)  # (B, H, W)
        cm.update(pred, labels)
        if eval_loss is not None:
            loss_sum[0] += float(eval_loss(logits, labels)) * images.shape[0]
            loss_sum[1] += images.shape[0]
        if info.is_main and len(panels) < overlays:
            for i in range(min(overlays - len(panels), images.shape[0])):
                image = denormalize(images[i], mean, std)
                panels.append(overlay_panel(image, labels[i].cpu().numpy(), pred[i].cpu().numpy()))
    cm.all_reduce()
    distributed.all_reduce_sum(loss_sum)
    model.train(was_training)
    metrics = segmentation_metrics(cm.matrix)
    metrics["loss"] = float(loss_sum[0] / loss_sum[1]) if loss_sum[1] > 0 else None
    metrics["confusion_matrix"] = cm.matrix.tolist()
    metrics["overlays"] = panels
    return metrics


@dataclass
class TrainResult:
    """What `Trainer.fit` leaves behind."""

    run_dir: Path
    epochs_done: int
    best_metric: float | None
    best_path: Path | None
    last_path: Path
    last_metrics: dict | None = None


class Trainer:
    """Runs `task` over `train_set` for cfg.epochs with the paper's schedule (see module doc)."""

    def __init__(
        self,
        cfg: TrainConfig,
        task: nn.Module,
        train_set: Dataset,
        val_set: Dataset | None,
        *,
        class_names: Sequence[str],
        run_dir: str | Path,
        info: DistInfo | None = None,
        eval_input_size: Sequence[int] | None = None,
        preprocess: dict | None = None,
        eval_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        self.cfg = cfg
        self.info = info or DistInfo(device=distributed.resolve_device(cfg.device))
        self.device = self.info.device
        self.train_set, self.val_set = train_set, val_set
        self.class_names = list(class_names)
        self.run_dir = Path(run_dir)
        self.eval_input_size = input_hw(eval_input_size or cfg.input_size)
        self.preprocess = dict(preprocess or {"mean": None, "std": None, "fill": 128})
        self.eval_loss = eval_loss
        if not hasattr(task, "model"):
            raise TypeError(f"{type(task).__name__} has no .model: tasks must expose the network")
        self.num_classes = int(getattr(task.model, "num_classes", cfg.num_classes))

        seed_everything(cfg.seed)
        task.to(self.device)
        if cfg.sync_bn and self.info.distributed:
            if self.device.type == "cuda":
                task = nn.SyncBatchNorm.convert_sync_batchnorm(task)
            elif self.info.is_main:
                print("note: --sync-bn needs CUDA (PyTorch's SyncBatchNorm); plain BN on the CPU")
        self.task = task
        self.amp = bool(cfg.amp and self.device.type == "cuda")
        if cfg.amp and not self.amp:
            warnings.warn("--amp needs CUDA; training in float32 on the CPU", stacklevel=2)
        # every parameter that may train (backbone included: it is frozen later, per phase)
        self.params = [p for p in task.parameters() if p.requires_grad]
        self.optimizer = build_optimizer(cfg, self.params)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.has_backbone = getattr(task.model, "backbone", None) is not None
        if cfg.freeze_epochs and not self.has_backbone and self.info.is_main:
            print(f"note: {cfg.model} has no .backbone; --freeze-epochs only sets the batch size")

        self.start_epoch = 0
        self.best_metric: float | None = None
        self.epoch = 0  # epochs completed
        self._frozen: bool | None = None
        self._lr_rule: EpochLR | None = None
        self._loader: DataLoader | None = None
        self._sampler: DistributedSampler | None = None
        self._engine: nn.Module = task
        self.logger = (
            TrainingLogger(self.run_dir, self.class_names, cfg.tensorboard)
            if self.info.is_main
            else None
        )
        if cfg.resume:
            self._load_resume(cfg.resume)

    # ---------------------------------------------------------------- phases and data
    def frozen_at(self, epoch: int) -> bool:
        """Whether epoch `epoch` (0-based) is in the frozen-backbone phase."""
        return epoch < self.cfg.freeze_epochs

    def batch_size_at(self, epoch: int) -> int:
        """Global batch size of epoch `epoch`."""
        return self.cfg.freeze_batch_size if self.frozen_at(epoch) else self.cfg.batch_size

    def lr_rule_at(self, epoch: int) -> EpochLR:
        """The lr rule of `epoch`'s phase (the original rebuilds it when unfreezing)."""
        cfg = self.cfg
        return build_epoch_lr(
            cfg.lr_schedule, cfg.lr, cfg.min_lr, cfg.epochs, self.batch_size_at(epoch),
            cfg.optimizer, cfg.scale_lr,
        )  # fmt: skip

    def lr_at(self, epoch: int) -> float:
        return self.lr_rule_at(epoch).value(epoch)

    def _enter_phase(self, epoch: int) -> None:
        frozen = self.frozen_at(epoch)
        if frozen == self._frozen and self._loader is not None:
            return
        self._frozen = frozen
        if self.has_backbone:
            set_backbone_frozen(self.task.model, frozen)
        self._lr_rule = self.lr_rule_at(epoch)
        self._loader = self._make_train_loader(self.batch_size_at(epoch))
        if self.info.distributed:
            # DDP registers the parameters that require grad when it is built: rebuild it
            # whenever freezing changes that set
            self._engine = self.task
            gc.collect()
            cuda = self.device.type == "cuda"
            self._engine = nn.parallel.DistributedDataParallel(
                self.task,
                device_ids=[self.device] if cuda else None,
                find_unused_parameters=self.cfg.ddp_find_unused,
            )
        if self.info.is_main:
            phase = "frozen backbone" if frozen else "whole network"
            print(
                f"epoch {epoch + 1}: training the {phase}, batch {self.batch_size_at(epoch)}, "
                f"base lr {self._lr_rule.lr:.3g} -> {self._lr_rule.min_lr:.3g} "
                f"({self.cfg.lr_schedule})"
            )

    def _make_train_loader(self, global_batch: int) -> DataLoader:
        per_process = global_batch // self.info.world_size
        n = len(self.train_set)  # type: ignore[arg-type]
        if n // self.info.world_size < per_process:
            raise ValueError(
                f"the train split has {n} images, fewer than one batch of {global_batch}: "
                "lower --batch-size / --freeze-batch-size or add images"
            )
        sampler = None
        if self.info.distributed:
            sampler = DistributedSampler(
                self.train_set, self.info.world_size, self.info.rank, shuffle=True,
                seed=self.cfg.seed, drop_last=True,
            )  # fmt: skip
        self._sampler = sampler
        return DataLoader(
            self.train_set,
            batch_size=per_process,
            shuffle=sampler is None,
            sampler=sampler,
            num_workers=self.cfg.workers,
            pin_memory=self.device.type == "cuda",
            drop_last=True,
            worker_init_fn=_worker_init,
        )

    # ---------------------------------------------------------------- checkpoints
    def state_checkpoint(self, epochs_done: int) -> dict:
        """The project checkpoint of the current state (`epochs_done` epochs completed)."""
        scheduler = self._lr_rule.state_dict() if self._lr_rule is not None else {}
        scheduler["frozen"] = self._frozen
        return build_checkpoint(
            self.task.model,
            input_size=self.eval_input_size,
            class_names=self.class_names,
            preprocess=self.preprocess,
            epoch=epochs_done,
            best_metric=self.best_metric,
            config=config_to_dict(self.cfg),
            optimizer=self.optimizer.state_dict(),
            scheduler=scheduler,
            scaler=self.scaler.state_dict(),
            extra=self.task.extra_state(),
        )

    def _save(self, name: str, ckpt: dict) -> Path:
        return save_checkpoint(ckpt, self.run_dir / name)

    def _load_resume(self, path: str | Path) -> None:
        ckpt = read_checkpoint(path, map_location="cpu")
        if ckpt.get("optimizer") is None:
            raise ValueError(
                f"{path} has no optimizer state (an exported checkpoint?): it cannot be "
                "resumed; start a new run from it with --pretrained instead"
            )
        if ckpt["model"].get("name") != self.task.model.build_config.get("name"):
            raise ValueError(
                f"{path} holds a {ckpt['model'].get('name')} model, but this run trains "
                f"{self.task.model.build_config.get('name')}: pass the matching --model"
            )
        self.task.model.load_state_dict(ckpt["state_dict"])
        self.task.load_extra_state(ckpt.get("extra") or {})
        self.optimizer.load_state_dict(ckpt["optimizer"])
        if ckpt.get("scaler") and self.amp:
            self.scaler.load_state_dict(ckpt["scaler"])
        self.start_epoch = self.epoch = int(ckpt["epoch"])
        self.best_metric = ckpt.get("best_metric")
        if self.logger is not None:
            self.logger.resume(self.start_epoch)
        if self.info.is_main:
            best = "none yet" if self.best_metric is None else f"{100 * self.best_metric:.2f}%"
            print(f"resumed {path}: {self.start_epoch} epochs done, best val mIoU {best}")

    # ---------------------------------------------------------------- training
    def train_one_epoch(self, epoch: int) -> dict[str, float]:
        """One pass over the train split; returns mean loss terms, lr and images/s."""
        self._enter_phase(epoch)
        assert self._loader is not None and self._lr_rule is not None
        # a fresh seed per epoch makes data order and augmentation independent of where a
        # run was resumed from
        seed_everything(self.cfg.seed + 1000 * epoch + self.info.rank)
        if self._sampler is not None:
            self._sampler.set_epoch(epoch)
        lr = self._lr_rule.apply(self.optimizer, epoch)
        self.task.train()
        steps = len(self._loader)
        if self.cfg.max_steps:
            steps = min(steps, self.cfg.max_steps)
        sums: dict[str, torch.Tensor] = {}
        seen = 0
        timed_images, t_start = 0, None
        bar = tqdm(
            total=steps,
            desc=f"epoch {epoch + 1}/{self.cfg.epochs}",
            disable=not self.info.is_main,
            mininterval=0.5,
            dynamic_ncols=True,
        )
        for step, (images, labels) in enumerate(self._loader):
            if step >= steps:
                break
            images = images.to(self.device, non_blocking=True)  # (B, 3, H, W)
            labels = labels.to(self.device, non_blocking=True).long()  # (B, H, W)
            with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
                terms = self._engine(images, labels)
            loss = terms["loss"]
            finite = bool(torch.isfinite(loss.detach()).all())
            if self.info.distributed:
                finite = distributed.all_true(finite, self.device)
            if not finite:
                self._stop_non_finite(epoch, step, terms)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if self.cfg.grad_clip > 0:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.params, self.cfg.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()

            b = images.shape[0]
            seen += b
            for name, value in terms.items():
                sums[name] = sums.get(name, 0.0) + value.detach().float() * b
            if t_start is None:  # time from the end of the first step (warm-up excluded)
                t_start = time.perf_counter()
            else:
                timed_images += b
            if self.info.is_main:
                bar.set_postfix(
                    {k: f"{float(v) / seen:.4f}" for k, v in sums.items()} | {"lr": f"{lr:.2e}"},
                    refresh=False,
                )
                bar.update(1)
        bar.close()
        elapsed = time.perf_counter() - t_start if t_start is not None else 0.0
        names = sorted(sums)
        packed = torch.stack([sums[n].to(self.device) for n in names] + [
            torch.tensor(float(seen), device=self.device)
        ]).double()  # fmt: skip
        distributed.all_reduce_sum(packed)
        total = float(packed[-1])
        means = {n: float(packed[i]) / max(total, 1.0) for i, n in enumerate(names)}
        ips = timed_images * self.info.world_size / elapsed if elapsed > 0 else float("nan")
        return {"terms": means, "lr": lr, "images_per_s": ips, "images": total}

    def _stop_non_finite(self, epoch: int, step: int, terms: dict) -> None:
        values = ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in terms.items())
        last = self.run_dir / "last.pth"
        keep = (
            f"the last good checkpoint is {last} ({self.epoch} epochs done)"
            if last.exists()
            else "no checkpoint was written yet"
        )
        raise NonFiniteLossError(
            f"loss is not finite at epoch {epoch + 1}, step {step + 1} ({values}); training "
            f"stopped and {keep}. Try a lower --lr, --grad-clip 1.0, or --no-amp, and check "
            "the labels (values >= --num-classes other than 255)."
        )

    def evaluate(self, dataset: Dataset | None = None, overlays: int = 0) -> dict:
        """Val (or `dataset`) scores of task.model at the eval input size."""
        dataset = dataset if dataset is not None else self.val_set
        if dataset is None:
            raise ValueError("no evaluation split given")
        return evaluate_model(
            self.task.model,
            dataset,
            self.num_classes,
            device=self.device,
            batch_size=max(1, self.cfg.batch_size // self.info.world_size),
            workers=self.cfg.workers,
            info=self.info,
            eval_loss=self.eval_loss,
            amp=self.amp,
            overlays=overlays,
            preprocess=self.preprocess,
        )

    def fit(self) -> TrainResult:
        """Train from self.start_epoch to cfg.epochs (see the module docstring)."""
        cfg = self.cfg
        main = self.info.is_main
        if main:
            save_config(cfg, self.run_dir / "config.yaml")
            print(f"run folder: {self.run_dir}")
        metrics = None
        best_path = self.run_dir / "best.pth" if (self.run_dir / "best.pth").exists() else None
        try:
            for epoch in range(self.start_epoch, cfg.epochs):
                stats = self.train_one_epoch(epoch)
                done = epoch + 1
                self.epoch = done
                evaluate = self.val_set is not None and (
                    done % cfg.eval_period == 0 or done == cfg.epochs
                )
                metrics = self.evaluate(overlays=cfg.overlays if main else 0) if evaluate else None
                improved = False
                if metrics is not None and math.isfinite(metrics["mIoU"]):
                    improved = self.best_metric is None or metrics["mIoU"] > self.best_metric
                    if improved:
                        self.best_metric = metrics["mIoU"]
                if main:
                    self._report(done, stats, metrics)
                    ckpt = self.state_checkpoint(done)
                    if improved:
                        best_path = self._save("best.pth", ckpt)
                    if done % cfg.save_period == 0:
                        self._save(f"ep{done:03d}.pth", ckpt)
                    self._save("last.pth", ckpt)
                    del ckpt
                    if self.logger is not None:
                        self.logger.plot()
                distributed.barrier()
        except KeyboardInterrupt:
            if main:
                path = self._save("interrupted.pth", self.state_checkpoint(self.epoch))
                print(
                    f"\ninterrupted: wrote {path} ({self.epoch} epochs done); continue with "
                    f"--resume {path}"
                )
            raise
        finally:
            if self.logger is not None:
                self.logger.plot()
                self.logger.close()
        return TrainResult(
            self.run_dir, self.epoch, self.best_metric, best_path, self.run_dir / "last.pth",
            metrics,
        )  # fmt: skip

    def _report(self, done: int, stats: dict, metrics: dict | None) -> None:
        assert self.logger is not None
        self.logger.log_train(done, stats["terms"], stats["lr"], stats["images_per_s"])
        terms = " ".join(f"{k} {v:.4f}" for k, v in stats["terms"].items())
        line = (
            f"epoch {done}/{self.cfg.epochs}: {terms} | lr {stats['lr']:.2e} | "
            f"{stats['images_per_s']:.1f} img/s"
        )
        if metrics is not None:
            self.logger.log_eval(done, metrics, metrics.get("overlays", ()))
            best = self.best_metric if self.best_metric is not None else float("nan")
            line += f" | val mIoU {100 * metrics['mIoU']:.2f}% (best {100 * best:.2f}%)"
        print(line, flush=True)


__all__ = [
    "ConfigError",
    "NonFiniteLossError",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "evaluate_model",
    "explicit_fields",
    "input_hw",
    "merge_resume_config",
    "opt",
    "prepare_run_dir",
    "seed_everything",
    "set_backbone_frozen",
    "validate_config",
]


def load_initial_weights(model: nn.Module, cfg: TrainConfig, is_main: bool) -> None:
    """`--pretrained imagenet` (ImageNet backbone) or a weights file, unless resuming."""
    import nets

    if cfg.pretrained == "imagenet":
        model.load_pretrained()  # from model_data/ (clear error naming the file if absent)
    elif cfg.pretrained and not cfg.resume:
        report = nets.load_checkpoint(model, cfg.pretrained)
        if is_main:
            print(
                f"loaded {cfg.pretrained} ({report.layout} layout): {len(report.loaded)} "
                f"tensors, {len(report.missing)} model keys kept random, "
                f"{len(report.skipped)} file keys unused",
                flush=True,
            )


def fit_and_report(trainer: Trainer) -> TrainResult:
    """Run `trainer.fit()` and print where the run went (main process only)."""
    result = trainer.fit()
    if trainer.info.is_main:
        best = "n/a" if result.best_metric is None else f"{100 * result.best_metric:.2f}%"
        print(f"done: best val mIoU {best}; checkpoints in {result.run_dir}", flush=True)
    return result


def script_main(
    config_cls: type,
    run: Callable[[Any, Sequence[str]], Any],
    prog: str,
    argv: Sequence[str] | None = None,
    description: str | None = None,
) -> int:
    """Parse flags (merging a --resume checkpoint's config), run, map errors to exit codes.

    0: done; 1: stopped on a non-finite loss; 2: a user-facing problem (bad value, missing
    file, broken data: the message says which); 130: interrupted (Ctrl-C, checkpoint kept).
    """
    import sys

    from utils.cli import parse_config

    argv = list(sys.argv[1:] if argv is None else argv)
    cfg = parse_config(config_cls, argv, description=description)
    try:
        cfg = merge_resume_config(cfg, argv)
        run(cfg, argv)
    except (ConfigError, CheckpointError, ValueError, FileNotFoundError, KeyError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except NonFiniteLossError as exc:
        print(f"{prog}: stopped: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0
