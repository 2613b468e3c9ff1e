"""Evaluate a segmentation model on a VOC split: predict, score, and report.

The paper (FastSegFormer, Cai et al., Computers and Electronics in Agriculture 217, 108604,
2024) reports mIoU and mPA on the test split of Orange_Navel_1.5k. As the original get_miou.py,
evaluation works on the full-size photos: each photo is predicted (letterbox, network, crop,
resize back), its class mask is written as `<id>.png`, and the PNGs are scored against the
masks. Scores come from ONE confusion matrix summed over the whole split (ignore index 255
left out), never from an average of per-image scores. Three modes, like the original's
`miou_mode`: "all" (predict and score), "predict" (PNGs only), "score" (score existing PNGs).

Outputs in the output folder: `predictions/<id>.png` (palette PNGs whose indices are class
ids), `metrics.json` (fractions in [0, 1]: key "units" says so), `confusion_matrix.csv` (rows
ground truth, columns prediction, pixel counts), `IoU.png`, `Recall.png`, `Precision.png`
(per-class bar charts) and `confusion_matrix.png` (row-normalised heat map). The charts need
matplotlib, which a deployment box may lack: then they are left out with one line saying so,
and every score is the same.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from utils.data.labels import read_mask, save_index_mask
from utils.data.preprocess import IGNORE_INDEX, read_image
from utils.data.voc import PHOTO_SUFFIXES, read_split, resolve_voc_root, split_paths
from utils.fileio import (
    atomic_open,
    atomic_path,
    describe_removed,
    remove_stale_temp_files,
    write_text,
)
from utils.metrics import ConfusionMatrix, segmentation_metrics

MODES = ("all", "predict", "score")
UNITS = "fraction"  # every score in metrics.json is a fraction in [0, 1] (x100 for percent)


def split_files(
    data: str | Path, split: str, num_classes: int, need_masks: bool = True
) -> tuple[list[str], list[Path], list[Path] | None]:
    """(ids, photo paths, mask paths or None) of a VOC split, checked by utils.data.dataset.

    split "all" without an all.txt split file means every mask in SegmentationClass/ (every
    photo in JPEGImages/ when masks are not needed): a folder of photos and masks with no split
    files, such as the six real samples, can be evaluated as it is.
    """
    voc = resolve_voc_root(data)
    if split == "all" and not (voc / "ImageSets" / "Segmentation" / "all.txt").is_file():
        return _all_files(voc, need_masks, PHOTO_SUFFIXES)
    if need_masks:
        _, ids, photos, masks = split_paths(voc, split)
        return ids, photos, masks
    split_file, ids = read_split(voc, split)
    photos = []
    for i in ids:
        found = [voc / "JPEGImages" / f"{i}{s}" for s in PHOTO_SUFFIXES]
        found = [p for p in found if p.is_file()]
        if not found:
            raise ValueError(f"{split_file} lists {i}, but {voc / 'JPEGImages'}/{i}.jpg is missing")
        photos.append(found[0])
    return ids, photos, None


def _all_files(
    voc: Path, need_masks: bool, suffixes: Sequence[str]
) -> tuple[list[str], list[Path], list[Path] | None]:
    photo_dir, mask_dir = voc / "JPEGImages", voc / "SegmentationClass"
    photos = {p.stem: p for p in sorted(photo_dir.glob("*")) if p.suffix.lower() in suffixes}
    if not need_masks:
        if not photos:
            raise ValueError(f"no photos in {photo_dir}")
        return list(photos), list(photos.values()), None
    masks = sorted(mask_dir.glob("*.png"))
    if not masks:
        raise ValueError(f"no masks (*.png) in {mask_dir}")
    missing = [m.stem for m in masks if m.stem not in photos]
    if missing:
        raise ValueError(f"masks without a photo in {photo_dir}: {', '.join(missing[:5])}")
    ids = [m.stem for m in masks]
    return ids, [photos[i] for i in ids], masks


def predict_split(
    predictor,
    ids: Sequence[str],
    photo_paths: Sequence[Path],
    pred_dir: str | Path,
    batch_size: int = 1,
    progress: bool = True,
) -> list[Path]:
    """Predict every photo and write `<id>.png` class masks to `pred_dir`; returns the paths."""
    pred_dir = Path(pred_dir)
    pred_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    bar = tqdm(total=len(ids), desc="predict", unit="img", disable=not progress)
    for start in range(0, len(ids), batch_size):
        chunk_ids = ids[start : start + batch_size]
        images = [read_image(p) for p in photo_paths[start : start + batch_size]]
        masks = predictor.predict_batch(images, batch_size=batch_size)
        for i, mask in zip(chunk_ids, masks, strict=True):
            written.append(save_index_mask(pred_dir / f"{i}.png", mask))
        bar.update(len(chunk_ids))
    bar.close()
    return written


def score_split(
    pred_dir: str | Path,
    ids: Sequence[str],
    mask_paths: Sequence[Path],
    num_classes: int,
    ignore_index: int = IGNORE_INDEX,
    progress: bool = True,
) -> np.ndarray:
    """(K, K) confusion matrix of the PNGs `pred_dir/<id>.png` against the ground-truth masks.

    Both are read with utils.data.labels.read_mask, so index, palette and RGB/RGBA PNGs in VOC
    colours all work; 255 is ignored, other values >= num_classes are refused (MaskError).
    """
    pred_dir = Path(pred_dir)
    cm = ConfusionMatrix(num_classes, ignore_index)
    for i, mask_path in tqdm(
        list(zip(ids, mask_paths, strict=True)), desc="score", unit="img", disable=not progress
    ):
        pred_path = pred_dir / f"{i}.png"
        if not pred_path.is_file():
            raise FileNotFoundError(
                f"prediction {pred_path} missing for id {i}; run the 'all' or 'predict' mode first"
            )
        gt = read_mask(mask_path, num_classes)  # class ids, 255 ignore
        pred = read_mask(pred_path, num_classes)
        if pred.shape != gt.shape:
            raise ValueError(
                f"prediction {pred_path} is {pred.shape[1]}x{pred.shape[0]} (WxH) but mask "
                f"{mask_path} is {gt.shape[1]}x{gt.shape[0]}; expected the same size"
            )
        if pred.max(initial=0) >= num_classes:
            raise ValueError(
                f"prediction {pred_path} holds class id {int(pred.max())}; expected ids "
                f"0..{num_classes - 1}"
            )
        cm.update(pred, gt)
    return cm.matrix


def _nan_to_none(x):
    if isinstance(x, list):
        return [_nan_to_none(v) for v in x]
    if isinstance(x, float) and math.isnan(x):
        return None
    return x


def metrics_document(cm: np.ndarray, class_names: Sequence[str], **extra) -> dict:
    """The metrics.json content: means, per-class lists, class names, counts, units."""
    m = segmentation_metrics(cm)
    doc = {
        "units": UNITS,
        "mIoU": m["mIoU"],
        "mPA": m["mPA"],
        "mPrecision": m["mPrecision"],
        "accuracy": m["accuracy"],
        "class_names": list(class_names),
        "IoU": m["IoU"],
        "PA": m["PA"],
        "Recall": m["PA"],
        "Precision": m["Precision"],
        "gt_pixels": cm.sum(axis=1).tolist(),
        "pred_pixels": cm.sum(axis=0).tolist(),
        "confusion_matrix": np.asarray(cm).tolist(),
        "note": "fractions in [0, 1]; classes absent from both labels and predictions are null "
        "and left out of the means; one confusion matrix over the split, ignore index excluded",
    }
    doc.update(extra)
    return {k: _nan_to_none(v) for k, v in doc.items()}


def write_confusion_csv(cm: np.ndarray, class_names: Sequence[str], path: str | Path) -> Path:
    path = Path(path)
    with atomic_open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["gt \\ pred", *class_names])
        for name, row in zip(class_names, np.asarray(cm).tolist(), strict=True):
            w.writerow([name, *row])
    return path


def _bar_chart(
    values: Sequence[float | None], names: Sequence[str], title: str, path: Path
) -> None:
    from matplotlib.figure import Figure

    vals = [float("nan") if v is None else 100.0 * v for v in values]
    fig = Figure(figsize=(6, 0.6 * len(names) + 1.2))
    ax = fig.subplots()
    ax.barh(list(names), [0.0 if math.isnan(v) else v for v in vals], color="royalblue")
    for y, v in enumerate(vals):
        ax.text(
            min(v, 100.0) + 1 if not math.isnan(v) else 1,
            y,
            "n/a" if math.isnan(v) else f"{v:.2f}",
            va="center",
        )
    mean = np.nanmean(vals) if not all(math.isnan(v) for v in vals) else float("nan")
    ax.set_title(f"{title}: mean {mean:.2f}%")
    ax.set_xlim(0, 110)
    ax.set_xlabel(f"{title} (%)")
    ax.invert_yaxis()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)


def _heat_map(cm: np.ndarray, names: Sequence[str], path: Path) -> None:
    from matplotlib.figure import Figure

    cm = np.asarray(cm, dtype=np.float64)
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    k = len(names)
    fig = Figure(figsize=(1.2 * k + 2.5, 1.1 * k + 1.8))
    ax = fig.subplots()
    im = ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(im, ax=ax, label="share of the ground-truth class")
    ax.set_xticks(range(k), labels=list(names), rotation=30, ha="right")
    ax.set_yticks(range(k), labels=list(names))
    ax.set_xlabel("prediction")
    ax.set_ylabel("ground truth")
    for r in range(k):
        for c in range(k):
            colour = "white" if norm[r, c] > 0.5 else "black"
            ax.text(
                c,
                r,
                f"{100 * norm[r, c]:.1f}%\n{int(cm[r, c])}",
                ha="center",
                va="center",
                fontsize=8,
                color=colour,
            )
    ax.set_title("confusion matrix (rows sum to 100%)")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)


def write_report(doc: dict, cm: np.ndarray, out_dir: str | Path) -> dict[str, Path]:
    """Write metrics.json, confusion_matrix.csv and the PNG charts; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = doc["class_names"]
    paths = {"metrics": out / "metrics.json", "confusion_csv": out / "confusion_matrix.csv"}
    write_text(paths["metrics"], json.dumps(doc, indent=2))
    write_confusion_csv(cm, names, paths["confusion_csv"])
    try:
        import matplotlib  # noqa: F401 - the charts need it; a deployment box may lack it
    except ImportError:
        print("charts left out: matplotlib is not installed (pip install matplotlib)")
        return paths
    for key, title in (("IoU", "IoU"), ("Recall", "Recall"), ("Precision", "Precision")):
        paths[key] = out / f"{key}.png"
        _bar_chart(doc[key], names, title, paths[key])
    paths["confusion_png"] = out / "confusion_matrix.png"
    _heat_map(cm, names, paths["confusion_png"])
    return paths


