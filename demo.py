"""`make demo`: synthetic oranges -> FastSegFormer-P trained from scratch -> test mIoU -> pictures.

The first command of the README, made to finish on a 2-core CPU without a GPU in minutes:

1. generates the synthetic navel-orange data set (utils.data.synthetic) if it is absent;
2. trains FastSegFormer-P (Cai et al., Computers and Electronics in Agriculture 217, 108604,
   2024) from random weights for a few epochs with train.py's loop (defaults below: smaller
   input and a higher lr than the paper's 224 / 1e-4, so that something is learnt quickly);
3. scores the best checkpoint on the test split with get_miou.py (full-size photos);
4. predicts a few test photos into an output folder with predict.py;
5. prints the test mIoU and where everything is.

    python demo.py                       # the defaults (`make demo`)
    python demo.py --epochs 2            # quicker, worse
    python demo.py --input-size 224 --epochs 20    # the paper's input size, longer

A few epochs from scratch are far from the paper's 1000 epochs from ImageNet weights: the demo
shows the pipeline working end to end, not the paper's accuracy (docs/training.md).
"""

from __future__ import annotations

import datetime
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from utils.cli import parse_config
from utils.training.trainer import opt


@dataclass
class Config:
    # ------------------------------------------------------------------ editable block
    data: str = opt("data/synthetic_oranges", "VOC root; generated here if absent")
    num_images: int = opt(200, "synthetic photos to generate when the data set is absent")
    model: str = opt("fastsegformer_p", "registry model to train from scratch")
    input_size: int = opt(128, "network input side (the paper: 224; smaller trains faster)")
    epochs: int = opt(20, "training epochs")
    batch_size: int = opt(4, "batch size (small: more steps in the same time)")
    lr: float = opt(3e-3, "Adam learning rate, used as given (no batch/16 clamp)")
    # defects are ~2% of the pixels: weighted CE + dice make a short run predict them at all
    class_weights: list[float] = opt([1.0, 3.0, 6.0, 6.0], "CE weight per class")
    dice: bool = opt(True, "add the dice loss")
    eval_period: int = opt(5, "val mIoU every N epochs (best.pth follows it)")
    workers: int = opt(1, "data-loading worker processes")
    predict_images: int = opt(4, "test photos to predict into the output folder")
    out: str = opt("logs/demo", "folder of the demo's runs")
    seed: int = opt(11, "random seed")
    # ------------------------------------------------------------------ end of editable block


def ensure_data(cfg: Config) -> Path:
    """The data set root, generating the synthetic set when it is missing."""
    root = Path(cfg.data)
    if (root / "VOC2007").is_dir():
        print(f"[1/4] data: {root} (already there)", flush=True)
        return root
    from utils.data.synthetic import generate_dataset

    print(f"[1/4] data: generating {cfg.num_images} synthetic oranges into {root}", flush=True)
    t = time.perf_counter()
    generate_dataset(root, num=cfg.num_images, seed=0)
    print(f"      done in {time.perf_counter() - t:.0f} s", flush=True)
    return root


def train_model(cfg: Config, root: Path, run_name: str):  # noqa: ANN201 (TrainResult)
    import train

    tcfg = train.Config(
        model=cfg.model,
        data=str(root),
        input_size=(cfg.input_size, cfg.input_size),
        epochs=cfg.epochs,
        freeze_epochs=0,  # from scratch: nothing to keep frozen
        batch_size=cfg.batch_size,
        freeze_batch_size=cfg.batch_size,
        lr=cfg.lr,
        min_lr=cfg.lr / 100,
        scale_lr=False,
        class_weights=list(cfg.class_weights),
        dice=cfg.dice,
        eval_period=cfg.eval_period,
        save_period=cfg.epochs,
        save_dir=cfg.out,
        run_name=run_name,
        workers=cfg.workers,
        seed=cfg.seed,
        device="cpu",
        overlays=4,
    )
    print(
        f"[2/4] training {cfg.model} from scratch: {cfg.epochs} epochs at "
        f"{cfg.input_size}x{cfg.input_size}, batch {cfg.batch_size}, Adam lr {cfg.lr:g}",
        flush=True,
    )
    return train.run(tcfg)


def score_test_split(checkpoint: Path, root: Path, out: Path) -> tuple[float, list, Path]:
    """(mIoU, per-class IoU, output folder) of `checkpoint` on the test split, via get_miou.py."""
    import get_miou

    doc = get_miou.run(
        get_miou.Config(
            checkpoint=str(checkpoint), data=str(root), split="test", out=str(out), progress=False
        )
    )
    return float(doc["mIoU"]), list(doc["IoU"]), out


def predict_some(checkpoint: Path, root: Path, out: Path, n: int) -> Path | None:
    """Overlays of the first `n` test photos via predict.py; None if it reported a failure."""
    import predict
    from utils.data.dataset import VOCSegmentation

    photos = [str(p) for p in VOCSegmentation(root, "test", 64).photo_paths[:n]]
    args = ["--checkpoint", str(checkpoint), "--inputs", *photos, "--out", str(out)]
    rc = predict.main([*args, "--backend", "torch"])  # eager: no INT8 conversion in the demo
    return out if rc == 0 else None


def main(argv: list[str] | None = None) -> int:
    cfg = parse_config(Config, argv, description=__doc__)
    t0 = time.perf_counter()
    root = ensure_data(cfg)
    run_name = "run_" + datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    result = train_model(cfg, root, run_name)
    t_train = time.perf_counter() - t0
    checkpoint = result.best_path or result.last_path
    run_dir = result.run_dir

    print(f"[3/4] scoring {checkpoint} on the test split", flush=True)
    miou, ious, eval_dir = score_test_split(checkpoint, root, run_dir / "test_eval")
    print(f"[4/4] predicting {cfg.predict_images} test photos", flush=True)
    pictures = predict_some(checkpoint, root, run_dir / "predictions", cfg.predict_images)

    from utils.preprocess import CLASS_NAMES

    per_class = ", ".join(
        f"{name} {'n/a' if iou is None else f'{100 * iou:.1f}'}"
        for name, iou in zip(CLASS_NAMES, ious, strict=False)
    )
    total = time.perf_counter() - t0
    print(
        "\n"
        f"demo finished in {total / 60:.1f} min (data + training {t_train / 60:.1f} min)\n"
        f"  test mIoU     {100 * miou:.2f}%  ({per_class}; get_miou.py -> {eval_dir})\n"
        f"  data          {root}\n"
        f"  run folder    {run_dir}  (config.yaml, history.json, loss.png, miou.png)\n"
        f"  checkpoint    {checkpoint}\n"
        f"  predictions   {pictures or 'not written (predict.py failed, see above)'}\n"
        f"  tensorboard   tensorboard --logdir {cfg.out}\n"
        f"  next          python train.py --data {root}   (the paper's full schedule)",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
