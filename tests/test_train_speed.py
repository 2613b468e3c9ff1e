"""How the training step runs: precision per device, memory formats, compile, the distillation
teacher's cost, and tools/train_speed.py. Tiny models on the CPU; no timed assertions (speed
figures are benchmarks in docs/training.md). The bfloat16 path is forced on whatever CPU runs
the tests (FASTSEGFORMER_NATIVE_BF16=1 or --amp-dtype bf16): it runs everywhere, emulated where
the CPU has no bfloat16, so only its correctness is checked here. CUDA tests skip without a GPU.
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
import yaml
from test_kd_task import NUM_CLASSES, TinySegNet
from test_kd_task import _batch as kd_batch
from test_train_helpers import TinySegSet, tiny_config
from torch import nn

import nets
from nets.checkpoint import read_project_checkpoint
from tools import train_speed
from utils.training import speed
from utils.training.config import ConfigError, validate_config
from utils.training.distillation import DistillationTask
from utils.training.losses import build_seg_loss
from utils.training.run_dir import prepare_run_dir
from utils.training.speed import SpeedPlan, TrainStep, resolve_precision, resolve_speed
from utils.training.task import SegmentationTask
from utils.training.trainer import Trainer

torch.set_num_threads(1)
CPU = torch.device("cpu")
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
CLASSES = ("background", "a", "b")


@pytest.fixture
def native_bf16(monkeypatch):
    """Set what cpu_has_native_bf16() answers: native_bf16(True) / native_bf16(False)."""

    def set_to(value: bool) -> None:
        monkeypatch.setenv("FASTSEGFORMER_NATIVE_BF16", "1" if value else "0")
        speed.cpu_has_native_bf16.cache_clear()

    yield set_to
    speed.cpu_has_native_bf16.cache_clear()


def dtype_probe(model: nn.Module) -> list[tuple[torch.dtype, bool]]:
    """(output dtype, input channels-last?) of the model's first conv, per forward."""
    conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    seen: list[tuple[torch.dtype, bool]] = []

    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        x = inputs[0]
        channels_last = x.is_contiguous(memory_format=torch.channels_last) and not (
            x.is_contiguous()
        )
        seen.append((output.dtype, channels_last))

    conv.register_forward_hook(hook)
    return seen


def is_channels_last(t: torch.Tensor) -> bool:
    """NHWC strides (a 1x1 kernel's weight is both NHWC and NCHW: it counts as either)."""
    return t.is_contiguous(memory_format=torch.channels_last)


def make_trainer(cfg, task=None) -> Trainer:  # noqa: ANN001
    torch.manual_seed(cfg.seed)
    task = task or SegmentationTask(TinySegNet((8, 8)), build_seg_loss("ce", dice=True))
    task.model.build_config = {"name": "tiny_test", "num_classes": NUM_CLASSES, "options": {}}
    task.model.num_classes = NUM_CLASSES
    return Trainer(
        cfg,
        task,
        TinySegSet(16, 32, NUM_CLASSES, seed=0),
        TinySegSet(6, 32, NUM_CLASSES, seed=1),
        class_names=CLASSES,
        run_dir=prepare_run_dir(cfg),
        eval_loss=build_seg_loss("ce"),
    )


# ------------------------------------------------------------------------------ precision
def test_amp_on_a_cpu_without_native_bf16_stays_float32_with_a_note(native_bf16) -> None:
    native_bf16(False)
    precision, notes = resolve_precision(True, "auto", CPU)
    assert precision == "fp32"
    assert len(notes) == 1 and "no native bfloat16" in notes[0] and "float32" in notes[0]
    assert resolve_precision(False, "auto", CPU) == ("fp32", [])


def test_amp_on_a_cpu_with_native_bf16_is_bfloat16(native_bf16) -> None:
    native_bf16(True)
    plan = resolve_speed(True, "auto", "auto", False, CPU)
    assert plan.precision == "bf16" and plan.autocast_dtype == torch.bfloat16
    assert not plan.uses_scaler


