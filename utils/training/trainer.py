"""The one training / evaluation loop of the project (supervised and distillation).

FastSegFormer (Cai et al., Computers and Electronics in Agriculture 217, 108604, 2024) is
trained with the unet-pytorch recipe: Adam, lr scaled by batch/16 and clamped, YOLOX warm-up
+ cosine set once per epoch, the backbone frozen for the first 50 epochs (with its own batch
size) then unfrozen until epoch 1000, evaluation and checkpoints every 5 epochs. This module
runs that recipe for any *task* (see utils/training/task.py), on one CPU/GPU or under torchrun/DDP.

API (what utils/training/run.py, the run path of train.py and train_distillation.py, uses)
-----------------------------------------------------------------------------------------
The configuration is ``utils.training.config.TrainConfig`` (checked by ``validate_config``).
The run folder comes from ``utils.training.run_dir.prepare_run_dir(cfg, info)``.
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
    epoch, best.pth on a better val mIoU, ep{N:03d}.pth every save period (the newest
    ``cfg.keep`` kept, 0: all), config.yaml, history.json, TensorBoard events, loss.png and
    miou.png into the run folder. last.pth, ep{N}.pth and interrupted.pth hold the full
    training state; best.pth the weights and config only (what evaluation and deployment
    read; a third of the size with Adam). Resumes from cfg.resume exactly (epoch, lr,
    optimizer/scaler state, freeze phase, data order); temporary files a killed save left in
    the run folder are removed then.
    SIGINT (Ctrl-C), SIGTERM and SIGUSR1 (utils/training/signals.py) stop the run after the
    step in progress, or before the next evaluation batch, on every process together: rank 0
    writes interrupted.pth, the full state plus "progress" (the step reached, each process's
    random generators and loss sums), and ``TrainingStopped`` is raised; resuming from it
    fast-forwards the loader to that step and ends bit-identical to a run never stopped. A
    second Ctrl-C raises KeyboardInterrupt at once, without writing. A NaN/inf loss raises
    ``NonFiniteLossError``, a NaN/inf gradient (checked every step, before the optimizer
    step), weight or buffer (every ``WEIGHT_CHECK_PERIOD`` steps and at the end of every
    epoch, before evaluation and checkpoints) ``NonFiniteTensorError`` naming the tensor; both
    leave the last good checkpoint untouched. Each step runs
    as ``utils.training.speed`` plans it from --amp, --amp-dtype, --memory-format and
    --compile; ``Trainer.cfg`` (saved in config.yaml and checkpoints) records what ran.
``evaluate_model(model, dataset, num_classes, ...) -> dict``  mIoU etc. from one confusion
    matrix over the whole split (utils.metrics.segmentation_metrics keys, plus "loss").
"""

from __future__ import annotations

import dataclasses
import gc
import itertools
import math
import random
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm import tqdm

import nets
from nets.checkpoint import (
    CheckpointError,
    NonFiniteCheckpointError,
    build_checkpoint,
    checkpoint_tensors,
    describe_non_finite,
    non_finite_tensors,
    read_project_checkpoint,
    save_checkpoint,
)
from utils.cli import config_to_dict, save_config
from utils.metrics import ConfusionMatrix, segmentation_metrics
from utils.training import distributed
from utils.training.config import TrainConfig
from utils.training.distributed import DistInfo, ShardSampler
from utils.training.logger import TrainingLogger, denormalize, overlay_panel
from utils.training.losses import resize_to_target
from utils.training.optimizers import build_optimizer
from utils.training.schedulers import EpochLR, build_epoch_lr
from utils.training.signals import StopSignals, ignore_stop_signals, signal_name
from utils.training.speed import (
    TORCH_DTYPES,
    SpeedPlan,
    TrainStep,
    as_memory_format,
    compile_module,
    match_optimizer_layout,
    resolve_speed,
    to_memory_format,
)

PERIODIC_NAME = re.compile(r"ep(\d+)\.pth")  # the periodic checkpoints that --keep prunes
# Weights and buffers are checked for NaN/inf every this many steps (and at every epoch's end).
# Gradients are checked every step, so a NaN never reaches the weights through the optimizer;
# this catches what else could (an overflowing update, a BatchNorm statistic).
WEIGHT_CHECK_PERIOD = 10


