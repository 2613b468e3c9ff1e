"""Broken inputs and interrupted writes: each probe of a newcomer's run with damaged files.

Every broken file is made inside the test: non-UTF-8 file names and split lines, photos cut
short, a checkpoint save killed with SIGKILL, a raw state dict of another class count. The
tools must name the file and what to do, in one line, and leave the data set and earlier
outputs as they were.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from test_predict_helpers import make_tiny, orange_photo, register_tiny, write_project_checkpoint
from test_train_helpers import TinySegNet, TinySegSet, tiny_config

import get_miou
import nets
import predict
import train
import voc_annotation
from nets import checkpoint as ckpt_mod
from nets.checkpoint import CheckpointError, read_project_checkpoint
from utils import fileio
from utils.data.dataset import VOCSegmentation
from utils.data.labels import MaskError, read_mask, save_index_mask
from utils.data.preprocess import VOC_PALETTE, file_problem, read_image
from utils.data.synthetic import generate_dataset
from utils.inference.visualize import draw_legend, legend_layout, overlay
from utils.training.config import ConfigError, TrainConfig, validate_config
from utils.training.run import load_initial_weights
from utils.training.run_dir import prepare_run_dir
from utils.training.task import SegmentationTask
from utils.training.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]
H, W = 40, 48


def _photo_bytes(seed: int = 0, h: int = 96, w: int = 128, ext: str = ".jpg") -> bytes:
    """A textured photo, encoded (JPEGs of a few kilobytes, like real ones, only smaller)."""
    image = cv2.GaussianBlur(
        np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8), (5, 5), 2
    )
    ok, data = cv2.imencode(ext, image)
    assert ok
    return data.tobytes()


def _voc(root: Path, n: int = 8) -> Path:
    """root/VOC2007 with n photo/mask pairs p00.. (no split files)."""
    voc = root / "VOC2007"
    (voc / "JPEGImages").mkdir(parents=True)
    (voc / "SegmentationClass").mkdir()
    for i in range(n):
        cv2.imwrite(str(voc / "JPEGImages" / f"p{i:02d}.jpg"), orange_photo(H, W, i))
        mask = np.zeros((H, W), np.uint8)
        mask[5:12, 5:12] = 1 + i % 3
        save_index_mask(voc / "SegmentationClass" / f"p{i:02d}.png", mask)
    return voc


def _splits(voc: Path, **files: str) -> None:
    folder = voc / "ImageSets" / "Segmentation"
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / f"{name}.txt").write_text(text)


def _split_bytes(voc: Path) -> dict[str, bytes]:
    folder = voc / "ImageSets" / "Segmentation"
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*"))}


def _temps(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(".*") if fileio.is_temp_name(p.name)]


# ------------------------------------------------------------------ atomic writes, temp files
def test_a_failed_write_leaves_the_target_and_no_temporary_file(tmp_path):
    target = fileio.write_text(tmp_path / "a.txt", "old\n")
    with pytest.raises(RuntimeError), fileio.atomic_open(target) as f:
        f.write("half of the new")
        raise RuntimeError("disk full")
    assert target.read_text() == "old\n" and not _temps(tmp_path)
    with pytest.raises(UnicodeEncodeError):  # encoded before anything is created
        fileio.write_text(target, "bad\udcff")
    assert target.read_text() == "old\n" and not _temps(tmp_path)
    with pytest.raises(OSError, match="produced no file"), fileio.atomic_path(target):
        pass  # a writer that failed silently (cv2.imwrite returning False)
    assert target.read_text() == "old\n"


def test_write_all_stages_every_file_before_replacing_any(tmp_path, monkeypatch):
    a, b = fileio.write_text(tmp_path / "a", "A"), fileio.write_text(tmp_path / "b", "B")
    real_fsync, calls = os.fsync, []

    def fail_second(fd: int) -> None:
        calls.append(fd)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(fileio.os, "fsync", fail_second)
    with pytest.raises(fileio.DiskFullError, match="no space left on device writing .*b; none of"):
        fileio.write_all({a: b"new A", b: b"new B"})
    assert (a.read_text(), b.read_text()) == ("A", "B") and not _temps(tmp_path)


def test_checkpoint_temp_names_are_the_ones_fileio_cleans(tmp_path):
    ours = fileio.temp_path_for(tmp_path / "last.pth")
    theirs = ckpt_mod._temp_path(tmp_path / "last.pth")
    assert fileio.is_temp_name(ours.name) and fileio.is_temp_name(theirs.name)
    assert theirs.name.startswith(".last.pth.") and theirs.suffix == ".pth"
    assert theirs.name.split(".")[3].split("-")[:2] == ours.name.split(".")[3].split("-")[:2]


def test_stale_temp_files_are_those_whose_writer_is_gone(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=True,
                          capture_output=True, text=True)  # fmt: skip
    pid, host = int(dead.stdout), fileio.host_tag()
    stale = tmp_path / f".last.pth.{pid}-{host}-0123abcd.tmp.pth"
    live = tmp_path / f".best.pth.{os.getpid()}-{host}-0123abcd.tmp.pth"
    other = tmp_path / f".ep005.pth.{pid}-{fileio.host_tag('elsewhere')}-0123abcd.tmp.pth"
    legacy_old = tmp_path / ".last.pth.k3j2x9q1.tmp"  # tempfile.mkstemp, an earlier version
    legacy_new = tmp_path / ".ep010.pth.a8d7f6e5.tmp"
    user_file = tmp_path / ".notes.tmp"
    for p in (stale, live, other, legacy_old, legacy_new, user_file):
        p.write_bytes(b"partial")
    hours_ago = time.time() - 2 * 3600
    os.utime(legacy_old, (hours_ago, hours_ago))
    os.utime(user_file, (hours_ago, hours_ago))
    assert fileio.stale_temp_files(tmp_path) == sorted([stale, legacy_old])
    assert fileio.remove_stale_temp_files(tmp_path) == sorted([stale, legacy_old])
    assert live.exists() and other.exists() and legacy_new.exists() and user_file.exists()


def test_checkpoint_save_killed_mid_write_keeps_the_old_file_and_the_next_run_cleans(
    tmp_path, capsys
):
    """kill -9 during torch.save: last.pth stays the previous one; resuming removes the temp."""
    run = tmp_path / "run"
    run.mkdir()
    last = run / "last.pth"
    last.write_bytes(b"the previous checkpoint")
    script = (
        "import sys, time, torch\n"
        "from nets.checkpoint import save_checkpoint\n"
        "class Slow:\n"
        "    def __reduce__(self):\n"
        "        print('writing', flush=True); time.sleep(60); return (int, (0,))\n"
        "save_checkpoint({'w': torch.zeros(10000), 'slow': Slow()}, sys.argv[1])\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(last)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert proc.stdout.readline().strip() == "writing"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert last.read_bytes() == b"the previous checkpoint"
    (left,) = _temps(run)
    assert left.name.startswith(".last.pth.")

    cfg = tiny_config(tmp_path, resume=str(last))
    assert prepare_run_dir(cfg) == run.resolve()
    assert not _temps(run) and last.exists()
    assert "removed 1 temporary file(s) left by an interrupted write" in capsys.readouterr().out


def test_interrupted_synthetic_generation_leaves_no_usable_looking_folder(tmp_path, monkeypatch):
    import utils.data.synthetic as synthetic

    real, calls = synthetic._render_and_save, []

    def fail_third(job):  # noqa: ANN001, ANN202
        calls.append(job)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(job)

    monkeypatch.setattr(synthetic, "_render_and_save", fail_third)
    with pytest.raises(KeyboardInterrupt):
        generate_dataset(tmp_path, num=5, size=32, workers=1)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(synthetic, "_render_and_save", real)
    generate_dataset(tmp_path, num=5, size=32, workers=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["VOC2007"]


# ------------------------------------------------------------------ file names and split files
def _bad_name_pair(voc: Path) -> None:
    """A photo and its mask whose names are Latin-1 bytes, not UTF-8 ('b\\xe4d' = 'bäd')."""
    for folder, ext, data in (
        ("JPEGImages", b".jpg", cv2.imencode(".jpg", orange_photo(H, W, 9))[1].tobytes()),
        ("SegmentationClass", b".png", (voc / "SegmentationClass" / "p00.png").read_bytes()),
    ):
        with open(os.path.join(os.fsencode(voc / folder), b"b\xe4d" + ext), "wb") as f:
            f.write(data)


def test_force_with_a_non_utf8_file_name_names_it_and_writes_valid_split_files(tmp_path, capsys):
    voc = _voc(tmp_path)
    _bad_name_pair(voc)
    _splits(voc, train="p00\n", val="p01\n", test="p02\n", trainval="p00\np01\n")
    assert voc_annotation.main(["--data", str(tmp_path), "--force"]) == 1
    out = capsys.readouterr().out
    assert "b\\xe4d.jpg: the file name is not valid UTF-8" in out
    assert "b\\xe4d.png: the file name is not valid UTF-8" in out and "rename it" in out.lower()
    listed = []
    for name, data in _split_bytes(voc).items():
        text = data.decode("utf-8")  # every split file is complete UTF-8 text
        if name != "trainval.txt":
            listed += text.split()
    assert sorted(listed) == [f"p{i:02d}" for i in range(8)]
    assert not _temps(voc)


def test_a_failed_split_write_leaves_every_split_file_as_it_was(tmp_path, monkeypatch, capsys):
    voc = _voc(tmp_path)
    _splits(voc, train="p00\np01\n", val="p02\n", test="p03\n", trainval="p00\np01\np02\n")
    before = _split_bytes(voc)
    real_fsync, calls = os.fsync, []

    def disk_full_on_the_third_file(fd: int) -> None:
        calls.append(fd)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(fileio.os, "fsync", disk_full_on_the_third_file)
    assert voc_annotation.main(["--data", str(tmp_path), "--force", "--no-report"]) == 2
    err = capsys.readouterr().err
    assert "error: no space left on device writing" in err and "none of the 4 files was" in err
    assert _split_bytes(voc) == before and not _temps(voc)


def test_converting_a_source_with_a_non_utf8_name_stops_naming_it(tmp_path, capsys):
    masks, images = tmp_path / "masks", tmp_path / "images"
    masks.mkdir()
    images.mkdir()
    mask = np.zeros((H, W), np.uint8)
    mask[3:9, 3:9] = 1
    for folder, name, data in (
        (masks, b"b\xe4d.png", cv2.imencode(".png", mask)[1].tobytes()),
        (images, b"b\xe4d.jpg", cv2.imencode(".jpg", orange_photo(H, W, 1))[1].tobytes()),
    ):
        with open(os.path.join(os.fsencode(folder), name), "wb") as f:
            f.write(data)
    out = tmp_path / "voc"
    flags = ["--data", str(out), "--classes", "background", "sunburn"]
    rc = voc_annotation.main(["--from-masks", str(masks), "--images", str(images), *flags])
    assert rc == 2
    err = capsys.readouterr().err
    assert "b\\xe4d.png: the photo's name is not valid UTF-8" in err and "convmv" in err


def test_a_non_utf8_line_in_a_split_file_names_the_file_and_line(tmp_path, monkeypatch, capsys):
    register_tiny(monkeypatch)
    voc = _voc(tmp_path)
    _splits(voc, val="p01\n")
    (voc / "ImageSets" / "Segmentation" / "train.txt").write_bytes(b"p00\np02\nb\xe4d\n")
    with pytest.raises(ValueError, match=r"train\.txt, line 3: not UTF-8 text \(b'b\\xe4d'"):
        VOCSegmentation(tmp_path, "train", 32)
    rc = train.main(["--data", str(tmp_path), "--save-dir", str(tmp_path / "logs"),
                     "--epochs", "1", "--freeze-epochs", "0", "--device", "cpu",
                     "--model", "tiny_seg"])  # fmt: skip
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert "train.txt, line 3: not UTF-8 text" in err and len(err.splitlines()) == 1


def test_check_only_checks_the_existing_split_files(tmp_path, capsys):
    voc = _voc(tmp_path)
    (voc / "SegmentationClass" / "p05.png").unlink()  # p05: a photo without its mask
    _splits(
        voc,
        train="p00\np01\nghost\np00\n",  # ghost: no photo; p00 twice
        val="p01\np02\n",  # p01 in train too
        test="p03\np05\n",
        trainval="p00\np01\np02\n",
    )
    assert voc_annotation.main(["--data", str(tmp_path), "--check-only"]) == 1
    out = capsys.readouterr().out
    assert "train.txt, line 3: ghost has no photo in" in out
    assert "train.txt, line 4: p00 is listed twice (first on line 1)" in out
    assert "test.txt, line 2: p05 has no mask" in out
    assert "1 ids are in both train.txt and val.txt: p01" in out
    assert "ghost" not in _split_bytes(voc)["val.txt"].decode()  # nothing written

    _splits(voc, train="p00\np01\n", val="p02\n", test="p03\n", trainval="p00\np01\np02\n")
    save_index_mask(voc / "SegmentationClass" / "p05.png", np.zeros((H, W), np.uint8))
    assert voc_annotation.main(["--data", str(tmp_path), "--check-only"]) == 0
    assert "every listed id is usable" in capsys.readouterr().out


# ------------------------------------------------------------------ truncated and broken photos
@pytest.mark.parametrize("ext", [".jpg", ".png", ".bmp"])
def test_every_cut_of_a_photo_is_found_and_the_whole_file_passes(ext):
    data = _photo_bytes(ext=ext, h=48, w=64)
    assert file_problem(data) is None
    assert file_problem(data + b"\x00 bytes some cameras append") is None
    step = max(1, len(data) // 200)
    missed = [cut for cut in range(1, len(data), step) if file_problem(data[:cut]) is None]
    assert max(missed, default=0) < 8  # shorter than the signature: no decoder reads it either


def test_a_progressive_jpeg_with_restart_markers_and_exif_passes():
    image = cv2.GaussianBlur(np.random.default_rng(1).integers(0, 256, (64, 80, 3), np.uint8),
                             (5, 5), 2)  # fmt: skip
    rst = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_RST_INTERVAL, 2])[1].tobytes()
    progressive = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes()
    exif = Image.Exif()
    exif[0x0112] = 1
    import io

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, "JPEG", exif=exif, progressive=True)
    for data in (rst, progressive, buf.getvalue()):
        assert file_problem(data) is None
        assert file_problem(data[: len(data) // 2]) is not None


def test_a_jpeg_cut_after_600_bytes_is_an_error_naming_it_in_every_reader(tmp_path):
    voc = _voc(tmp_path)
    full = _photo_bytes(seed=3, h=240, w=320)  # about 17 kB, like the probe's photo
    assert len(full) > 10_000
    cut = voc / "JPEGImages" / "p02.jpg"
    cut.write_bytes(full[:600])
    with pytest.raises(ValueError, match=r"p02\.jpg: truncated JPEG.*\(600 bytes\)"):
        read_image(cut)
    _splits(voc, train="p00\np01\np02\np03\n")
    ds = VOCSegmentation(tmp_path, "train", 32, train=True)
    with pytest.raises(ValueError, match="p02.jpg: truncated JPEG"):
        ds[2]
    # masks cut short are refused by PIL (never LOAD_TRUNCATED_IMAGES)
    mask = voc / "SegmentationClass" / "p03.png"
    mask.write_bytes(mask.read_bytes()[:-30])
    with pytest.raises(MaskError, match="p03.png: cannot read mask"):
        read_mask(mask)


def test_voc_annotation_reports_the_cut_photo_and_leaves_it_out(tmp_path, capsys):
    voc = _voc(tmp_path)
    (voc / "JPEGImages" / "p04.jpg").write_bytes(_photo_bytes(seed=4, h=H, w=W)[:600])
    assert voc_annotation.main(["--data", str(tmp_path), "--no-report"]) == 1
    out = capsys.readouterr().out
    assert "p04.jpg: truncated JPEG" in out
    train_ids = _split_bytes(voc)["train.txt"].decode().split()
    assert "p04" not in train_ids + _split_bytes(voc)["val.txt"].decode().split()


def test_get_miou_stops_on_a_cut_photo_naming_it(tmp_path, tiny_ckpt, capsys):
    voc = _voc(tmp_path)
    _splits(voc, test="p00\np01\n")
    (voc / "JPEGImages" / "p01.jpg").write_bytes(_photo_bytes(seed=1, h=H, w=W)[:600])
    rc = get_miou.main(["--checkpoint", str(tiny_ckpt), "--data", str(tmp_path),
                        "--out", str(tmp_path / "miou"), "--no-progress"])  # fmt: skip
    assert rc == 2
    assert "p01.jpg: truncated JPEG" in capsys.readouterr().err


def test_worker_errors_reach_the_user_as_the_same_one_line(tmp_path, monkeypatch, capsys):
    register_tiny(monkeypatch)
    voc = _voc(tmp_path)
    _splits(voc, train="p00\np01\np02\np03\n", val="p04\n")
    (voc / "JPEGImages" / "p02.jpg").write_bytes(_photo_bytes(seed=2, h=H, w=W)[:600])
    errors = {}
    for workers in ("0", "2"):
        rc = train.main([
            "--data", str(tmp_path), "--model", "tiny_seg", "--input-size", "32",
            "--batch-size", "4", "--freeze-batch-size", "4", "--epochs", "1",
            "--freeze-epochs", "0", "--workers", workers, "--device", "cpu",
            "--save-dir", str(tmp_path / "logs"), "--name", f"w{workers}",
            "--no-tensorboard",
        ])  # fmt: skip
        assert rc == 2
        err = capsys.readouterr().err
        assert err.count("train.py: error:") == 1 and "Traceback" not in err
        errors[workers] = re.search(r"train\.py: error: [^\r\n]*", err)[0]
    assert errors["0"] == errors["2"]
    assert errors["2"].startswith("train.py: error: cannot decode image ")
    assert "p02.jpg: truncated JPEG" in errors["2"]
    assert "Caught" not in errors["2"] and "Traceback" not in errors["2"]


# ------------------------------------------------------------------ predict.py inputs
@pytest.fixture
def tiny_ckpt(tmp_path, monkeypatch) -> Path:
    register_tiny(monkeypatch)
    return write_project_checkpoint(make_tiny(seed=2), tmp_path / "tiny.pth", input_size=32)


def test_predict_given_a_folder_in_image_mode_reads_its_photos(tmp_path, tiny_ckpt, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(2):
        cv2.imwrite(str(photos / f"f{i}.jpg"), orange_photo(H, W, i))
    out = tmp_path / "out"
    rc = predict.main(["--checkpoint", str(tiny_ckpt), "--inputs", str(photos),
                       "--out", str(out), "--quiet"])  # fmt: skip
    assert rc == 0
    assert "is a folder: predicting its 2 photo(s)" in capsys.readouterr().out
    assert sorted(p.name for p in out.glob("*.png")) == ["f0.png", "f1.png"]
    rc = predict.main(["--mode", "folder", "--checkpoint", str(tiny_ckpt), "--inputs",
                       str(photos / "f0.jpg"), "--out", str(out)])  # fmt: skip
    assert rc == 2 and "is a file, not a folder" in capsys.readouterr().err


# ------------------------------------------------------------------ weights of other classes
def test_a_raw_state_dict_of_other_classes_names_the_flag_that_loads_it(tmp_path, capsys):
    raw = tmp_path / "four_classes.pth"
    torch.save(TinySegNet(4).state_dict(), raw)
    with pytest.raises(CheckpointError) as info:
        nets.load_checkpoint(TinySegNet(3), raw)
    message = str(info.value)
    assert "4 in the file, 3 in the model" in message and "--num-classes 4" in message
    assert "--pretrained FILE --drop-classifier" in message

    model = TinySegNet(3)
    cfg = tiny_config(tmp_path, pretrained=str(raw), drop_classifier=True)
    validate_config(cfg)
    load_initial_weights(model, cfg, is_main=True)
    assert "2 classifier tensors re-initialised (--drop-classifier)" in capsys.readouterr().out
    source = torch.load(raw)
    assert torch.equal(model.backbone[0].weight, source["backbone.0.weight"])
    with pytest.raises(ConfigError, match="--drop-classifier"):
        validate_config(tiny_config(tmp_path, drop_classifier=True))


# ------------------------------------------------------------------ checkpoint sizes, --keep
def _ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cross_entropy(logits, labels, ignore_index=255)


def test_best_holds_weights_and_config_last_the_training_state_and_keep_prunes(tmp_path):
    cfg = tiny_config(tmp_path, epochs=4, freeze_epochs=0, keep=2, tensorboard=False)
    run = tmp_path / "run"
    names = ("background", "a", "b")
    task = SegmentationTask(TinySegNet(3), _ce)
    Trainer(cfg, task, TinySegSet(8), TinySegSet(4, seed=1), class_names=names, run_dir=run).fit()
    assert sorted(p.name for p in run.glob("ep*.pth")) == ["ep003.pth", "ep004.pth"]
    best, last = (
        read_project_checkpoint(run / "best.pth"),
        read_project_checkpoint(run / "last.pth"),
    )
    assert best["optimizer"] is None and best["scheduler"] is None and best["scaler"] is None
    assert best["config"]["model"] == "tiny_test" and best["class_names"] == [
        "background",
        "a",
        "b",
    ]
    assert last["optimizer"] is not None and last["scheduler"]["frozen"] is False
    assert (run / "best.pth").stat().st_size < (run / "last.pth").stat().st_size
    # best.pth is refused for resuming, with the way on
    resume = tiny_config(tmp_path, resume=str(run / "best.pth"), tensorboard=False)
    with pytest.raises(ValueError, match="holds weights only.*last.pth.*--pretrained"):
        Trainer(resume, SegmentationTask(TinySegNet(3), _ce), TinySegSet(8), None,
                class_names=names, run_dir=run)  # fmt: skip


def test_keep_must_not_be_negative():
    with pytest.raises(ConfigError, match="--keep"):
        validate_config(TrainConfig(keep=-1))


# ------------------------------------------------------------------ outputs: legend, folders
NAMES = ("background", "sunburn", "ulcer", "wind_scarring")


def test_overlays_carry_a_legend_of_class_colours_and_names():
    image = np.full((256, 256, 3), 200, np.uint8)
    mask = np.zeros((256, 256), np.uint8)
    mask[20:60, 150:200] = 2
    drawn = overlay(image, mask, "blend", class_names=NAMES)
    layout = legend_layout(drawn.shape[:2], NAMES)
    assert [name for _, name, _, _ in layout.rows] == list(NAMES[1:])
    for k, _, (x0, y0, x1, y1), (tx, _) in layout.rows:
        assert (drawn[y0:y1, x0:x1] == VOC_PALETTE[k]).all()  # the class's mask colour
        text = drawn[y0:y1, tx : layout.panel[2]]
        assert (text.min(axis=-1) > 200).any()  # white letters on the dark panel
    assert layout.panel[1] > 128 and layout.panel[2] < 128  # bottom-left, in a quarter
    assert (drawn[:128] == overlay(image, mask, "blend")[:128]).all()  # the rest untouched
    small = np.full((40, 56, 3), 200, np.uint8)
    assert legend_layout(small.shape[:2], NAMES) is None
    assert (draw_legend(small.copy(), NAMES) == small).all()


def test_predict_writes_the_legend_unless_told_not_to(tmp_path, tiny_ckpt):
    photo = tmp_path / "big.png"
    cv2.imwrite(str(photo), cv2.resize(orange_photo(H, W, 0), (256, 192)))
    runs = {}
    for flag in ("--legend", "--no-legend"):
        out = tmp_path / flag.strip("-")
        args = ["--checkpoint", str(tiny_ckpt), "--inputs", str(photo), "--out", str(out)]
        assert predict.main([*args, flag, "--quiet"]) == 0
        runs[flag] = cv2.cvtColor(cv2.imread(str(out / "big.png")), cv2.COLOR_BGR2RGB)
    layout = legend_layout((192, 256), NAMES)
    k, _, (x0, y0, x1, y1), _ = layout.rows[0]
    assert (runs["--legend"][y0:y1, x0:x1] == VOC_PALETTE[k]).all()
    assert not (runs["--no-legend"][y0:y1, x0:x1] == VOC_PALETTE[k]).all()


def test_outputs_default_under_logs_and_repository_roots_are_ignored():
    assert get_miou.Config().out.startswith("logs/")
    assert predict.Config().out.startswith("logs/")
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    assert {"logs/*", "miou_out/", "img_out/"} <= set(ignored)
