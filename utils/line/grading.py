"""Per-fruit defect grading for the sorting line: defect area shares -> premium/standard/reject.

FastSegFormer (Cai et al., Computers and Electronics in Agriculture 217, 108604, 2024) segments
three defect classes on navel oranges (1 sunburn, 2 ulcer, 3 wind scarring); healthy peel and
the scene are class 0. A sorting line needs one decision per fruit, so this module

1. finds the fruit of a frame (`utils.line.fruit.fruit_regions`: peel colour united with the
   predicted defects, touching fruit split by distance transform + watershed), or takes a fruit
   mask / instance map the caller already has (the conveyor's ground truth);
2. measures, per fruit, the share of its area covered by each defect class;
3. grades it with the first grade whose limits all hold (grades run strictest first), else the
   reject grade. Limits are fractions of the fruit area per class name, plus "total" for all
   defects together. The rules, their file format, their checks and what "strictest first"
   means precisely are in `utils.line.rules`; its defaults are illustrative, not an industry
   standard: load your own with `load_rules("grades.yaml", class_names)` (``--rules``).

4. on video, follows each fruit along the belt (`utils.line.fruit.FruitTracker`) and decides
   once per fruit (`decide`): the defect shares averaged over the frames that show the whole
   fruit, graded by the same rules.

`Grader` plugs into `utils.line.video_pipeline.VideoPipeline(annotate=...)` and draws each
fruit's box and grade on the overlay; `FruitCSVSink` writes one row per fruit with its final
grade (what a sorter needs), `GradeCSVSink` one row per fruit per frame or photo.
`evaluate_run` compares the grades with those the same rules give on the ground truth.

Command line (the threaded pipeline: graded video or overlays + OUT/grades.csv):
    python -m utils.line.grading --checkpoint logs/run/best.pth --source line.mp4 --out graded/
    python -m utils.line.grading --checkpoint model.xml --source photos/ --rules grades.yaml
    python -m utils.line.grading --checkpoint best.pth --source 0 --max-frames 300  # camera 0
    # against the ground truth: a conveyor video rendered with --ground-truth, or a VOC set
    python -m utils.line.conveyor --out test.mp4 --seconds 6 --seed 7 --ground-truth
    python -m utils.line.grading --checkpoint best.pth --source test.mp4 --evaluate --out eval/
    python -m utils.line.grading --checkpoint best.pth --source data/oranges --split test \
        --evaluate
    # an exported .xml / .onnx runs without torch (requirements-deploy.txt)
"""

from __future__ import annotations

import csv
import json
import os
import sys
import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np

from utils.cli import parse_config
from utils.data.labels import read_mask
from utils.data.preprocess import CLASS_NAMES, read_image
from utils.data.voc import resolve_voc_root
from utils.deploy.backends import BACKEND_CHOICES
from utils.deploy.timing import benchmark
from utils.fileio import temp_path_for, write_bytes
from utils.inference.evaluate import split_files
from utils.inference.open_model import check_model_name, open_model
from utils.inference.predictor import Predictor
from utils.line.conveyor import ground_truth_dir, read_ground_truth
from utils.line.fruit import FruitTracker, fruit_regions, region_boxes
from utils.line.label_placement import GAP, place_labels
from utils.line.rules import GradingRules, RulesError, load_rules
from utils.line.video_pipeline import (
    CameraSource,
    FrameListSource,
    FrameResult,
    PipelineStats,
    VideoFileSource,
    VideoPipeline,
    VideoWriterSink,
    image_folder_source,
)
from utils.metrics import ConfusionMatrix, segmentation_metrics

GRADE_COLOURS = {"premium": (40, 200, 60), "standard": (250, 200, 0), "reject": (230, 30, 30)}
OTHER_COLOUR = (200, 200, 200)
LABEL_BACKGROUND = (24, 24, 24)  # the dark box under a grade label's letters
UNITS = "fraction"  # as get_miou.py's metrics.json: shares and scores in [0, 1]
MISSED = "missed"  # a ground-truth fruit no prediction was matched to


# ---------------------------------------------------------------------------- one frame
@dataclass
class FruitGrade:
    """The verdict for one fruit region of one frame."""

    fruit: int  # 1..n within the frame, left to right
    bbox: tuple[int, int, int, int]  # x, y, w, h in pixels
    pixels: int  # fruit area
    shares: dict[str, float]  # defect class name -> fraction of the fruit area
    total: float  # all defects together
    grade: str
    partial: bool  # touches the image border: only part of the fruit is visible
    region: int = 0  # the fruit's id in the frame's region map (`fruit_regions`)
    track: int = 0  # the fruit's id across frames (0: not tracked)


def fruit_labels(
    image: np.ndarray, mask: np.ndarray, fruit: np.ndarray | None = None
) -> np.ndarray:
    """(H, W) int32 fruit ids (0 = no fruit): `utils.line.fruit.fruit_regions`, touching fruit
    split."""
    return fruit_regions(image, mask, fruit)


