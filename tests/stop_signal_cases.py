"""Stopping a run with a signal: interrupted.pth, exact resume, the handlers given back.

A signal is sent to this very process from inside a step (or an evaluation batch), the way a
cluster sends it, and the loop must stop after that step with the whole training state in
interrupted.pth; the run resumed from it must end bit-identical to one never stopped.

Not collected by the suite's own process: tests/test_train_stop.py runs this file with pytest
in a fresh process, as a training run is one (docs/training.md, "The SIGSEGV of the test
suite": signals delivered to the long test process have ended it with a kernel-raised SIGSEGV).
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from test_train_helpers import TinySegNet, TinySegSet, tiny_config
from torch import nn
from torch.utils.data._utils import signal_handling

from nets.checkpoint import read_project_checkpoint
from utils.training.config import TrainConfig
from utils.training.losses import build_seg_loss
from utils.training.run import parse_train_config
from utils.training.run_dir import prepare_run_dir
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


def send_to_this_process(signum: int) -> None:
    """Send `signum` to this process the way a cluster or a terminal does (kill())."""
    os.kill(os.getpid(), signum)


def signal_at(trainer: Trainer, signum: int, training: bool, call: int) -> None:
    """Send `signum` to this process from inside the `call`-th forward pass of the model in
    training (or evaluation) mode."""
    calls = [0]

    def hook(module: nn.Module, args: tuple) -> None:
        if module.training == training:
            calls[0] += 1
            if calls[0] == call:
                send_to_this_process(signum)

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
                    send_to_this_process(signal.SIGINT)
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
            send_to_this_process(signum)
            time.sleep(0.01)
        assert stop.signum == signal.SIGUSR1  # the first one counts
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL
