"""Per-fruit defect grading for the sorting line: defect area shares -> premium/standard/reject.

FastSegFormer (Cai et al., Computers and Electronics in Agriculture 217, 108604, 2024) segments
three defect classes on navel oranges (1 sunburn, 2 ulcer, 3 wind scarring); healthy peel and
the scene are class 0. A sorting line needs one decision per fruit, so this module

1. finds the fruit: connected regions of `utils.inference.visualize.fruit_mask` (saturated peel
   colour united with the predicted defects; belt, table and letterbox bands are unsaturated), or of
   a fruit mask / instance map the caller already has (the conveyor's ground truth);
2. measures, per fruit, the share of its area covered by each defect class;
3. grades it with the first rule whose limits all hold (rules are ordered best first), else the
   reject grade. Limits are fractions of the fruit area per class name, plus "total" for all
   defects together. The defaults below are illustrative, not an industry standard: edit them,
   or load your own with `GradingRules.from_file("grades.yaml")`:

       grades:
         - {name: premium, max_share: {total: 0.005}}
         - {name: standard, max_share: {sunburn: 0.10, ulcer: 0.01, wind_scarring: 0.05}}
       reject: reject
       min_fruit_pixels: 400

`Grader` plugs into `utils.line.video_pipeline.VideoPipeline(annotate=...)` and draws each fruit's
box and grade on the overlay; `GradeCSVSink` writes one CSV row per fruit per frame or image.
Touching fruit merge into one region (no instance separation): space fruit on the belt.

Command line (the threaded pipeline: graded video or overlays + OUT/grades.csv):
    python -m utils.line.grading --model logs/run/best.pth --source line.mp4 --out graded/
    python -m utils.line.grading --model model.onnx --source photos/ --rules grades.yaml
    python -m utils.line.grading --model best.pth --source 0 --max-frames 300    # camera 0
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml

from utils.cli import parse_config
from utils.inference.predictor import Predictor
from utils.inference.visualize import fruit_mask
from utils.line.video_pipeline import (
    CameraSource,
    FrameListSource,
    VideoFileSource,
    VideoPipeline,
    VideoWriterSink,
    image_folder_source,
)
from utils.preprocess import CLASS_NAMES, read_image

GRADE_COLOURS = {"premium": (40, 200, 60), "standard": (250, 200, 0), "reject": (230, 30, 30)}
OTHER_COLOUR = (200, 200, 200)


@dataclass
class GradeRule:
    """A grade and its limits: fraction of the fruit area per defect class name (or "total")."""

    name: str
    max_share: dict[str, float] = field(default_factory=dict)

    def accepts(self, shares: dict[str, float], total: float) -> bool:
        for cls, limit in self.max_share.items():
            value = total if cls == "total" else shares.get(cls)
            if value is None:
                raise KeyError(
                    f"grade {self.name!r} limits unknown class {cls!r}; "
                    f"known: {sorted(shares)} and 'total'"
                )
            if value > limit:
                return False
        return True


def _default_grades() -> list[GradeRule]:
    return [
        GradeRule("premium", {"total": 0.005}),  # practically clean: under 0.5 % of the peel
        GradeRule("standard", {"sunburn": 0.10, "ulcer": 0.01, "wind_scarring": 0.05}),
    ]


@dataclass
class GradingRules:
    """Ordered grades (best first); a fruit failing all of them gets `reject`."""

    grades: list[GradeRule] = field(default_factory=_default_grades)
    reject: str = "reject"
    min_fruit_pixels: int = 400  # smaller regions are specks, not fruit

    def grade(self, shares: dict[str, float], total: float) -> str:
        for rule in self.grades:
            if rule.accepts(shares, total):
                return rule.name
        return self.reject

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GradingRules:
        unknown = set(data) - {"grades", "reject", "min_fruit_pixels"}
        if unknown:
            raise ValueError(
                f"unknown grading keys {sorted(unknown)}; expected grades, reject, min_fruit_pixels"
            )
        grades = [
            GradeRule(g["name"], {k: float(v) for k, v in g.get("max_share", {}).items()})
            for g in data.get("grades", [])
        ] or _default_grades()
        return cls(
            grades, str(data.get("reject", "reject")), int(data.get("min_fruit_pixels", 400))
        )

    @classmethod
    def from_file(cls, path: str | Path) -> GradingRules:
        """Rules from a YAML or JSON file (see the module docstring for the layout)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"grading rules file not found: {path}")
        text = path.read_text()
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping with 'grades', got {type(data).__name__}")
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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


