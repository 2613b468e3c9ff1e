"""The paper's YOLOv8-seg comparison: VOC masks -> YOLO-seg labels, training, semantic scoring.

The official FastSegFormer code (Cai et al., Computers and Electronics in Agriculture 217,
108604, 2024) compares its students with YOLOv8n-seg and YOLOv8s-seg, instance-segmentation
networks scored as semantic masks. This tool does the same through ultralytics (AGPL-3.0; a
dependency of this tool only: requirements-yolo.txt says how to install it, docs/yolo_seg.md
why without its declared dependencies):

    # YOLO-seg labels from a VOC data set: DIR/images/{train,val,test}, DIR/labels/..., data.yaml
    python tools/yolo_seg.py prepare --data data/synthetic_oranges --out data/yolo_seg
    # train from the model's yaml (random weights; --weights a local .pt to start from one)
    python tools/yolo_seg.py train --yolo-data data/yolo_seg/data.yaml --model yolov8n-seg \\
        --epochs 6 --imgsz 96 --batch 4 --out logs/yolo/yolov8n-seg
    # paint the predicted instances into one class mask per photo; score like get_miou.py
    python tools/yolo_seg.py evaluate --weights logs/yolo/yolov8n-seg/weights/best.pt \\
        --data data/synthetic_oranges --split test --out logs/yolo/yolov8n-seg/test_eval
    # parameters, thop GFLOPs (multiply-accumulates, as the paper counts) and CPU latency
    python tools/yolo_seg.py profile --model yolov8n-seg --imgsz 224

Labels: one polygon per connected region (8-neighbours) and class of each VOC mask, holes
joined to their outline by a zero-width cut so that filling the polygon leaves them empty;
YOLO class = VOC class - 1 (background is not a class). Evaluation paints each photo's
predicted instance masks (at the photo's size) in ascending confidence, so where two overlap
the more confident wins, and scores them with the project's metrics (one confusion matrix over
the split): metrics.json has the keys of get_miou.py's.

Offline: ultralytics would download fonts, weights and send analytics. Here it builds models
from its packaged yaml files, uses a font matplotlib ships, has its online integrations off
(YOLO_OFFLINE, settings kept in memory only) and runs with every network connection refused:
if it still tries one, the run stops with an error naming the host.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
import socket
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import torch
import yaml
from matplotlib import font_manager
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # also runnable as `python tools/yolo_seg.py`
    sys.path.insert(0, str(ROOT))

from nets.profile import count_params  # noqa: E402
from utils.cli import parse_config  # noqa: E402
from utils.data.class_names import default_class_names, read_class_names  # noqa: E402
from utils.data.labels import read_mask, save_index_mask  # noqa: E402
from utils.data.preprocess import CLASS_NAMES, read_image  # noqa: E402
from utils.data.voc import resolve_voc_root  # noqa: E402
from utils.deploy.optimize import ort_session  # noqa: E402
from utils.deploy.timing import benchmark, environment  # noqa: E402
from utils.fileio import write_text  # noqa: E402
from utils.inference.evaluate import (  # noqa: E402
    format_table,
    metrics_document,
    score_split,
    split_files,
    write_report,
)

MODELS = tuple(f"yolov8{s}-seg" for s in "nsmlx")  # scales of ultralytics' yolov8-seg.yaml
SPLITS = ("train", "val", "test")
INSTALL = (
    "pip install -r requirements-yolo.txt && pip install --no-deps -r requirements-yolo-nodeps.txt"
)


@dataclass
class PrepareConfig:
    data: str = "data/synthetic_oranges"  # VOC root: folder holding VOC2007/ (or VOC2007 itself)
    out: str = "data/yolo_seg"  # YOLO data set: images/{train,val,test}, labels/..., data.yaml
    num_classes: int = len(CLASS_NAMES)  # VOC classes incl. background (values >= it: ignore)
    class_names: tuple[str, ...] = ()  # background first (empty: VOC2007/class_names.txt, else 4)
    force: bool = False  # replace an existing --out folder


@dataclass
class TrainConfig:
    yolo_data: str = "data/yolo_seg/data.yaml"  # data.yaml written by `prepare`
    model: Literal[tuple(MODELS)] = "yolov8n-seg"  # built from ultralytics' packaged yaml
    weights: str | None = None  # local .pt to start from (matching tensors); None: from scratch
    epochs: int = 100  # training epochs
    imgsz: int = 224  # input size (a multiple of 32)
    batch: int = 8  # batch size
    out: str = "logs/yolo/yolov8n-seg"  # run folder: weights/best.pt, last.pt, results.csv
    device: str = "cpu"  # cpu, 0, 0,1, ...
    workers: int = 2  # data-loading workers
    seed: int = 0  # random seed
    options: tuple[str, ...] = ()  # more ultralytics training arguments key=value, e.g. mosaic=0


@dataclass
class EvaluateConfig:
    weights: str = ""  # trained .pt (RUN/weights/best.pt)
    data: str = "data/synthetic_oranges"  # VOC root
    split: str = "test"  # ImageSets/Segmentation/<split>.txt
    out: str = "logs/miou_out_yolo"  # output folder
    imgsz: int | None = None  # network input size (None: the size the weights were trained at)
    conf: float = 0.25  # instances below this confidence are not painted (ultralytics' default)
    iou: float = 0.7  # NMS IoU threshold
    device: str = "cpu"  # cpu, 0, ...
    class_names: tuple[str, ...] = ()  # VOC class names, background first (empty: the model's)
    progress: bool = True  # show progress


@dataclass
class ProfileConfig:
    model: Literal[tuple(MODELS)] = "yolov8n-seg"  # model yaml name
    weights: str | None = None  # profile these .pt weights
    nc: int = 3  # YOLO classes when built from the yaml (3 = the paper's 4 VOC classes)
    imgsz: int = 224  # square input size
    runs: int = 30  # timed runs
    warmup: int = 5  # untimed warm-up runs
    threads: int = 2  # torch / ORT threads (0: default)
    onnx: bool = True  # also time the network exported to ONNX in ONNX Runtime fp32
    out: str | None = None  # write profile.json here


# ------------------------------------------------------------------------------ offline


class NetworkAccessError(BaseException):
    """ultralytics tried to open a network connection. A BaseException on purpose: ultralytics
    wraps its own downloads in `except Exception` and would carry on silently."""


def _is_local(host: Any) -> bool:
    host = host.decode() if isinstance(host, bytes) else str(host)
    return host in ("", "localhost", "::1", "0.0.0.0") or host.startswith("127.")


@contextlib.contextmanager
def no_network() -> Iterator[None]:
    """Refuse every name lookup and connection to a host other than this machine."""
    real_getaddrinfo, real_connect = socket.getaddrinfo, socket.socket.connect

    def getaddrinfo(host, *args, **kwargs):  # noqa: ANN001, ANN202
        if host is not None and not _is_local(host):
            raise NetworkAccessError(f"name lookup of {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    def connect(sock, address):  # noqa: ANN001, ANN202
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not _is_local(address[0]):
            raise NetworkAccessError(f"connection to {address[0]}:{address[1]}")
        return real_connect(sock, address)

    socket.getaddrinfo, socket.socket.connect = getaddrinfo, connect
    try:
        yield
    finally:
        socket.getaddrinfo, socket.socket.connect = real_getaddrinfo, real_connect


def _packaged_font(font: str = "Arial.ttf") -> Path:
    """ultralytics' check_font downloads Arial; matplotlib ships DejaVu Sans instead."""
    return Path(font_manager.findfont("DejaVu Sans"))