def test_bf16_can_be_forced_and_fp16_needs_cuda(native_bf16) -> None:
    native_bf16(False)
    precision, notes = resolve_precision(True, "bf16", CPU)
    assert precision == "bf16" and "emulated" in notes[0]
    with pytest.raises(ValueError, match="float16 training needs CUDA"):
        resolve_precision(True, "fp16", CPU)
    with pytest.raises(ValueError, match="--amp-dtype"):
        resolve_precision(True, "half", CPU)


def test_cuda_amp_is_float16_with_a_grad_scaler() -> None:
    # resolving needs no GPU: it is the plan a CUDA run gets
    plan = resolve_speed(True, "auto", "auto", False, torch.device("cuda"))
    assert plan.precision == "fp16" and plan.uses_scaler
    assert plan.autocast_dtype == torch.float16
    assert resolve_speed(False, "auto", "auto", False, "cuda").precision == "fp32"


def test_validate_config_names_the_fp16_flag_on_the_cpu(tmp_path) -> None:
    with pytest.raises(ConfigError, match="--amp-dtype.*float16 training needs CUDA"):
        validate_config(tiny_config(tmp_path, amp=True, amp_dtype="fp16", device="cpu"))
    with pytest.raises(ConfigError, match="--memory-format"):
        validate_config(tiny_config(tmp_path, memory_format="nhwc"))


def test_native_bf16_check_agrees_with_onednn(monkeypatch) -> None:
    monkeypatch.delenv("FASTSEGFORMER_NATIVE_BF16", raising=False)
    speed.cpu_has_native_bf16.cache_clear()
    try:
        assert speed.cpu_has_native_bf16() == bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    finally:
        speed.cpu_has_native_bf16.cache_clear()


# ------------------------------------------------------------------------------ memory format
def test_memory_format_auto_follows_the_measured_table() -> None:
    for name, channels_last in speed.CPU_CHANNELS_LAST.items():
        assert name in nets.MODELS, f"{name} in CPU_CHANNELS_LAST is no registry model"
        want = "channels_last" if channels_last else "nchw"
        assert speed.resolve_memory_format("auto", name, "cpu", "fp32") == want
    assert speed.resolve_memory_format("auto", "unknown_model", "cpu", "fp32") == "nchw"
    assert speed.resolve_memory_format("nchw", "fastsegformer_p", "cpu", "fp32") == "nchw"
    assert speed.resolve_memory_format("auto", "unknown_model", "cuda", "fp16") == "channels_last"
    assert speed.resolve_memory_format("auto", "unknown_model", "cuda", "fp32") == "nchw"


def test_channels_last_table_says_which_rows_were_measured() -> None:
    """Every row of the table is either measured or names the measured model it follows."""
    measured, follows = speed.CPU_CHANNELS_LAST_MEASURED, speed.CPU_CHANNELS_LAST_FOLLOWS
    assert not set(measured) & set(follows)
    assert set(speed.CPU_CHANNELS_LAST) == set(measured) | set(follows)
    for name, like in follows.items():
        assert like in measured, f"{name} follows {like}, which was not measured"
        assert speed.CPU_CHANNELS_LAST[name] == measured[like]


def test_channels_last_task_lays_out_weights_and_batches() -> None:
    task = SegmentationTask(TinySegNet((4, 6)), build_seg_loss("ce"))
    probe = dtype_probe(task.model)
    formats = task.set_memory_format(SpeedPlan(memory_format="channels_last"))
    assert formats == {"memory_format": "channels_last"}
    assert all(is_channels_last(p) for p in task.model.parameters() if p.dim() == 4)
    images, labels = kd_batch()
    task(images, labels)
    assert probe == [(torch.float32, True)]