class NonFiniteError(RuntimeError):
    """NaN or inf in the loss, a gradient, a weight or a buffer; the run stopped keeping the
    last good checkpoint."""


class NonFiniteLossError(NonFiniteError):
    """The loss became NaN or infinite."""


class NonFiniteTensorError(NonFiniteError):
    """A gradient, weight or buffer holds NaN or inf; the message names it."""


class TrainingStopped(Exception):
    """A stop signal ended the run after the step in progress; rank 0 wrote `checkpoint`
    (None on the other ranks), holding `epochs` completed epochs plus `steps` of the next."""

    def __init__(self, signum: int, checkpoint: Path | None, epochs: int, steps: int) -> None:
        self.signum, self.checkpoint, self.epochs, self.steps = signum, checkpoint, epochs, steps
        done = f"{epochs} epochs" + (f" + {steps} steps" if steps else "")
        where = f"wrote {checkpoint}" if checkpoint is not None else "rank 0 wrote the checkpoint"
        super().__init__(f"stopped by {signal_name(signum)} after {done}: {where}")


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state(device: torch.device) -> dict:
    """Every random generator the step draws from (python, numpy, torch CPU and `device`), in
    types the safe checkpoint reader accepts."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
        "torch": torch.get_rng_state(),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    """Put back what `rng_state` returned."""
    random.setstate(state["python"])
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _worker_init(worker_id: int) -> None:
    # torch seeds `random` and itself per worker; numpy needs it explicitly
    np.random.seed(torch.initial_seed() % 2**32)
    ignore_stop_signals()  # the main process stops its workers (utils/training/signals.py)


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
    precision: str = "fp32",
    memory_format: str = "nchw",
    overlays: int = 0,
    preprocess: dict | None = None,
    ignore_index: int = 255,
    progress: bool = False,
    stop: Callable[[], bool] | None = None,
) -> dict | None:
    """Scores of `model` on every image of `dataset` from one accumulated confusion matrix.

    `precision` (fp32, bf16, fp16) is the autocast dtype of the forward, `memory_format`
    (nchw, channels_last) the layout of the batches; scores are computed in float32.
    Under torchrun each process takes every N-th image and the matrices are summed. Returns
    utils.metrics.segmentation_metrics(cm) plus "loss" (mean eval_loss per image, or None),
    "confusion_matrix" (list of lists) and "overlays" (rank 0: up to `overlays` panels).
    `stop()` (the same answer on every process) is asked before each batch that every process
    has; True ends the evaluation at once and returns None.
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
        worker_init_fn=_worker_init,
    )
    # under torchrun the last process has the fewest images: every process has these batches
    common_batches = math.ceil(
        len(ShardSampler(dataset, info.world_size - 1, info.world_size)) / batch_size
    )
    cm = ConfusionMatrix(num_classes, ignore_index)
    loss_sum = torch.zeros(2, dtype=torch.float64)  # (sum of per-batch loss * B, images)
    panels = []
    mean = (preprocess or {}).get("mean")
    std = (preprocess or {}).get("std")
    autocast_dtype = TORCH_DTYPES[precision]
    use_amp = precision != "fp32"
    for i, (images, labels) in enumerate(
        tqdm(loader, desc="eval", leave=False, disable=not progress)
    ):
        if stop is not None and i < common_batches and stop():
            model.train(was_training)
            return None
        images = images.to(device, non_blocking=True)  # (B, 3, H, W)
        labels = labels.to(device, non_blocking=True).long()  # (B, H, W)
        with torch.autocast(device_type=device.type, dtype=autocast_dtype, enabled=use_amp):
            logits = model(as_memory_format(images, memory_format))  # (B, K, h, w)
        logits = resize_to_target(logits.float(), labels)
        pred = logits.argmax(dim=1)  # (B, H, W)
        cm.update(pred.cpu().numpy(), labels.cpu().numpy())
        if eval_loss is not None:
            loss_sum[0] += float(eval_loss(logits, labels)) * images.shape[0]
            loss_sum[1] += images.shape[0]
        if info.is_main and len(panels) < overlays:
            for i in range(min(overlays - len(panels), images.shape[0])):
                image = denormalize(images[i], mean, std)
                panels.append(overlay_panel(image, labels[i].cpu().numpy(), pred[i].cpu().numpy()))
    cm.matrix = distributed.all_reduce_sum(torch.from_numpy(cm.matrix)).numpy()
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
        self.eval_input_size = tuple(eval_input_size or cfg.input_size)
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
        self.plan = self._plan_speed(cfg)
        self.amp = self.plan.precision != "fp32"
        # every parameter that may train (backbone included: it is frozen later, per phase)
        self.params = [p for p in task.parameters() if p.requires_grad]
        self.optimizer = build_optimizer(
            cfg.optimizer, self.params, cfg.lr, cfg.momentum, cfg.weight_decay
        )
        names = {id(p): name for name, p in self._named_tensors(task.named_parameters())}
        self.step = TrainStep(
            self.optimizer,
            self.params,
            self.plan,
            cfg.grad_clip,
            [names[id(p)] for p in self.params],
        )
        self.scaler = self.step.scaler
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
        self._engine: nn.Module = compile_module(task) if self.plan.compile else task
        self._stop: StopSignals | None = None  # set while fit() runs
        # where a run stopped inside an epoch resumes (from interrupted.pth's "progress")
        self._resume_step = 0
        self._resume_ranks: list[dict] | None = None
        self.logger = (
            TrainingLogger(self.run_dir, self.class_names, cfg.tensorboard)
            if self.info.is_main
            else None
        )
        if cfg.resume_file():
            self._load_resume(cfg.resume_file())

    # ---------------------------------------------------------------- speed
    def _plan_speed(self, cfg: TrainConfig) -> SpeedPlan:
        """Resolve --amp / --amp-dtype / --memory-format / --compile for this device, lay the
        task out accordingly, and make self.cfg record what runs."""
        plan = resolve_speed(cfg.amp, cfg.amp_dtype, cfg.memory_format, cfg.compile, self.device)
        set_format = getattr(self.task, "set_memory_format", None)
        if set_format is not None:
            formats = set_format(plan)
        else:
            formats = {"memory_format": plan.memory_format_of(self.task.model)}
            to_memory_format(self.task.model, formats["memory_format"])
        ran = {"amp": plan.precision != "fp32", "compile": plan.compile, **formats}
        if ran["amp"]:
            ran["amp_dtype"] = plan.precision
        names = {f.name for f in dataclasses.fields(cfg)}
        self.cfg = dataclasses.replace(cfg, **{k: v for k, v in ran.items() if k in names})
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick the fastest
        if self.info.is_main:
            for note in plan.notes:
                print(f"note: {note}")
            # {"memory_format": "channels_last", "teacher_memory_format": "nchw"} ->
            # "model channels_last, teacher nchw"
            layout = ", ".join(
                f"{k.removesuffix('memory_format').rstrip('_') or 'model'} {v}"
                for k, v in formats.items()
            )
            compiled = ", torch.compile" if plan.compile else ""
            print(f"training step: {plan.precision}, {layout}{compiled}", flush=True)
        return plan

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

    def _enter_phase(self, epoch: int) -> None:
        frozen = self.frozen_at(epoch)
        if frozen == self._frozen and self._loader is not None:
            return
        self._frozen = frozen
        if self.has_backbone:
            nets.set_backbone_frozen(self.task.model, frozen)
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
            if self.plan.compile:
                self._engine = compile_module(self._engine)
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
    def state_checkpoint(self, epochs_done: int, progress: dict | None = None) -> dict:
        """The project checkpoint of the current state (`epochs_done` epochs completed).

        `progress` (interrupted.pth): how far the next epoch got, ``{"step": steps done,
        "ranks": [per process: its random generators, its loss sums and images so far]}``,
        from which --resume continues that epoch exactly.
        """
        scheduler = self._lr_rule.state_dict() if self._lr_rule is not None else {}
        scheduler["frozen"] = self._frozen
        ckpt = build_checkpoint(
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
        if progress is not None:
            ckpt["progress"] = progress
        return ckpt

    def weights_checkpoint(self, epochs_done: int) -> dict:
        """best.pth: the weights, input size, classes, preprocessing and config (all that
        evaluation, prediction and export read), without the optimizer, scheduler and scaler
        states (with Adam those are twice the weights)."""
        return build_checkpoint(
            self.task.model,
            input_size=self.eval_input_size,
            class_names=self.class_names,
            preprocess=self.preprocess,
            epoch=epochs_done,
            best_metric=self.best_metric,
            config=config_to_dict(self.cfg),
        )

    def _save(self, name: str, ckpt: dict) -> Path:
        try:
            return save_checkpoint(ckpt, self.run_dir / name)
        except NonFiniteCheckpointError as exc:  # the writer's own check (optimizer state too)
            raise NonFiniteTensorError(
                f"{exc}. Training stopped and {self._kept_checkpoint()}."
            ) from None

    def _prune_periodic(self) -> list[Path]:
        """Delete all but the newest ``cfg.keep`` ep{N}.pth files of the run (0: keep all)."""
        if self.cfg.keep <= 0:
            return []
        periodic = sorted(
            (int(m[1]), p)
            for p in self.run_dir.glob("ep*.pth")
            if (m := PERIODIC_NAME.fullmatch(p.name))
        )
        old = [p for _, p in periodic[: -self.cfg.keep]]
        for path in old:
            path.unlink(missing_ok=True)
        return old

    def _load_resume(self, path: str | Path) -> None:
        ckpt = read_project_checkpoint(path, map_location="cpu", trust=self.cfg.trust_checkpoint)
        if ckpt.get("optimizer") is None:
            raise ValueError(
                f"{path} holds weights only, no training state (best.pth and exported "
                "checkpoints keep no optimizer state): resume from the run's last.pth or an "
                f"ep{{N}}.pth, or start a new run from it with --pretrained {path}"
            )
        bad = non_finite_tensors(checkpoint_tensors(ckpt))
        if bad:
            raise CheckpointError(
                f"{path} holds NaN or inf: {describe_non_finite(bad)}; resume from an earlier "
                "checkpoint of the run (an epNNN.pth)"
            )
        if ckpt["model"].get("name") != self.task.model.build_config.get("name"):
            raise ValueError(
                f"{path} holds a {ckpt['model'].get('name')} model, but this run trains "
                f"{self.task.model.build_config.get('name')}: pass the matching --model"
            )
        self.task.model.load_state_dict(ckpt["state_dict"])
        self.task.load_extra_state(ckpt.get("extra") or {})
        self.optimizer.load_state_dict(ckpt["optimizer"])
        match_optimizer_layout(self.optimizer)
        if ckpt.get("scaler") and self.plan.uses_scaler:
            self.scaler.load_state_dict(ckpt["scaler"])
        self.start_epoch = self.epoch = int(ckpt["epoch"])
        self.best_metric = ckpt.get("best_metric")
        progress = ckpt.get("progress") or {}
        self._resume_step = int(progress.get("step", 0))
        self._resume_ranks = progress.get("ranks")
        if self.logger is not None:
            self.logger.resume(self.start_epoch)
        if self.info.is_main:
            best = "none yet" if self.best_metric is None else f"{100 * self.best_metric:.2f}%"
            steps = f" + {self._resume_step} steps" if self._resume_step else ""
            print(
                f"resumed {path}: {self.start_epoch} epochs{steps} done, best val mIoU {best}",
                flush=True,
            )

    # ---------------------------------------------------------------- training
    def train_one_epoch(self, epoch: int) -> dict:
        """One pass over the train split, from the step a resumed checkpoint stopped at.

        Returns the mean loss terms, lr, images/s and images, plus "steps" (of a whole epoch),
        "stopped_at" (steps done when a stop request ended the epoch early, else None) and
        "partial" (this process's loss sums and images: what interrupted.pth keeps of them).
        """
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
        start, resumed = self._take_resume_position()
        if resumed is not None:
            sums = {k: v.to(self.device) for k, v in resumed["sums"].items()}
            seen = int(resumed["seen"])
        timed_images, t_start = 0, None
        bar = tqdm(
            total=steps,
            initial=start,
            desc=f"epoch {epoch + 1}/{self.cfg.epochs}",
            disable=not self.info.is_main,
            mininterval=0.5,
            dynamic_ncols=True,
        )
        batches = iter(self._loader) if start < steps else iter(())
        for _ in range(start if start < steps else 0):
            next(batches)  # the batches done before the stop: fetched again, not trained
        if resumed is not None:  # the generators as they were when the run stopped
            set_rng_state(resumed["rng"], self.device)
        stopped_at = None
        for step in range(start, steps):
            if self._stop_agreed():
                stopped_at = step
                break
            images, labels = next(batches)
            images = images.to(self.device, non_blocking=True)  # (B, 3, H, W)
            labels = labels.to(self.device, non_blocking=True).long()  # (B, H, W)
            terms = self.step.forward(self._engine, images, labels)
            loss = terms["loss"]
            finite = bool(torch.isfinite(loss.detach()).all())
            if self.info.distributed:
                finite = distributed.all_true(finite, self.device)
            if not finite:
                self._stop_non_finite(epoch, step, terms)
            bad_grads = self.step.update(loss)
            if bad_grads:
                self._stop_non_finite_tensors(epoch, step, "gradients", bad_grads)
            if (step + 1) % WEIGHT_CHECK_PERIOD == 0:
                self._check_weights(epoch, step)

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
        del batches  # stops the loader's workers now
        bar.close()
        partial = {"sums": {k: v.detach().cpu() for k, v in sums.items()}, "seen": seen}
        stats = {"steps": steps, "stopped_at": stopped_at, "partial": partial, "lr": lr}
        if stopped_at is not None:
            return stats
        self._check_weights(epoch, steps - 1)  # before evaluation and any checkpoint
        elapsed = time.perf_counter() - t_start if t_start is not None else 0.0
        names = sorted(sums)
        packed = torch.stack([sums[n].to(self.device) for n in names] + [
            torch.tensor(float(seen), device=self.device)
        ]).double()  # fmt: skip
        distributed.all_reduce_sum(packed)
        total = float(packed[-1])
        means = {n: float(packed[i]) / max(total, 1.0) for i, n in enumerate(names)}
        ips = timed_images * self.info.world_size / elapsed if elapsed > 0 else float("nan")
        return stats | {"terms": means, "images_per_s": ips, "images": total}

    def _take_resume_position(self) -> tuple[int, dict | None]:
        """(steps already done in this epoch, this process's saved state) of a checkpoint that
        stopped inside an epoch, once; (0, None) otherwise. A checkpoint of another number
        of processes continues at the step without this process's generators and sums."""
        start, ranks = self._resume_step, self._resume_ranks
        self._resume_step, self._resume_ranks = 0, None
        if not start:
            return 0, None
        if ranks is None or len(ranks) != self.info.world_size:
            if self.info.is_main:
                print(
                    f"note: the checkpoint stopped inside an epoch under {len(ranks or [])} "
                    f"process(es), this run has {self.info.world_size}: the rest of that "
                    "epoch continues, but not exactly as it would have"
                )
            return start, None
        return start, ranks[self.info.rank]

    def _stop_agreed(self) -> bool:
        """Whether a stop signal reached any process (asked by every process together)."""
        requested = self._stop is not None and self._stop.requested
        if self.info.distributed:
            return distributed.any_true(requested, self.device)
        return requested

    def _stop_run(self, epochs_done: int, steps: int, partial: dict) -> None:
        """Write interrupted.pth (rank 0) at `epochs_done` epochs + `steps` steps, wait for it
        on every process, and raise TrainingStopped."""
        signum = self._stop.signum if self._stop is not None else None
        ranks = distributed.gather_objects(
            {"rng": rng_state(self.device), **partial, "signum": signum}
        )
        path = None
        if self.info.is_main:
            kept = [{k: v for k, v in r.items() if k != "signum"} for r in ranks]
            progress = {"step": steps, "ranks": kept}
            path = self._save("interrupted.pth", self.state_checkpoint(epochs_done, progress))
        distributed.barrier()  # no process leaves before the checkpoint is written
        signum = next(r["signum"] for r in ranks if r["signum"] is not None)
        raise TrainingStopped(signum, path, epochs_done, steps)

    @staticmethod
    def _named_tensors(
        named: Iterable[tuple[str, torch.Tensor]],
    ) -> list[tuple[str, torch.Tensor]]:
        """The task's tensors named as the model's checkpoint names them ("model." dropped)."""
        return [(name.removeprefix("model."), t) for name, t in named]

    def _non_finite_weights(self) -> list[tuple[str, int, int]]:
        """The task's weights and buffers holding NaN or inf (one fused pass when none do)."""
        task = self.task
        named = itertools.chain(task.named_parameters(), task.named_buffers())
        return non_finite_tensors(self._named_tensors(named))

    def _check_weights(self, epoch: int, step: int) -> None:
        """Stop (``NonFiniteTensorError``) if a weight or buffer of the task holds NaN or inf."""
        bad = self._non_finite_weights()
        if bad:
            self._stop_non_finite_tensors(epoch, step, "weights", bad)

    def _kept_checkpoint(self) -> str:
        last = self.run_dir / "last.pth"
        if last.exists():
            return f"the last good checkpoint is {last} ({self.epoch} epochs done)"
        return "no checkpoint was written yet"

    def _stop_non_finite(self, epoch: int, step: int, terms: dict) -> None:
        values = ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in terms.items())
        bad = self._non_finite_weights()
        culprit = f"; NaN/inf already in the weights: {describe_non_finite(bad)}" if bad else ""
        raise NonFiniteLossError(
            f"loss is not finite at epoch {epoch + 1}, step {step + 1} ({values}){culprit}; "
            f"training stopped and {self._kept_checkpoint()}. Try a lower --lr, --grad-clip "
            "1.0, or --no-amp, and check the labels."
        )

    def _stop_non_finite_tensors(
        self, epoch: int, step: int, what: str, bad: list[tuple[str, int, int]]
    ) -> None:
        when = (
            "before the optimizer step"
            if what == "gradients"
            else "without writing a checkpoint with them"
        )
        raise NonFiniteTensorError(
            f"NaN/inf in the {what} at epoch {epoch + 1}, step {step + 1}: "
            f"{describe_non_finite(bad)}; training stopped {when} and "
            f"{self._kept_checkpoint()}. Try a lower --lr, --grad-clip 1.0, or --no-amp."
        )

    def evaluate(
        self,
        dataset: Dataset | None = None,
        overlays: int = 0,
        stop: Callable[[], bool] | None = None,
    ) -> dict | None:
        """Val (or `dataset`) scores of task.model at the eval input size (None: `stop()` said
        to stop; see evaluate_model)."""
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
            precision=self.plan.precision,
            memory_format=self.cfg.memory_format,
            overlays=overlays,
            preprocess=self.preprocess,
            stop=stop,
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
        self._stop = StopSignals().install()
        try:
            for epoch in range(self.start_epoch, cfg.epochs):
                stats = self.train_one_epoch(epoch)
                if stats["stopped_at"] is not None:
                    self._stop_run(epoch, stats["stopped_at"], stats["partial"])
                done = epoch + 1
                evaluate = self.val_set is not None and (
                    done % cfg.eval_period == 0 or done == cfg.epochs
                )
                metrics = None
                if evaluate:
                    overlays = cfg.overlays if main else 0
                    metrics = self.evaluate(overlays=overlays, stop=self._stop_agreed)
                    if metrics is None:  # trained, not yet evaluated: the resumed run evaluates
                        self._stop_run(epoch, stats["steps"], stats["partial"])
                self.epoch = done
                improved = False
                if metrics is not None and math.isfinite(metrics["mIoU"]):
                    improved = self.best_metric is None or metrics["mIoU"] > self.best_metric
                    if improved:
                        self.best_metric = metrics["mIoU"]
                if main:
                    self._report(done, stats, metrics)
                    if improved:
                        best_path = self._save("best.pth", self.weights_checkpoint(done))
                    ckpt = self.state_checkpoint(done)
                    if done % cfg.save_period == 0:
                        self._save(f"ep{done:03d}.pth", ckpt)
                        self._prune_periodic()
                    self._save("last.pth", ckpt)
                    del ckpt
                    if self.logger is not None:
                        self.logger.plot()
                distributed.barrier()
        except KeyboardInterrupt:  # a second Ctrl-C: the first asked for a stop after the step
            if main:
                last = self.run_dir / "last.pth"
                kept = f"{last} ({self.epoch} epochs)" if last.exists() else "none yet"
                print(
                    "\ninterrupted again: stopped at once, without a checkpoint of the epoch in "
                    f"progress; the newest complete checkpoint: {kept}",
                    flush=True,
                )
            raise
        finally:
            self._stop.restore()
            self._stop = None
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
