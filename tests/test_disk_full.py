"""A full disk and a damaged checkpoint end with one line naming the file, no traceback.

The full disk is simulated: the file a write opens is replaced by one whose ``write`` raises
OSError(ENOSPC) once a byte limit is passed, as a full file system does (the real case, a
2 MB tmpfs, is in docs/training.md).
"""

from __future__ import annotations

import errno
import io
from pathlib import Path

import pytest
import torch
from test_train_helpers import make_tiny_voc

import nets.checkpoint as checkpoint_module
import utils.fileio as fileio
from get_miou import main as get_miou_main
from nets.checkpoint import CheckpointError, read_checkpoint, save_checkpoint
from predict import main as predict_main
from train import main as train_main
from utils.fileio import DiskFullError, atomic_path, write_all, write_bytes, write_text

torch.set_num_threads(1)


class FullDisk(io.FileIO):
    """A file whose writes fail with ENOSPC past `limit` bytes (what got in stays written)."""

    limit = 100

    def write(self, data) -> int:  # noqa: ANN001
        room = self.limit - self.tell()
        if len(data) > room:
            super().write(bytes(data)[: max(room, 0)])
            raise OSError(errno.ENOSPC, "No space left on device")
        return super().write(data)


def full_disk_open(name_part: str = ""):  # noqa: ANN201
    """An ``open`` for the writers' modules: files whose name holds `name_part` are FullDisk."""

    def fake_open(file, mode="r", *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        if "x" in mode and name_part in Path(file).name:
            raw = FullDisk(file, "x")
            return raw if "b" in mode else io.TextIOWrapper(raw, *args, **kwargs)
        return open(file, mode, *args, **kwargs)  # noqa: PTH123, SIM115

    return fake_open


def _temps(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if fileio.is_temp_name(p.name)]


def test_a_full_disk_in_an_atomic_write_says_what_is_left(tmp_path, monkeypatch):
    monkeypatch.setattr(fileio, "open", full_disk_open(), raising=False)
    old = tmp_path / "history.json"
    old.write_text("{}")
    with pytest.raises(DiskFullError) as err:
        write_text(old, "x" * 1000)
    assert str(err.value) == f"no space left on device writing {old}; the previous file is intact"
    assert err.value.errno == errno.ENOSPC and old.read_text() == "{}"
    with pytest.raises(DiskFullError, match=r"new\.bin; nothing was written \(new\.bin did not"):
        write_bytes(tmp_path / "new.bin", b"x" * 1000)
    with pytest.raises(DiskFullError, match=r"b\.txt; none of the 2 files was changed"):
        write_all({tmp_path / "a.txt": b"small", tmp_path / "b.txt": b"x" * 1000})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["history.json"]


def test_a_writer_that_takes_a_path_reports_a_full_disk_alike(tmp_path):
    def savefig(path: Path) -> None:  # as matplotlib or cv2 would fail
        path.write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    with (
        pytest.raises(DiskFullError, match=r"loss\.png; nothing was written"),
        atomic_path(tmp_path / "loss.png") as tmp,
    ):
        savefig(tmp)
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_in_a_checkpoint_write_is_one_error_and_the_old_file_stays(
    tmp_path, monkeypatch
):
    path = tmp_path / "last.pth"
    save_checkpoint({"w": torch.ones(4)}, path)
    monkeypatch.setattr(checkpoint_module, "open", full_disk_open(), raising=False)
    # torch.save reports the OSError as "RuntimeError: [enforce fail at inline_container.cc"
    for target, left in (
        (path, "the previous checkpoint is intact"),
        (tmp_path / "best.pth", "nothing was written (best.pth did not exist"),
    ):
        with pytest.raises(CheckpointError) as err:
            save_checkpoint({"w": torch.zeros(10_000)}, target)
        assert str(err.value).startswith(f"no space left on device writing {target}; {left}")
    assert torch.equal(read_checkpoint(path)["w"], torch.ones(4))
    assert _temps(tmp_path) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["last.pth"]


@pytest.fixture(scope="module")
def tiny_voc(tmp_path_factory) -> Path:
    return make_tiny_voc(tmp_path_factory.mktemp("voc"), num=8, size=64)


def test_train_py_on_a_full_disk_prints_one_line_and_keeps_the_last_checkpoint(
    tiny_voc, tmp_path, monkeypatch, capsys
):
    """Epoch 1 saves; the disk is full when epoch 2 writes last.pth."""
    real_save = checkpoint_module.save_checkpoint
    saves: list[str] = []

    def save(ckpt, path):  # noqa: ANN001, ANN202
        saves.append(Path(path).name)
        if len(saves) > 2:  # best.pth and last.pth of epoch 1 went through
            monkeypatch.setattr(checkpoint_module, "open", full_disk_open(), raising=False)
        return real_save(ckpt, path)

    monkeypatch.setattr("utils.training.trainer.save_checkpoint", save)
    argv = [
        "--data", str(tiny_voc), "--input-size", "64", "--epochs", "2", "--freeze-epochs", "0",
        "--batch-size", "2", "--max-steps", "1", "--workers", "0", "--eval-period", "1",
        "--save-period", "10", "--save-dir", str(tmp_path), "--name", "run",
        "--device", "cpu", "--no-tensorboard", "--no-amp",
    ]  # fmt: skip
    assert train_main(argv) == 2
    err = capsys.readouterr().err
    run = tmp_path / "run"
    # the progress bars (tqdm, on stderr) and then the one line
    assert err.splitlines()[-1] == (
        f"train.py: error: no space left on device writing {run / saves[-1]}; the previous "
        "checkpoint is intact"
    )
    assert "Traceback" not in err and err.count("error") == 1
    assert read_checkpoint(run / "last.pth")["epoch"] == 1
    assert _temps(run) == []


def _damaged(tmp_path: Path, cut: int | None) -> Path:
    """A zip-format torch checkpoint cut to its first `cut` bytes (negative: without its last
    -cut bytes; None: an empty file)."""
    whole = tmp_path / "whole.pth"
    torch.save({"state_dict": {"w": torch.randn(5000)}}, whole)
    damaged = tmp_path / "damaged.pth"
    damaged.write_bytes(b"" if cut is None else whole.read_bytes()[:cut])
    return damaged


@pytest.mark.parametrize(
    ("cut", "says"),
    [
        (None, "the file is empty"),
        (10, "the file is cut short"),
        (5000, "the file is cut short"),
        (-30, "the file is cut short"),
    ],
)
def test_a_damaged_checkpoint_is_one_line_naming_it_in_every_script(tmp_path, capsys, cut, says):
    path = _damaged(tmp_path, cut)
    photo = tmp_path / "a.jpg"
    photo.write_bytes(b"not read")
    runs = {
        "train.py": lambda: train_main(["--resume", str(path), "--save-dir", str(tmp_path)]),
        "get_miou.py": lambda: get_miou_main(["--checkpoint", str(path), "--data", str(tmp_path)]),
        "predict.py": lambda: predict_main(["--checkpoint", str(path), "--inputs", str(photo)]),
    }
    for script, call in runs.items():
        assert call() == 2, script
        err = capsys.readouterr().err
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert len(lines) == 1, (script, err)
        assert f"cannot read checkpoint {path}: {says}" in lines[0], (script, lines[0])
