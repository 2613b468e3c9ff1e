"""Pre-annotation: a trained model drafts the masks of new photos, the least certain first.

The paper's 1448 photos were drawn by hand (FastSegFormer, Cai et al., Computers and Electronics
in Agriculture 217, 108604, 2024). People who label in labelme or CVAT let a model draft the
masks and correct the drafts, the photos the model is least sure of first. `prelabel` does that
for a list of photos:

1. each photo goes through the predictor (letterbox, network, crop, resize back:
   ``Predictor.probabilities``); its mask is the argmax, the mask predict.py draws;
2. `utils.data.drafts` turns the mask into regions (``min_area``) and writes them: ``labelme``,
   one JSON per photo in ``out`` (imagePath relative to it); ``coco``, one ``out/annotations.json``
   (file names relative to the photos' common folder; polygons, RLE for regions with holes);
   ``coco-rle``, the same with every region as RLE;
3. each photo's uncertainty is the mean, over the fruit's pixels (`fruit_mask`, which holds every
   predicted defect pixel; the whole photo when it finds no fruit), of the per-pixel measures of
   `UNCERTAINTY`; with ``rank`` the photos are listed in ``out/ranking.csv``, most uncertain first.

A labelme file already in ``out`` is never replaced (it may hold a person's corrections): the
photo is still scored and ranked, with status "kept". Each labelme file is written atomically
as soon as its photo is done, so a run that is stopped (Ctrl-C, SIGTERM) keeps every finished
draft, and running it again drafts the rest. The COCO file is written once, at the end.

numpy and OpenCV only (no torch): it runs with an exported model where torch is not installed.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from utils.data.drafts import (
    Draft,
    coco_annotations,
    coco_document,
    draft_regions,
    labelme_document,
    labelme_image_path,
    labelme_shapes,
)
from utils.data.preprocess import read_image
from utils.fileio import describe_removed, remove_stale_temp_files, write_text
from utils.inference.visualize import fruit_mask

DRAFT_FORMATS = ("labelme", "coco", "coco-rle")
COCO_FILE = "annotations.json"  # the COCO drafts inside `out`
RANKING_FILE = "ranking.csv"  # the ranking inside `out`


def pixel_entropy(probs: np.ndarray) -> np.ndarray:
    """(K, H, W) class probabilities -> (H, W) entropy / log K: 0 certain, 1 all classes equal."""
    p = np.clip(probs, 1e-12, 1.0)
    return -(p * np.log(p)).sum(axis=0) / np.log(probs.shape[0])


def pixel_margin(probs: np.ndarray) -> np.ndarray:
    """(K, H, W) class probabilities -> (H, W) 1 - (first - second probability): 0 certain,
    1 a tie between the two likeliest classes."""
    top = np.partition(probs, probs.shape[0] - 2, axis=0)[-2:]  # (2, H, W): second, first
    return 1.0 - (top[1] - top[0])


# --rank-by name -> per-pixel uncertainty; a photo's score is its mean over the fruit
UNCERTAINTY: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "entropy": pixel_entropy,
    "margin": pixel_margin,
}


@dataclass
class PhotoDraft:
    """What `prelabel` did with one photo."""

    photo: Path
    draft: Path  # the file that holds its draft
    status: str  # "drafted", or "kept" (a labelme file was there and is left as it was)
    regions: int  # regions in the draft
    scored_pixels: int  # pixels the uncertainty is averaged over
    defect_pixels: int  # predicted defect pixels
    scores: dict[str, float] = field(default_factory=dict)  # UNCERTAINTY name -> mean


@dataclass
class PrelabelResult:
    """The photos drafted (in input order), those that failed, and the files written."""

    photos: list[PhotoDraft]
    failed: list[str]  # "path: why"
    written: list[Path]
    ranking: Path | None

    def ranked(self, rank_by: str) -> list[PhotoDraft]:
        """The photos, most uncertain first by `rank_by` (ties: by path)."""
        return sorted(self.photos, key=lambda p: (-p.scores[rank_by], str(p.photo)))


def check_stems(photos: Sequence[Path]) -> None:
    """ValueError naming two photos that share a name: labelme files and the VOC ids that
    voc_annotation.py makes of the drafts are named after the photo without its suffix."""
    seen: dict[str, Path] = {}
    for path in photos:
        other = seen.setdefault(path.stem, path)
        if other != path:
            raise ValueError(
                f"photos {other} and {path} share the name {path.stem!r}; drafts and VOC ids are "
                "named by it: rename one of them"
            )


def photo_uncertainty(probs: np.ndarray, where: np.ndarray) -> tuple[dict[str, float], int]:
    """({measure: its mean over `where`}, pixels averaged) of (K, H, W) probabilities; over the
    whole photo when `where` (H, W) is empty."""
    if not where.any():
        where = np.ones(where.shape, bool)
    scores = {name: float(fn(probs)[where].mean()) for name, fn in UNCERTAINTY.items()}
    return scores, int(where.sum())


def _probabilities(predictor: Any, images: list[np.ndarray]) -> list[np.ndarray]:
    """(K, H, W) float32 class probabilities of each photo, at the photo's size."""
    inputs = [predictor.preprocess(image) for image in images]
    logits = predictor.infer(np.stack([x for x, _ in inputs]))  # (B, K, h, w)
    return [
        np.asarray(predictor.probabilities(lg, box), dtype=np.float32)
        for lg, (_, box) in zip(logits, inputs, strict=True)
    ]


