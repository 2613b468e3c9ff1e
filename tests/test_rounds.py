"""utils/deploy/rounds.py and utils/deploy/bare_timing.py: the order of interleaved rounds, the
figures over rounds, ratios paired round by round, and the bare control process. Known answers
and structure only: nothing here asserts a wall-clock figure."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from torch import nn

from utils.deploy.onnx_export import export_onnx
from utils.deploy.rounds import (
    BIAS_TOLERANCE,
    bare_latency,
    bias_fields,
    bias_verdict,
    in_fresh_process,
    over_rounds,
    ratio_by_round,
    schedule,
    wants_bias_check,
)


def test_schedule_interleaves_rounds() -> None:
    assert schedule(3, 2) == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]  # A B C, A B C
    with pytest.raises(ValueError, match="rounds must be >= 1"):
        schedule(3, 0)


def test_over_rounds_known_answer() -> None:
    got = over_rounds([12.0, 18.0, 11.0, None])  # a slow round, and one that did not run
    assert got["latency_ms"] == pytest.approx(12.0)  # median of the rounds that ran
    assert got["round_latencies_ms"] == [12.0, 18.0, 11.0, None]
    assert got["round_min_ms"] == 11.0 and got["round_max_ms"] == 18.0
    assert got["round_spread_pct"] == pytest.approx(100 * 7 / 12)
    assert over_rounds([None])["latency_ms"] is None


def test_ratio_by_round_pairs_each_round() -> None:
    """A drifting machine: round 2 ran 1.5x slow for both rows. Per-round ratios are all 2;
    the ratio of the two medians taken apart would not be (the rows' slow rounds differ)."""
    baseline = [20.0, 30.0, 20.0]
    row = [10.0, 15.0, 10.0]
    assert ratio_by_round(baseline, row) == pytest.approx(2.0)
    skewed_base, skewed_row = [20.0, 30.0, 30.0], [10.0, 15.0, 10.0]  # ratios 2, 2, 3
    assert ratio_by_round(skewed_base, skewed_row) == pytest.approx(2.0)
    assert np.median(skewed_base) / np.median(skewed_row) == pytest.approx(3.0)  # unpaired
    assert ratio_by_round([10.0, None], [5.0, 4.0]) == pytest.approx(2.0)  # missing round left out
    assert ratio_by_round([None], [1.0]) is None
    with pytest.raises(ValueError, match="not paired"):
        ratio_by_round([1.0], [1.0, 2.0])


def test_bias_verdict_uses_the_stated_tolerance() -> None:
    assert pytest.approx(0.10) == BIAS_TOLERANCE
    assert bias_verdict(1.0 + BIAS_TOLERANCE - 1e-9) == "ok"
    assert bias_verdict(0.95) == "ok"
    assert bias_verdict(1.0 + BIAS_TOLERANCE + 1e-6) == "biased"
    assert bias_verdict(0.85) == "biased"
    assert bias_verdict(None) == "-"


def test_which_rows_get_a_bare_twin_and_their_bias_keys() -> None:
    checked: set[str] = set()
    firsts = [wants_bias_check("first", rt, checked)
              for rt in ("onnxruntime", "openvino", "onnxruntime", "torch")]  # fmt: skip
    assert firsts == [True, True, False, False]  # once per CPU runtime; torch has no bare twin
    assert wants_bias_check("all", "onnxruntime", checked)
    assert not wants_bias_check("none", "openvino", set())
    with pytest.raises(ValueError, match="--check-bias 'some'"):
        wants_bias_check("some", "openvino", set())
    got = bias_fields([10.0, 20.0, 12.0], [10.0, 10.0, None])  # round 2 ran 2x slow
    assert got == {"bare_round_latencies_ms": [10.0, 10.0, None], "bias_ratio": 1.5,
                   "bias_check": "biased"}  # fmt: skip


def test_in_fresh_process_runs_elsewhere() -> None:
    assert in_fresh_process(os.getpid) != os.getpid()


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 1)).eval()
    path = tmp_path_factory.mktemp("bare") / "tiny.onnx"
    export_onnx(model, path, (16, 16), opset=17)
    return path


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_bare_process_times_the_file_with_nothing_else_loaded(runtime: str, tiny_onnx) -> None:
    got = bare_latency(runtime, tiny_onnx, (1, 3, 16, 16), threads=1, runs=3, warmup=1)
    assert len(got["times_ms"]) == 3 and all(t > 0 for t in got["times_ms"])
    assert got["median_ms"] == pytest.approx(float(np.median(got["times_ms"])))
    assert got["loaded"] == []  # neither torch nor the project: the control is bare
    assert got["cpu_ms_per_call"] >= 0


def test_bare_process_failure_names_the_file(tmp_path) -> None:
    with pytest.raises(RuntimeError, match=r"bare timing of .*missing\.onnx on onnxruntime"):
        bare_latency("onnxruntime", tmp_path / "missing.onnx", (1, 3, 8, 8), runs=1, warmup=0)
