"""The shared Predictor, the drawing / area helpers, and every predict.py mode on tiny inputs."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from test_predict_helpers import (
    TinySegNet,
    make_tiny,
    orange_photo,
    register_tiny,
    write_project_checkpoint,
)

import nets
import predict
from nets.checkpoint import CheckpointError
from utils.data.labels import index_to_colour
from utils.data.preprocess import letterbox, to_tensor
from utils.inference.model_predictor import ModelPredictor
from utils.inference.predictor import Predictor
from utils.inference.visualize import defect_areas, fruit_mask, overlay


# ---------------------------------------------------------------------------- Predictor
def test_predict_follows_letterbox_softmax_crop_resize_argmax():
    model = make_tiny()
    pred = ModelPredictor(model, 32)
    image = orange_photo(30, 50)
    mask = pred.predict(image)
    assert mask.shape == (30, 50) and mask.dtype == np.uint8
    # the same steps by hand, as the original's predict: softmax, crop the padding, OpenCV
    # bilinear resize of the probabilities to the photo, argmax
    boxed, box = letterbox(image, (32, 32))
    with torch.no_grad():
        logits = model(torch.from_numpy(to_tensor(boxed))[None])  # (1, K, 32, 32)
    probs = logits.softmax(1)[0].numpy().transpose(1, 2, 0)  # (32, 32, K)
    crop = probs[box.top : box.top + box.new_h, box.left : box.left + box.new_w]
    resized = cv2.resize(crop, (50, 30), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(mask, resized.argmax(-1))


def test_postprocess_agrees_with_torch_bilinear_resize():
    """OpenCV's bilinear (the original's) and torch's (align_corners=False) give the same
    masks but for near ties: on random logits at several scales, at least 99.9% of pixels."""
    rng = np.random.default_rng(0)
    pred = Predictor(lambda x: x, 32, 4)
    for h, w in ((30, 50), (100, 61), (17, 13), (480, 640)):
        _, box = letterbox(np.zeros((h, w, 3), np.uint8), (32, 32))
        logits = rng.standard_normal((4, 32, 32)).astype(np.float32)
        crop = torch.from_numpy(logits).softmax(0)[None][
            ..., box.top : box.top + box.new_h, box.left : box.left + box.new_w
        ]
        ref = torch.nn.functional.interpolate(crop, size=(h, w), mode="bilinear")[0].argmax(0)
        assert (pred.postprocess(logits, box) == ref.numpy()).mean() >= 0.999


def test_predict_batch_equals_one_by_one():
    pred = ModelPredictor(make_tiny(), 32)
    images = [orange_photo(30, 50, 0), orange_photo(64, 40, 1), orange_photo(32, 32, 2)]
    batch = pred.predict_batch(images, batch_size=2)
    for image, mask in zip(images, batch, strict=True):
        np.testing.assert_array_equal(mask, pred.predict(image))


def test_half_precision_backend_runs_and_mostly_agrees():
    image = orange_photo(40, 40)
    full = ModelPredictor(make_tiny(), 32).predict(image)
    half = ModelPredictor(make_tiny(), 32, half=True)
    assert half.backend.dtype == torch.float16
    assert (half.predict(image) == full).mean() > 0.95


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")
def test_cuda_fp16_backend():
    image = orange_photo(40, 40)
    full = ModelPredictor(make_tiny(), 32).predict(image)
    cuda = ModelPredictor(make_tiny(), 32, device="cuda", half=True)
    assert (cuda.predict(image) == full).mean() > 0.95


def test_from_checkpoint_rebuilds_the_model_alone(tmp_path, monkeypatch):
    register_tiny(monkeypatch)
    model = make_tiny(seed=5)
    path = write_project_checkpoint(model, tmp_path / "m.pth", input_size=40)
    pred = ModelPredictor.from_checkpoint(path)
    assert pred.input_size == (40, 40) and pred.num_classes == 4
    assert pred.class_names[1] == "sunburn"
    image = orange_photo()
    np.testing.assert_array_equal(pred.predict(image), ModelPredictor(model, 40).predict(image))


def test_checkpoint_errors(tmp_path, monkeypatch):
    register_tiny(monkeypatch)
    path = write_project_checkpoint(make_tiny(num_classes=3), tmp_path / "k3.pth")
    with pytest.raises(ValueError, match="3 classes, but 4"):
        ModelPredictor.from_checkpoint(path, num_classes=4)
    with pytest.raises(CheckpointError, match="not found: .*missing.pth"):
        ModelPredictor.from_checkpoint(tmp_path / "missing.pth")
    plain = tmp_path / "plain.pth"
    torch.save(make_tiny(num_classes=3).state_dict(), plain)
    with pytest.raises(ValueError, match="--model"):
        ModelPredictor.from_checkpoint(plain)
    with pytest.raises(ValueError, match="does not fit model tiny_seg with 4 classes"):
        ModelPredictor.from_checkpoint(plain, model_name="tiny_seg")  # weights for 3 classes
    assert (
        ModelPredictor.from_checkpoint(plain, model_name="tiny_seg", num_classes=3).num_classes == 3
    )


# ---------------------------------------------------------------------------- drawing, areas
def test_overlay_styles():
    image = np.full((4, 4, 3), 200, np.uint8)
    mask = np.zeros((4, 4), np.uint8)
    mask[0, 0], mask[1, 1] = 1, 3
    np.testing.assert_array_equal(index_to_colour(mask)[0, 0], [128, 0, 0])
    np.testing.assert_array_equal(overlay(image, mask, "mask"), index_to_colour(mask))
    cut = overlay(image, mask, "cutout")
    assert cut[0, 0].tolist() == [200] * 3 and cut[3, 3].tolist() == [0] * 3
    blend = overlay(image, mask, "blend", alpha=0.5)
    assert blend[0, 0].tolist() == [164, 100, 100]  # (200 + 128) / 2, 200 / 2
    assert blend[3, 3].tolist() == [200] * 3  # background keeps the photo
    with pytest.raises(ValueError, match="mode"):
        overlay(image, mask, "sparkle")


def test_defect_areas_known_counts():
    mask = np.zeros((10, 10), np.uint8)
    mask[0, :5] = 1  # 5 px sunburn
    mask[5, :2] = 3  # 2 px wind scarring
    mask[9, 9] = 255  # ignored, counts for nothing
    fruit = np.zeros((10, 10), bool)
    fruit[:5, :] = True  # 50 px of fruit; the 2 wind-scarring px outside it join the fruit
    a = defect_areas(mask, 4, fruit)
    assert a["image_pixels"] == 100 and a["fruit_pixels"] == 52
    assert a["defects"]["sunburn"] == {"pixels": 5, "image_share": 0.05, "fruit_share": 5 / 52}
    assert a["defects"]["ulcer"]["pixels"] == 0
    assert a["defect_pixels"] == 7 and a["defect_fruit_share"] == pytest.approx(7 / 52)
    assert defect_areas(mask, 4)["defects"]["sunburn"]["fruit_share"] is None


def test_fruit_mask_finds_the_orange_not_the_background():
    image = orange_photo(60, 80)
    fruit = fruit_mask(image)
    yy, xx = np.mgrid[:60, :80]
    disc = (yy - 30) ** 2 + (xx - 40) ** 2 < (0.4 * 60) ** 2
    assert (fruit == disc).mean() > 0.97  # the dark spot inside is filled in
    assert not fruit[:3].any()  # pale background


# ---------------------------------------------------------------------------- predict.py
@pytest.fixture
def ckpt(tmp_path, monkeypatch) -> Path:
    register_tiny(monkeypatch)
    return write_project_checkpoint(make_tiny(seed=2), tmp_path / "tiny.pth", input_size=32)


def write_photo(path: Path, seed: int = 0, h: int = 40, w: int = 56) -> Path:
    cv2.imwrite(str(path), cv2.cvtColor(orange_photo(h, w, seed), cv2.COLOR_RGB2BGR))
    return path


def read_csv(path: Path) -> list[dict]:
    return list(csv.DictReader(path.open()))


@pytest.mark.parametrize("style", ["blend", "mask", "cutout"])
def test_image_mode_writes_overlays_and_area_csv(tmp_path, ckpt, capsys, style):
    a = write_photo(tmp_path / "a.jpg", 0)
    b = write_photo(tmp_path / "b.png", 1, 30, 30)
    out = tmp_path / "out"
    rc = predict.main(
        [
            "--backend",
            "torch",
            "--checkpoint",
            str(ckpt),
            "--inputs",
            str(a),
            str(b),
            "--out",
            str(out),
            "--style",
            style,
            "--save-masks",
        ]
    )
    assert rc == 0
    assert cv2.imread(str(out / "a.png")).shape == (40, 56, 3)
    assert cv2.imread(str(out / "b.png")).shape == (30, 30, 3)
    rows = read_csv(out / "defect_areas.csv")
    assert [r["image"] for r in rows] == ["a.jpg", "b.png"]
    mask = cv2.imread(str(out / "masks" / "a.png"), cv2.IMREAD_UNCHANGED)
    from utils.data.labels import read_mask

    mask = read_mask(out / "masks" / "a.png", 4)
    assert int(rows[0]["sunburn_pixels"]) == int((mask == 1).sum())
    assert float(rows[0]["sunburn_image_pct"]) == pytest.approx(100 * (mask == 1).mean(), abs=1e-3)
    assert "% of fruit" in capsys.readouterr().out


def test_folder_mode_skips_unreadable_photos_and_fails_the_exit_status(tmp_path, ckpt, capsys):
    src = tmp_path / "photos"
    src.mkdir()
    for i in range(3):
        write_photo(src / f"p{i}.jpg", i)
    (src / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (src / "notes.txt").write_text("ignored: not a photo")
    out = tmp_path / "out"
    rc = predict.main(
        [
            "--backend",
            "torch",
            "--mode",
            "folder",
            "--checkpoint",
            str(ckpt),
            "--inputs",
            str(src),
            "--out",
            str(out),
            "--batch-size",
            "2",
            "--quiet",
        ]
    )
    assert rc == 1
    assert sorted(p.name for p in out.glob("*.png")) == ["p0.png", "p1.png", "p2.png"]
    assert len(read_csv(out / "defect_areas.csv")) == 3
    assert "broken.jpg" in capsys.readouterr().err


def write_video(path: Path, frames: int = 5, h: int = 48, w: int = 64) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (w, h))
    assert writer.isOpened()
    for i in range(frames):
        writer.write(cv2.cvtColor(orange_photo(h, w, seed=i), cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def test_video_mode_writes_an_annotated_video(tmp_path, ckpt):
    video = write_video(tmp_path / "line.mp4", frames=5)
    out = tmp_path / "out"
    rc = predict.main(
        [
            "--backend",
            "torch",
            "--mode",
            "video",
            "--checkpoint",
            str(ckpt),
            "--inputs",
            str(video),
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert rc == 0
    cap = cv2.VideoCapture(str(out / "line_pred.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 5
    assert (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))) == (
        64,
        48,
    )
    cap.release()
    assert len(read_csv(out / "line_defect_areas.csv")) == 5


def test_camera_mode_reads_a_stream_and_stops_at_max_frames(tmp_path, ckpt):
    # cv2.VideoCapture opens stream URLs and files alike; a file stands in for the camera
    video = write_video(tmp_path / "cam.mp4", frames=6)
    out = tmp_path / "out"
    rc = predict.main(
        [
            "--backend",
            "torch",
            "--mode",
            "camera",
            "--camera",
            str(video),
            "--max-frames",
            "3",
            "--checkpoint",
            str(ckpt),
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert rc == 0
    cap = cv2.VideoCapture(str(out / "camera_pred.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    cap.release()


def test_missing_camera_is_a_clear_error(tmp_path, ckpt, capsys):
    rc = predict.main(
        [
            "--backend",
            "torch",
            "--mode",
            "camera",
            "--camera",
            "97",
            "--checkpoint",
            str(ckpt),
            "--out",
            str(tmp_path),
        ]
    )
    assert rc == 2
    assert "cannot open camera 97" in capsys.readouterr().err


def test_fps_mode_times_the_full_loop(tmp_path, ckpt, capsys):
    photo = write_photo(tmp_path / "a.jpg")
    rc = predict.main(
        [
            "--backend",
            "torch",
            "--mode",
            "fps",
            "--checkpoint",
            str(ckpt),
            "--inputs",
            str(photo),
            "--fps-runs",
            "3",
            "--fps-warmup",
            "1",
        ]
    )
    assert rc == 0
    assert "FPS" in capsys.readouterr().out
    cfg = predict.parse_config(predict.Config, ["--inputs", str(photo), "--fps-runs", "2"])
    result = predict.fps_loop(cfg, ModelPredictor(make_tiny(), 32))
    assert result["fps"] > 0 and result["model_ms"] <= result["end_to_end_ms"]


def test_bad_model_arguments(tmp_path, ckpt, capsys):
    photo = write_photo(tmp_path / "a.jpg")
    assert predict.main(["--backend", "torch", "--inputs", str(photo)]) == 2
    assert "no model" in capsys.readouterr().err
    assert (
        predict.main(
            ["--backend", "torch", "--checkpoint", str(tmp_path / "x.pth"), "--inputs", str(photo)]
        )
        == 2
    )
    assert "not found" in capsys.readouterr().err
    rc = predict.main(
        [
            "--backend",
            "torch",
            "--checkpoint",
            str(ckpt),
            "--num-classes",
            "5",
            "--inputs",
            str(photo),
        ]
    )
    assert rc == 2
    assert "4 classes" in capsys.readouterr().err
    rc = predict.main(
        [
            "--backend",
            "torch",
            "--checkpoint",
            str(ckpt),
            "--inputs",
            str(tmp_path / "nope.jpg"),
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert rc == 1  # reported and skipped
    assert "nope.jpg" in capsys.readouterr().err


def test_fixed_size_model_refuses_another_input_size(tmp_path, monkeypatch):
    register_tiny(monkeypatch)
    path = write_project_checkpoint(make_tiny(), tmp_path / "m.pth", input_size=32)
    # like EfficientFormerV2, whose attention biases are sized for one input
    monkeypatch.setitem(nets.MODELS, "tiny_seg", lambda num_classes=4, **kw: TinySegNetFixed())
    with pytest.raises(ValueError, match="runs only at 32x32 input, not 48x48"):
        ModelPredictor.from_checkpoint(path, input_size=48)
    assert ModelPredictor.from_checkpoint(path).input_size == (32, 32)


class TinySegNetFixed(TinySegNet):
    def __init__(self) -> None:
        super().__init__()
        self.fixed_input_size = True


def test_original_layout_weights_give_the_original_logits(tmp_path, shared_dir):
    """The authors' checkpoint layout, saved as a .pth and loaded with --model, reproduces the
    original implementation's logits through the Predictor (reference case of ../shared).
    (The -E cases were recorded with a stale attention-bias cache of the original; see
    tests/test_reference.py. Loading itself is covered there for every case.)"""
    case = "fastsegformer_p"
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "synth_weights", shared_dir / "reference" / "synth_weights.py"
    )
    synth = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(synth)
    meta, state, inp, outs = synth.load_case(str(shared_dir / "reference" / "cases" / case))
    path = tmp_path / f"{case}.pth"
    torch.save(state, path)
    pred = ModelPredictor.from_checkpoint(path, model_name=case, num_classes=meta["num_classes"])
    logits = pred.infer(inp.numpy())  # (1, K, 224, 224)
    ref = outs[-1]
    assert np.allclose(logits, ref, rtol=1e-3, atol=1e-3 * np.abs(ref).max())


def test_same_file_names_do_not_overwrite_each_other(tmp_path, ckpt):
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    a = write_photo(tmp_path / "x" / "a.jpg", 0)
    b = write_photo(tmp_path / "y" / "a.jpg", 1)
    out = tmp_path / "out"
    args = [
        "--backend",
        "torch",
        "--checkpoint",
        str(ckpt),
        "--inputs",
        str(a),
        str(b),
        "--out",
        str(out),
        "--quiet",
    ]
    assert predict.main(args) == 0
    assert sorted(p.name for p in out.glob("*.png")) == ["a.png", "a_1.png"]
