"""The run path shared by train.py and train_distillation.py: config -> data, model, task -> loop.

A training script holds its editable ``Config`` (a ``TrainConfig`` subclass) and builds its
own task; everything else happens here, once, in this order:

1. ``main``: flags over the script's defaults (with ``--resume``: over the run's saved
   config), then the script's function, with errors mapped to exit statuses;
2. ``train``: ``validate_config``; seed; the model of ``--model`` (checked: name, input size,
   ImageNet weights); torchrun setup; the data set (``--data``, else the real set if present,
   else synthetic oranges generated once), its class names (``--class-names``, else its
   ``class_names.txt``, stored in config.yaml and every checkpoint) and the values of its
   train and val masks (no value may be >= ``--num-classes`` but 255); the starting weights
   (``--pretrained``); the segmentation loss; the script's task around the model; the run
   folder; ``Trainer.fit``.

The config travels one way, from the script down into this module and on into the loop.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from torch import nn
from torch.utils.data import dataloader as torch_dataloader
from tqdm import tqdm

import nets
from nets.checkpoint import CheckpointError, read_project_checkpoint
from nets.profile import count_params
from utils.cli import config_from_dict, parse_config
from utils.data.class_names import class_names_file, default_class_names, read_class_names
from utils.data.dataset import VOCSegmentation
from utils.data.mask_values import CACHE_NAME, check_mask_values
from utils.data.synthetic import generate_dataset
from utils.data.voc import resolve_voc_root
from utils.fileio import DiskFullError
from utils.training import distributed
from utils.training.config import RESUME_AUTO, ConfigError, TrainConfig, validate_config
from utils.training.losses import SegLoss, build_seg_loss
from utils.training.run_dir import find_resume_checkpoint, prepare_run_dir
from utils.training.signals import exit_status
from utils.training.trainer import (
    NonFiniteError,
    Trainer,
    TrainingStopped,
    TrainResult,
    seed_everything,
)

REAL_DATA = Path("data/Orange_Navel_1.5k")
SYNTHETIC_DATA = Path("data/synthetic_oranges")
SYNTHETIC_IMAGES = 200

C = TypeVar("C", bound=TrainConfig)
# (the built model with its starting weights, the configured segmentation loss) -> the task
TaskBuilder = Callable[[nn.Module, SegLoss], nn.Module]


def parse_train_config(
    config_cls: type[C], argv: Sequence[str], description: str | None = None
) -> C:
    """The script's defaults overridden by `argv`; with --resume, the run's saved config is the
    base instead, so ``--resume last.pth`` alone continues a run with its own settings and
    ``--resume last.pth --epochs 300`` extends it. ``--resume auto`` (with --name) stands for
    the newest checkpoint of --save-dir/NAME and stays "auto" when there is none (a new run
    there: utils/training/run_dir.py). Unknown flags exit with status 2."""
    cfg = parse_config(config_cls, argv, description)
    if not cfg.resume:
        return cfg
    resume = cfg.resume
    if resume == RESUME_AUTO:
        if not cfg.name:
            raise ConfigError(
                "--resume=auto: needs --name NAME, the run folder (--save-dir/NAME) to continue"
            )
        found = find_resume_checkpoint(Path(cfg.save_dir) / cfg.name, cfg.trust_checkpoint)
        if found is None:
            return cfg
        resume = str(found)
    if not Path(resume).is_file():
        raise ConfigError(f"--resume={resume!r}: file not found")
    ckpt = read_project_checkpoint(resume, trust=cfg.trust_checkpoint)
    saved = dict(ckpt.get("config") or {})
    saved.pop("trust_checkpoint", None)  # trusting files is never taken from a file
    base = config_from_dict(config_cls, saved, resume=resume)
    cfg = parse_config(config_cls, argv, description, default=base)
    return dataclasses.replace(cfg, resume=resume)


def main(
    config_cls: type[C],
    train_fn: Callable[[C], Any],
    prog: str,
    argv: Sequence[str] | None = None,
    description: str | None = None,
) -> int:
    """Parse the flags, run `train_fn(cfg)`, and return the exit status.

    0: done; 1: stopped on a NaN or inf (loss, gradient, weight); 2: a user-facing problem
    (unknown flag, bad value, missing file, broken data, full disk: the message says which);
    128 + the signal's number: stopped by a signal (utils/training/signals.py) with
    interrupted.pth written, 130 for Ctrl-C, 138 SIGUSR1, 143 SIGTERM (a second Ctrl-C: 130 at
    once, without it).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        train_fn(parse_train_config(config_cls, argv, description))
        return 0
    except TrainingStopped as exc:
        if exc.checkpoint is not None:  # rank 0
            how = continue_command(prog, argv, exc.checkpoint)
            print(f"{prog}: {exc}; continue with {how}", file=sys.stderr, flush=True)
        return exit_status(exc.signum)
    except (
        ConfigError,
        CheckpointError,
        ValueError,
        FileNotFoundError,
        KeyError,
        DiskFullError,
    ) as exc:
        status, message = 2, f"{prog}: error: {user_message(exc)}"
        release_failed_run(exc)
    except NonFiniteError as exc:
        status, message = 1, f"{prog}: stopped: {exc}"
        release_failed_run(exc)
    except KeyboardInterrupt:
        return 130
    print(message, file=sys.stderr)
    return status