def grade_frame(
    image: np.ndarray,
    mask: np.ndarray,
    rules: GradingRules | None = None,
    fruit: np.ndarray | None = None,
    class_names: Sequence[str] = CLASS_NAMES,
    labels: np.ndarray | None = None,
) -> list[FruitGrade]:
    """Grade every fruit of one frame from its (H, W) class mask.

    The regions are `labels` when given, else `fruit_labels(image, mask, fruit)`.
    """
    rules = rules or GradingRules()
    mask = np.asarray(mask)
    h, w = mask.shape
    k = len(class_names)
    if labels is None:
        labels = fruit_labels(image, mask, fruit)  # (H, W) int32
    n = int(labels.max()) + 1
    # Pixel counts per (fruit id, class): areas over all pixels, defects over the few defect
    # pixels only (ignore-index pixels are not a defect).
    joint = np.zeros((n, k), dtype=np.int64)  # (fruit ids, K)
    for c in range(1, k):
        joint[:, c] = np.bincount(labels[mask == c], minlength=n)[:n]
    areas = np.bincount(labels.ravel(), minlength=n)[:n]
    ids = [i for i in range(1, n) if areas[i] >= rules.min_fruit_pixels]
    boxes = region_boxes(labels, ids)
    grades = []
    for rank, i in enumerate(sorted(ids, key=lambda i: boxes[i][0]), 1):
        pixels = int(areas[i])
        counts = joint[i]
        shares = {class_names[c]: float(counts[c]) / pixels for c in range(1, k)}
        total = float(counts[1:].sum()) / pixels
        x, y, bw, bh = boxes[i]
        partial = x == 0 or y == 0 or x + bw == w or y + bh == h
        grade = rules.grade(shares, total)
        grades.append(FruitGrade(rank, boxes[i], pixels, shares, total, grade, partial, i))
    return grades


# ---------------------------------------------------------------------------- one fruit
@dataclass
class FruitDecision:
    """The final grade of one fruit seen in one or more frames."""

    fruit: int  # track id (the fruit's id across the video)
    first_frame: int  # frame indices (0-based, in the order the grader saw them)
    last_frame: int
    frames: int  # frames it was seen in
    full_frames: int  # of those, frames showing the whole fruit (the ones averaged)
    bbox: tuple[int, int, int, int]  # last box that showed the whole fruit (else the last box)
    pixels: int  # mean fruit area over the averaged frames
    shares: dict[str, float]  # mean defect shares over the averaged frames
    total: float
    grade: str
    partial: bool  # never seen whole: graded from cut views only


def decide(
    observations: Sequence[tuple[int, FruitGrade]], rules: GradingRules, fruit: int = 0
) -> FruitDecision:
    """One decision from a fruit's (frame index, FruitGrade) observations.

    The defect shares are averaged over the frames that show the whole fruit (over every frame
    when none does), then graded: a single frame's glare or blur weighs 1/n.
    """
    if not observations:
        raise ValueError("decide needs at least one observation of the fruit")
    full = [g for _, g in observations if not g.partial]
    used = full or [g for _, g in observations]
    names = list(used[0].shares)
    shares = {c: float(np.mean([g.shares[c] for g in used])) for c in names}
    total = float(np.mean([g.total for g in used]))
    return FruitDecision(
        fruit=fruit,
        first_frame=observations[0][0],
        last_frame=observations[-1][0],
        frames=len(observations),
        full_frames=len(full),
        bbox=used[-1].bbox,
        pixels=int(round(np.mean([g.pixels for g in used]))),
        shares=shares,
        total=total,
        grade=rules.grade(shares, total),
        partial=not full,
    )


