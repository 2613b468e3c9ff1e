"""Threaded video pipeline: order, completeness, live dropping, errors, cancellation.

A tiny fake predictor stands in for the model: it encodes each frame's brightness in its
logits and decodes it again in postprocess, so a frame paired with another frame's logits
(a batching or ordering bug) shows up as a wrong mask value.
"""

from __future__ import annotations

import threading
import time

import cv2
import numpy as np
import pytest

from utils.line.video_pipeline import (
    CollectSink,
    FrameListSource,
    PipelineError,
    VideoFileSource,
    VideoPipeline,
    VideoWriterSink,
)

JOIN_TIMEOUT = 5.0  # seconds; a hung thread fails the test instead of hanging it


class FakePredictor:
    """preprocess/infer/postprocess of the Predictor contract; the mask value is the frame tag."""

    num_classes = 2
    input_size = (8, 8)

    def __init__(self, infer_s: float = 0.0, fail_at: dict[str, int] | None = None) -> None:
        self.infer_s = infer_s  # sleep per frame in infer (a slow model)
        self.fail_at = fail_at or {}  # stage -> frame tag that raises
        self.batch_sizes: list[int] = []

    def _maybe_fail(self, stage: str, tag: int) -> None:
        if self.fail_at.get(stage) == tag:
            raise ValueError(f"fake {stage} failure at frame {tag}")

    def preprocess(self, image: np.ndarray):
        tag = int(round(float(image.mean()) / 8))
        self._maybe_fail("preprocess", tag)
        x = cv2.resize(image, (8, 8)).astype(np.float32).transpose(2, 0, 1) / 255.0
        return np.ascontiguousarray(x), image.shape[:2]  # (3, 8, 8), the "letterbox"

    def infer(self, batch: np.ndarray) -> np.ndarray:
        self.batch_sizes.append(len(batch))
        time.sleep(self.infer_s * len(batch))
        tags = np.round(batch.mean(axis=(1, 2, 3)) * 255 / 8)  # (B,)
        for t in tags:
            self._maybe_fail("infer", int(t))
        return np.broadcast_to(tags[:, None, None, None], (len(batch), 2, 8, 8)).astype(np.float32)

    def postprocess(self, logits: np.ndarray, box) -> np.ndarray:
        tag = int(logits[0, 0, 0])
        self._maybe_fail("postprocess", tag)
        return np.full(box, tag, dtype=np.uint8)  # (H, W)


def tagged_frames(n: int, size: tuple[int, int] = (48, 64)) -> list[np.ndarray]:
    """Frame i is uniformly 8 * (i % 32): tag i % 32 survives JPEG/MPEG compression."""
    return [np.full((*size, 3), 8 * (i % 32), dtype=np.uint8) for i in range(n)]


@pytest.fixture()
def tagged_video(tmp_path):
    """A 24-frame MP4 of tagged frames."""
    path = tmp_path / "tagged.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, (64, 48))
    assert writer.isOpened()
    for frame in tagged_frames(24):
        writer.write(frame)
    writer.release()
    return path


def no_draw_pipeline(predictor, source, sinks, **kw) -> VideoPipeline:
    return VideoPipeline(predictor, source, sinks, draw=None, **kw)


def assert_threads_ended(pipe: VideoPipeline) -> None:
    assert pipe.join(JOIN_TIMEOUT), "pipeline threads did not end"
    assert not any(t.name.startswith("pipe-") and t.is_alive() for t in pipe._threads)