def _common_folder(photos: Sequence[Path]) -> Path:
    return Path(os.path.commonpath([str(p.absolute().parent) for p in photos]))


def write_ranking(photos: list[PhotoDraft], path: Path) -> Path:
    """The ranking CSV: one row per photo in the order given, rank from 1."""
    buf = io.StringIO()
    names = list(UNCERTAINTY)
    writer = csv.writer(buf)
    writer.writerow(
        ["rank", "photo", "draft", "status", *names, "scored_pixels", "defect_pixels", "regions"]
    )
    for rank, p in enumerate(photos, 1):
        scores = [f"{p.scores[n]:.6f}" for n in names]
        writer.writerow(
            [rank, p.photo, p.draft, p.status, *scores, p.scored_pixels, p.defect_pixels, p.regions]
        )
    return write_text(path, buf.getvalue())


def _labelme_draft(
    photo: Path, draft: Draft, out: Path, names: list[str], tolerance: float, image_data: bool
) -> tuple[Path, str]:
    """Write `out/<photo name>.json` unless it exists; (its path, "drafted" or "kept")."""
    target = out / f"{photo.stem}.json"
    if target.exists():
        return target, "kept"
    doc = labelme_document(
        labelme_shapes(draft, names, tolerance),
        labelme_image_path(photo, target),
        draft.hw,
        photo.read_bytes() if image_data else None,
    )
    write_text(target, json.dumps(doc, indent=2, ensure_ascii=False))
    return target, "drafted"


@dataclass
class _CocoDrafts:
    """The images and annotations of the one COCO file, gathered photo by photo."""

    path: Path
    root: Path  # file names are relative to it
    rle: bool
    images: list[dict[str, Any]] = field(default_factory=list)
    annotations: list[dict[str, Any]] = field(default_factory=list)

    def add(self, photo: Path, draft: Draft, tolerance: float) -> None:
        image_id = len(self.images) + 1
        h, w = draft.hw
        name = Path(os.path.relpath(photo.absolute(), self.root)).as_posix()
        self.images.append({"id": image_id, "file_name": name, "width": w, "height": h})
        first = len(self.annotations) + 1
        self.annotations += coco_annotations(draft, image_id, first, tolerance, self.rle)

    def write(self, names: list[str]) -> Path:
        doc = coco_document(self.images, self.annotations, names, "drafts to correct")
        return write_text(self.path, json.dumps(doc, ensure_ascii=False))