def draw_grades(
    image: np.ndarray,
    grades: Sequence[FruitGrade],
    running: dict[int, tuple[str, float]] | None = None,
) -> np.ndarray:
    """Draw each fruit's box, grade and defect share on an RGB image in place.

    running: track id -> (grade, defect share) decided so far, shown instead of the frame's own
    grade for tracked fruit (with the fruit's id). Labels go where
    `utils.line.label_placement.place_labels` puts them: near their fruit and never over the
    label of a neighbouring fruit (a label moved away from its fruit gets a line to it).
    """
    scale = max(0.45, image.shape[0] / 800)
    thickness = 1 if scale < 0.9 else 2
    texts, colours, sizes = [], [], []
    for g in grades:
        grade, total = (running or {}).get(g.track, (g.grade, g.total))
        text = (f"#{g.track} " if g.track else "") + f"{grade} {100 * total:.1f}%"
        text += " (partial)" if g.partial else ""
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        texts.append((text, th))
        colours.append(GRADE_COLOURS.get(grade, OTHER_COLOUR))
        sizes.append((tw + 4, th + base + 4))
    rects = place_labels([g.bbox for g in grades], sizes, image.shape[:2])
    for g, colour in zip(grades, colours, strict=True):  # boxes first, labels over them
        x, y, w, h = g.bbox
        cv2.rectangle(image, (x, y), (x + w - 1, y + h - 1), colour, 2 if not g.partial else 1)
    for g, (text, th), colour, (rx, ry, rw, rh) in zip(grades, texts, colours, rects, strict=True):
        x, y, w, h = g.bbox
        if ry + rh < y - GAP - 1 or ry > y + h + GAP + 1:  # moved away: a line to its fruit
            end = (rx + 2, ry + rh - 1) if ry < y else (rx + 2, ry)
            cv2.line(image, end, (min(max(rx + 2, x), x + w - 1), y if ry < y else y + h - 1),
                     colour, 1, cv2.LINE_AA)  # fmt: skip
        cv2.rectangle(image, (rx, ry), (rx + rw - 1, ry + rh - 1), LABEL_BACKGROUND, -1)
        cv2.putText(image, text, (rx + 2, ry + 2 + th), cv2.FONT_HERSHEY_SIMPLEX, scale, colour,
                    thickness, cv2.LINE_AA)  # fmt: skip
    return image


@dataclass
class FrameGrades:
    """What `Grader` returns for a frame (the pipeline's `FrameResult.extra`)."""

    fruit: list[FruitGrade]  # this frame's fruit, left to right
    decided: list[FruitDecision]  # fruit whose final grade was decided at this frame
    regions: np.ndarray  # (H, W) int32 fruit ids of the frame (FruitGrade.region)
    running: dict[int, tuple[str, float]] = field(default_factory=dict)  # track -> grade so far


class Grader:
    """`VideoPipeline(annotate=Grader())`: grade each frame and draw the grades on the overlay.

    With `track=True` (video, camera) each fruit keeps one id across frames and is decided once
    (`decide`) when it has left the view; `finish()` decides the fruit still in view at the end,
    and `decisions` lists every decision made. Frames must come in order (the pipeline's
    post-process stage is one thread).
    """

    def __init__(
        self,
        rules: GradingRules | None = None,
        class_names: Sequence[str] = CLASS_NAMES,
        draw: bool = True,
        track: bool = False,
        tracker: FruitTracker | None = None,
    ) -> None:
        self.class_names = tuple(class_names)
        # every limit must name one of the model's classes (RulesError naming it otherwise)
        self.rules = (rules or GradingRules()).check(self.class_names)
        self.draw = draw
        self.tracker = (tracker or FruitTracker()) if track else None
        self.decisions: list[FruitDecision] = []
        self._seen: dict[int, list[tuple[int, FruitGrade]]] = {}
        self._index = 0
        self._lock = threading.Lock()  # finish() may come from another thread than __call__

    def __call__(
        self, image: np.ndarray, mask: np.ndarray, overlay: np.ndarray | None = None
    ) -> FrameGrades:
        labels = fruit_labels(image, mask)
        grades = grade_frame(image, mask, self.rules, class_names=self.class_names, labels=labels)
        decided: list[FruitDecision] = []
        running = None
        if self.tracker is not None:
            with self._lock:
                boxes = [g.bbox for g in grades]
                ids, ended = self.tracker.update(self._index, boxes, mask.shape)
                for g, tid in zip(grades, ids, strict=True):
                    g.track = tid
                    self._seen.setdefault(tid, []).append((self._index, g))
                decided = [self._decide(tid) for tid in ended]
                running = {}
                for g in grades:
                    now = decide(self._seen[g.track], self.rules)
                    running[g.track] = (now.grade, now.total)
                self._index += 1
        if self.draw and overlay is not None:
            draw_grades(overlay, grades, running)
        return FrameGrades(grades, decided, labels, running or {})

    def _decide(self, track: int) -> FruitDecision:
        decision = decide(self._seen.pop(track), self.rules, track)
        self.decisions.append(decision)
        return decision

    def finish(self) -> list[FruitDecision]:
        """Decide every fruit still being followed (the source has ended); safe to repeat."""
        if self.tracker is None:
            return []
        with self._lock:
            return [self._decide(tid) for tid in self.tracker.finish()]