def test_file_source_keeps_every_frame_in_order(tagged_video, tmp_path):
    sink = CollectSink()
    writer = VideoWriterSink(tmp_path / "out.mp4", fps=30)
    predictor = FakePredictor(infer_s=0.002)
    pipe = no_draw_pipeline(
        predictor, VideoFileSource(tagged_video), [sink, writer], batch_size=4, queue_size=2
    )
    stats = pipe.run()
    assert_threads_ended(pipe)
    assert [r.index for r in sink.results] == list(range(24))
    # Each result carries its own frame and the logits computed from that frame.
    assert [int(r.mask[0, 0]) for r in sink.results] == list(range(24))
    assert [round(float(r.image.mean()) / 8) for r in sink.results] == list(range(24))
    assert stats.frames_in == stats.frames_out == 24 and stats.dropped == 0
    assert sum(predictor.batch_sizes) == 24
    assert stats.fps > 0 and 0 < stats.infer_busy <= 1.0
    assert set(stats.stage_ms) == {
        "read",
        "preprocess",
        "infer",
        "postprocess",
        "write",
    }
    cap = cv2.VideoCapture(str(tmp_path / "out.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 24
    cap.release()


def test_batches_form_when_model_is_slower_than_reading():
    sink = CollectSink()
    predictor = FakePredictor(infer_s=0.01)
    source = FrameListSource(tagged_frames(30))
    stats = no_draw_pipeline(predictor, source, [sink], batch_size=4).run()
    assert [int(r.mask[0, 0]) for r in sink.results] == list(range(30))
    assert max(predictor.batch_sizes) > 1 and max(predictor.batch_sizes) <= 4
    assert stats.mean_batch > 1


def test_max_frames_ends_the_run_normally(tagged_video):
    sink = CollectSink()
    pipe = no_draw_pipeline(FakePredictor(), VideoFileSource(tagged_video), [sink], max_frames=7)
    stats = pipe.run()
    assert [r.index for r in sink.results] == list(range(7)) and stats.frames_in == 7
    assert not pipe.stopped


def test_default_draw_makes_overlay(tagged_video):
    sink = CollectSink()
    pipe = VideoPipeline(FakePredictor(), VideoFileSource(tagged_video), [sink])
    pipe.run()
    r = sink.results[3]
    assert (
        r.overlay is not None and r.overlay.shape == r.image.shape and r.overlay.dtype == np.uint8
    )


class FakeCamera(FrameListSource):
    """A camera that captures frame i at start + i * interval and buffers what is not read."""

    def __init__(self, frames, interval: float) -> None:
        super().__init__(frames, live=True, interval=interval)
        self.captured_at: list[float] = []

    def read(self):
        item = super().read()  # sleeps until the frame's capture time; no sleep when behind
        if item is not None:
            self.captured_at.append(self._next_t)
        return item


def run_camera(n: int, live: bool) -> tuple[VideoPipeline, list, list[float]]:
    """A 200 FPS camera in front of a 50 FPS model; lag = delivery time - capture time."""
    delivered: list[tuple[int, float]] = []
    camera = FakeCamera(tagged_frames(n), interval=0.005)
    camera.live = live
    sink = CollectSink()
    pipe = no_draw_pipeline(
        FakePredictor(infer_s=0.02),
        camera,
        [sink, lambda r: delivered.append((r.index, time.perf_counter()))],
        batch_size=4,
    )
    pipe.run()
    assert_threads_ended(pipe)
    lags = [t - camera.captured_at[i] for i, t in delivered]
    return pipe, sink.results, lags


def test_live_source_drops_stale_frames_instead_of_lagging():
    n = 60
    pipe, results, lags = run_camera(n, live=True)
    stats, indices = pipe.stats, [r.index for r in results]
    assert stats.dropped > 0
    assert stats.frames_in == n and stats.frames_out + stats.dropped == n
    assert indices == sorted(set(indices))  # still in order, no duplicates
    assert all(int(r.mask[0, 0]) == r.index % 32 for r in results)
    assert indices[-1] == n - 1  # the newest frame is always shown
    assert max(lags) < 0.4  # bounded by a couple of model calls, not by the backlog


def test_same_camera_without_dropping_falls_behind():
    # The contrast that makes the test above meaningful: queueing every frame of a camera that
    # is 4x faster than the model makes the last frames wait for the whole backlog.
    n = 60
    pipe, results, lags = run_camera(n, live=False)
    assert pipe.stats.dropped == 0 and len(results) == n
    assert max(lags) > 0.4


def test_same_frames_as_file_source_are_all_kept():
    sink = CollectSink()
    source = FrameListSource(tagged_frames(20), live=False, interval=0.001)
    stats = no_draw_pipeline(FakePredictor(infer_s=0.005), source, [sink]).run()
    assert stats.dropped == 0 and [r.index for r in sink.results] == list(range(20))


@pytest.mark.parametrize("stage", ["read", "preprocess", "infer", "postprocess", "write"])
def test_error_in_any_stage_stops_pipeline_and_is_reported(stage, tmp_path):
    class BrokenSource(FrameListSource):
        def read(self):
            item = super().read()
            if item is not None and stage == "read" and self._index == 6:
                raise OSError("fake decode failure at frame 5")
            return item

    def sink(result):
        if stage == "write" and result.index == 5:
            raise ValueError("fake write failure at frame 5")

    writer = VideoWriterSink(tmp_path / "partial.mp4", fps=30)
    closed = []
    writer_close = writer.close
    writer.close = lambda: (closed.append(True), writer_close())
    predictor = FakePredictor(fail_at={stage: 5})
    pipe = no_draw_pipeline(predictor, BrokenSource(tagged_frames(400)), [writer, sink])
    with pytest.raises(PipelineError) as info:
        pipe.run()
    assert_threads_ended(pipe)
    err = info.value
    assert err.stage == stage and err.frames[0] <= 5 <= err.frames[1]  # infer: a batch
    assert ("frame 5" in str(err)) or ("frames " in str(err) and stage == "infer")
    assert "fake" in str(err) and isinstance(err.__cause__, (ValueError, OSError))
    assert pipe.error is err and pipe.stopped
    assert closed, "sinks must be closed when the pipeline fails"
    assert pipe.stats.frames_in < 400  # the reader stopped too


def test_stop_mid_video(tmp_path):
    out = tmp_path / "stopped.mp4"
    writer = VideoWriterSink(out, fps=30)
    got_frames = threading.Event()
    pipe = no_draw_pipeline(FakePredictor(infer_s=0.005), FrameListSource(tagged_frames(500)), [])

    def sink(result):
        if result.index >= 5:
            got_frames.set()

    pipe.sinks = [writer, sink]
    pipe.start()
    assert got_frames.wait(JOIN_TIMEOUT)
    pipe.stop()
    assert_threads_ended(pipe)
    stats = pipe.wait(0)  # a cancelled run is not an error
    assert pipe.stopped and pipe.error is None
    assert 5 < stats.frames_out < 500
    cap = cv2.VideoCapture(str(out))  # the partial video is finalised and readable
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == writer.frames == stats.frames_out
    cap.release()


def test_stop_while_stages_are_blocked_on_full_queues():
    release = threading.Event()

    def slow_sink(result):
        release.wait(0.5)  # the writer is stuck; every queue behind it fills up

    pipe = no_draw_pipeline(FakePredictor(), FrameListSource(tagged_frames(200)), [slow_sink])
    pipe.start()
    time.sleep(0.2)
    pipe.stop()
    release.set()
    assert_threads_ended(pipe)
    assert pipe.stats.frames_out < 200


def test_bad_arguments_and_sources(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.mp4"):
        VideoFileSource(tmp_path / "missing.mp4")
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    with pytest.raises(ValueError, match="bad.mp4"):
        VideoFileSource(bad)
    with pytest.raises(ValueError, match="batch_size"):
        VideoPipeline(FakePredictor(), FrameListSource([]), batch_size=0)
    gray = FrameListSource([np.zeros((8, 8), np.uint8)])
    with pytest.raises(PipelineError, match=r"expected \(H, W, 3\)"):
        no_draw_pipeline(FakePredictor(), gray, []).run()
