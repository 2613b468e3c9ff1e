"""Inference runtimes (utils/deploy/runtimes.py) and the layer rule that keeps them below the
predictor: utils.deploy never imports utils.inference (nor data, training or the line)."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from utils.deploy.torch_runtime import TorchBackend
from utils.inference.model_predictor import ModelPredictor

ROOT = Path(__file__).resolve().parents[1]
SIZE = 32


class TinySeg(nn.Module):
    """Conv-BN-ReLU, 1x1 classifier: enough for a layout to matter to oneDNN."""

    def __init__(self, num_classes: int = 3, fixed: bool = False) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.Conv2d(8, num_classes, 1),
        )
        self.num_classes = num_classes
        self.default_input_size = SIZE
        self.fixed_input_size = fixed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def test_torch_cpu_backend_runs_channels_last_and_returns_contiguous_nchw() -> None:
    torch.manual_seed(0)
    model = TinySeg().eval()
    x = np.random.default_rng(0).random((2, 3, SIZE, SIZE), dtype=np.float32)
    with torch.inference_mode():
        ref = model(torch.from_numpy(x)).numpy()
    backend = TorchBackend(model, "cpu")
    assert backend.channels_last  # the CPU default
    assert backend.model.body[0].weight.is_contiguous(memory_format=torch.channels_last)
    got = backend(x)
    assert got.shape == (2, 3, SIZE, SIZE) and got.flags["C_CONTIGUOUS"]
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    plain = TorchBackend(TinySeg().eval(), "cpu", channels_last=False)
    assert not plain.channels_last and "channels_last" not in plain.describe()


def test_predictor_refuses_another_size_for_a_fixed_size_model() -> None:
    model = TinySeg(fixed=True).eval()
    with pytest.raises(ValueError, match="runs only at 32x32 input, not 64x64"):
        ModelPredictor(model, 64)
    assert ModelPredictor(model, SIZE).input_size == (SIZE, SIZE)
    assert ModelPredictor(TinySeg().eval(), 64).input_size == (64, 64)  # not fixed: any size


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_deploy_imports_no_layer_above_it() -> None:
    """utils.deploy sits below utils.inference: no import of it, inside functions included."""
    banned = ("utils.inference", "utils.training", "utils.line")
    for path in sorted((ROOT / "utils" / "deploy").glob("*.py")):
        bad = [n for n in _imports(path) if n.startswith(banned)]
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_auto_keeps_the_fastest_backend_that_matches_fp32() -> None:
    """choose_fastest: an INT8 candidate whose masks differ is rejected however fast it is;
    among the rest the quickest wins, and the record names all of them."""
    import time

    from utils.deploy.backends import choose_fastest

    rng = np.random.default_rng(0)
    inputs = rng.random((3, 3, 8, 8), dtype=np.float32)
    reference = rng.standard_normal((3, 4, 8, 8)).astype(np.float32)

    def runtime(delay: float, logits: np.ndarray):
        def run(x: np.ndarray) -> np.ndarray:
            time.sleep(delay)
            i = int(np.argmax([np.array_equal(x[0], inp) for inp in inputs]))
            return logits[i : i + 1]

        return run

    wrong = -reference  # every argmax moved
    candidates = {
        "ort-int8": runtime(0.0, wrong),  # fastest, but not the same masks
        "ov-int8": runtime(0.002, reference),
        "ov-fp32": runtime(0.006, reference),
    }
    choice = choose_fastest(candidates, reference, inputs, 4, rounds=2, runs=2, cpu="test")
    assert choice.chosen == "ov-int8"
    assert "ort-int8" in choice.rejected and "agreement" in choice.rejected["ort-int8"]
    assert set(choice.median_ms) == {"ov-int8", "ov-fp32"}
    assert choice.agreement["ov-fp32"] == 1.0
    assert choice.line().startswith("auto chose ov-int8 on test (")
