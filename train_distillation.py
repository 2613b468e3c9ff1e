"""Distil a trained teacher (Swin-T-Att-UNet at 512) into a FastSegFormer student (at 224).

FastSegFormer (Cai et al., Computers and Electronics in Agriculture 217, 108604, 2024) trains
its released students by multi-resolution knowledge distillation: the teacher sees the image at
512x512, the student the same image bilinearly resized to 224x224, and the student learns from
loss = CE + 5 * NFD + 0.5 * P&KL (KD2; KD1 leaves NFD out). The run path, loop, checkpoints,
logs and torchrun support are those of train.py (utils/training/run.py); only the task differs
(utils/training/distillation.py). The defaults below are the original's distillation settings:
batch 6, Adam at lr 1e-4, cosine to 1e-6, 1000 epochs, no frozen phase. See docs/distillation.md.

    python train_distillation.py --teacher-checkpoint logs/<teacher run>/best.pth
    python train_distillation.py --kd logits --student fastsegformer_e \\
        --teacher-checkpoint model_data/teacher_Swin_T_Att_Unet_input_512.pth \\
        --student-checkpoint logs/<student run>/best.pth
    python train_distillation.py --teacher-checkpoint T.pth --teacher-input-size 224   # one size
    python train_distillation.py --resume logs/<run>/last.pth        # teacher path from its config
    torchrun --nproc_per_node=2 train_distillation.py --teacher-checkpoint T.pth --batch-size 12

The student is named with --student and --student-checkpoint (train.py's --model and
--pretrained are not flags here). Checkpoints hold the student only (evaluate them with
get_miou.py like any student); the NFD connectors are kept under the checkpoint's "extra" for
--resume.
"""

from __future__ import annotations

import dataclasses
import datetime
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from torch import nn

from utils.training import run
from utils.training.distillation import (
    KD_MODES,
    DistillationTask,
    DistillConfig,
    load_teacher,
    parse_pairs,
    validate_distill_config,
)
from utils.training.losses import SegLoss
from utils.training.trainer import TrainResult


@dataclass
class Config(DistillConfig):
    # ------------------------------------------------------------------ editable block
    # teacher: a trained model, frozen during distillation
    teacher: str = "swin_t_att_unet"  # teacher model name (nets.MODELS)
    teacher_checkpoint: str = ""  # trained teacher weights, project or original (required)
    teacher_input_size: tuple[int, ...] = (512, 512)  # teacher (and loader) input h w
    # student: the model trained and saved
    student: str = "fastsegformer_p"  # student model name (nets.MODELS)
    student_checkpoint: str = ""  # student weights to start from: a file or 'imagenet'
    input_size: tuple[int, ...] = (224, 224)  # student input h w (also eval and checkpoints)
    # distillation loss: CE + nfd_weight * NFD + kd_weight * P&KL
    kd: Literal[KD_MODES] = "logits+nfd"  # KD1 'logits' (P&KL) or KD2 'logits+nfd' (P&KL + NFD)
    kd_temperature: float = 2.0  # P&KL temperature t
    kd_k1: float = 0.5  # P&KL weight k1 of the KL part (1 - k1 for the MSE part)
    kd_weight: float = 0.5  # weight of P&KL in the total loss
    nfd_weight: float = 5.0  # weight of NFD in the total loss (KD2)
    kd_pairs: tuple[str, ...] = ()  # NFD feature pairs student:teacher, e.g. 5:5 6:6 (empty: i:i)
    # schedule and optimisation of the original's distillation
    epochs: int = 1000  # total epochs
    freeze_epochs: int = 0  # first epochs with the student's backbone frozen (0: never)
    batch_size: int = 6  # global batch size
    freeze_batch_size: int = 6  # global batch size while frozen
    lr: float = 1e-4  # base learning rate
    min_lr: float = 1e-6  # final learning rate
    # ------------------------------------------------------------------ end of editable block


def train(cfg: Config) -> TrainResult:
    """Check the distillation flags, then train the student against the frozen teacher."""
    validate_distill_config(cfg)
    if not cfg.run_name and not cfg.resume:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        kd = cfg.kd.replace("+", "_")
        cfg = dataclasses.replace(cfg, run_name=f"kd_{kd}_{cfg.student}_{stamp}")

    def build_task(student: nn.Module, seg_loss: SegLoss) -> DistillationTask:
        teacher = load_teacher(
            cfg.teacher, cfg.teacher_checkpoint, cfg.num_classes, trust=cfg.trust_checkpoint
        )
        return DistillationTask(
            student,
            teacher,
            seg_loss,
            student_size=cfg.input_size,
            teacher_size=cfg.teacher_input_size,
            kd=cfg.kd,
            temperature=cfg.kd_temperature,
            k1=cfg.kd_k1,
            kd_weight=cfg.kd_weight,
            nfd_weight=cfg.nfd_weight,
            feature_pairs=parse_pairs(cfg.kd_pairs) or None,
            teacher_memory_format=cfg.teacher_memory_format,
        )

    # the loader yields the teacher's size; the task resizes for the student
    return run.train(cfg, build_task, train_size=cfg.teacher_input_size)


def main(argv: Sequence[str] | None = None) -> int:
    return run.main(Config, train, "train_distillation.py", argv, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
