"""Speed of the registry models on every inference backend: params, GFLOPs, latency, FPS.

FastSegFormer (Cai et al., Computers and Electronics in Agriculture 217, 108604, 2024) measures
speed as FPS at batch 1 on a random input after a warm-up, synchronising the GPU around 100
timed runs. This script does that for each selected model at its default input size and on
each backend, and adds what a deployment needs: the spread of the latency, throughput at larger
batches, end-to-end FPS on a real photo through the shared Predictor (letterbox, network,
softmax/resize/argmax), how far each backend's logits are from eager PyTorch, and optionally
the mIoU of each backend on a test split (get_miou's evaluation code).

    python speeding.py                                         # every model, default backends
    python speeding.py --models fastsegformer_p fastsegformer_e --backends ort-fp32 ort-int8
    python speeding.py --checkpoint logs/p/best.pth --accuracy --split test   # trained weights
    python speeding.py --models fastsegformer_e --batch 1 8 --runs 200 --threads 2
    python speeding.py --device cuda --backends torch-fp32 torch-fp16 torch-compile
    python speeding.py --models fastsegformer_p --profile      # top ops of each backend
    python speeding.py --models enet --json                    # JSON rows on stdout

Backends: torch-fp32 (eager), torch-fp32-cl (channels_last), torch-fp32-fused (conv+BN folded,
utils.deploy.optimize), torch-fp16 (CUDA, half weights), torch-compile (torch.compile of the folded
model; CUDA graphs on CUDA), ort-fp32 (ONNX Runtime, graph optimised; CUDA provider on
--device cuda), ort-fp32-noopt (ONNX Runtime with its optimiser off, for comparison), ort-int8
(static INT8 QDQ calibrated on the training split, CPU). Rows that cannot run here (CUDA on a
machine without a GPU, fp16 on the CPU) are kept with status "skipped" and the reason.

Writes OUT/speed_<date-time>.json (environment: CPU/GPU, library versions, threads, load
average; config; rows) and .csv, plus the ONNX files under OUT/onnx/. See docs/benchmarks.md.
"""

from __future__ import annotations

import copy
import csv
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

import nets
from nets.checkpoint import CheckpointError
from utils.cli import config_to_dict, parse_config
from utils.deploy.onnx_export import export_onnx
from utils.deploy.optimize import (
    CALIBRATION_METHODS,
    EXCLUDE_POLICIES,
    INT8_OP_SETS,
    ORT_LEVELS,
    ImageCalibrationReader,
    _clear_attention_caches,
    calibration_images,
    fold_batchnorm,
    optimize_onnx,
    ort_session,
    profile_top_ops,
    quantize_int8,
)
from utils.deploy.timing import benchmark, cuda_sync, environment
from utils.fileio import atomic_open, write_text
from utils.inference.evaluate import evaluate
from utils.inference.predictor import Predictor, default_class_names
from utils.preprocess import letterbox, read_image, to_tensor

BACKENDS = (
    "torch-fp32",
    "torch-fp32-cl",
    "torch-fp32-fused",
    "torch-fp16",
    "torch-compile",
    "ort-fp32",
    "ort-fp32-noopt",
    "ort-int8",
)
DEFAULT_BACKENDS = (
    "torch-fp32",
    "torch-fp32-cl",
    "torch-fp32-fused",
    "torch-fp16",
    "ort-fp32",
    "ort-int8",
)
SAMPLE_PHOTOS = Path(__file__).resolve().parent.parent / "shared/samples/orange_real/JPEGImages"