_ONLINE_SETTINGS = ("sync", "clearml", "comet", "dvc", "mlflow", "raytune", "tensorboard",
                    "wandb", "vscode_msg", "openvino_msg", "hub")  # fmt: skip


def import_ultralytics():  # noqa: ANN201 (module)
    """ultralytics, made offline; the process's thread settings are kept as they were.

    Importing ultralytics sets OMP_NUM_THREADS=1 (if unset) and cv2.setNumThreads(0); both
    are put back so the rest of the process is not slowed down.
    """
    torch.get_num_threads()  # fix torch's thread count before ultralytics touches the env
    env_before = os.environ.get("OMP_NUM_THREADS")
    cv2_threads = cv2.getNumThreads()
    os.environ["YOLO_OFFLINE"] = "1"  # no online checks, no analytics
    os.environ["YOLO_AUTOINSTALL"] = "0"  # never pip-install a missing package at run time
    try:
        with no_network():
            import ultralytics
            import ultralytics.data.utils as data_utils
            import ultralytics.utils.checks as checks
            import ultralytics.utils.plotting as plotting
            from ultralytics.utils import SETTINGS
    except ImportError as err:
        raise RuntimeError(f"tools/yolo_seg.py needs ultralytics: {INSTALL}") from err
    finally:
        if env_before is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = env_before
        cv2.setNumThreads(cv2_threads)
    for module in (checks, data_utils, plotting):
        if hasattr(module, "check_font"):
            module.check_font = _packaged_font
    for key in _ONLINE_SETTINGS:  # in memory only: the user's settings file stays as it is
        if key in SETTINGS:
            dict.__setitem__(SETTINGS, key, False)
    return ultralytics


