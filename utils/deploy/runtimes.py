"""Inference runtimes: one callable per engine, (B, 3, h, w) float32 in, (B, K, h, w) float32 out.

FastSegFormer (Cai et al., Computers and Electronics in Agriculture 217, 108604, 2024) is a
real-time model for fruit-sorting lines; which engine runs it is deployment policy, kept here
and out of the model:

- `TorchBackend` (utils.deploy.torch_runtime, the one runtime that needs torch): an nn.Module
  in eager PyTorch.
- `OnnxBackend`: an exported .onnx file in ONNX Runtime (CUDA provider when present, else CPU).
- `OpenVinoBackend`: an OpenVINO model (IR file or in memory, float32 or NNCF INT8) on the CPU
  plugin, the CPU's own runtime: latency hint (one stream), `threads` inference threads, and
  the inference precision asked for (`precision`: "f32" by default, pinned because on CPUs
  with AVX-512 BF16 or AMX the plugin would otherwise run float models in bf16; "bf16" runs
  the float model, or the unquantised remainder of an INT8 one, in bfloat16).

The project's ONNX files and OpenVINO IRs carry one metadata entry (`ONNX_METADATA_KEY`, JSON:
model, input size, class names, preprocessing) written by utils.deploy.onnx_export and
utils.deploy.openvino_export; `OnnxBackend.metadata` / `OpenVinoBackend.metadata` read it.

No torch here: a sorting-line box runs exported files with ONNX Runtime or OpenVINO alone
(requirements-deploy.txt); both are imported when a runtime is built.
"""

from __future__ import annotations

import importlib.metadata
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

ONNX_METADATA_KEY = "fastsegformer"  # ONNX metadata_props entry written by utils.deploy.onnx_export


