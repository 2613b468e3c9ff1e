"""speeding.py and utils/deploy/timing.py on a tiny model: every CPU backend agrees with eager
PyTorch, CUDA rows are skipped with a reason, and the JSON rows carry their fields. No wall-clock
assertions: the machines are shared and noisy."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

import speeding
from nets.checkpoint import build_checkpoint, save_checkpoint
from utils.deploy.timing import benchmark, environment, summarize

SIZE = 32


class TinySeg(nn.Module):
    """A student-shaped tiny network: conv-BN-ReLU, depthwise conv-BN, 1x1 classifier, resize."""

    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.Conv2d(8, num_classes, 1),
        )
        self.num_classes = num_classes
        self.default_input_size = SIZE
        self.build_config = {"name": "tiny", "num_classes": num_classes, "options": {}}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.body(x)  # (B, K, H/2, W/2)
        return nn.functional.interpolate(logits, size=x.shape[2:], mode="bilinear")


def tiny_subject(seed: int = 0) -> speeding.Subject:
    torch.manual_seed(seed)
    model = TinySeg().eval()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.3, 0.3)
            m.running_var.uniform_(0.5, 1.5)
    return speeding.Subject("tiny", model, (SIZE, SIZE))


def config(tmp_path, **kw) -> speeding.Config:
    defaults = dict(
        runs=2, warmup=1, e2e_runs=1, calib_images=4, out=str(tmp_path / "speed"), isolation="none"
    )
    defaults.update(kw)
    return speeding.Config(**defaults)


@pytest.fixture(scope="module")
def calib_data(tmp_path_factory: pytest.TempPathFactory):
    from utils.data.synthetic import generate_dataset

    return generate_dataset(tmp_path_factory.mktemp("voc"), num=6, seed=0, size=64, workers=1)


# ------------------------------------------------------------------------------ timing
def test_summarize_known_answer() -> None:
    t = summarize([0.001, 0.002, 0.003, 0.004], batch=2, warmup=3)
    assert t.median_ms == pytest.approx(2.5)
    assert t.mean_ms == pytest.approx(2.5)
    assert t.min_ms == pytest.approx(1.0) and t.max_ms == pytest.approx(4.0)
    assert t.fps == pytest.approx(2 * 1000 / 2.5)  # batch images per median latency
    assert t.runs == 4 and t.warmup == 3
    with pytest.raises(ValueError, match="at least one"):
        summarize([])


def test_benchmark_warms_up_then_syncs_every_run() -> None:
    calls: list[str] = []
    t = benchmark(lambda: calls.append("run"), runs=5, warmup=3, sync=lambda: calls.append("sync"))
    # 3 warm-up calls, one sync, then run+sync five times
    assert calls == ["run"] * 3 + ["sync"] + ["run", "sync"] * 5
    assert t.runs == 5 and t.median_ms >= 0
    with pytest.raises(ValueError, match="runs"):
        benchmark(lambda: None, runs=0)


def test_environment_names_machine_and_versions() -> None:
    env = environment("cpu")
    for key in ("cpu", "torch", "onnxruntime", "torch_threads", "device", "gpu"):
        assert key in env
    assert env["torch_threads"] >= 1


# ------------------------------------------------------------------------------ backends
CPU_BACKENDS = ["torch-fp32", "torch-fp32-cl", "torch-fp32-fused", "ort-fp32", "ort-fp32-noopt"]


@pytest.mark.parametrize("backend", [*CPU_BACKENDS, "ort-int8", "ov-fp32", "ov-int8"])
def test_backend_matches_eager(backend: str, tmp_path, calib_data) -> None:
    subject = tiny_subject()
    cfg = config(tmp_path, data=str(calib_data))
    ws = speeding.Workspace(cfg, subject, tmp_path)
    runner = speeding.make_runner(backend, cfg, subject, ws, batch=1)
    runner.bench()  # the timed call runs
    x = np.random.default_rng(3).random((2, 3, SIZE, SIZE), dtype=np.float32)
    got = (
        runner.infer(x)
        if backend.startswith("torch")
        else np.concatenate([runner.infer(x[:1]), runner.infer(x[1:])])
    )  # fixed-batch ONNX file
    with torch.inference_mode():
        ref = subject.model(torch.from_numpy(x)).numpy()
    assert got.shape == ref.shape == (2, 3, SIZE, SIZE)
    agreement = (got.argmax(1) == ref.argmax(1)).mean()
    if backend.endswith("int8"):
        assert runner.precision == "int8"
        assert runner.notes["calibration"].startswith("4 train photos of")
        assert agreement >= 0.8
        assert np.abs(got - ref).max() <= 0.15 * np.abs(ref).max()
    else:
        assert agreement >= 0.999
        np.testing.assert_allclose(got, ref, rtol=1e-3, atol=1e-4 * np.abs(ref).max())


def test_dynamic_batch_onnx_for_throughput(tmp_path) -> None:
    subject = tiny_subject()
    cfg = config(tmp_path)
    runner = speeding.make_runner(
        "ort-fp32", cfg, subject, speeding.Workspace(cfg, subject, tmp_path), 4
    )
    assert runner.bench()[0].shape == (4, 3, SIZE, SIZE)


@pytest.mark.parametrize("backend", ["torch-fp32", "torch-fp16", "torch-compile", "ort-fp32"])
def test_cuda_rows_skip_with_reason_without_gpu(backend: str, tmp_path) -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: CUDA rows run instead of skipping")
    subject = tiny_subject()
    cfg = config(tmp_path, device="cuda")
    with pytest.raises(speeding.Skip, match="CUDA is not available"):
        speeding.make_runner(backend, cfg, subject, speeding.Workspace(cfg, subject, tmp_path), 1)


def test_fp16_on_cpu_skips_and_unknown_backend_fails(tmp_path) -> None:
    subject = tiny_subject()
    cfg = config(tmp_path)
    ws = speeding.Workspace(cfg, subject, tmp_path)
    with pytest.raises(speeding.Skip, match="cuda"):
        speeding.make_runner("torch-fp16", cfg, subject, ws, 1)
    with pytest.raises(ValueError, match="unknown backend"):
        speeding.make_runner("tensorrt", cfg, subject, ws, 1)


# ------------------------------------------------------------------------------ the script
def test_json_rows_have_the_fields(tmp_path, monkeypatch, capsys, calib_data) -> None:
    monkeypatch.setattr(speeding, "load_subjects", lambda cfg: [tiny_subject()])
    photo = tmp_path / "photo.png"
    from PIL import Image

    Image.fromarray(np.full((40, 56, 3), 90, np.uint8)).save(photo)
    argv = [
        "--json", "--runs", "2", "--warmup", "1", "--e2e-runs", "1", "--photo", str(photo),
        "--backends", "torch-fp32", "torch-fp32-fused", "torch-fp16", "ort-fp32",
        "--batch", "1", "2", "--out", str(tmp_path / "speed"), "--data", str(calib_data),
        "--isolation", "none",
    ]  # fmt: skip
    speeding.main(argv)
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 8  # 4 backends x 2 batch sizes
    for r in rows:
        for key in ("model", "backend", "batch", "latency_ms", "fps", "status", "params_m"):
            assert key in r
    ok = [r for r in rows if r["status"] == "ok"]
    assert len(ok) == 6
    assert all(r["latency_ms"] > 0 and r["fps"] > 0 for r in ok)
    fp16 = [r for r in rows if r["backend"] == "torch-fp16"]
    assert all(r["status"] == "skipped" and r["reason"] and r["fps"] is None for r in fp16)
    b1 = [r for r in ok if r["batch"] == 1]
    assert all(r["e2e_fps"] > 0 and r["argmax_agreement_vs_eager"] >= 0.999 for r in b1)
    assert {r["precision"] for r in ok} == {"fp32"}
    assert next(r for r in ok if r["backend"] == "torch-fp32-fused")["bn_folded"] == 2
    saved = json.loads(next((tmp_path / "speed").glob("speed_*.json")).read_text())
    assert saved["rows"] == rows
    assert {"cpu", "torch", "onnxruntime", "torch_threads"} <= set(saved["environment"])
    assert next((tmp_path / "speed").glob("speed_*.csv")).read_text().startswith("model,")


def test_unknown_backend_flag_exits(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        speeding.main(["--backends", "nope", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "--backends" in err and "ort-int8" in err


def test_checkpoint_accuracy_rows_fp32_vs_int8(tmp_path, monkeypatch, capsys, calib_data) -> None:
    """--checkpoint rebuilds the model from a project checkpoint; --accuracy scores each backend
    on the split with get_miou's evaluation code, through the shared Predictor."""
    import nets

    monkeypatch.setitem(nets.MODELS, "tiny_seg", lambda num_classes=4, **kw: TinySeg(num_classes))
    model = nets.build_model("tiny_seg", num_classes=3)
    model.load_state_dict(tiny_subject().model.state_dict())
    ckpt = build_checkpoint(model, input_size=(SIZE, SIZE), class_names=["bg", "x", "y"], epoch=1)
    save_checkpoint(ckpt, tmp_path / "tiny.pth")
    argv = [
        "--json", "--checkpoint", str(tmp_path / "tiny.pth"), "--accuracy", "--split", "train",
        "--data", str(calib_data), "--backends", "torch-fp32", "ort-int8", "--runs", "1",
        "--warmup", "0", "--no-e2e", "--out", str(tmp_path / "speed"), "--calib-images", "3",
        "--isolation", "none",
    ]  # fmt: skip
    rows = json.loads(speeding.main(argv) and capsys.readouterr().out)
    assert [r["backend"] for r in rows] == ["torch-fp32", "ort-int8"]
    assert all(r["status"] == "ok" and r["checkpoint"].endswith("tiny.pth") for r in rows)
    assert all(0.0 <= r["miou"] <= 1.0 for r in rows)
    assert rows[1]["precision"] == "int8" and "e2e_fps" not in rows[0]
    assert (tmp_path / "speed" / "miou" / "tiny_seg_tiny" / "ort-int8" / "metrics.json").is_file()


