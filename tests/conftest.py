"""Shared test fixtures: paths to the repository and to ../shared (skipped where absent)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

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
