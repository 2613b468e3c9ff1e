"""Grading rules: the one loader refuses every broken file with one line per problem (file,
grade, key); the defaults and the documented examples pass; the CLI and the app exit with 2."""

from __future__ import annotations

import os
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

import utils.line.rules as rules_module
from utils.data.preprocess import CLASS_NAMES
from utils.line.rules import (
    DEFAULT_SOURCE,
    GradeRule,
    GradingRules,
    RulesError,
    effective_limits,
    load_rules,
)

ROOT = Path(__file__).resolve().parents[1]
PAPER = list(CLASS_NAMES)  # background, sunburn, ulcer, wind_scarring

# (file name, content, what the one line of its first problem says)
BROKEN = [
    ("notyaml.yaml", "grades: [\n", "not valid YAML (line 2, column 1)"),
    ("binary.yaml", b"\x7fELF\x02\x01\x01\x00\x00\x00", "not a text file"),
    ("latin1.yaml", "grades: [{name: caf\xe9, max_share: {total: 0.1}}]\n".encode("latin-1"),
     "not UTF-8 text"),
    ("empty.yaml", "", "empty; expected a mapping"),
    ("list.yaml", "- premium\n", "expected a mapping with 'grades', found list"),
    ("unknown_top.yaml", "grade: []\n", "key 'grade': unknown; expected grades"),
    ("unknown_grade_key.yaml", "grades: [{name: a, max: {total: 0.1}}]\n",
     "grade 1 'a', key 'max': unknown"),
    ("no_grades.yaml", "reject: cull\n", "key grades: missing"),
    ("grades_empty.yaml", "grades: []\n", "key grades: empty"),
    ("no_name.yaml", "grades: [{max_share: {total: 0.1}}]\n", "grade 1, key name: missing"),
    ("name_not_text.yaml", "grades: [{name: [a], max_share: {total: 0.1}}]\n",
     "grade 1, key name: ['a'] is not text"),
    ("no_limits.yaml", "grades: [{name: premium}]\n",
     "grade 1 'premium', key max_share: no limits"),
    ("five.yaml", "grades: [{name: a, max_share: {total: 5}}]\n",
     "grade 1 'a', key max_share.total: 5 is not a share in [0, 1]"),
    ("negative.yaml", "grades: [{name: a, max_share: {ulcer: -0.1}}]\n",
     "key max_share.ulcer: -0.1 is not a share"),
    ("percent.yaml", "grades: [{name: a, max_share: {ulcer: 5%}}]\n",
     "key max_share.ulcer: '5%' is not a share"),
    ("nan.yaml", "grades: [{name: a, max_share: {ulcer: .nan}}]\n", "nan is not a share"),
    ("bool.yaml", "grades: [{name: a, max_share: {ulcer: true}}]\n", "True is not a share"),
    ("limits_list.yaml", "grades: [{name: a, max_share: [0.1]}]\n",
     "grade 1 'a', key max_share: expected a mapping"),
    ("duplicate.yaml",
     "grades:\n  - {name: a, max_share: {total: 0.01}}\n  - {name: a, max_share: {total: 0.1}}\n",
     "grade 2 'a', key name: 'a' is already grade 1 'a'"),
    ("reject_is_grade.yaml", "grades: [{name: a, max_share: {total: 0.01}}]\nreject: a\n",
     "key reject: 'a' is already grade 1 'a'"),
    ("repeated_key.yaml", "grades: [{name: a, max_share: {total: 0.01, total: 0.5}}]\n",
     "key 'total' is given twice"),
    ("pixels.yaml", "grades: [{name: a, max_share: {total: 0.01}}]\nmin_fruit_pixels: -3\n",
     "key min_fruit_pixels: -3"),
    ("swapped.yaml",
     "grades:\n  - {name: standard, max_share: {sunburn: 0.1}}\n"
     "  - {name: premium, max_share: {total: 0.005}}\n",
     "grade 2 'premium', key max_share.sunburn (0.005 < 0.1)"),
    ("looser_total.yaml",
     "grades:\n  - {name: a, max_share: {total: 0.2}}\n  - {name: b, max_share: {total: 0.1}}\n",
     "max_share.total (0.1 < 0.2): stricter than grade 1 'a'"),
    ("bad.json", '{"grades": [{"name": "a", "max_share": {"total": 0.1}}],}',
     "not valid JSON (line 1"),
    ("repeated.json", '{"grades": [], "grades": [{"name": "a", "max_share": {"total": 0.1}}]}',
     "key 'grades' is given twice"),
]  # fmt: skip


def _write(folder: Path, name: str, content: str | bytes) -> Path:
    path = folder / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


