"""torchrun on one host, gloo on the CPU: two one-process "nodes" through the c10d rendezvous,
an elastic restart after a worker is killed, and a stop signal that reaches one rank only.

Every job trains the same tiny run (Fast-SCNN, 1.1M parameters, at 64x64 in float32: 12 photos,
2 processes, 3 steps per process and epoch, 2 epochs), so the uninterrupted two-node job is the
reference the others must match bit for bit.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_train_ddp import free_port
from test_train_helpers import make_tiny_voc, run_env

from nets.checkpoint import read_project_checkpoint

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tests" / "train_with_fault.py"  # train.py, with FAULT=SIGNAL:RANK:STEP
TIMEOUT = 120


@pytest.fixture(scope="module")
def voc(tmp_path_factory) -> Path:
    return make_tiny_voc(tmp_path_factory.mktemp("voc"), num=20, size=64)  # 12 train, 4 val


def flags(voc: Path, save_dir: Path) -> list[str]:
    """The tiny run, under a stable name that --resume auto continues."""
    return [
        "--model", "fast_scnn", "--data", str(voc), "--input-size", "64", "--epochs", "2",
        "--freeze-epochs", "0", "--batch-size", "4", "--freeze-batch-size", "4",
        "--eval-period", "2", "--overlays", "0", "--no-amp", "--workers", "0", "--device", "cpu",
        "--no-tensorboard", "--save-dir", str(save_dir), "--name", "run", "--resume", "auto",
    ]  # fmt: skip


def launch(torchrun: list[str], args: list[str], fault: str = "") -> subprocess.Popen:
    """`python -m torch.distributed.run TORCHRUN tests/train_with_fault.py ARGS`; `fault`:
    SIGNAL:RANK:STEP, once in the job (its mark file lives beside the run's --save-dir)."""
    env = run_env()
    env.pop("FAULT", None)
    # a new rendezvous store each round: torch >= 2.4 shares one across restarts by default,
    # where keys of the killed worker are read by the restarted ones (pytorch/pytorch#135712)
    env["TORCH_DISABLE_SHARE_RDZV_TCP_STORE"] = "1"
    if fault:
        save_dir = Path(args[args.index("--save-dir") + 1])
        env["FAULT"], env["FAULT_MARK"] = fault, str(save_dir.parent / f"{save_dir.name}.fault")
    command = [sys.executable, "-m", "torch.distributed.run", *torchrun, str(SCRIPT), *args]
    return subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def two_nodes(args: list[str], fault: str = "", restarts: int = 0) -> list[tuple[int, str]]:
    """Two torchrun agents ("nodes") of one process each, meeting at a c10d rendezvous on
    localhost; [(exit status, output)] of each agent."""
    port = free_port()
    torchrun = [
        "--nnodes", "2", "--nproc_per_node", "1", "--rdzv-backend", "c10d",
        "--rdzv-endpoint", f"localhost:{port}", "--rdzv-id", f"job{port}",
        "--max-restarts", str(restarts), "--monitor-interval", "0.5",
    ]  # fmt: skip
    agents = [launch(torchrun, args, fault) for _ in range(2)]
    try:
        return [(a.wait(timeout=TIMEOUT), a.stdout.read()) for a in agents]
    finally:
        for agent in agents:
            if agent.poll() is None:
                agent.kill()


def assert_same_weights(a: Path, b: Path) -> None:
    ckpt_a, ckpt_b = read_project_checkpoint(a), read_project_checkpoint(b)
    assert ckpt_a["epoch"] == ckpt_b["epoch"]
    for key, value in ckpt_a["state_dict"].items():
        assert torch.equal(value, ckpt_b["state_dict"][key]), key


@pytest.fixture(scope="module")
def reference(voc, tmp_path_factory) -> tuple[Path, list[tuple[int, str]]]:
    """The uninterrupted two-node job: (its save dir, its agents' results)."""
    save_dir = tmp_path_factory.mktemp("two_nodes")
    return save_dir, two_nodes(flags(voc, save_dir))


def test_two_nodes_train_and_write_one_run(reference):
    save_dir, results = reference
    output = "".join(out for _, out in results)
    assert [status for status, _ in results] == [0, 0], output[-6000:]
    assert "2 process(es) on cpu" in output
    assert output.count("done: best val mIoU") == 1  # rank 0 alone reports
    assert "no checkpoint in" in output  # --resume auto: the first start of the run
    assert [p.name for p in save_dir.iterdir()] == ["run"]  # one run folder, no time stamp
    run = save_dir / "run"
    assert read_project_checkpoint(run / "last.pth")["epoch"] == 2
    assert not (run / "interrupted.pth").exists()


def test_a_killed_worker_restarts_the_job_from_the_last_checkpoint(voc, reference, tmp_path):
    # rank 1 dies (SIGKILL) in its 5th step: epoch 2 of 2, with last.pth of epoch 1 written
    results = two_nodes(flags(voc, tmp_path), fault="KILL:1:5", restarts=1)
    output = "".join(out for _, out in results)
    assert [status for status, _ in results] == [0, 0], output[-6000:]
    assert "fault: rank 1 sends SIGKILL to itself at step 5" in output
    assert "resumed" in output and "last.pth: 1 epochs done" in output
    assert_same_weights(reference[0] / "run" / "last.pth", tmp_path / "run" / "last.pth")


def test_a_signal_to_one_rank_stops_every_rank_and_rank_0_writes(voc, reference, tmp_path):
    torchrun = ["--standalone", "--nproc_per_node", "2"]
    args = flags(voc, tmp_path)
    # only rank 1 gets SIGTERM, in its 4th step (epoch 2, step 1): both stop after that step
    stopped = launch(torchrun, args, fault="TERM:1:4")
    output = stopped.communicate(timeout=TIMEOUT)[0]
    assert stopped.returncode != 0, output[-4000:]
    interrupted = tmp_path / "run" / "interrupted.pth"
    ckpt = read_project_checkpoint(interrupted)
    assert (ckpt["epoch"], ckpt["progress"]["step"]) == (1, 1)
    assert len(ckpt["progress"]["ranks"]) == 2  # every rank's generators and loss sums
    assert output.count("train.py: stopped by SIGTERM after 1 epochs + 1 steps") == 1
    assert "exitcode: 143" in output or "exitcode  : 143" in output
    # the same command continues it, exactly
    resumed = launch(torchrun, args)
    output = resumed.communicate(timeout=TIMEOUT)[0]
    assert resumed.returncode == 0, output[-4000:]
    assert "interrupted.pth: 1 epochs + 1 steps done" in output
    assert_same_weights(reference[0] / "run" / "last.pth", tmp_path / "run" / "last.pth")
