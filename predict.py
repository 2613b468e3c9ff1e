"""Predict navel-orange surface defects on photos, folders, videos and cameras; export to ONNX.

FastSegFormer (Cai et al., Computers and Electronics in Agriculture 217, 108604, 2024) finds
sunburn, ulcer and wind scarring on navel oranges. This script runs a trained model
(--checkpoint: a project checkpoint rebuilt from the file alone, the original's published
weights with --model, or an exported .onnx / OpenVINO .xml, which need no torch) and, for
every photo or frame, prints and writes to CSV the pixel count and area share of each defect
class, of the whole image and of the fruit. See docs/inference.md.

    # one or more photos -> logs/img_out/<name>.png overlays (with a colour legend) +
    # logs/img_out/defect_areas.csv
    python predict.py --checkpoint logs/run/best.pth --inputs a.jpg b.jpg
    # a folder in, a folder out (unreadable files are reported and skipped; exit status 1);
    # a folder among --inputs in image mode is read the same way
    python predict.py --mode folder --checkpoint logs/run/best.pth --inputs photos/ --out out/
    # output style like the original's mix_type: blend | mask | cutout
    python predict.py --checkpoint best.pth --inputs a.jpg --style cutout
    # a video -> annotated video with a running FPS overlay; a camera by index
    python predict.py --mode video --checkpoint best.pth --inputs line.mp4 --out out/
    python predict.py --mode camera --checkpoint best.pth --camera 0 --max-frames 300
    # timed loop on one photo (pre-process + inference + post-process)
    python predict.py --mode fps --checkpoint best.pth --inputs a.jpg --fps-runs 100
    # the runtime: --backend auto (default: the fastest on this CPU that keeps accuracy, named
    # in the output), torch, ort-fp32, ort-int8, ov-fp32, ov-int8 (INT8 calibrated on
    # --calib-data's train split, or on generated oranges without one)
    python predict.py --checkpoint best.pth --inputs a.jpg --backend ov-int8
    # ONNX: export (checked against PyTorch with ONNX Runtime), then predict with it
    python predict.py --mode export_onnx --checkpoint best.pth --onnx-out model_data/p.onnx
    python predict.py --checkpoint model_data/p.onnx --inputs a.jpg
    # OpenVINO IR, float32 or INT8 (NNCF), then predict with it (no torch needed)
    python predict.py --mode export_openvino --checkpoint best.pth --ov-out model_data/p.xml
    python predict.py --mode export_openvino --checkpoint best.pth --ov-int8 \
        --calib-data data/Orange_Navel_1.5k --ov-out model_data/p_int8.xml
    python predict.py --checkpoint model_data/p_int8.xml --inputs a.jpg
    # the original's published weights
    python predict.py --checkpoint model_data/fastsegformer_p.pth --model fastsegformer_p ...
    # drafts to correct in labelme (one JSON per photo) or COCO (coco, coco-rle), and the
    # photos ranked by the model's uncertainty (OUT/ranking.csv); docs/data.md
    python predict.py --mode prelabel --checkpoint best.pth --inputs photos/ --format labelme \
        --min-area 20 --rank --out drafts/
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from utils.cli import parse_config
from utils.data.labels import save_index_mask
from utils.data.preprocess import read_image
from utils.deploy.backends import BACKEND_CHOICES, EXPORTERS
from utils.fileio import describe_removed, remove_stale_temp_files
from utils.inference.open_model import open_model
from utils.inference.predictor import Predictor
from utils.inference.prelabel import DRAFT_FORMATS, UNCERTAINTY, prelabel, summary
from utils.inference.visualize import (
    OVERLAY_MODES,
    area_row,
    defect_areas,
    draw_text,
    format_areas,
    fruit_mask,
    overlay,
    save_rgb,
    write_area_csv,
)
from utils.line.video_pipeline import (
    CameraSource,
    VideoFileSource,
    VideoPipeline,
    VideoWriterSink,
)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
RENAMED = {"--onnx": "--checkpoint", "--openvino": "--checkpoint"}  # old flag -> new


@dataclass
class Config:
    # --- what to do (MODES at the end of the file: one function per mode)
    mode: Literal[tuple(MODES)] = "image"  # one of MODES (image ... export_openvino)
    inputs: tuple[str, ...] = ()  # photo paths, a folder, or a video file
    out: str = "logs/img_out"  # output folder
    # --- the model file: .pth checkpoint, .onnx or OpenVINO .xml (utils.inference.open_model)
    checkpoint: str | None = None  # model file: .pth (or the original's weights), .onnx, .xml
    model: str | None = None  # registry model name (nets.MODELS), for the original's weights
    num_classes: int | None = None  # classes (None: the checkpoint's, else 4)
    trust_checkpoint: bool = False  # unpickle --checkpoint in full: trusted files only
    backend: Literal[tuple(BACKEND_CHOICES)] = "auto"  # a .pth's runtime (auto: the fastest)
    calib_data: str = ""  # VOC root whose train split calibrates INT8 (empty: generated oranges)
    calib_images: int = 64  # INT8 calibration photos (at most)
    threads: int = 0  # CPU runtime threads (0: all)
    deploy_cache: str = "logs/deploy_cache"  # converted models are kept here
    input_size: int | None = None  # network input side (None: the model's)
    device: str = "cpu"  # cpu, cuda or cuda:N
    half: bool = False  # fp16 weights and activations (CUDA)
    batch_size: int = 4  # photos per forward pass (folder mode)
    # --- drawing and the defect-area report
    style: Literal[OVERLAY_MODES] = "blend"  # blend into the photo, colour mask, or cutout
    alpha: float = 0.5  # colour weight of the blend style
    legend: bool = True  # draw the class colours and names on the overlays (--no-legend)
    save_masks: bool = False  # also write class-id PNGs to OUT/masks/
    areas_csv: str = "defect_areas.csv"  # defect-area CSV name inside OUT
    fruit_min_saturation: int = 60  # HSV saturation (0-255) above which a pixel is peel
    quiet: bool = False  # do not print per-image area reports
    # --- video / camera
    camera: str = "0"  # camera index or stream URL
    max_frames: int | None = None  # stop after this many frames (video/camera)
    video_fps: float | None = None  # output video frame rate (None: the source's)
    # --- fps mode
    fps_runs: int = 100  # timed iterations
    fps_warmup: int = 10  # untimed warm-up iterations
    # --- export_onnx mode
    onnx_out: str = "model_data/model.onnx"  # ONNX file to write
    opset: int = 18  # ONNX opset (the dynamo exporter needs >= 18)
    dynamic_batch: bool = False  # export a variable batch axis
    onnx_half: bool = False  # export fp16 weights (fp32 I/O)
    exporter: Literal[EXPORTERS] = "auto"  # torch.onnx exporter
    # --- export_openvino mode
    ov_out: str = "model_data/model.xml"  # OpenVINO IR to write
    ov_int8: bool = False  # quantise the IR to INT8 (NNCF, --calib-data)
    # --- prelabel mode: drafts for a person to correct, most uncertain first (docs/data.md)
    format: Literal[DRAFT_FORMATS] = "labelme"  # labelme (JSON per photo), coco, coco-rle
    min_area: int = 20  # drafts leave out regions and holes under this many pixels
    tolerance: float = 0.0  # polygon simplification in pixels (0: the exact outline)
    rank: bool = False  # also write OUT/ranking.csv, the most uncertain photos first
    rank_by: Literal[tuple(UNCERTAINTY)] = "entropy"  # uncertainty measure of the ranking
    image_data: bool = False  # embed each photo in its labelme file


# ---------------------------------------------------------------------------- helpers
def build_predictor(cfg: Config) -> Predictor:
    """The predictor of --checkpoint (an export mode keeps the PyTorch model as it is)."""
    if not cfg.checkpoint:
        raise ValueError(
            "no model: pass --checkpoint PATH (a .pth checkpoint, with --model NAME for the "
            "original's weights; an .onnx file; or an OpenVINO .xml)"
        )
    exporting = cfg.mode in ("export_onnx", "export_openvino")
    predictor = open_model(
        cfg.checkpoint,
        backend="torch" if exporting else cfg.backend,
        model_name=cfg.model,
        num_classes=cfg.num_classes,
        input_size=cfg.input_size,
        device=cfg.device,
        half=cfg.half,
        threads=cfg.threads,
        trust=cfg.trust_checkpoint,
        calib_data=cfg.calib_data or None,
        calib_images=cfg.calib_images,
        cache_dir=cfg.deploy_cache or None,
        log=lambda text: print(text, file=sys.stderr),
    )
    if exporting and predictor.model is None:
        raise ValueError(
            f"{cfg.mode} needs a PyTorch checkpoint (.pth), not an exported file: {cfg.checkpoint}"
        )
    return predictor


class ImageReporter:
    """Draws each result, writes it, and collects the defect-area CSV rows."""

    def __init__(self, cfg: Config, predictor) -> None:
        self.cfg = cfg
        self.predictor = predictor
        self.out = Path(cfg.out)
        self.rows: list[dict] = []
        removed = remove_stale_temp_files(self.out) + remove_stale_temp_files(self.out / "masks")
        if removed:  # left by a run that was killed while writing
            print(describe_removed(removed))

    def areas(self, image: np.ndarray, mask: np.ndarray) -> dict:
        fruit = fruit_mask(image, mask, min_saturation=self.cfg.fruit_min_saturation)
        return defect_areas(mask, self.predictor.num_classes, fruit, self.predictor.class_names)

    def handle(self, name: str, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Overlay in the chosen style (with the legend), area report row; returns the drawn
        RGB image."""
        names = self.predictor.class_names if self.cfg.legend else None
        drawn = overlay(image, mask, self.cfg.style, self.cfg.alpha, class_names=names)
        areas = self.areas(image, mask)
        self.rows.append(area_row(name, areas))
        if not self.cfg.quiet:
            print(format_areas(name, areas))
        return drawn

    def save(self, stem: str, drawn: np.ndarray, mask: np.ndarray) -> None:
        save_rgb(self.out / f"{stem}.png", drawn)
        if self.cfg.save_masks:
            save_index_mask(self.out / "masks" / f"{stem}.png", mask)

    def write_csv(self, name: str | None = None) -> Path:
        path = write_area_csv(self.rows, self.out / (name or self.cfg.areas_csv))
        print(f"defect areas of {len(self.rows)} image(s) written to {path}")
        return path


