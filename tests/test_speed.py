"""speeding.py and utils/deploy/timing.py on a tiny model: every CPU backend agrees with eager
PyTorch, CUDA and bf16 rows are skipped with a reason where they cannot run, rounds are
interleaved and their ratios paired, the harness checks itself against a bare process, and the
JSON rows carry their fields. No wall-clock assertions: the machines are shared and noisy."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_predict_helpers import register_tiny, train_tiny, write_project_checkpoint
from torch import nn

import speeding
from utils.deploy.backends import bf16_unavailable
from utils.deploy.rounds import ratio_by_round
from utils.deploy.timing import benchmark, environment, summarize, wait_for_child_processes

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


def test_benchmark_starts_after_this_process_helpers_are_gone() -> None:
    """A helper process (as OpenVINO's telemetry starts on import) never runs while timing."""
    import multiprocessing

    helper = multiprocessing.get_context("fork").Process(target=time_sleep, args=(0.3,))
    helper.start()
    alive_at_first_call: list[bool] = []
    benchmark(lambda: alive_at_first_call.append(helper.is_alive()), runs=1, warmup=0)
    assert alive_at_first_call == [False]
    stuck = multiprocessing.get_context("fork").Process(target=time_sleep, args=(30,))
    stuck.start()
    try:
        assert wait_for_child_processes(timeout=0.1) == [stuck.name]  # gives up, says which
    finally:
        stuck.terminate()
        stuck.join()


def time_sleep(seconds: float) -> None:
    import time

    time.sleep(seconds)


def test_environment_names_machine_and_versions() -> None:
    env = environment("cpu")
    for key in ("cpu", "torch", "onnxruntime", "torch_threads", "device", "gpu"):
        assert key in env
    assert env["torch_threads"] >= 1


# ------------------------------------------------------------------------------ backends
CPU_BACKENDS = ["torch-fp32", "torch-fp32-cl", "torch-fp32-fused", "ort-fp32", "ort-fp32-noopt"]


NATIVE_BF16 = bf16_unavailable() is None
needs_bf16 = pytest.mark.skipif(not NATIVE_BF16, reason=f"{bf16_unavailable()}")
OV_BACKENDS = ["ov-fp32", "ov-int8", pytest.param("ov-bf16", marks=needs_bf16),
               pytest.param("ov-int8-bf16", marks=needs_bf16)]  # fmt: skip


@pytest.mark.parametrize("backend", [*CPU_BACKENDS, "ort-int8", *OV_BACKENDS])
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
    if "int8" in backend:
        assert runner.precision == "int8"
        assert runner.notes["calibration"].startswith("4 train photos of")
        remainder = "bf16" if backend.endswith("bf16") else "fp32"
        assert runner.notes["remainder_precision"] == remainder  # what its float ops run in
        assert agreement >= 0.8
        assert np.abs(got - ref).max() <= 0.15 * np.abs(ref).max()
    elif backend == "ov-bf16":  # 8 bits of mantissa: ~0.4% per op
        assert runner.precision == "bf16" and runner.notes["inference_precision"] == "bf16"
        assert agreement >= 0.95
        assert np.abs(got - ref).max() <= 0.05 * np.abs(ref).max()
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


@pytest.mark.parametrize("backend", ["ov-bf16", "ov-int8-bf16"])
def test_bf16_rows_skip_without_native_bf16(backend: str, tmp_path, monkeypatch) -> None:
    """On a CPU without native bf16 (forced here) the bf16 rows are skipped, with the reason."""
    monkeypatch.setenv("FASTSEGFORMER_NATIVE_BF16", "0")
    subject = tiny_subject()
    cfg = config(tmp_path)
    with pytest.raises(speeding.Skip, match="native bf16"):
        speeding.make_runner(backend, cfg, subject, speeding.Workspace(cfg, subject, tmp_path), 1)
    assert "ov-bf16" not in speeding.auto_candidates()  # auto does not weigh them either
    assert "ov-int8-bf16" not in speeding.auto_candidates()


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
        "--isolation", "none", "--rounds", "2", "--check-bias", "none",
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
    for r in ok:  # two rounds each, the headline their median
        assert len(r["round_latencies_ms"]) == 2 and r["rounds"] == 2
        assert r["latency_ms"] == pytest.approx(float(np.median(r["round_latencies_ms"])))
        assert "speedup_vs_baseline" not in r  # no --baseline
    fp16 = [r for r in rows if r["backend"] == "torch-fp16"]
    assert all(r["status"] == "skipped" and r["reason"] and r["fps"] is None for r in fp16)
    b1 = [r for r in ok if r["batch"] == 1]
    assert all(r["e2e_fps"] > 0 and r["argmax_agreement_vs_eager"] >= 0.999 for r in b1)
    assert {r["precision"] for r in ok} == {"fp32"}
    assert next(r for r in ok if r["backend"] == "torch-fp32-fused")["bn_folded"] == 2
    saved = json.loads(next((tmp_path / "speed").glob("speed_*.json")).read_text())
    assert saved["rows"] == rows
    assert {"cpu", "torch", "onnxruntime", "torch_threads"} <= set(saved["environment"])
    assert saved["environment"]["rounds"] == 2
    csv_text = next((tmp_path / "speed").glob("speed_*.csv")).read_text()
    assert csv_text.startswith("model,") and "round_latencies_ms" in csv_text.splitlines()[0]


def test_unknown_backend_flag_exits(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        speeding.main(["--backends", "nope", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "--backends" in err and "ort-int8" in err


INT8_MIOU_BOUND = 0.02  # INT8 within 2 points of float32 mIoU on the tiny trained model


@pytest.fixture(scope="module")
def trained_tiny(tmp_path_factory: pytest.TempPathFactory):
    """(checkpoint, VOC root): a tiny model trained in the test on a tiny synthetic set."""
    from utils.data.synthetic import generate_dataset

    folder = tmp_path_factory.mktemp("trained")
    root = generate_dataset(folder / "voc", num=20, seed=0, size=64, workers=1)
    model = train_tiny(root)
    return write_project_checkpoint(model, folder / "tiny.pth", input_size=64), root


def test_checkpoint_accuracy_rows_fp32_vs_int8(monkeypatch, capsys, tmp_path, trained_tiny) -> None:
    """--checkpoint rebuilds the model from a project checkpoint; --accuracy scores each backend
    on the split with get_miou's evaluation code, through the shared Predictor. On a model
    trained in the test, float32 backends score the same mIoU as eager PyTorch and INT8 stays
    within INT8_MIOU_BOUND of it (a tiny model and 4 test photos of 64x64: a defect class covers
    a few hundred pixels there, so a handful of flipped pixels move mIoU by a point; the
    1-point goal is checked on trained FastSegFormers in tests/test_openvino.py)."""
    register_tiny(monkeypatch)
    checkpoint, root = trained_tiny
    argv = [
        "--json", "--checkpoint", str(checkpoint), "--accuracy", "--split", "test",
        "--data", str(root), "--backends", "torch-fp32", "ov-fp32", "ort-int8", "ov-int8",
        "--runs", "1", "--warmup", "0", "--no-e2e", "--out", str(tmp_path / "speed"),
        "--calib-images", "8", "--isolation", "none", "--rounds", "1", "--check-bias", "none",
    ]  # fmt: skip
    rows = {r["backend"]: r for r in json.loads(speeding.main(argv) and capsys.readouterr().out)}
    assert all(r["status"] == "ok" and r["checkpoint"].endswith("tiny.pth") for r in rows.values())
    fp32 = rows["torch-fp32"]["miou"]
    assert fp32 > 0.10  # the model learnt something: the comparison below means something
    assert rows["ov-fp32"]["miou"] == pytest.approx(fp32, abs=1e-3)
    for backend in ("ort-int8", "ov-int8"):
        assert rows[backend]["precision"] == "int8"
        assert abs(rows[backend]["miou"] - fp32) <= INT8_MIOU_BOUND, (backend, rows[backend])
    assert "e2e_fps" not in rows["torch-fp32"]
    assert (tmp_path / "speed" / "miou" / "tiny_seg_tiny" / "ov-int8" / "metrics.json").is_file()


def test_a_split_the_model_cannot_score_is_named_in_the_table(
    tmp_path, monkeypatch, capsys, calib_data
) -> None:
    """--accuracy on masks with a class the model does not predict (a 3-class model, a 4-class
    data set): the row keeps its timing, and the table says why it has no mIoU."""
    monkeypatch.setattr(speeding, "load_subjects", lambda cfg: [tiny_subject()])
    argv = [
        "--accuracy", "--split", "train", "--data", str(calib_data), "--backends", "torch-fp32",
        "--runs", "1", "--warmup", "0", "--no-e2e", "--out", str(tmp_path / "speed"),
        "--isolation", "none", "--rounds", "1", "--check-bias", "none",
    ]  # fmt: skip
    speeding.main(argv)
    out = capsys.readouterr().out
    assert "mIoU not measured: " in out and "are not classes of --num-classes 3" in out


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
    weighed = set(speeding.auto_candidates())
    assert {"ov-int8", "ov-fp32"} <= weighed and ("ov-bf16" in weighed) == NATIVE_BF16
    assert chose in weighed and runner.notes["auto"]["chosen"] == chose
    assert set(runner.notes["auto"]["median_ms"]) <= weighed
    assert set(runner.notes["auto"]["agreement"]) == weighed  # every one checked against fp32
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
        "--out", str(tmp_path / "speed"), "--rounds", "2", "--baseline", "torch-fp32",
    ]  # fmt: skip
    proc = subprocess.Popen(argv, cwd=repo_root, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err.decode()[-2000:]
    rows = json.loads(out)
    assert [r["status"] for r in rows] == ["ok", "ok"]
    rounds = [d for r in rows for d in r["round_detail"]]
    pids = {d["process"] for d in rounds}
    assert len(pids) == 4 and proc.pid not in pids  # 2 rows x 2 rounds, a process each
    torch_rounds, ort_rounds = (r["round_detail"] for r in rows)
    starts = [d["started"] for pair in zip(torch_rounds, ort_rounds, strict=True) for d in pair]
    assert starts == sorted(starts)  # torch, ort, torch, ort: rounds interleaved
    assert rows[1]["argmax_agreement_vs_eager"] >= 0.999  # the ONNX file made in the prep child
    ort = rows[1]  # the first ONNX Runtime row is checked against a bare process, every round
    assert len(ort["bare_round_latencies_ms"]) == 2 and ort["bias_check"] in ("ok", "biased")
    assert "bias_ratio" not in rows[0]  # eager PyTorch has no bare twin
    assert ort["speedup_vs_baseline"] == pytest.approx(
        ratio_by_round(rows[0]["round_latencies_ms"], ort["round_latencies_ms"])
    )
    saved = json.loads(next((tmp_path / "speed").glob("speed_*.json")).read_text())
    assert saved["environment"]["isolation"].startswith("process: each row")
    assert "cpu_flags" in saved["environment"]


# ------------------------------------------------------------------------------ rounds
def test_rounds_interleave_rows_and_pair_ratios(tmp_path, monkeypatch, capsys) -> None:
    """Every row once per round, A B C, A B C; the headline is the median of the rounds; the
    speed-up against --baseline is the median of the per-round ratios; checks run once."""
    monkeypatch.setattr(speeding, "load_subjects", lambda cfg: [tiny_subject()])
    monkeypatch.setattr(
        speeding, "_prepare", lambda cfg, subject, folder: {"params_m": 1.0, "gflops": 2.0}
    )
    # ms per round: the machine is slow in round 2 for everyone; ort's ratio is 2 every round
    latency = {"torch-fp32": [20.0, 30.0, 22.0], "ort-fp32": [10.0, 15.0, 11.0]}
    calls: list[tuple[str, bool, object]] = []

    def fake_measure(cfg, subject, backend, batch, ws, counts, ref, x, first, decision):
        calls.append((backend, first, decision))
        ms = latency[backend][sum(1 for c in calls if c[0] == backend) - 1]
        return {"model": subject.name, "backend": backend, "batch": batch, "status": "ok",
                "reason": None, "latency_ms": ms, "latency_min_ms": ms - 1, "fps": 1e3 / ms,
                "params_m": 1.0, "gflops": 2.0, "checkpoint": None, "input_size": [32, 32],
                "runtime": "fake", "started": len(calls)}  # fmt: skip

    monkeypatch.setattr(speeding, "measure", fake_measure)
    argv = ["--json", "--backends", "torch-fp32", "ort-fp32", "--rounds", "3", "--isolation",
            "none", "--baseline", "torch-fp32", "--out", str(tmp_path)]  # fmt: skip
    rows = speeding.main(argv)
    assert [(b, f) for b, f, _ in calls] == [
        ("torch-fp32", True), ("ort-fp32", True),
        ("torch-fp32", False), ("ort-fp32", False),
        ("torch-fp32", False), ("ort-fp32", False),
    ]  # fmt: skip
    torch_row, ort_row = rows
    assert ort_row["round_latencies_ms"] == [10.0, 15.0, 11.0]
    assert ort_row["latency_ms"] == 11.0 and ort_row["fps"] == pytest.approx(1e3 / 11.0)
    assert ort_row["round_spread_pct"] == pytest.approx(100 * 5 / 11)
    assert ort_row["speedup_vs_baseline"] == pytest.approx(2.0)
    assert torch_row["speedup_vs_baseline"] == pytest.approx(1.0)
    assert ort_row["baseline"] == "torch-fp32"
    assert [d["started"] for d in ort_row["round_detail"]] == [2, 4, 6]
    captured = capsys.readouterr()
    assert json.loads(captured.out) == rows
    assert "x torch-fp32" in captured.err  # the table went to stderr, with the speed-up column


def test_the_table_shows_spread_speedup_and_bias(tmp_path) -> None:
    rows = [
        {"model": "m", "backend": "ov-fp32", "batch": 1, "params_m": 1.0, "gflops": 1.0,
         "latency_ms": 12.0, "round_min_ms": 11.5, "round_max_ms": 19.3,
         "round_spread_pct": 65.0, "round_latencies_ms": [11.5, 12.0, 19.3], "fps": 83.3,
         "status": "ok", "reason": None, "speedup_vs_baseline": 1.5, "bias_ratio": 1.02,
         "bias_check": "ok"},
    ]  # fmt: skip
    table = speeding.format_table(rows, "ort-fp32")
    assert "11.5-19.3" in table and "65%" in table  # a reader sees the figure is shaky
    assert "x ort-fp32" in table and "1.50" in table
    assert "1.02 ok" in table and "3 round(s)" in table


def test_bias_check_times_the_same_file_in_a_bare_process(tmp_path, monkeypatch) -> None:
    """--check-bias first: the first row of each runtime is followed, every round, by the same
    file in a bare process of that runtime; its ratio is paired round by round."""
    monkeypatch.setattr(speeding, "load_subjects", lambda cfg: [tiny_subject()])
    argv = ["--backends", "torch-fp32", "ort-fp32", "ort-fp32-noopt", "ov-fp32", "--rounds",
            "2", "--runs", "3", "--warmup", "1", "--no-e2e", "--isolation", "none",
            "--threads", "1", "--out", str(tmp_path)]  # fmt: skip
    rows = {r["backend"]: r for r in speeding.main(argv)}
    for backend in ("ort-fp32", "ov-fp32"):  # the first row of each runtime
        r = rows[backend]
        assert len(r["bare_round_latencies_ms"]) == 2
        assert all(v is not None and v > 0 for v in r["bare_round_latencies_ms"])
        assert r["bias_ratio"] == pytest.approx(
            ratio_by_round(r["round_latencies_ms"], r["bare_round_latencies_ms"])
        )
        assert r["bias_check"] in ("ok", "biased")
    assert "bias_ratio" not in rows["ort-fp32-noopt"]  # not the first ONNX Runtime row
    assert "bias_ratio" not in rows["torch-fp32"]
    rows_all = speeding.main([*argv, "--check-bias", "all", "--rounds", "1"])
    assert "bias_ratio" in next(r for r in rows_all if r["backend"] == "ort-fp32-noopt")


@pytest.mark.parametrize("backend", ["torch-fp32", "torch-fp32-fused", "ort-fp32", "ov-fp32",
                                     "ov-int8"])  # fmt: skip
def test_profile_works_on_every_backend(backend: str, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(speeding, "load_subjects", lambda cfg: [tiny_subject()])
    argv = ["--backends", backend, "--profile", "--rounds", "1", "--runs", "2", "--warmup",
            "1", "--no-e2e", "--isolation", "none", "--check-bias", "none", "--calib-images",
            "3", "--data", str(tmp_path / "none"), "--out", str(tmp_path)]  # fmt: skip
    (row,) = speeding.main(argv)
    assert row["status"] == "ok", row["reason"]
    assert row["top_ops"] and all(ms >= 0 and 0 <= share <= 1 for _, ms, share in row["top_ops"])
    assert f"top ops of tiny / {backend}" in capsys.readouterr().out