def test_int8_without_a_data_set_calibrates_on_generated_oranges(tmp_path) -> None:
    subject = tiny_subject()
    cfg = config(tmp_path, data=str(tmp_path / "none"), calib_images=3)
    ws = speeding.Workspace(cfg, subject, tmp_path)
    runner = speeding.make_runner("ov-int8", cfg, subject, ws, batch=1)
    assert runner.precision == "int8"
    assert runner.notes["calibration"].startswith("3 generated synthetic oranges")
    assert runner.infer(np.zeros((1, 3, SIZE, SIZE), np.float32)).shape == (1, 3, SIZE, SIZE)


def test_auto_row_names_the_backend_it_chose(tmp_path, calib_data) -> None:
    subject = tiny_subject()
    cfg = config(tmp_path, data=str(calib_data))
    runner = speeding.make_runner(
        "auto", cfg, subject, speeding.Workspace(cfg, subject, tmp_path), 1
    )
    chose = runner.notes["auto_chose"]
    assert chose in ("ov-int8", "ov-fp32") and runner.notes["auto"]["chosen"] == chose
    assert set(runner.notes["auto"]["median_ms"]) <= {"ov-int8", "ov-fp32"}
    assert f"auto chose {chose}" in runner.notes["auto_line"]
    row = {"backend": "auto", "auto_chose": chose}
    assert speeding._backend_name(row) == f"auto:{chose}"


def test_process_isolation_times_each_row_in_its_own_process(tmp_path, repo_root) -> None:
    """The fair harness: a child per row (and one for the exports), the parent times nothing.

    Run as the script is run, in a fresh interpreter (spawning children from this test process,
    after the whole suite has loaded Qt, OpenVINO and others into it, crashed it once)."""
    import subprocess
    import sys

    argv = [
        sys.executable, "speeding.py", "--json", "--models", "enet", "--backends", "torch-fp32",
        "ort-fp32", "--runs", "2", "--warmup", "1", "--no-e2e", "--threads", "1",
        "--out", str(tmp_path / "speed"),
    ]  # fmt: skip
    proc = subprocess.Popen(argv, cwd=repo_root, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err.decode()[-2000:]
    rows = json.loads(out)
    assert [r["status"] for r in rows] == ["ok", "ok"]
    pids = {r["process"] for r in rows}
    assert len(pids) == 2 and proc.pid not in pids
    assert rows[1]["argmax_agreement_vs_eager"] >= 0.999  # the ONNX file made in the prep child
    saved = json.loads(next((tmp_path / "speed").glob("speed_*.json")).read_text())
    assert saved["environment"]["isolation"].startswith("process: each row")
    assert "cpu_flags" in saved["environment"]
