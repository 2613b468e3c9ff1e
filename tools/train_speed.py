"""Training speed: images/s of a full training step per model, precision, memory format and
compile, and of the data loader on its own. A benchmark, not a test.

FastSegFormer (Cai et al., Computers and Electronics in Agriculture 217, 108604, 2024) trains
for 1000 epochs; what one step costs decides what can be tried. A step here is exactly the
training loop's (utils.training.speed.TrainStep under a SpeedPlan, the loop's task, CE + dice
by default, Adam): forward, loss, the finite check, backward, optimizer step, on one fixed
batch already in memory. Every configuration of a model starts from the same weights; the
configurations are timed in turns (``--rounds``), so a change in the machine's load hits them
alike, and each row reports the median step. ``fp32 / nchw / no compile`` is the loop as the
original code runs it (float32, NCHW, the same loss and optimizer); ``speedup`` is relative
to it. With ``--kd`` the step is the distillation task's (teacher at ``--teacher-size``,
student at the model's size). The loader row times VOCSegmentation with the training
augmentation through a DataLoader (``--workers``), without any model.

    python tools/train_speed.py                                   # -P: fp32 NCHW vs channels-last
    python tools/train_speed.py --models all --rounds 2           # the per-family table
    python tools/train_speed.py --precisions fp32 bf16 --memory-formats nchw channels_last
    python tools/train_speed.py --compile False True --steps 10   # torch.compile, its first step
    python tools/train_speed.py --kd --batch 2 --models fastsegformer_p
    python tools/train_speed.py --json > rows.json                # JSON rows on stdout

Each row carries the CPU's name and its speed-relevant flags (avx2, avx512*, vnni, amx, bf16),
whether it computes bfloat16 natively, the thread count and the load average. On a CPU without
native bfloat16 the bf16 rows run emulated kernels: they show that bf16 runs, not how fast it
would be on a CPU made for it. See docs/training.md, "Training speed".
"""

from __future__ import annotations

import copy
import json
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # also runnable as `python tools/train_speed.py`
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

import nets  # noqa: E402
from utils.cli import config_to_dict, parse_config  # noqa: E402
from utils.data.dataset import VOCSegmentation  # noqa: E402
from utils.data.synthetic import generate_dataset  # noqa: E402
from utils.deploy.timing import environment  # noqa: E402
from utils.deploy.torch_runtime import cuda_sync  # noqa: E402
from utils.fileio import write_text  # noqa: E402
from utils.training.distillation import DistillationTask  # noqa: E402
from utils.training.losses import LOSSES, build_seg_loss  # noqa: E402
from utils.training.optimizers import OPTIMIZERS, build_optimizer  # noqa: E402
from utils.training.speed import (  # noqa: E402
    PRECISIONS,
    SpeedPlan,
    TrainStep,
    compile_module,
    cpu_has_native_bf16,
    speed_flags,
)
from utils.training.task import SegmentationTask  # noqa: E402

LAYOUTS = ("nchw", "channels_last")


