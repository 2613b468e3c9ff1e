"""OpenVINO: convert a PyTorch model, quantise it to INT8 with NNCF, write and check the IR.

FastSegFormer (Cai et al., Computers and Electronics in Agriculture 217, 108604, 2024) is meant
for fruit-sorting lines, which often run a plain x86 CPU; OpenVINO is that CPU's own runtime.

- `to_openvino(model, input_size)`: `openvino.convert_model` on an export copy of the model
  (CPU, float32, contiguous layout, EfficientFormerV2 attention biases frozen into constants,
  utils.deploy.onnx_export.export_copy), static input (B, 3, h, w) named like the ONNX export.
- `quantize_openvino(ov_model, inputs)`: NNCF post-training quantisation (8-bit weights and
  activations as FakeQuantize pairs the CPU plugin runs with INT8 kernels), calibrated on
  preprocessed photos (`inputs`, (1, 3, h, w) float32 each). `exclude` keeps nodes in float:
  "head" (default) the last convolution (the classifier whose logits feed the argmax) and what
  follows it, "head+stem" also the first convolution (raw pixels), "head+depthwise" also every
  grouped (depthwise) convolution, "none" nothing. NNCF's
  "overflow fix" (7-bit weights of the first layer) guards x86 CPUs without VNNI, as in
  utils.deploy.optimize for ONNX Runtime.
- `save_openvino` / `export_openvino`: the .xml/.bin pair, written atomically, with the same
  metadata entry as the ONNX export (`ONNX_METADATA_KEY` in the IR's rt_info), so
  `Predictor.from_openvino` needs no checkpoint. `export_openvino` checks the IR against PyTorch
  (fp32: argmax agreement >= 99.9% and max |diff| <= 1e-4 * max |logit|, as the ONNX export).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from utils.deploy.onnx_export import FP32_AGREEMENT, FP32_RTOL, export_copy
from utils.deploy.optimize import pointwise_before_upsample
from utils.deploy.runtimes import ONNX_METADATA_KEY, OpenVinoBackend
from utils.fileio import temp_path_for

OV_EXCLUDE_POLICIES = ("none", "head", "head+stem", "head+depthwise")
OV_PRESETS = ("performance", "mixed")
INT8_MIN_AGREEMENT = 0.9  # argmax agreement with fp32 below which an INT8 IR is refused
_MATMUL_OPS = ("Convolution", "GroupConvolution", "MatMul")


def to_openvino(
    model: torch.nn.Module, input_size: Sequence[int] | int, batch: int = 1
) -> Any:  # openvino.Model
    """An openvino.Model of `model` for (batch, 3, h, w) float32 input (the caller's model is
    left as it is)."""
    import openvino as ov

    h, w = (input_size, input_size) if isinstance(input_size, int) else map(int, input_size)
    clone, _ = pointwise_before_upsample(export_copy(model), (h, w))  # exact, less work
    example = torch.rand(batch, 3, h, w)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python control flow on shapes
        ov_model = ov.convert_model(clone, example_input=example, input=[batch, 3, h, w])
    ov_model.inputs[0].get_tensor().set_names({"images"})
    ov_model.outputs[0].get_tensor().set_names({"logits"})
    return ov_model


def excluded_ov_nodes(ov_model: Any, policy: str = "head") -> list[str]:
    """Names of the nodes NNCF keeps in float for an exclusion `policy` (see the module doc)."""
    if policy not in OV_EXCLUDE_POLICIES:
        raise ValueError(f"unknown exclusion policy {policy!r}; use one of {OV_EXCLUDE_POLICIES}")
    if policy == "none":
        return []
    ops = list(ov_model.get_ordered_ops())  # topological order
    convs = [i for i, op in enumerate(ops) if op.get_type_name() in _MATMUL_OPS]
    if not convs:
        return []
    names = [op.get_friendly_name() for op in ops[convs[-1] :] if op.get_type_name() != "Result"]
    if policy == "head+stem":
        names.append(ops[convs[0]].get_friendly_name())
    if policy == "head+depthwise":  # grouped convolutions gain nothing from INT8 on AVX2
        names += [op.get_friendly_name() for op in ops if op.get_type_name() == "GroupConvolution"]
    return names


def quantize_openvino(
    ov_model: Any,
    inputs: Sequence[np.ndarray],
    exclude: str = "head",
    preset: str = "performance",
    transformer: bool = False,
    fast_bias_correction: bool = True,
) -> Any:  # openvino.Model
    """NNCF post-training INT8 quantisation of `ov_model`, calibrated on `inputs`.

    `inputs`: preprocessed network inputs, (1, 3, h, w) float32 each (all are used). `preset`
    "performance" (symmetric activations) or "mixed" (asymmetric activations, for inputs with
    negative values); `transformer` uses NNCF's transformer scheme (attention MatMuls and
    softmax handled as in its transformer models). The input model is not changed.
    """
    import nncf

    nncf.set_log_level(logging.WARNING)  # its INFO lines list every node it leaves out
    if preset not in OV_PRESETS:
        raise ValueError(f"unknown NNCF preset {preset!r}; use one of {OV_PRESETS}")
    items = [np.ascontiguousarray(x, dtype=np.float32) for x in inputs]
    if not items:
        raise ValueError("INT8 calibration needs at least one input, got none")
    ignored = excluded_ov_nodes(ov_model, exclude)
    kwargs: dict[str, Any] = {}
    if transformer:
        kwargs["model_type"] = nncf.ModelType.TRANSFORMER
    if ignored:
        kwargs["ignored_scope"] = nncf.IgnoredScope(names=ignored, validate=False)
    with contextlib.redirect_stdout(sys.stderr):  # NNCF's progress bars: stdout is for results
        return nncf.quantize(
            ov_model.clone(),
            nncf.Dataset(items),
            preset=nncf.QuantizationPreset(preset),
            subset_size=len(items),
            fast_bias_correction=fast_bias_correction,
            **kwargs,
        )


def save_openvino(ov_model: Any, path: str | Path, metadata: dict[str, Any] | None = None) -> Path:
    """Write `ov_model` as `path` (.xml) + .bin, float32 weights, project metadata in rt_info.

    Both files are written under temporary names in the same folder, then moved into place.
    """
    import openvino as ov

    path = Path(path)
    if path.suffix != ".xml":
        raise ValueError(f"an OpenVINO IR path ends in .xml, got {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if metadata is not None:
        ov_model.set_rt_info(json.dumps(metadata), [ONNX_METADATA_KEY])
    tmp = temp_path_for(path)  # .<name>.xml.<writer>.tmp.xml, its weights beside as .tmp.bin
    try:
        ov.save_model(ov_model, str(tmp), compress_to_fp16=False)
        os.replace(tmp.with_suffix(".bin"), path.with_suffix(".bin"))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
        tmp.with_suffix(".bin").unlink(missing_ok=True)
    return path


@dataclass
class OpenVinoReport:
    """What `export_openvino` wrote and how closely the IR reproduced PyTorch."""

    path: str
    precision: str  # "fp32" or "int8"
    input_size: tuple[int, int]
    argmax_agreement: float
    max_rel_diff: float
    check_inputs: str  # what the check ran on
    seconds: float

    def summary(self) -> str:
        h, w = self.input_size
        return (
            f"wrote {self.path} (OpenVINO IR, {self.precision}, input {h}x{w}) in "
            f"{self.seconds:.1f} s; openvino vs torch on {self.check_inputs}: argmax agreement "
            f"{100 * self.argmax_agreement:.4f}%, max rel diff {self.max_rel_diff:.2e}"
        )


def compare_with_torch(
    model: torch.nn.Module, backend: Any, inputs: np.ndarray
) -> tuple[float, float]:
    """(argmax agreement, max |diff| / max |torch logit|) of `backend` against eager PyTorch."""
    clone = export_copy(model)
    with torch.inference_mode():
        ref = clone(torch.from_numpy(np.ascontiguousarray(inputs))).float().numpy()
    got = np.concatenate([backend(inputs[i : i + 1]) for i in range(len(inputs))])
    agree = float((got.argmax(1) == ref.argmax(1)).mean())
    rel = float(np.abs(got - ref).max() / max(float(np.abs(ref).max()), 1e-12))
    return agree, rel


def export_openvino(
    model: torch.nn.Module,
    path: str | Path,
    input_size: Sequence[int] | int,
    metadata: dict[str, Any] | None = None,
    calibration: Sequence[np.ndarray] | None = None,
    exclude: str = "head",
    verify: bool = True,
) -> OpenVinoReport:
    """Write `model` as an OpenVINO IR at `path`; INT8 (NNCF) when `calibration` inputs are given.

    fp32 is checked on random inputs like the ONNX export (RuntimeError and no file when it
    fails); INT8 against fp32 PyTorch on the calibration inputs (refused below
    INT8_MIN_AGREEMENT argmax agreement, a sign of a broken quantisation, not of 8-bit noise).
    """
    t0 = time.perf_counter()
    size = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    size = (int(size[0]), int(size[1]))
    ov_model = to_openvino(model, size)
    meta = dict(metadata or {})
    meta.setdefault("input_size", list(size))
    meta["runtime"] = "openvino"
    int8 = calibration is not None
    if int8:
        ov_model = quantize_openvino(ov_model, calibration, exclude=exclude)
        meta.update(precision="int8", int8_exclude=exclude, calibration_images=len(calibration))
    else:
        meta["precision"] = "fp32"
    agree, rel, what = 1.0, 0.0, "nothing (verify off)"
    if verify:
        backend = OpenVinoBackend(ov_model)
        if int8:
            checks = np.concatenate([np.asarray(x, dtype=np.float32) for x in calibration[:8]])
            what = f"{len(checks)} calibration inputs"
        else:
            checks = np.random.default_rng(0).random((2, 3, *size), dtype=np.float32)
            what = "2 random inputs"
        agree, rel = compare_with_torch(model, backend, checks)
        if int8 and agree < INT8_MIN_AGREEMENT:
            raise RuntimeError(
                f"INT8 OpenVINO model agrees with PyTorch on only {100 * agree:.2f}% of pixels "
                f"(need >= {100 * INT8_MIN_AGREEMENT:.0f}%); not written to {path}"
            )
        if not int8 and (agree < FP32_AGREEMENT or rel > FP32_RTOL):
            raise RuntimeError(
                f"OpenVINO conversion does not reproduce PyTorch: argmax agreement "
                f"{100 * agree:.4f}% (need >= {100 * FP32_AGREEMENT:.2f}%), max rel diff "
                f"{rel:.2e} (need <= {FP32_RTOL:.0e}); not written to {path}"
            )
    save_openvino(ov_model, path, meta)
    return OpenVinoReport(
        str(path),
        "int8" if int8 else "fp32",
        size,
        agree,
        rel,
        what,
        time.perf_counter() - t0,
    )
