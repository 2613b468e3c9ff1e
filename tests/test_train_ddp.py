"""torchrun with 2 CPU processes (gloo): one frozen and one unfrozen epoch of train.py."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from test_train_helpers import make_tiny_voc, run_env

import nets
from nets.checkpoint import read_project_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_two_cpu_processes(tmp_path):
    voc = make_tiny_voc(tmp_path / "voc", num=10, size=64)  # 6 train, 2 val, 2 test
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
        f"--master_port={free_port()}", str(ROOT / "train.py"),
        "--data", str(voc), "--input-size", "64", "--epochs", "2", "--freeze-epochs", "1",
        "--batch-size", "4", "--freeze-batch-size", "4", "--eval-period", "1",
        "--workers", "0", "--device", "cpu", "--save-dir", str(tmp_path), "--name", "ddp",
        "--no-tensorboard",
    ]  # fmt: skip
    out = subprocess.run(cmd, cwd=ROOT, env=run_env(), capture_output=True, text=True, timeout=150)
    assert out.returncode == 0, out.stderr[-4000:]
    assert "2 process(es) on cpu" in out.stdout
    # rank 0 alone logs: one line per epoch, not two
    assert out.stdout.count("epoch 2/2:") == 1
    run = tmp_path / "ddp"
    ckpt = read_project_checkpoint(run / "last.pth")
    assert ckpt["epoch"] == 2 and not any(k.startswith("module.") for k in ckpt["state_dict"])
    assert (run / "best.pth").is_file() and (run / "loss.png").is_file()
    model, _ = nets.model_from_checkpoint(run / "last.pth")
    assert model.num_classes == 4