@pytest.mark.parametrize(("name", "content", "message"), BROKEN, ids=[b[0] for b in BROKEN])
def test_every_broken_rules_file_is_one_line_naming_file_grade_and_key(
    tmp_path, name, content, message
):
    path = _write(tmp_path, name, content)
    with pytest.raises(RulesError) as err:
        load_rules(path, PAPER)
    assert err.value.problems, "a RulesError without a problem"
    for line in err.value.problems:
        assert "\n" not in line and line.startswith(f"{path}: "), line
    assert message in err.value.problems[0]


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(RulesError, match=r"nope.yaml: file not found"):
        load_rules(tmp_path / "nope.yaml")
    with pytest.raises(RulesError, match="a folder, not a file"):
        load_rules(tmp_path)


def test_all_problems_of_a_file_are_reported_together(tmp_path):
    path = _write(
        tmp_path,
        "many.yaml",
        "grades:\n  - {name: a, max_share: {total: 5}}\n  - {max_share: {ulcer: -1}}\n"
        "  - {name: c}\nreject: ''\n",
    )
    with pytest.raises(RulesError) as err:
        load_rules(path)
    keys = [re.search(r"(grade \d+[^,]*, )?key \S+", p).group(0) for p in err.value.problems]
    assert keys == [
        "grade 1 'a', key max_share.total:",
        "grade 2, key name:",
        "grade 2, key max_share.ulcer:",
        "grade 3 'c', key max_share:",
        "key reject:",
    ]


def test_the_issue_example_no_longer_grades_every_fruit_premium(tmp_path):
    path = _write(tmp_path, "r.yaml", "grades: [{name: premium}]\n")
    with pytest.raises(RulesError, match="no limits"):
        load_rules(path)


def test_limits_must_name_the_models_classes(tmp_path):
    path = _write(tmp_path, "r.yaml", "grades: [{name: a, max_share: {canker: 0.1, ulcer: 0.2}}]\n")
    assert load_rules(path).grades[0].max_share == {"canker": 0.1, "ulcer": 0.2}  # no model yet
    with pytest.raises(RulesError) as err:
        load_rules(path, PAPER)
    assert err.value.problems == [
        f"{path}: grade 1 'a', key max_share.canker: the model has no class 'canker' (its "
        "defect classes: sunburn, ulcer, wind_scarring; or 'total')"
    ]
    background = _write(tmp_path, "bg.yaml", "grades: [{name: a, max_share: {background: 0.1}}]\n")
    with pytest.raises(RulesError, match="'background' is the background class"):
        load_rules(background, PAPER)
    # the default rules limit the paper's classes: a model of other classes needs its own rules
    with pytest.raises(RulesError) as err:
        load_rules(None, ["background", "scab", "rot"])
    assert all(p.startswith(f"{DEFAULT_SOURCE}: ") for p in err.value.problems)
    assert "pass --rules FILE" in err.value.problems[0]


def test_defaults_pass_and_round_trip():
    rules = load_rules(None, PAPER)
    assert rules == GradingRules() and rules.problems(PAPER) == []
    assert GradingRules.from_dict(rules.to_dict()) == rules
    assert yaml.safe_load(yaml.safe_dump(rules.to_dict())) == rules.to_dict()


def _documented_rules() -> list[tuple[str, str]]:
    """(where, YAML text) of every rules example in the docs and the rules module docstring."""
    found = []
    for path in [ROOT / "docs" / "production_line.md", ROOT / "README.md"]:
        text = path.read_text(encoding="utf-8")
        for i, block in enumerate(re.findall(r"```yaml\n(.*?)```", text, re.S)):
            if re.search(r"^grades:", block, re.M):
                found.append((f"{path.name} block {i}", block))
    doc = rules_module.__doc__
    block = re.search(r"::\n\n((?:    .*\n)+)", doc).group(1)
    found.append(("utils/line/rules.py docstring", "\n".join(ln[4:] for ln in block.splitlines())))
    return found


@pytest.mark.parametrize(("where", "text"), _documented_rules(), ids=lambda v: str(v)[:40])
def test_documented_examples_pass(tmp_path, where, text):
    path = _write(tmp_path, "doc.yaml", text)
    named = re.search(r"--class-names ([\w ]+)", text)  # an example for a model of other classes
    rules = load_rules(path, named.group(1).split() if named else PAPER)
    assert rules.grades and rules.names[-1] == rules.reject, where


def test_documented_examples_are_found():
    assert len(_documented_rules()) >= 2  # the docs' default block and the module docstring