def read_onnx_metadata(path: str | Path) -> dict[str, Any]:
    """The project metadata of an ONNX file ({} when it has none), without loading the weights."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX model not found: {path}")
    model = onnx.load(str(path), load_external_data=False)
    for prop in model.metadata_props:
        if prop.key == ONNX_METADATA_KEY:
            return json.loads(prop.value)
    return {}


def runtime_versions() -> dict[str, str | None]:
    """Versions of the inference libraries installed (None where one is missing)."""
    versions: dict[str, str | None] = {}
    for name in ("torch", "onnxruntime", "onnx", "openvino", "nncf"):
        for dist in (name, f"{name}-gpu"):  # the installed distribution, not imported
            try:
                versions[name] = importlib.metadata.version(dist)
                break
            except importlib.metadata.PackageNotFoundError:
                versions[name] = None
    return versions


class OnnxBackend:
    """Runs an exported model with ONNX Runtime (CUDA provider when present, else CPU);
    `threads` > 0 sets its intra-op threads unless `sess_options` are given."""

    name = "onnxruntime"
    label = "onnxruntime"

    def __init__(
        self,
        path: str | Path,
        providers: Sequence[str] | None = None,
        sess_options: Any = None,
        threads: int = 0,
    ) -> None:
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"ONNX model not found: {path}")
        if providers is None:
            available = ort.get_available_providers()
            providers = [
                p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available
            ]
        if sess_options is None and threads > 0:
            sess_options = ort.SessionOptions()
            sess_options.intra_op_num_threads = int(threads)
        try:
            self.session = ort.InferenceSession(
                str(path), sess_options=sess_options, providers=list(providers)
            )
        except Exception as e:
            raise ValueError(f"cannot load ONNX model {path}: {e}") from e
        self.path = path
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.input_shape = list(inp.shape)  # e.g. [1, 3, 224, 224] or ["batch", 3, 224, 224]
        self.input_dtype = np.float16 if inp.type == "tensor(float16)" else np.float32
        meta = self.session.get_modelmeta().custom_metadata_map.get(ONNX_METADATA_KEY)
        self.metadata: dict = json.loads(meta) if meta else {}

    @property
    def static_batch(self) -> int | None:
        b = self.input_shape[0]
        return b if isinstance(b, int) else None

    @property
    def input_size(self) -> tuple[int, int] | None:
        h, w = self.input_shape[2], self.input_shape[3]
        return (h, w) if isinstance(h, int) and isinstance(w, int) else None

    @property
    def num_classes(self) -> int | None:
        k = self.session.get_outputs()[0].shape[1]
        return k if isinstance(k, int) else self.metadata.get("num_classes")

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        if self.input_size is not None and tuple(batch.shape[2:]) != self.input_size:
            raise ValueError(
                f"ONNX model {self.path} takes {self.input_size[0]}x{self.input_size[1]} input, "
                f"got {batch.shape[2]}x{batch.shape[3]}"
            )
        x = batch.astype(self.input_dtype, copy=False)
        if self.static_batch is not None and x.shape[0] != self.static_batch:
            # A fixed-batch export: run the images one static batch at a time.
            n = self.static_batch
            if x.shape[0] % n:
                raise ValueError(f"ONNX model {self.path} has fixed batch {n}, got {x.shape[0]}")
            outs = [
                self.session.run(None, {self.input_name: x[i : i + n]})[0]
                for i in range(0, x.shape[0], n)
            ]
            return np.concatenate(outs).astype(np.float32, copy=False)
        return self.session.run(None, {self.input_name: x})[0].astype(np.float32, copy=False)

    def describe(self) -> str:
        where = f"onnxruntime {self.session.get_providers()[0]} ({self.path.name})"
        return where if self.label == "onnxruntime" else f"{self.label}: {where}"


class OpenVinoBackend:
    """Runs an OpenVINO model (an .xml IR path or an openvino.Model) on the CPU plugin.

    A model of fixed batch is reshaped and compiled again, once per other batch size asked for.
    `label` names the backend in `describe()` (e.g. "ov-int8").
    """

    name = "openvino"
    PRECISIONS = ("f32", "bf16")  # OpenVINO's INFERENCE_PRECISION_HINT values offered here

    def __init__(
        self,
        model: Any,
        threads: int = 0,
        device: str = "CPU",
        label: str | None = None,
        perf_count: bool = False,
        precision: str = "f32",
    ) -> None:
        import openvino as ov

        if precision not in self.PRECISIONS:
            raise ValueError(
                f"OpenVINO inference precision {precision!r}: use one of {self.PRECISIONS}"
            )
        self.precision = precision  # float ops (all of a float IR, INT8's remainder) run in it

        self.core = ov.Core()
        self.path: Path | None = None
        if isinstance(model, (str, Path)):
            self.path = Path(model)
            if self.path.suffix != ".xml":
                raise ValueError(f"OpenVINO IR must be an .xml file (with its .bin), got {model}")
            if not self.path.is_file() or not self.path.with_suffix(".bin").is_file():
                raise FileNotFoundError(
                    f"OpenVINO IR not found: {self.path} and {self.path.with_suffix('.bin')} "
                    f"(write one with `predict.py --mode export_openvino`)"
                )
            try:
                model = self.core.read_model(str(self.path))
            except Exception as e:
                raise ValueError(f"cannot read OpenVINO IR {self.path}: {e}") from e
        self.model = model
        self.ov_device = device  # OpenVINO's device name ("CPU"), not a torch.device
        self.threads = int(threads)
        self.perf_count = perf_count  # per-node timings in each request's profiling_info
        self.metadata: dict = {}
        if model.has_rt_info([ONNX_METADATA_KEY]):
            self.metadata = json.loads(model.get_rt_info([ONNX_METADATA_KEY]).astype(str))
        self.int8 = any(op.get_type_name() == "FakeQuantize" for op in model.get_ordered_ops())
        default_label = {
            (False, "f32"): "ov-fp32",
            (False, "bf16"): "ov-bf16",
            (True, "f32"): "ov-int8",
            (True, "bf16"): "ov-int8-bf16",
        }
        self.label = label or default_label[(self.int8, precision)]
        shape = model.inputs[0].get_partial_shape()
        dims = [d.get_length() if d.is_static else None for d in shape]
        self.input_shape = dims  # [B, 3, h, w], None where dynamic
        self.compiled: dict[int, Any] = {}  # batch -> infer request
        self._request(dims[0] or 1)  # compile now: load errors surface here, not mid-run

    @property
    def input_size(self) -> tuple[int, int] | None:
        h, w = self.input_shape[2], self.input_shape[3]
        return (h, w) if h is not None and w is not None else None

    @property
    def num_classes(self) -> int | None:
        k = self.model.outputs[0].get_partial_shape()[1]
        return k.get_length() if k.is_static else self.metadata.get("num_classes")

    def _config(self) -> dict[str, Any]:
        config: dict[str, Any] = {
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": self.precision,
        }
        if self.threads > 0:
            config["INFERENCE_NUM_THREADS"] = self.threads
        if self.perf_count:
            config["PERF_COUNT"] = True
        return config

    def _request(self, batch: int) -> Any:
        """An infer request for `batch` images, or None when the graph cannot take that batch
        (a traced graph may hold the batch in its Reshape constants): then one image a time."""
        if batch not in self.compiled:
            model = self.model
            if self.input_shape[0] is not None and self.input_shape[0] != batch:
                model = model.clone()
                try:
                    model.reshape({0: [batch, *self.input_shape[1:]]})
                except RuntimeError:
                    self.compiled[batch] = None
                    return None
            compiled = self.core.compile_model(model, self.ov_device, self._config())
            self.compiled[batch] = compiled.create_infer_request()
        return self.compiled[batch]

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        size = self.input_size
        if size is not None and tuple(batch.shape[2:]) != size:
            where = self.path or "the OpenVINO model"
            raise ValueError(
                f"{where} takes {size[0]}x{size[1]} input, got {batch.shape[2]}x{batch.shape[3]}"
            )
        x = np.ascontiguousarray(batch, dtype=np.float32)
        request = self._request(int(x.shape[0]))
        if request is None:  # fixed-batch graph: run its own batch size at a time
            n = self.input_shape[0]
            if x.shape[0] % n:
                raise ValueError(f"this OpenVINO model takes batches of {n}, got {x.shape[0]}")
            return np.concatenate([self(x[i : i + n]) for i in range(0, x.shape[0], n)])
        out = request.infer({0: x})[0]  # (B, K, h, w), a view of the request's buffer
        return np.array(out, dtype=np.float32, copy=True)

    def describe(self) -> str:
        threads = f", {self.threads} threads" if self.threads > 0 else ""
        where = f" ({self.path.name})" if self.path is not None else ""
        return f"{self.label}: openvino {self.ov_device}{threads}{where}"