def prelabel(
    predictor: Any,
    photos: Sequence[str | Path],
    out: str | Path,
    fmt: str = "labelme",
    min_area: int = 20,
    tolerance: float = 0.0,
    rank: bool = False,
    rank_by: str = "entropy",
    image_data: bool = False,
    batch_size: int = 4,
    fruit_min_saturation: int = 60,
    log: Callable[[str], None] = print,
) -> PrelabelResult:
    """Draft every photo into `out` (module docstring) and, with `rank`, write the ranking.

    `predictor`: a `utils.inference.predictor.Predictor`, or anything with its `preprocess`,
    `infer`, `probabilities`, `num_classes` and `class_names`. Photos that cannot be read are
    reported through `log` and listed in the result's `failed`.
    """
    if fmt not in DRAFT_FORMATS:
        raise ValueError(f"draft format {fmt!r}: expected one of {', '.join(DRAFT_FORMATS)}")
    if rank_by not in UNCERTAINTY:
        raise ValueError(f"uncertainty {rank_by!r}: expected one of {', '.join(UNCERTAINTY)}")
    if min_area < 0 or tolerance < 0:
        raise ValueError(f"min_area {min_area} and tolerance {tolerance}: expected >= 0")
    paths = [Path(p) for p in photos]
    if not paths:
        raise ValueError("no photos to draft")
    check_stems(paths)
    out = Path(out)
    coco = (
        None
        if fmt == "labelme"
        else _CocoDrafts(out / COCO_FILE, _common_folder(paths), fmt == "coco-rle")
    )
    if coco is not None and coco.path.exists():
        raise ValueError(
            f"{coco.path} exists (it may hold corrections); move it away or choose another --out"
        )
    removed = remove_stale_temp_files(out)
    if removed:  # left by a run that was killed while writing
        log(describe_removed(removed))
    names = list(predictor.class_names)
    result = PrelabelResult([], [], [], None)
    step = max(1, batch_size)
    for start in range(0, len(paths), step):
        chunk: list[tuple[Path, np.ndarray]] = []
        for path in paths[start : start + step]:
            try:
                chunk.append((path, read_image(path)))
            except (OSError, ValueError) as err:  # FileNotFoundError is an OSError
                log(f"skipped {path}: {err}")
                result.failed.append(f"{path}: {err}")
        if not chunk:
            continue
        all_probs = _probabilities(predictor, [image for _, image in chunk])
        for (path, image), probs in zip(chunk, all_probs, strict=True):
            mask = probs.argmax(axis=0).astype(np.uint8)  # (H, W), as Predictor.postprocess
            fruit = fruit_mask(image, mask, min_saturation=fruit_min_saturation)
            scores, scored = photo_uncertainty(probs, fruit)
            draft = draft_regions(mask, int(predictor.num_classes), min_area)
            if coco is None:
                target, status = _labelme_draft(path, draft, out, names, tolerance, image_data)
                if status == "drafted":
                    result.written.append(target)
            else:
                coco.add(path, draft, tolerance)
                target, status = coco.path, "drafted"
            defects = int((mask != 0).sum())
            result.photos.append(
                PhotoDraft(path, target, status, len(draft.regions), scored, defects, scores)
            )
    if coco is not None and coco.images:
        result.written.append(coco.write(names))
    if rank and result.photos:
        result.ranking = write_ranking(result.ranked(rank_by), out / RANKING_FILE)
    return result


def summary(result: PrelabelResult, fmt: str, class_names: Sequence[str], rank_by: str) -> str:
    """What was written, and the command that turns corrected drafts into a VOC data set."""
    kept = [p for p in result.photos if p.status == "kept"]
    regions = sum(p.regions for p in result.photos if p.status == "drafted")
    drafted = len(result.photos) - len(kept)
    where = result.photos[0].draft.parent if result.photos else Path(".")
    lines = [f"drafted {drafted} photo(s) ({regions} regions, {fmt}) into {where}/"]
    if kept:
        lines.append(
            f"{len(kept)} labelme file(s) already there were kept as they are (scored, not "
            f"replaced): {', '.join(str(p.draft) for p in kept[:5])}"
        )
    if result.ranking is not None:
        top = result.ranked(rank_by)[:3]
        shown = ", ".join(f"{p.photo.name} ({p.scores[rank_by]:.3f})" for p in top)
        lines.append(f"ranking by mean {rank_by} over the fruit: {result.ranking}; first {shown}")
    classes = " ".join(class_names)
    if fmt == "labelme":
        photos = _common_folder([p.photo for p in result.photos]) if result.photos else "PHOTOS"
        lines.append(f"correct them: labelme {photos} --output {where}")
        lines.append(
            f"then: python voc_annotation.py --from-labelme {where} --data OUT_ROOT "
            f"--classes {classes}"
        )
    elif result.photos:
        photos = _common_folder([p.photo for p in result.photos])
        lines.append(
            f"then: python voc_annotation.py --from-coco {where / COCO_FILE} --images {photos} "
            f"--data OUT_ROOT --classes {classes}"
        )
    return "\n".join(lines)
