"""`make demo` end to end on a tiny set: data, training, get_miou.py, predict.py, a graded line."""

from __future__ import annotations

import json

import demo


def test_demo_runs_every_step(tmp_path, capsys):
    data, out = tmp_path / "oranges", tmp_path / "runs"
    argv = ["--data", str(data), "--num-images", "10", "--belts", "1", "--belt-seconds", "0.5",
            "--input-size", "64", "64", "--epochs", "1", "--eval-period", "1", "--batch-size", "2",
            "--workers", "0", "--predict-images", "2", "--test-seconds", "0.3",
            "--backend", "torch", "--out", str(out)]  # fmt: skip
    assert demo.main(argv) == 0

    voc = data / "VOC2007"
    test_ids = (voc / "ImageSets" / "Segmentation" / "test.txt").read_text().split()
    assert any(i.startswith("synth_") for i in test_ids) and any(
        i.startswith("belt_100_") for i in test_ids
    )  # photos and belt frames in one set
    (run_dir,) = out.iterdir()
    assert (run_dir / "best.pth").is_file() and (run_dir / "config.yaml").is_file()
    metrics = json.loads((run_dir / "test_eval" / "metrics.json").read_text())
    assert 0.0 <= metrics["mIoU"] <= 1.0
    assert len(list((run_dir / "predictions").glob("*.png"))) >= 2
    line = json.loads((run_dir / "line" / "grading_eval.json").read_text())
    assert line["frames"] == 9 and (run_dir / "line" / "belt_seed7_graded.mp4").is_file()
    assert (run_dir / "line" / "grades.csv").is_file()
    printed = capsys.readouterr().out
    assert f"test mIoU     {100 * metrics['mIoU']:.2f}%" in printed
    assert "line          " in printed and "against the ground truth" in printed
