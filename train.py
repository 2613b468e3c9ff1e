"""Train a segmentation model of the registry (FastSegFormer-P by default) on a VOC data set.

FastSegFormer (Cai et al., Computers and Electronics in Agriculture 217, 108604, 2024) trains
its students at 224x224 with Adam, warm-up + cosine lr, the backbone frozen for 50 epochs and
then unfrozen up to epoch 1000, batch 32, evaluating val mIoU every 5 epochs. Those are the
defaults below; edit them here or override any of them on the command line.

    python train.py                                       # paper defaults (data: see --data)
    python train.py --data data/Orange_Navel_1.5k --pretrained model_data/poolformer_s12.pth
    python train.py --model fastsegformer_e --epochs 300 --freeze-epochs 0 --loss focal --dice
    python train.py --model swin_t_att_unet --input-size 512 --batch-size 8
    python train.py --resume logs/fastsegformer_p_20240101-120000/last.pth   # continue a run
    python train.py --name p_run --resume auto    # logs/p_run/: starts the run or continues it
    python train.py --num-classes 3 --pretrained other_classes.pth --drop-classifier
    torchrun --nproc_per_node=2 train.py --sync-bn        # DDP: NCCL on GPUs, gloo on CPU

Without --data, the real set at data/Orange_Navel_1.5k is used if present, otherwise the
synthetic oranges at data/synthetic_oranges (generated on first use). Every run writes to
logs/<model>_<date-time>/ (logs/NAME/ with --name NAME): config.yaml, best.pth (weights +
config) / last.pth / epNNN.pth (full training state, --keep N limits the epNNN.pth files; all
self-describing: get_miou.py and predict.py rebuild the model from them), history.json,
loss.png, miou.png and TensorBoard events (tensorboard --logdir logs). Ctrl-C, SIGTERM and
SIGUSR1 (a cluster stopping the job) write interrupted.pth after the step in progress and exit
with 128 + the signal's number; --resume continues it exactly. See docs/training.md.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from utils.training import run
from utils.training.config import TrainConfig
from utils.training.losses import LOSSES
from utils.training.optimizers import OPTIMIZERS
from utils.training.schedulers import SCHEDULES
from utils.training.task import SegmentationTask
from utils.training.trainer import TrainResult


@dataclass
class Config(TrainConfig):
    # ------------------------------------------------------------------ editable block
    # model and data
    model: str = "fastsegformer_p"  # registry model name (see nets.MODELS)
    model_options: tuple[str, ...] = ()  # model options key=value, e.g. pyramid=ppm irb=false
    data: str = ""  # VOC root holding VOC2007/ (empty: real set if present, else synthetic)
    num_classes: int = 4  # classes including background (background, 3 defects)
    class_names: tuple[str, ...] = ()  # names, background first (empty: data's class_names.txt)
    input_size: tuple[int, ...] = (224, 224)  # network input h w (the paper: 224 224)
    pretrained: str = ""  # weights to start from: a file (any layout) or 'imagenet'
    resume: str = ""  # checkpoint to continue from (its own settings), or auto: newest of --name
    # schedule: 50 frozen epochs, then the whole network to epoch 1000
    epochs: int = 1000  # total epochs
    freeze_epochs: int = 50  # first epochs with the backbone frozen (0: never)
    batch_size: int = 32  # global batch size after unfreezing
    freeze_batch_size: int = 32  # global batch size while frozen
    # optimisation: Adam, lr scaled by batch/16 and clamped as the original
    lr: float = 1e-4  # base learning rate
    min_lr: float = 1e-6  # final learning rate
    # the original scales lr by batch/16 and clamps it; for Adam that pins lr to 1e-4 and
    # min_lr to 1e-6 whatever is set above: --no-scale-lr uses lr and min_lr as given
    scale_lr: bool = True  # scale by batch/16 and clamp like the original
    optimizer: Literal[tuple(OPTIMIZERS)] = "adam"  # optimizer (utils/training/optimizers.py)
    lr_schedule: Literal[tuple(SCHEDULES)] = "cos"  # warm-up + cosine (YOLOX) or step
    # loss
    loss: Literal[tuple(LOSSES)] = "ce"  # main loss (utils/training/losses.py)
    dice: bool = False  # add the dice loss
    class_weights: tuple[float, ...] = ()  # CE weight per class (empty: all 1)
    # running
    amp: bool = True  # mixed precision where the device computes it natively (see --amp-dtype)
    eval_period: int = 5  # evaluate val mIoU every N epochs
    save_period: int = 5  # write epNNN.pth every N epochs
    keep: int = 0  # keep only the newest N epNNN.pth files (0: all)
    save_dir: str = "logs"  # where run folders go
    name: str = ""  # run folder name (empty: <model>_<date-time>); with --resume auto: restarts
    workers: int = 2  # data-loading workers per process
    seed: int = 11  # random seed
    device: str = "auto"  # auto, cpu, cuda or cuda:N
    # ------------------------------------------------------------------ end of editable block


def train(cfg: Config) -> TrainResult:
    """Supervised training: the model's logits against the labels through the configured loss."""
    return run.train(cfg, SegmentationTask)


def main(argv: Sequence[str] | None = None) -> int:
    return run.main(Config, train, "train.py", argv, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
