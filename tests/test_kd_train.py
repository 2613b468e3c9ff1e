"""Distillation through the shared loop (utils/training/trainer.py) and train_distillation.py."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from test_kd_task import NUM_CLASSES, TinySegNet
from torch.utils.data import Dataset

import train_distillation
from nets.checkpoint import build_checkpoint, save_checkpoint
from utils.training.config import TrainConfig
from utils.training.distillation import DistillationTask
from utils.training.losses import build_seg_loss
from utils.training.trainer import Trainer


class TinyVOC(Dataset):
    """`n` fixed images of `size` with a learnable label (class from the red channel)."""

    def __init__(self, n: int, size: int) -> None:
        g = torch.Generator().manual_seed(size)
        self.images = torch.rand(n, 3, size, size, generator=g)
        self.labels = (self.images[:, 0] * NUM_CLASSES).long().clamp(max=NUM_CLASSES - 1)
        self.class_names = [f"c{i}" for i in range(NUM_CLASSES)]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[i], self.labels[i]


def _tiny(channels: tuple[int, ...], name: str) -> TinySegNet:
    model = TinySegNet(channels)
    model.build_config = {"name": name, "num_classes": NUM_CLASSES, "options": {}}
    return model


def test_trainer_drives_distillation_task(tmp_path) -> None:
    torch.manual_seed(0)
    teacher = _tiny((8, 12, 16), "tiny_teacher")
    seg_loss = build_seg_loss("ce")
    task = DistillationTask(
        _tiny((4, 6), "tiny_student"),
        teacher,
        seg_loss,
        student_size=(16, 16),
        teacher_size=(32, 32),
    )
    teacher_before = copy.deepcopy(teacher.state_dict())
    connectors_before = copy.deepcopy(task.connectors.state_dict())
    cfg = TrainConfig(
        model="tiny_student", input_size=(16, 16), epochs=4, freeze_epochs=0, batch_size=2,
        freeze_batch_size=2, lr=1e-2, min_lr=1e-3, scale_lr=False, lr_schedule="step",
        eval_period=4, save_dir=str(tmp_path), workers=0, overlays=0, tensorboard=False,
        device="cpu",
    )  # fmt: skip
    trainer = Trainer(
        cfg, task, TinyVOC(4, 32), TinyVOC(2, 16), class_names=TinyVOC(1, 8).class_names,
        run_dir=tmp_path / "run", eval_input_size=(16, 16),
    )  # fmt: skip
    result = trainer.fit()

    history = json.loads((tmp_path / "run" / "history.json").read_text())["train"]
    assert {"ce", "pkl", "nfd", "loss"} <= set(history[0])
    assert history[-1]["loss"] < 0.9 * history[0]["loss"]
    assert history[-1]["pkl"] < history[0]["pkl"] and history[-1]["nfd"] < history[0]["nfd"]
    for key, value in teacher.state_dict().items():
        assert torch.equal(value, teacher_before[key]), key
    assert not teacher.training
    ckpt = torch.load(result.last_path, weights_only=True)
    assert set(ckpt["state_dict"]) == set(task.model.state_dict())  # student only
    assert ckpt["input_size"] == [16, 16]
    saved = ckpt["extra"]["kd_connectors"]
    assert set(saved) == set(connectors_before)
    assert not torch.equal(saved["0.weight"], connectors_before["0.weight"])  # trained


def _run_main(args: list[str], capsys) -> tuple[int, str]:
    code = train_distillation.main(args)
    return code, capsys.readouterr().err


def test_missing_teacher_checkpoint_is_a_clear_error(capsys) -> None:
    code, err = _run_main(["--epochs", "1"], capsys)
    assert code == 2
    assert "--teacher-checkpoint is required" in err and "train.py --model swin_t_att_unet" in err


def test_teacher_checkpoint_not_found(tmp_path, capsys) -> None:
    code, err = _run_main(["--teacher-checkpoint", str(tmp_path / "none.pth")], capsys)
    assert code == 2 and "none.pth: file not found" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--kd-pairs", "1-2"], "student_index:teacher_index"),
        (["--kd", "logits", "--kd-pairs", "0:0"], "need --kd logits+nfd"),
        (["--kd", "dist", "--kd-pairs", "0:0"], "need --kd logits+nfd"),
        (["--kd", "features"], "valid terms: logits, nfd, dist, cwd"),
        (["--kd", "dist+dist"], "names a term twice"),
        (["--dist-tau", "0"], "--dist-tau=0.0: must be > 0"),
        (["--cwd-tau", "-1"], "--cwd-tau=-1.0: must be > 0"),
        (["--cwd-weight", "-1"], "--cwd-weight=-1.0: must be >= 0"),
        (["--dist-gamma", "-0.5"], "--dist-gamma=-0.5: must be >= 0"),
        (["--kd-k1", "1.5"], "--kd-k1=1.5"),
        (["--teacher-input-size", "500"], "multiples of 32"),
        (["--student", "unet"], "--student='unet': unknown model; valid names:"),
        (["--student-checkpoint", "missing.pth"], "--student-checkpoint='missing.pth': file not"),
    ],
)
def test_bad_flags_are_clear_errors(args: list[str], message: str, capsys) -> None:
    code, err = _run_main(["--teacher-checkpoint", "unused.pth", *args], capsys)
    assert code == 2 and message in err


@pytest.mark.parametrize("flag", ["--model", "--pretrained"])
def test_train_py_model_flags_are_unknown_here(flag: str, capsys) -> None:
    """The student is --student / --student-checkpoint; train.py's names are not flags here."""
    with pytest.raises(SystemExit) as exc:
        train_distillation.main(["--teacher-checkpoint", "unused.pth", flag, "x"])
    assert exc.value.code == 2 and flag in capsys.readouterr().err


