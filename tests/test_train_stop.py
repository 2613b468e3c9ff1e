"""Continuing a run: run folders, --resume auto; and the stop signals, in a process of their own.

The signal cases (tests/stop_signal_cases.py) send SIGTERM / SIGUSR1 / SIGINT to the process
that trains. They run with pytest in a fresh process: in the suite's long process, which by then
holds the threads of every runtime earlier tests loaded, such deliveries have ended the whole
run with a kernel-raised SIGSEGV (docs/training.md, "The SIGSEGV of the test suite").
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from stop_signal_cases import make_trainer
from test_train_helpers import tiny_config

from utils.training import run_dir
from utils.training.config import ConfigError, TrainConfig
from utils.training.run import parse_train_config
from utils.training.run_dir import find_resume_checkpoint, prepare_run_dir, resume_candidates

CASES = Path(__file__).with_name("stop_signal_cases.py")


def test_stop_signal_cases_pass_in_a_fresh_process(tmp_path):
    """Every case of tests/stop_signal_cases.py passes (run by pytest in its own process)."""
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(CASES),
         "--basetemp", str(tmp_path / "cases")],
        cwd=CASES.parents[1], capture_output=True, text=True, timeout=280,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "failed" not in result.stdout


# ------------------------------------------------------------------ run folders
def test_unnamed_runs_started_in_the_same_second_get_their_own_folders(tmp_path, monkeypatch):
    class Frozen(datetime.datetime):  # every run starts in the same second
        @classmethod
        def now(cls, tz=None):  # noqa: ANN001, ANN206
            return cls(2024, 1, 2, 3, 4, 5)

    monkeypatch.setattr(run_dir.datetime, "datetime", Frozen)
    cfg = tiny_config(tmp_path, name="")
    folders = [prepare_run_dir(cfg) for _ in range(3)]
    assert [f.name for f in folders] == [
        "tiny_test_20240102-030405",
        "tiny_test_20240102-030405_2",
        "tiny_test_20240102-030405_3",
    ]


def test_a_named_folder_of_another_run_is_refused_and_resume_auto_continues_it(tmp_path):
    cfg = tiny_config(tmp_path, name="p", epochs=1, freeze_epochs=0)
    folder = prepare_run_dir(cfg)
    assert folder == tmp_path / "p" and (folder / "config.yaml").is_file()  # claimed
    with pytest.raises(ConfigError, match=r"holds a run \(config\.yaml\).*--resume auto.*--name"):
        prepare_run_dir(cfg)  # a second run with the same name, before any checkpoint
    # --resume auto with no checkpoint yet: a new run in that folder
    where = ["--save-dir", str(tmp_path), "--name", "p", "--resume", "auto"]
    assert parse_train_config(TrainConfig, where).resume == "auto"
    make_trainer(dataclasses.replace(cfg, resume="auto")).fit()
    # now it finds last.pth and continues with the run's own settings, extended
    auto = parse_train_config(TrainConfig, [*where, "--epochs", "2"])
    assert auto.resume == str(folder / "last.pth") and auto.model == "tiny_test"
    assert auto.epochs == 2 and make_trainer(auto).fit().epochs_done == 2
    # other files (a scheduler's log) do not make a folder a run's
    (tmp_path / "q").mkdir()
    (tmp_path / "q" / "slurm-1.out").write_text("log")
    assert prepare_run_dir(tiny_config(tmp_path, name="q")) == tmp_path / "q"


def test_resume_auto_needs_a_name(tmp_path):
    with pytest.raises(ConfigError, match="--resume=auto: needs --name"):
        parse_train_config(TrainConfig, ["--save-dir", str(tmp_path), "--resume", "auto"])


def test_resume_auto_takes_the_newest_readable_checkpoint(tmp_path, capsys):
    cfg = tiny_config(tmp_path, name="r", epochs=2, freeze_epochs=0, save_period=1)
    make_trainer(cfg).fit()
    folder = tmp_path / "r"
    assert [p.name for p in resume_candidates(folder)][:1] == ["last.pth"]
    # an interrupted.pth written later is newer; best.pth (weights only) is never a candidate
    (folder / "interrupted.pth").write_bytes((folder / "ep001.pth").read_bytes())
    future = time.time() + 10
    os.utime(folder / "interrupted.pth", (future, future))
    assert find_resume_checkpoint(folder) == folder / "interrupted.pth"
    # one cut short is passed over with a note
    (folder / "interrupted.pth").write_bytes(b"PK\x03\x04 cut")
    os.utime(folder / "interrupted.pth", (future, future))
    assert find_resume_checkpoint(folder) == folder / "last.pth"
    assert "passed over interrupted.pth" in capsys.readouterr().out
    # none usable: an error, not a silent fresh start over the run
    for path in resume_candidates(folder):
        path.write_bytes(b"garbage")
    with pytest.raises(ConfigError, match="no usable checkpoint"):
        find_resume_checkpoint(folder)