def fruit_labels(
    image: np.ndarray, mask: np.ndarray, fruit: np.ndarray | None = None
) -> np.ndarray:
    """(H, W) int32 fruit ids (0 = no fruit).

    fruit: None (find the fruit by colour), a boolean fruit mask, or an integer instance map
    (0 = no fruit, k = fruit k) as the conveyor renders. Defect pixels always count as fruit
    when the regions come from a colour or boolean mask.
    """
    if fruit is None:
        fruit = fruit_mask(image, mask)
    fruit = np.asarray(fruit)
    if fruit.shape != mask.shape:
        raise ValueError(f"fruit map {fruit.shape} and class mask {mask.shape} sizes differ")
    if fruit.dtype != bool:
        return fruit.astype(np.int32)
    binary = (fruit | (mask != 0)).astype(np.uint8)
    _, labels = cv2.connectedComponents(binary, connectivity=8, ltype=cv2.CV_32S)
    return labels


def grade_frame(
    image: np.ndarray,
    mask: np.ndarray,
    rules: GradingRules | None = None,
    fruit: np.ndarray | None = None,
    class_names: Sequence[str] = CLASS_NAMES,
) -> list[FruitGrade]:
    """Grade every fruit of one frame from its (H, W) class mask (regions: `fruit_labels`)."""
    rules = rules or GradingRules()
    mask = np.asarray(mask)
    h, w = mask.shape
    k = len(class_names)
    labels = fruit_labels(image, mask, fruit)  # (H, W) int32
    n = int(labels.max()) + 1
    # Pixel counts per (fruit id, class): areas over all pixels, defects over the few defect
    # pixels only (ignore-index pixels are not a defect).
    joint = np.zeros((n, k), dtype=np.int64)  # (fruit ids, K)
    for c in range(1, k):
        joint[:, c] = np.bincount(labels[mask == c], minlength=n)[:n]
    areas = np.bincount(labels.ravel(), minlength=n)[:n]
    ids = [i for i in range(1, n) if areas[i] >= rules.min_fruit_pixels]
    boxes = {}  # fruit id -> (x0, y0, x1, y1) from the columns / rows it occupies
    for i in ids:
        region = labels == i
        cols, rows = np.flatnonzero(region.any(axis=0)), np.flatnonzero(region.any(axis=1))
        boxes[i] = (int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1]))
    grades = []
    for rank, i in enumerate(sorted(ids, key=lambda i: boxes[i][0]), 1):
        pixels = int(areas[i])
        counts = joint[i]
        shares = {class_names[c]: float(counts[c]) / pixels for c in range(1, k)}
        total = float(counts[1:].sum()) / pixels
        x0, y0, x1, y1 = boxes[i]
        partial = x0 == 0 or y0 == 0 or x1 == w - 1 or y1 == h - 1
        bbox = (x0, y0, x1 - x0 + 1, y1 - y0 + 1)
        grade = rules.grade(shares, total)
        grades.append(FruitGrade(rank, bbox, pixels, shares, total, grade, partial))
    return grades


