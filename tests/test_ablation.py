"""tools/ablation.py: the grid file, the plan, resumability and the summary."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import yaml

from tools import ablation

GRID = {
    "out": "OUT",
    "seeds": [1, 2],
    "common": {"epochs": 2, "input-size": 32, "tensorboard": False},
    "evaluate": [
        {"name": "test", "data": "DATA", "split": "test"},
        {"name": "real", "data": "REAL", "split": "all", "optional": True},
    ],
    "prepare": {"teacher": {"script": "train.py", "args": {"model": "fastsegformer_p", "seed": 0}}},
    "baseline": "plain",
    "configs": {
        "plain": {"script": "train.py", "label": "no KD", "args": {"model": "fastsegformer_p"}},
        "dist": {
            "script": "train_distillation.py",
            "args": {"kd": "dist", "teacher-checkpoint": "{teacher}/best.pth", "epochs": 3},
        },
    },
}


def _write(tmp_path: Path, doc: dict, **changes) -> Path:
    doc = json.loads(json.dumps(doc).replace("OUT", str(tmp_path / "out")))
    doc.update(changes)
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_flag_tokens() -> None:
    tokens = ablation.flag_tokens(
        {"input_size": 256, "amp": False, "dice": True, "kd-pairs": ["5:5", "6:6"]}, "x"
    )
    assert tokens == ["--input-size", "256", "--no-amp", "--dice", "--kd-pairs", "5:5", "6:6"]
    with pytest.raises(ablation.GridError, match="--name is set by the runner"):
        ablation.flag_tokens({"name": "x"}, "x")


def test_plan_orders_runs_and_substitutes_prepared_folders(tmp_path) -> None:
    grid = ablation.load_grid(_write(tmp_path, GRID))
    prepared, runs = ablation.plan(grid)
    assert [r.label for r in prepared] == ["teacher"]
    assert [r.label for r in runs] == ["plain/seed1", "plain/seed2", "dist/seed1", "dist/seed2"]
    out = tmp_path / "out"
    assert prepared[0].folder == out / "prepare" / "teacher"
    teacher = prepared[0].command("python")
    assert teacher[teacher.index("--seed") + 1] == "0"  # a prepared run sets its own seed
    dist = runs[2].command("python")
    assert dist[:2] == ["python", "train_distillation.py"]
    assert dist[dist.index("--teacher-checkpoint") + 1] == f"{out}/prepare/teacher/best.pth"
    # common flags first, the configuration's override them (the last --epochs wins)
    assert dist[dist.index("--epochs") + 1] == "3" and dist.count("--epochs") == 1
    assert dist[-8:] == ["--seed", "1", "--save-dir", str(out / "runs" / "dist"), "--name",
                         "seed1", "--resume", "auto"]  # fmt: skip
    assert "--no-tensorboard" in dist


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"seeds": [1, 1]}, "repeats a seed"),
        ({"seeds": "1"}, "list of integers"),
        ({"evaluate": []}, "at least one entry"),
        ({"baseline": "nope"}, "baseline 'nope' is not one of the configs"),
        ({"colour": 1}, "unknown key(s) ['colour']"),
        ({"configs": {"a": {"script": "predict.py"}}}, "expected one of train.py"),
        ({"configs": {"a": {"script": "train.py", "args": {"name": "x"}}}}, "set by the"),
        ({"configs": {"a": {"script": "train.py", "args": {"seed": 4}}}}, "--seed is set by"),
        ({"common": {"seed": 4}}, "--seed is set by"),
    ],
)
def test_bad_grid_files_name_the_problem(tmp_path, changes: dict, message: str) -> None:
    doc = {k: v for k, v in GRID.items() if k != "baseline" or "configs" not in changes}
    with pytest.raises(ablation.GridError, match=message.replace("(", r"\(").replace(")", r"\)")
                       .replace("[", r"\[").replace("]", r"\]")):  # fmt: skip
        ablation.load_grid(_write(tmp_path, doc, **changes))


def test_unknown_prepared_reference_is_an_error(tmp_path) -> None:
    doc = json.loads(json.dumps(GRID))
    doc["configs"]["dist"]["args"]["teacher-checkpoint"] = "{techer}/best.pth"
    with pytest.raises(ablation.GridError, match="'techer'.*not a prepared run"):
        ablation.plan(ablation.load_grid(_write(tmp_path, doc)))


def _fake_result(run: ablation.Run, miou: float, real: float | None, seconds: float) -> None:
    metrics = {"test": {"mIoU": miou, "IoU": [0.9, miou, miou - 0.1, 0.2], "class_names":
                        ["background", "sunburn", "ulcer", "wind"]}}  # fmt: skip
    if real is not None:
        metrics["real"] = {"mIoU": real, "IoU": [0.5] * 4, "class_names": ["b", "s", "u", "w"]}
    record = {"config": run.config, "seed": run.seed, "command": run.command("py")[1:],
              "train_seconds": seconds, "eval_seconds": 2.0, "best_val_mIoU": miou + 0.01,
              "metrics": metrics}  # fmt: skip
    run.folder.mkdir(parents=True, exist_ok=True)
    (run.folder / ablation.RESULT).write_text(json.dumps(record))


def test_summary_mean_std_delta_csv_and_plot(tmp_path) -> None:
    grid = ablation.load_grid(_write(tmp_path, GRID))
    prepared, runs = ablation.plan(grid)
    _fake_result(prepared[0], 0.8, 0.3, 600)
    _fake_result(runs[0], 0.50, 0.20, 60)  # plain
    _fake_result(runs[1], 0.54, 0.24, 120)
    _fake_result(runs[2], 0.55, None, 90)  # dist: the real photos were not there
    paths = ablation.summarise(grid, prepared, runs)
    md = paths["md"].read_text()
    row = "| no KD | 2/2 | 52.00 ± 2.83 | +0.00 | 90.0 | 52.0 | 42.0 | 20.0 | 22.00 ± 2.83 | 1.5 |"
    assert row in md
    assert "| dist | 1/2 | 55.00 ± - | +3.00 |" in md  # one seed: no standard deviation
    assert "| teacher | 80.00 | 30.00 | 10.0 |" in md
    rows = list(csv.DictReader(paths["csv"].open()))
    assert [r["config"] for r in rows] == ["plain", "dist"]
    assert math.isclose(float(rows[0]["test_mIoU_std"]), math.sqrt(2 * 0.02**2), rel_tol=1e-9)
    assert rows[1]["test_mIoU_std"] == "" and rows[1]["real_mIoU_mean"] == ""
    per_run = list(csv.DictReader(paths["runs"].open()))
    assert [(r["config"], r["seed"]) for r in per_run] == [
        ("teacher", ""),
        ("plain", "1"),
        ("plain", "2"),
        ("dist", "1"),
    ]
    assert paths["png"].read_bytes()[:4] == b"\x89PNG"


def test_changed_grid_file_is_refused_for_existing_runs(tmp_path) -> None:
    grid = ablation.load_grid(_write(tmp_path, GRID))
    prepared, runs = ablation.plan(grid)
    _fake_result(runs[0], 0.5, 0.2, 60)
    assert ablation.run_state(runs[0], "py") == "done"
    assert ablation.run_state(runs[1], "py") == "new"
    doc = json.loads(json.dumps(GRID))
    doc["common"]["epochs"] = 5
    changed = ablation.plan(ablation.load_grid(_write(tmp_path, doc)))[1]
    with pytest.raises(ablation.GridError, match="delete .*seed1 to redo the run"):
        ablation.run_state(changed[0], "py")


@pytest.mark.slow
def test_tiny_grid_end_to_end_and_resumable(tmp_path, capsys) -> None:
    """Two real train.py runs and one distillation run, evaluated by get_miou.py; a second
    call redoes nothing."""
    from utils.data.synthetic import generate_dataset

    data = generate_dataset(tmp_path / "syn", num=6, seed=0, size=64)
    doc = {
        "out": str(tmp_path / "out"),
        "seeds": [1, 2],
        "common": {"data": str(data), "epochs": 1, "batch-size": 2, "freeze-batch-size": 2,
                   "freeze-epochs": 0, "max-steps": 1, "workers": 0, "overlays": 0,
                   "tensorboard": False},  # fmt: skip
        "evaluate": [{"name": "test", "data": str(data), "split": "test"}],
        "prepare": {"teacher": {"script": "train.py",
                                "args": {"model": "fastsegformer_p", "input-size": 64}}},
        "configs": {
            "plain": {"script": "train.py", "args": {"model": "fastsegformer_p",
                                                     "input-size": 32}},
            "cwd": {"script": "train_distillation.py",
                    "args": {"kd": "cwd", "teacher": "fastsegformer_p",
                             "teacher-checkpoint": "{teacher}/best.pth",
                             "teacher-input-size": 64, "input-size": 32}},
        },
    }  # fmt: skip
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump(doc))
    assert ablation.main(["--grid", str(grid), "--only", "plain", "cwd", "--lock", ""]) == 0
    out = tmp_path / "out"
    for folder in ["prepare/teacher", "runs/plain/seed1", "runs/plain/seed2", "runs/cwd/seed1"]:
        record = json.loads((out / folder / ablation.RESULT).read_text())
        assert 0 <= record["metrics"]["test"]["mIoU"] <= 1 and record["train_seconds"] > 0
    cwd = json.loads((out / "runs/cwd/seed1" / ablation.RESULT).read_text())
    assert "--kd" in cwd["command"] and cwd["command"][0] == "train_distillation.py"
    summary = (out / "summary.md").read_text()
    assert "| plain | 2/2 |" in summary and "| cwd | 2/2 |" in summary
    capsys.readouterr()
    assert ablation.main(["--grid", str(grid), "--lock", ""]) == 0  # nothing left to do
    assert "0 of 5 runs to do" in capsys.readouterr().out
