"""Stopping and continuing a run: stop signals, interrupted.pth, exact resume, run folders.

A signal is sent to this very process from inside a step (or an evaluation batch), the way a
cluster sends it, and the loop must stop after that step with the whole training state in
interrupted.pth; the run resumed from it must end bit-identical to one never stopped.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import random
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from test_train_helpers import TinySegNet, TinySegSet, tiny_config
from torch import nn
from torch.utils.data._utils import signal_handling

from nets.checkpoint import read_project_checkpoint
from utils.training import run_dir
from utils.training.config import ConfigError, TrainConfig
from utils.training.losses import build_seg_loss
from utils.training.run import parse_train_config
from utils.training.run_dir import find_resume_checkpoint, prepare_run_dir, resume_candidates
from utils.training.signals import StopSignals, exit_status
from utils.training.task import SegmentationTask
from utils.training.trainer import Trainer, TrainingStopped

torch.set_num_threads(1)
CLASSES = ("background", "a", "b")


class DropoutSegNet(TinySegNet):
    """TinySegNet with dropout before its head: every step draws from torch's generator."""

    def __init__(self, num_classes: int = 3) -> None:
        super().__init__(num_classes)
        self.head = nn.Sequential(nn.Dropout2d(0.3), self.head)


class FlippingSet(TinySegSet):
    """TinySegSet with a random flip (numpy) and noise (python random): augmentation draws."""

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, label = super().__getitem__(i)
        if np.random.rand() < 0.5:
            image, label = image.flip(-1), label.flip(-1)
        return image + random.random() * 0.01, label


def make_trainer(cfg: TrainConfig) -> Trainer:
    torch.manual_seed(cfg.seed)
    task = SegmentationTask(DropoutSegNet(cfg.num_classes), build_seg_loss("ce", dice=True))
    return Trainer(
        cfg,
        task,
        FlippingSet(16, 32, cfg.num_classes, seed=0),
        TinySegSet(6, 32, cfg.num_classes, seed=1),
        class_names=CLASSES,
        run_dir=prepare_run_dir(cfg),
        eval_loss=build_seg_loss("ce"),
    )


def raise_in_main_thread(signum: int) -> None:
    """Send `signum` to this process's main thread, where Python runs its handlers.

    A process-directed kill() may be delivered to any thread that does not block the signal. In
    the long test process, where the runtimes of earlier tests (OpenMP, oneDNN, OpenVINO, ONNX
    Runtime) left their threads, such a delivery ended twice in a SIGSEGV sent by the kernel
    (si_code SI_KERNEL, no faulting instruction: the signal frame could not be set up on the
    thread it picked; which thread, and why, is not known). Directed at the main thread, the
    test checks the trainer, not the kernel's pick.
    """
    signal.pthread_kill(threading.main_thread().ident, signum)


def signal_at(trainer: Trainer, signum: int, training: bool, call: int) -> None:
    """Send `signum` to this process from inside the `call`-th forward pass of the model in
    training (or evaluation) mode."""
    calls = [0]

    def hook(module: nn.Module, args: tuple) -> None:
        if module.training == training:
            calls[0] += 1
            if calls[0] == call:
                raise_in_main_thread(signum)

    trainer.task.model.register_forward_pre_hook(hook)


def assert_same_run(a: Path, b: Path) -> None:
    """Runs `a` and `b` ended in the same state, bit for bit, with the same loss curves."""
    last_a, last_b = (
        read_project_checkpoint(a / "last.pth"),
        read_project_checkpoint(b / "last.pth"),
    )
    assert last_a["epoch"] == last_b["epoch"]
    for key, value in last_a["state_dict"].items():
        assert torch.equal(value, last_b["state_dict"][key]), key
    for i, state in last_a["optimizer"]["state"].items():
        for key, value in state.items():
            assert torch.equal(value, last_b["optimizer"]["state"][i][key]), (i, key)

    def curves(run: Path) -> list[dict]:
        train = json.loads((run / "history.json").read_text())["train"]
        return [{k: v for k, v in e.items() if k != "images_per_s"} for e in train]

    assert curves(a) == curves(b)


