"""tools/versus_original.py on a stand-in of the official repository, written here and laid out
like it (nets/FastSegFormer/fast_segformer.py, importing its own package and a timm path that
current timm moved), so CI needs no clone: both codes are timed in the same interleaved rounds,
speed-ups are paired round by round, and this project's `nets` is left as it was. Tiny models;
no wall-clock assertions."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from test_predict_helpers import TinySegNet

import nets
from utils.deploy.rounds import ratio_by_round

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import versus_original  # noqa: E402

STAND_IN = """
import torch.nn as nn
import torch.nn.functional as F
from timm.models.layers.helpers import to_2tuple  # timm 1.0 moved it to timm.layers.helpers

from nets.FastSegFormer.blocks import conv_bn_relu  # the clone's own package, as the original's


class FastSegFormer(nn.Module):
    def __init__(self, num_classes=21, pretrained=False, backbone="poolformer_s12",
                 Pyramid="pooling", fork_feat=False, cnn_branch=False):
        super().__init__()
        self.body = conv_bn_relu(3, 8, to_2tuple(3))
        self.classify = nn.Conv2d(8, num_classes, 1)

    def forward(self, x):
        logits = self.classify(self.body(x))
        return F.interpolate(logits, size=x.shape[2:], mode="bilinear", align_corners=True)
"""
BLOCKS = """
import torch.nn as nn


def conv_bn_relu(cin, cout, k):
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k[0] // 2, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(True))
"""


def write_stand_in(root: Path) -> Path:
    package = root / "nets" / "FastSegFormer"
    package.mkdir(parents=True)
    (root / "nets" / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "blocks.py").write_text(BLOCKS)
    (package / "fast_segformer.py").write_text(STAND_IN)
    return root


def test_timm_shim_resolves_moved_modules_only() -> None:
    finder = versus_original.TimmMovedModules()
    sys.meta_path.append(finder)
    try:
        moved = importlib.import_module("timm.models.layers.helpers")
        assert moved is importlib.import_module("timm.layers.helpers")
        assert finder.find_spec("timm.models.layers.no_such_module") is None
        assert finder.find_spec("numpy.linalg") is None
    finally:
        sys.meta_path.remove(finder)
        sys.modules.pop("timm.models.layers.helpers", None)


def test_versus_original_times_both_codes_in_the_same_rounds(tmp_path, monkeypatch, capsys):
    original = write_stand_in(tmp_path / "FastSegFormer")
    for name in versus_original.ORIGINAL_CONFIGS:  # ours: tiny models under the real names
        monkeypatch.setitem(nets.MODELS, name, lambda num_classes=4, **kw: TinySegNet(num_classes))
    ours_before = sys.modules["nets"]
    argv = [
        "--original", str(original), "--backends", "torch", "ort-fp32", "ov-fp32",
        "--original-backends", "ort-fp32", "ov-fp32", "--input-size", "32", "--rounds", "2",
        "--runs", "2", "--warmup", "1", "--threads", "1", "--isolation", "none",
        "--json", str(tmp_path / "rows.json"), "--out", str(tmp_path / "out"),
    ]  # fmt: skip
    docs = versus_original.main(argv)
    assert json.loads((tmp_path / "rows.json").read_text()) == docs
    expected = {
        (code, model, backend)
        for model in ("fastsegformer_p", "fastsegformer_e")
        for code, backends in (("original", ("ort-fp32", "ov-fp32")),
                               ("project", ("torch", "ort-fp32", "ov-fp32")))
        for backend in backends
    }  # fmt: skip
    assert len(docs) == len(expected)
    assert {(d["code"], d["model"], d["backend"]) for d in docs} == expected
    reference = {
        d["model"]: d for d in docs if (d["code"], d["backend"]) == ("original", "ort-fp32")
    }
    for d in docs:
        assert d["status"] == "ok", d
        assert len(d["round_latencies_ms"]) == 2
        assert d["latency_ms"] == pytest.approx(float(np.median(d["round_latencies_ms"])))
        ref = reference[d["model"]]
        assert d["speedup_vs_original"] == pytest.approx(
            ratio_by_round(ref["round_latencies_ms"], d["round_latencies_ms"])
        )
    assert all(r["speedup_vs_original"] == pytest.approx(1.0) for r in reference.values())
    ort_p = reference["fastsegformer_p"]  # the first ONNX Runtime row: checked against bare
    assert len(ort_p["bare_round_latencies_ms"]) == 2 and ort_p["bias_check"] in ("ok", "biased")
    files = {d["file"] for d in docs if d["code"] == "original"}
    assert all(Path(f).is_file() for f in files)  # the original's ONNX file and its IR
    table = capsys.readouterr().out
    assert table.startswith("| model | code | backend | latency ms |")
    assert "| fastsegformer_e | project | ov-fp32 |" in table
    assert sys.modules["nets"] is ours_before and "FastSegFormer" not in str(nets.__file__)
    saved = json.loads(next((tmp_path / "out").glob("versus_*.json")).read_text())
    assert saved["rows"] == docs and "cpu_flags" in saved["environment"]


def test_versus_original_refuses_a_folder_that_is_not_a_clone(tmp_path) -> None:
    with pytest.raises(SystemExit, match="expected a clone of the official FastSegFormer"):
        versus_original.main(["--original", str(tmp_path), "--out", str(tmp_path / "o")])
    with pytest.raises(SystemExit, match="--original PATH is required"):
        versus_original.main(["--out", str(tmp_path / "o")])
