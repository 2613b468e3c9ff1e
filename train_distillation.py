"""Distil a trained teacher (Swin-T-Att-UNet at 512) into a FastSegFormer student (at 224).

FastSegFormer (Cai et al., Computers and Electronics in Agriculture 217, 108604, 2024) trains
its released students by multi-resolution knowledge distillation: the teacher sees the image at
512x512, the student the same image bilinearly resized to 224x224, and the student learns from
loss = CE + 5 * NFD + 0.5 * P&KL (KD2; KD1 leaves NFD out). The loop, checkpoints, logs and
torchrun support are those of train.py (utils/training/trainer.py); only the task differs
(utils/training/distillation.py). The defaults below are the original's distillation settings:
batch 6, Adam at lr 1e-4, cosine to 1e-6, 1000 epochs, no frozen phase. See docs/distillation.md.

    python train_distillation.py --teacher-checkpoint logs/<teacher run>/best.pth
    python train_distillation.py --kd logits --student fastsegformer_e \\
        --teacher-checkpoint model_data/teacher_Swin_T_Att_Unet_input_512.pth \\
        --student-checkpoint logs/<student run>/best.pth
    python train_distillation.py --teacher-checkpoint T.pth --teacher-input-size 224   # one size
    python train_distillation.py --resume logs/<run>/last.pth        # teacher path from its config
    torchrun --nproc_per_node=2 train_distillation.py --teacher-checkpoint T.pth --batch-size 12

Checkpoints hold the student only (evaluate them with get_miou.py like any student); the NFD
connectors are kept under the checkpoint's "extra" for --resume.
"""

from __future__ import annotations

import dataclasses
import datetime
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from nets.profile import count_params
from train import Config as TrainScriptConfig
from utils.training.distillation import KD_MODES
from utils.training.trainer import opt


@dataclass
class Config(TrainScriptConfig):
    # ------------------------------------------------------------------ editable block
    # teacher: a trained model, frozen during distillation
    teacher: str = opt("swin_t_att_unet", "teacher model name (nets.MODELS)")
    teacher_checkpoint: str = opt("", "trained teacher weights, project or original (required)")
    teacher_input_size: tuple[int, ...] = opt((512, 512), "teacher (and loader) input h w")
    # student: the model trained and saved
    student: str = opt("fastsegformer_p", "student model name (nets.MODELS)")
    student_checkpoint: str = opt("", "student weights to start from: a file or 'imagenet'")
    input_size: tuple[int, ...] = opt((224, 224), "student input h w (also eval and checkpoints)")
    # distillation loss: CE + nfd_weight * NFD + kd_weight * P&KL
    kd: str = opt("logits+nfd", "KD1 'logits' (P&KL) or KD2 'logits+nfd' (P&KL + NFD)", KD_MODES)
    kd_temperature: float = opt(2.0, "P&KL temperature t")
    kd_k1: float = opt(0.5, "P&KL weight k1 of the KL part (1 - k1 for the MSE part)")
    kd_weight: float = opt(0.5, "weight of P&KL in the total loss")
    nfd_weight: float = opt(5.0, "weight of NFD in the total loss (KD2)")
    kd_pairs: list[str] = opt([], "NFD feature pairs student:teacher, e.g. 5:5 6:6 (empty: i:i)")
    # schedule and optimisation of the original's distillation
    epochs: int = opt(1000, "total epochs")
    freeze_epochs: int = opt(0, "first epochs with the student's backbone frozen (0: never)")
    batch_size: int = opt(6, "global batch size")
    freeze_batch_size: int = opt(6, "global batch size while frozen")
    lr: float = opt(1e-4, "base learning rate")
    min_lr: float = opt(1e-6, "final learning rate")
    # ------------------------------------------------------------------ end of editable block


def validate_kd(cfg: Config, argv: Sequence[str]) -> None:
    """ConfigError naming the first invalid distillation field; builds nothing.

    Runs before the loop's own `validate_config`, so a bad student name or file is reported
    under the flag the user gave (--student...), not the trainer's --model / --pretrained.
    """
    from utils.training.distillation import parse_pairs
    from utils.training.trainer import ConfigError, explicit_fields

    given = explicit_fields(Config, argv) & {"model", "pretrained"}
    if given:
        names = ", ".join("--" + n for n in sorted(given))
        raise ConfigError(
            f"{names}: train_distillation.py names the student with --student and its starting "
            "weights with --student-checkpoint"
        )
    import nets

    for flag, name in (("--student", cfg.student), ("--teacher", cfg.teacher)):
        if name not in nets.MODELS:
            valid = ", ".join(sorted(nets.MODELS))
            raise ConfigError(f"{flag}={name!r}: unknown model; valid names: {valid}")
    weights = cfg.student_checkpoint
    if weights and weights != "imagenet" and not Path(weights).is_file():
        raise ConfigError(f"--student-checkpoint={weights!r}: file not found")
    if cfg.kd not in KD_MODES:
        raise ConfigError(f"--kd={cfg.kd!r}: expected one of {KD_MODES}")
    if not cfg.kd_temperature > 0:
        raise ConfigError(f"--kd-temperature={cfg.kd_temperature}: must be > 0")
    if not 0 <= cfg.kd_k1 <= 1:
        raise ConfigError(f"--kd-k1={cfg.kd_k1}: must be in [0, 1]")
    for name in ("kd_weight", "nfd_weight"):
        if getattr(cfg, name) < 0:
            raise ConfigError(f"--{name.replace('_', '-')}={getattr(cfg, name)}: must be >= 0")
    size = cfg.teacher_input_size
    if len(size) not in (1, 2) or any(int(s) < 32 or int(s) % 32 for s in size):
        raise ConfigError(
            f"--teacher-input-size={list(size)}: expected one or two multiples of 32, e.g. 512"
        )
    try:
        parse_pairs(cfg.kd_pairs)
    except ValueError as exc:
        raise ConfigError(f"--kd-pairs={cfg.kd_pairs}: {exc}") from None
    if cfg.kd_pairs and cfg.kd == "logits":
        raise ConfigError("--kd-pairs: feature pairs need --kd logits+nfd (KD1 uses no features)")