def list_folder(folder: Path) -> list[Path]:
    if folder.is_file():
        raise ValueError(f"{folder} is a file, not a folder: photos go with --mode image")
    if not folder.is_dir():
        raise FileNotFoundError(f"input folder not found: {folder}")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"no photos ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    return files


def expand_inputs(inputs: Sequence[str]) -> list[Path]:
    """--inputs of image mode as photo paths: a folder stands for the photos in it (as with
    --mode folder); a path that does not exist stays, to be reported as not found."""
    paths: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            photos = list_folder(path)
            print(f"{path} is a folder: predicting its {len(photos)} photo(s) (as --mode folder)")
            paths += photos
        else:
            paths.append(path)
    return paths


# ---------------------------------------------------------------------------- modes
def predict_images(cfg: Config, predictor, paths: list[Path]) -> int:
    """Photos -> overlays + CSV; unreadable photos are reported and skipped. Returns #failed."""
    reporter = ImageReporter(cfg, predictor)
    failed: list[str] = []
    used: set[str] = set()  # output stems written so far
    for start in range(0, len(paths), max(1, cfg.batch_size)):
        chunk: list[tuple[Path, np.ndarray]] = []
        for path in paths[start : start + cfg.batch_size]:
            try:
                chunk.append((path, read_image(path)))
            except (OSError, ValueError) as e:  # FileNotFoundError is an OSError
                print(f"skipped {path}: {e}", file=sys.stderr)
                failed.append(str(path))
        if not chunk:
            continue
        masks = predictor.predict_batch([im for _, im in chunk], batch_size=cfg.batch_size)
        for (path, image), mask in zip(chunk, masks, strict=True):
            drawn = reporter.handle(path.name, image, mask)
            stem, n = path.stem, 1
            while stem in used:  # a.jpg and a.png, or the same name in two folders
                stem, n = f"{path.stem}_{n}", n + 1
            used.add(stem)
            reporter.save(stem, drawn, mask)
    reporter.write_csv()
    done = len(paths) - len(failed)
    print(f"{done} of {len(paths)} photo(s) predicted into {cfg.out}/")
    if failed:
        print(f"{len(failed)} failed: {', '.join(failed)}", file=sys.stderr)
    return len(failed)