@dataclass
class Config:
    # ------------------------------------------------------------------ editable block
    # what to measure
    models: tuple[str, ...] = ()  # registry names (default: every model)
    checkpoint: tuple[str, ...] = ()  # project checkpoints: their models with trained weights
    trust_checkpoint: bool = False  # unpickle --checkpoint in full: trusted files only
    backends: tuple[Literal[BACKENDS], ...] = DEFAULT_BACKENDS  # backends to measure
    device: Literal["cpu", "cuda"] = "cpu"  # device
    num_classes: int = 4  # classes of models built at random
    # the paper's protocol: random input, warm-up, synchronize, 100 timed runs
    runs: int = 100  # timed runs per row
    warmup: int = 10  # untimed runs before timing
    batch: tuple[int, ...] = (1,)  # batch sizes (1 = latency)
    threads: int = 0  # CPU threads (0: torch's default)
    # end to end on a photo through the Predictor (preprocess + inference + postprocess)
    e2e: bool = True  # measure end-to-end FPS on a photo
    e2e_runs: int = 30  # timed end-to-end runs
    photo: str = ""  # photo for end to end (default: a sample)
    # ONNX Runtime and INT8
    ort_level: Literal[ORT_LEVELS] = "all"  # ONNX Runtime graph optimiser level
    data: str = "data/synthetic_oranges"  # VOC root for calibration/accuracy
    calib_data: str = ""  # VOC root for INT8 calibration (default: --data)
    calib_split: str = "train"  # calibration split
    calib_images: int = 200  # calibration photos (at most)
    calib_method: Literal[CALIBRATION_METHODS] = "minmax"  # INT8 calibration
    int8_exclude: Literal[EXCLUDE_POLICIES] = "head"  # nodes kept in float (head: classifier on)
    int8_ops: Literal[tuple(INT8_OP_SETS)] = "conv"  # ops to quantise: Conv/MatMul or all
    per_channel: bool = True  # per-channel INT8 weights
    opset: int = 20  # ONNX opset of the exports (20: Gelu op)
    # accuracy and profiling
    accuracy: bool = False  # mIoU of each batch-1 backend on --split of --data
    split: str = "test"  # split scored by --accuracy
    profile: bool = False  # print the top ops of each backend
    # output
    out: str = "logs/speed"  # folder for JSON/CSV/ONNX files
    json: bool = False  # print the rows as JSON on stdout
    # ------------------------------------------------------------------ end of editable block


class Skip(Exception):
    """A backend that cannot run here; the message is the reason kept in the row."""


@dataclass
class Subject:
    """One model to measure and what the Predictor needs to feed it."""

    name: str
    model: torch.nn.Module
    input_size: tuple[int, int]
    mean: list[float] | None = None
    std: list[float] | None = None
    class_names: list[str] | None = None
    checkpoint: str | None = None

    @property
    def tag(self) -> str:
        return self.name if self.checkpoint is None else f"{self.name}_{Path(self.checkpoint).stem}"


@dataclass
class Runner:
    """A prepared backend: `bench()` runs the random batch, `infer(np)` runs any batch."""

    runtime: str
    precision: str
    bench: Callable[[], Any]
    infer: Callable[[np.ndarray], np.ndarray]
    sync: Callable[[], None] | None = None
    profile: Callable[[int], list] | None = None  # runs -> [(op, ms per run, share)]
    notes: dict = field(default_factory=dict)


