"""Multi-threaded video pipeline for the sorting line: read -> preprocess -> infer -> draw -> write.

FastSegFormer (Cai et al., Computers and Electronics in Agriculture 217, 108604, 2024) reports
45-55 FPS end to end on video with FP16 and multi-threading. This module is that pipeline,
for any backend the shared `utils.inference.predictor.Predictor` wraps (PyTorch, ONNX Runtime,
OpenVINO; utils.deploy.backends):

    source --q--> preprocess --q--> infer (batches) --q--> postprocess/draw --q--> sinks
    (read/decode)  (letterbox)       (the model)           (mask, overlay, grading)  (write/show)

Each stage is one thread joined to the next by a bounded queue, so decoding, drawing and
encoding run while the model computes (OpenCV, PyTorch and ONNX Runtime release the GIL).

- Order: every stage is a single thread reading a FIFO queue, so results leave in source order.
- File sources (`live=False`) never drop a frame: a full queue blocks the stage before it.
- Live sources (`live=True`, cameras) drop the oldest waiting frame instead of queueing, in
  front of the model, so the output follows the camera instead of lagging behind it.
- Batching is opportunistic: the inference stage takes one frame, then whatever else is already
  waiting, up to `batch_size`; it never waits to fill a batch.
- An exception in any stage (or a sink) stops every stage; `wait()`/`run()` raise
  `PipelineError` naming the stage and frame, with the original exception as its cause.
- `stop()` cancels from any thread; every blocking call polls the stop flag, so threads end
  within a fraction of a second and `join(timeout)` reports whether they did. (A source stuck
  inside its own `read()`, e.g. a hung camera driver, ends when that call returns; the threads
  are daemons, so they never keep the process alive.)
- `stats` gives end-to-end FPS, frames in / out / dropped, the mean batch size and the mean
  per-frame work time of each stage (time spent computing, not waiting on queues).

Usage:
    from utils.line.video_pipeline import VideoPipeline, VideoFileSource, VideoWriterSink
    pipe = VideoPipeline(predictor, VideoFileSource("line.mp4"), [VideoWriterSink("out.mp4")])
    stats = pipe.run()
    print(stats.summary())

Benchmark (end-to-end FPS vs model-only FPS of the same predictor): utils/line/bench.py.
"""

from __future__ import annotations

import os
import queue
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from utils.data.preprocess import read_image
from utils.inference.visualize import overlay

STAGES = ("read", "preprocess", "infer", "postprocess", "write")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
_POLL_S = 0.05  # how often a blocked stage looks at the stop flag
_END = object()  # end-of-stream marker passed down the queues


class PipelineError(RuntimeError):
    """A stage failed; `.stage` names it, `__cause__` is the original exception."""

    def __init__(
        self, stage: str, frames: tuple[int, int] | None, error: BaseException, trace: str
    ) -> None:
        where = ""
        if frames is not None:
            where = (
                f" on frame {frames[0]}"
                if frames[0] == frames[1]
                else f" on frames {frames[0]}-{frames[1]}"
            )
        super().__init__(f"stage '{stage}' failed{where}: {type(error).__name__}: {error}")
        self.stage = stage
        self.index = None if frames is None else frames[0]  # first frame of the failing batch
        self.frames = frames  # (first, last) frame indices being processed, None if unknown
        self.trace = trace


# ---------------------------------------------------------------------------- sources
class FrameSource(Protocol):
    """What the read stage pulls from: `read()` -> (name, RGB frame) or None at the end."""

    live: bool
    fps: float | None

    def read(self) -> tuple[str, np.ndarray] | None: ...

    def close(self) -> None: ...


class VideoFileSource:
    """Frames of a video file (never dropped). Also opens image sequences OpenCV understands."""

    live = False

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"video not found: {self.path}")
        self._cap = cv2.VideoCapture(str(self.path))
        if not self._cap.isOpened():
            raise ValueError(f"cannot open video {self.path}: expected a file OpenCV can decode")
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and fps > 0 else None
        count = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT))
        self.frame_count = count if count > 0 else None
        self._index = 0

    def read(self) -> tuple[str, np.ndarray] | None:
        ok, frame = self._cap.read()
        if not ok:
            return None
        name = f"{self.path.stem}_{self._index:06d}"
        self._index += 1
        return name, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)

    def close(self) -> None:
        self._cap.release()