@dataclass
class Config:
    # ------------------------------------------------------------------ editable block
    models: tuple[str, ...] = ("fastsegformer_p",)  # registry names, or 'all'
    precisions: tuple[Literal[PRECISIONS], ...] = ("fp32",)  # fp32, bf16 (autocast), fp16 (CUDA)
    memory_formats: tuple[Literal[LAYOUTS], ...] = LAYOUTS  # layouts of model and batch
    compile: tuple[bool, ...] = (False,)  # torch.compile off and/or on
    batch: int = 8  # images per step
    input_size: int = 0  # square input side (0: the model's default size)
    loss: Literal[tuple(LOSSES)] = "ce"  # main loss of the step
    dice: bool = True  # add the dice loss (the measured step: CE + dice)
    optimizer: Literal[tuple(OPTIMIZERS)] = "adam"  # optimizer of the step
    steps: int = 5  # timed steps per configuration and round
    warmup: int = 2  # untimed steps before the first round (compilation happens here)
    rounds: int = 3  # turns over the configurations (the median step of all rounds counts)
    device: Literal["auto", "cpu", "cuda"] = "cpu"  # where the steps run
    threads: int = 0  # torch CPU threads (0: torch's default)
    kd: bool = False  # time the distillation step (student = each model) instead
    teacher: str = "swin_t_att_unet"  # teacher of --kd
    teacher_size: int = 512  # teacher input side of --kd (the loader's size)
    teacher_memory_format: Literal[("auto", *LAYOUTS)] = "auto"  # teacher layout of --kd
    loader: bool = True  # also time the training data loader alone
    data: str = ""  # VOC root for the loader (empty: 64 synthetic oranges in a temp folder)
    workers: int = 2  # data-loading worker processes
    loader_batches: int = 20  # loader batches timed
    seed: int = 0  # weights and batch
    json: bool = False  # print the rows as JSON on stdout (the table goes to stderr)
    out: str = ""  # also write {environment, config, rows} as JSON to this file
    # ------------------------------------------------------------------ end of editable block


def log(*args: Any) -> None:
    print(*args, file=sys.stderr, flush=True)


def cpu_fields() -> dict[str, Any]:
    """What every row says about the machine it was measured on."""
    env = environment("cpu")
    return {
        "cpu": env["cpu"],
        "cpu_flags": speed_flags(),
        "native_bf16": cpu_has_native_bf16(),
        "threads": torch.get_num_threads(),
        "load_average": env["load_average_1_5_15"],
    }


@dataclass
class Candidate:
    """One configuration of one model, built and ready to step."""

    row: dict[str, Any]
    step: Callable[[], None]
    sync: Callable[[], None] | None
    times: list[float]


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def skip_reason(precision: str, device: torch.device) -> str | None:
    """Why a precision cannot run on `device` (None: it can)."""
    if device.type == "cuda" and not torch.cuda.is_available():
        return "CUDA is not available here"
    if precision == "fp16" and device.type != "cuda":
        return "float16 training needs CUDA (on the CPU use bf16)"
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return "this GPU has no bfloat16"
    return None


def build_candidate(
    cfg: Config,
    name: str,
    base: torch.nn.Module,
    teacher: torch.nn.Module | None,
    precision: str,
    layout: str,
    compiled: bool,
    device: torch.device,
    batch: tuple[torch.Tensor, torch.Tensor],
) -> Candidate:
    """A private copy of the model (and teacher) stepping under one plan."""
    plan = SpeedPlan(precision, layout, compiled, device.type)
    seg_loss = build_seg_loss(cfg.loss, cfg.dice)
    model = copy.deepcopy(base)
    if teacher is None:
        task: torch.nn.Module = SegmentationTask(model, seg_loss)
    else:
        size = int(batch[0].shape[-1])
        task = DistillationTask(
            model,
            copy.deepcopy(teacher),
            seg_loss,
            student_size=(cfg.input_size or model.default_input_size,) * 2,
            teacher_size=(size, size),
            teacher_memory_format=cfg.teacher_memory_format,
        )
    task.to(device)
    formats = task.set_memory_format(plan)
    task.train()
    params = [p for p in task.parameters() if p.requires_grad]
    optimizer = build_optimizer(cfg.optimizer, params, 1e-4, 0.9, 0.0)
    train_step = TrainStep(optimizer, params, plan)
    engine = compile_module(task) if compiled else task
    images, labels = batch

    def step() -> None:
        terms = train_step.forward(engine, images, labels)
        if not bool(torch.isfinite(terms["loss"].detach())):  # the loop's check (a sync)
            raise FloatingPointError(f"non-finite loss {float(terms['loss'])}")
        train_step.update(terms["loss"])

    row = {
        "model": name,
        "task": "kd" if teacher is not None else "seg",
        "precision": precision,
        "memory_format": layout,
        "compile": compiled,
        "images_per_s": None,
        "batch": int(images.shape[0]),
        "input_size": list(images.shape[-2:]),
        "device": str(device),
        "status": "ok",
        "reason": None,
    }
    if teacher is not None:
        row.update(
            teacher=cfg.teacher,
            teacher_memory_format=formats.get("teacher_memory_format"),
            student_size=list(task.student_size),
        )
    return Candidate(row, step, cuda_sync(device), [])