# ---------------------------------------------------------------------------- CSV sinks
class _AtomicCSV:
    """A CSV streamed into a temporary file beside `path`, moved over it when closed."""

    def __init__(self, path: str | Path, fields: list[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = temp_path_for(self.path)
        self._file = self._tmp.open("w", newline="")
        self._writer = csv.DictWriter(self._file, fieldnames=fields, restval="")
        self._writer.writeheader()
        self.rows = 0

    def write_rows(self, rows: Sequence[dict[str, object]]) -> None:
        self._writer.writerows(rows)
        self.rows += len(rows)

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()
            os.replace(self._tmp, self.path)


def grade_rows(name: str, grades: Sequence[FruitGrade]) -> list[dict[str, object]]:
    """CSV rows (one per fruit; shares in percent) for the frame or image `name`."""
    rows = []
    for g in grades:
        row: dict[str, object] = {
            "image": name,
            "fruit": g.fruit,
            "track": g.track or "",
            "x": g.bbox[0],
            "y": g.bbox[1],
            "w": g.bbox[2],
            "h": g.bbox[3],
            "fruit_pixels": g.pixels,
            "partial": int(g.partial),
        }
        row.update({f"{cls}_pct": f"{100 * s:.3f}" for cls, s in g.shares.items()})
        row["defect_pct"] = f"{100 * g.total:.3f}"
        row["grade"] = g.grade
        rows.append(row)
    return rows


class GradeCSVSink:
    """Pipeline sink: one CSV row per fruit per frame or photo (`FrameResult.extra`'s grades).

    Frames without fruit still get a row (fruit 0, grade empty) so every frame is accounted for.
    The file appears when the sink is closed (written beside it, then moved into place).
    """

    def __init__(self, path: str | Path, class_names: Sequence[str] = CLASS_NAMES) -> None:
        fields = ["image", "fruit", "track", "x", "y", "w", "h", "fruit_pixels", "partial"]
        fields += [f"{c}_pct" for c in class_names[1:]] + ["defect_pct", "grade"]
        self.fields = fields
        self._csv = _AtomicCSV(path, fields)
        self.path = self._csv.path

    @property
    def rows(self) -> int:
        return self._csv.rows

    def write(self, name: str, grades: Sequence[FruitGrade]) -> None:
        self._csv.write_rows(grade_rows(name, grades) or [{"image": name, "fruit": 0}])

    def __call__(self, result: Any) -> None:
        extra = result.extra
        self.write(result.name, extra.fruit if isinstance(extra, FrameGrades) else extra or [])

    def close(self) -> None:
        self._csv.close()


def decision_row(d: FruitDecision) -> dict[str, object]:
    """One CSV row for a fruit's final grade (shares in percent)."""
    row: dict[str, object] = {
        "fruit": d.fruit,
        "first_frame": d.first_frame,
        "last_frame": d.last_frame,
        "frames": d.frames,
        "full_view_frames": d.full_frames,
        "x": d.bbox[0],
        "y": d.bbox[1],
        "w": d.bbox[2],
        "h": d.bbox[3],
        "fruit_pixels": d.pixels,
        "partial": int(d.partial),
    }
    row.update({f"{cls}_pct": f"{100 * s:.3f}" for cls, s in d.shares.items()})
    row["defect_pct"] = f"{100 * d.total:.3f}"
    row["grade"] = d.grade
    return row


class FruitCSVSink:
    """Pipeline sink for a tracking `Grader`: one row per fruit with its final grade, written as
    each fruit is decided; the fruit still in view at the end are decided when it closes."""

    def __init__(
        self, path: str | Path, grader: Grader, class_names: Sequence[str] = CLASS_NAMES
    ) -> None:
        fields = ["fruit", "first_frame", "last_frame", "frames", "full_view_frames"]
        fields += ["x", "y", "w", "h", "fruit_pixels", "partial"]
        fields += [f"{c}_pct" for c in class_names[1:]] + ["defect_pct", "grade"]
        self.grader = grader
        self._csv = _AtomicCSV(path, fields)
        self.path = self._csv.path

    @property
    def rows(self) -> int:
        return self._csv.rows

    def write(self, decisions: Sequence[FruitDecision]) -> None:
        self._csv.write_rows([decision_row(d) for d in decisions])

    def __call__(self, result: Any) -> None:
        if isinstance(result.extra, FrameGrades):
            self.write(result.extra.decided)

    def close(self) -> None:
        self.write(self.grader.finish())
        self._csv.close()


# ---------------------------------------------------------------------------- evaluation
GroundTruth = Callable[[FrameResult], tuple[np.ndarray, np.ndarray | None]]


def video_ground_truth(folder: str | Path) -> GroundTruth:
    """Ground truth of a conveyor video by frame index (`python -m utils.line.conveyor
    --ground-truth` writes it)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"ground-truth folder not found: {folder}; render the video with "
            f"`python -m utils.line.conveyor --out VIDEO --ground-truth` or pass --ground-truth"
        )
    return lambda result: read_ground_truth(folder, result.index)


def voc_ground_truth(voc: Path, ids: Sequence[str], masks: Sequence[Path], k: int) -> GroundTruth:
    """Ground truth of VOC photos by id: the class mask, and the fruit ids from
    SegmentationObject/<id>.png when the data set has them (else None: fruit found by colour)."""
    by_id = dict(zip(ids, masks, strict=True))

    def read(result: FrameResult) -> tuple[np.ndarray, np.ndarray | None]:
        label = read_mask(by_id[result.name], k)  # class ids, 255 ignore
        obj = voc / "SegmentationObject" / f"{result.name}.png"
        fruit = None
        if obj.is_file():
            fruit = read_mask(obj).astype(np.int32)
            fruit[fruit == 255] = 0  # VOC's object border
        return label, fruit

    return read


@dataclass
class _Match:
    """A ground-truth fruit and the prediction it was matched to."""

    key: str
    truth: FruitDecision
    pred: FruitDecision | None


class GradingEvaluator:
    """Pipeline sink that scores a `Grader` against the ground truth, frame by frame.

    Per frame: the predicted class mask against the true one (one confusion matrix over every
    frame, as get_miou.py), the true fruit graded by the same rules on the true mask (the true
    fruit ids when given, else fruit found by colour as for the prediction), and each predicted
    fruit matched to the true fruit it overlaps most (IoU >= `min_iou`).
    Video (`tracked=True`): a true fruit is decided over the frames that show it whole, like a
    tracked prediction, and takes the grade of the track matched to it in most frames; a true
    fruit never seen whole is not scored. Photos: every true fruit of every photo is scored.
    """

    def __init__(
        self,
        ground_truth: GroundTruth,
        rules: GradingRules,
        class_names: Sequence[str],
        tracked: bool,
        min_iou: float = 0.5,
    ) -> None:
        self.ground_truth = ground_truth
        self.rules = rules
        self.class_names = list(class_names)
        self.tracked = tracked
        self.min_iou = min_iou
        self.cm = ConfusionMatrix(len(self.class_names))
        self.frames = 0
        self._truth: dict[int, list[tuple[int, FruitGrade]]] = defaultdict(list)
        self._votes: dict[int, Counter] = defaultdict(Counter)  # track -> true fruit -> frames
        self._photo_matches: list[_Match] = []
        self._spurious = 0

    def __call__(self, result: FrameResult) -> None:
        grades: FrameGrades = result.extra
        label, fruit = self.ground_truth(result)
        if label.shape != result.mask.shape:
            raise ValueError(
                f"ground truth of {result.name} is {label.shape[1]}x{label.shape[0]}, the frame "
                f"{result.mask.shape[1]}x{result.mask.shape[0]}"
            )
        # The same counts as ConfusionMatrix.update (rows truth, columns prediction, 255 and
        # other ids >= K left out), in numpy: the torch path takes ~0.1 s a 640x360 frame here.
        k = len(self.class_names)
        valid = label < k
        codes = label[valid].astype(np.int64) * k + result.mask[valid]
        self.cm.matrix += np.bincount(codes, minlength=k * k)[: k * k].reshape(k, k)
        self.frames += 1
        truth_mask = np.where(label == 255, 0, label)
        true_labels = fruit_labels(result.image, truth_mask, fruit)
        truth = grade_frame(
            result.image, truth_mask, self.rules, class_names=self.class_names, labels=true_labels
        )
        pairs = _overlaps(grades.regions, true_labels, grades.fruit, truth, self.min_iou)
        if self.tracked:
            for t in truth:
                self._truth[t.region].append((result.index, t))
            for p in grades.fruit:
                if p.region in pairs:
                    self._votes[p.track][pairs[p.region]] += 1
            return
        by_region = {t.region: t for t in truth}
        matched = {}
        for p in grades.fruit:
            if p.region in pairs:
                matched[pairs[p.region]] = p
            else:
                self._spurious += 1
        for t in truth:
            p = matched.get(t.region)
            self._photo_matches.append(
                _Match(
                    f"{result.name}#{t.fruit}",
                    decide([(result.index, by_region[t.region])], self.rules, t.region),
                    None if p is None else decide([(result.index, p)], self.rules, p.region),
                )
            )

    def matches(self, decisions: Sequence[FruitDecision]) -> list[_Match]:
        """Every scored true fruit with its matched prediction (`decisions`: the grader's)."""
        if not self.tracked:
            return self._photo_matches
        by_track = {d.fruit: d for d in decisions}
        owner: dict[int, list[int]] = defaultdict(list)  # true fruit -> tracks voting for it
        self._spurious = 0
        for track in by_track:
            votes = self._votes.get(track)
            if votes:
                owner[votes.most_common(1)[0][0]].append(track)
            else:
                self._spurious += 1
        out = []
        for true_id in sorted(self._truth):
            truth = decide(self._truth[true_id], self.rules, true_id)
            if truth.partial:
                continue  # never seen whole: a sorter would not grade it either
            tracks = sorted(owner.get(true_id, []), key=lambda t: -by_track[t].frames)
            out.append(_Match(str(true_id), truth, by_track[tracks[0]] if tracks else None))
        return out

    def report(self, decisions: Sequence[FruitDecision] = ()) -> dict[str, Any]:
        """The grading_eval.json document (fractions in [0, 1], counts of fruit)."""
        matches = self.matches(decisions)
        names = self.rules.names
        confusion = {t: dict.fromkeys([*names, MISSED], 0) for t in names}
        for m in matches:
            confusion[m.truth.grade][m.pred.grade if m.pred else MISSED] += 1
        scored = [m for m in matches if m.pred is not None]
        correct = sum(m.pred.grade == m.truth.grade for m in scored)
        best = self.rules.grades[0].name if self.rules.grades else None
        seg = segmentation_metrics(self.cm.matrix)
        defect_iou = [v for v in seg["IoU"][1:] if v == v]  # NaN: class absent everywhere
        mae = [abs(m.pred.total - m.truth.total) for m in scored]
        return {
            "units": UNITS,
            "grade_accuracy": correct / len(matches) if matches else None,
            "reject_as_premium": confusion.get(self.rules.reject, {}).get(best, 0),
            "defect_share_mae": float(np.mean(mae)) if mae else None,
            "mIoU": _nan_none(seg["mIoU"]),
            "defect_mIoU": float(np.mean(defect_iou)) if defect_iou else None,
            "IoU": [_nan_none(v) for v in seg["IoU"]],
            "class_names": self.class_names,
            "fruit": len(matches),
            "fruit_matched": len(scored),
            "fruit_missed": len(matches) - len(scored),
            "spurious": self._spurious,
            "grades": names,
            "confusion": confusion,
            "frames": self.frames,
            "tracked": self.tracked,
            "per_fruit": [
                {
                    "fruit": m.key,
                    "true_grade": m.truth.grade,
                    "true_defect_share": m.truth.total,
                    "grade": m.pred.grade if m.pred else MISSED,
                    "defect_share": m.pred.total if m.pred else None,
                    "track": m.pred.fruit if (m.pred and self.tracked) else None,
                }
                for m in matches
            ],
            "note": "shares and scores are fractions in [0, 1]; reject_as_premium, fruit, "
            "fruit_matched, fruit_missed, spurious and the confusion entries count fruit "
            "(rows: grade on the ground truth, columns: predicted grade); mIoU over every class "
            "from one confusion matrix over all frames, defect_mIoU over the defect classes",
        }

    def confusion_matrix(self) -> np.ndarray:
        return self.cm.matrix


def _nan_none(x: float) -> float | None:
    return None if x != x else float(x)


def _overlaps(
    pred_labels: np.ndarray,
    true_labels: np.ndarray,
    pred: Sequence[FruitGrade],
    truth: Sequence[FruitGrade],
    min_iou: float,
) -> dict[int, int]:
    """Predicted region id -> true region id for the pairs with IoU >= min_iou (one to one,
    best pairs first)."""
    if not pred or not truth:
        return {}
    n_true = int(true_labels.max()) + 1
    joint = np.bincount(
        pred_labels.ravel().astype(np.int64) * n_true + true_labels.ravel(),
        minlength=(int(pred_labels.max()) + 1) * n_true,
    ).reshape(-1, n_true)  # (pred ids, true ids) overlap pixels
    pairs = []
    for p in pred:
        for t in truth:
            inter = int(joint[p.region, t.region])
            if inter:
                iou = inter / (p.pixels + t.pixels - inter)
                if iou >= min_iou:
                    pairs.append((iou, p.region, t.region))
    out: dict[int, int] = {}
    used: set[int] = set()
    for _, p_id, t_id in sorted(pairs, reverse=True):
        if p_id not in out and t_id not in used:
            out[p_id] = t_id
            used.add(t_id)
    return out


def format_evaluation(doc: dict[str, Any]) -> str:
    """The printed table: grade accuracy, rejects passed as premium, MAE, mIoU, confusion."""

    def pct(v: float | None) -> str:
        return "n/a" if v is None else f"{100 * v:.2f}%"

    lines = [
        f"fruit scored           {doc['fruit']} ({doc['fruit_missed']} missed, "
        f"{doc['spurious']} spurious {'tracks' if doc['tracked'] else 'regions'})",
        f"grade accuracy         {pct(doc['grade_accuracy'])}",
        f"rejects as premium     {doc['reject_as_premium']}",
        f"defect share MAE       {pct(doc['defect_share_mae'])} of the fruit area",
        f"mIoU (frames)          {pct(doc['mIoU'])}  (defect classes: {pct(doc['defect_mIoU'])}; "
        + ", ".join(f"{n} {pct(v)}" for n, v in zip(doc["class_names"], doc["IoU"], strict=True))
        + ")",
        "grade confusion (rows: ground truth, columns: prediction):",
    ]
    cols = [*doc["grades"], MISSED]
    width = max(10, *(len(c) for c in cols))
    lines.append(" " * width + "".join(f"{c:>{width}}" for c in cols))
    for truth in doc["grades"]:
        row = doc["confusion"][truth]
        lines.append(f"{truth:>{width}}" + "".join(f"{row[c]:>{width}}" for c in cols))
    return "\n".join(lines)


# ---------------------------------------------------------------------------- command line
@dataclass
class Config:
    checkpoint: str = ""  # model file: .pth checkpoint, .onnx or OpenVINO IR (.xml)
    model: str | None = None  # registry model name, for the original's published weights
    trust_checkpoint: bool = False  # unpickle --checkpoint in full: trusted files only
    backend: Literal[tuple(BACKEND_CHOICES)] = "auto"  # a .pth's runtime (auto: the fastest)
    calib_data: str = ""  # VOC root whose train split calibrates INT8 (empty: generated oranges)
    threads: int = -1  # model's CPU threads (-1: all cores but one, left to decode/draw/encode)
    deploy_cache: str = "logs/deploy_cache"  # converted models are kept here
    source: str = ""  # video, folder of photos, one photo, camera index, or (--evaluate) a VOC set
    out: str = "graded"  # output folder: graded video or overlays, grades.csv (+ grading_eval.json)
    rules: str | None = None  # grading rules YAML/JSON (utils/line/rules.py; default: built in)
    max_frames: int | None = None  # stop after this many frames (video / camera)
    batch_size: int = 1  # largest opportunistic batch (files; cameras use 1)
    track: bool = True  # video / camera: one decision per fruit across frames, grades.csv per fruit
    evaluate: bool = False  # compare with the ground truth: OUT/grading_eval.json and a table
    ground_truth: str | None = None  # --evaluate on a video: its ground truth (default <stem>_gt/)
    split: str = "test"  # --evaluate on a VOC set: the split ("all": every mask of the set)
    model_fps: bool = True  # after the run, time the model alone on a few of the source's frames


class _FirstFrames:
    """Sink keeping the first `n` frames (for the model-only timing after the run)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.images: list[np.ndarray] = []

    def __call__(self, result: FrameResult) -> None:
        if len(self.images) < self.n:
            self.images.append(result.image)


def model_only_fps(predictor: Predictor, images: Sequence[np.ndarray], runs: int = 20) -> float:
    """Frames per second of `predictor.infer` alone at batch 1 on pre-processed `images`, in a
    worker thread like the pipeline's inference stage (median of `runs`, after a warm-up)."""
    inputs = [predictor.preprocess(im)[0][None] for im in images]  # (1, 3, h, w) each
    it = iter(range(1 << 30))
    result: list[float] = []

    def loop() -> None:
        t = benchmark(lambda: predictor.infer(inputs[next(it) % len(inputs)]), runs=runs, warmup=3)
        result.append(t.fps)

    worker = threading.Thread(target=loop, name="model-only")
    worker.start()
    worker.join()
    return result[0]


def save_overlay(path: Path, overlay: np.ndarray) -> None:
    """An RGB overlay as a PNG, written atomically."""
    ok, data = cv2.imencode(".png", cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"cannot encode {path} as PNG")
    write_bytes(path, data.tobytes())


def line_threads(threads: int, cores: int | None = None) -> int:
    """The model's CPU threads on the line: `threads` as given (0: the runtime's default, all
    cores), or for -1 all cores but one. The pipeline's other stages (decode, draw, grade,
    encode) then have a core of their own: on a 2-core CPU, ov-int8 FastSegFormer-P ran 46 FPS
    end to end with 1 thread (94% of its model-only FPS) and 44 FPS with 2 (51%),
    docs/production_line.md."""
    if threads >= 0:
        return threads
    return max(1, (cores or os.cpu_count() or 2) - 1)


def _load_predictor(cfg: Config) -> Predictor:
    """The predictor of --checkpoint: an ONNX file or OpenVINO IR as it is, a checkpoint on
    --backend (auto: the fastest runtime on this CPU that keeps accuracy, named in the output)."""
    return open_model(
        cfg.checkpoint,
        backend=cfg.backend,
        model_name=cfg.model,
        threads=line_threads(cfg.threads),
        trust=cfg.trust_checkpoint,
        calib_data=cfg.calib_data or None,
        cache_dir=cfg.deploy_cache or None,
        log=print,
    )


def _is_voc(path: Path) -> bool:
    return (path / "VOC2007").is_dir() or (
        (path / "JPEGImages").is_dir() and (path / "SegmentationClass").is_dir()
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Grade every fruit of a video, camera, folder, photo or VOC set; returns the exit status
    (2 with one line on stderr for a file or value that cannot be used)."""
    cfg = parse_config(Config, argv, description=__doc__)
    try:
        return run(cfg)
    except RulesError as err:  # one line per problem of the grading rules
        return _refuse(err)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        message = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"error: {message}", file=sys.stderr)
        return 2


def run(cfg: Config) -> int:
    """The grading run of `main`."""
    check_model_name(cfg.model)
    if not cfg.checkpoint or not cfg.source:
        raise ValueError("give --checkpoint (a .pth checkpoint, .onnx or .xml) and --source")
    if not cfg.source.isdigit() and not Path(cfg.source).exists():
        raise FileNotFoundError(
            f"--source {cfg.source}: not found (a video, a folder of photos, one photo, a VOC "
            f"data set, or a camera index)"
        )
    rules = load_rules(cfg.rules)  # a broken rules file stops the run before the model loads
    predictor = _load_predictor(cfg)
    names = predictor.class_names
    rules.check(names)  # every limit must name one of the model's classes (RulesError)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    src_path = Path(cfg.source)
    truth: GroundTruth | None = None
    if cfg.source.isdigit():
        if cfg.evaluate:
            raise ValueError("--evaluate needs a video or a VOC data set, not a camera")
        source, stem = CameraSource(int(cfg.source)), "camera"
    elif src_path.is_dir() and _is_voc(src_path):  # a VOC data set: the photos of a split
        ids, photos, masks = split_files(src_path, cfg.split, predictor.num_classes)
        frames = ((i, read_image(p)) for i, p in zip(ids, photos, strict=True))
        source, stem = FrameListSource(frames), None
        truth = voc_ground_truth(resolve_voc_root(src_path), ids, masks or [], len(names))
    elif src_path.is_dir():
        if cfg.evaluate:
            raise ValueError(
                f"--source {src_path}: --evaluate needs a VOC data set (VOC2007/ or "
                f"JPEGImages/ + SegmentationClass/) or a video with its ground truth"
            )
        source, stem = image_folder_source(src_path), None
    elif src_path.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"):
        if cfg.evaluate:
            raise ValueError("--evaluate needs a video or a VOC data set, not one photo")
        source, stem = FrameListSource([(src_path.stem, read_image(src_path))]), None
    else:
        source, stem = VideoFileSource(src_path), src_path.stem
        if cfg.evaluate:
            truth = video_ground_truth(cfg.ground_truth or ground_truth_dir(src_path))
    tracked = cfg.track and stem is not None  # a video or a camera
    grader = Grader(rules, names, track=tracked)
    sinks: list[Any] = []
    if stem is not None:
        sinks.append(VideoWriterSink(out / f"{stem}_graded.mp4", fps=source.fps or 25.0))
    else:
        sinks.append(lambda r: save_overlay(out / f"{r.name}.png", r.overlay))
    if tracked:
        sinks += [FruitCSVSink(out / "grades.csv", grader, names)]
        sinks += [GradeCSVSink(out / "grades_per_frame.csv", names)]
    else:
        sinks.append(GradeCSVSink(out / "grades.csv", names))
    evaluator = None
    if truth is not None and cfg.evaluate:
        evaluator = GradingEvaluator(truth, rules, names, tracked)
        sinks.append(evaluator)
    first = _FirstFrames(8)
    sinks.append(first)
    pipeline = VideoPipeline(
        predictor,
        source,
        sinks,
        batch_size=1 if source.live else cfg.batch_size,
        annotate=grader,
        max_frames=cfg.max_frames,
    )
    stats = pipeline.run()
    print(f"backend: {predictor.describe()}")
    print(stats.summary())
    _print_speed(stats, predictor, first.images if cfg.model_fps else [])
    counts = Counter(d.grade for d in grader.decisions)
    if tracked:
        graded = ", ".join(f"{counts[g]} {g}" for g in rules.names if counts[g]) or "none"
        print(
            f"fruit graded: {len(grader.decisions)} ({graded}); "
            f"one row each in {out / 'grades.csv'}"
        )
    else:
        print(f"grades of every fruit of every photo in {out / 'grades.csv'}")
    if evaluator is not None:
        doc = evaluator.report(grader.decisions)
        doc.update(model=str(cfg.checkpoint), source=str(cfg.source), rules=rules.to_dict())
        if not tracked:
            doc["split"] = cfg.split
        write_bytes(out / "grading_eval.json", (json.dumps(doc, indent=2) + "\n").encode())
        print(format_evaluation(doc))
        print(f"evaluation written to {out / 'grading_eval.json'} (fractions)")
    return 0


def _refuse(err: RulesError) -> int:
    """Print the problems of the grading rules, one line each; the exit status 2."""
    print("\n".join(f"error: {line}" for line in err.problems), file=sys.stderr)
    return 2


def _print_speed(stats: PipelineStats, predictor: Predictor, images: Sequence[np.ndarray]) -> None:
    """End-to-end FPS beside the model-only FPS (timed after the run, batch 1)."""
    if not images:
        return
    alone = model_only_fps(predictor, images)
    print(
        f"speed: end to end {stats.fps:.2f} FPS, model only {alone:.2f} FPS (batch 1, timed "
        f"after the run) -> end to end = {100 * stats.fps / alone:.0f}% of model only"
    )


if __name__ == "__main__":
    sys.exit(main())
