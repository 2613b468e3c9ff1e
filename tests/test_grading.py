"""Per-fruit grading: region finding, area shares, thresholds, CSV and drawing."""

from __future__ import annotations

import csv

import cv2
import numpy as np
import pytest

from nets.checkpoint import build_checkpoint, save_checkpoint
from utils.line.conveyor import ConveyorScene
from utils.line.grading import (
    GradeCSVSink,
    Grader,
    GradeRule,
    GradingRules,
    draw_grades,
    grade_frame,
)


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
    rules = GradingRules.from_file(path)
    assert rules.grades[0].name == "first" and rules.reject == "cull"
    assert rules.min_fruit_pixels == 50
    assert GradingRules.from_dict(rules.to_dict()) == rules
    with pytest.raises(ValueError, match="unknown grading keys"):
        GradingRules.from_dict({"grade": []})
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        GradingRules.from_file(tmp_path / "nope.yaml")


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
    grades = Grader()(image, mask, overlay)
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


def test_command_line_grades_a_video_and_a_folder(tmp_path, monkeypatch):
    import torch.nn as nn

    import nets
    from utils.line.conveyor import write_video
    from utils.line.grading import main

    class Tiny(nn.Module):
        num_classes, default_input_size, fixed_input_size, backbone = 4, 32, False, None

        def __init__(self, num_classes: int = 4, **kw) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 1)

        def forward(self, x):
            return self.conv(x)  # (B, 4, H, W)

    monkeypatch.setitem(nets.MODELS, "tiny_grading_net", Tiny)
    model = nets.build_model("tiny_grading_net")
    ckpt = save_checkpoint(
        build_checkpoint(
            model,
            input_size=(32, 32),
            class_names=["background", "sunburn", "ulcer", "wind_scarring"],
        ),
        tmp_path / "tiny.pth",
    )
    video = write_video(tmp_path / "belt.mp4", seconds=0.2, fps=30, seed=0, size=(96, 160))
    assert main(["--model", str(ckpt), "--source", str(video), "--out", str(tmp_path / "v")]) == 0
    cap = cv2.VideoCapture(str(tmp_path / "v" / "belt_graded.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 6
    cap.release()
    with (tmp_path / "v" / "grades.csv").open() as f:
        assert {r["image"] for r in csv.DictReader(f)} == {f"belt_{i:06d}" for i in range(6)}

    photos = tmp_path / "photos"
    photos.mkdir()
    image, _, _ = three_fruit_scene()
    for name in ("a", "b"):
        cv2.imwrite(str(photos / f"{name}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    assert main(["--model", str(ckpt), "--source", str(photos), "--out", str(tmp_path / "p")]) == 0
    assert (tmp_path / "p" / "a.png").is_file() and (tmp_path / "p" / "b.png").is_file()
