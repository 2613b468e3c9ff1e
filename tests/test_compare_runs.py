"""tools/compare_runs.py: curves of several runs from their history.json files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from tools import compare_runs


def _run(folder: Path, losses: list[float], mious: list[float]) -> Path:
    folder.mkdir(parents=True)
    history = {
        "train": [{"epoch": i + 1, "lr": 1e-3, "images_per_s": 5.0, "loss": v}
                  for i, v in enumerate(losses)],
        "eval": [{"epoch": 2 * (i + 1), "mIoU": v, "mPA": v, "accuracy": v, "IoU": [v]}
                 for i, v in enumerate(mious)],
    }  # fmt: skip
    (folder / "history.json").write_text(json.dumps(history))
    return folder


def test_draws_one_line_per_run_and_writes_the_png(tmp_path) -> None:
    a = _run(tmp_path / "a", [1.0, 0.8, 0.6, 0.5], [0.3, 0.5])
    b = _run(tmp_path / "b", [1.1, 0.9, 0.7, 0.4], [0.2, 0.6])
    histories = [compare_runs.read_history(a), compare_runs.read_history(b)]
    fig = compare_runs.draw(histories, ["fp32", "bf16"])
    loss_ax, miou_ax = fig.axes
    assert [list(line.get_ydata()) for line in loss_ax.lines] == [
        [1.0, 0.8, 0.6, 0.5],
        [1.1, 0.9, 0.7, 0.4],
    ]
    assert [list(line.get_xdata()) for line in miou_ax.lines] == [[2, 4], [2, 4]]
    assert list(miou_ax.lines[1].get_ydata()) == pytest.approx([20.0, 60.0])
    assert [t.get_text() for t in miou_ax.get_legend().get_texts()] == ["fp32", "bf16"]

    out = tmp_path / "cmp.png"
    argv = ["--runs", str(a), str(b), "--labels", "fp32", "bf16", "--out", str(out)]
    assert compare_runs.main(argv) == 0
    assert Image.open(out).size == (1000, 400)


def test_a_folder_without_history_is_named(tmp_path, capsys) -> None:
    a = _run(tmp_path / "a", [1.0], [0.3])
    (tmp_path / "empty").mkdir()
    assert compare_runs.main(["--runs", str(a), str(tmp_path / "empty")]) == 2
    assert "empty: no history.json" in capsys.readouterr().err
    assert compare_runs.main(["--runs", str(a), "--labels", "x", "y"]) == 2
    assert "2 labels for 1 runs" in capsys.readouterr().err
