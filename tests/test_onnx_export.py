"""ONNX export (utils/deploy/onnx_export.py), the ONNX Runtime backend, and PyTorch parity.

Parity bound: argmax agreement >= 99.9% of pixels and logits within 1e-4 relative
(max |ort - torch| / max |torch|), on FastSegFormer-P and -E with random weights.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_predict_helpers import make_tiny, orange_photo, register_tiny, write_project_checkpoint

import get_miou
import predict
import utils.deploy.onnx_export as onnx_export
from utils.deploy.onnx_export import check_parity, export_onnx
from utils.inference.model_predictor import ModelPredictor
from utils.inference.predictor import Predictor


def photos() -> list[np.ndarray]:
    return [orange_photo(40, 56, 0), orange_photo(32, 32, 1), orange_photo(60, 30, 2)]


def test_exported_tiny_model_predicts_like_pytorch(tmp_path):
    model = make_tiny()
    names = ["bg", "a", "b", "c"]
    report = export_onnx(model, tmp_path / "t.onnx", 32, metadata={"class_names": names})
    assert report.parity.passed and report.parity.argmax_agreement == 1.0
    assert report.parity.max_rel_diff <= 1e-4
    ort = Predictor.from_exported(tmp_path / "t.onnx")
    assert ort.input_size == (32, 32) and ort.num_classes == 4 and ort.class_names == names
    torch_pred = ModelPredictor(model, 32)
    for image in photos():  # a fixed-batch file runs a batch one image at a time
        np.testing.assert_array_equal(ort.predict(image), torch_pred.predict(image))
    assert len(ort.predict_batch(photos(), batch_size=3)) == 3


def test_dynamic_batch_with_the_dynamo_exporter(tmp_path):
    model = make_tiny(seed=1)
    report = export_onnx(model, tmp_path / "d.onnx", 32, dynamic_batch=True, exporter="dynamo")
    assert report.exporter == "dynamo" and report.opset == 18
    ort = Predictor.from_exported(tmp_path / "d.onnx")
    assert ort.backend.static_batch is None
    batch = np.stack([ort.preprocess(im)[0] for im in photos()])  # (3, 3, 32, 32)
    logits = ort.infer(batch)
    ref = ModelPredictor(model, 32).infer(batch)
    np.testing.assert_allclose(logits, ref, rtol=0, atol=1e-4 * np.abs(ref).max())


def test_fp16_export_keeps_float32_io(tmp_path):
    report = export_onnx(make_tiny(), tmp_path / "h.onnx", 32, half=True)
    assert report.half and report.parity.passed
    assert report.parity.min_agreement == onnx_export.FP16_AGREEMENT
    ort = Predictor.from_exported(tmp_path / "h.onnx")
    assert ort.backend.input_dtype == np.float32
    agree = (
        ort.predict(photos()[0]) == ModelPredictor(make_tiny(), 32).predict(photos()[0])
    ).mean()
    assert agree > 0.95


def test_failed_parity_removes_the_file(tmp_path, monkeypatch):
    def failing(*args, **kwargs):
        return onnx_export.ParityReport(1.0, 0.5, 0.2, False, 1e-4, 0.999)

    monkeypatch.setattr(onnx_export, "check_parity", failing)
    with pytest.raises(RuntimeError, match="does not reproduce PyTorch"):
        export_onnx(make_tiny(), tmp_path / "bad.onnx", 32)
    assert not (tmp_path / "bad.onnx").exists()


def test_onnx_input_size_mismatch_is_a_clear_error(tmp_path, capsys):
    export_onnx(make_tiny(), tmp_path / "t.onnx", 32)
    with pytest.raises(ValueError, match="exported for 32x32 input, but 48x48"):
        Predictor.from_exported(tmp_path / "t.onnx", input_size=48)
    ort = Predictor.from_exported(tmp_path / "t.onnx")
    with pytest.raises(ValueError, match="takes 32x32 input, got 48x48"):
        ort.infer(np.zeros((1, 3, 48, 48), np.float32))
    image = tmp_path / "a.png"
    import cv2

    cv2.imwrite(str(image), orange_photo())
    rc = predict.main(
        [
            "--checkpoint",
            str(tmp_path / "t.onnx"),
            "--input-size",
            "48",
            "--inputs",
            str(image),
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert rc == 2
    assert "exported for 32x32" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError):
        Predictor.from_exported(tmp_path / "missing.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"junk")
    with pytest.raises(ValueError, match="cannot load ONNX model"):
        Predictor.from_exported(tmp_path / "junk.onnx")


def test_predict_export_mode_then_evaluate_the_onnx_file(tmp_path, monkeypatch, capsys):
    from test_evaluate import make_split

    register_tiny(monkeypatch)
    ckpt = write_project_checkpoint(make_tiny(seed=4), tmp_path / "m.pth", input_size=32)
    onnx_path = tmp_path / "m.onnx"
    rc = predict.main(
        [
            "--backend",
            "torch",
            "--mode",
            "export_onnx",
            "--checkpoint",
            str(ckpt),
            "--onnx-out",
            str(onnx_path),
            "--dynamic-batch",
        ]
    )
    assert rc == 0
    assert "argmax agreement 100.0000%" in capsys.readouterr().out
    meta = Predictor.from_exported(onnx_path).backend.metadata
    assert meta["model"]["name"] == "tiny_seg" and meta["class_names"][3] == "wind_scarring"
    # the ONNX file scores a split exactly like its checkpoint
    data = make_split(tmp_path / "data")
    docs = []
    for name, path in (("pth", ckpt), ("onnx", onnx_path)):
        out = tmp_path / name
        assert (
            get_miou.main(
                [
                    "--checkpoint",
                    str(path),
                    "--data",
                    str(data),
                    "--out",
                    str(out),
                    "--no-progress",
                    "--batch-size",
                    "2",
                ]
            )
            == 0
        )
        docs.append(json.loads((out / "metrics.json").read_text()))
    assert docs[0]["confusion_matrix"] == docs[1]["confusion_matrix"]


@pytest.mark.parametrize("name", ["fastsegformer_p", "fastsegformer_e"])
def test_fastsegformer_parity(tmp_path, name):
    import cv2

    import nets

    model = nets.build_model(name, num_classes=4).eval()  # random weights
    path = tmp_path / f"{name}.onnx"
    report = export_onnx(model, path, 224)  # checks random inputs on its own
    assert report.parity.passed
    # and on photo-like inputs (letterboxed oranges), the way the Predictor feeds the model
    pred = ModelPredictor(model, 224)
    images = [orange_photo(512, 512, 0), cv2.resize(orange_photo(90, 120, 1), (480, 360))]
    inputs = np.stack([pred.preprocess(im)[0] for im in images])
    parity = check_parity(model, path, (224, 224), inputs=inputs)
    assert parity.argmax_agreement >= 0.999
    assert parity.max_rel_diff <= 1e-4
