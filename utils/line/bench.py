"""End-to-end FPS of the sorting line's video pipeline vs model-only FPS of the same predictor.

FastSegFormer (Cai et al., Computers and Electronics in Agriculture 217, 108604, 2024) reports
45-55 FPS end to end on video with FP16 and multi-threading. This benchmark runs
`utils.line.video_pipeline.VideoPipeline` (decode -> preprocess -> infer -> mask + overlay
(+ grading) -> MP4 encode) on a video, alternating with `predictor.infer` alone on the same
pre-processed frames, with the same runtime threads; medians are reported. See
docs/production_line.md.

    python -m utils.line.bench --model fastsegformer_p --threads 1 --batch-size 1
    python -m utils.line.bench --checkpoint model_data/p_int8.xml --video line.mp4  # no torch
    python -m utils.line.bench --checkpoint best.pth --backend ov-int8 --threads 2
    (--backend auto, the default, runs the fastest backend on this CPU that keeps accuracy)
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from utils.cli import parse_config
from utils.deploy.backends import BACKEND_CHOICES
from utils.inference.open_model import open_model, torch_side
from utils.line.conveyor import write_video
from utils.line.grading import Grader
from utils.line.video_pipeline import PipelineStats, VideoFileSource, VideoPipeline, VideoWriterSink


@dataclass
class Config:
    model: str = "fastsegformer_p"  # registry name, built with random weights (speed only)
    checkpoint: str | None = None  # or a model file: .pth checkpoint, .onnx or OpenVINO .xml
    backend: Literal[tuple(BACKEND_CHOICES)] = "auto"  # runtime for --model / a .pth
    calib_data: str = ""  # INT8: VOC root whose train split calibrates (empty: generated oranges)
    deploy_cache: str = "logs/deploy_cache"  # converted models are kept here
    video: str | None = None  # default: a conveyor video rendered to a temporary folder
    seconds: float = 4.0  # conveyor video length when rendering one
    threads: int = 1  # the model runtime's CPU threads
    batch_size: int = 1  # the pipeline's largest opportunistic batch
    grade: bool = True  # grade every fruit and draw the grades (as on the line)
    repeats: int = 2  # alternate model-only / pipeline runs this many times; medians reported
    out: str | None = None  # keep the annotated video here


def benchmark(cfg: Config) -> dict[str, float]:
    """End-to-end FPS of the pipeline vs model-only FPS of the same predictor, same threads.

    Model-only: `predictor.infer` on pre-processed frames of the same video, batch 1 and the
    pipeline's batch size, after a warm-up. End to end: decode -> preprocess -> infer ->
    mask + overlay (+ grading) -> MP4 encode through `VideoPipeline`.
    """
    options = {
        "calib_data": cfg.calib_data or None,
        "threads": cfg.threads,
        "cache_dir": cfg.deploy_cache or None,
        "log": print,
    }
    if cfg.checkpoint:
        predictor = open_model(cfg.checkpoint, backend=cfg.backend, **options)
    else:
        predictor = torch_side().ModelPredictor.from_registry(cfg.model)
        predictor.use_backend(cfg.backend, **options)
    tmp = Path(tempfile.mkdtemp(prefix="pipeline_bench_"))
    video = Path(cfg.video) if cfg.video else None
    if video is None:
        video = write_video(tmp / "line.mp4", seconds=cfg.seconds, fps=30, seed=0)
    source = VideoFileSource(video)
    inputs = []
    while (item := source.read()) is not None:
        inputs.append(predictor.preprocess(item[1])[0])  # (3, h, w)
    source.close()
    annotate = None
    if cfg.grade:
        annotate = Grader(class_names=predictor.class_names)

    def model_only(batch: int) -> float:
        # In a worker thread like the pipeline's inference stage: under CPU contention an
        # OpenMP team started from the main thread can spin far slower (docs/production_line.md).
        result: list[float] = []

        def loop() -> None:
            for i in range(0, min(len(inputs), 3 * batch), batch):  # warm-up
                predictor.infer(np.stack(inputs[i : i + batch]))
            t0 = time.perf_counter()
            n = len(inputs) - len(inputs) % batch
            for i in range(0, n, batch):
                predictor.infer(np.stack(inputs[i : i + batch]))  # (B, 3, h, w)
            result.append(n / (time.perf_counter() - t0))

        worker = threading.Thread(target=loop, name="bench-model")
        worker.start()
        worker.join()
        return result[0]

    def end_to_end() -> PipelineStats:
        out = Path(cfg.out) if cfg.out else tmp / "out.mp4"
        sink = VideoWriterSink(out, fps=source.fps or 30.0)
        pipe = VideoPipeline(
            predictor, VideoFileSource(video), [sink], batch_size=cfg.batch_size, annotate=annotate
        )
        return pipe.run()

    runs: dict[str, list[float]] = {"model_b1": [], "model_bN": [], "e2e": []}
    last: PipelineStats | None = None
    try:
        for _ in range(cfg.repeats):
            runs["model_b1"].append(model_only(1))
            if cfg.batch_size > 1:
                runs["model_bN"].append(model_only(cfg.batch_size))
            last = end_to_end()
            runs["e2e"].append(last.fps)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    med = {k: float(np.median(v)) for k, v in runs.items() if v}
    print(
        f"backend: {predictor.describe()}; threads {cfg.threads}; video {video} "
        f"({len(inputs)} frames); batch {cfg.batch_size}; grading {cfg.grade}"
    )
    print(
        f"model only, batch 1: {med['model_b1']:.2f} FPS (runs: "
        f"{', '.join(f'{v:.2f}' for v in runs['model_b1'])})"
    )
    if "model_bN" in med:
        print(
            f"model only, batch {cfg.batch_size}: {med['model_bN']:.2f} FPS (end to end = "
            f"{100 * med['e2e'] / med['model_bN']:.0f}% of it)"
        )
    print(
        f"end to end: {med['e2e']:.2f} FPS (runs: {', '.join(f'{v:.2f}' for v in runs['e2e'])})"
        f" = {100 * med['e2e'] / med['model_b1']:.0f}% of model-only batch 1"
    )
    if last is not None:
        print(f"last pipeline run: {last.summary()}")
    return med


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m utils.line.bench [--threads 1 --batch-size 1 ...]`: run the benchmark."""
    renamed = {"--onnx": "--checkpoint", "--openvino": "--checkpoint"}
    benchmark(parse_config(Config, argv, description=__doc__, renamed=renamed))


if __name__ == "__main__":
    main()
