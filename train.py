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
    torchrun --nproc_per_node=2 train.py --sync-bn        # DDP: NCCL on GPUs, gloo on CPU

Without --data, the real set at data/Orange_Navel_1.5k is used if present, otherwise the
synthetic oranges at data/synthetic_oranges (generated on first use). Every run writes to
logs/<model>_<date-time>/: config.yaml, best.pth / last.pth / epNNN.pth (self-describing:
get_miou.py and predict.py rebuild the model from them), history.json, loss.png, miou.png
and TensorBoard events (tensorboard --logdir logs). See docs/training.md.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from nets.profile import count_params
from utils.training.trainer import TrainConfig, opt

REAL_DATA = Path("data/Orange_Navel_1.5k")
SYNTHETIC_DATA = Path("data/synthetic_oranges")
SYNTHETIC_IMAGES = 200


@dataclass
class Config(TrainConfig):
    # ------------------------------------------------------------------ editable block
    # model and data
    model: str = opt("fastsegformer_p", "registry model name (see nets.MODELS)")
    model_options: list[str] = opt([], "model options key=value, e.g. pyramid=ppm irb=false")
    data: str = opt("", "VOC root holding VOC2007/ (empty: real set if present, else synthetic)")
    num_classes: int = opt(4, "classes including background (background, 3 defects)")
    input_size: tuple[int, ...] = opt((224, 224), "network input h w (the paper: 224 224)")
    pretrained: str = opt("", "weights to start from: a file (any layout) or 'imagenet'")
    resume: str = opt("", "checkpoint to continue from (its own settings unless flags given)")
    # schedule: 50 frozen epochs, then the whole network to epoch 1000
    epochs: int = opt(1000, "total epochs")
    freeze_epochs: int = opt(50, "first epochs with the backbone frozen (0: never)")
    batch_size: int = opt(32, "global batch size after unfreezing")
    freeze_batch_size: int = opt(32, "global batch size while frozen")
    # optimisation: Adam, lr scaled by batch/16 and clamped as the original
    lr: float = opt(1e-4, "base learning rate")
    min_lr: float = opt(1e-6, "final learning rate")
    # the original scales lr by batch/16 and clamps it; for Adam that pins lr to 1e-4 and
    # min_lr to 1e-6 whatever is set above: --no-scale-lr uses lr and min_lr as given
    scale_lr: bool = opt(True, "scale by batch/16 and clamp like the original")
    optimizer: str = opt("adam", "optimizer", ("adam", "adamw", "sgd"))
    lr_schedule: str = opt("cos", "warm-up + cosine (YOLOX) or step", ("cos", "step"))
    # loss
    loss: str = opt("ce", "main loss", ("ce", "focal"))
    dice: bool = opt(False, "add the dice loss")
    class_weights: list[float] = opt([], "CE weight per class (empty: all 1)")
    # running
    amp: bool = opt(False, "mixed precision on CUDA")
    eval_period: int = opt(5, "evaluate val mIoU every N epochs")
    save_period: int = opt(5, "write epNNN.pth every N epochs")
    save_dir: str = opt("logs", "where run folders go")
    workers: int = opt(2, "data-loading workers per process")
    seed: int = opt(11, "random seed")
    device: str = opt("auto", "auto, cpu, cuda or cuda:N")
    # ------------------------------------------------------------------ end of editable block


def parse_model_options(items: Sequence[str]) -> dict:
    """["pyramid=ppm", "irb=false"] -> {"pyramid": "ppm", "irb": False} (YAML scalars)."""
    import yaml

    from utils.training.trainer import ConfigError

    options = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--model-options {item!r}: expected key=value, e.g. pyramid=ppm")
        options[key.strip().replace("-", "_")] = yaml.safe_load(value)
    return options


