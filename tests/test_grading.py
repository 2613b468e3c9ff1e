"""Per-fruit grading: region finding, area shares, thresholds, CSV and drawing."""

from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest

from nets.checkpoint import build_checkpoint, save_checkpoint
from utils.line.conveyor import ConveyorScene
from utils.line.fruit import FruitTracker, fruit_regions, split_touching
from utils.line.grading import (
    FruitGrade,
    GradeCSVSink,
    Grader,
    GradingEvaluator,
    decide,
    draw_grades,
    grade_frame,
)
from utils.line.rules import GradeRule, GradingRules, RulesError, load_rules
from utils.line.video_pipeline import FrameResult

# the grading is under test, not the runtimes: no INT8 builds, and the process keeps its threads
TORCH = ("--backend", "torch", "--threads", "0")


def three_fruit_scene() -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Three orange discs on a grey table; defects painted into the class mask only.

    Left: clean. Middle: sunburn on 5 % of the fruit. Right: ulcer on 2 % of the fruit.
    """
    image = np.full((200, 600, 3), 200, dtype=np.uint8)
    mask = np.zeros((200, 600), dtype=np.uint8)
    areas = []
    for cx in (100, 300, 500):
        disc = np.zeros((200, 600), np.uint8)
        cv2.circle(disc, (cx, 100), 70, 1, -1)
        image[disc > 0] = (235, 140, 30)
        areas.append(int(disc.sum()))
    rows = np.argwhere(np.zeros((200, 600)) == 0)  # all pixels, row-major
    for cx, cls, share, area in ((300, 1, 0.05, areas[1]), (500, 2, 0.02, areas[2])):
        inside = rows[(rows[:, 0] - 100) ** 2 + (rows[:, 1] - cx) ** 2 < 60**2]
        chosen = inside[: int(round(share * area))]
        mask[chosen[:, 0], chosen[:, 1]] = cls
    return image, mask, areas


def test_default_rules_grade_clean_sunburnt_and_ulcerated_fruit():
    image, mask, areas = three_fruit_scene()
    grades = grade_frame(image, mask)
    assert [g.grade for g in grades] == ["premium", "standard", "reject"]
    assert [g.fruit for g in grades] == [1, 2, 3]
    for g, area in zip(grades, areas, strict=True):
        assert abs(g.pixels - area) <= 0.02 * area  # colour threshold finds the disc
        assert not g.partial
    assert grades[0].total == 0.0
    assert grades[1].shares["sunburn"] == pytest.approx(0.05, rel=0.03)
    assert grades[2].shares["ulcer"] == pytest.approx(0.02, rel=0.03)
    assert grades[1].shares["ulcer"] == 0.0 and grades[2].total == grades[2].shares["ulcer"]


def test_thresholds_are_configurable_and_ordered():
    image, mask, _ = three_fruit_scene()
    lenient = GradingRules(
        [GradeRule("A", {"total": 0.03}), GradeRule("B", {"sunburn": 0.06, "ulcer": 0.06})],
        reject="C",
    )
    assert [g.grade for g in grade_frame(image, mask, lenient)] == ["A", "B", "A"]
    strict = GradingRules([GradeRule("A", {"total": 0.0})], reject="C")
    assert [g.grade for g in grade_frame(image, mask, strict)] == ["A", "C", "C"]
    # Exactly at the limit passes; just above fails.
    rule = GradeRule("x", {"ulcer": 0.02})
    assert rule.accepts({"ulcer": 0.02}, 0.02) and not rule.accepts({"ulcer": 0.0201}, 0.0201)
    with pytest.raises(KeyError, match="canker"):
        GradeRule("x", {"canker": 0.1}).accepts({"ulcer": 0.0}, 0.0)


def test_rules_from_yaml_file(tmp_path):
    path = tmp_path / "grades.yaml"
    path.write_text(
        "grades:\n  - {name: first, max_share: {total: 0.01}}\nreject: cull\nmin_fruit_pixels: 50\n"
    )
    rules = load_rules(path)
    assert rules.grades[0].name == "first" and rules.reject == "cull"
    assert rules.min_fruit_pixels == 50
    assert GradingRules.from_dict(rules.to_dict()) == rules
    with pytest.raises(RulesError, match="key 'grade': unknown"):
        GradingRules.from_dict({"grade": []})
    with pytest.raises(RulesError, match="nope.yaml: file not found"):
        load_rules(tmp_path / "nope.yaml")


def test_regions_from_instance_map_and_partial_fruit():
    scene = ConveyorScene(seed=1)
    frame = scene.render(0)
    by_instance = grade_frame(frame.image, frame.label, fruit=frame.instances)
    visible = [k for k in np.unique(frame.instances) if k and (frame.instances == k).sum() >= 400]
    assert len(by_instance) == len(visible)
    # Ground-truth grading: a fruit drawn without defects is premium with 0 % defects.
    sprites = {f.fruit_id: f.sprite for f in scene.fruits}
    for g, k in zip(
        by_instance,
        sorted(visible, key=lambda k: np.argwhere(frame.instances == k)[:, 1].min()),
        strict=True,
    ):
        if not sprites[k].defects:
            assert g.total == 0.0 and g.grade == "premium"
    # Colour-based regions agree with the rendered instances on the belt.
    by_colour = grade_frame(frame.image, frame.label)  # regions from colour, not instances
    assert len(by_colour) == len(visible)
    h, w = frame.label.shape
    for g in by_instance:
        x, y, bw, bh = g.bbox
        assert g.partial == (x == 0 or y == 0 or x + bw == w or y + bh == h)


def test_grader_draws_on_overlay_and_csv_sink_writes_rows(tmp_path):
    image, mask, _ = three_fruit_scene()
    overlay = image.copy()
    grades = Grader()(image, mask, overlay).fruit
    assert len(grades) == 3 and not np.array_equal(overlay, image)  # boxes and labels drawn
    red = np.all(overlay == (230, 30, 30), axis=-1)
    assert red[:, 400:].any() and not red[:, :200].any()  # reject box around the right fruit

    class Result:
        def __init__(self, name, extra):
            self.name, self.extra = name, extra

    sink = GradeCSVSink(tmp_path / "grades.csv")
    sink(Result("frame_000000", grades))
    sink(Result("frame_000001", []))  # no fruit in view: still one row
    sink.close()
    with (tmp_path / "grades.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["grade"] for r in rows] == ["premium", "standard", "reject", ""]
    assert float(rows[1]["sunburn_pct"]) == pytest.approx(5.0, rel=0.03)
    assert rows[3]["image"] == "frame_000001" and rows[3]["fruit"] == "0"
    assert draw_grades(image.copy(), []).shape == image.shape


@pytest.fixture
def tiny_checkpoint(tmp_path, monkeypatch):
    """A project checkpoint of a 1x1-conv "model" (random grades, real files and flags)."""
    import torch.nn as nn

    import nets

    class Tiny(nn.Module):
        num_classes, default_input_size, fixed_input_size, backbone = 4, 32, False, None

        def __init__(self, num_classes: int = 4, **kw) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 1)

        def forward(self, x):
            return self.conv(x)  # (B, 4, H, W)

    monkeypatch.setitem(nets.MODELS, "tiny_grading_net", Tiny)
    model = nets.build_model("tiny_grading_net")
    return save_checkpoint(
        build_checkpoint(
            model,
            input_size=(32, 32),
            class_names=["background", "sunburn", "ulcer", "wind_scarring"],
        ),
        tmp_path / "tiny.pth",
    )


def test_command_line_grades_a_video_and_a_folder(tmp_path, tiny_checkpoint, capsys):
    from utils.line.conveyor import write_video
    from utils.line.grading import main

    ckpt = str(tiny_checkpoint)
    video = write_video(tmp_path / "belt.mp4", seconds=0.2, fps=30, seed=0, size=(96, 160))
    argv = ["--checkpoint", ckpt, "--source", str(video), "--out", str(tmp_path / "v"), *TORCH]
    assert main(argv) == 0
    cap = cv2.VideoCapture(str(tmp_path / "v" / "belt_graded.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 6
    cap.release()
    # Video: one row per fruit (its final grade), and the per-frame detail beside it.
    with (tmp_path / "v" / "grades_per_frame.csv").open() as f:
        frames = list(csv.DictReader(f))
    assert {r["image"] for r in frames} == {f"belt_{i:06d}" for i in range(6)}
    with (tmp_path / "v" / "grades.csv").open() as f:
        fruit = list(csv.DictReader(f))
    tracks = {r["track"] for r in frames if r["track"]}
    assert sorted(r["fruit"] for r in fruit) == sorted(tracks)
    assert all(r["grade"] in ("premium", "standard", "reject") for r in fruit)
    printed = capsys.readouterr().out
    assert "model only" in printed and "end to end" in printed

    # --no-track: one row per fruit per frame, as for photos.
    argv = [
        "--checkpoint",
        ckpt,
        "--source",
        str(video),
        "--out",
        str(tmp_path / "n"),
        "--no-track",
    ]
    assert main(argv) == 0
    with (tmp_path / "n" / "grades.csv").open() as f:
        assert {r["image"] for r in csv.DictReader(f)} == {f"belt_{i:06d}" for i in range(6)}

    photos = tmp_path / "photos"
    photos.mkdir()
    image, _, _ = three_fruit_scene()
    for name in ("a", "b"):
        cv2.imwrite(str(photos / f"{name}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    assert (
        main(["--checkpoint", ckpt, "--source", str(photos), "--out", str(tmp_path / "p"), *TORCH])
        == 0
    )
    assert (tmp_path / "p" / "a.png").is_file() and (tmp_path / "p" / "b.png").is_file()
    assert not list((tmp_path / "p").glob(".*"))  # no temporary files left behind


# ---------------------------------------------------------------------------- touching fruit
def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_touching_fruit_are_split_into_one_region_each():
    """Conveyor frames where every fruit touches or overlaps the next one in its lane."""
    scene = ConveyorScene(seed=3, touching=1.0, seconds=1.0)
    whole, merged_blobs = 0, 0
    for i in (0, 10, 20):
        frame = scene.render(i)
        # regions from the photo's colour and the true defects, as for a perfect model
        labels = fruit_regions(frame.image, frame.label)
        blobs = fruit_regions(frame.image, frame.label, split=False)
        truth = grade_frame(frame.image, frame.label, fruit=frame.instances)
        found = grade_frame(frame.image, frame.label, labels=labels)
        full = [t for t in truth if not t.partial]
        merged_blobs += len(full) - len({int(blobs[frame.instances == t.region][0]) for t in full})
        for t in full:  # every fruit seen whole is one region of its own
            whole += 1
            best = max(_iou(labels == f.region, frame.instances == t.region) for f in found)
            assert best > 0.9, (i, t.bbox, best)
    assert whole >= 12 and merged_blobs >= 6  # the frames do have touching fruit to split


def test_split_touching_leaves_single_and_oval_fruit_whole():
    canvas = np.zeros((200, 400), np.uint8)
    cv2.ellipse(canvas, (100, 100), (80, 55), 20, 0, 360, 1, -1)  # an oval fruit
    cv2.circle(canvas, (270, 100), 60, 1, -1)  # two overlapping round ones
    cv2.circle(canvas, (365, 100), 40, 1, -1)
    labels = split_touching(canvas.astype(bool))
    assert len(np.unique(labels[canvas > 0])) == 3 and labels[100, 100] != labels[100, 270]
    assert labels[100, 250] != labels[100, 380]  # split at the neck, not elsewhere
    assert labels[100, 320] == labels[100, 270] and labels[100, 340] == labels[100, 380]


# ---------------------------------------------------------------------------- tracking
def test_tracker_gives_one_id_per_fruit_along_the_belt():
    tracker = FruitTracker()
    ids = []
    for i in range(12):  # two fruit moving right 20 px a frame; a third enters at frame 6
        boxes = [(10 + 20 * i, 10, 60, 60), (10 + 20 * i, 120, 60, 60)]
        if i >= 6:
            boxes.append((0, 200, 10 + 15 * (i - 6), 60))
        got, ended = tracker.update(i, boxes, frame=(300, 1000))
        ids.append(got)
        assert not ended
    assert all(row[:2] == [1, 2] for row in ids) and {row[2] for row in ids[6:]} == {3}
    assert tracker.motion[0] == pytest.approx(20, abs=3)
    # Fruit 1 unseen for 3 frames: it has left; a new box far away is a new fruit.
    for i in range(12, 15):
        got, ended = tracker.update(i, [(10 + 20 * i, 120, 60, 60)], frame=(300, 1000))
        assert got == [2]
    assert ended == [1, 3] and sorted(tracker.finish()) == [2]


def test_decision_averages_the_frames_that_show_the_whole_fruit():
    def obs(total: float, partial: bool) -> FruitGrade:
        shares = {"sunburn": total, "ulcer": 0.0, "wind_scarring": 0.0}
        return FruitGrade(1, (0, 0, 10, 10), 1000, shares, total, "x", partial)

    rules = GradingRules()
    seen = [(3, obs(0.30, True)), (4, obs(0.02, False)), (5, obs(0.04, False)), (6, obs(0.5, True))]
    d = decide(seen, rules, fruit=7)
    assert d.total == pytest.approx(0.03) and d.grade == "standard" and not d.partial
    assert (d.fruit, d.first_frame, d.last_frame, d.frames, d.full_frames) == (7, 3, 6, 4, 2)
    cut = decide([(0, obs(0.002, True))], rules)
    assert cut.partial and cut.grade == "premium"


def _grade_video(frames, masks, touching_seed=None):
    """Grade `masks` (one per frame) with a tracking Grader and score them against the truth."""
    grader = Grader(track=True)
    evaluator = GradingEvaluator(
        lambda r: (frames[r.index].label, frames[r.index].instances),
        GradingRules(),
        ["background", "sunburn", "ulcer", "wind_scarring"],
        tracked=True,
    )
    for i, (frame, mask) in enumerate(zip(frames, masks, strict=True)):
        evaluator(FrameResult(i, f"f{i}", frame.image, mask, None, grader(frame.image, mask)))
    grader.finish()
    return grader, evaluator.report(grader.decisions)


def test_evaluation_of_a_perfect_and_of_an_ulcer_blind_prediction():
    scene = ConveyorScene(seed=6, touching=0.5, seconds=2.0)  # 3 rejects with ulcer alone
    frames = [scene.render(i) for i in range(scene.num_frames)]
    # Perfect masks: every fruit decided once, every grade right.
    grader, doc = _grade_video(frames, [f.label for f in frames])
    seen_whole = {
        k for f in frames for k in np.unique(f.instances) if k and _whole(f.instances == k)
    }
    assert doc["fruit"] == len(seen_whole) >= 10 and doc["fruit_missed"] == 0
    assert doc["grade_accuracy"] == 1.0 and doc["reject_as_premium"] == 0
    assert doc["mIoU"] == 1.0 and doc["defect_share_mae"] < 0.002 and doc["spurious"] == 0
    assert len(grader.decisions) == len({k for f in frames for k in np.unique(f.instances)} - {0})
    assert doc["units"] == "fraction"
    # A model blind to ulcer: fruit rejected for ulcer alone pass as premium.
    blind = [np.where(f.label == 2, 0, f.label).astype(np.uint8) for f in frames]
    _, doc2 = _grade_video(frames, blind)
    ulcer_only = [
        r for r in doc["per_fruit"] if r["true_grade"] == "reject" and _only_ulcer(scene, r)
    ]
    assert len(ulcer_only) == 3 and doc2["reject_as_premium"] == 3
    assert doc2["grade_accuracy"] < 1.0 and doc2["IoU"][2] == 0.0
    assert doc2["confusion"]["reject"]["premium"] == len(ulcer_only)


def _whole(region: np.ndarray) -> bool:
    h, w = region.shape
    rows, cols = np.nonzero(region)
    return (
        region.sum() >= 400
        and rows.min() > 0
        and cols.min() > 0
        and rows.max() < h - 1
        and (cols.max() < w - 1)
    )


def _only_ulcer(scene: ConveyorScene, row: dict) -> bool:
    sprite = {f.fruit_id: f.sprite for f in scene.fruits}[int(row["fruit"])]
    return sprite.defects == (2,)


def test_command_line_evaluates_against_a_video_and_a_voc_ground_truth(
    tmp_path, tiny_checkpoint, capsys
):
    from utils.line.conveyor import write_video, write_voc
    from utils.line.grading import main

    video = write_video(
        tmp_path / "t.mp4", seconds=0.3, fps=30, seed=2, size=(96, 160), ground_truth=True
    )
    out = tmp_path / "e"
    assert main(["--checkpoint", str(tiny_checkpoint), "--source", str(video), "--evaluate",
                 "--out", str(out), "--no-model-fps", *TORCH]) == 0  # fmt: skip
    doc = json.loads((out / "grading_eval.json").read_text())
    for key in ("grade_accuracy", "reject_as_premium", "defect_share_mae", "mIoU"):
        assert key in doc
    assert doc["units"] == "fraction" and doc["frames"] == 9 and doc["tracked"]
    assert 0.0 <= doc["mIoU"] <= 1.0 and set(doc["confusion"]) == {"premium", "standard", "reject"}

    root = write_voc(tmp_path / "voc", seconds=0.5, fps=20, seed=3, size=(96, 160), every=1)
    out = tmp_path / "ev"
    assert main(["--checkpoint", str(tiny_checkpoint), "--source", str(root), "--split", "test",
                 "--evaluate", "--out", str(out), "--no-model-fps", *TORCH]) == 0  # fmt: skip
    doc = json.loads((out / "grading_eval.json").read_text())
    assert doc["frames"] == 2 and not doc["tracked"] and doc["split"] == "test"
    other = write_video(tmp_path / "no_gt.mp4", seconds=0.1, fps=30, size=(96, 160))
    capsys.readouterr()
    rc = main(["--checkpoint", str(tiny_checkpoint), "--source", str(other), "--evaluate", *TORCH])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "ground-truth folder not found" in err[0], err


def test_command_line_runs_the_backend_it_is_given(tmp_path, tiny_checkpoint, capsys):
    """--backend reaches the predictor (the default is auto, as in predict.py and gui.py)."""
    from utils.line.conveyor import write_video
    from utils.line.grading import Config, main

    assert Config().backend == "auto"
    video = write_video(tmp_path / "b.mp4", seconds=0.1, fps=30, seed=1, size=(96, 160))
    argv = ["--checkpoint", str(tiny_checkpoint), "--source", str(video),
            "--out", str(tmp_path / "o"), "--backend", "ort-fp32", "--threads", "0",
            "--no-model-fps", "--deploy-cache", str(tmp_path / "c")]  # fmt: skip
    assert main(argv) == 0
    assert "backend: ort-fp32: onnxruntime" in capsys.readouterr().out


def test_line_threads_leave_one_core_to_the_pipeline():
    from utils.line.grading import line_threads

    assert line_threads(-1, cores=2) == 1 and line_threads(-1, cores=8) == 7
    assert line_threads(-1, cores=1) == 1  # never zero threads
    assert line_threads(0, cores=8) == 0 and line_threads(3, cores=8) == 3  # as given