def continue_command(prog: str, argv: Sequence[str], checkpoint: Path) -> str:
    """How to continue a stopped run: the same command where it has --resume auto (it finds
    `checkpoint`), else the script with --resume `checkpoint` (which holds every setting)."""
    pairs = zip(argv, argv[1:], strict=False)
    if f"--resume={RESUME_AUTO}" in argv or ("--resume", RESUME_AUTO) in pairs:
        return "the same command (its --resume auto takes the newest checkpoint)"
    launcher = "torchrun <its options>" if distributed.env_world_size() > 1 else "python"
    return f"{launcher} {prog} --resume {shlex.quote(str(checkpoint))}"


# "Caught ValueError in DataLoader worker process 0.\nOriginal Traceback (most recent ...):"
_WORKER_ERROR = re.compile(r"^Caught \w+ in DataLoader worker process \d+\.\s*\nOriginal Traceback")
_EXCEPTION_PREFIX = re.compile(r"^[A-Za-z_][\w.]*: ")


def user_message(exc: BaseException) -> str:
    """The message of a user-facing error, the same whether it was raised in this process or
    in a DataLoader worker (torch re-raises those with the worker's whole traceback in the
    message: only the original message is kept)."""
    text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    if _WORKER_ERROR.match(text):
        lines = text.rstrip("\n").splitlines()
        # the traceback's frames and code lines are indented; the exception follows the last
        last_indented = max((i for i, ln in enumerate(lines) if ln[:1].isspace()), default=0)
        text = "\n".join(lines[last_indented + 1 :]) or text
        text = _EXCEPTION_PREFIX.sub("", text, count=1)
        if isinstance(exc, KeyError) and len(text) > 1 and text[0] == text[-1] in "'\"":
            text = text[1:-1]  # a KeyError's message is printed as its repr
    return text


def release_failed_run(exc: BaseException) -> None:
    """Close the progress bars and stop the DataLoader workers that the frames of `exc`'s
    traceback still hold, so that the error message is the last line of the output and the
    process ends at once. (Left to the garbage collector, a loader iterator caught in the
    exception's reference cycle is finalised after its queues and waits 5 s per worker.)"""
    loader_iter = getattr(torch_dataloader, "_MultiProcessingDataLoaderIter", ())
    for frame, _ in traceback.walk_tb(exc.__traceback__):
        for value in list(frame.f_locals.values()):
            if isinstance(value, tqdm):
                value.close()
            elif loader_iter and isinstance(value, loader_iter):
                shutdown = getattr(value, "_shutdown_workers", None)
                if shutdown is not None:
                    shutdown()


def resolve_data(data: str, is_main: bool = True) -> Path:
    """The VOC root to train on: `data`, else the real set if present, else synthetic oranges
    (generated by the main process on first use)."""
    if data:
        return Path(data)
    if (REAL_DATA / "VOC2007").is_dir():
        return REAL_DATA
    if not (SYNTHETIC_DATA / "VOC2007").is_dir():
        if is_main:
            print(
                f"no --data and no {REAL_DATA}/VOC2007: generating {SYNTHETIC_IMAGES} synthetic "
                f"oranges into {SYNTHETIC_DATA} (once)",
                flush=True,
            )
            generate_dataset(SYNTHETIC_DATA, num=SYNTHETIC_IMAGES, seed=0)
        distributed.barrier()
    return SYNTHETIC_DATA


def resolve_class_names(cfg: TrainConfig, root: Path, is_main: bool = True) -> tuple[str, ...]:
    """The class names of the run: --class-names, else the data set's VOC2007/class_names.txt
    (what voc_annotation.py's converters write), else the paper's four names (or class_0 ...
    for another count). ConfigError when the data set's file names another number of classes
    than --num-classes (a model of the wrong size would train on its masks)."""
    voc = resolve_voc_root(root)
    from_file = read_class_names(voc)  # ClassNamesError (a ValueError) names the file
    if cfg.class_names:
        names = tuple(cfg.class_names)
        if from_file is not None and from_file != names and is_main:
            print(
                f"--class-names {' '.join(names)} used instead of {class_names_file(voc)} "
                f"({' '.join(from_file)})",
                flush=True,
            )
        return names
    if from_file is None:
        return tuple(default_class_names(cfg.num_classes))
    if len(from_file) != cfg.num_classes:
        raise ConfigError(
            f"{class_names_file(voc)} names {len(from_file)} classes ({', '.join(from_file)}) "
            f"but --num-classes is {cfg.num_classes}: pass --num-classes {len(from_file)} (or "
            f"--class-names with {cfg.num_classes} names)"
        )
    return from_file