def run(cfg: Config, argv: Sequence[str] = ()):  # noqa: ANN201 (TrainResult)
    """Validate, load the teacher, build student/data/task and train; returns TrainResult."""
    from train import build_checked_model, resolve_data
    from utils.data.dataset import VOCSegmentation
    from utils.training import distributed
    from utils.training.distillation import DistillationTask, load_teacher, parse_pairs
    from utils.training.losses import build_seg_loss
    from utils.training.trainer import (
        Trainer,
        fit_and_report,
        input_hw,
        load_initial_weights,
        prepare_run_dir,
        seed_everything,
        validate_config,
    )

    # the student is the trainer's "model": --student / --student-checkpoint fill those fields
    cfg = dataclasses.replace(cfg, model=cfg.student, pretrained=cfg.student_checkpoint)
    if not cfg.run_name and not cfg.resume:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        cfg = dataclasses.replace(
            cfg, run_name=f"kd_{cfg.kd.replace('+', '_')}_{cfg.model}_{stamp}"
        )
    validate_kd(cfg, argv)
    world_size = distributed.env_world_size()
    pretrained_keyword = cfg.pretrained == "imagenet"
    validate_config(
        dataclasses.replace(cfg, pretrained="") if pretrained_keyword else cfg, world_size
    )

    teacher = load_teacher(cfg.teacher, cfg.teacher_checkpoint, cfg.num_classes)
    seed_everything(cfg.seed)  # same student and connector initialisation on every process
    student = build_checked_model(cfg)
    student_size = input_hw(cfg.input_size)
    teacher_size = input_hw(cfg.teacher_input_size)

    info = distributed.setup(cfg.device)
    try:
        root = resolve_data(cfg, info.is_main)
        cfg = dataclasses.replace(cfg, data=str(root))
        # the loader yields the teacher's size; the task resizes for the student
        train_set = VOCSegmentation(root, "train", teacher_size, cfg.num_classes, train=True)
        val_set = VOCSegmentation(root, "val", student_size, cfg.num_classes, train=False)
        run_dir = prepare_run_dir(cfg, info)

        load_initial_weights(student, cfg, info.is_main)
        seg_loss = build_seg_loss(cfg.loss, cfg.dice, cfg.class_weights or None)
        task = DistillationTask(
            student,
            teacher,
            seg_loss,
            student_size=student_size,
            teacher_size=teacher_size,
            kd=cfg.kd,
            temperature=cfg.kd_temperature,
            k1=cfg.kd_k1,
            kd_weight=cfg.kd_weight,
            nfd_weight=cfg.nfd_weight,
            feature_pairs=parse_pairs(cfg.kd_pairs) or None,
        )
        if info.is_main:
            millions = [count_params(m) / 1e6 for m in (student, teacher)]
            pairs = ", ".join(
                f"{s}:{t} ({c.in_channels}->{c.out_channels})"
                for (s, t), c in zip(task.feature_pairs, task.connectors, strict=True)
            )
            print(
                f"teacher {cfg.teacher} ({millions[1]:.2f}M) @ {teacher_size} from "
                f"{cfg.teacher_checkpoint} -> student {cfg.model} ({millions[0]:.2f}M) @ "
                f"{student_size} | kd {cfg.kd} | NFD pairs: {pairs or 'none'} | data {root}: "
                f"{len(train_set)} train, {len(val_set)} val images | "
                f"{info.world_size} process(es) on {info.device}",
                flush=True,
            )
        trainer = Trainer(
            cfg,
            task,
            train_set,
            val_set,
            class_names=train_set.class_names,
            run_dir=run_dir,
            info=info,
            eval_input_size=student_size,
            eval_loss=seg_loss,
        )
        return fit_and_report(trainer)
    finally:
        distributed.cleanup()


def main(argv: Sequence[str] | None = None) -> int:
    from utils.training.trainer import script_main

    return script_main(Config, run, "train_distillation.py", argv, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