class CameraSource:
    """A live camera (device index) or stream URL: stale frames are dropped, never queued."""

    live = True

    def __init__(self, device: int | str = 0) -> None:
        self.device = device
        self._cap = cv2.VideoCapture(device)
        if not self._cap.isOpened():
            raise ValueError(
                f"cannot open camera {device!r}: check the device index (0, 1, ...) or stream URL"
            )
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and fps > 0 else None
        self._index = 0

    def read(self) -> tuple[str, np.ndarray] | None:
        ok, frame = self._cap.read()
        if not ok:
            return None  # camera unplugged or stream ended
        self._index += 1
        return f"camera_{self._index - 1:06d}", cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)

    def close(self) -> None:
        self._cap.release()


class FrameListSource:
    """Frames from any iterable of RGB arrays or (name, RGB array) pairs.

    `interval` (seconds) paces the frames like a camera would; with `live=True` this is how
    the tests simulate a camera that is faster than the model.
    """

    def __init__(
        self,
        frames: Iterable[np.ndarray | tuple[str, np.ndarray]],
        live: bool = False,
        fps: float | None = None,
        interval: float = 0.0,
    ) -> None:
        self._frames: Iterator = iter(frames)
        self.live = live
        self.fps = fps
        self.interval = interval
        self._index = 0
        self._next_t = time.perf_counter()

    def read(self) -> tuple[str, np.ndarray] | None:
        if self.interval > 0:
            self._next_t += self.interval
            time.sleep(max(0.0, self._next_t - time.perf_counter()))
        item = next(self._frames, None)
        if item is None:
            return None
        name, frame = item if isinstance(item, tuple) else (f"frame_{self._index:06d}", item)
        self._index += 1
        return name, frame

    def close(self) -> None:
        pass


def image_folder_source(folder: str | Path) -> FrameListSource:
    """The photos of a folder (sorted by name) as a file source; names are the file stems."""
    folder = Path(folder)
    if not folder.is_dir():
        raise NotADirectoryError(f"image folder not found: {folder}")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    return FrameListSource(((p.stem, read_image(p)) for p in paths), live=False)


# ---------------------------------------------------------------------------- results and sinks
@dataclass
class FrameResult:
    """One processed frame, handed to every sink in source order."""

    index: int  # position in the source; gaps where a live source dropped frames
    name: str  # frame or file name (for saving)
    image: np.ndarray  # (H, W, 3) uint8 RGB, the original frame
    mask: np.ndarray  # (H, W) uint8 class ids
    overlay: np.ndarray | None  # (H, W, 3) uint8 RGB drawn result (None when not drawing)
    extra: Any = None  # what the `annotate` hook returned (e.g. the grading report)
    latency: float = 0.0  # seconds from reading the frame to the end of postprocess


class VideoWriterSink:
    """Write overlays (or the originals where no overlay is drawn) to a video file (mp4v).

    The video is written beside `path` under a temporary name and moved into place when the
    sink is closed (also after a stop or an error: what was written is a valid, shorter video).
    """

    def __init__(self, path: str | Path, fps: float = 30.0, fourcc: str = "mp4v") -> None:
        self.path = Path(path)
        self.fps = fps
        self.fourcc = fourcc
        self._writer: cv2.VideoWriter | None = None
        self._tmp = self.path.with_name(f".{self.path.stem}.{os.getpid()}.tmp{self.path.suffix}")
        self.frames = 0

    def __call__(self, result: FrameResult) -> None:
        frame = result.overlay if result.overlay is not None else result.image
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            h, w = frame.shape[:2]
            code = cv2.VideoWriter_fourcc(*self.fourcc)
            self._writer = cv2.VideoWriter(str(self._tmp), code, self.fps, (w, h))
            if not self._writer.isOpened():
                self._tmp.unlink(missing_ok=True)
                raise OSError(f"cannot write video {self.path} with codec {self.fourcc!r}")
        self._writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        self.frames += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None
            os.replace(self._tmp, self.path)


class CollectSink:
    """Keep every result in memory (tests, short clips)."""

    def __init__(self) -> None:
        self.results: list[FrameResult] = []

    def __call__(self, result: FrameResult) -> None:
        self.results.append(result)


