"""The run folder: one run per folder, a stable name for jobs that restart, ``--resume auto``.

A training run of FastSegFormer (Cai et al., Computers and Electronics in Agriculture 217,
108604, 2024) lasts 1000 epochs; on a shared cluster it is stopped and restarted many times, so
its folder must be found again by name and must never be shared with another run.

The rule (``prepare_run_dir``):

- **No --name**: ``--save-dir/<model>_<date-time>``, created with an exclusive ``mkdir``; a
  second run started in the same second gets ``..._2`` (then ``_3``, ...).
- **--name NAME**: ``--save-dir/NAME``, with no time stamp. A new run claims it by creating its
  ``config.yaml`` exclusively (``utils.fileio.create_new``), so of two runs started at once with
  one name exactly one goes on. A folder that already holds a run's files (``config.yaml``,
  ``history.json`` or any ``.pth``) is refused with what to do: ``--resume auto`` to continue
  that run, or another ``--name``. Other files (a SLURM log, notes) do not count.
- **--resume auto** (needs --name): continues from the newest checkpoint of ``--save-dir/NAME``
  (``find_resume_checkpoint``); with none there it starts a new run in that folder, whatever
  the folder holds. One command line thus serves the first start and every requeue.
- **--resume PATH**: the run continues in PATH's folder (--name is not used).

Under torchrun rank 0 decides and every rank receives its decision (or its error).
"""

from __future__ import annotations

import contextlib
import datetime
import itertools
import os
from pathlib import Path

import torch.distributed as dist

from nets.checkpoint import CheckpointError, read_project_checkpoint
from utils.cli import save_config
from utils.fileio import describe_removed, is_temp_name, remove_stale_temp_files
from utils.training import distributed
from utils.training.config import RESUME_AUTO, ConfigError, TrainConfig
from utils.training.distributed import DistInfo
from utils.training.trainer import PERIODIC_NAME

RUN_FILES = ("config.yaml", "history.json", "*.pth")  # what shows that a folder holds a run


def run_files(folder: Path) -> list[str]:
    """Names of the files in `folder` that a training run writes (sorted; [] when none)."""
    if not folder.is_dir():
        return []
    found = {p.name for pattern in RUN_FILES for p in folder.glob(pattern)}
    return sorted(name for name in found if not is_temp_name(name))


def resume_candidates(folder: Path) -> list[Path]:
    """The checkpoints of `folder` that hold the training state, newest written first (ties:
    interrupted.pth, last.pth, then the highest epNNN.pth)."""
    if not folder.is_dir():
        return []
    named = ("interrupted.pth", "last.pth")  # on equal times: these first, then epNNN down
    paths = [p for p in folder.iterdir() if p.is_file()]
    paths = [p for p in paths if p.name in named or PERIODIC_NAME.fullmatch(p.name)]

    def order(p: Path) -> tuple[int, int, int]:
        periodic = PERIODIC_NAME.fullmatch(p.name)
        epoch = int(periodic[1]) if periodic else 0
        group = named.index(p.name) if p.name in named else len(named)
        return (-p.stat().st_mtime_ns, group, -epoch)

    return sorted(paths, key=order)


def find_resume_checkpoint(folder: str | Path, trust: bool = False) -> Path | None:
    """The newest complete checkpoint of `folder` to continue from, or None when it has none.

    Candidates are interrupted.pth, last.pth and epNNN.pth, newest written first; one that
    cannot be read (cut short, refused by the safe reader) or holds no training state is
    passed over with a note. ConfigError when there are candidates but none of them is usable:
    starting afresh over them would silently throw a run away.
    """
    folder = Path(folder)
    skipped = []
    for path in resume_candidates(folder):
        try:
            ckpt = read_project_checkpoint(path, map_location="cpu", trust=trust)
        except CheckpointError as exc:
            skipped.append(f"{path.name} ({exc})")
            continue
        if ckpt.get("optimizer") is None:
            skipped.append(f"{path.name} (weights only, no training state)")
            continue
        if skipped and distributed.env_rank() == 0:
            print(f"--resume auto: passed over {'; '.join(skipped)}", flush=True)
        return path
    if skipped:
        raise ConfigError(
            f"--resume=auto: no usable checkpoint in {folder}: {'; '.join(skipped)}; resume from "
            "another file with --resume PATH, or pick another --name for a new run"
        )
    return None


def prepare_run_dir(cfg: TrainConfig, info: DistInfo | None = None) -> Path:
    """The run folder of `cfg`, claimed for this run and agreed by every process (see the
    module docstring for the rule); stale temporary files a killed save left there are
    removed. ConfigError (on every rank) when the folder belongs to another run."""
    info = info or DistInfo()
    path, error = None, None
    if info.is_main:
        try:
            path = _claim(cfg)
        except ConfigError as exc:
            error = str(exc)
    if info.distributed:
        holder = [None if path is None else str(path), error, cfg.resume]
        dist.broadcast_object_list(holder, src=0)
        path, error = (None if holder[0] is None else Path(holder[0])), holder[1]
        agreed = distributed.all_true(holder[2] == cfg.resume, info.device)
        if error is None and not agreed:  # --resume auto looked at the folder at other times
            error = (
                f"--resume: the torchrun processes chose different checkpoints (rank 0: "
                f"{holder[2]!r}); was the run folder written meanwhile? Start the job again"
            )
    if error is not None:
        raise ConfigError(error)
    assert path is not None
    if info.is_main:
        removed = remove_stale_temp_files(path)  # a save killed mid-write (kill -9, power cut)
        if removed:
            print(describe_removed(removed), flush=True)
    distributed.barrier()
    return path


def _claim(cfg: TrainConfig) -> Path:
    """Rank 0's half of prepare_run_dir: find or create the folder and make it this run's."""
    if cfg.resume_file():  # continuing a checkpoint: its folder
        return Path(cfg.resume).resolve().parent
    save_dir = Path(cfg.save_dir)
    if cfg.resume == RESUME_AUTO:  # nothing to continue: a new run in the named folder
        path = save_dir / cfg.name
        path.mkdir(parents=True, exist_ok=True)
        print(f"--resume auto: no checkpoint in {path}: starting a new run there", flush=True)
        return path
    if cfg.name:
        path = save_dir / cfg.name
        path.mkdir(parents=True, exist_ok=True)
        found = run_files(path)
        if not found:
            with contextlib.suppress(FileExistsError):
                save_config(cfg, path / "config.yaml", exclusive=True)
                return path
            found = run_files(path)  # another run claimed it a moment ago
        raise ConfigError(
            f"--name={cfg.name!r}: {path} already holds a run ({', '.join(found[:4])}): "
            f"continue it with --resume auto, or pick another --name"
        )
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    save_dir.mkdir(parents=True, exist_ok=True)
    for n in itertools.count(1):
        path = save_dir / (f"{cfg.run_prefix()}_{stamp}" + (f"_{n}" if n > 1 else ""))
        try:
            os.mkdir(path)  # exclusive: a run started in the same second gets the next name
        except FileExistsError:
            continue
        return path
    raise AssertionError("unreachable")