@contextlib.contextmanager
def ultralytics_session() -> Iterator[Any]:
    """ultralytics offline, with torch's and OpenCV's thread counts restored afterwards
    (its select_device sets torch to cpu_count - 1 threads on the CPU)."""
    threads, cv2_threads = torch.get_num_threads(), cv2.getNumThreads()
    ultralytics = import_ultralytics()
    try:
        with no_network():
            yield ultralytics
    finally:
        torch.set_num_threads(threads)
        cv2.setNumThreads(cv2_threads)


# ------------------------------------------------------------------------------ prepare


def _bridge(outline: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """One polygon: `outline` (N, 2), then into `hole` (M, 2) at their closest points, round
    it and back out along the same cut (zero width), so filling it leaves the hole empty."""
    d = ((outline[:, None, :].astype(np.int64) - hole[None, :, :]) ** 2).sum(-1)  # (N, M)
    i, j = np.unravel_index(int(np.argmin(d)), d.shape)
    return np.concatenate([outline[: i + 1], hole[j:], hole[: j + 1], outline[i:]], axis=0)


def mask_polygons(mask: np.ndarray, num_classes: int) -> list[tuple[int, np.ndarray]]:
    """[(VOC class, (P, 2) int pixel (x, y))]: one polygon per 8-connected region and class.

    Points are the centres of the region's boundary pixels (OpenCV's contours), so that
    cv2.fillPoly of a polygon paints exactly its region, holes included (joined by a cut).
    """
    out: list[tuple[int, np.ndarray]] = []
    for k in range(1, num_classes):
        binary = (mask == k).astype(np.uint8)
        if not binary.any():
            continue
        contours, hierarchy = cv2.findContours(binary, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
        links = hierarchy[0]  # (C, 4): next, previous, first child, parent
        for c, (_, _, child, parent) in enumerate(links):
            if parent != -1:
                continue  # a hole: joined to its outline below
            polygon = contours[c][:, 0, :]
            while child != -1:
                polygon = _bridge(polygon, contours[child][:, 0, :])
                child = links[child][0]
            if len(polygon) < 3:  # one pixel or a straight line: its bounding box
                (x0, y0), (x1, y1) = polygon.min(0), polygon.max(0)
                polygon = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
            out.append((k, polygon))
    return out


def label_lines(mask: np.ndarray, num_classes: int) -> list[str]:
    """YOLO-seg label lines 'cls x1 y1 x2 y2 ...' (coordinates / width, / height)."""
    h, w = mask.shape
    lines = []
    for k, polygon in mask_polygons(mask, num_classes):
        xy = polygon.astype(np.float64) / np.array([w, h])
        lines.append(f"{k - 1} " + " ".join(f"{v:.6f}" for v in xy.reshape(-1)))
    return lines


def rasterise_labels(lines: Sequence[str], hw: tuple[int, int]) -> np.ndarray:
    """(H, W) VOC class ids from YOLO-seg label lines (the inverse of `label_lines`)."""
    h, w = hw
    mask = np.zeros(hw, np.uint8)
    for line in lines:
        values = line.split()
        xy = np.array(values[1:], dtype=np.float64).reshape(-1, 2) * np.array([w, h])
        cv2.fillPoly(mask, [np.round(xy).astype(np.int32)], int(values[0]) + 1)
    return mask


def _class_names(voc: Path, num_classes: int, given: Sequence[str]) -> list[str]:
    names = list(given or read_class_names(voc) or default_class_names(num_classes))
    if len(names) != num_classes:
        raise ValueError(
            f"{len(names)} class names ({', '.join(names)}) for --num-classes {num_classes}"
        )
    return names


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def prepare(cfg: PrepareConfig) -> dict:
    """Write the YOLO-seg data set; returns {split: photos, ..., "instances": n, "yaml": path}."""
    voc = resolve_voc_root(cfg.data)
    names = _class_names(voc, cfg.num_classes, cfg.class_names)
    out = Path(cfg.out)
    if out.exists() and any(out.iterdir()):
        if not cfg.force:
            raise ValueError(f"--out {out} is not empty; pass --force to replace it")
        for sub in ("images", "labels"):
            shutil.rmtree(out / sub, ignore_errors=True)
    present = [s for s in SPLITS if (voc / "ImageSets" / "Segmentation" / f"{s}.txt").is_file()]
    if "train" not in present or "val" not in present:
        raise ValueError(
            f"{voc}/ImageSets/Segmentation needs train.txt and val.txt (found "
            f"{', '.join(present) or 'none'}); write them with python voc_annotation.py"
        )
    summary: dict[str, Any] = {"instances": 0}
    for split in present:
        ids, photos, masks = split_files(cfg.data, split, cfg.num_classes)
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        (out / "labels" / split).mkdir(parents=True, exist_ok=True)
        for i, photo, mask_path in zip(ids, photos, masks, strict=True):
            mask = read_mask(mask_path, cfg.num_classes)  # class ids, 255 ignore
            lines = label_lines(mask, cfg.num_classes)
            _link_or_copy(photo, out / "images" / split / photo.name)
            write_text(out / "labels" / split / f"{i}.txt", "".join(f"{ln}\n" for ln in lines))
            summary["instances"] += len(lines)
        summary[split] = len(ids)
    doc = {
        "path": str(out.resolve()),
        **{s: f"images/{s}" for s in present},
        "names": dict(enumerate(names[1:])),  # YOLO class = VOC class - 1
        "voc_root": str(voc.resolve()),
        "voc_class_names": names,
    }
    write_text(out / "data.yaml", yaml.safe_dump(doc, sort_keys=False))
    summary["yaml"] = str(out / "data.yaml")
    return summary


# ------------------------------------------------------------------------------ train


def _parse_options(pairs: Sequence[str]) -> dict[str, Any]:
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--options {pair!r}: expected key=value, e.g. lr0=0.005")
        options[key] = yaml.safe_load(value)
    return options


def train(cfg: TrainConfig) -> Path:
    """Train; returns RUN/weights/best.pt (or last.pt)."""
    data = Path(cfg.yolo_data)
    if not data.is_file():
        raise FileNotFoundError(
            f"--yolo-data {data} not found; write it with `python tools/yolo_seg.py prepare`"
        )
    if cfg.weights and not Path(cfg.weights).is_file():
        raise FileNotFoundError(
            f"--weights {cfg.weights} not found; this tool never downloads weights: give a "
            "local .pt file, or none to train from the model's yaml"
        )
    if cfg.imgsz % 32:
        raise ValueError(f"--imgsz {cfg.imgsz}: expected a multiple of 32 (YOLOv8's stride)")
    run = Path(cfg.out).resolve()
    options = _parse_options(cfg.options)
    with ultralytics_session() as ultralytics:
        model = ultralytics.YOLO(f"{cfg.model}.yaml", task="segment")
        if cfg.weights:
            model.load(cfg.weights)
        args = {
            "data": str(data.resolve()),
            "epochs": cfg.epochs,
            "imgsz": cfg.imgsz,
            "batch": cfg.batch,
            "device": cfg.device,
            "workers": cfg.workers,
            "seed": cfg.seed,
            "deterministic": True,
            "project": str(run.parent),
            "name": run.name,
            "exist_ok": True,
            "plots": False,  # plotting fetches fonts and costs time
            "amp": False,  # the AMP check downloads a model
            **options,
        }
        model.train(**args)
    for name in ("best.pt", "last.pt"):
        if (run / "weights" / name).is_file():
            return run / "weights" / name
    raise RuntimeError(f"training ended without weights in {run / 'weights'}")


# ------------------------------------------------------------------------------ evaluate


def paint_instances(
    masks: np.ndarray, classes: np.ndarray, confidences: np.ndarray, hw: tuple[int, int]
) -> np.ndarray:
    """(H, W) VOC class ids from instance masks (N, H, W) with YOLO classes and confidences:
    painted in ascending confidence (the most confident wins an overlap), class + 1."""
    out = np.zeros(hw, np.uint8)
    for n in np.argsort(confidences, kind="stable"):
        out[masks[n] > 0.5] = int(classes[n]) + 1
    return out


def _trained_imgsz(model: Any) -> int:
    args = getattr(model, "ckpt", None) or {}
    size = (args.get("train_args") or {}).get("imgsz") or model.overrides.get("imgsz") or 640
    return int(size if isinstance(size, int) else max(size))


def evaluate(cfg: EvaluateConfig) -> dict:
    """Predict the split, write predictions/<id>.png, score; returns the metrics document."""
    if not cfg.weights or not Path(cfg.weights).is_file():
        raise FileNotFoundError(f"--weights {cfg.weights!r}: expected a trained .pt file")
    out = Path(cfg.out)
    pred_dir = out / "predictions"
    pred_dir.mkdir(parents=True, exist_ok=True)
    with ultralytics_session() as ultralytics:
        model = ultralytics.YOLO(cfg.weights, task="segment")
        yolo_names = [model.names[k] for k in sorted(model.names)]
        names = list(cfg.class_names) or ["background", *yolo_names]
        if len(names) != len(yolo_names) + 1:
            raise ValueError(
                f"--class-names gives {len(names)} names; the model has {len(yolo_names)} "
                "classes, so expected background + one name each"
            )
        num_classes = len(names)
        ids, photos, masks = split_files(cfg.data, cfg.split, num_classes)
        imgsz = cfg.imgsz or _trained_imgsz(model)
        for i, photo in tqdm(
            list(zip(ids, photos, strict=True)), desc="predict", disable=not cfg.progress
        ):
            rgb = read_image(photo)
            result = model.predict(
                np.ascontiguousarray(rgb[..., ::-1]),  # ultralytics takes BGR arrays
                imgsz=imgsz,
                conf=cfg.conf,
                iou=cfg.iou,
                device=cfg.device,
                retina_masks=True,  # masks at the photo's size
                verbose=False,
            )[0]
            hw = rgb.shape[:2]
            if result.masks is None:
                semantic = np.zeros(hw, np.uint8)
            else:
                semantic = paint_instances(
                    result.masks.data.cpu().numpy(),
                    result.boxes.cls.cpu().numpy(),
                    result.boxes.conf.cpu().numpy(),
                    hw,
                )
            save_index_mask(pred_dir / f"{i}.png", semantic)
    cm = score_split(pred_dir, ids, masks, num_classes, progress=cfg.progress)
    doc = metrics_document(
        cm,
        names,
        split=cfg.split,
        data=str(cfg.data),
        num_images=len(ids),
        model=str(cfg.weights),
        yolo={"imgsz": imgsz, "conf": cfg.conf, "iou": cfg.iou},
    )
    write_report(doc, cm, out)
    return doc


# ------------------------------------------------------------------------------ profile


def profile(cfg: ProfileConfig) -> dict:
    """Parameters, thop multiply-accumulates and CPU latency of the network alone (batch 1;
    NMS and mask assembly are not included, as for the other models of the comparison)."""
    from thop import profile as thop_profile  # heavy optional: counted on demand only

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    with ultralytics_session() as ultralytics:
        if cfg.weights:
            net = ultralytics.YOLO(cfg.weights, task="segment").model
        else:
            from ultralytics.nn.tasks import SegmentationModel

            net = SegmentationModel(f"{cfg.model}.yaml", nc=cfg.nc, verbose=False)
        net = net.float().eval().requires_grad_(False)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        x = torch.rand(1, 3, cfg.imgsz, cfg.imgsz)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            macs, _ = thop_profile(copy.deepcopy(net), inputs=(x,), verbose=False)

        def forward() -> Any:
            with torch.no_grad():  # not inference_mode: its cached anchors would then be
                return net(x)  # inference tensors that the ONNX export below cannot trace

        eager = benchmark(forward, runs=cfg.runs, warmup=cfg.warmup)
        result = {
            "model": cfg.weights or cfg.model,
            "nc": int(net.yaml.get("nc", cfg.nc)),
            "imgsz": cfg.imgsz,
            "params_m": count_params(net) / 1e6,
            "gflops": macs / 1e9,  # thop MACs, the figure the paper prints as GFLOPs
            "eager_fp32": eager.as_dict(),
        }
        if cfg.onnx:
            result["ort_fp32"] = _ort_latency(net, x, cfg).as_dict()
        result["environment"] = environment("cpu")
    if cfg.out:
        Path(cfg.out).mkdir(parents=True, exist_ok=True)
        write_text(Path(cfg.out) / "profile.json", json.dumps(result, indent=2))
    return result


def _ort_latency(net: Any, x: Any, cfg: ProfileConfig) -> Any:
    class Outputs(torch.nn.Module):  # what inference uses of ultralytics' (y, extras) pair
        def __init__(self, model: torch.nn.Module) -> None:
            super().__init__()
            self.model = model

        def forward(self, t: torch.Tensor) -> tuple[torch.Tensor, ...]:
            y = self.model(t)[0]
            # (B, 4 + nc + 32, A) boxes, scores and mask coefficients; (B, 32, h, w) prototypes
            return tuple(y) if isinstance(y, (list, tuple)) else (y,)

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "yolo.onnx"
        with warnings_off():
            torch.onnx.export(Outputs(net), (x,), str(path), opset_version=17, dynamo=False)
        session = ort_session(path, ["CPUExecutionProvider"], level="all", threads=cfg.threads)
        name = session.get_inputs()[0].name
        feed = {name: x.numpy()}
        return benchmark(lambda: session.run(None, feed), runs=cfg.runs, warmup=cfg.warmup)


@contextlib.contextmanager
def warnings_off() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


# ------------------------------------------------------------------------------ main

COMMANDS = {
    "prepare": PrepareConfig,
    "train": TrainConfig,
    "evaluate": EvaluateConfig,
    "profile": ProfileConfig,
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        given = f"unknown command {argv[0]!r}; " if argv and not argv[0].startswith("-") else ""
        print(__doc__, file=sys.stderr)
        print(f"error: {given}expected one of {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    command, rest = argv[0], argv[1:]
    cfg = parse_config(COMMANDS[command], rest, description=f"tools/yolo_seg.py {command}")
    started = time.perf_counter()
    try:
        if command == "prepare":
            summary = prepare(cfg)
            counts = ", ".join(f"{s} {summary[s]}" for s in SPLITS if s in summary)
            print(f"YOLO-seg data set: {counts} photos, {summary['instances']} polygons")
            print(f"data.yaml: {summary['yaml']}")
        elif command == "train":
            weights = train(cfg)
            print(f"weights: {weights} ({time.perf_counter() - started:.0f} s)")
        elif command == "evaluate":
            doc = evaluate(cfg)
            print(format_table(doc))
            print(f"metrics written to {cfg.out}/metrics.json (fractions); charts in {cfg.out}/")
        else:
            result = profile(cfg)
            line = (
                f"{result['model']} at {cfg.imgsz}: {result['params_m']:.2f}M params, "
                f"{result['gflops']:.2f} GFLOPs (thop MACs), eager fp32 "
                f"{result['eager_fp32']['median_ms']:.1f} ms"
            )
            if "ort_fp32" in result:
                line += f", ONNX Runtime fp32 {result['ort_fp32']['median_ms']:.1f} ms"
            print(line + f" (median of {cfg.runs}, {cfg.threads or 'default'} threads)")
    except NetworkAccessError as err:
        print(
            f"error: ultralytics tried to reach the network ({err}); this tool runs it "
            "offline. Give local files (--weights a .pt on disk) or report the call that "
            "needs the network",
            file=sys.stderr,
        )
        return 2
    except (FileNotFoundError, ValueError, KeyError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