def draw_grades(image: np.ndarray, grades: Sequence[FruitGrade]) -> np.ndarray:
    """Draw each fruit's box, grade and defect share on an RGB image in place."""
    scale = max(0.45, image.shape[0] / 800)
    for g in grades:
        x, y, w, h = g.bbox
        colour = GRADE_COLOURS.get(g.grade, OTHER_COLOUR)
        cv2.rectangle(image, (x, y), (x + w - 1, y + h - 1), colour, 2 if not g.partial else 1)
        text = f"{g.grade} {100 * g.total:.1f}%" + (" (partial)" if g.partial else "")
        origin = (x + 3, max(y - 5, 12))
        cv2.putText(image, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(image, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, 1, cv2.LINE_AA)
    return image


class Grader:
    """`VideoPipeline(annotate=Grader())`: grade each frame and draw the grades on the overlay."""

    def __init__(
        self,
        rules: GradingRules | None = None,
        class_names: Sequence[str] = CLASS_NAMES,
        draw: bool = True,
    ) -> None:
        self.rules = rules or GradingRules()
        self.class_names = tuple(class_names)
        self.draw = draw

    def __call__(
        self, image: np.ndarray, mask: np.ndarray, overlay: np.ndarray | None = None
    ) -> list[FruitGrade]:
        grades = grade_frame(image, mask, self.rules, class_names=self.class_names)
        if self.draw and overlay is not None:
            draw_grades(overlay, grades)
        return grades


def grade_rows(name: str, grades: Sequence[FruitGrade]) -> list[dict[str, object]]:
    """CSV rows (one per fruit; shares in percent) for the frame or image `name`."""
    rows = []
    for g in grades:
        row: dict[str, object] = {
            "image": name,
            "fruit": g.fruit,
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
    """Pipeline sink: append the grades in `FrameResult.extra` to a CSV, one row per fruit.

    Frames without fruit still get a row (fruit 0, grade empty) so every frame is accounted for.
    """

    def __init__(self, path: str | Path, class_names: Sequence[str] = CLASS_NAMES) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fields = ["image", "fruit", "x", "y", "w", "h", "fruit_pixels", "partial"]
        self.fields += [f"{c}_pct" for c in class_names[1:]] + ["defect_pct", "grade"]
        self._file = self.path.open("w", newline="")
        self._writer = csv.DictWriter(self._file, fieldnames=self.fields, restval="")
        self._writer.writeheader()
        self.rows = 0

    def write(self, name: str, grades: Sequence[FruitGrade]) -> None:
        rows = grade_rows(name, grades) or [{"image": name, "fruit": 0}]
        self._writer.writerows(rows)
        self.rows += len(rows)

    def __call__(self, result: Any) -> None:
        self.write(result.name, result.extra or [])

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()


@dataclass
class Config:
    model: str = ""  # project checkpoint (.pth) or ONNX file
    source: str = ""  # video file, folder of photos, one photo, or a camera index
    out: str = "graded"  # output folder: graded video or overlays, and grades.csv
    rules: str | None = None  # grading rules YAML/JSON (default: GradingRules())
    max_frames: int | None = None  # stop after this many frames (video / camera)
    batch_size: int = 4  # largest opportunistic batch (files; cameras use 1)


def main(argv: Sequence[str] | None = None) -> int:
    """Grade every fruit of a video, camera, folder or photo; returns the exit status."""
    cfg = parse_config(Config, argv, description=__doc__)
    if not cfg.model or not cfg.source:
        raise SystemExit("error: give --model (a .pth checkpoint or .onnx) and --source")
    model = Path(cfg.model)
    predictor = (
        Predictor.from_onnx(model) if model.suffix == ".onnx" else Predictor.from_checkpoint(model)
    )
    rules = GradingRules.from_file(cfg.rules) if cfg.rules else GradingRules()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    src_path = Path(cfg.source)
    if cfg.source.isdigit():
        source, stem = CameraSource(int(cfg.source)), "camera"
    elif src_path.is_dir():
        source, stem = image_folder_source(src_path), None
    elif src_path.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"):
        source, stem = FrameListSource([(src_path.stem, read_image(src_path))]), None
    else:
        source, stem = VideoFileSource(src_path), src_path.stem
    csv_sink = GradeCSVSink(out / "grades.csv", predictor.class_names)
    counts: dict[str, int] = {}

    def tally(result: Any) -> None:
        for g in result.extra:
            counts[g.grade] = counts.get(g.grade, 0) + 1

    def save_overlay(result: Any) -> None:
        path = out / f"{result.name}.png"
        cv2.imwrite(str(path), cv2.cvtColor(result.overlay, cv2.COLOR_RGB2BGR))

    if stem is not None:
        writer: Any = VideoWriterSink(out / f"{stem}_graded.mp4", fps=source.fps or 25.0)
    else:
        writer = save_overlay
    pipeline = VideoPipeline(
        predictor,
        source,
        [writer, csv_sink, tally],
        batch_size=1 if source.live else cfg.batch_size,
        annotate=Grader(rules, predictor.class_names),
        max_frames=cfg.max_frames,
    )
    stats = pipeline.run()
    print(stats.summary())
    graded = ", ".join(f"{n} {g}" for g, n in sorted(counts.items())) or "no fruit found"
    print(f"fruit-frames graded: {graded}; grades in {out / 'grades.csv'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
