"""Shared test fixtures: paths to the repository and to ../shared (skipped where absent)."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest
from torch.utils.data._utils import signal_handling

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared beside the repository (reference cases, real samples); skip without it."""
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} not found: the shared reference material is not beside the repo")
    return SHARED


@pytest.fixture(scope="session")
def real_samples(shared_dir: Path) -> Path:
    """The six real navel-orange photos with masks (VOC-like folders)."""
    path = shared_dir / "samples" / "orange_real"
    if not (path / "JPEGImages").is_dir():
        pytest.skip(f"{path} has no JPEGImages/: real samples not available")
    return path


@pytest.fixture(autouse=True)
def _sigchld_at_its_default():
    """SIGCHLD keeps its default disposition in the test process, as in a training run.

    A DataLoader with worker processes installs a Python SIGCHLD handler in the main process
    and never removes it; while it is there, every child that exits (the suite starts hundreds:
    scripts run as processes, loader workers, the DDP test) has the kernel build a signal frame
    in the pytest process. On this project's virtual machines that delivery has, now and then,
    ended the whole run with a kernel-raised SIGSEGV (si_code SI_KERNEL, no Python traceback),
    also during a DataLoader test itself. Training keeps the handler out while it runs
    (utils/training/signals.py); the tests keep it out throughout, with torch's flag set as
    the trainer sets it, and put SIGCHLD back to its default after any test that changed it.
    A dead loader worker is still found: the loader checks its workers whenever it has waited
    5 s for a batch. tests/stop_signal_cases.py lets torch's flag down to check the trainer's
    own protection.
    """
    signal_handling._SIGCHLD_handler_set = True  # torch installs its handler only when False
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    yield
    if signal.getsignal(signal.SIGCHLD) not in (signal.SIG_DFL, signal.SIG_IGN, None):
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