def log(*args: Any) -> None:
    print(*args, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------ subjects
def load_subjects(cfg: Config) -> list[Subject]:
    subjects: list[Subject] = []
    for path in cfg.checkpoint:
        model, ckpt = nets.model_from_checkpoint(
            path, map_location="cpu", trust=cfg.trust_checkpoint
        )
        pre = ckpt.get("preprocess") or {}
        size = ckpt.get("input_size") or [model.default_input_size] * 2
        subjects.append(
            Subject(
                ckpt["model"]["name"],
                model.eval(),
                (int(size[0]), int(size[1])),
                pre.get("mean"),
                pre.get("std"),
                ckpt.get("class_names"),
                str(path),
            )
        )
    names = cfg.models or ([] if cfg.checkpoint else sorted(nets.MODELS))
    for name in names:
        model = nets.build_model(name, num_classes=cfg.num_classes).eval()
        s = int(model.default_input_size)
        subjects.append(Subject(name, model, (s, s)))
    return subjects


# ------------------------------------------------------------------------------ backends
def _torch_runner(
    model: torch.nn.Module,
    x: torch.Tensor,
    device: torch.device,
    dtype: torch.dtype = torch.float32,
    channels_last: bool = False,
) -> Runner:
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(device=device, dtype=dtype, memory_format=fmt).eval()
    x = x.to(device=device, dtype=dtype).contiguous(memory_format=fmt)

    def bench() -> torch.Tensor:
        with torch.inference_mode():
            return model(x)

    def infer(batch: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(np.ascontiguousarray(batch)).to(device=device, dtype=dtype)
        with torch.inference_mode():
            return model(t.contiguous(memory_format=fmt)).float().cpu().numpy()

    def run_profile(runs: int) -> list:
        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        with profile(activities=acts) as prof:
            for _ in range(runs):
                bench()
        events = prof.key_averages()
        total = sum(e.self_cpu_time_total for e in events) or 1.0
        ranked = sorted(events, key=lambda e: -e.self_cpu_time_total)[:8]
        return [
            (e.key, e.self_cpu_time_total / 1e3 / runs, e.self_cpu_time_total / total)
            for e in ranked
        ]

    return Runner("torch", "fp16" if dtype == torch.float16 else "fp32", bench, infer,
                  cuda_sync(device), run_profile)  # fmt: skip


def _ort_runner(
    path: Path, providers: list[str], level: str, threads: int, x: np.ndarray
) -> Runner:
    session = ort_session(path, providers, level=level, threads=threads)
    name = session.get_inputs()[0].name

    def infer(batch: np.ndarray) -> np.ndarray:
        return session.run(None, {name: batch.astype(np.float32, copy=False)})[0]

    def profile(runs: int) -> list:
        prefix = str(path.with_suffix("")) + f"_{level}_profile"
        prof_session = ort_session(path, providers, level, threads, profile_prefix=prefix)
        for _ in range(runs):
            prof_session.run(None, {name: x})
        return profile_top_ops(prof_session.end_profiling())

    return Runner(
        "onnxruntime",
        "fp32",
        lambda: session.run(None, {name: x}),
        infer,
        None,
        profile,
        {"providers": session.get_providers()[:1], "ort_level": level},
    )


class Workspace:
    """ONNX files of one subject, exported/quantised once and reused by the rows."""

    def __init__(self, cfg: Config, subject: Subject, out: Path) -> None:
        self.cfg, self.subject = cfg, subject
        self.dir = out / "onnx"
        self.files: dict[tuple[str, bool], Path] = {}

    def _stem(self, dynamic: bool) -> str:
        return f"{self.subject.tag}_{'dynbatch' if dynamic else 'b1'}"

    def fp32(self, dynamic: bool) -> Path:
        key = ("fp32", dynamic)
        if key not in self.files:
            s = self.subject
            raw = self.dir / f"{self._stem(dynamic)}_fp32.onnx"
            metadata = {
                "model": getattr(s.model, "build_config", None),
                "num_classes": int(s.model.num_classes),
                "class_names": s.class_names,
                "input_size": list(s.input_size),
                "preprocess": {"mean": s.mean, "std": s.std, "fill": 128},
                "source_checkpoint": s.checkpoint,
            }
            t0 = time.perf_counter()
            report = export_onnx(
                s.model,
                raw,
                s.input_size,
                opset=self.cfg.opset,
                dynamic_batch=dynamic,
                metadata=metadata,
            )
            log(f"  {report.summary()} [{time.perf_counter() - t0:.1f} s]")
            self.files[("raw", dynamic)] = raw
            self.files[key] = optimize_onnx(raw, raw.with_name(raw.stem + "_opt.onnx"))
        return self.files[key]

    def raw(self, dynamic: bool) -> Path:
        self.fp32(dynamic)
        return self.files[("raw", dynamic)]

    def int8(self, dynamic: bool) -> Path:
        key = ("int8", dynamic)
        if key not in self.files:
            cfg, s = self.cfg, self.subject
            try:
                data = cfg.calib_data or cfg.data
                photos = calibration_images(data, cfg.calib_split, cfg.calib_images)
            except (FileNotFoundError, ValueError) as e:
                raise Skip(
                    f"no calibration photos ({e}); point --calib-data at a VOC root with a "
                    f"{cfg.calib_split} split (e.g. `python -m utils.data.synthetic --out "
                    f"data/synthetic_oranges`)"
                ) from e
            reader = ImageCalibrationReader(photos, s.input_size, "images", s.mean, s.std)
            dst = self.dir / f"{self._stem(dynamic)}_int8.onnx"
            t0 = time.perf_counter()
            quantize_int8(
                self.raw(dynamic),
                dst,
                reader,
                per_channel=cfg.per_channel,
                method=cfg.calib_method,
                exclude=cfg.int8_exclude,
                ops=cfg.int8_ops,
            )
            took = time.perf_counter() - t0
            log(
                f"  quantised {dst} ({len(reader)} {cfg.calib_split} photos, {cfg.calib_method}, "
                f"exclude {cfg.int8_exclude}, ops {cfg.int8_ops}) [{took:.1f} s]"
            )
            self.files[key] = dst
        return self.files[key]


def make_runner(backend: str, cfg: Config, subject: Subject, ws: Workspace, batch: int) -> Runner:
    """Prepare `backend` for `subject` at `batch`; Skip when it cannot run here."""
    device = torch.device(cfg.device)
    cuda = device.type == "cuda"
    if cuda and not torch.cuda.is_available():
        raise Skip("CUDA is not available here (torch.cuda.is_available() is False)")
    h, w = subject.input_size
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 3, h, w, generator=gen)  # (B, 3, H, W) random input, paper protocol
    threads = torch.get_num_threads()
    dynamic = batch > 1

    if backend == "torch-fp32":
        return _torch_runner(_copy(subject.model), x, device)
    if backend == "torch-fp32-cl":
        return _torch_runner(_copy(subject.model), x, device, channels_last=True)
    if backend == "torch-fp32-fused":
        folded, pairs = fold_batchnorm(_copy(subject.model), subject.input_size)
        runner = _torch_runner(folded, x, device)
        runner.notes["bn_folded"] = pairs
        return runner
    if backend == "torch-fp16":
        if not cuda:
            raise Skip("fp16 inference needs --device cuda (CPU half kernels are slow or missing)")
        return _torch_runner(_copy(subject.model), x, device, dtype=torch.float16)
    if backend == "torch-compile":
        folded, _ = fold_batchnorm(_copy(subject.model), subject.input_size)
        mode = "reduce-overhead" if cuda else None  # CUDA graphs on the GPU
        try:
            compiled = torch.compile(folded.to(device), mode=mode, dynamic=False)
        except Exception as e:  # no compiler, unsupported platform
            raise Skip(f"torch.compile unavailable: {type(e).__name__}: {e}") from e
        runner = _torch_runner(compiled, x, device)
        runner.notes["compile_mode"] = mode or "default"
        return runner
    if backend in ("ort-fp32", "ort-fp32-noopt", "ort-int8"):
        import onnxruntime as ort

        if cuda:
            if backend == "ort-int8":
                raise Skip("INT8 QDQ runs on the CPU provider (GPU INT8 needs TensorRT)")
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise Skip("onnxruntime has no CUDAExecutionProvider (pip onnxruntime-gpu)")
            providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        else:
            providers = ["CPUExecutionProvider"]
        xn = x.numpy()
        if backend == "ort-fp32":
            return _ort_runner(ws.fp32(dynamic), providers, cfg.ort_level, threads, xn)
        if backend == "ort-fp32-noopt":
            return _ort_runner(ws.raw(dynamic), providers, "disable", threads, xn)
        runner = _ort_runner(ws.int8(dynamic), providers, cfg.ort_level, threads, xn)
        runner.precision = "int8"
        return runner
    raise ValueError(f"unknown backend {backend!r}; valid: {', '.join(BACKENDS)}")


def _copy(model: torch.nn.Module) -> torch.nn.Module:
    """A private copy per backend (formats and dtypes are changed in place)."""
    _clear_attention_caches(model)
    return copy.deepcopy(model).eval()


# ------------------------------------------------------------------------------ measuring
def default_photo(cfg: Config) -> Path | None:
    if cfg.photo:
        return Path(cfg.photo)
    found = sorted(SAMPLE_PHOTOS.glob("*.jpg")) if SAMPLE_PHOTOS.is_dir() else []
    if not found:
        found = sorted((Path(cfg.data) / "VOC2007" / "JPEGImages").glob("*.jpg"))
    return found[0] if found else None


def _predictor(subject: Subject, runner: Runner) -> Predictor:
    class _Backend:
        def __call__(self, batch: np.ndarray) -> np.ndarray:
            return runner.infer(batch)

    return Predictor(
        None,
        subject.input_size,
        subject.mean,
        subject.std,
        class_names=subject.class_names,
        backend=_Backend(),
        num_classes=int(subject.model.num_classes),
    )


def measure(
    cfg: Config,
    subject: Subject,
    backend: str,
    batch: int,
    ws: Workspace,
    counts: dict,
    reference: np.ndarray | None,
    check_input: np.ndarray | None,
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "model": subject.name,
        "backend": backend,
        "batch": batch,
        "latency_ms": None,
        "fps": None,
        "input_size": list(subject.input_size),
        "params_m": counts["params_m"],
        "gflops": counts["gflops"],
        "device": cfg.device,
        "checkpoint": subject.checkpoint,
        "status": "ok",
        "reason": None,
    }
    try:
        runner = make_runner(backend, cfg, subject, ws, batch)
    except Skip as e:
        row.update(status="skipped", reason=str(e))
        return row
    except Exception as e:  # export/quantisation/compile failure: keep the row, say why
        row.update(status="error", reason=f"{type(e).__name__}: {str(e).splitlines()[0][:300]}")
        return row
    row.update(runtime=runner.runtime, precision=runner.precision, **runner.notes)
    try:
        t = benchmark(runner.bench, cfg.runs, cfg.warmup, batch, runner.sync)
    except Exception as e:
        row.update(status="error", reason=f"{type(e).__name__}: {str(e).splitlines()[0][:300]}")
        return row
    row.update(
        latency_ms=t.median_ms,
        fps=t.fps,
        latency_mean_ms=t.mean_ms,
        latency_std_ms=t.std_ms,
        latency_min_ms=t.min_ms,
        latency_p10_ms=t.p10_ms,
        latency_p90_ms=t.p90_ms,
        runs=t.runs,
        warmup=t.warmup,
    )
    if batch != 1:
        return row
    if reference is not None and check_input is not None:
        got = runner.infer(check_input)  # (1, K, h, w) on the preprocessed photo
        row["max_rel_diff_vs_eager"] = float(
            np.abs(got - reference).max() / max(float(np.abs(reference).max()), 1e-12)
        )
        row["argmax_agreement_vs_eager"] = float((got.argmax(1) == reference.argmax(1)).mean())
    photo = default_photo(cfg)
    if cfg.e2e and photo is not None:
        predictor = _predictor(subject, runner)
        image = read_image(photo)
        e2e = benchmark(lambda: predictor.predict(image), cfg.e2e_runs, 3, 1, runner.sync)
        row.update(e2e_ms=e2e.median_ms, e2e_fps=e2e.fps, e2e_photo=str(photo))
    if cfg.accuracy:
        row.update(_accuracy(cfg, subject, runner, backend))
    if cfg.profile and runner.profile is not None:
        row["top_ops"] = [[op, ms, share] for op, ms, share in runner.profile(20)]
    return row


def _accuracy(cfg: Config, subject: Subject, runner: Runner, backend: str) -> dict[str, Any]:
    """mIoU/mPA of this backend on --split, through the Predictor and get_miou's evaluation."""
    k = int(subject.model.num_classes)
    names = subject.class_names or default_class_names(k)
    out = Path(cfg.out) / "miou" / subject.tag / backend
    try:
        doc = evaluate(
            cfg.data, cfg.split, out, k, names, predictor=_predictor(subject, runner),
            progress=False,
        )  # fmt: skip
    except (FileNotFoundError, ValueError) as e:
        return {"miou": None, "miou_error": str(e)}
    return {"miou": doc["mIoU"], "mpa": doc["mPA"], "miou_split": f"{cfg.data}:{cfg.split}"}


def _reference(subject: Subject, cfg: Config) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Eager fp32 CPU logits on the preprocessed photo: what every backend is compared with."""
    photo = default_photo(cfg)
    if photo is None:
        return None, None
    boxed, _ = letterbox(read_image(photo), subject.input_size)
    x = to_tensor(boxed, subject.mean, subject.std)[None]  # (1, 3, h, w)
    with torch.inference_mode():
        ref = _copy(subject.model)(torch.from_numpy(x)).float().numpy()
    return ref, x


# ------------------------------------------------------------------------------ reporting
def format_table(rows: list[dict]) -> str:
    def num(v: Any, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    head = (
        f"{'model':<16} {'backend':<16} {'b':>2} {'params M':>8} {'GFLOPs':>6} "
        f"{'median ms':>9} {'p10-p90 ms':>15} {'FPS':>7} {'e2e FPS':>7} {'mIoU':>6} status"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        spread = (
            f"{r['latency_p10_ms']:.1f}-{r['latency_p90_ms']:.1f}"
            if r.get("latency_p10_ms") is not None
            else "-"
        )
        miou = None if r.get("miou") is None else 100 * r["miou"]
        status = r["status"] if r["status"] == "ok" else f"{r['status']}: {r['reason']}"
        lines.append(
            f"{r['model']:<16} {r['backend']:<16} {r['batch']:>2} {num(r['params_m'], '.2f'):>8} "
            f"{num(r['gflops'], '.2f'):>6} {num(r['latency_ms'], '.2f'):>9} {spread:>15} "
            f"{num(r['fps'], '.1f'):>7} {num(r.get('e2e_fps'), '.1f'):>7} "
            f"{num(miou, '.2f'):>6} {status}"
        )
    return "\n".join(lines)


def format_profiles(rows: list[dict]) -> str:
    lines = []
    for r in rows:
        if r.get("top_ops"):
            lines.append(f"top ops of {r['model']} / {r['backend']} (ms per run, share):")
            lines += [f"  {op:<40} {ms:8.2f} {100 * sh:5.1f}%" for op, ms, sh in r["top_ops"]]
    return "\n".join(lines)


def write_results(rows: list[dict], env: dict, cfg: Config, out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    json_path, csv_path = out / f"speed_{stamp}.json", out / f"speed_{stamp}.csv"
    doc = {"environment": env, "config": config_to_dict(cfg), "rows": rows}
    write_text(json_path, json.dumps(doc, indent=2))
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys and k != "top_ops"]
    with atomic_open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(
            f, fieldnames=keys + ["threads", "cpu", "gpu"], extrasaction="ignore"
        )
        writer.writeheader()
        for r in rows:
            writer.writerow({**r, "threads": env["torch_threads"], "cpu": env["cpu"],
                             "gpu": env["gpu"]})  # fmt: skip
    return json_path, csv_path


def run(cfg: Config) -> list[dict]:
    import model_flop_params

    unknown = [b for b in cfg.backends if b not in BACKENDS]
    if unknown:
        raise SystemExit(f"unknown backend(s) {unknown}; valid: {', '.join(BACKENDS)}")
    if any(b < 1 for b in cfg.batch):
        raise SystemExit(f"--batch sizes must be >= 1, got {cfg.batch}")
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    try:
        subjects = load_subjects(cfg)
    except KeyError as e:
        raise SystemExit(str(e).strip("'\"")) from e
    except CheckpointError as e:  # missing, unreadable or refused --checkpoint file
        raise SystemExit(f"error: {e}") from e
    env = environment(cfg.device)
    log(
        f"{env['cpu']} ({env['cpu_count']} CPUs, {env['torch_threads']} threads), "
        f"GPU: {env['gpu'] or 'none'}, torch {env['torch']}, onnxruntime {env['onnxruntime']}, "
        f"load average {env['load_average_1_5_15']}"
    )
    rows: list[dict] = []
    for subject in subjects:
        _clear_attention_caches(subject.model)  # deepcopy in count() refuses stale caches
        counts = model_flop_params.count(subject.model, subject.input_size[0])
        ws = Workspace(cfg, subject, out)
        reference, check_input = _reference(subject, cfg)
        for batch in cfg.batch:
            for backend in cfg.backends:
                log(f"{subject.tag} / {backend} / batch {batch} ...")
                row = measure(cfg, subject, backend, batch, ws, counts, reference, check_input)
                rows.append(row)
                if row["status"] != "ok":
                    log(f"  {row['status']}: {row['reason']}")
                else:
                    log(f"  {row['latency_ms']:.2f} ms median, {row['fps']:.1f} FPS")
    env["load_average_after"] = environment(cfg.device)["load_average_1_5_15"]
    json_path, csv_path = write_results(rows, env, cfg, out)
    table = format_table(rows)
    profiles = format_profiles(rows)
    if cfg.json:
        print(json.dumps(rows, indent=2))
        log(table)
        if profiles:
            log(profiles)
    else:
        print(table)
        if profiles:
            print(profiles)
    log(f"wrote {json_path} and {csv_path}")
    return rows


def main(argv: Sequence[str] | None = None) -> list[dict]:
    return run(parse_config(Config, argv, description=__doc__))


if __name__ == "__main__":
    main()
