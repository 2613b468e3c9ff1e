"""The dataclass-of-defaults -> command-line flags helper used by every script."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import yaml

from utils.cli import parse_config, save_config


@dataclass
class Demo:
    model: str = field(default="fastsegformer_p", metadata={"help": "registry name"})
    input_size: int = 224
    lr: float = 1e-3
    amp: bool = False
    optimizer: str = field(default="adam", metadata={"choices": ["adam", "adamw", "sgd"]})
    class_weights: list[float] = field(default_factory=list)
    mean: tuple[float, ...] | None = None
    resume: str | None = None


def test_defaults_without_flags():
    cfg = parse_config(Demo, [])
    assert cfg == Demo()


def test_flags_override_and_types():
    cfg = parse_config(
        Demo,
        ["--input-size", "512", "--lr", "0.01", "--amp", "--class-weights", "1", "2.5",
         "--mean", "0.4", "0.5", "0.6", "--resume", "logs/x/last.pth"],
    )  # fmt: skip
    assert cfg.input_size == 512 and cfg.lr == 0.01 and cfg.amp is True
    assert cfg.class_weights == [1.0, 2.5]
    assert cfg.mean == (0.4, 0.5, 0.6)
    assert cfg.resume == "logs/x/last.pth"
    assert parse_config(Demo, ["--no-amp"]).amp is False


def test_invalid_choice_and_type_fail(capsys):
    with pytest.raises(SystemExit):
        parse_config(Demo, ["--optimizer", "rmsprop"])
    assert "invalid choice" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_config(Demo, ["--input-size", "big"])


def test_save_config_round_trips(tmp_path):
    cfg = parse_config(Demo, ["--mean", "0.1", "0.2", "0.3"])
    path = save_config(cfg, tmp_path / "run" / "config.yaml")
    data = yaml.safe_load(path.read_text())
    assert data["mean"] == [0.1, 0.2, 0.3] and data["model"] == "fastsegformer_p"
