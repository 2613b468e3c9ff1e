"""`make demo` end to end on a tiny synthetic set: data, training, get_miou.py, predict.py."""

from __future__ import annotations

import json

import demo


def test_demo_runs_every_step(tmp_path, capsys):
    data, out = tmp_path / "oranges", tmp_path / "runs"
    argv = ["--data", str(data), "--num-images", "10", "--input-size", "64", "--epochs", "1",
            "--eval-period", "1", "--batch-size", "2", "--workers", "0", "--predict-images", "2",
            "--out", str(out)]  # fmt: skip
    assert demo.main(argv) == 0

    assert (data / "VOC2007" / "ImageSets" / "Segmentation" / "test.txt").is_file()
    (run_dir,) = out.iterdir()
    assert (run_dir / "best.pth").is_file() and (run_dir / "config.yaml").is_file()
    metrics = json.loads((run_dir / "test_eval" / "metrics.json").read_text())
    assert 0.0 <= metrics["mIoU"] <= 1.0
    assert len(list((run_dir / "predictions").glob("*.png"))) >= 2
    printed = capsys.readouterr().out
    assert f"test mIoU     {100 * metrics['mIoU']:.2f}%" in printed