# ---------------------------------------------------------------------------- statistics
@dataclass
class PipelineStats:
    """Counts and timings of one run."""

    frames_in: int = 0  # frames read from the source
    frames_out: int = 0  # frames delivered to the sinks
    dropped: int = 0  # live frames discarded as stale
    batches: int = 0
    elapsed: float = 0.0  # seconds from the first frame read to the last delivered
    stage_time: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    stage_count: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STAGES, 0))
    latency_sum: float = 0.0
    latency_max: float = 0.0

    @property
    def fps(self) -> float:
        """End-to-end throughput: frames delivered per second of wall time."""
        return self.frames_out / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def mean_batch(self) -> float:
        return self.stage_count["infer"] / self.batches if self.batches else 0.0

    @property
    def stage_ms(self) -> dict[str, float]:
        """Mean work time per frame of each stage, in milliseconds (queue waits excluded)."""
        return {
            s: 1000.0 * self.stage_time[s] / self.stage_count[s] if self.stage_count[s] else 0.0
            for s in STAGES
        }

    @property
    def infer_busy(self) -> float:
        """Fraction of the wall time the inference stage spent computing (1.0: the model never
        waited for decoding, drawing or encoding)."""
        return self.stage_time["infer"] / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def latency_ms(self) -> float:
        """Mean time from reading a frame to its result being ready, in milliseconds."""
        return 1000.0 * self.latency_sum / self.frames_out if self.frames_out else 0.0

    def summary(self) -> str:
        stages = "  ".join(f"{s} {ms:.1f}" for s, ms in self.stage_ms.items())
        return (
            f"{self.frames_out} frames out of {self.frames_in} read ({self.dropped} dropped) in "
            f"{self.elapsed:.2f} s: {self.fps:.1f} FPS end to end; model busy "
            f"{100 * self.infer_busy:.0f}% of the time; mean batch "
            f"{self.mean_batch:.2f}; latency {self.latency_ms:.0f} ms mean, "
            f"{1000 * self.latency_max:.0f} ms max; per-frame stage ms: {stages}"
        )


@dataclass
class _Packet:
    index: int
    name: str
    image: np.ndarray  # (H, W, 3) uint8 RGB
    t_read: float
    x: np.ndarray | None = None  # (3, h, w) float32 network input
    box: Any = None  # utils.data.preprocess.Letterbox
    logits: np.ndarray | None = None  # (K, h, w) float32


