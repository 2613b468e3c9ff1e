"""Distil a trained teacher (Swin-T-Att-UNet at 512) into a FastSegFormer student (at 224).

FastSegFormer (Cai et al., Computers and Electronics in Agriculture 217, 108604, 2024) trains
its released students by multi-resolution knowledge distillation: the teacher sees the image at
512x512, the student the same image bilinearly resized to 224x224, and the student learns from
loss = CE + 5 * NFD + 0.5 * P&KL (KD2; KD1 leaves NFD out). --kd also offers DIST (Huang et
al., NeurIPS 2022) and CWD (Shu et al., ICCV 2021) on the logits, alone or combined with the
paper's terms (e.g. --kd dist, --kd logits+cwd). The run path, loop, checkpoints,
logs and torchrun support are those of train.py (utils/training/run.py); only the task differs
(utils/training/distillation.py). The defaults below are the original's distillation settings:
batch 6, Adam at lr 1e-4, cosine to 1e-6, 1000 epochs, no frozen phase. See docs/distillation.md.

    python train_distillation.py --teacher-checkpoint logs/<teacher run>/best.pth
    python train_distillation.py --kd logits --student fastsegformer_e \\
        --teacher-checkpoint model_data/teacher_Swin_T_Att_Unet_input_512.pth \\
        --student-checkpoint logs/<student run>/best.pth
    python train_distillation.py --teacher-checkpoint T.pth --teacher-input-size 224   # one size
    python train_distillation.py --teacher-checkpoint T.pth --kd dist        # DIST only
    python train_distillation.py --teacher-checkpoint T.pth --kd logits+nfd+cwd --cwd-weight 3
    python train_distillation.py --resume logs/<run>/last.pth        # teacher path from its config
    torchrun --nproc_per_node=2 train_distillation.py --teacher-checkpoint T.pth --batch-size 12

The student is named with --student and --student-checkpoint (train.py's --model and
--pretrained are not flags here). Checkpoints hold the student only (evaluate them with
get_miou.py like any student); the NFD connectors are kept under the checkpoint's "extra" for
--resume.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass

from torch import nn

from utils.training import run
from utils.training.distillation import (
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
    # distillation loss: CE + the weighted terms of --kd, joined by '+' in any order:
    # logits (P&KL, kd_weight), nfd (NFD, nfd_weight), dist (DIST, dist_weight), cwd (CWD,
    # cwd_weight). The paper's KD1 is 'logits', its KD2 'logits+nfd' (CE + 5 NFD + 0.5 P&KL).
    kd: str = "logits+nfd"  # KD terms joined by '+': logits (P&KL), nfd, dist, cwd
    kd_temperature: float = 2.0  # P&KL temperature t
    kd_k1: float = 0.5  # P&KL weight k1 of the KL part (1 - k1 for the MSE part)
    kd_weight: float = 0.5  # weight of P&KL in the total loss
    nfd_weight: float = 5.0  # weight of NFD in the total loss (KD2)
    # DIST: tau^2 (beta * inter-class + gamma * intra-class relation), reference code's values
    dist_weight: float = 1.0  # weight of DIST in the total loss
    dist_tau: float = 1.0  # DIST temperature tau
    dist_beta: float = 1.0  # DIST weight beta of the inter-class relation
    dist_gamma: float = 1.0  # DIST weight gamma of the intra-class relation
    # CWD: T^2 / C * sum of per-channel spatial KL, the reference code's values for logits
    cwd_weight: float = 3.0  # weight of CWD in the total loss
    cwd_tau: float = 4.0  # CWD temperature T
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
            dist_weight=cfg.dist_weight,
            dist_tau=cfg.dist_tau,
            dist_beta=cfg.dist_beta,
            dist_gamma=cfg.dist_gamma,
            cwd_weight=cfg.cwd_weight,
            cwd_tau=cfg.cwd_tau,
            feature_pairs=parse_pairs(cfg.kd_pairs) or None,
            teacher_memory_format=cfg.teacher_memory_format,
        )

    # the loader yields the teacher's size; the task resizes for the student
    return run.train(cfg, build_task, train_size=cfg.teacher_input_size)


def main(argv: Sequence[str] | None = None) -> int:
    return run.main(Config, train, "train_distillation.py", argv, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