# (signal, stop in training (True) or evaluation, forward call, workers, eval period) and where
# the run stops: (epochs done, steps done of the next epoch); 4 steps per epoch, 3 epochs
CASES = {
    "SIGTERM mid-epoch": (signal.SIGTERM, True, 6, 0, 1, (1, 2)),
    "SIGUSR1 mid-epoch, loader workers": (signal.SIGUSR1, True, 7, 2, 1, (1, 3)),
    "SIGINT during evaluation": (signal.SIGINT, False, 3, 0, 1, (1, 4)),
    "SIGTERM in the last step of an epoch": (signal.SIGTERM, True, 8, 0, 3, (2, 0)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_stop_signal_writes_interrupted_and_the_resumed_run_is_bit_identical(tmp_path, case):
    signum, training, call, workers, eval_period, (epochs, steps) = CASES[case]
    common = dict(epochs=3, freeze_epochs=1, batch_size=4, freeze_batch_size=4, workers=workers,
                  eval_period=eval_period, amp=False)  # fmt: skip
    make_trainer(tiny_config(tmp_path, name="full", **common)).fit()

    trainer = make_trainer(tiny_config(tmp_path, name="part", **common))
    signal_at(trainer, signum, training, call)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(TrainingStopped) as stopped:
        trainer.fit()
    assert signal.getsignal(signal.SIGTERM) is before  # the handlers are given back
    path = tmp_path / "part" / "interrupted.pth"
    assert stopped.value.signum == signum and stopped.value.checkpoint == path
    assert (stopped.value.epochs, stopped.value.steps) == (epochs, steps)
    ckpt = read_project_checkpoint(path)  # the safe reader takes the generator states
    assert ckpt["epoch"] == epochs and ckpt["optimizer"] is not None
    assert (ckpt.get("progress") or {}).get("step", 0) == steps

    resumed = make_trainer(parse_train_config(TrainConfig, ["--resume", str(path)]))
    assert (resumed.start_epoch, resumed._resume_step) == (epochs, steps)
    resumed.fit()
    assert_same_run(tmp_path / "full", tmp_path / "part")


def test_exit_statuses_are_128_plus_the_signal():
    assert [exit_status(s) for s in (signal.SIGINT, signal.SIGUSR1, signal.SIGTERM)] == [
        130,
        138,
        143,
    ]


def test_a_second_ctrl_c_stops_at_once_without_a_checkpoint(tmp_path, capsys):
    cfg = tiny_config(tmp_path, epochs=3, freeze_epochs=0, batch_size=4)
    trainer = make_trainer(cfg)
    calls = [0]

    def hook(module: nn.Module, args: tuple) -> None:
        if module.training:
            calls[0] += 1
            if calls[0] == 6:  # Ctrl-C twice within one step
                for _ in range(2):
                    raise_in_main_thread(signal.SIGINT)
                    time.sleep(0.01)  # the handler runs here

    trainer.task.model.register_forward_pre_hook(hook)
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    assert not (tmp_path / "run" / "interrupted.pth").exists()
    assert read_project_checkpoint(tmp_path / "run" / "last.pth")["epoch"] == 1
    assert "interrupted again: stopped at once" in capsys.readouterr().out
    assert signal.getsignal(signal.SIGINT) is before


def test_a_run_with_loader_workers_keeps_sigchld_at_its_default(tmp_path):
    trainer = make_trainer(tiny_config(tmp_path, epochs=1, freeze_epochs=0, workers=2))
    seen = []
    trainer.task.model.register_forward_pre_hook(
        lambda module, args: seen.append(signal.getsignal(signal.SIGCHLD))
    )
    signal_handling._SIGCHLD_handler_set = False  # as in a fresh process (conftest sets it)
    try:
        trainer.fit()
        assert seen and all(handler == signal.SIG_DFL for handler in seen)  # torch's never came
        assert signal_handling._SIGCHLD_handler_set is False  # and may come after the run
    finally:
        signal_handling._SIGCHLD_handler_set = True
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)


def test_stop_signals_only_record_until_restored():
    with StopSignals() as stop:
        for signum in (signal.SIGUSR1, signal.SIGTERM):
            raise_in_main_thread(signum)
            time.sleep(0.01)
        assert stop.signum == signal.SIGUSR1  # the first one counts
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL


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