def _two_steps(memory_format: str, precision: str = "fp32") -> tuple[list[float], dict]:
    torch.manual_seed(0)
    task = SegmentationTask(TinySegNet((4, 6)), build_seg_loss("ce", dice=True))
    task.set_memory_format(SpeedPlan(precision, memory_format))
    params = list(task.parameters())
    # SGD: Adam would turn the rounding noise of near-zero gradients (a conv bias before
    # BatchNorm) into full-size steps, which no layout can reproduce bit for bit
    step = TrainStep(torch.optim.SGD(params, lr=0.1), params, SpeedPlan(precision))
    images, labels = kd_batch()
    losses = [float(step(task, images, labels)["loss"].detach()) for _ in range(2)]
    state = {k: v.detach().clone() for k, v in task.model.state_dict().items()}
    return losses, state


def test_channels_last_trains_like_nchw() -> None:
    losses_a, state_a = _two_steps("nchw")
    losses_b, state_b = _two_steps("channels_last")
    assert losses_b == pytest.approx(losses_a, rel=1e-5)
    for key, value in state_a.items():
        assert torch.allclose(value.float(), state_b[key].float(), atol=1e-5), key


def test_bf16_step_runs_in_bfloat16_and_stays_close_to_float32() -> None:
    torch.manual_seed(0)
    model = TinySegNet((4, 6))
    probe = dtype_probe(model)
    task = SegmentationTask(model, build_seg_loss("ce", dice=True))
    params = list(task.parameters())
    step = TrainStep(torch.optim.Adam(params, lr=1e-2), params, SpeedPlan("bf16"))
    terms = step(task, *kd_batch())
    assert probe[0][0] == torch.bfloat16  # the conv ran in bfloat16 ...
    assert terms["loss"].dtype == torch.float32  # ... the loss in float32
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in params)
    losses_fp32, _ = _two_steps("nchw", "fp32")
    losses_bf16, _ = _two_steps("nchw", "bf16")
    assert losses_bf16 == pytest.approx(losses_fp32, rel=2e-2)


# ------------------------------------------------------------------------------ the loop
def test_loop_records_float32_when_the_cpu_has_no_native_bf16(tmp_path, native_bf16, capsys):
    native_bf16(False)
    cfg = tiny_config(tmp_path, epochs=1, freeze_epochs=0, amp=True, memory_format="auto")
    trainer = make_trainer(cfg)
    assert trainer.plan.precision == "fp32"
    trainer.fit()
    out = capsys.readouterr().out
    assert "no native bfloat16" in out and "training step: fp32, model nchw" in out
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["amp"] is False and saved["memory_format"] == "nchw"
    assert read_project_checkpoint(tmp_path / "run" / "last.pth")["config"]["amp"] is False


def test_loop_trains_in_bf16_channels_last_and_records_it(tmp_path, native_bf16) -> None:
    native_bf16(True)
    cfg = tiny_config(tmp_path, epochs=2, freeze_epochs=1, memory_format="channels_last")
    trainer = make_trainer(cfg)
    probe = dtype_probe(trainer.task.model)
    result = trainer.fit()
    assert trainer.plan.precision == "bf16"
    assert (torch.bfloat16, True) in probe  # training steps: bf16 convolutions, NHWC batches
    assert result.best_metric is not None and result.best_metric > 0
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert (saved["amp"], saved["amp_dtype"], saved["memory_format"]) == (
        True,
        "bf16",
        "channels_last",
    )
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert all(torch.isfinite(torch.tensor(e["loss"])) for e in history["train"])


def test_resume_in_channels_last_matches_an_uninterrupted_run(tmp_path) -> None:
    common = dict(epochs=2, freeze_epochs=0, memory_format="channels_last", amp=False)
    make_trainer(tiny_config(tmp_path, name="full", **common)).fit()
    first = make_trainer(tiny_config(tmp_path, name="part", **{**common, "epochs": 1}))
    first.fit()
    resumed = make_trainer(
        tiny_config(tmp_path, name="part", resume=str(tmp_path / "part" / "last.pth"), **common)
    )
    for param, state in resumed.optimizer.state.items():  # Adam moments laid out like params
        if param.dim() == 4:
            assert is_channels_last(param) and is_channels_last(state["exp_avg"])
    resumed.fit()
    a = read_project_checkpoint(tmp_path / "full" / "last.pth")["state_dict"]
    b = read_project_checkpoint(tmp_path / "part" / "last.pth")["state_dict"]
    for key, value in a.items():
        assert torch.allclose(value.float(), b[key].float(), atol=1e-6), key


