"""The training configuration: every field the loop reads, with the paper's defaults.

FastSegFormer (Cai et al., Computers and Electronics in Agriculture 217, 108604, 2024) trains
its students at 224x224 with Adam, lr scaled by batch/16 and clamped, YOLOX warm-up + cosine,
the backbone frozen for 50 epochs then unfrozen until epoch 1000, batch 32, evaluating val
mIoU every 5 epochs. ``TrainConfig`` holds those values; a script's ``Config`` subclasses it,
redeclaring in its editable block the defaults users change, and ``utils.cli.parse_config``
turns every field into a flag (the comment after a field is its help). The choices of
``--optimizer``, ``--lr-schedule`` and ``--loss`` are the keys of the registries that implement
them. ``validate_config`` checks a config before any work and raises ``ConfigError`` naming
the flag.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from utils.data.class_names import ClassNamesError, check_class_names
from utils.training.losses import LOSSES
from utils.training.optimizers import OPTIMIZERS
from utils.training.schedulers import SCHEDULES
from utils.training.speed import AMP_DTYPES, MEMORY_FORMATS

RESUME_AUTO = "auto"  # --resume auto: the newest checkpoint of --save-dir/--name, if any


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the flag and what is expected."""


def flag(name: str) -> str:
    """The command-line flag of a config field: "freeze_epochs" -> "--freeze-epochs"."""
    return "--" + name.replace("_", "-")


@dataclass
class TrainConfig:
    """Every field the training loop reads, with the paper's defaults."""

    model: str = "fastsegformer_p"  # registry model name (nets.MODELS)
    model_options: tuple[str, ...] = ()  # model options key=value, e.g. pyramid=ppm irb=false
    data: str = ""  # VOC root (holds VOC2007/); empty: the real set if present, else synthetic
    num_classes: int = 4  # classes including background
    # names in index order, background first; empty: the data set's VOC2007/class_names.txt
    # (voc_annotation.py's converters write it), else the paper's four
    class_names: tuple[str, ...] = ()  # --class-names background scab rot (stored in checkpoints)
    input_size: tuple[int, ...] = (224, 224)  # network input h w (one value: square)
    pretrained: str = ""  # weights to start from: a file (any layout) or 'imagenet'
    drop_classifier: bool = False  # --pretrained FILE of other classes: new classifier
    resume: str = ""  # checkpoint to continue from, or 'auto': the newest in --save-dir/--name
    trust_checkpoint: bool = False  # unpickle weight files in full: trusted files only
    epochs: int = 1000  # total epochs (the original's UnFreeze_Epoch)
    freeze_epochs: int = 50  # epochs with the backbone frozen at the start (0: never)
    batch_size: int = 32  # global batch size once unfrozen (split over torchrun processes)
    freeze_batch_size: int = 32  # global batch size while the backbone is frozen
    lr: float = 1e-4  # base learning rate (before batch/16 scaling)
    min_lr: float = 1e-6  # final learning rate (before batch/16 scaling)
    scale_lr: bool = True  # scale lr by batch/16 and clamp like the original (adam: 1e-4)
    optimizer: Literal[tuple(OPTIMIZERS)] = "adam"  # optimizer
    momentum: float = 0.9  # SGD momentum / Adam beta1
    weight_decay: float = 0.0  # weight decay (the original: 0 for Adam)
    lr_schedule: Literal[tuple(SCHEDULES)] = "cos"  # warm-up + cosine (YOLOX) or step decay
    loss: Literal[tuple(LOSSES)] = "ce"  # main segmentation loss
    dice: bool = False  # add the dice loss
    class_weights: tuple[float, ...] = ()  # per-class CE weights (empty: all 1)
    grad_clip: float = 0.0  # clip the gradient norm to this value (0: off)
    # mixed precision in the device's native low precision: float16 + GradScaler on CUDA,
    # bfloat16 on a CPU with native bfloat16 (AVX512-BF16/AMX), float32 on other CPUs (noted)
    amp: bool = True  # autocast in the device's low precision where it computes it natively
    amp_dtype: Literal[AMP_DTYPES] = "auto"  # auto: per device; bf16 forced; fp16 (CUDA only)
    memory_format: Literal[MEMORY_FORMATS] = "auto"  # auto: the measured default of the model
    compile: bool = False  # torch.compile the training step (compiles for minutes first)
    eval_period: int = 5  # evaluate val mIoU every N epochs (and at the last epoch)
    save_period: int = 5  # write ep{N}.pth every N epochs
    keep: int = 0  # keep only the newest N ep{N}.pth files (0: keep all)
    save_dir: str = "logs"  # folder that holds the run folders
    name: str = ""  # run folder name under --save-dir (empty: <model>_<date-time>)
    workers: int = 2  # data-loading worker processes per training process
    seed: int = 11  # random seed (data order, augmentation, init)
    device: str = "auto"  # auto, cpu, cuda or cuda:N
    sync_bn: bool = False  # SyncBatchNorm across torchrun processes
    ddp_find_unused: bool = True  # DDP find_unused_parameters (FastSegFormer's unused norms)
    max_steps: int = 0  # train at most N batches per epoch (0: the whole split); smoke runs
    overlays: int = 4  # prediction overlays written to TensorBoard per evaluation
    tensorboard: bool = True  # write TensorBoard events

    def __post_init__(self) -> None:
        # one value means a square input: the only place the size is normalised
        if len(self.input_size) == 1:
            self.input_size = (int(self.input_size[0]),) * 2
        self.input_size = tuple(int(s) for s in self.input_size)

    def run_prefix(self) -> str:
        """What an unnamed run folder is called before its date-time: the model's name."""
        return self.model

    def resume_file(self) -> str:
        """The checkpoint this run continues from ('' for a new run; also for --resume auto
        once it found nothing to continue)."""
        return "" if self.resume == RESUME_AUTO else self.resume