def run_video(
    predictor,
    source: str | int,
    out_path: Path | None,
    draw: Callable[[str, np.ndarray, np.ndarray], np.ndarray],
    max_frames: int | None = None,
    fps: float | None = None,
) -> tuple[int, float]:
    """Video loop on the threaded pipeline (utils/line/video_pipeline.py): decode, pre-process,
    inference (opportunistic batches), post-process and draw (+ running FPS) / encode run in
    their own threads, in frame order; a camera drops stale frames instead of lagging.

    `source` is a video file, a camera index or a stream URL; `draw(name, frame, mask)` returns
    the RGB frame to write. Returns (frames, mean end-to-end FPS).
    """
    is_file = isinstance(source, str) and Path(source).is_file()
    src = VideoFileSource(source) if is_file else CameraSource(source)
    writer = VideoWriterSink(out_path, fps or src.fps or 25.0) if out_path is not None else None
    t_start = time.perf_counter()
    written = [0]

    def draw_frame(result) -> None:  # first sink, in the pipeline's write thread
        result.overlay = draw(f"frame_{result.index:06d}", result.image, result.mask)
        written[0] += 1
        draw_text(result.overlay, f"fps = {written[0] / (time.perf_counter() - t_start):.1f}")

    sinks = [draw_frame] + ([writer] if writer is not None else [])  # the pipeline closes them
    pipeline = VideoPipeline(predictor, src, sinks, draw=None, max_frames=max_frames)
    try:
        stats = pipeline.run()
    except KeyboardInterrupt:
        print("stopped by Ctrl-C")
        stats = pipeline.stats
    print(stats.summary())
    return stats.frames_out, stats.fps


