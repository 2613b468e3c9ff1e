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
    # an exported ONNX model or OpenVINO IR (predict.py --mode export_onnx / export_openvino)
    python get_miou.py --onnx model_data/fastsegformer_p.onnx --data data/Orange_Navel_1.5k
    python get_miou.py --openvino model_data/fastsegformer_p_int8.xml --data data/Orange_Navel_1.5k
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
from utils.deploy.backends import BACKEND_CHOICES
from utils.fileio import DiskFullError
from utils.inference.evaluate import MODES, evaluate, format_table
from utils.inference.predictor import Predictor, default_class_names


@dataclass
class Config:
    # --- the model: a project checkpoint rebuilds itself; original weights need --model
    checkpoint: str | None = None  # project checkpoint (.pth) or original weights
    model: str | None = None  # registry model name (nets.MODELS), for the original's weights
    num_classes: int | None = None  # classes (None: the checkpoint's, else 4)
    trust_checkpoint: bool = False  # unpickle --checkpoint in full: trusted files only
    onnx: str | None = None  # evaluate this ONNX file instead
    openvino: str | None = None  # evaluate this OpenVINO IR (.xml) instead
    backend: Literal[tuple(BACKEND_CHOICES)] = "torch"  # runtime for --checkpoint (auto: fastest)
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
    """The Predictor for --checkpoint or --onnx (None when neither is given)."""
    if cfg.onnx:
        return Predictor.from_onnx(cfg.onnx)
    if cfg.openvino:
        return Predictor.from_openvino(cfg.openvino, threads=cfg.threads)
    if cfg.checkpoint:
        predictor = Predictor.from_checkpoint(
            cfg.checkpoint,
            device=cfg.device,
            half=cfg.half,
            model_name=cfg.model,
            num_classes=cfg.num_classes,
            trust=cfg.trust_checkpoint,
        )
        return predictor.use_backend(
            cfg.backend,
            calib_data=cfg.data,
            calib_images=cfg.calib_images,
            threads=cfg.threads,
            cache_dir=cfg.deploy_cache or None,
            log=print,
        )
    return None


def run(cfg: Config) -> dict | None:
    """Predict and/or score the split as --mode says; the metrics document (None: predict)."""
    given = [flag for flag in ("checkpoint", "onnx", "openvino") if getattr(cfg, flag)]
    if len(given) > 1:
        raise ValueError(f"give one of --checkpoint, --onnx, --openvino, not {given}")
    predictor = build_predictor(cfg)
    if predictor is None and cfg.mode != "score":
        raise ValueError(f"--mode {cfg.mode} needs --checkpoint, --onnx or --openvino PATH")
    if predictor is not None:
        if cfg.num_classes is not None and cfg.num_classes != predictor.num_classes:
            raise ValueError(
                f"the model predicts {predictor.num_classes} classes, --num-classes says "
                f"{cfg.num_classes}"
            )
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
            "model": cfg.onnx or cfg.openvino or cfg.checkpoint,
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
    cfg = parse_config(Config, argv, description=__doc__)
    try:
        run(cfg)
    except (FileNotFoundError, ValueError, KeyError, RuntimeError, DiskFullError) as e:
        message = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