def validate_config(cfg: TrainConfig, world_size: int = 1) -> None:
    """Raise ConfigError naming the first invalid field; touches no data and builds nothing."""

    def fail(name: str, msg: str) -> None:
        raise ConfigError(f"{flag(name)}={getattr(cfg, name)!r}: {msg}")

    if not cfg.model:
        fail("model", "give a registry model name, e.g. fastsegformer_p")
    if cfg.num_classes < 2:
        fail("num_classes", "need at least 2 classes (background + one defect)")
    if cfg.class_names:
        try:
            check_class_names(cfg.class_names, flag("class_names"))
        except ClassNamesError as err:
            raise ConfigError(str(err)) from None
        if len(cfg.class_names) != cfg.num_classes:
            fail(
                "class_names",
                f"names {len(cfg.class_names)} classes but --num-classes is {cfg.num_classes}; "
                "give one name per class, background first",
            )
    if len(cfg.input_size) != 2 or any(s < 32 for s in cfg.input_size):
        fail("input_size", "expected one or two sizes >= 32, e.g. 224 or 224 224")
    if any(s % 32 for s in cfg.input_size):
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
    for name, registry in (
        ("optimizer", OPTIMIZERS),
        ("lr_schedule", SCHEDULES),
        ("loss", LOSSES),
    ):
        if getattr(cfg, name) not in registry:
            fail(name, f"expected one of {', '.join(registry)}")
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
    if cfg.keep < 0:
        fail("keep", "must be >= 0 (0 keeps every periodic checkpoint)")
    if cfg.drop_classifier and (not cfg.pretrained or cfg.pretrained == "imagenet"):
        fail(
            "drop_classifier",
            "re-initialises the classifier of a --pretrained FILE; give --pretrained FILE "
            "(ImageNet backbone weights have no classifier to drop)",
        )
    if cfg.workers < 0:
        fail("workers", "must be >= 0")
    if cfg.max_steps < 0:
        fail("max_steps", "must be >= 0 (0: whole epochs)")
    if cfg.overlays < 0:
        fail("overlays", "must be >= 0")
    if cfg.amp_dtype not in AMP_DTYPES:
        fail("amp_dtype", f"expected one of {', '.join(AMP_DTYPES)}")
    if cfg.memory_format not in MEMORY_FORMATS:
        fail("memory_format", f"expected one of {', '.join(MEMORY_FORMATS)}")
    dev = cfg.device.strip().lower()
    if dev not in ("auto", "cpu", "cuda") and not (dev.startswith("cuda:") and dev[5:].isdigit()):
        fail("device", "expected auto, cpu, cuda or cuda:N")
    if dev.startswith("cuda") and not torch.cuda.is_available():
        fail("device", "CUDA is not available on this machine; use --device cpu or auto")
    on_cpu = dev == "cpu" or (dev == "auto" and not torch.cuda.is_available())
    if cfg.amp and cfg.amp_dtype == "fp16" and on_cpu:
        fail("amp_dtype", "float16 training needs CUDA; on the CPU use bf16 or auto")
    if cfg.pretrained and cfg.pretrained != "imagenet" and not Path(cfg.pretrained).is_file():
        fail("pretrained", "file not found (give a weights file or 'imagenet')")
    if cfg.resume == RESUME_AUTO and not cfg.name:
        fail("resume", "needs --name NAME: the run folder (--save-dir/NAME) to continue")
    if cfg.resume_file() and not Path(cfg.resume).is_file():
        fail("resume", "file not found")
    if cfg.data and not Path(cfg.data).is_dir():
        fail("data", "folder not found (it should contain VOC2007/)")
