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
    python speeding.py --models fastsegformer_e --rounds 5 --baseline ort-fp32  # speed-ups

Backends: torch-fp32 (eager), torch-fp32-cl (channels_last), torch-fp32-fused (conv+BN folded,
utils.deploy.optimize), torch-fp16 (CUDA, half weights), torch-compile (torch.compile of the folded
model; CUDA graphs on CUDA), ort-fp32 (ONNX Runtime, graph optimised; CUDA provider on
--device cuda), ort-fp32-noopt (ONNX Runtime with its optimiser off, for comparison), ort-int8
(static INT8 QDQ, CPU), ov-fp32 (OpenVINO CPU plugin, float32), ov-bf16 (the same IR in
bfloat16), ov-int8 (OpenVINO, NNCF post-training INT8, its unquantised remainder in float32),
ov-int8-bf16 (the same INT8 IR, its remainder in bfloat16), auto (the fastest of the OpenVINO
backends that keeps accuracy against fp32 on held-out photos, as `--backend auto` of the other
scripts; the row names the one it chose). The bf16 backends run only on CPUs that compute bf16
natively (AVX512-BF16 or AMX); elsewhere their rows are skipped with the reason. INT8 rows say
which precision their remainder runs in (`remainder_precision`). INT8 calibrates on the
training split of --calib-data (or --data); without one it calibrates on a few generated
synthetic oranges and the row says so ("calibration"). Rows that cannot run here (CUDA on a
machine without a GPU, fp16 on the CPU) are kept with status "skipped" and the reason.

