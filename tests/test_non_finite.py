"""No NaN or inf is ever saved: the default bf16 step at 64x64 stays finite, training stops on a
NaN gradient or weight naming it, and the checkpoint writer refuses non-finite tensors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_train_helpers import TinySegNet, TinySegSet, make_tiny_voc, tiny_config

from nets.checkpoint import (
    CheckpointError,
    NonFiniteCheckpointError,
    build_checkpoint,
    load_checkpoint,
    non_finite_tensors,
    read_checkpoint,
    read_project_checkpoint,
    save_checkpoint,
)
from train import main as train_main
from utils.training.losses import build_seg_loss
from utils.training.run_dir import prepare_run_dir
from utils.training.speed import TrainStep, cpu_has_native_bf16
from utils.training.task import SegmentationTask
from utils.training.trainer import NonFiniteLossError, NonFiniteTensorError, Trainer

torch.set_num_threads(1)


def _tensors(obj, prefix=""):  # noqa: ANN001, ANN202
    """(key, tensor) of every tensor in a nested checkpoint."""
    if isinstance(obj, torch.Tensor):
        yield prefix, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _tensors(v, f"{prefix}.{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _tensors(v, f"{prefix}[{i}]")


def _nan_in_free_memory() -> None:
    """Leave NaN in memory the allocator hands out next (blocks about the size of the 7x7 MSP
    branch's weight gradient), so an unwritten gradient element shows up as NaN, not as the
    0 a fresh page would give by luck."""
    blocks = [torch.full((64 * 256 * 49 + i,), float("nan")) for i in range(8)]
    del blocks


@pytest.fixture(scope="module")
def tiny_voc(tmp_path_factory) -> Path:
    return make_tiny_voc(tmp_path_factory.mktemp("voc"), num=10, size=64)


def test_default_training_at_64px_saves_only_finite_tensors(tiny_voc, tmp_path, monkeypatch):
    """FastSegFormer-P (MSP pyramid) with train.py's defaults for this machine: bf16 autocast
    where the CPU computes it natively, channels-last; 64x64 makes the stride-32 map 2x2."""
    real_update = TrainStep.update

    def update(self, loss):  # noqa: ANN001, ANN202
        _nan_in_free_memory()
        return real_update(self, loss)

    monkeypatch.setattr(TrainStep, "update", update)
    argv = [
        "--data", str(tiny_voc), "--input-size", "64", "--epochs", "1", "--freeze-epochs", "0",
        "--batch-size", "2", "--max-steps", "3", "--workers", "0", "--eval-period", "1",
        "--save-dir", str(tmp_path), "--name", "run", "--device", "cpu", "--no-tensorboard",
    ]  # fmt: skip
    assert train_main(argv) == 0
    for name in ("last.pth", "best.pth"):
        ckpt = read_project_checkpoint(tmp_path / "run" / name)
        if name == "last.pth":
            assert ckpt["config"]["amp"] is cpu_has_native_bf16()
            assert ckpt["config"]["memory_format"] == "channels_last"
            assert ckpt["optimizer"]["state"], "last.pth holds Adam's moments"
        tensors = list(_tensors(ckpt))
        assert any(k == ".state_dict.pyramid.spatial.3.0.weight" for k, _ in tensors)
        bad = [k for k, t in tensors if t.is_floating_point() and not torch.isfinite(t).all()]
        assert bad == [], f"{name}: non-finite tensors {bad}"


def _trainer(tmp_path: Path, task: torch.nn.Module, **overrides) -> Trainer:
    cfg = tiny_config(tmp_path, freeze_epochs=0, batch_size=4, **overrides)
    return Trainer(
        cfg,
        task,
        TinySegSet(16, 32, 3, seed=0),
        TinySegSet(4, 32, 3, seed=1),
        class_names=("background", "a", "b"),
        run_dir=prepare_run_dir(cfg),
    )


class NaNGradientTask(SegmentationTask):
    """A finite loss whose gradient for ``head.weight`` is NaN from the `after`-th step on."""

    def __init__(self, after: int) -> None:
        super().__init__(TinySegNet(3), build_seg_loss("ce"))
        self.calls, self.after = 0, after

    def forward(self, images, labels):  # noqa: ANN001
        terms = super().forward(images, labels)
        self.calls += 1
        if self.calls >= self.after:
            w = self.model.head.weight
            # forward 0; backward: the zero mask times sqrt's NaN derivative = NaN
            terms["loss"] = terms["loss"] + torch.where(
                torch.tensor(True), torch.zeros(()), torch.sqrt(-(w.square().sum() + 1))
            )
        return terms


def test_a_nan_gradient_stops_before_the_optimizer_step_naming_it(tmp_path):
    task = NaNGradientTask(after=3)
    trainer = _trainer(tmp_path, task)
    before = {}
    real_update = trainer.step.update

    def update(loss):  # noqa: ANN001, ANN202
        before.update({k: v.clone() for k, v in task.model.state_dict().items()})
        return real_update(loss)

    trainer.step.update = update
    with pytest.raises(NonFiniteTensorError, match=r"gradients at epoch 1, step 3: head\.weight"):
        trainer.fit()
    after = task.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in ("head.weight", "head.bias"))
    assert not list((tmp_path / "run").glob("*.pth"))


@pytest.mark.parametrize(("step", "error", "message"), [
    (4, NonFiniteTensorError, r"weights at epoch 1, step 4: backbone\.0\.weight \(1 of 216"),
    (2, NonFiniteLossError, r"loss is not finite at epoch 1, step 3 .*backbone\.0\.weight"),
])  # fmt: skip
def test_a_nan_weight_stops_training_naming_it_and_writes_no_checkpoint(
    tmp_path, step, error, message
):
    """A NaN put into a parameter after the optimizer step of `step` (4 steps per epoch): at
    the epoch's end it is found by the weight check, before evaluation and the checkpoints;
    earlier, the next step's loss is NaN and its message names the weight."""
    task = SegmentationTask(TinySegNet(3), build_seg_loss("ce"))
    trainer = _trainer(tmp_path, task)
    real_update, calls = trainer.step.update, []

    def update(loss):  # noqa: ANN001, ANN202
        bad = real_update(loss)
        calls.append(1)
        if len(calls) == step:
            with torch.no_grad():
                task.model.backbone[0].weight[0, 0, 0, 0] = float("nan")
        return bad

    trainer.step.update = update
    with pytest.raises(error, match=message):
        trainer.fit()
    assert not list((tmp_path / "run").glob("*.pth"))


def test_a_weight_gone_nan_in_a_later_epoch_keeps_the_last_good_checkpoint(tmp_path):
    task = SegmentationTask(TinySegNet(3), build_seg_loss("ce"))
    trainer = _trainer(tmp_path, task, epochs=2)
    real_update, calls = trainer.step.update, []

    def update(loss):  # noqa: ANN001, ANN202
        bad = real_update(loss)
        calls.append(1)
        if len(calls) == 8:  # the last step of epoch 2
            with torch.no_grad():
                task.model.head.bias[1] = float("inf")
        return bad

    trainer.step.update = update
    with pytest.raises(NonFiniteTensorError, match=r"head\.bias.*last good checkpoint.*1 epochs"):
        trainer.fit()
    last = read_project_checkpoint(tmp_path / "run" / "last.pth")
    assert last["epoch"] == 1
    assert not non_finite_tensors(_tensors(last))


def test_nan_in_the_optimizer_state_is_refused_by_the_writer_and_stops_training(tmp_path):
    """Weights and gradients finite, Adam's moment not: the writer's own check stops the run."""
    task = SegmentationTask(TinySegNet(3), build_seg_loss("ce"))
    trainer = _trainer(tmp_path, task)
    real_update, calls = trainer.step.update, []

    def update(loss):  # noqa: ANN001, ANN202
        bad = real_update(loss)
        calls.append(1)
        if len(calls) == 4:  # after the last step of epoch 1: the weights stay finite
            moments = trainer.optimizer.state[task.model.head.weight]
            moments["exp_avg"].view(-1)[0] = float("nan")
        return bad

    trainer.step.update = update
    with pytest.raises(
        NonFiniteTensorError, match=r"refusing to write .*optimizer\.state\.\d+\.exp_avg"
    ):
        trainer.fit()
    # best.pth (weights only, all finite) went through; last.pth (with Adam's state) did not
    assert [p.name for p in (tmp_path / "run").glob("*.pth")] == ["best.pth"]
    assert not non_finite_tensors(_tensors(read_project_checkpoint(tmp_path / "run/best.pth")))


def test_the_checkpoint_writer_refuses_nan_and_inf_naming_the_tensor(tmp_path):
    path = tmp_path / "last.pth"
    save_checkpoint({"state_dict": {"w": torch.ones(3)}}, path)
    bad = {
        "state_dict": {"w": torch.ones(3), "b": torch.tensor([0.0, float("inf")])},
        "optimizer": {"state": {0: {"exp_avg": torch.full((2, 2), float("nan"))}}},
    }
    with pytest.raises(NonFiniteCheckpointError) as err:
        save_checkpoint(bad, path)
    text = str(err.value)
    assert "state_dict.b (1 of 2 values NaN or inf)" in text
    assert "optimizer.state.0.exp_avg (4 of 4" in text and "previous checkpoint is intact" in text
    assert torch.equal(read_checkpoint(path)["state_dict"]["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pth"]
    with pytest.raises(NonFiniteCheckpointError, match=r"x\.safetensors.*w \(1 of 1 .*nothing"):
        save_checkpoint({"w": torch.tensor([float("nan")])}, tmp_path / "x.safetensors")


def test_non_finite_tensors_counts_only_floating_tensors_with_nan_or_inf():
    named = [
        ("ok", torch.ones(5)),
        ("steps", torch.tensor(3)),  # integer buffers (num_batches_tracked) are not checked
        ("big", torch.full((4,), 1e30)),  # its L2 norm overflows float32: still finite
        ("half", torch.tensor([1.0, float("-inf")], dtype=torch.bfloat16)),
        ("nan", torch.tensor([float("nan"), 1.0, float("nan")])),
    ]
    assert non_finite_tensors(named) == [("half", 1, 2), ("nan", 2, 3)]
    assert non_finite_tensors(named[:3]) == []


def test_weights_with_nan_written_before_the_writer_refused_them_are_refused_when_loaded(
    tmp_path,
):
    """Files from before this check (or from elsewhere) load nowhere: not for prediction,
    evaluation, --pretrained or a teacher (nets.load_checkpoint), nor for --resume."""
    model = TinySegNet(3)
    ckpt = build_checkpoint(model, input_size=(32, 32), class_names=("a", "b", "c"))
    ckpt["state_dict"]["head.bias"][1] = float("nan")
    path = tmp_path / "old.pth"
    torch.save(ckpt, path)  # as the writer did before it refused
    with pytest.raises(CheckpointError, match=rf"{path} holds NaN or inf weights: head\.bias"):
        load_checkpoint(TinySegNet(3), path)
    with pytest.raises(CheckpointError, match=r"predict\.pth holds NaN or inf weights: head\.b"):
        load_checkpoint(TinySegNet(3), ckpt, source="predict.pth")

    task = SegmentationTask(TinySegNet(3), build_seg_loss("ce"))
    _trainer(tmp_path, task, epochs=1).fit()
    last = tmp_path / "run" / "last.pth"
    state = torch.load(last, weights_only=True)
    state["optimizer"]["state"][0]["exp_avg_sq"].view(-1)[0] = float("inf")
    torch.save(state, last)
    with pytest.raises(CheckpointError, match=r"last\.pth holds NaN or inf: optimizer\.state\.0"):
        _trainer(tmp_path, SegmentationTask(TinySegNet(3), build_seg_loss("ce")), resume=str(last))
