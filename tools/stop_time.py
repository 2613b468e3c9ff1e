"""Time from a stop signal to the exit of a real training process (docs/training.md).

A cluster gives a stopped job a grace period (SLURM: 30 s by default) before killing it; in
that time train.py / train_distillation.py must finish the step in progress and write
interrupted.pth (utils/training/signals.py). This tool measures it on the machine at hand:
for each delay it starts the training command afresh (in its own folder under --out, with
--name), waits for its first epoch to begin ("epoch 1: training ..."), waits DELAY seconds
more, sends the signal, and times the process until it exits, and until it began writing
interrupted.pth (its temporary file appears: the step in progress is done):

    python tools/stop_time.py --delays 5 12 20 --command "python train.py --batch-size 32 \\
        --freeze-epochs 0 --epochs 3"
    python tools/stop_time.py --signal USR1 --command "python train_distillation.py \\
        --teacher-checkpoint T.pth --epochs 3"

One line per run (delay, seconds from the signal to the start of the write and to the exit,
exit status, the run's own one-line report), then the machine (CPU, its speed flags, load
average).
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # also runnable as `python tools/stop_time.py`
    sys.path.insert(0, str(ROOT))

from utils.cli import parse_config  # noqa: E402
from utils.deploy.timing import cpu_name  # noqa: E402
from utils.training.speed import speed_flags  # noqa: E402

STARTED = "epoch 1: training"  # the line train.py prints as its first epoch begins


@dataclass
class Config:
    command: str = ""  # the training command line, quoted (gets --save-dir and --name added)
    signal: str = "TERM"  # the signal to send: TERM, USR1 or INT
    delays: tuple[float, ...] = (5.0, 12.0, 20.0)  # seconds after the first epoch began
    out: str = "logs/stop_time"  # where the runs' folders go
    timeout: float = 900.0  # give up on a run after this many seconds


def time_one(cfg: Config, delay: float, name: str) -> dict:
    """One run of the command, stopped `delay` s into its first epoch."""
    command = [*shlex.split(cfg.command), "--save-dir", cfg.out, "--name", name]
    Path(cfg.out).mkdir(parents=True, exist_ok=True)
    err_path = Path(cfg.out) / f"{name}.stderr"
    with open(err_path, "w") as err:  # noqa: PTH123 (the progress bars: not read while running)
        proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=err, text=True)
        deadline = time.monotonic() + cfg.timeout
        for line in proc.stdout:
            if STARTED in line or time.monotonic() > deadline:
                break
        time.sleep(delay)
        if proc.poll() is not None:
            raise RuntimeError(f"{shlex.join(command)} ended before the signal; see {err_path}")
        run_dir = Path(cfg.out) / name
        sent = time.monotonic()
        proc.send_signal(getattr(signal, f"SIG{cfg.signal}"))
        writing = None
        while proc.poll() is None and time.monotonic() - sent < cfg.timeout:
            if writing is None and any(run_dir.glob(".interrupted.pth.*")):
                writing = time.monotonic() - sent
            time.sleep(0.005)
        status = proc.wait(timeout=cfg.timeout)
        seconds = time.monotonic() - sent
        proc.stdout.close()
    report = [ln for ln in err_path.read_text().splitlines() if "stopped by" in ln]
    return {
        "delay": delay, "seconds": seconds, "writing": writing, "status": status,
        "report": report[-1:],
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    cfg = parse_config(Config, argv, description=__doc__)
    if not cfg.command:
        print("stop_time.py: error: --command is required", file=sys.stderr)
        return 2
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for i, delay in enumerate(cfg.delays):
        row = time_one(cfg, delay, f"stop_{stamp}_{i}")
        report = row["report"][0] if row["report"] else "(no report line)"
        writing = "-" if row["writing"] is None else f"{row['writing']:.2f} s"
        print(
            f"delay {row['delay']:.0f} s: SIG{cfg.signal} -> writing interrupted.pth {writing}, "
            f"-> exit {row['seconds']:.2f} s, status {row['status']} | {report}",
            flush=True,
        )
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"machine: {cpu_name()}, {os.cpu_count()} CPUs, flags {' '.join(speed_flags())}, "
          f"load average {load}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
