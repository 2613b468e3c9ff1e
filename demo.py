"""`make demo`: oranges and a conveyor belt -> FastSegFormer-P from scratch -> a graded line.

The first command of the README, made to finish on a 2-core CPU without a GPU in minutes:

1. builds one training set of single-orange photos (utils.data.synthetic) and conveyor-belt
   frames (utils.line.conveyor --voc, several belts, some fruit touching), if it is absent;
2. trains FastSegFormer-P (Cai et al., Computers and Electronics in Agriculture 217, 108604,
   2024) from random weights on both with train.py, at a 16:9 input (128x224) that keeps the
   conveyor frames' fruit as large as a 224x224 input would, for fewer pixels;
3. scores the best checkpoint on the test split (photos and frames) with get_miou.py;
4. predicts a few test photos into an output folder with predict.py;
5. renders a conveyor video with a seed the training never saw, with its ground truth;
6. grades it on the threaded line (python -m utils.line.grading --evaluate): the graded video,
   grades.csv (one row per fruit, its final grade) and the grade accuracy against the truth;
7. prints a summary.

Each step runs the script as its own process with the command printed, as you would type it.

    python demo.py                       # the defaults (`make demo`)
    python demo.py --epochs 4            # quicker, worse
    python demo.py --test-seconds 10     # a longer graded video

A few minutes from scratch are far from the paper's 1000 epochs from ImageNet weights: the
demo shows the whole chain working, not the paper's accuracy (docs/training.md,
docs/production_line.md).
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from utils.cli import parse_config
from utils.data.dataset import VOCSegmentation
from utils.data.preprocess import CLASS_NAMES
from utils.deploy.backends import BACKEND_CHOICES

ROOT = Path(__file__).resolve().parent


@dataclass
class Config:
    # ------------------------------------------------------------------ editable block
    data: str = "data/line_oranges"  # VOC root of photos + belt frames; generated if absent
    num_images: int = 200  # synthetic single-orange photos
    belts: int = 4  # conveyor belts rendered for training (seeds belt_seed, belt_seed+1, ...)
    belt_seconds: float = 4.0  # length of each training belt (30 FPS)
    belt_every: int = 3  # keep every N-th frame of a training belt
    belt_seed: int = 100  # first training belt's seed
    touching: float = 0.3  # share of fruit touching the fruit ahead (training and test belts)
    model: str = "fastsegformer_p"  # registry model to train from scratch
    input_size: tuple[int, ...] = (128, 224)  # network input h w (the paper: 224 224)
    epochs: int = 24  # training epochs
    batch_size: int = 8  # batch size
    lr: float = 3e-3  # Adam learning rate, used as given (no batch/16 clamp)
    # defects are ~2% of the pixels: weighted CE + dice make a short run predict them at all
    class_weights: tuple[float, ...] = (1.0, 3.0, 6.0, 6.0)  # CE weight per class
    dice: bool = True  # add the dice loss
    eval_period: int = 4  # val mIoU every N epochs (best.pth follows it)
    workers: int = 1  # data-loading worker processes
    amp: bool = True  # train.py --amp: bf16 autocast on CPUs with native bf16, else float32
    predict_images: int = 4  # test photos to predict into the output folder
    test_seed: int = 7  # seed of the graded conveyor video (not one of the training belts)
    test_seconds: float = 6.0  # its length (30 FPS)
    backend: Literal[tuple(BACKEND_CHOICES)] = "auto"  # runtime of the graded line (auto: fastest)
    out: str = "logs/demo"  # folder of the demo's runs
    seed: int = 11  # random seed of training
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


def run_module(module: str, *args: object) -> int:
    """`python -m module args` as its own process (see run_script)."""
    cmd = [sys.executable, "-m", module, *map(str, args)]
    print(f"      $ python -m {module} {' '.join(map(str, args))}", flush=True)
    # the project's modules from any working folder; relative paths stay the caller's
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
    }
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, bufsize=1, env=env) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            print(f"      {line}", end="", flush=True)
    return proc.returncode


def ensure_data(cfg: Config) -> Path:
    """The data set root: synthetic photos, then conveyor frames added to the same splits."""
    root = Path(cfg.data)
    if (root / "VOC2007").is_dir():
        print(f"[1/7] data: {root} (already there)", flush=True)
        return root
    print(
        f"[1/7] data: {cfg.num_images} synthetic oranges + {cfg.belts} conveyor belts into {root}",
        flush=True,
    )
    t = time.perf_counter()
    if run_module("utils.data.synthetic", "--out", root, "--num", cfg.num_images, "--seed", 0):
        raise SystemExit("demo: utils.data.synthetic failed")
    rc = run_module(
        "utils.line.conveyor", "--voc", root, "--scenes", cfg.belts, "--seconds",
        cfg.belt_seconds, "--every", cfg.belt_every, "--seed", cfg.belt_seed,
        "--touching", cfg.touching,
    )  # fmt: skip
    if rc:
        raise SystemExit("demo: utils.line.conveyor --voc failed")
    print(f"      done in {time.perf_counter() - t:.0f} s", flush=True)
    return root


def train_model(cfg: Config, root: Path, run_name: str) -> Path:
    """train.py from scratch into OUT/run_name; returns the run folder."""
    print(
        f"[2/7] training {cfg.model} from scratch: {cfg.epochs} epochs at "
        f"{'x'.join(map(str, cfg.input_size))}, batch {cfg.batch_size}, Adam lr {cfg.lr:g}",
        flush=True,
    )
    rc = run_script(
        "train.py",
        "--model", cfg.model, "--data", root, "--input-size", *cfg.input_size,
        "--epochs", cfg.epochs, "--freeze-epochs", 0,  # from scratch: nothing to keep frozen
        "--batch-size", cfg.batch_size, "--freeze-batch-size", cfg.batch_size,
        "--lr", cfg.lr, "--min-lr", cfg.lr / 100, "--no-scale-lr",
        "--class-weights", *cfg.class_weights, "--dice" if cfg.dice else "--no-dice",
        "--eval-period", cfg.eval_period, "--save-period", cfg.epochs,
        "--save-dir", cfg.out, "--name", run_name, "--workers", cfg.workers,
        "--seed", cfg.seed, "--device", "cpu", "--overlays", 4, "--amp" if cfg.amp else "--no-amp",
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


def grade_test_video(cfg: Config, checkpoint: Path, out: Path) -> dict:
    """Render an unseen conveyor video with its ground truth and grade it with --evaluate."""
    video = out / f"belt_seed{cfg.test_seed}.mp4"
    rc = run_module(
        "utils.line.conveyor", "--out", video, "--seconds", cfg.test_seconds, "--seed",
        cfg.test_seed, "--touching", cfg.touching, "--ground-truth",
    )  # fmt: skip
    if rc != 0:
        raise SystemExit(f"demo: utils.line.conveyor failed (exit status {rc})")
    print(f"[6/7] grading {video.name} on the threaded line, against its ground truth", flush=True)
    rc = run_module(
        "utils.line.grading", "--checkpoint", checkpoint, "--source", video, "--evaluate",
        "--out", out, "--backend", cfg.backend, "--calib-data", cfg.data,
    )  # fmt: skip
    if rc != 0:
        raise SystemExit(f"demo: utils.line.grading failed (exit status {rc})")
    return json.loads((out / "grading_eval.json").read_text())


def line_summary(doc: dict) -> str:
    """One line: fruit seen, grade counts, grade accuracy against the video's ground truth."""
    counts: dict[str, int] = {}
    for row in doc["per_fruit"]:
        counts[row["grade"]] = counts.get(row["grade"], 0) + 1
    graded = ", ".join(f"{counts[g]} {g}" for g in [*doc["grades"], "missed"] if counts.get(g))
    accuracy = doc["grade_accuracy"]
    return (
        f"{doc['fruit']} fruit seen whole ({graded}); grade accuracy "
        f"{'n/a' if accuracy is None else f'{100 * accuracy:.1f}%'} against the ground truth; "
        f"{doc['reject_as_premium']} rejects graded premium; mIoU on the frames "
        f"{100 * (doc['mIoU'] or 0):.1f}% (defect classes {100 * (doc['defect_mIoU'] or 0):.1f}%)"
    )


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

    print(f"[3/7] scoring {checkpoint} on the test split", flush=True)
    eval_dir = run_dir / "test_eval"
    miou, ious = score_test_split(checkpoint, root, eval_dir)
    print(f"[4/7] predicting {cfg.predict_images} test photos", flush=True)
    pictures = predict_some(checkpoint, root, run_dir / "predictions", cfg.predict_images)
    print(f"[5/7] rendering a conveyor video with seed {cfg.test_seed} (unseen)", flush=True)
    line_dir = run_dir / "line"
    line = grade_test_video(cfg, checkpoint, line_dir)

    per_class = ", ".join(
        f"{name} {'n/a' if iou is None else f'{100 * iou:.1f}'}"
        for name, iou in zip(CLASS_NAMES, ious, strict=False)
    )
    total = time.perf_counter() - t0
    print(
        "\n"
        f"[7/7] demo finished in {total / 60:.1f} min (data + training {t_train / 60:.1f} min)\n"
        f"  test mIoU     {100 * miou:.2f}%  ({per_class}; get_miou.py -> {eval_dir})\n"
        f"  line          {line_summary(line)}\n"
        f"  graded video  {line_dir}  (*_graded.mp4, grades.csv: one row per fruit, "
        f"grading_eval.json)\n"
        f"  data          {root}\n"
        f"  run folder    {run_dir}  (config.yaml, history.json, loss.png, miou.png)\n"
        f"  checkpoint    {checkpoint}\n"
        f"  predictions   {pictures or 'not written (predict.py failed, see above)'}\n"
        f"  app           python gui.py --checkpoint {checkpoint} --source {line['source']}\n"
        f"  next          python train.py --data {root}   (the paper's full schedule)",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