def test_script_kd1_run_saves_student_without_connectors(tmp_path, capsys) -> None:
    """train_distillation.py end to end, registry models at tiny sizes, --kd logits."""
    import nets
    from utils.data.synthetic import generate_dataset

    torch.manual_seed(0)
    teacher_path = tmp_path / "teacher.pth"
    teacher = nets.build_model("fastsegformer_p", NUM_CLASSES + 1)
    ckpt = build_checkpoint(teacher, input_size=(64, 64), class_names=["a", "b", "c", "d"])
    save_checkpoint(ckpt, teacher_path)
    data = generate_dataset(tmp_path / "syn", num=6, seed=0, size=64)
    code = train_distillation.main(
        ["--teacher", "fastsegformer_p", "--teacher-checkpoint", str(teacher_path),
         "--teacher-input-size", "64", "--input-size", "32", "--kd", "logits",
         "--data", str(data), "--epochs", "1", "--batch-size", "2", "--max-steps", "1",
         "--workers", "0", "--save-dir", str(tmp_path / "logs"), "--name", "kd1",
         "--no-tensorboard", "--overlays", "0"]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    saved = torch.load(tmp_path / "logs" / "kd1" / "last.pth", weights_only=True)
    assert saved["model"]["name"] == "fastsegformer_p" and saved["input_size"] == [32, 32]
    assert saved["extra"] == {}
    assert saved["config"]["teacher_checkpoint"] == str(teacher_path)

    # --resume alone: teacher, sizes and kd mode come from the checkpoint's config
    assert train_distillation.main(["--resume", str(tmp_path / "logs" / "kd1" / "last.pth"),
                                    "--epochs", "2"]) == 0  # fmt: skip
    resumed = torch.load(tmp_path / "logs" / "kd1" / "last.pth", weights_only=True)
    assert resumed["epoch"] == 2 and resumed["config"]["kd"] == "logits"
    assert resumed["config"]["teacher_input_size"] == [64, 64]
    assert resumed["config"]["model"] == resumed["config"]["student"] == "fastsegformer_p"
    assert "distilling from teacher fastsegformer_p" in capsys.readouterr().out


def test_script_dist_and_cwd_runs_save_plain_students(tmp_path, capsys) -> None:
    """--kd dist and --kd cwd (+ logits, any order) train and write plain student checkpoints."""
    import nets
    from utils.data.synthetic import generate_dataset

    torch.manual_seed(0)
    teacher_path = tmp_path / "teacher.pth"
    teacher = nets.build_model("fastsegformer_p", NUM_CLASSES + 1)
    ckpt = build_checkpoint(teacher, input_size=(64, 64), class_names=["a", "b", "c", "d"])
    save_checkpoint(ckpt, teacher_path)
    data = generate_dataset(tmp_path / "syn", num=6, seed=0, size=64)
    for kd, name, canonical in [("dist", "dist", "dist"), ("cwd+logits", "cwd", "logits+cwd")]:
        code = train_distillation.main(
            ["--teacher", "fastsegformer_p", "--teacher-checkpoint", str(teacher_path),
             "--teacher-input-size", "64", "--input-size", "32", "--kd", kd,
             "--dist-tau", "2", "--cwd-weight", "1.5",
             "--data", str(data), "--epochs", "1", "--batch-size", "2", "--max-steps", "1",
             "--workers", "0", "--save-dir", str(tmp_path / "logs"), "--name", name,
             "--no-tensorboard", "--overlays", "0"]
        )  # fmt: skip
        assert code == 0, capsys.readouterr().err
        saved = torch.load(tmp_path / "logs" / name / "last.pth", weights_only=True)
        assert saved["model"]["name"] == "fastsegformer_p" and saved["extra"] == {}
        assert not any("connector" in k for k in saved["state_dict"])
        config = saved["config"]
        assert config["kd"] == canonical
        assert (config["dist_tau"], config["cwd_weight"], config["cwd_tau"]) == (2.0, 1.5, 4.0)
        history = json.loads((tmp_path / "logs" / name / "history.json").read_text())["train"]
        assert name in history[0]  # the term is logged
    out = capsys.readouterr().out
    assert "kd dist: loss = seg + 1 DIST (tau 2, beta 1, gamma 1)" in out
    assert "kd logits+cwd: loss = seg + 0.5 P&KL (t 2, k1 0.5) + 1.5 CWD (T 4)" in out