def format_table(doc: dict) -> str:
    """Console table of per-class IoU / recall / precision (percent) and the means."""

    def pct(v: float | None) -> str:
        return "   n/a" if v is None else f"{100 * v:6.2f}"

    names = doc["class_names"]
    width = max(14, *(len(n) for n in names))
    lines = [f"{'class':<{width}}  IoU(%)  PA(%)  Precision(%)  gt pixels"]
    for k, name in enumerate(names):
        lines.append(
            f"{name:<{width}}  {pct(doc['IoU'][k])} {pct(doc['PA'][k])}  "
            f"{pct(doc['Precision'][k])}       {doc['gt_pixels'][k]}"
        )
    lines.append(
        f"{'mean':<{width}}  {pct(doc['mIoU'])} {pct(doc['mPA'])}  {pct(doc['mPrecision'])}"
    )
    lines.append(f"overall pixel accuracy {pct(doc['accuracy']).strip()}%")
    return "\n".join(lines)


def evaluate(
    data: str | Path,
    split: str,
    out_dir: str | Path,
    num_classes: int,
    class_names: Sequence[str],
    predictor=None,
    mode: str = "all",
    pred_dir: str | Path | None = None,
    batch_size: int = 1,
    progress: bool = True,
    extra: dict | None = None,
) -> dict | None:
    """Run one of the three modes; returns the metrics document (None in "predict" mode)."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")
    if len(class_names) != num_classes:
        raise ValueError(f"{len(class_names)} class names for {num_classes} classes")
    out = Path(out_dir)
    pred_dir = Path(pred_dir) if pred_dir is not None else out / "predictions"
    ids, photos, masks = split_files(data, split, num_classes, need_masks=mode != "predict")
    removed = remove_stale_temp_files(out) + remove_stale_temp_files(pred_dir)
    if removed:
        print(describe_removed(removed))
    if mode in ("all", "predict"):
        if predictor is None:
            raise ValueError(f"mode {mode!r} needs a model (a checkpoint or an ONNX file)")
        if predictor.num_classes != num_classes:
            raise ValueError(
                f"the model predicts {predictor.num_classes} classes but {num_classes} were "
                f"asked for"
            )
        predict_split(predictor, ids, photos, pred_dir, batch_size, progress)
    if mode == "predict":
        return None
    cm = score_split(pred_dir, ids, masks, num_classes, progress=progress)
    doc = metrics_document(
        cm, class_names, split=split, data=str(data), num_images=len(ids), **(extra or {})
    )
    write_report(doc, cm, out)
    return doc
