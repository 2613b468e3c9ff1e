"""The line end to end: conveyor video -> real Predictor (tiny model) -> grading -> MP4 + CSV."""

from __future__ import annotations

import csv

import cv2
import numpy as np
import torch
import torch.nn as nn

from utils.inference.model_predictor import ModelPredictor
from utils.line.conveyor import write_video
from utils.line.grading import FrameGrades, GradeCSVSink, Grader
from utils.line.video_pipeline import CollectSink, VideoFileSource, VideoPipeline, VideoWriterSink


class TinyNet(nn.Module):
    """Conv(3->4) at input size: enough for the Predictor's contract."""

    num_classes = 4

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)  # (B, 4, H, W)


def test_conveyor_video_through_predictor_grader_and_sinks(tmp_path):
    video = write_video(tmp_path / "line.mp4", seconds=0.5, fps=30, seed=4, size=(144, 256))
    predictor = ModelPredictor(TinyNet(), input_size=64)
    collect = CollectSink()
    writer = VideoWriterSink(tmp_path / "out.mp4", fps=30)
    grades_csv = GradeCSVSink(tmp_path / "grades.csv")
    pipe = VideoPipeline(
        predictor,
        VideoFileSource(video),
        [collect, writer, grades_csv],
        batch_size=3,
        annotate=Grader(),
    )
    stats = pipe.run()
    assert stats.frames_out == 15 and [r.index for r in collect.results] == list(range(15))
    first = collect.results[0]
    assert first.mask.shape == (144, 256) and first.mask.dtype == np.uint8
    assert first.overlay.shape == (144, 256, 3)
    # The mask is the Predictor's own answer for that frame, batching or not.
    assert np.array_equal(first.mask, predictor.predict(first.image))
    assert isinstance(first.extra, FrameGrades)  # the frame's fruit, decisions, regions
    cap = cv2.VideoCapture(str(tmp_path / "out.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 15
    cap.release()
    with (tmp_path / "grades.csv").open() as f:
        names = {row["image"] for row in csv.DictReader(f)}
    assert names == {f"line_{i:06d}" for i in range(15)}