def default_draw(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The project's standard overlay (utils.inference.visualize.overlay, "blend")."""
    return overlay(image, mask, mode="blend")


# ---------------------------------------------------------------------------- the pipeline
class VideoPipeline:
    """Run a predictor over a frame source in five threaded stages (see the module docstring).

    predictor: has `preprocess(rgb) -> (x (3,h,w), box)`, `infer((B,3,h,w)) -> (B,K,h,w)`,
        `postprocess((K,h,w), box) -> (H,W) uint8` (`utils.inference.predictor.Predictor`).
    sinks: callables taking a `FrameResult`, run in order in the write stage; a sink's
        `close()` (if any) is called when the pipeline ends, however it ends.
    draw: `(image, mask) -> overlay` or None to skip drawing.
    annotate: optional `(image, mask, overlay) -> Any` run after drawing (grading); it may draw
        on the overlay in place; its return value is `FrameResult.extra`.
    max_frames: read at most this many frames, then finish normally.
    """

    def __init__(
        self,
        predictor: Any,
        source: FrameSource,
        sinks: Sequence[Callable[[FrameResult], Any]] = (),
        *,
        batch_size: int = 4,
        queue_size: int = 8,
        draw: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = default_draw,
        annotate: Callable[[np.ndarray, np.ndarray, np.ndarray | None], Any] | None = None,
        max_frames: int | None = None,
    ) -> None:
        if batch_size < 1 or queue_size < 1:
            raise ValueError(
                f"batch_size and queue_size must be >= 1, got {batch_size}, {queue_size}"
            )
        self.predictor = predictor
        self.source = source
        self.sinks = list(sinks)
        self.batch_size = batch_size
        self.draw = draw
        self.annotate = annotate
        self.max_frames = max_frames
        self.live = bool(getattr(source, "live", False))
        # Live: at most one frame waits in front of each pre-model stage (the freshest one).
        pre = 1 if self.live else queue_size
        self._queues = {
            "preprocess": queue.Queue(maxsize=pre),
            "infer": queue.Queue(maxsize=pre if self.live else max(queue_size, 2 * batch_size)),
            "postprocess": queue.Queue(maxsize=queue_size),
            "write": queue.Queue(maxsize=queue_size),
        }
        self.stats = PipelineStats()
        self.error: PipelineError | None = None
        self._stop = threading.Event()
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._t_first: float | None = None
        self._current: dict[str, tuple[int, int] | None] = dict.fromkeys(STAGES)

    # -- control
    def start(self) -> VideoPipeline:
        """Start the five stage threads; returns at once."""
        if self._threads:
            raise RuntimeError("this pipeline was already started; build a new one to run again")
        targets = {
            "read": self._read_stage,
            "preprocess": self._preprocess_stage,
            "infer": self._infer_stage,
            "postprocess": self._postprocess_stage,
            "write": self._write_stage,
        }
        for stage, target in targets.items():
            t = threading.Thread(target=self._guard, args=(stage, target), name=f"pipe-{stage}")
            t.daemon = True  # a sink stuck in user code must not keep the process alive
            self._threads.append(t)
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        """Ask every stage to end as soon as possible (safe from any thread, returns at once)."""
        self._stop.set()

    @property
    def running(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    @property
    def stopped(self) -> bool:
        """True when the run was cancelled or failed rather than reaching the end of the source."""
        return self._stop.is_set() and not self._done.is_set()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the threads to end; True if they all did within `timeout` seconds."""
        deadline = None if timeout is None else time.perf_counter() + timeout
        for t in self._threads:
            left = None if deadline is None else max(0.0, deadline - time.perf_counter())
            t.join(left)
        return not self.running

    def wait(self, timeout: float | None = None) -> PipelineStats:
        """Join the threads; raise the first stage error as PipelineError; return the stats."""
        if not self.join(timeout):
            raise TimeoutError(f"pipeline threads still running after {timeout} s")
        if self.error is not None:
            raise self.error
        return self.stats

    def run(self) -> PipelineStats:
        """start() + wait(); Ctrl-C stops the pipeline cleanly before re-raising."""
        self.start()
        try:
            while self.running:
                self.join(0.2)
        except KeyboardInterrupt:
            self.stop()
            self.join(5.0)
            raise
        return self.wait()

    def __enter__(self) -> VideoPipeline:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self.join(5.0)

    # -- plumbing
    def _guard(self, stage: str, target: Callable[[], None]) -> None:
        try:
            target()
        except BaseException as e:  # noqa: BLE001 - any failure must stop the other stages
            with self._lock:
                if self.error is None:
                    err = PipelineError(stage, self._current[stage], e, traceback.format_exc())
                    err.__cause__ = e
                    self.error = err
            self._stop.set()

    def _put(self, q: queue.Queue, item: Any) -> bool:
        """Blocking put that gives up when the pipeline is stopped."""
        while not self._stop.is_set():
            try:
                q.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def _put_latest(self, q: queue.Queue, item: Any) -> None:
        """Live put: never blocks; if the queue is full, the oldest frame is dropped."""
        while True:
            try:
                q.put_nowait(item)
                return
            except queue.Full:
                try:
                    old = q.get_nowait()
                except queue.Empty:
                    continue
                if old is _END:  # never happens (END is last), but never lose it
                    q.put_nowait(old)
                    return
                with self._lock:
                    self.stats.dropped += 1

    def _forward(self, q: queue.Queue, item: Any) -> bool:
        """Hand a frame to a pre-model stage: live sources drop stale frames, files block."""
        if self.live and item is not _END:
            self._put_latest(q, item)
            return True
        return self._put(q, item)

    def _get(self, q: queue.Queue) -> Any:
        """Blocking get; None when the pipeline is stopped."""
        while not self._stop.is_set():
            try:
                return q.get(timeout=_POLL_S)
            except queue.Empty:
                continue
        return None

    def _timed(self, stage: str, seconds: float, frames: int = 1) -> None:
        with self._lock:
            self.stats.stage_time[stage] += seconds
            self.stats.stage_count[stage] += frames

    # -- stages
    def _read_stage(self) -> None:
        q = self._queues["preprocess"]
        index = 0
        try:
            while not self._stop.is_set():
                if self.max_frames is not None and index >= self.max_frames:
                    break  # treated as the end of the source: the frames read are all finished
                t0 = time.perf_counter()
                self._current["read"] = (index, index)
                item = self.source.read()
                if item is None:
                    break
                t1 = time.perf_counter()
                if self._t_first is None:
                    self._t_first = t0
                self._timed("read", t1 - t0)
                with self._lock:
                    self.stats.frames_in += 1
                name, frame = item
                if frame is None or frame.ndim != 3 or frame.shape[2] != 3:
                    shape = None if frame is None else frame.shape
                    raise ValueError(
                        f"source gave frame {name!r} of shape {shape}, expected (H, W, 3)"
                    )
                if not self._forward(q, _Packet(index, name, frame, t1)):
                    return
                index += 1
            self._current["read"] = None
            self._put(q, _END)
        finally:
            self.source.close()

    def _preprocess_stage(self) -> None:
        q_in, q_out = self._queues["preprocess"], self._queues["infer"]
        while (p := self._get(q_in)) is not None:
            if p is _END:
                self._put(q_out, _END)
                return
            self._current["preprocess"] = (p.index, p.index)
            t0 = time.perf_counter()
            p.x, p.box = self.predictor.preprocess(p.image)  # (3, h, w) float32
            self._timed("preprocess", time.perf_counter() - t0)
            if not self._forward(q_out, p):
                return

    def _infer_stage(self) -> None:
        q_in, q_out = self._queues["infer"], self._queues["postprocess"]
        while (first := self._get(q_in)) is not None:
            if first is _END:
                self._put(q_out, _END)
                return
            batch, end = [first], False
            while len(batch) < self.batch_size:  # take what is already waiting, never wait
                try:
                    item = q_in.get_nowait()
                except queue.Empty:
                    break
                if item is _END:
                    end = True
                    break
                batch.append(item)
            self._current["infer"] = (batch[0].index, batch[-1].index)
            t0 = time.perf_counter()
            logits = self.predictor.infer(np.stack([p.x for p in batch]))  # (B, K, h, w)
            self._timed("infer", time.perf_counter() - t0, len(batch))
            with self._lock:
                self.stats.batches += 1
            if len(logits) != len(batch):
                raise ValueError(
                    f"predictor.infer returned {len(logits)} maps for {len(batch)} frames"
                )
            for p, lg in zip(batch, logits, strict=True):
                p.logits, p.x = lg, None  # free the input early
                if not self._put(q_out, p):
                    return
            if end:
                self._put(q_out, _END)
                return

    def _postprocess_stage(self) -> None:
        q_in, q_out = self._queues["postprocess"], self._queues["write"]
        while (p := self._get(q_in)) is not None:
            if p is _END:
                self._put(q_out, _END)
                return
            self._current["postprocess"] = (p.index, p.index)
            t0 = time.perf_counter()
            mask = self.predictor.postprocess(p.logits, p.box)  # (H, W) uint8
            drawn = self.draw(p.image, mask) if self.draw is not None else None
            extra = self.annotate(p.image, mask, drawn) if self.annotate is not None else None
            t1 = time.perf_counter()
            self._timed("postprocess", t1 - t0)
            result = FrameResult(p.index, p.name, p.image, mask, drawn, extra, t1 - p.t_read)
            if not self._put(q_out, result):
                return

    def _write_stage(self) -> None:
        q_in = self._queues["write"]
        try:
            while (r := self._get(q_in)) is not None:
                if r is _END:
                    self._done.set()
                    return
                self._current["write"] = (r.index, r.index)
                t0 = time.perf_counter()
                for sink in self.sinks:
                    sink(r)
                t1 = time.perf_counter()
                self._timed("write", t1 - t0)
                with self._lock:
                    self.stats.frames_out += 1
                    self.stats.latency_sum += r.latency
                    self.stats.latency_max = max(self.stats.latency_max, r.latency)
                    if self._t_first is not None:
                        self.stats.elapsed = t1 - self._t_first
        finally:
            for sink in self.sinks:
                close = getattr(sink, "close", None)
                if close is not None:
                    close()