def test_compile_wraps_the_step(tmp_path, monkeypatch) -> None:
    # the default inductor backend compiles C++ for minutes on a small CPU; the graph capture
    # (dynamo) is what the loop's code decides, and the eager backend runs exactly that
    compiled = []

    def eager_compile(module: nn.Module) -> nn.Module:
        compiled.append(module)
        return torch.compile(module, backend="eager", dynamic=False)

    monkeypatch.setattr("utils.training.trainer.compile_module", eager_compile)
    torch._dynamo.reset()
    trainer = make_trainer(tiny_config(tmp_path, epochs=1, freeze_epochs=0, compile=True))
    assert compiled == [trainer.task]
    trainer.fit()
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["compile"] is True


@CUDA
def test_cuda_fp16_step_uses_the_scaler(tmp_path) -> None:
    cfg = tiny_config(tmp_path, epochs=1, freeze_epochs=0, device="cuda", amp=True)
    trainer = make_trainer(cfg)
    probe = dtype_probe(trainer.task.model)
    trainer.fit()
    assert trainer.plan.precision == "fp16" and trainer.scaler.is_enabled()
    assert probe[0] == (torch.float16, True)  # channels-last with autocast on CUDA
    assert trainer.scaler.get_scale() > 0


# ------------------------------------------------------------------------------ distillation
def _kd_task(**kwargs) -> DistillationTask:
    torch.manual_seed(0)
    return DistillationTask(
        TinySegNet((4, 6)),
        TinySegNet((8, 12, 16)),
        lambda logits, labels: F.cross_entropy(logits, labels, ignore_index=255),
        student_size=(16, 16),
        teacher_size=(32, 32),
        **kwargs,
    )