def time_model(cfg: Config, name: str, device: torch.device) -> list[dict[str, Any]]:
    """Rows of every configuration of model `name`, timed in turns."""
    torch.manual_seed(cfg.seed)
    base = nets.build_model(name, num_classes=4).train()
    teacher = None
    size = cfg.input_size or int(base.default_input_size)
    if cfg.kd:
        teacher = nets.build_model(cfg.teacher, num_classes=4).eval()
        size = cfg.teacher_size
    g = torch.Generator().manual_seed(cfg.seed)
    images = torch.rand(cfg.batch, 3, size, size, generator=g).to(device)  # (B, 3, H, W)
    labels = torch.randint(0, 4, (cfg.batch, size, size), generator=g).to(device)  # (B, H, W)

    rows, candidates = [], []
    for precision in cfg.precisions:
        for layout in cfg.memory_formats:
            for compiled in cfg.compile:
                reason = skip_reason(precision, device)
                cand = build_candidate(
                    cfg, name, base, teacher, precision, layout, compiled, device, (images, labels)
                ) if reason is None else None  # fmt: skip
                if cand is None:
                    rows.append({
                        "model": name, "precision": precision, "memory_format": layout,
                        "compile": compiled, "images_per_s": None, "status": "skipped",
                        "reason": reason,
                    })  # fmt: skip
                    continue
                t0 = time.perf_counter()
                try:
                    for _ in range(cfg.warmup):
                        cand.step()
                    if cand.sync:
                        cand.sync()
                except Exception as e:  # a compiler or kernel missing here: keep the row
                    first = (str(e).strip().splitlines() or [""])[0][:300]
                    cand.row.update(status="error", reason=f"{type(e).__name__}: {first}")
                    rows.append(cand.row)
                    continue
                cand.row["warmup_s"] = time.perf_counter() - t0
                rows.append(cand.row)
                candidates.append(cand)
                log(f"  {name} {precision} {layout} compile={compiled}: warm-up "
                    f"{cand.row['warmup_s']:.1f} s")  # fmt: skip
    for r in range(cfg.rounds):
        for cand in candidates:
            for _ in range(cfg.steps):
                t0 = time.perf_counter()
                cand.step()
                if cand.sync:
                    cand.sync()
                cand.times.append(time.perf_counter() - t0)
        log(f"  round {r + 1}/{cfg.rounds} done")
    for cand in candidates:
        ms = np.asarray(cand.times) * 1e3
        median = float(np.median(ms))
        cand.row.update(
            images_per_s=cand.row["batch"] * 1e3 / median,
            step_ms=median,
            step_p10_ms=float(np.percentile(ms, 10)),
            step_p90_ms=float(np.percentile(ms, 90)),
            steps_timed=len(ms),
        )
    baseline = next(
        (c.row for c in candidates
         if (c.row["precision"], c.row["memory_format"], c.row["compile"])
         == ("fp32", "nchw", False)),
        None,
    )  # fmt: skip
    for cand in candidates:
        if baseline is not None:
            cand.row["speedup"] = cand.row["images_per_s"] / baseline["images_per_s"]
    return rows


