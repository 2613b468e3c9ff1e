"""train.py as a cluster runs it: a signal to the whole job, and the SLURM script of the docs.

SLURM stops a job by signalling every process of it, data-loader workers included; the test
does the same to the process group of a real train.py. The sbatch script
(tools/slurm_train.sbatch, shown in docs/training.md) is run by bash as SLURM would run it, with
a stand-in ``scontrol`` that records the requeue.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_train_helpers import make_tiny_voc, run_env

from nets.checkpoint import read_project_checkpoint

ROOT = Path(__file__).resolve().parents[1]
SBATCH = ROOT / "tools" / "slurm_train.sbatch"
TIMEOUT = 120


@pytest.fixture(scope="module")
def voc(tmp_path_factory) -> Path:
    return make_tiny_voc(tmp_path_factory.mktemp("voc"), num=60, size=64)  # 36 train, 12 val


def tiny(voc: Path, save_dir: Path, epochs: int, workers: int = 0) -> list[str]:
    """Fast-SCNN at 64x64, batch 2: 18 steps an epoch."""
    return [
        "--model", "fast_scnn", "--data", str(voc), "--input-size", "64", "--epochs",
        str(epochs), "--freeze-epochs", "0", "--batch-size", "2", "--freeze-batch-size", "2",
        "--eval-period", str(epochs), "--overlays", "0", "--workers", str(workers),
        "--device", "cpu", "--no-tensorboard", "--save-dir", str(save_dir),
    ]  # fmt: skip


def start(command: list[str], env: dict) -> subprocess.Popen:
    """`command` in a session of its own (its process group is the "job")."""
    return subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip


def wait_for_line(proc: subprocess.Popen, pattern: str) -> str:
    """Read `proc`'s stdout up to the first line matching `pattern`; the lines read."""
    seen = []
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if re.search(pattern, line):
            return "".join(seen)
    raise AssertionError(f"no line matching {pattern!r} in:\n{''.join(seen)}")


def wait_for_children(pid: int, n: int) -> list[int]:
    """The pids of `pid`'s children once it has `n` of them (Linux /proc)."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        if len(children) >= n:
            return [int(c) for c in children]
        time.sleep(0.01)
    raise AssertionError(f"process {pid} never had {n} children")


def test_sigterm_to_the_whole_job_with_loader_workers_writes_and_exits_143(voc, tmp_path):
    args = [*tiny(voc, tmp_path, epochs=200, workers=2), "--name", "run", "--resume", "auto"]
    proc = start([sys.executable, "train.py", *args], run_env())
    wait_for_line(proc, r"^epoch 1/200: ")
    workers = wait_for_children(proc.pid, 2)  # an epoch under way, its loader workers up
    os.killpg(proc.pid, signal.SIGTERM)  # train.py and its two loader workers, as SLURM does
    sent = time.monotonic()
    out, err = proc.communicate(timeout=TIMEOUT)
    seconds = time.monotonic() - sent
    assert proc.returncode == 143, err[-3000:]
    stopped = [line for line in err.splitlines() if "stopped by SIGTERM" in line]
    assert len(stopped) == 1 and "Traceback" not in err and "DataLoader worker" not in err
    assert stopped[0].startswith("train.py: stopped by SIGTERM after ")
    assert stopped[0].endswith("continue with the same command (its --resume auto takes the "
                               "newest checkpoint)")  # fmt: skip
    ckpt = read_project_checkpoint(tmp_path / "run" / "interrupted.pth")
    assert 1 <= ckpt["epoch"] < 200 and ckpt["optimizer"] is not None
    assert seconds < 30, f"{seconds:.1f} s from the signal to the exit"
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers)  # the workers ended too


def test_the_sbatch_script_passes_usr1_on_requeues_and_continues(voc, tmp_path):
    bin_dir = tmp_path / "bin"  # a stand-in scontrol that records what it is asked
    bin_dir.mkdir()
    scontrol = bin_dir / "scontrol"
    scontrol.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path / "scontrol.log"}\n')
    scontrol.chmod(0o755)
    env = run_env()
    env["PATH"] = os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), env["PATH"]])
    env.update(SLURM_JOB_ID="42", RUN="slurm_run")
    command = ["bash", str(SBATCH), *tiny(voc, tmp_path, epochs=4)]

    job = start(command, env)  # the first start: no checkpoint yet
    first = wait_for_line(job, r"^epoch 1/4: ")
    assert "no checkpoint in" in first
    os.kill(job.pid, signal.SIGUSR1)  # SLURM's --signal=B:USR1 reaches the batch script only
    err = job.communicate(timeout=TIMEOUT)[1]
    assert (tmp_path / "scontrol.log").read_text() == "requeue 42\n"
    assert "train.py: stopped by SIGUSR1" in err
    interrupted = read_project_checkpoint(tmp_path / "slurm_run" / "interrupted.pth")
    assert interrupted["epoch"] < 4

    job = start(command, env)  # the requeued job: the same script, the same flags
    out, err = job.communicate(timeout=TIMEOUT)
    assert job.returncode == 0, err[-3000:]
    assert "interrupted.pth" in out and "resumed" in out
    assert read_project_checkpoint(tmp_path / "slurm_run" / "last.pth")["epoch"] == 4


def test_the_docs_show_the_script_as_it_is():
    docs = (ROOT / "docs" / "training.md").read_text()
    assert SBATCH.read_text().strip() in docs
