"""`make demo`: synthetic oranges -> FastSegFormer-P trained from scratch -> test mIoU -> pictures.

The first command of the README, made to finish on a 2-core CPU without a GPU in minutes:

1. generates the synthetic navel-orange data set (utils.data.synthetic) if it is absent;
2. trains FastSegFormer-P (Cai et al., Computers and Electronics in Agriculture 217, 108604,
   2024) from random weights for a few epochs with train.py (defaults below: smaller input
   and a higher lr than the paper's 224 / 1e-4, so that something is learnt quickly);
3. scores the best checkpoint on the test split with get_miou.py (full-size photos);
4. predicts a few test photos into an output folder with predict.py;
5. prints the test mIoU and where everything is.

Each step runs the script as its own process with the command printed, as you would type it.

    python demo.py                       # the defaults (`make demo`)
    python demo.py --epochs 2            # quicker, worse
    python demo.py --input-size 224 --epochs 20    # the paper's input size, longer

A few epochs from scratch are far from the paper's 1000 epochs from ImageNet weights: the demo
shows the pipeline working end to end, not the paper's accuracy (docs/training.md).
"""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from utils.cli import parse_config
from utils.data.dataset import VOCSegmentation
from utils.data.synthetic import generate_dataset
from utils.preprocess import CLASS_NAMES

ROOT = Path(__file__).resolve().parent


@dataclass
class Config:
    # ------------------------------------------------------------------ editable block
    data: str = "data/synthetic_oranges"  # VOC root; generated here if absent
    num_images: int = 200  # synthetic photos to generate when the data set is absent
    model: str = "fastsegformer_p"  # registry model to train from scratch
    input_size: int = 128  # network input side (the paper: 224; smaller trains faster)
    epochs: int = 20  # training epochs
    batch_size: int = 4  # batch size (small: more steps in the same time)
    lr: float = 3e-3  # Adam learning rate, used as given (no batch/16 clamp)
    # defects are ~2% of the pixels: weighted CE + dice make a short run predict them at all
    class_weights: tuple[float, ...] = (1.0, 3.0, 6.0, 6.0)  # CE weight per class
    dice: bool = True  # add the dice loss
    eval_period: int = 5  # val mIoU every N epochs (best.pth follows it)
    workers: int = 1  # data-loading worker processes
    predict_images: int = 4  # test photos to predict into the output folder
    out: str = "logs/demo"  # folder of the demo's runs
    seed: int = 11  # random seed
    # ------------------------------------------------------------------ end of editable block


def run_script(script: str, *args: object) -> int:
    """Run one of the project's scripts as its own process, as a user would; its output is
    printed here line by line (progress bars go straight to the terminal)."""
    cmd = [sys.executable, str(ROOT / script), *map(str, args)]
    print(f"      $ python {script} {' '.join(map(str, args))}", flush=True)
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, bufsize=1) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            print(f"      {line}", end="", flush=True)
    return proc.returncode


def ensure_data(cfg: Config) -> Path:
    """The data set root, generating the synthetic set when it is missing."""
    root = Path(cfg.data)
    if (root / "VOC2007").is_dir():
        print(f"[1/4] data: {root} (already there)", flush=True)
        return root
    print(f"[1/4] data: generating {cfg.num_images} synthetic oranges into {root}", flush=True)
    t = time.perf_counter()
    generate_dataset(root, num=cfg.num_images, seed=0)
    print(f"      done in {time.perf_counter() - t:.0f} s", flush=True)
    return root


def train_model(cfg: Config, root: Path, run_name: str) -> Path:
    """train.py from scratch into OUT/run_name; returns the run folder."""
    print(
        f"[2/4] training {cfg.model} from scratch: {cfg.epochs} epochs at "
        f"{cfg.input_size}x{cfg.input_size}, batch {cfg.batch_size}, Adam lr {cfg.lr:g}",
        flush=True,
    )
    rc = run_script(
        "train.py",
        "--model", cfg.model, "--data", root, "--input-size", cfg.input_size,
        "--epochs", cfg.epochs, "--freeze-epochs", 0,  # from scratch: nothing to keep frozen
        "--batch-size", cfg.batch_size, "--freeze-batch-size", cfg.batch_size,
        "--lr", cfg.lr, "--min-lr", cfg.lr / 100, "--no-scale-lr",
        "--class-weights", *cfg.class_weights, "--dice" if cfg.dice else "--no-dice",
        "--eval-period", cfg.eval_period, "--save-period", cfg.epochs,
        "--save-dir", cfg.out, "--run-name", run_name, "--workers", cfg.workers,
        "--seed", cfg.seed, "--device", "cpu", "--overlays", 4,
    )  # fmt: skip
    if rc != 0:
        raise SystemExit(f"demo: train.py failed (exit status {rc})")
    return Path(cfg.out) / run_name


def score_test_split(checkpoint: Path, root: Path, out: Path) -> tuple[float, list]:
    """(mIoU, per-class IoU) of `checkpoint` on the test split, via get_miou.py."""
    rc = run_script(
        "get_miou.py", "--checkpoint", checkpoint, "--data", root, "--split", "test",
        "--out", out, "--no-progress",
    )  # fmt: skip
    if rc != 0:
        raise SystemExit(f"demo: get_miou.py failed (exit status {rc})")
    doc = json.loads((out / "metrics.json").read_text())
    return float(doc["mIoU"]), list(doc["IoU"])


def predict_some(checkpoint: Path, root: Path, out: Path, n: int) -> Path | None:
    """Overlays of the first `n` test photos via predict.py; None if it reported a failure."""
    photos = VOCSegmentation(root, "test", 64).photo_paths[:n]
    rc = run_script(  # eager torch: no INT8 conversion in the demo
        "predict.py", "--checkpoint", checkpoint, "--inputs", *photos, "--out", out,
        "--backend", "torch",
    )  # fmt: skip
    return out if rc == 0 else None


def main(argv: list[str] | None = None) -> int:
    cfg = parse_config(Config, argv, description=__doc__)
    t0 = time.perf_counter()
    root = ensure_data(cfg)
    run_name = "run_" + datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = train_model(cfg, root, run_name)
    t_train = time.perf_counter() - t0
    checkpoint = run_dir / "best.pth"
    if not checkpoint.is_file():
        checkpoint = run_dir / "last.pth"

    print(f"[3/4] scoring {checkpoint} on the test split", flush=True)
    eval_dir = run_dir / "test_eval"
    miou, ious = score_test_split(checkpoint, root, eval_dir)
    print(f"[4/4] predicting {cfg.predict_images} test photos", flush=True)
    pictures = predict_some(checkpoint, root, run_dir / "predictions", cfg.predict_images)

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
