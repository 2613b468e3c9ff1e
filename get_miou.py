"""Evaluate a trained model on a VOC split: per-class IoU, recall (PA), precision, mIoU, mPA.

Reproduces the evaluation of FastSegFormer (Cai et al., Computers and Electronics in Agriculture
217, 108604, 2024): every photo of the split is predicted at full size, written as an index PNG
`<id>.png`, and scored from one confusion matrix over the whole split (ignore index 255 left
out). Outputs: metrics.json (fractions in [0, 1]), confusion_matrix.csv, IoU/Recall/Precision
bar charts and a confusion-matrix heat map; a table is printed. See docs/inference.md.

    # predict and score (the model is rebuilt from the checkpoint alone)
    python get_miou.py --checkpoint logs/run/best.pth --data data/synthetic_oranges --split test
    # the original's published weights: name the model
    python get_miou.py --checkpoint model_data/fastsegformer_p.pth --model fastsegformer_p
    # an exported ONNX model or OpenVINO IR (predict.py --mode export_onnx / export_openvino);
    # these run without torch (requirements-deploy.txt)
    python get_miou.py --checkpoint model_data/p.onnx --data data/Orange_Navel_1.5k
    python get_miou.py --checkpoint model_data/p_int8.xml --data data/Orange_Navel_1.5k
    # score a deployment backend (INT8 calibrated on the --data train split)
    python get_miou.py --checkpoint logs/run/best.pth --backend ov-int8
    python get_miou.py --checkpoint logs/run/best.pth --backend auto   # the fastest that keeps it
    # predict only / score existing PNGs only (like the original's miou_mode 1 / 2)
    python get_miou.py --mode predict --checkpoint logs/run/best.pth --out logs/miou_out
    python get_miou.py --mode score --pred-dir logs/miou_out/predictions --num-classes 4
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from utils.cli import parse_config
from utils.data.class_names import default_class_names
from utils.deploy.backends import BACKEND_CHOICES
from utils.inference.evaluate import MODES, evaluate, format_table
from utils.inference.open_model import open_model
from utils.inference.predictor import Predictor

RENAMED = {"--onnx": "--checkpoint", "--openvino": "--checkpoint"}  # old flag -> new


@dataclass
class Config:
    # --- the model file: .pth checkpoint, .onnx or OpenVINO .xml (utils.inference.open_model)
    checkpoint: str | None = None  # model file: .pth (or the original's weights), .onnx, .xml
    model: str | None = None  # registry model name (nets.MODELS), for the original's weights
    num_classes: int | None = None  # classes (None: the checkpoint's, else 4)
    trust_checkpoint: bool = False  # unpickle --checkpoint in full: trusted files only
    backend: Literal[tuple(BACKEND_CHOICES)] | None = None  # a .pth's runtime (None: torch)
    calib_images: int = 64  # INT8: train-split photos of --data to calibrate on
    threads: int = 0  # CPU runtime threads (0: all)
    deploy_cache: str = "logs/deploy_cache"  # converted models are kept here
    # --- the data
    data: str = "data/synthetic_oranges"  # folder holding VOC2007/
    split: str = "test"  # ImageSets/Segmentation/<split>.txt
    class_names: tuple[str, ...] = ()  # class names (empty: the checkpoint's)
    # --- what to do and where
    mode: Literal[MODES] = "all"  # all: predict and score; predict: PNGs only; score: PNGs only
    out: str = "logs/miou_out"  # output folder
    pred_dir: str | None = None  # prediction PNG folder (None: OUT/predictions)
    # --- how to run the model
    device: str = "cpu"  # cpu, cuda or cuda:N
    half: bool = False  # fp16 weights and activations (CUDA)
    batch_size: int = 1  # photos per forward pass
    progress: bool = True  # show progress bars


def build_predictor(cfg: Config) -> Predictor | None:
    """The Predictor of --checkpoint (None when there is none); a .pth runs on --backend
    (default torch: the model as trained), an exported file on its own runtime."""
    if not cfg.checkpoint:
        return None
    return open_model(
        cfg.checkpoint,
        backend=cfg.backend,
        default_backend="torch",
        model_name=cfg.model,
        num_classes=cfg.num_classes,
        device=cfg.device,
        half=cfg.half,
        threads=cfg.threads,
        trust=cfg.trust_checkpoint,
        calib_data=cfg.data,
        calib_images=cfg.calib_images,
        cache_dir=cfg.deploy_cache or None,
        log=print,
    )


def run(cfg: Config) -> dict | None:
    """Predict and/or score the split as --mode says; the metrics document (None: predict)."""
    predictor = build_predictor(cfg)
    if predictor is None and cfg.mode != "score":
        raise ValueError(f"--mode {cfg.mode} needs --checkpoint PATH (.pth, .onnx or .xml)")
    if predictor is not None:
        num_classes = predictor.num_classes
        names = list(cfg.class_names) or predictor.class_names
        print(f"model: {predictor.describe()}")
    else:
        num_classes = cfg.num_classes or (len(cfg.class_names) or 4)
        names = list(cfg.class_names) or default_class_names(num_classes)
    doc = evaluate(
        cfg.data,
        cfg.split,
        cfg.out,
        num_classes,
        names,
        predictor=predictor,
        mode=cfg.mode,
        pred_dir=cfg.pred_dir,
        batch_size=cfg.batch_size,
        progress=cfg.progress,
        extra={
            "model": cfg.checkpoint,
            "backend": predictor.describe() if predictor is not None else None,
        },
    )
    if doc is None:
        print(f"predictions written to {cfg.pred_dir or cfg.out + '/predictions'}")
        return None
    print(format_table(doc))
    if predictor is not None:
        print(f"backend: {predictor.describe()}")
    print(f"metrics written to {cfg.out}/metrics.json (fractions); charts in {cfg.out}/")
    return doc


def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_config(Config, argv, description=__doc__, renamed=RENAMED)
    try:
        run(cfg)
    except (OSError, ValueError, KeyError, RuntimeError) as e:  # DiskFullError is an OSError
        message = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
