"""train.py end to end (in-process): FastSegFormer-P on a tiny synthetic set, resume, bad flags."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_train_helpers import make_tiny_voc

import nets
from nets.checkpoint import read_project_checkpoint
from train import main as train_main

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "--input-size", "64", "--batch-size", "4", "--freeze-batch-size", "4", "--workers", "0",
    "--eval-period", "1", "--save-period", "1", "--device", "cpu", "--no-tensorboard",
]  # fmt: skip


@pytest.fixture(scope="module")
def tiny_voc(tmp_path_factory) -> Path:
    return make_tiny_voc(tmp_path_factory.mktemp("voc"), num=10, size=64)


def test_train_py_runs_then_resumes(tiny_voc, tmp_path, capsys):
    common = ["--data", str(tiny_voc), "--save-dir", str(tmp_path), *TINY]
    assert train_main([*common, "--epochs", "1", "--freeze-epochs", "1", "--name", "p"]) == 0
    run = tmp_path / "p"
    assert "val mIoU" in capsys.readouterr().out
    config = (run / "config.yaml").read_text()
    assert "model: fastsegformer_p" in config and str(tiny_voc) in config

    last = run / "last.pth"
    model, ckpt = nets.model_from_checkpoint(last)
    assert ckpt["epoch"] == 1 and ckpt["input_size"] == [64, 64]
    assert model(torch.rand(1, 3, 64, 64)).shape == (1, 4, 64, 64)

    # --resume alone continues with the run's settings; --epochs extends it
    assert train_main(["--resume", str(last), "--epochs", "2"]) == 0
    out = capsys.readouterr().out
    assert "resumed" in out and "1 epochs done" in out
    resumed = read_project_checkpoint(last)
    assert resumed["epoch"] == 2 and resumed["scheduler"]["frozen"] is False
    assert resumed["config"]["input_size"] == [64, 64]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--epochs", "0"], "--epochs=0"),
        (["--model", "no_such_net"], "valid names"),
        (["--class-weights", "1", "2"], "--class-weights"),
        (["--input-size", "100"], "multiple of 32"),
        (["--resume", "/nonexistent/last.pth"], "--resume"),
    ],
)
def test_bad_flags_fail_before_any_work(tmp_path, flags, message, capsys):
    assert train_main(["--save-dir", str(tmp_path), *flags]) == 2
    assert message in capsys.readouterr().err
    assert not any(tmp_path.iterdir()), "a run folder was created for an invalid config"


def test_unknown_choice_is_rejected_by_the_parser(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        train_main(["--optimizer", "rmsprop", "--save-dir", str(tmp_path)])
    assert exc.value.code == 2 and "invalid choice" in capsys.readouterr().err


@pytest.mark.parametrize(
    "flags",
    [
        ["--epoc", "3"],  # abbreviation of --epochs: not accepted
        ["--epochs", "3", "--lr-shedule", "step"],  # misspelt
        ["--resume", "logs/x/last.pth", "--epoch", "300"],  # not replaced by the saved config
    ],
)
def test_abbreviated_or_misspelt_flags_are_errors_naming_them(tmp_path, flags, capsys):
    with pytest.raises(SystemExit) as exc:
        train_main(["--save-dir", str(tmp_path), *flags])
    bad = next(f for f in flags if f.startswith("--") and f not in ("--epochs", "--resume"))
    assert exc.value.code == 2 and bad in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_resume_with_a_misspelt_flag_is_refused_before_reading_the_checkpoint(tmp_path, capsys):
    bogus = tmp_path / "last.pth"
    bogus.write_bytes(b"not a checkpoint")  # never read: the flag error comes first
    with pytest.raises(SystemExit) as exc:
        train_main(["--resume", str(bogus), "--epoch", "300"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "--epoch" in err and "checkpoint" not in err.lower()