def test_effective_limits_and_the_order_they_define():
    premium, standard = GradingRules().grades
    defects = PAPER[1:]
    assert effective_limits(premium, defects) == dict.fromkeys([*defects, "total"], 0.005)
    assert effective_limits(standard, defects) == pytest.approx(
        {"sunburn": 0.1, "ulcer": 0.01, "wind_scarring": 0.05, "total": 0.16}
    )
    # Per-class limits can make a grade stricter on the total than a looser total limit after
    # it: B's classes add up to 0.1, so "total: 0.1" after it accepts all B accepts.
    ok = GradingRules(
        [GradeRule("B", {"sunburn": 0.05, "ulcer": 0.05}), GradeRule("C", {"total": 0.1})]
    )
    assert ok.problems(["background", "sunburn", "ulcer"]) == []
    # ... but not when the model has a third defect class B leaves unlimited
    assert ok.problems(["background", "sunburn", "ulcer", "scar"])


def test_grader_refuses_rules_naming_classes_the_model_lacks():
    from utils.line.grading import Grader

    with pytest.raises(RulesError, match="no class 'sunburn'"):
        Grader(class_names=["background", "scab", "rot"])
    custom = GradingRules([GradeRule("good", {"total": 0.01})], reject="cull")
    assert Grader(custom, class_names=["background", "scab", "rot"]).rules is custom


# ---------------------------------------------------------------------------- command lines
@pytest.fixture()
def scab_checkpoint(tmp_path, monkeypatch):
    """A project checkpoint of a 1x1-conv "model" with the classes background, scab, rot."""
    import torch.nn as nn

    import nets
    from nets.checkpoint import build_checkpoint, save_checkpoint

    class Tiny(nn.Module):
        num_classes, default_input_size, fixed_input_size, backbone = 3, 32, False, None

        def __init__(self, num_classes: int = 3, **kw) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 1)

        def forward(self, x):
            return self.conv(x)  # (B, 3, H, W)

    monkeypatch.setitem(nets.MODELS, "tiny_scab_net", Tiny)
    ckpt = build_checkpoint(
        nets.build_model("tiny_scab_net"),
        input_size=(32, 32),
        class_names=["background", "scab", "rot"],
    )
    return save_checkpoint(ckpt, tmp_path / "scab.pth")


def test_grading_cli_exits_2_with_one_line_per_problem(tmp_path, scab_checkpoint, capsys):
    from utils.line.grading import main

    photo = tmp_path / "p.png"
    cv2.imwrite(str(photo), np.full((40, 40, 3), 128, np.uint8))
    base = ["--checkpoint", str(scab_checkpoint), "--source", str(photo)]
    base += ["--out", str(tmp_path / "o")]
    base += ["--backend", "torch", "--threads", "0"]
    broken = _write(tmp_path, "r.yaml", "grades:\n  - {name: a}\n  - {max_share: {total: 2}}\n")
    assert main([*base, "--rules", str(broken)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"error: {broken}: grade 1 'a', key max_share: no limits; give the largest share of the "
        "fruit per defect class or for the total, e.g. {total: 0.005}",
        f"error: {broken}: grade 2, key name: missing or empty; every grade needs a name",
        f"error: {broken}: grade 2, key max_share.total: 2 is not a share in [0, 1] (a fraction "
        "of the fruit area: 0.05 is 5 %)",
    ]
    assert not (tmp_path / "o").exists()  # refused before any work
    # the defaults name sunburn, ulcer, wind_scarring: not classes of this model
    assert main(base) == 2
    err = capsys.readouterr().err
    assert "error: the default grading rules: grade 2 'standard', key max_share.sunburn" in err
    assert "Traceback" not in err
    fitting = _write(tmp_path, "scab.yaml", "grades: [{name: good, max_share: {scab: 0.01}}]\n")
    assert main([*base, "--rules", str(fitting), "--no-model-fps"]) == 0
    header = (tmp_path / "o" / "grades.csv").read_text().splitlines()[0]
    assert header.endswith("scab_pct,rot_pct,defect_pct,grade")


def test_gui_takes_rules_refuses_grades_and_broken_rules(tmp_path, capsys):
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    pytest.importorskip("PySide6.QtWidgets", reason="PySide6 is not installed")
    import gui

    assert gui.main(["--grades", "g.yaml"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--rules" in err[0]
    broken = _write(tmp_path, "r.yaml", "grades: [{name: premium}]\n")
    assert gui.main(["--rules", str(broken)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"gui.py: error: {broken}: grade 1 'premium', key max_share: no limits; give the largest "
        "share of the fruit per defect class or for the total, e.g. {total: 0.005}"
    ]
