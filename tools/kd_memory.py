"""Peak memory of one distillation step: frozen no-grad teacher vs the teacher's graph kept.

FastSegFormer's distillation (Computers and Electronics in Agriculture 217, 108604, 2024) runs
the Swin-T-Att-UNet teacher at 512x512 beside the student at 224x224. The original code runs
the teacher with autograd on, so every teacher activation is kept for backward (11.8 GB on its
GPU at batch 6). `utils.training.distillation.DistillationTask` runs it in inference mode.

This tool measures one training step (zero_grad, forward, backward, Adam step) of both, each in
a fresh subprocess so the peaks do not mix:

- ``no_grad``: `DistillationTask` as training uses it;
- ``graph_kept``: the same task with the teacher's parameters requiring grad, its forward run
  with autograd on and its outputs (hence its whole graph) held until the step ends, as in the
  original. The original additionally back-propagates into the teacher (its ``f_t.detach()``
  discards the result), which costs still more memory, so this baseline is a lower bound.

Memory: on CUDA ``torch.cuda.max_memory_allocated`` (peak, and peak minus what was allocated
before the step); on CPU the process's peak resident set size (``ru_maxrss``) and the same
minus the resident size just before the step. Models are randomly initialised (weights do not
change memory). Both variants start from the same seed and the same batch.

    python -m tools.kd_memory                         # batch 6, teacher 512, student 224
    python -m tools.kd_memory --batch-size 2 --device cpu --kd logits
"""

from __future__ import annotations

import gc
import json
import os
import platform
import resource
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # also runnable as `python tools/kd_memory.py`
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

import nets  # noqa: E402
from utils.cli import parse_config  # noqa: E402
from utils.training.distillation import KD_MODES, DistillationTask  # noqa: E402
from utils.training.kd_losses import resize_to  # noqa: E402
from utils.training.losses import build_seg_loss  # noqa: E402

VARIANTS = ("no_grad", "graph_kept")


@dataclass
class Config:
    student: str = "fastsegformer_p"  # student model name (nets.MODELS)
    teacher: str = "swin_t_att_unet"  # teacher model name (nets.MODELS)
    num_classes: int = 4  # classes of both models
    batch_size: int = 6  # the original's distillation batch
    teacher_input_size: int = 512  # the loader's (and teacher's) image size
    input_size: int = 224  # the student's image size
    kd: Literal[KD_MODES] = "logits+nfd"  # KD1 'logits' / KD2 'logits+nfd'
    device: Literal["auto", "cpu", "cuda"] = "auto"  # where the step runs
    threads: int = 2  # torch CPU threads
    variant: Literal[("both", *VARIANTS)] = "both"  # both: run each in its own subprocess


class TeacherGraphKeptTask(DistillationTask):
    """The original's memory behaviour: teacher activations kept for backward until step end."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.teacher.requires_grad_(True)  # the original never freezes the teacher
        self.kept: list = []

    def run_teacher(
        self, images: torch.Tensor, logits_size: Sequence[int] | None = None
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        if self.kd == "logits":
            features, logits = [], self.teacher(images)
        else:
            features, logits = self.teacher(images, return_features=True)
        if logits_size is not None:
            logits = resize_to(logits, logits_size)
        self.kept.append((features, logits))  # the graph lives as long as these outputs
        return list(features), logits


def _current_rss_bytes() -> int:
    """Resident set size now (Linux /proc), or the peak so far where /proc is absent."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return _peak_rss_bytes()


def _peak_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB on Linux


def measure(cfg: Config, variant: str) -> dict:
    """Peak memory of one step of `variant` in this process (call once per process on CPU)."""
    device = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device
    )
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(0)
    student = nets.build_model(cfg.student, num_classes=cfg.num_classes)
    teacher = nets.build_model(cfg.teacher, num_classes=cfg.num_classes)
    task_cls = TeacherGraphKeptTask if variant == "graph_kept" else DistillationTask
    task = task_cls(
        student,
        teacher,
        build_seg_loss("ce"),
        student_size=(cfg.input_size, cfg.input_size),
        teacher_size=(cfg.teacher_input_size, cfg.teacher_input_size),
        kd=cfg.kd,
    ).to(device)
    task.train()
    optimizer = torch.optim.Adam([p for p in task.parameters() if p.requires_grad], lr=1e-4)
    g = torch.Generator().manual_seed(0)
    size = cfg.teacher_input_size
    images = torch.rand(cfg.batch_size, 3, size, size, generator=g).to(device)
    labels = torch.randint(0, cfg.num_classes, (cfg.batch_size, size, size), generator=g)
    labels = labels.to(device)

    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
    else:
        before = _current_rss_bytes()
        peak_before_step = _peak_rss_bytes()

    optimizer.zero_grad(set_to_none=True)
    terms = task(images, labels)
    terms["loss"].backward()
    optimizer.step()
    if isinstance(task, TeacherGraphKeptTask):
        task.kept.clear()

    if device.type == "cuda":
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device)
        measure_name = "torch.cuda.max_memory_allocated"
    else:
        peak = _peak_rss_bytes()
        measure_name = "peak RSS (ru_maxrss)"
        if peak <= peak_before_step:
            print(
                "warning: the step did not raise the process's peak RSS; set-up peaked higher",
                file=sys.stderr,
            )
    return {
        "variant": variant,
        "device": str(device),
        "measure": measure_name,
        "peak_bytes": int(peak),
        "before_step_bytes": int(before),
        "step_bytes": int(peak - before),
        "loss": float(terms["loss"].detach()),
    }


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f}"


def main(argv: Sequence[str] | None = None) -> None:
    cfg = parse_config(Config, argv, description=__doc__)
    if cfg.variant != "both":
        print(json.dumps(measure(cfg, cfg.variant)))
        return

    results = []
    passthrough = [a for a in (argv if argv is not None else sys.argv[1:]) if a]
    for variant in VARIANTS:
        cmd = [sys.executable, "-m", "tools.kd_memory", *passthrough, "--variant", variant]
        env = dict(os.environ, OMP_NUM_THREADS=str(cfg.threads))
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr}")
        sys.stderr.write(proc.stderr)
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))

    ours, kept = results
    print(
        f"one distillation step: student {cfg.student} @ {cfg.input_size}, teacher {cfg.teacher}"
        f" @ {cfg.teacher_input_size}, batch {cfg.batch_size}, kd {cfg.kd}, {ours['device']}, "
        f"torch {torch.__version__}, {platform.machine()} {os.cpu_count()} CPUs, "
        f"{ours['measure']}"
    )
    print("| teacher | peak GiB | peak - before step GiB |")
    print("|---|---|---|")
    for name, r in (("no_grad (ours)", ours), ("graph kept (original)", kept)):
        print(f"| {name} | {_gib(r['peak_bytes'])} | {_gib(r['step_bytes'])} |")
    print(
        f"ratio ours / graph kept: peak {ours['peak_bytes'] / kept['peak_bytes']:.2f}, "
        f"step {ours['step_bytes'] / max(kept['step_bytes'], 1):.2f}"
    )


if __name__ == "__main__":
    main()