def test_teacher_runs_once_in_inference_mode_and_its_logits_are_resized_once(monkeypatch):
    torch.manual_seed(0)
    classes = 4  # teacher logits (2, 4, 32, 32): a shape no other resized tensor has
    task = DistillationTask(
        TinySegNet((4, 6), classes),
        TinySegNet((8, 12, 16), classes),
        lambda logits, labels: F.cross_entropy(logits, labels, ignore_index=255),
        student_size=(16, 16),
        teacher_size=(32, 32),
    )
    calls = []
    task.teacher.register_forward_hook(
        lambda m, i, out: calls.append(torch.is_inference_mode_enabled())
    )
    resized = []
    real = F.interpolate

    def counting(x, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        resized.append(tuple(x.shape))
        return real(x, *args, **kwargs)

    monkeypatch.setattr(F, "interpolate", counting)
    terms = task(*kd_batch())
    terms["loss"].backward()
    assert calls == [True]
    # P&KL's KL and MSE parts share one resize of the teacher's logits
    assert resized.count((2, classes, 32, 32)) == 1, resized


def test_teacher_outputs_can_be_used_by_the_student_losses_at_equal_sizes() -> None:
    # one size for both: nothing is resized, so the teacher's outputs must not be
    # inference-mode tensors (those cannot be saved for the student's backward)
    task = _kd_task()
    task.student_size = task.teacher_size
    features, logits = task.run_teacher(kd_batch()[0], (32, 32))
    assert not logits.is_inference() and not any(f.is_inference() for f in features)
    loss = F.mse_loss(torch.zeros_like(logits, requires_grad=True), logits)
    loss.backward()
    terms = task(*kd_batch())
    terms["loss"].backward()


def test_teacher_takes_its_own_memory_format_and_the_run_precision() -> None:
    task = _kd_task(teacher_memory_format="nchw")
    student_probe, teacher_probe = dtype_probe(task.model), dtype_probe(task.teacher)
    plan = SpeedPlan("bf16", "channels_last")
    formats = task.set_memory_format(plan)
    assert formats == {"memory_format": "channels_last", "teacher_memory_format": "nchw"}
    assert all(is_channels_last(p) for p in task.model.parameters() if p.dim() == 4)
    assert all(is_channels_last(c.weight) for c in task.connectors)
    assert all(p.is_contiguous() for p in task.teacher.parameters())
    with plan.autocast():
        task(*kd_batch())
    assert student_probe == [(torch.bfloat16, True)]
    assert teacher_probe == [(torch.bfloat16, False)]


def test_teacher_memory_format_is_checked() -> None:
    with pytest.raises(ValueError, match="teacher memory format"):
        _kd_task(teacher_memory_format="nhwc")


# ------------------------------------------------------------------------------ the benchmark
class TinyTeacher(TinySegNet):
    default_input_size = 32


def test_train_speed_rows(monkeypatch, capsys) -> None:
    def tiny(num_classes: int = 4) -> nn.Module:
        model = TinySegNet((4, 6), num_classes)
        model.default_input_size = 32
        return model

    monkeypatch.setitem(nets.MODELS, "tiny_speed", tiny)
    monkeypatch.setitem(nets.MODELS, "tiny_teacher", lambda num_classes=4: TinyTeacher((8,), 4))
    rows = train_speed.main(
        ["--models", "tiny_speed", "--precisions", "fp32", "bf16", "fp16", "--steps", "1",
         "--rounds", "1", "--warmup", "1", "--batch", "2", "--no-loader", "--json"]
    )  # fmt: skip
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(json.dumps(rows))
    keys = {"model", "precision", "memory_format", "compile", "images_per_s", "cpu_flags"}
    assert all(keys <= set(r) for r in rows)
    combos = {(r["precision"], r["memory_format"]): r for r in rows}
    assert len(combos) == 6
    assert combos[("fp32", "nchw")]["speedup"] == 1.0
    for layout in ("nchw", "channels_last"):
        assert combos[("bf16", layout)]["status"] == "ok"
        assert combos[("bf16", layout)]["images_per_s"] > 0
        assert combos[("fp16", layout)]["status"] == "skipped"
        assert "CUDA" in combos[("fp16", layout)]["reason"]
    assert all(r["input_size"] == [32, 32] for r in rows if r["status"] == "ok")

    kd_rows = train_speed.main(
        ["--models", "tiny_speed", "--kd", "--teacher", "tiny_teacher", "--teacher-size", "64",
         "--steps", "1", "--rounds", "1", "--warmup", "0", "--batch", "2", "--no-loader"]
    )  # fmt: skip
    assert [r["task"] for r in kd_rows] == ["kd", "kd"]
    assert all(r["input_size"] == [64, 64] and r["student_size"] == [32, 32] for r in kd_rows)


def test_distillation_step_compiles() -> None:
    # dynamo captures the task, teacher in inference mode included (eager backend: see above)
    torch._dynamo.reset()
    task = _kd_task()
    eager = {k: v.float() for k, v in task(*kd_batch()).items()}
    compiled = torch.compile(task, backend="eager", dynamic=False)
    terms = compiled(*kd_batch())
    terms["loss"].backward()
    assert {k: float(v.detach()) for k, v in terms.items()} == pytest.approx(
        {k: float(v) for k, v in eager.items()}, rel=1e-5
    )


def test_seg_loss_resizes_low_resolution_logits_once(monkeypatch) -> None:
    loss = build_seg_loss("ce", dice=True)
    logits = torch.randn(2, NUM_CLASSES, 8, 8, requires_grad=True)  # a 1/4-resolution model
    labels = torch.randint(0, NUM_CLASSES, (2, 32, 32))
    expected = loss.terms(logits, labels)
    calls = []
    real = F.interpolate
    monkeypatch.setattr(F, "interpolate", lambda *a, **k: calls.append(1) or real(*a, **k))
    terms = loss.terms(logits, labels)
    assert len(calls) == 1
    assert {k: float(v.detach()) for k, v in terms.items()} == pytest.approx(
        {k: float(v.detach()) for k, v in expected.items()}
    )