def predict_video(cfg: Config, predictor, source: str | int, stem: str) -> int:
    reporter = ImageReporter(cfg, predictor)
    out_path = Path(cfg.out) / f"{stem}_pred.mp4"
    frames, fps = run_video(
        predictor, source, out_path, reporter.handle, cfg.max_frames, cfg.video_fps
    )
    if frames == 0:
        raise ValueError(f"no frame could be read from {source!r}")
    reporter.write_csv(f"{stem}_{cfg.areas_csv}")
    print(f"{frames} frames -> {out_path} ({fps:.1f} FPS end to end, {predictor.describe()})")
    return 0


def fps_loop(cfg: Config, predictor) -> dict[str, float]:
    """Time pre-process + inference + post-process on one photo, after a warm-up."""
    if not cfg.inputs:
        raise ValueError("fps mode needs a photo: --inputs PATH")
    image = read_image(cfg.inputs[0])
    x, box = predictor.preprocess(image)
    for _ in range(cfg.fps_warmup):
        predictor.postprocess(predictor.infer(x[None])[0], box)
    sync = getattr(predictor.backend, "synchronize", lambda: None)  # CUDA: wait for the work
    times, model_times = [], []
    for _ in range(cfg.fps_runs):
        t0 = time.perf_counter()
        x, box = predictor.preprocess(image)
        t1 = time.perf_counter()
        logits = predictor.infer(x[None])
        sync()
        t2 = time.perf_counter()
        predictor.postprocess(logits[0], box)
        t3 = time.perf_counter()
        times.append(t3 - t0)
        model_times.append(t2 - t1)
    total = float(np.median(times))
    model = float(np.median(model_times))
    result = {"end_to_end_ms": 1000 * total, "fps": 1.0 / total, "model_ms": 1000 * model}
    h, w = image.shape[:2]
    print(
        f"{predictor.describe()}; photo {w}x{h}; {cfg.fps_runs} runs after {cfg.fps_warmup} "
        f"warm-up: median {result['end_to_end_ms']:.2f} ms end to end ({result['fps']:.1f} "
        f"FPS), model alone {result['model_ms']:.2f} ms"
    )
    return result