def time_loader(cfg: Config) -> dict[str, Any]:
    """images/s of the training loader alone (decode, augmentation, collation)."""
    size = cfg.input_size or 224
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(cfg.data) if cfg.data else generate_dataset(Path(tmp) / "syn", num=64, seed=0)
        dataset = VOCSegmentation(root, "train", size, 4, train=True)
        loader = DataLoader(
            dataset, batch_size=cfg.batch, shuffle=True, num_workers=cfg.workers,
            drop_last=True, persistent_workers=cfg.workers > 0,
        )  # fmt: skip
        it = iter(loader)
        next(it)  # worker start-up excluded
        n, t0 = 0, time.perf_counter()
        for _ in range(cfg.loader_batches):
            try:
                images, _ = next(it)
            except StopIteration:
                it = iter(loader)
                images, _ = next(it)
            n += images.shape[0]
        rate = n / (time.perf_counter() - t0)
    return {
        "model": None,
        "task": "loader",
        "precision": None,
        "memory_format": None,
        "compile": None,
        "images_per_s": rate,
        "batch": cfg.batch,
        "input_size": [size, size],
        "workers": cfg.workers,
        "data": str(cfg.data or "synthetic (64 photos, 512x512)"),
        "status": "ok",
        "reason": None,
    }


def format_table(rows: list[dict[str, Any]]) -> str:
    head = (
        f"{'model':<16} {'task':<6} {'precision':<9} {'layout':<13} {'compile':<7} "
        f"{'img/s':>7} {'step ms':>9} {'speedup':>7} status"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        ips = "-" if r.get("images_per_s") is None else f"{r['images_per_s']:.2f}"
        ms = "-" if r.get("step_ms") is None else f"{r['step_ms']:.0f}"
        up = "-" if r.get("speedup") is None else f"{r['speedup']:.2f}x"
        status = r["status"] if r["status"] == "ok" else f"{r['status']}: {r['reason']}"
        lines.append(
            f"{r['model'] or '(loader)':<16} {r.get('task', ''):<6} "
            f"{str(r['precision'] or '-'):<9} {str(r['memory_format'] or '-'):<13} "
            f"{str(r['compile'] if r['compile'] is not None else '-'):<7} "
            f"{ips:>7} {ms:>9} {up:>7} {status}"
        )
    return "\n".join(lines)


def run(cfg: Config) -> list[dict[str, Any]]:
    """Every row of `cfg` (see the module docstring)."""
    if cfg.batch < 1 or cfg.steps < 1 or cfg.rounds < 1 or cfg.warmup < 0:
        raise SystemExit("--batch, --steps and --rounds must be >= 1, --warmup >= 0")
    names = sorted(nets.MODELS) if cfg.models == ("all",) else list(cfg.models)
    unknown = [n for n in names if n not in nets.MODELS]
    if unknown:
        raise SystemExit(f"unknown model(s) {unknown}; valid: {', '.join(sorted(nets.MODELS))}")
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    device = _device(cfg.device)
    machine = cpu_fields()
    log(
        f"{machine['cpu']} ({', '.join(machine['cpu_flags']) or 'no flags read'}; native bf16: "
        f"{machine['native_bf16']}), {machine['threads']} threads, torch {torch.__version__}, "
        f"load average {machine['load_average']}"
    )
    rows: list[dict[str, Any]] = []
    for name in names:
        log(f"{name}{' (distillation step)' if cfg.kd else ''} ...")
        rows += time_model(cfg, name, device)
    if cfg.loader:
        log("data loader ...")
        rows.append(time_loader(cfg))
    after = cpu_fields()
    for row in rows:
        row.update(machine, load_average_after=after["load_average"])
    table = format_table(rows)
    if cfg.json:
        print(json.dumps(rows, indent=2))
        log(table)
    else:
        print(table)
    if cfg.out:
        doc = {"environment": environment(str(device)), "config": config_to_dict(cfg), "rows": rows}
        path = write_text(cfg.out, json.dumps(doc, indent=2))
        log(f"wrote {path}")
    return rows


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    return run(parse_config(Config, argv, description=__doc__))


if __name__ == "__main__":
    main()