def resolve_data(cfg: Config, is_main: bool = True) -> Path:
    """The VOC root to train on; generates the synthetic set when nothing else is there."""
    from utils.training import distributed

    if cfg.data:
        return Path(cfg.data)
    if (REAL_DATA / "VOC2007").is_dir():
        return REAL_DATA
    if not (SYNTHETIC_DATA / "VOC2007").is_dir():
        if is_main:
            from utils.data.synthetic import generate_dataset

            print(
                f"no --data and no {REAL_DATA}/VOC2007: generating {SYNTHETIC_IMAGES} synthetic "
                f"oranges into {SYNTHETIC_DATA} (once)",
                flush=True,
            )
            generate_dataset(SYNTHETIC_DATA, num=SYNTHETIC_IMAGES, seed=0)
        distributed.barrier()
    return SYNTHETIC_DATA


def build_checked_model(cfg: Config):  # noqa: ANN201 (nn.Module)
    """The randomly initialised model; ConfigError on an unknown name or an unusable size."""
    import nets
    from utils.training.trainer import ConfigError, input_hw

    if cfg.model not in nets.MODELS:
        raise ConfigError(
            f"--model={cfg.model!r}: unknown model; valid names: {', '.join(sorted(nets.MODELS))}"
        )
    model = nets.build_model(cfg.model, cfg.num_classes, **parse_model_options(cfg.model_options))
    size = input_hw(cfg.input_size)
    fixed = getattr(model, "fixed_input_size", False)
    default = getattr(model, "default_input_size", size[0])
    if fixed and size != (default, default):
        raise ConfigError(
            f"--input-size={list(size)}: {cfg.model} only runs at {default}x{default} "
            f"(its attention biases are sized for it); use --input-size {default}"
        )
    if cfg.pretrained == "imagenet" and not hasattr(model, "load_pretrained"):
        raise ConfigError(
            f"--pretrained=imagenet: {cfg.model} has no ImageNet backbone weights; give a file"
        )
    return model


def run(cfg: Config, argv: Sequence[str] = ()):  # noqa: ANN201 (TrainResult)
    """Validate, build data/model/task and train; returns utils.training.trainer.TrainResult."""
    from utils.data.dataset import VOCSegmentation
    from utils.training import distributed
    from utils.training.losses import build_seg_loss
    from utils.training.task import SegmentationTask
    from utils.training.trainer import (
        Trainer,
        fit_and_report,
        input_hw,
        load_initial_weights,
        prepare_run_dir,
        seed_everything,
        validate_config,
    )

    world_size = distributed.env_world_size()
    pretrained_keyword = cfg.pretrained == "imagenet"
    check_cfg = dataclasses.replace(cfg, pretrained="") if pretrained_keyword else cfg
    validate_config(check_cfg, world_size)
    seed_everything(cfg.seed)  # same initial weights on every process and every run
    model = build_checked_model(cfg)

    info = distributed.setup(cfg.device)
    try:
        root = resolve_data(cfg, info.is_main)
        size = input_hw(cfg.input_size)
        cfg = dataclasses.replace(cfg, data=str(root), input_size=size)
        train_set = VOCSegmentation(root, "train", size, cfg.num_classes, train=True)
        val_set = VOCSegmentation(root, "val", size, cfg.num_classes, train=False)
        run_dir = prepare_run_dir(cfg, info)

        load_initial_weights(model, cfg, info.is_main)
        seg_loss = build_seg_loss(cfg.loss, cfg.dice, cfg.class_weights or None)
        task = SegmentationTask(model, seg_loss)
        if info.is_main:
            n_params = count_params(model) / 1e6
            print(
                f"{cfg.model}: {n_params:.2f}M parameters | data {root}: {len(train_set)} train, "
                f"{len(val_set)} val images | {info.world_size} process(es) on {info.device}",
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
            eval_input_size=size,
            eval_loss=seg_loss,
        )
        return fit_and_report(trainer)
    finally:
        distributed.cleanup()


def main(argv: Sequence[str] | None = None) -> int:
    from utils.training.trainer import script_main

    return script_main(Config, run, "train.py", argv, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