Rounds (--rounds N, default 3): every (model, backend, batch) row runs once per round, each
time in its own fresh process, rounds interleaved (A B C, A B C, ...), so the drift of a shared
or throttling CPU lands on every row alike (utils/deploy/rounds.py). A row reports the median
over rounds of each round's median latency (`latency_ms`), every round's figure
(`round_latencies_ms`) and their spread; --baseline BACKEND adds each row's speed-up against
that backend's row of the same model and batch, taken round by round (`speedup_vs_baseline`,
the median of the per-round ratios). A separate child exports and quantises what the rows
need first; the parent runs no inference. --isolation none times the rows in this process
(quicker; tests; biased: one runtime's idle worker threads slow the next one).

Self-check (--check-bias, default `first`): in every round, the first batch-1 row of each
runtime (ONNX Runtime, OpenVINO; `all`: every such row) is followed by the same file timed in a
bare process that holds only numpy and that runtime (utils/deploy/bare_timing.py); the row's
`bias_ratio` (row / bare, median over rounds) must be within 10%, and the table says whether it
is.

Writes OUT/speed_<date-time>.json (environment: CPU/GPU, CPU flags, library versions, threads,
load average before and after, isolation, rounds; config; rows) and .csv, plus the exported
files under OUT/models/<date-time>/. See docs/benchmarks.md.
"""

from __future__ import annotations

import copy
import csv
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

import nets
from nets.checkpoint import CheckpointError, read_project_checkpoint
from nets.profile import complexity
from utils.cli import config_to_dict, parse_config
from utils.data.class_names import default_class_names
from utils.data.preprocess import letterbox, read_image, to_tensor
from utils.deploy.backends import (
    AUTO_CANDIDATES,
    INT8_BACKENDS,
    choose_fastest,
    ov_precision,
    runtime_available,
)
from utils.deploy.onnx_export import export_onnx
from utils.deploy.openvino_export import (
    OV_EXCLUDE_POLICIES,
    quantize_openvino,
    save_openvino,
    to_openvino,
)
from utils.deploy.optimize import (
    CALIBRATION_METHODS,
    INT8_FORMATS,
    INT8_OP_SETS,
    ORT_LEVELS,
    ImageCalibrationReader,
    _clear_attention_caches,
    fold_batchnorm,
    optimize_onnx,
    ort_session,
    profile_top_ops,
    quantize_int8,
)
from utils.deploy.rounds import (
    BIAS_CHECKS,
    BIAS_TOLERANCE,
    bare_median,
    bias_fields,
    in_fresh_process,
    over_rounds,
    ratio_by_round,
    schedule,
    wants_bias_check,
)
from utils.deploy.runtimes import OpenVinoBackend
from utils.deploy.timing import benchmark, cpu_name, environment
from utils.deploy.torch_runtime import cuda_sync
from utils.fileio import atomic_open, write_text
from utils.inference.calibration import calibration_photos
from utils.inference.evaluate import evaluate
from utils.inference.open_model import open_model
from utils.inference.predictor import Predictor

BACKENDS = (
    "torch-fp32",
    "torch-fp32-cl",
    "torch-fp32-fused",
    "torch-fp16",
    "torch-compile",
    "ort-fp32",
    "ort-fp32-noopt",
    "ort-int8",
    "ov-fp32",
    "ov-bf16",
    "ov-int8",
    "ov-int8-bf16",
    "auto",
)
DEFAULT_BACKENDS = (
    "torch-fp32",
    "torch-fp32-cl",
    "torch-fp32-fused",
    "torch-fp16",
    "ort-fp32",
    "ort-int8",
    "ov-fp32",
    "ov-bf16",
    "ov-int8",
    "ov-int8-bf16",
)
ISOLATION = {
    "process": "each row timed in its own spawned child process, once per round, rounds "
    "interleaved; exports and quantisation done beforehand in another child; the parent runs "
    "no inference",
    "none": "rows timed one after another in one process, rounds interleaved",
}
RUNTIME_OF = {"ort": "onnxruntime", "ov": "openvino", "auto": "openvino"}  # backend prefix
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
    runs: int = 100  # timed runs per row and round
    warmup: int = 10  # untimed runs before timing
    rounds: int = 3  # rounds: every row once per round, in a fresh process, interleaved
    baseline: str = ""  # a backend of --backends: add each row's speed-up against it
    check_bias: Literal[tuple(BIAS_CHECKS)] = "first"  # rows also timed in a bare process
    batch: tuple[int, ...] = (1,)  # batch sizes (1 = latency)
    threads: int = 0  # CPU threads (0: torch's default)
    # end to end on a photo through the Predictor (preprocess + inference + postprocess)
    e2e: bool = True  # measure end-to-end FPS on a photo
    e2e_runs: int = 30  # timed end-to-end runs
    photo: str = ""  # photo for end to end (default: a sample)
    # ONNX Runtime, OpenVINO and INT8
    ort_level: Literal[ORT_LEVELS] = "all"  # ONNX Runtime graph optimiser level
    data: str = "data/synthetic_oranges"  # VOC root for calibration/accuracy
    calib_data: str = ""  # VOC root for INT8 calibration (default: --data)
    calib_split: str = "train"  # calibration split
    calib_images: int = 200  # calibration photos (at most)
    isolation: Literal[tuple(ISOLATION)] = "process"  # process: one child per row (fair); none
    calib_method: Literal[CALIBRATION_METHODS] = "minmax"  # INT8 calibration
    int8_exclude: Literal[OV_EXCLUDE_POLICIES] = "head"  # kept in float (head+depthwise: OV only)
    int8_ops: Literal[tuple(INT8_OP_SETS)] = "conv"  # ops to quantise: Conv/MatMul or all
    per_channel: bool = True  # per-channel INT8 weights
    int8_format: Literal[INT8_FORMATS] = "qdq"  # ort-int8: QDQ or QOperator graph
    ov_transformer: bool = False  # ov-int8: NNCF's transformer scheme (attention MatMuls)
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
    num_classes_built: int | None = None  # registry models: the class count they were built with

    @property
    def ref(self) -> tuple:
        """What a child process needs to rebuild this subject (same weights)."""
        if self.checkpoint is not None:
            return ("checkpoint", self.checkpoint)
        return ("model", self.name, self.num_classes_built)

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
        opened = open_model(path, backend="torch", trust=cfg.trust_checkpoint)
        if opened.model is None:
            raise CheckpointError(
                f"{path}: speeding.py converts a PyTorch checkpoint (.pth) to every backend; "
                f"an exported file is timed by its own runtime (utils.line.bench --checkpoint)"
            )
        subjects.append(
            Subject(
                opened.model.build_config["name"],
                opened.model.eval(),
                opened.input_size,
                opened.mean,
                opened.std,
                opened.class_names,
                str(path),
            )
        )
    names = cfg.models or ([] if cfg.checkpoint else sorted(nets.MODELS))
    for name in names:
        subjects.append(_random_subject(name, cfg.num_classes))
    return subjects


def _random_subject(name: str, num_classes: int) -> Subject:
    """A registry model with seeded random weights: every process builds the same one."""

    torch.manual_seed(0)
    model = nets.build_model(name, num_classes=num_classes).eval()
    s = int(model.default_input_size)
    return Subject(name, model, (s, s), num_classes_built=num_classes)


def _rebuild_subject(ref: tuple, trust: bool = False) -> Subject:
    if ref[0] == "model":
        return _random_subject(ref[1], ref[2])
    return load_subjects(Config(checkpoint=(ref[1],), trust_checkpoint=trust))[0]


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

    def top_ops(runs: int) -> list:

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
                  cuda_sync(device), top_ops)  # fmt: skip


def _ort_runner(
    path: Path, providers: list[str], level: str, threads: int, x: np.ndarray
) -> Runner:

    session = ort_session(path, providers, level=level, threads=threads)
    name = session.get_inputs()[0].name

    def infer(batch: np.ndarray) -> np.ndarray:
        return session.run(None, {name: batch.astype(np.float32, copy=False)})[0]

    def top_ops(runs: int) -> list:
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
        top_ops,
        {"providers": session.get_providers()[:1], "ort_level": level, "model_file": str(path)},
    )


class Workspace:
    """Exported files of one subject (ONNX, OpenVINO IR), made once and reused by the rows.

    Files already in the folder are reused, so the rows of one run (in one process or in
    several) share them; each run writes into its own folder.
    """

    def __init__(
        self, cfg: Config, subject: Subject, out: Path, folder: Path | None = None
    ) -> None:
        self.cfg, self.subject = cfg, subject
        self.dir = folder if folder is not None else out / "models"
        self.files: dict[tuple[str, bool], Path] = {}
        self._calibration: tuple[list, str] | None = None

    def _stem(self, dynamic: bool) -> str:
        return f"{self.subject.tag}_{'dynbatch' if dynamic else 'b1'}"

    def metadata(self) -> dict[str, Any]:
        s = self.subject
        return {
            "model": getattr(s.model, "build_config", None),
            "num_classes": int(s.model.num_classes),
            "class_names": s.class_names,
            "input_size": list(s.input_size),
            "preprocess": {"mean": s.mean, "std": s.std, "fill": 128},
            "source_checkpoint": s.checkpoint,
        }

    def fp32(self, dynamic: bool) -> Path:
        key = ("fp32", dynamic)
        raw = self.dir / f"{self._stem(dynamic)}_fp32.onnx"
        opt = raw.with_name(raw.stem + "_opt.onnx")
        if key not in self.files and raw.is_file() and opt.is_file():
            self.files[("raw", dynamic)], self.files[key] = raw, opt
        if key not in self.files:
            s = self.subject
            t0 = time.perf_counter()
            report = export_onnx(
                s.model,
                raw,
                s.input_size,
                opset=self.cfg.opset,
                dynamic_batch=dynamic,
                metadata=self.metadata(),
            )
            log(f"  {report.summary()} [{time.perf_counter() - t0:.1f} s]")
            self.files[("raw", dynamic)] = raw
            self.files[key] = optimize_onnx(raw, opt)
        return self.files[key]

    def raw(self, dynamic: bool) -> Path:
        self.fp32(dynamic)
        return self.files[("raw", dynamic)]

    def calibration(self) -> tuple[Any, str]:
        """(ImageCalibrationReader, note): training photos of --calib-data / --data, or
        generated synthetic oranges when there are none (the note says which)."""

        if self._calibration is None:
            cfg = self.cfg
            data = cfg.calib_data or cfg.data
            self._calibration = calibration_photos(data, cfg.calib_split, cfg.calib_images)
        photos, note = self._calibration
        s = self.subject
        return ImageCalibrationReader(photos, s.input_size, "images", s.mean, s.std), note

    def int8(self, dynamic: bool) -> Path:
        key = ("int8", dynamic)
        dst = self.dir / f"{self._stem(dynamic)}_int8.onnx"
        if key not in self.files and not dst.is_file():
            cfg = self.cfg
            reader, note = self.calibration()
            t0 = time.perf_counter()
            quantize_int8(
                self.raw(dynamic),
                dst,
                reader,
                per_channel=cfg.per_channel,
                method=cfg.calib_method,
                exclude=cfg.int8_exclude,
                ops=cfg.int8_ops,
                quant_format=cfg.int8_format,
            )
            took = time.perf_counter() - t0
            log(
                f"  quantised {dst} ({note}, {cfg.calib_method}, exclude {cfg.int8_exclude}, "
                f"ops {cfg.int8_ops}) [{took:.1f} s]"
            )
        self.files[key] = dst
        return dst

    def openvino(self, int8: bool) -> Path:
        """The OpenVINO IR (batch 1; the runtime reshapes it for other batch sizes)."""
        key = ("ov-int8" if int8 else "ov-fp32", False)
        variant = f"_{self.cfg.int8_exclude}{'_tf' if self.cfg.ov_transformer else ''}"
        dst = self.dir / f"{self.subject.tag}_{key[0]}{variant if int8 else ''}.xml"
        if key not in self.files and not dst.is_file():
            s, cfg = self.subject, self.cfg
            fp32 = self.dir / f"{s.tag}_ov-fp32.xml"
            t0 = time.perf_counter()
            if fp32.is_file():
                import openvino as ov

                ov_model = ov.Core().read_model(str(fp32))
            else:
                ov_model = to_openvino(s.model, s.input_size)
                save_openvino(ov_model, fp32, {**self.metadata(), "precision": "fp32"})
                log(f"  converted {fp32} [{time.perf_counter() - t0:.1f} s]")
            if int8:
                reader, note = self.calibration()
                t0 = time.perf_counter()
                q = quantize_openvino(
                    ov_model,
                    reader.inputs(),
                    exclude=cfg.int8_exclude,
                    transformer=cfg.ov_transformer,
                )
                meta = {**self.metadata(), "precision": "int8", "calibration": note}
                save_openvino(q, dst, meta)
                log(f"  quantised {dst} (NNCF, {note}) [{time.perf_counter() - t0:.1f} s]")
        self.files[key] = dst
        return dst

    def held_out(self) -> tuple[np.ndarray, np.ndarray]:
        """(inputs, fp32 eager logits) of a few photos kept out of calibration: auto's check."""
        path = self.dir / f"{self.subject.tag}_held_out.npz"
        if not path.is_file():
            cfg, s = self.cfg, self.subject
            photos, _ = calibration_photos(cfg.calib_data or cfg.data, "val", 8, seed=1)
            inputs = np.stack(
                [
                    to_tensor(
                        letterbox(p if isinstance(p, np.ndarray) else read_image(p), s.input_size)[
                            0
                        ],
                        s.mean,
                        s.std,
                    )
                    for p in photos
                ]
            )  # (N, 3, h, w)
            with torch.inference_mode():
                ref = _copy(s.model)(torch.from_numpy(inputs)).float().numpy()
            path.parent.mkdir(parents=True, exist_ok=True)
            np.savez(path, inputs=inputs, reference=ref)
        saved = np.load(path)
        return saved["inputs"], saved["reference"]


def _ov_runner(path: Path, threads: int, x: np.ndarray, label: str) -> Runner:
    """Backend `label` (ov-fp32, ov-bf16, ov-int8, ov-int8-bf16) on the IR at `path`."""

    precision = ov_precision(label)
    backend = OpenVinoBackend(path, threads=threads, label=label, precision=precision)

    def top_ops(runs: int) -> list:
        profiled = OpenVinoBackend(
            path, threads=threads, label=label, perf_count=True, precision=precision
        )
        request = profiled._request(x.shape[0])  # noqa: SLF001
        per_op: dict[str, float] = {}
        for _ in range(runs):
            request.infer({0: x})
            for info in request.profiling_info:
                op = f"{info.node_type} ({info.exec_type})"
                per_op[op] = per_op.get(op, 0.0) + info.real_time.total_seconds() * 1e3
        total = sum(per_op.values()) or 1.0
        ranked = sorted(per_op.items(), key=lambda kv: -kv[1])[:10]
        return [(op, ms / runs, ms / total) for op, ms in ranked]

    float_precision = "bf16" if precision == "bf16" else "fp32"
    notes: dict[str, Any] = {"openvino_file": path.name, "model_file": str(path),
                             "inference_precision": precision}  # fmt: skip
    if backend.int8:
        notes["remainder_precision"] = float_precision  # what the unquantised ops run in
    return Runner(
        "openvino",
        "int8" if backend.int8 else float_precision,
        lambda: backend(x),
        backend,
        None,
        top_ops,
        notes,
    )


def make_runner(
    backend: str,
    cfg: Config,
    subject: Subject,
    ws: Workspace,
    batch: int,
    decision: dict | None = None,
) -> Runner:
    """Prepare `backend` for `subject` at `batch`; Skip when it cannot run here.

    `decision`: what an earlier round of this row decided (auto's choice), kept so that every
    round times the same thing.
    """
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
        runner.notes["calibration"] = ws.calibration()[1]
        runner.notes["remainder_precision"] = "fp32"  # ONNX Runtime's CPU float path
        return runner
    if backend.startswith("ov-") or backend == "auto":
        if cuda:
            raise Skip(f"{backend} runs OpenVINO's CPU plugin; use --device cpu")
        missing = runtime_available("ov-int8" if backend == "auto" else backend)
        if missing:
            raise Skip(missing)
        xn = x.numpy()
        if backend != "auto":
            int8 = backend in INT8_BACKENDS
            runner = _ov_runner(ws.openvino(int8), threads, xn, backend)
            if int8:
                runner.notes["calibration"] = ws.calibration()[1]
            return runner
        return _auto_runner(subject, ws, threads, xn, decision)
    raise ValueError(f"unknown backend {backend!r}; valid: {', '.join(BACKENDS)}")


def auto_candidates() -> list[str]:
    """The OpenVINO backends `auto` weighs here (the bf16 ones where the CPU has native bf16)."""
    return [n for n in AUTO_CANDIDATES if n.startswith("ov-") and runtime_available(n) is None]


def _auto_runner(
    subject: Subject,
    ws: Workspace,
    threads: int,
    x: np.ndarray,
    decision: dict | None = None,
) -> Runner:
    """`--backend auto` as the other scripts run it: quantise, check INT8 and bf16 against fp32
    on held-out photos, time the candidates interleaved, keep the fastest; the row names it.

    With `decision` (the first round's choice) the chosen backend is timed without choosing
    again, as a deployment reuses its cached choice."""

    if decision is None:
        inputs, reference = ws.held_out()  # made before any timing (the prepare child)
        candidates = {
            n: OpenVinoBackend(ws.openvino(n in INT8_BACKENDS), threads=threads, label=n,
                               precision=ov_precision(n))
            for n in auto_candidates()
        }  # fmt: skip
        choice = choose_fastest(
            candidates, reference, inputs, int(subject.model.num_classes), cpu=cpu_name(),
            threads=threads,
        )  # fmt: skip
        decision = {"auto_chose": choice.chosen, "auto": choice.as_dict(),
                    "auto_line": choice.line()}  # fmt: skip
    chosen = decision["auto_chose"]
    runner = _ov_runner(ws.openvino(chosen in INT8_BACKENDS), threads, x, chosen)
    runner.notes.update(decision)
    if chosen in INT8_BACKENDS:
        runner.notes["calibration"] = ws.calibration()[1]
    return runner


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


def _predictor(subject: Subject, runner: Runner):  # noqa: ANN202 (utils.inference.predictor.Predictor)

    class _Backend:
        def __call__(self, batch: np.ndarray) -> np.ndarray:
            return runner.infer(batch)

    return Predictor(
        _Backend(),
        subject.input_size,
        int(subject.model.num_classes),
        subject.mean,
        subject.std,
        class_names=subject.class_names,
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
    first_round: bool = True,
    decision: dict | None = None,
) -> dict[str, Any]:
    """One round of one row: prepare the backend, time it, and (batch 1) end to end on a photo.

    The checks that give the same answer every round (logits against eager, --accuracy,
    --profile) run in the first round only.
    """

    row: dict[str, Any] = {
        "started": time.time(),  # when this round of the row began (the interleaving order)
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
        runner = make_runner(backend, cfg, subject, ws, batch, decision)
    except Skip as e:
        row.update(status="skipped", reason=str(e))
        return row
    except Exception as e:  # export/quantisation/compile failure: keep the row, say why
        row.update(status="error", reason=f"{type(e).__name__}: {str(e).splitlines()[0][:300]}")
        return row
    row.update(runtime=runner.runtime, precision=runner.precision, **runner.notes)
    row["threads"] = torch.get_num_threads()
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
    if first_round and reference is not None and check_input is not None:
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
    if first_round and cfg.accuracy:
        row.update(_accuracy(cfg, subject, runner, backend))
    if first_round and cfg.profile and runner.profile is not None:
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
def _backend_name(row: dict) -> str:
    """The backend column: auto rows name the backend they chose ("auto:ov-int8")."""
    return f"auto:{row['auto_chose']}" if row.get("auto_chose") else row["backend"]


def format_table(rows: list[dict], baseline: str = "") -> str:
    """The rows as a text table: median over rounds, the rounds' range and spread, speed-up
    against `baseline`, and the harness self-check where it ran; then a legend."""

    def num(v: Any, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    head = (
        f"{'model':<16} {'backend':<20} {'b':>2} {'params M':>8} {'GFLOPs':>6} "
        f"{'median ms':>9} {'rounds min-max':>15} {'spread':>6} {'FPS':>7} {'e2e FPS':>7} "
        f"{'mIoU':>6} "
        + (f"{'x ' + baseline:>12} " if baseline else "")
        + f"{'vs bare':>12} status"
    )
    lines = [head, "-" * len(head)]
    rounds = 0
    for r in rows:
        spread = (
            f"{r['round_min_ms']:.1f}-{r['round_max_ms']:.1f}"
            if r.get("round_min_ms") is not None
            else "-"
        )
        pct = "-" if r.get("round_spread_pct") is None else f"{r['round_spread_pct']:.0f}%"
        miou = None if r.get("miou") is None else 100 * r["miou"]
        status = r["status"] if r["status"] == "ok" else f"{r['status']}: {r['reason']}"
        if r.get("miou_error"):
            status += f"; mIoU not measured: {r['miou_error']}"
        bare = "-"
        if r.get("bias_ratio") is not None:
            bare = f"{r['bias_ratio']:.2f} {r['bias_check']}"
        speedup = f"{num(r.get('speedup_vs_baseline'), '.2f'):>12} " if baseline else ""
        rounds = max(rounds, len(r.get("round_latencies_ms") or []))
        lines.append(
            f"{r['model']:<16} {_backend_name(r):<20} {r['batch']:>2} "
            f"{num(r['params_m'], '.2f'):>8} "
            f"{num(r['gflops'], '.2f'):>6} {num(r['latency_ms'], '.2f'):>9} {spread:>15} "
            f"{pct:>6} {num(r['fps'], '.1f'):>7} {num(r.get('e2e_fps'), '.1f'):>7} "
            f"{num(miou, '.2f'):>6} {speedup}{bare:>12} {status}"
        )
    lines.append(
        f"median ms: median over {rounds} round(s) of each round's median, each round in a fresh "
        "process; spread: (max - min) / median of the rounds"
        + (f"; x {baseline}: speed-up against {baseline}, round by round" if baseline else "")
        + f"; vs bare: row / the same file in a bare runtime process, same rounds "
        f"(ok within {100 * BIAS_TOLERANCE:.0f}%)"
    )
    return "\n".join(lines)


def format_profiles(rows: list[dict]) -> str:
    lines = []
    for r in rows:
        if r.get("top_ops"):
            lines.append(f"top ops of {r['model']} / {_backend_name(r)} (ms per run, share):")
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
        keys += [k for k in r if k not in keys and k not in ("top_ops", "round_detail", "auto")]
    with atomic_open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(
            f, fieldnames=keys + ["threads", "cpu", "gpu"], extrasaction="ignore"
        )
        writer.writeheader()
        for r in rows:
            cells = {k: json.dumps(v) if isinstance(v, list) else v for k, v in r.items()}
            writer.writerow({**cells, "threads": r.get("threads", env["torch_threads"]),
                             "cpu": env["cpu"], "gpu": env["gpu"]})  # fmt: skip
    return json_path, csv_path


def _log_row(row: dict) -> None:
    if row["status"] != "ok":
        log(f"  {row['status']}: {row['reason']}")
    else:
        chose = f" (auto chose {row['auto_chose']})" if row.get("auto_chose") else ""
        log(f"  {row['latency_ms']:.2f} ms median, {row['fps']:.1f} FPS{chose}")


def _prepare(cfg: Config, subject: Subject, folder: Path) -> dict[str, Any]:
    """Counts, the eager reference on the photo, and every file the rows will load."""

    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    _clear_attention_caches(subject.model)  # deepcopy in count() refuses stale caches
    counts = complexity(subject.model, subject.input_size[0])
    reference, check_input = _reference(subject, cfg)
    if reference is not None:
        np.savez(folder / f"{subject.tag}_reference.npz", reference=reference, x=check_input)
    ws = Workspace(cfg, subject, Path(cfg.out), folder)
    steps = {
        "ort-fp32": lambda d: ws.fp32(d),
        "ort-fp32-noopt": lambda d: ws.raw(d),
        "ort-int8": lambda d: ws.int8(d),
        "ov-fp32": lambda d: ws.openvino(False),
        "ov-bf16": lambda d: ws.openvino(False),
        "ov-int8": lambda d: ws.openvino(True),
        "ov-int8-bf16": lambda d: ws.openvino(True),
        "auto": lambda d: (ws.openvino(True), ws.openvino(False), ws.held_out()),
    }
    if cfg.device == "cpu":
        for backend in cfg.backends:
            for dynamic in sorted({b > 1 for b in cfg.batch}):
                try:
                    if backend in steps:
                        steps[backend](dynamic)
                except Exception as e:  # noqa: BLE001 - the row's own attempt reports it
                    log(f"  preparing {backend}: {type(e).__name__}: {str(e)[:200]}")
    return counts


def _load_reference(folder: Path, subject: Subject) -> tuple[np.ndarray | None, np.ndarray | None]:
    path = folder / f"{subject.tag}_reference.npz"
    if not path.is_file():
        return None, None
    saved = np.load(path)
    return saved["reference"], saved["x"]


def _child_prepare(cfg: Config, ref: tuple, folder: Path) -> dict[str, Any]:
    return _prepare(cfg, _rebuild_subject(ref, cfg.trust_checkpoint), folder)


def _child_row(
    cfg: Config,
    ref: tuple,
    backend: str,
    batch: int,
    folder: Path,
    counts: dict,
    first_round: bool = True,
    decision: dict | None = None,
) -> dict[str, Any]:

    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    subject = _rebuild_subject(ref, cfg.trust_checkpoint)
    ws = Workspace(cfg, subject, Path(cfg.out), folder)
    reference, check_input = _load_reference(folder, subject)
    row = measure(
        cfg, subject, backend, batch, ws, counts, reference, check_input, first_round, decision
    )
    row["process"] = os.getpid()
    return row


def _subject_refs(cfg: Config) -> list[tuple]:
    """The subjects as child processes rebuild them; unknown names and bad files fail here."""
    unknown = [m for m in cfg.models if m not in nets.MODELS]
    if unknown:
        raise SystemExit(f"unknown model(s) {unknown}; valid: {', '.join(sorted(nets.MODELS))}")
    for path in cfg.checkpoint:
        try:  # the safe reader: a refused or broken file stops here, before any child runs
            read_project_checkpoint(path, trust=cfg.trust_checkpoint)
        except CheckpointError as e:
            raise SystemExit(f"error: {e}") from e
    names = cfg.models or ([] if cfg.checkpoint else sorted(nets.MODELS))
    return [("checkpoint", str(p)) for p in cfg.checkpoint] + [
        ("model", name, cfg.num_classes) for name in names
    ]


@dataclass
class Item:
    """One row of the table, (model, backend, batch), and what each round measured of it."""

    subject: str  # the subject's tag
    backend: str
    batch: int
    measure_once: Callable[[bool, dict | None], dict]  # (first round?, decision) -> that round
    rounds: list[dict] = field(default_factory=list)
    bare_ms: list[float | None] = field(default_factory=list)  # the bias check, per round
    check_bias: bool = False

    @property
    def decision(self) -> dict | None:
        """What the first round decided and later rounds keep (auto's choice)."""
        first = self.rounds[0] if self.rounds else {}
        if not first.get("auto_chose"):
            return None
        return {k: first[k] for k in ("auto_chose", "auto", "auto_line")}


def _items(cfg: Config, out: Path, stamp: str) -> list[Item]:
    """The rows to measure, with how one round of each is measured (--isolation)."""

    items: list[Item] = []
    if cfg.isolation == "none":
        try:
            subjects = load_subjects(cfg)
        except KeyError as e:
            raise SystemExit(str(e).strip("'\"")) from e
        except CheckpointError as e:  # missing, unreadable or refused --checkpoint file
            raise SystemExit(f"error: {e}") from e
        for subject in subjects:
            folder = out / "models" / stamp / subject.tag
            folder.mkdir(parents=True, exist_ok=True)
            counts = _prepare(cfg, subject, folder)
            ws = Workspace(cfg, subject, out, folder)
            reference, check_input = _load_reference(folder, subject)
            for batch in cfg.batch:
                for backend in cfg.backends:

                    def once(first: bool, decision: dict | None, s=subject, k=backend, b=batch,
                             ws=ws, c=counts, ref=reference, x=check_input) -> dict:  # fmt: skip
                        return measure(cfg, s, k, b, ws, c, ref, x, first, decision)

                    items.append(Item(subject.tag, backend, batch, once))
        return items
    for ref in _subject_refs(cfg):
        folder = out / "models" / stamp / "_".join(str(p) for p in ref[1:2]).replace("/", "_")
        folder.mkdir(parents=True, exist_ok=True)
        log(f"{ref[1]}: preparing (exports, quantisation, reference) in a child process ...")
        counts = in_fresh_process(_child_prepare, cfg, ref, folder)
        for batch in cfg.batch:
            for backend in cfg.backends:

                def once(first: bool, decision: dict | None, ref=ref, k=backend, b=batch,
                         f=folder, c=counts) -> dict:  # fmt: skip
                    return in_fresh_process(_child_row, cfg, ref, k, b, f, c, first, decision)

                items.append(Item(str(ref[1]), backend, batch, once))
    return items


def _bare_twin(cfg: Config, row: dict) -> float | None:
    """The row's file timed in a bare process of its runtime (ms, median), None if it failed."""
    h, w = row["input_size"]
    return bare_median(
        row["runtime"], row["model_file"], (row["batch"], 3, h, w), log,
        threads=row["threads"], runs=cfg.runs, warmup=cfg.warmup,
        precision=row.get("inference_precision", "f32"), ort_level=row.get("ort_level", "all"),
    )  # fmt: skip


def combine(item: Item) -> dict[str, Any]:
    """The table row of `item` from its rounds: the first round's row (checks, accuracy,
    profile, auto's choice) with the figures over rounds (utils.deploy.rounds.over_rounds)."""

    first = item.rounds[0]
    row = dict(first)
    if first["status"] != "ok":
        return row
    latencies = [r["latency_ms"] if r["status"] == "ok" else None for r in item.rounds]
    row.update(over_rounds(latencies))
    row["fps"] = item.batch * 1e3 / row["latency_ms"]
    row["latency_min_ms"] = min(r["latency_min_ms"] for r in item.rounds if r["status"] == "ok")
    e2e = [r["e2e_ms"] for r in item.rounds if r.get("e2e_ms") is not None]
    if e2e:
        row["e2e_ms"] = float(np.median(e2e))
        row["e2e_fps"] = 1e3 / row["e2e_ms"]
    for key in ("latency_mean_ms", "latency_std_ms", "latency_p10_ms", "latency_p90_ms"):
        row.pop(key, None)  # one round's; every round's are in round_detail
    row.pop("process", None)
    row.pop("started", None)
    row["round_detail"] = [
        {k: r.get(k) for k in ("status", "reason", "started", "latency_ms", "latency_p10_ms",
                               "latency_p90_ms", "latency_min_ms", "e2e_ms", "process")}
        for r in item.rounds
    ]  # fmt: skip
    row["rounds"] = len(item.rounds)
    if item.check_bias:
        row.update(bias_fields(latencies, item.bare_ms))
    return row


def add_speedups(rows: list[dict], baseline: str) -> None:
    """speedup_vs_baseline of every row: baseline / row latency of the same model and batch,
    round by round (utils.deploy.rounds.ratio_by_round); None where the baseline did not run."""
    base = {
        (r["model"], r.get("checkpoint"), r["batch"]): r
        for r in rows
        if r["backend"] == baseline and r["status"] == "ok"
    }
    for r in rows:
        b = base.get((r["model"], r.get("checkpoint"), r["batch"]))
        ok = b is not None and r["status"] == "ok"
        r["baseline"] = baseline
        r["speedup_vs_baseline"] = (
            ratio_by_round(b["round_latencies_ms"], r["round_latencies_ms"]) if ok else None
        )


def run(cfg: Config) -> list[dict]:
    unknown = [b for b in cfg.backends if b not in BACKENDS]
    if unknown:
        raise SystemExit(f"unknown backend(s) {unknown}; valid: {', '.join(BACKENDS)}")
    if any(b < 1 for b in cfg.batch):
        raise SystemExit(f"--batch sizes must be >= 1, got {cfg.batch}")
    if cfg.isolation not in ISOLATION:
        raise SystemExit(f"--isolation {cfg.isolation!r}: use one of {', '.join(ISOLATION)}")
    if cfg.rounds < 1:
        raise SystemExit(f"--rounds must be >= 1, got {cfg.rounds}")
    if cfg.baseline and cfg.baseline not in cfg.backends:
        raise SystemExit(
            f"--baseline {cfg.baseline!r} is not one of --backends ({', '.join(cfg.backends)})"
        )
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    env = environment(cfg.device)
    env["isolation"] = f"{cfg.isolation}: {ISOLATION[cfg.isolation]}"
    env["rounds"] = cfg.rounds
    env["check_bias"] = f"{cfg.check_bias}: {BIAS_CHECKS[cfg.check_bias]}"
    log(
        f"{env['cpu']} ({env['cpu_count']} CPUs, {env['torch_threads']} threads; flags "
        f"{' '.join(env['cpu_flags']) or '-'}), GPU: {env['gpu'] or 'none'}, torch {env['torch']}"
        f", onnxruntime {env['onnxruntime']}, openvino {env['openvino']}, load average "
        f"{env['load_average_1_5_15']}; isolation {cfg.isolation}, {cfg.rounds} round(s)"
    )
    items = _items(cfg, out, stamp)
    checked: set[str] = set()
    for r, i in schedule(len(items), cfg.rounds):
        item = items[i]
        if r > 0 and item.rounds[0]["status"] != "ok":
            continue  # skipped or failed in the first round: nothing to time again
        log(f"round {r + 1}/{cfg.rounds}: {item.subject} / {item.backend} / batch "
            f"{item.batch} ...")  # fmt: skip
        row = item.measure_once(r == 0, item.decision)
        item.rounds.append(row)
        _log_row(row)
        if r == 0:
            item.check_bias = (
                cfg.device == "cpu" and item.batch == 1 and row["status"] == "ok"
                and wants_bias_check(cfg.check_bias, row.get("runtime", ""), checked)
            )  # fmt: skip
        if item.check_bias:
            item.bare_ms.append(_bare_twin(cfg, row) if row["status"] == "ok" else None)
    rows = [combine(item) for item in items]
    if cfg.baseline:
        add_speedups(rows, cfg.baseline)
    env["load_average_after"] = environment(cfg.device)["load_average_1_5_15"]
    json_path, csv_path = write_results(rows, env, cfg, out)
    table = format_table(rows, cfg.baseline)
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


def main(argv: list[str] | None = None) -> list[dict]:
    return run(parse_config(Config, argv, description=__doc__))


if __name__ == "__main__":
    main()
