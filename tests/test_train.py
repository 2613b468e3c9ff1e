"""The training loop: outputs of a run, exact resume, atomic saves, freezing, NaN, config errors."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch
from test_train_helpers import TinySegNet, TinySegSet, tiny_config

from nets import checkpoint as ckpt_mod
from nets.checkpoint import (
    CHECKPOINT_FORMAT,
    CheckpointError,
    build_checkpoint,
    read_project_checkpoint,
    save_checkpoint,
)
from utils.fileio import is_temp_name
from utils.training.config import ConfigError, TrainConfig, validate_config
from utils.training.losses import build_seg_loss
from utils.training.run import parse_train_config
from utils.training.run_dir import prepare_run_dir
from utils.training.task import SegmentationTask
from utils.training.trainer import NonFiniteLossError, Trainer

torch.set_num_threads(1)
CLASSES = ("background", "a", "b")


def make_trainer(cfg: TrainConfig, task: torch.nn.Module | None = None) -> Trainer:
    torch.manual_seed(cfg.seed)
    task = task or SegmentationTask(TinySegNet(cfg.num_classes), build_seg_loss("ce", dice=True))
    run_dir = prepare_run_dir(cfg)
    return Trainer(
        cfg,
        task,
        TinySegSet(16, 32, cfg.num_classes, seed=0),
        TinySegSet(6, 32, cfg.num_classes, seed=1),
        class_names=CLASSES,
        run_dir=run_dir,
        eval_loss=build_seg_loss("ce"),
    )


def test_two_epoch_run_writes_checkpoints_logs_and_plots(tmp_path):
    cfg = tiny_config(tmp_path)
    result = make_trainer(cfg).fit()
    run = tmp_path / "run"
    assert result.run_dir == run and result.epochs_done == 2
    for name in ("best.pth", "last.pth", "ep001.pth", "ep002.pth", "config.yaml", "loss.png"):
        assert (run / name).is_file(), name
    assert (run / "miou.png").is_file()
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert not [p for p in run.iterdir() if is_temp_name(p.name)], "temporary files left behind"

    last = read_project_checkpoint(run / "last.pth")
    assert last["format"] == CHECKPOINT_FORMAT
    assert last["model"] == {"name": "tiny_test", "num_classes": 3, "options": {}}
    assert last["epoch"] == 2 and last["input_size"] == [32, 32]
    assert last["class_names"] == list(CLASSES)
    assert last["preprocess"] == {"mean": None, "std": None, "fill": 128}
    assert last["config"]["epochs"] == 2 and last["config"]["input_size"] == [32, 32]
    assert {"optimizer", "scheduler", "scaler", "extra"} <= set(last)
    best = read_project_checkpoint(run / "best.pth")
    history = json.loads((run / "history.json").read_text())
    best_eval = max(history["eval"], key=lambda e: e["mIoU"])
    assert best["epoch"] == best_eval["epoch"]
    assert best["best_metric"] == pytest.approx(best_eval["mIoU"])
    assert last["best_metric"] == pytest.approx(result.best_metric)
    # each loss term is logged, and the plain model reloads from the file alone
    assert {"ce", "dice", "loss"} <= set(history["train"][0])
    assert len(history["eval"][0]["IoU"]) == 3
    model = TinySegNet(3)
    model.load_state_dict(last["state_dict"])


def test_tensorboard_gets_terms_lr_miou_class_iou_and_overlays(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    make_trainer(tiny_config(tmp_path, epochs=1, freeze_epochs=0)).fit()
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"train/ce", "train/dice", "train/loss", "train/lr", "val/mIoU", "val/loss"} <= scalars
    assert {f"val_IoU/{name}" for name in CLASSES} & scalars
    assert {"val_overlay/0", "val_overlay/1"} <= set(events.Tags()["images"])


def test_resume_continues_with_same_epoch_lr_and_weights(tmp_path):
    # one uninterrupted 3-epoch run ...
    cfg = tiny_config(tmp_path, epochs=3, freeze_epochs=1, name="full", lr_schedule="cos")
    make_trainer(cfg).fit()
    full = tmp_path / "full"
    # ... and a run resumed from its epoch-2 checkpoint in another folder
    resumed_dir = tmp_path / "resumed"
    resumed_dir.mkdir()
    shutil.copy(full / "ep002.pth", resumed_dir / "ep002.pth")
    shutil.copy(full / "history.json", resumed_dir / "history.json")
    cfg2 = parse_train_config(TrainConfig, ["--resume", str(resumed_dir / "ep002.pth")])
    assert cfg2.epochs == 3 and cfg2.model == "tiny_test"  # the run's own settings
    trainer = make_trainer(cfg2)
    assert trainer.start_epoch == 2 and trainer.run_dir == resumed_dir.resolve()
    trainer.fit()

    a = read_project_checkpoint(full / "last.pth")
    b = read_project_checkpoint(resumed_dir / "last.pth")
    assert b["epoch"] == 3
    assert b["scheduler"]["last_lr"] == pytest.approx(a["scheduler"]["last_lr"])
    assert b["scheduler"]["frozen"] is False
    for key, value in a["state_dict"].items():
        assert torch.allclose(value.float(), b["state_dict"][key].float(), atol=1e-6), key
    hist_a = json.loads((full / "history.json").read_text())["train"]
    hist_b = json.loads((resumed_dir / "history.json").read_text())["train"]
    assert [e["epoch"] for e in hist_b] == [1, 2, 3]
    assert [e["lr"] for e in hist_b] == pytest.approx([e["lr"] for e in hist_a])


def test_resume_flags_override_saved_config(tmp_path):
    cfg = tiny_config(tmp_path, epochs=1, freeze_epochs=0)
    make_trainer(cfg).fit()
    path = tmp_path / "run" / "last.pth"
    merged = parse_train_config(TrainConfig, ["--resume", str(path), "--epochs", "2"])
    assert merged.epochs == 2 and merged.batch_size == cfg.batch_size
    trainer = make_trainer(merged)
    trainer.fit()
    assert read_project_checkpoint(path)["epoch"] == 2


def test_interrupted_save_leaves_previous_checkpoint_loadable(tmp_path, monkeypatch):
    model = TinySegNet(3)
    path = tmp_path / "last.pth"
    save_checkpoint(build_checkpoint(model, input_size=(32, 32), class_names=CLASSES), path)
    before = read_project_checkpoint(path)

    def killed_save(obj, f, *args, **kwargs):  # noqa: ANN001
        f.write(b"PK\x03\x04 half a zip")  # the process dies half-way through writing
        raise KeyboardInterrupt

    monkeypatch.setattr(ckpt_mod.torch, "save", killed_save)
    ckpt = build_checkpoint(model, input_size=(32, 32), class_names=CLASSES, epoch=5)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(ckpt, path)
    monkeypatch.undo()
    after = read_project_checkpoint(path)
    assert after["epoch"] == before["epoch"] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pth"]


def test_read_checkpoint_errors_name_the_file(tmp_path):
    broken = tmp_path / "broken.pth"
    broken.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(CheckpointError, match="broken.pth"):
        read_project_checkpoint(broken)
    with pytest.raises(CheckpointError, match="not found"):
        read_project_checkpoint(tmp_path / "missing.pth")
    plain = tmp_path / "plain.pth"
    torch.save(TinySegNet().state_dict(), plain)
    with pytest.raises(CheckpointError, match="not a project checkpoint"):
        read_project_checkpoint(plain)


def test_freeze_then_unfreeze_changes_what_trains(tmp_path):
    cfg = tiny_config(tmp_path, epochs=2, freeze_epochs=1)
    trainer = make_trainer(cfg)
    model = trainer.task.model

    def snapshot(module):  # noqa: ANN001
        return [p.detach().clone() for p in module.parameters()]

    bb0, head0 = snapshot(model.backbone), snapshot(model.head)
    trainer.train_one_epoch(0)
    assert all(not p.requires_grad for p in model.backbone.parameters())
    assert all(torch.equal(a, b) for a, b in zip(bb0, snapshot(model.backbone), strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(head0, snapshot(model.head), strict=True))
    assert trainer.batch_size_at(0) == 8 and trainer.batch_size_at(1) == 4

    bb1 = snapshot(model.backbone)
    trainer.train_one_epoch(1)
    assert all(p.requires_grad for p in model.backbone.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(bb1, snapshot(model.backbone), strict=True))


class PoisonedTask(SegmentationTask):
    """Returns a NaN loss from the `poison_after`-th call on."""

    def __init__(self, poison_after: int) -> None:
        super().__init__(TinySegNet(3), build_seg_loss("ce"))
        self.calls, self.poison_after = 0, poison_after

    def forward(self, images, labels):  # noqa: ANN001
        terms = super().forward(images, labels)
        self.calls += 1
        if self.calls > self.poison_after:
            terms["loss"] = terms["loss"] * float("nan")
        return terms


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    cfg = tiny_config(tmp_path, epochs=3, freeze_epochs=0, batch_size=4)
    task = PoisonedTask(poison_after=5)  # 4 steps per epoch: NaN in epoch 2
    trainer = make_trainer(cfg, task)
    with pytest.raises(NonFiniteLossError, match=r"not finite at epoch 2.*last\.pth"):
        trainer.fit()
    last = read_project_checkpoint(tmp_path / "run" / "last.pth")
    assert last["epoch"] == 1
    assert all(torch.isfinite(v.float()).all() for v in last["state_dict"].values())
    assert all(torch.isfinite(p).all() for p in task.model.parameters())


@pytest.mark.parametrize(
    ("overrides", "flag"),
    [
        ({"epochs": 0}, "--epochs"),
        ({"freeze_epochs": 5, "epochs": 2}, "--freeze-epochs"),
        ({"batch_size": 0}, "--batch-size"),
        ({"lr": -1.0}, "--lr"),
        ({"min_lr": 1.0, "lr": 0.1}, "--min-lr"),
        ({"optimizer": "rmsprop"}, "--optimizer"),
        ({"lr_schedule": "poly"}, "--lr-schedule"),
        ({"loss": "lovasz"}, "--loss"),
        ({"input_size": (225, 225)}, "--input-size"),
        ({"class_weights": [1.0, 2.0]}, "--class-weights"),
        ({"eval_period": 0}, "--eval-period"),
        ({"device": "tpu"}, "--device"),
        ({"pretrained": "/nonexistent/w.pth"}, "--pretrained"),
        ({"resume": "/nonexistent/last.pth"}, "--resume"),
        ({"data": "/nonexistent/voc"}, "--data"),
        ({"num_classes": 1}, "--num-classes"),
    ],
)
def test_bad_config_values_fail_with_the_flag_named(tmp_path, overrides, flag):
    cfg = tiny_config(tmp_path, **overrides)
    with pytest.raises(ConfigError, match=flag):
        validate_config(cfg)


def test_batch_must_split_over_processes(tmp_path):
    with pytest.raises(ConfigError, match="divisible by the 2"):
        validate_config(tiny_config(tmp_path, batch_size=5), world_size=2)


def test_existing_run_folder_is_not_overwritten(tmp_path):
    cfg = tiny_config(tmp_path, epochs=1, freeze_epochs=0)
    make_trainer(cfg).fit()
    with pytest.raises(ConfigError, match="--resume"):
        prepare_run_dir(cfg)


def test_evaluation_counts_every_pixel_once(tmp_path):
    cfg = tiny_config(tmp_path, epochs=1, freeze_epochs=0)
    trainer = make_trainer(cfg)
    data = TinySegSet(5, 32, 3, seed=4)
    metrics = trainer.evaluate(data)
    cm = torch.tensor(metrics["confusion_matrix"])
    assert int(cm.sum()) == int((data.labels != 255).sum())
    assert 0.0 <= metrics["mIoU"] <= 1.0 and math.isfinite(metrics["loss"])
