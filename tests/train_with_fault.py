"""train.py with one fault injected, for the tests that run it under torchrun or a shell.

    FAULT=SIGNAL:RANK:STEP FAULT_MARK=PATH python tests/train_with_fault.py <train.py flags>

The process of global rank RANK sends SIGNAL (KILL, TERM, USR1, INT) to itself during its
STEP-th training step (counted from 1 in that process), once: it first creates the file
FAULT_MARK, and a process that finds it there injects nothing (a restarted torchrun job runs
clean; its restart count is not a guide, torchrun keeps one per node). Without FAULT it is
train.py. The signal is a real one: what happens next is the code under test.
"""

from __future__ import annotations

import os
import signal
import sys

import train  # the repository on PYTHONPATH (test_train_helpers.run_env)
from utils.training.task import SegmentationTask


def inject(spec: str, mark: str) -> None:
    """Make SegmentationTask.forward send the signal of `spec` (SIGNAL:RANK:STEP) once."""
    name, rank, step = spec.split(":")
    if int(os.environ.get("RANK", "0")) != int(rank) or os.path.exists(mark):
        return
    signum = getattr(signal, f"SIG{name}")
    forward = SegmentationTask.forward
    calls = [0]

    def faulty_forward(self, images, labels):  # noqa: ANN001, ANN202
        calls[0] += 1
        if calls[0] == int(step) and not os.path.exists(mark):
            open(mark, "x").close()  # noqa: PTH123, SIM115
            print(f"fault: rank {rank} sends SIG{name} to itself at step {step}", flush=True)
            os.kill(os.getpid(), signum)
        return forward(self, images, labels)

    SegmentationTask.forward = faulty_forward


if __name__ == "__main__":
    if os.environ.get("FAULT"):
        inject(os.environ["FAULT"], os.environ["FAULT_MARK"])
    sys.exit(train.main())