def check_masks(train_set: VOCSegmentation, val_set: VOCSegmentation, is_main: bool) -> None:
    """Stop (``MaskError``, naming every file and value) before training when a mask of either
    split cannot be read or holds a value that is no class (utils/data/mask_values.py)."""
    start = time.perf_counter()
    read = sum(check_mask_values(split).read for split in (train_set, val_set))
    if is_main and read:
        print(
            f"checked the values of {read} masks in {time.perf_counter() - start:.1f} s (kept in "
            f"{train_set.voc / CACHE_NAME} for the next run)",
            flush=True,
        )


def parse_model_options(items: Sequence[str]) -> dict[str, Any]:
    """["pyramid=ppm", "irb=false"] -> {"pyramid": "ppm", "irb": False} (YAML scalars)."""
    options = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--model-options {item!r}: expected key=value, e.g. pyramid=ppm")
        options[key.strip().replace("-", "_")] = yaml.safe_load(value)
    return options


def build_checked_model(cfg: TrainConfig) -> nn.Module:
    """The randomly initialised model; ConfigError on an unknown name or an unusable size."""
    if cfg.model not in nets.MODELS:
        raise ConfigError(
            f"--model={cfg.model!r}: unknown model; valid names: {', '.join(sorted(nets.MODELS))}"
        )
    model = nets.build_model(cfg.model, cfg.num_classes, **parse_model_options(cfg.model_options))
    fixed = getattr(model, "fixed_input_size", False)
    default = getattr(model, "default_input_size", cfg.input_size[0])
    if fixed and tuple(cfg.input_size) != (default, default):
        raise ConfigError(
            f"--input-size={list(cfg.input_size)}: {cfg.model} only runs at {default}x{default} "
            f"(its attention biases are sized for it); use --input-size {default}"
        )
    if cfg.pretrained == "imagenet" and not hasattr(model, "load_pretrained"):
        raise ConfigError(
            f"--pretrained=imagenet: {cfg.model} has no ImageNet backbone weights; give a file"
        )
    return model


def load_initial_weights(model: nn.Module, cfg: TrainConfig, is_main: bool) -> None:
    """`--pretrained imagenet` (ImageNet backbone) or a weights file, unless resuming."""
    if cfg.pretrained == "imagenet":
        model.load_pretrained()  # from model_data/ (clear error naming the file if absent)
    elif cfg.pretrained and not cfg.resume_file():
        report = nets.load_checkpoint(
            model,
            cfg.pretrained,
            trust=cfg.trust_checkpoint,
            drop_classifier=cfg.drop_classifier,
        )
        if is_main:
            dropped = (
                f", {len(report.dropped)} classifier tensors re-initialised (--drop-classifier)"
                if report.dropped
                else ""
            )
            print(
                f"loaded {cfg.pretrained} ({report.layout} layout): {len(report.loaded)} "
                f"tensors, {len(report.missing)} model keys kept random, "
                f"{len(report.skipped)} file keys unused{dropped}",
                flush=True,
            )


def train(
    cfg: TrainConfig, build_task: TaskBuilder, train_size: Sequence[int] | None = None
) -> TrainResult:
    """Validate `cfg`, build data, model, weights and task, and run the loop (module docstring).

    `build_task(model, seg_loss)` wraps the model, its starting weights loaded, in the
    script's task. `train_size` is the (h, w) the training split is loaded at when it differs
    from the model's input size (distillation: the teacher's); evaluation and checkpoints use
    ``cfg.input_size``.
    """
    validate_config(cfg, distributed.env_world_size())
    seed_everything(cfg.seed)  # same initial weights on every process and every run
    model = build_checked_model(cfg)

    info = distributed.setup(cfg.device)
    try:
        root = resolve_data(cfg.data, info.is_main)
        names = resolve_class_names(cfg, root, info.is_main)
        cfg = dataclasses.replace(cfg, data=str(root), class_names=names)  # saved with the run
        size = tuple(train_size or cfg.input_size)
        k = cfg.num_classes
        train_set = VOCSegmentation(root, "train", size, k, train=True, class_names=names)
        val_set = VOCSegmentation(root, "val", cfg.input_size, k, train=False, class_names=names)
        check_masks(train_set, val_set, info.is_main)
        load_initial_weights(model, cfg, info.is_main)
        seg_loss = build_seg_loss(cfg.loss, cfg.dice, cfg.class_weights or None)
        task = build_task(model, seg_loss)
        run_dir = prepare_run_dir(cfg, info)
        if info.is_main:
            n_params = count_params(model) / 1e6
            print(
                f"{cfg.model}: {n_params:.2f}M parameters | data {root}: "
                f"{len(train_set)} train, {len(val_set)} val images | {info.world_size} "
                f"process(es) on {info.device}",
                flush=True,
            )
            describe = getattr(task, "describe", None)
            if describe is not None:
                print(describe(), flush=True)
        trainer = Trainer(
            cfg,
            task,
            train_set,
            val_set,
            class_names=names,
            run_dir=run_dir,
            info=info,
            eval_loss=seg_loss,
        )
        result = trainer.fit()
        if info.is_main:
            best = "n/a" if result.best_metric is None else f"{100 * result.best_metric:.2f}%"
            print(f"done: best val mIoU {best}; checkpoints in {result.run_dir}", flush=True)
        return result
    finally:
        distributed.cleanup()
