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
def _sigchld_default_after_test():
    """Put SIGCHLD back to its default after each test.

    A DataLoader with worker processes installs a Python SIGCHLD handler in the main process
    and never removes it; from then on every child that exits (the suite starts hundreds:
    scripts run as processes, loader workers, the DDP test) has the kernel build a signal
    frame in the pytest process. On this project's virtual machines that delivery has, now
    and then, ended the whole run with a kernel-raised SIGSEGV (si_code SI_KERNEL, no Python
    traceback), far from the test that installed the handler. Each DataLoader test installs
    the handler afresh (torch's flag is reset with it), so loaders still run as users run them.
    """
    yield
    if signal.getsignal(signal.SIGCHLD) not in (signal.SIG_DFL, signal.SIG_IGN, None):
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal_handling._SIGCHLD_handler_set = False
