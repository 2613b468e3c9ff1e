"""The dataclass-of-defaults -> command-line flags helper (utils.cli, tyro) used by every script."""

from __future__ import annotations

import ast
import importlib
import io
import tokenize
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest
import yaml

from utils.cli import config_from_dict, config_to_dict, parse_config, save_config

ROOT = Path(__file__).resolve().parents[1]
KINDS = {"adam": 1, "adamw": 2, "sgd": 3}  # a registry: name -> implementation


@dataclass
class Demo:
    model: str = "fastsegformer_p"  # registry name
    input_size: int = 224  # input side
    lr: float = 1e-3  # learning rate
    amp: bool = False  # mixed precision
    optimizer: Literal[tuple(KINDS)] = "adam"  # a key of KINDS
    class_weights: tuple[float, ...] = ()  # one weight per class
    names: list[str] = field(default_factory=list)  # a list field
    mean: tuple[float, ...] | None = None  # optional sequence
    resume: str | None = None  # optional path


@dataclass
class Child(Demo):
    epochs: int = 3  # a field of the subclass
    lr: float = 0.5  # redeclared default with its own help


def test_defaults_without_flags():
    assert parse_config(Demo, []) == Demo()


def test_flags_override_and_types():
    cfg = parse_config(
        Demo,
        ["--input-size", "512", "--lr", "0.01", "--amp", "--class-weights", "1", "2.5",
         "--names", "a", "b", "--mean", "0.4", "0.5", "0.6", "--resume", "logs/x/last.pth"],
    )  # fmt: skip
    assert cfg.input_size == 512 and cfg.lr == 0.01 and cfg.amp is True
    assert cfg.class_weights == (1.0, 2.5) and cfg.names == ["a", "b"]
    assert cfg.mean == (0.4, 0.5, 0.6)
    assert cfg.resume == "logs/x/last.pth"
    assert parse_config(Demo, ["--no-amp"]).amp is False
    assert parse_config(Demo, ["--resume", "None"]).resume is None


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--optimizer", "rmsprop"], "--optimizer"),  # outside the registry
        (["--input-size", "big"], "--input-size"),  # wrong type
        (["--input-siz", "512"], "--input-siz"),  # abbreviation: never accepted
        (["--inputsize", "512"], "--inputsize"),  # misspelt
        (["--lr"], "--lr"),  # missing value
    ],
)
def test_bad_flags_exit_2_naming_the_flag(argv, named, capsys):
    with pytest.raises(SystemExit) as exc:
        parse_config(Demo, argv)
    assert exc.value.code == 2
    assert named in capsys.readouterr().err


def test_invalid_choice_lists_the_registry(capsys):
    with pytest.raises(SystemExit):
        parse_config(Demo, ["--optimizer", "rmsprop"])
    err = capsys.readouterr().err
    assert "invalid choice" in err and all(name in err for name in KINDS)


def test_choices_follow_the_registry(monkeypatch):
    """Adding a key to the registry is the only change a new choice needs."""
    monkeypatch.setitem(KINDS, "lion", 4)
    assert parse_config(Demo, ["--optimizer", "lion"]).optimizer == "lion"


def test_help_comes_from_the_comments_of_base_and_subclass_fields(capsys):
    with pytest.raises(SystemExit) as exc:
        parse_config(Child, ["--help"], description="the description")
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "the description" in out
    for text in ("a field of the subclass", "redeclared default with its own help", "registry"):
        assert text in out
    assert "0.5" in out  # the subclass's default


def test_default_instance_is_the_base_of_the_flags():
    base = Demo(lr=0.3, amp=True)
    cfg = parse_config(Demo, ["--input-size", "64"], default=base)
    assert (cfg.lr, cfg.amp, cfg.input_size) == (0.3, True, 64)


def test_config_from_dict_restores_tuples_and_skips_unknown_keys():
    saved = config_to_dict(Demo(class_weights=(1.0, 2.0), mean=(0.5,)))
    saved["no_such_field"] = 1
    cfg = config_from_dict(Demo, saved, lr=0.2)
    assert cfg.class_weights == (1.0, 2.0) and cfg.lr == 0.2
    assert cfg == Demo(class_weights=(1.0, 2.0), mean=(0.5,), lr=0.2)


def test_save_config_round_trips_atomically(tmp_path):
    cfg = parse_config(Demo, ["--mean", "0.1", "0.2", "0.3"])
    path = save_config(cfg, tmp_path / "run" / "config.yaml")
    data = yaml.safe_load(path.read_text())
    assert data["mean"] == [0.1, 0.2, 0.3] and data["model"] == "fastsegformer_p"
    assert [p.name for p in path.parent.iterdir()] == ["config.yaml"]  # no temp file left


# ----------------------------------------------------------------------------- every script
SCRIPT_FILES = [
    *sorted(ROOT.glob("*.py")),
    *sorted((ROOT / "tools").glob("*.py")),
    ROOT / "utils" / "data" / "synthetic.py",
    ROOT / "utils" / "line" / "conveyor.py",
    ROOT / "utils" / "line" / "grading.py",
    ROOT / "utils" / "line" / "bench.py",
    ROOT / "utils" / "training" / "config.py",
    ROOT / "utils" / "training" / "distillation.py",
    ROOT / "nets" / "comparison" / "__main__.py",
]


def _config_fields(path: Path) -> list[tuple[str, int]]:
    """(name, line) of every field of every dataclass whose name ends in "Config"."""
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name.endswith("Config"):
            for item in node.body:
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    found.append((item.target.id, item.end_lineno))
    return found


def test_every_config_field_has_its_help_comment_on_its_line():
    """tyro takes a field's help from the comment after it; without one it would take the
    section comment above it, which describes something else."""
    missing = []
    scripts = 0
    for path in SCRIPT_FILES:
        fields = _config_fields(path)
        scripts += bool(fields)
        comment_lines = {
            tok.start[0]
            for tok in tokenize.generate_tokens(io.StringIO(path.read_text()).readline)
            if tok.type == tokenize.COMMENT
        }
        missing += [
            f"{path.relative_to(ROOT)}:{line}: {name}"
            for name, line in fields
            if line not in comment_lines
        ]
    assert scripts >= 15, "the walk found too few Config classes"
    assert not missing, "config fields without a help comment:\n  " + "\n  ".join(missing)


def test_no_script_uses_the_old_cli_styles():
    old = []
    for path in SCRIPT_FILES:
        text = path.read_text()
        for needle in ("argparse", "metadata={", "opt("):
            if needle in text:
                old.append(f"{path.relative_to(ROOT)}: {needle}")
    assert not old, old


ENTRY_POINTS = [
    "train", "train_distillation", "get_miou", "predict", "speeding", "model_flop_params",
    "voc_annotation", "demo", "gui", "tools.kd_memory", "tools.loader_speed",
    "tools.realism_proxy", "tools.prelabel_loop", "utils.data.synthetic", "utils.line.conveyor",
    "utils.line.grading", "utils.line.bench", "nets.comparison.__main__",
]  # fmt: skip


@pytest.mark.parametrize("module", ENTRY_POINTS)
def test_every_entry_point_rejects_an_abbreviated_or_unknown_flag(module, capsys, monkeypatch):
    """`--dat` would have been taken for `--data` (or `--data-dir`) by argparse's prefix
    matching; here it is an error that names it, before the script does any work."""
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    main = importlib.import_module(module).main
    with pytest.raises(SystemExit) as exc:
        main(["--dat", "x", "--no-such-flag"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "--dat" in err and "--no-such-flag" in err