def export(cfg: Config, predictor) -> int:
    """--mode export_onnx: the ONNX file, checked against PyTorch, with its metadata."""
    options = {"opset": cfg.opset, "dynamic_batch": cfg.dynamic_batch, "half": cfg.onnx_half}
    report = predictor.export_onnx(
        cfg.onnx_out, source=cfg.checkpoint, exporter=cfg.exporter, **options
    )
    print(report.summary())
    return 0


def export_ir(cfg: Config, predictor) -> int:
    """--mode export_openvino: the OpenVINO IR (fp32, or INT8 with --ov-int8), checked."""
    report = predictor.export_openvino(
        cfg.ov_out,
        source=cfg.checkpoint,
        int8=cfg.ov_int8,
        calib_data=cfg.calib_data or None,
        calib_images=cfg.calib_images,
    )
    print(report.summary())
    return 0


def run_image(cfg: Config, predictor: Predictor) -> int:
    if not cfg.inputs:
        raise ValueError("image mode needs --inputs PATH [PATH ...]")
    return 1 if predict_images(cfg, predictor, expand_inputs(cfg.inputs)) else 0


def run_folder(cfg: Config, predictor: Predictor) -> int:
    if len(cfg.inputs) != 1:
        raise ValueError(f"folder mode needs one folder in --inputs, got {list(cfg.inputs)}")
    return 1 if predict_images(cfg, predictor, list_folder(Path(cfg.inputs[0]))) else 0


def run_video_file(cfg: Config, predictor: Predictor) -> int:
    if len(cfg.inputs) != 1:
        raise ValueError(f"video mode needs one video file in --inputs, got {list(cfg.inputs)}")
    video = Path(cfg.inputs[0])
    if not video.is_file():
        raise FileNotFoundError(f"video not found: {video}")
    return predict_video(cfg, predictor, str(video), video.stem)


def run_camera(cfg: Config, predictor: Predictor) -> int:
    source: str | int = int(cfg.camera) if cfg.camera.isdigit() else cfg.camera
    return predict_video(cfg, predictor, source, "camera")


def run_fps(cfg: Config, predictor: Predictor) -> int:
    fps_loop(cfg, predictor)
    return 0


def run_prelabel(cfg: Config, predictor: Predictor) -> int:
    if not cfg.inputs:
        raise ValueError("prelabel mode needs --inputs: a folder of photos (or photo paths)")
    result = prelabel(
        predictor,
        expand_inputs(cfg.inputs),
        cfg.out,
        fmt=cfg.format,
        min_area=cfg.min_area,
        tolerance=cfg.tolerance,
        rank=cfg.rank,
        rank_by=cfg.rank_by,
        image_data=cfg.image_data,
        batch_size=cfg.batch_size,
        fruit_min_saturation=cfg.fruit_min_saturation,
    )
    print(summary(result, cfg.format, predictor.class_names, cfg.rank_by))
    if result.failed:
        print(f"{len(result.failed)} failed: {'; '.join(result.failed)}", file=sys.stderr)
    return 1 if result.failed else 0


# --mode -> what it runs (each returns the exit status: 1 when some inputs failed)
MODES: dict[str, Callable[[Config, Predictor], int]] = {
    "image": run_image,  # the photos in --inputs
    "folder": run_folder,  # every photo in the folder --inputs[0]
    "video": run_video_file,  # --inputs[0] to an annotated video
    "camera": run_camera,  # --camera
    "fps": run_fps,  # timed loop on --inputs[0]
    "export_onnx": export,  # write --onnx-out
    "export_openvino": export_ir,  # write --ov-out
    "prelabel": run_prelabel,  # drafts of --inputs in --format, --rank: ranking.csv
}


def run(cfg: Config) -> int:
    """Run the chosen mode; returns the exit status (1 when some inputs failed)."""
    predictor = build_predictor(cfg)
    print(f"model: {predictor.describe()}")
    return MODES[cfg.mode](cfg, predictor)


def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_config(Config, argv, description=__doc__, renamed=RENAMED)
    try:
        return run(cfg)
    except (FileNotFoundError, ValueError, KeyError, RuntimeError, OSError) as e:
        message = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
