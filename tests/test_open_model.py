"""One way to open a model file (utils.inference.open_model): by suffix, with one-line refusals,
and one meaning per flag in every script (--checkpoint a file, --model a registry name)."""

from __future__ import annotations

import cv2
import pytest
from test_predict_helpers import make_tiny, orange_photo, register_tiny, write_project_checkpoint

import get_miou
import predict
from utils.deploy.backends import bf16_unavailable
from utils.inference.model_predictor import ModelPredictor
from utils.inference.open_model import open_model
from utils.line import bench, grading


@pytest.fixture
def files(tmp_path, monkeypatch) -> dict:
    register_tiny(monkeypatch)
    model = make_tiny(seed=2)
    ModelPredictor(model, 32).export_onnx(tmp_path / "m.onnx", opset=18)
    ModelPredictor(model, 32).export_openvino(tmp_path / "m.xml")
    photo = tmp_path / "a.png"
    cv2.imwrite(str(photo), orange_photo()[..., ::-1])
    return {
        "pth": write_project_checkpoint(model, tmp_path / "m.pth"),
        "onnx": tmp_path / "m.onnx",
        "xml": tmp_path / "m.xml",
        "photo": photo,
    }


def test_open_model_decides_by_suffix(files) -> None:
    torch_side = open_model(files["pth"], backend="torch")
    onnx = open_model(files["onnx"])
    ir = open_model(files["xml"])
    assert isinstance(torch_side, ModelPredictor) and torch_side.model is not None
    assert onnx.model is None and onnx.describe().startswith("onnxruntime")
    assert ir.model is None and ir.describe().startswith("ov-fp32: openvino")
    image = orange_photo(40, 56, 1)
    reference = torch_side.predict(image)
    for predictor in (onnx, ir):
        assert predictor.input_size == (32, 32) and predictor.num_classes == 4
        assert (predictor.predict(image) == reference).mean() > 0.99


def test_open_model_refusals_are_one_line(files, tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="model file not found: .*missing.xml"):
        open_model(tmp_path / "missing.xml")
    with pytest.raises(ValueError, match="runs as it is; --backend torch needs a .pth"):
        open_model(files["xml"], backend="torch")
    with pytest.raises(ValueError, match=r"an ONNX file \(ort-fp32\)"):
        open_model(files["onnx"], backend="ov-int8")
    with pytest.raises(ValueError, match="pass a model file with --checkpoint PATH"):
        open_model(files["pth"], model_name=str(files["pth"]))
    with pytest.raises(ValueError, match="predicts 4 classes, but 3 were asked for"):
        open_model(files["xml"], num_classes=3)
    with pytest.raises(ValueError, match="holds a tiny_seg model, but --model pidnet_s"):
        open_model(files["onnx"], model_name="pidnet_s")
    with pytest.raises(ValueError, match="unknown backend"):
        open_model(files["xml"], backend="tensorrt")


def test_an_exported_ir_runs_in_bf16_where_the_cpu_has_it(files, monkeypatch) -> None:
    """--backend ov-bf16 on a float IR runs its float ops in bfloat16 (native bf16 CPUs); a bf16
    name that is not the IR's twin, or a CPU without native bf16, is refused in one line."""
    monkeypatch.delenv("FASTSEGFORMER_NATIVE_BF16", raising=False)
    missing = bf16_unavailable()
    monkeypatch.setenv("FASTSEGFORMER_NATIVE_BF16", "0")
    with pytest.raises(ValueError, match="--backend ov-bf16: native bf16 turned off"):
        open_model(files["xml"], backend="ov-bf16")
    monkeypatch.setenv("FASTSEGFORMER_NATIVE_BF16", "1")
    with pytest.raises(ValueError, match=r"an OpenVINO IR \(ov-bf16\).*--backend ov-int8-bf16"):
        open_model(files["xml"], backend="ov-int8-bf16")
    if missing:
        pytest.skip(f"OpenVINO would emulate bf16 here: {missing}")
    ir = open_model(files["xml"], backend="ov-bf16")
    assert ir.describe().startswith("ov-bf16: openvino") and ir.backend.precision == "bf16"
    image = orange_photo(40, 56, 1)
    assert (ir.predict(image) == open_model(files["xml"]).predict(image)).mean() > 0.99


def test_old_flag_spellings_still_work_with_a_note(files, tmp_path, capsys) -> None:
    out = tmp_path / "o"
    assert predict.main(["--onnx", str(files["onnx"]), "--inputs", str(files["photo"]),
                         "--out", str(out)]) == 0  # fmt: skip
    assert "note: --onnx is now --checkpoint" in capsys.readouterr().err
    assert (out / "a.png").is_file()
    assert get_miou.main([f"--openvino={files['xml']}", "--mode", "predict", "--data",
                          str(tmp_path / "none")]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "note: --openvino is now --checkpoint" in err and "no VOC data set" in err


def test_model_means_a_registry_name_everywhere(files, tmp_path, capsys) -> None:
    """Grading and the line benchmark took the model file as --model; a file there is refused
    with the flag to use."""
    argv = ["--model", str(files["pth"]), "--checkpoint", str(files["pth"])]
    rc = grading.main([*argv, "--source", str(files["photo"]), "--out", str(tmp_path / "g")])
    assert rc == 2
    assert "pass a model file with --checkpoint PATH" in capsys.readouterr().err
    assert grading.main(["--model", str(files["pth"]), "--source", str(files["photo"])]) == 2
    assert "pass a model file with --checkpoint PATH" in capsys.readouterr().err
    assert bench.Config().model == "fastsegformer_p"  # a registry name, built with random weights


def test_grading_cli_damaged_checkpoint_and_missing_video_are_one_line(
    files, tmp_path, capsys
) -> None:
    broken = tmp_path / "broken.pth"
    broken.write_bytes(files["pth"].read_bytes()[:200])
    rc = grading.main(["--checkpoint", str(broken), "--source", str(files["photo"]),
                       "--out", str(tmp_path / "g")])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and str(broken) in err[0], err
    assert "trust_checkpoint" in grading.Config.__dataclass_fields__  # a flag its errors name
    rc = grading.main(["--checkpoint", str(files["xml"]), "--source", str(tmp_path / "no.mp4"),
                       "--out", str(tmp_path / "g")])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "no.mp4: not found" in err[0], err
