"""Export a segmentation model to ONNX and check it against PyTorch with ONNX Runtime.

FastSegFormer (Cai et al., Computers and Electronics in Agriculture 217, 108604, 2024) is meant
for fruit-sorting lines, often CPU boxes running ONNX Runtime. `export_onnx` writes one
self-contained .onnx file (input "images" (B, 3, h, w) float32, output "logits" (B, K, h, w)
float32) and only reports success after ONNX Runtime reproduced the PyTorch logits on random
inputs: argmax agreement >= 99.9% of pixels and max |diff| <= 1e-4 * max |logit| (fp32).

Exporters: torch 2.14's `torch.onnx.export` defaults to the dynamo (torch.export) exporter; the
older TorchScript tracer is deprecated but still there. Both export FastSegFormer-P and -E
(timm PoolFormer / EfficientFormerV2) with identical parity (max rel diff ~1e-5, 100% argmax);
the tracer takes ~2-8 s where dynamo takes ~15-30 s on a 2-core CPU. So "auto" tries the
TorchScript tracer first and falls back to dynamo when it fails or is gone from torch.

fp16: the model's weights are cast to half and the graph casts the float32 input to half and
the logits back to float32, so callers feed and read float32 either way; checked against the
fp32 PyTorch model with looser bounds (argmax >= 99%, logits within 2e-2 relative).

Opset: 18 by default, the lowest the dynamo exporter implements (asking it for less makes it
down-convert afterwards, which may fail); the TorchScript exporter accepts 11-20.

The file carries metadata (key "fastsegformer": JSON with model, input size, class names,
preprocessing) that `Predictor.from_onnx` reads.
"""

from __future__ import annotations

import copy
import json
import types
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from utils.deploy.backends import EXPORTERS
from utils.deploy.optimize import pointwise_before_upsample
from utils.deploy.runtimes import ONNX_METADATA_KEY, OnnxBackend
from utils.fileio import atomic_path

FP32_RTOL = 1e-4  # max |ort - torch| / max |torch logits|
FP32_AGREEMENT = 0.999
FP16_RTOL = 2e-2
FP16_AGREEMENT = 0.99


@dataclass
class ParityReport:
    """How closely ONNX Runtime reproduced PyTorch on the check inputs."""

    max_abs_diff: float
    max_rel_diff: float  # max |ort - torch| / max |torch|
    argmax_agreement: float  # fraction of pixels with the same class
    passed: bool
    rtol: float
    min_agreement: float


@dataclass
class ExportReport:
    path: str
    exporter: str
    opset: int
    dynamic_batch: bool
    half: bool
    input_size: tuple[int, int]
    parity: ParityReport | None

    def summary(self) -> str:
        text = (
            f"wrote {self.path} ({self.exporter} exporter, opset {self.opset}, "
            f"{'fp16' if self.half else 'fp32'}, "
            f"{'dynamic' if self.dynamic_batch else 'fixed'} batch, "
            f"input {self.input_size[0]}x{self.input_size[1]})"
        )
        if self.parity is not None:
            p = self.parity
            text += (
                f"; onnxruntime vs torch: argmax agreement {100 * p.argmax_agreement:.4f}%, "
                f"max rel diff {p.max_rel_diff:.2e}"
            )
        return text


class _ExportWrapper(torch.nn.Module):
    """Names the graph input "images"; runs the model in half precision when asked."""

    def __init__(self, model: torch.nn.Module, half: bool) -> None:
        super().__init__()
        self.model = model.half() if half else model
        self.half = half

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.half() if self.half else images
        return self.model(x).float()  # (B, K, h, w) float32


def _frozen_attention_biases(self: torch.nn.Module, device: torch.device) -> torch.Tensor:
    return self.attention_bias_table  # (heads, N, N), gathered once by freeze_attention_biases


def freeze_attention_biases(model: torch.nn.Module) -> int:
    """Gather EfficientFormerV2's attention biases once, so exports hold them as constants.

    timm's attention computes ``attention_biases[:, attention_bias_idxs]`` (a (heads, N, N)
    table from (heads, N) learnt biases) in every forward; traced, that is a run-time Gather on
    a parameter, which the exported graph keeps and NNCF cannot quantise around. The original's
    export held the table as a constant. Each such module gets the table as a buffer and returns
    it; the logits do not change. Returns the number of modules frozen (0 for other models).
    """
    frozen = 0
    for m in model.modules():
        if not all(
            hasattr(m, a)
            for a in ("attention_biases", "attention_bias_idxs", "get_attention_biases")
        ):
            continue
        with torch.no_grad():
            table = m.attention_biases[:, m.attention_bias_idxs].detach().clone()
        m.register_buffer("attention_bias_table", table, persistent=False)
        m.get_attention_biases = types.MethodType(_frozen_attention_biases, m)
        frozen += 1
    return frozen


def export_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A CPU float32 eval copy in the contiguous layout, attention biases frozen.

    timm's EfficientFormerV2 caches attention biases computed in an earlier forward (non-leaf
    tensors deepcopy refuses), so those caches are emptied first; a model a CPU runtime made
    channels-last goes back to the contiguous layout the exporters expect.
    """
    for m in model.modules():
        if isinstance(getattr(m, "attention_bias_cache", None), dict):
            m.attention_bias_cache = {}
    clone = copy.deepcopy(model).float().cpu().eval()
    clone = clone.to(memory_format=torch.contiguous_format)
    freeze_attention_biases(clone)
    return clone


def _export(
    model: torch.nn.Module,
    example: torch.Tensor,
    path: Path,
    exporter: str,
    opset: int,
    dynamic_batch: bool,
) -> None:
    names = {"input_names": ["images"], "output_names": ["logits"]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecation notes of the exporters
        if exporter == "dynamo":
            batch_dim = torch.export.Dim("batch", min=1, max=1024)
            shapes = {"images": {0: batch_dim}} if dynamic_batch else None
            torch.onnx.export(
                model,
                (example,),
                str(path),
                dynamo=True,
                opset_version=opset,
                dynamic_shapes=shapes,
                external_data=False,
                verbose=False,
                **names,
            )
        else:
            axes = {"images": {0: "batch"}, "logits": {0: "batch"}} if dynamic_batch else None
            torch.onnx.export(
                model,
                (example,),
                str(path),
                dynamo=False,
                opset_version=opset,
                dynamic_axes=axes,
                do_constant_folding=True,
                **names,
            )


def _set_metadata(path: Path, metadata: dict[str, Any]) -> None:
    import onnx

    model = onnx.load(str(path))
    del model.metadata_props[:]
    entry = model.metadata_props.add()
    entry.key, entry.value = ONNX_METADATA_KEY, json.dumps(metadata)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def check_parity(
    model: torch.nn.Module,
    onnx_path: str | Path,
    input_size: tuple[int, int],
    batch: int = 2,
    seed: int = 0,
    rtol: float = FP32_RTOL,
    min_agreement: float = FP32_AGREEMENT,
    inputs: np.ndarray | None = None,
) -> ParityReport:
    """Run PyTorch (fp32, CPU) and ONNX Runtime (CPU) on the same inputs and compare.

    Inputs default to uniform noise in [0, 1] (what /255 photos look like to the network).
    A fixed-batch file is run one image at a time.
    """
    if inputs is None:
        rng = np.random.default_rng(seed)
        inputs = rng.random((batch, 3, *input_size), dtype=np.float32)
    ort_backend = OnnxBackend(onnx_path, providers=["CPUExecutionProvider"])
    got = ort_backend(inputs)  # (B, K, h, w)
    model = model.eval()
    device = next(model.parameters()).device
    with torch.inference_mode():
        ref = model(torch.from_numpy(inputs).to(device)).float().cpu().numpy()
    if got.shape != ref.shape:
        raise RuntimeError(f"ONNX output shape {got.shape} differs from PyTorch's {ref.shape}")
    diff = float(np.abs(got - ref).max())
    scale = float(np.abs(ref).max()) or 1.0
    agree = float((got.argmax(1) == ref.argmax(1)).mean())
    rel = diff / scale
    return ParityReport(
        diff, rel, agree, rel <= rtol and agree >= min_agreement, rtol, min_agreement
    )


def export_onnx(
    model: torch.nn.Module,
    path: str | Path,
    input_size: tuple[int, int] | int,
    opset: int = 18,
    dynamic_batch: bool = False,
    half: bool = False,
    exporter: str = "auto",
    metadata: dict[str, Any] | None = None,
    verify: bool = True,
) -> ExportReport:
    """Write `model` as ONNX at `path`; with `verify`, raise RuntimeError unless it matches.

    The model is exported in fp32 on the CPU from a copy (the caller's model is not moved).
    The file is written under a temporary name beside `path` and moved over it once checked:
    a failed export or check leaves no unverified file, and an earlier `path` as it was.
    """
    if exporter not in EXPORTERS:
        raise ValueError(f"unknown exporter {exporter!r}; expected one of {EXPORTERS}")
    if isinstance(input_size, int):
        input_size = (input_size, input_size)
    input_size = (int(input_size[0]), int(input_size[1]))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model, _ = pointwise_before_upsample(export_copy(model), input_size)  # exact, less work
    batch = 2 if dynamic_batch else 1
    example = torch.rand(batch, 3, *input_size)
    with torch.inference_mode():
        num_classes = int(model(example[:1]).shape[1])
    wrapper = _ExportWrapper(export_copy(model), half)

    # written under a temporary name, checked, then moved over `path`: a failed export or
    # check (or a kill) leaves an earlier file at `path` as it was
    with atomic_path(path) as tmp:
        tried: list[str] = []
        order = ["torchscript", "dynamo"] if exporter == "auto" else [exporter]
        used = None
        for name in order:
            try:
                _export(wrapper, example, tmp, name, opset, dynamic_batch)
                used = name
                break
            except Exception as e:  # exporter failures come in many types
                tried.append(f"{name}: {type(e).__name__}: {str(e).splitlines()[0][:300]}")
        if used is None:
            raise RuntimeError(f"ONNX export to {path} failed:\n  " + "\n  ".join(tried))
        meta = dict(metadata or {})
        meta.setdefault("input_size", list(input_size))
        meta.setdefault("num_classes", num_classes)
        meta.update(
            {"exporter": used, "opset": opset, "half": half, "dynamic_batch": dynamic_batch}
        )
        _set_metadata(tmp, meta)

        parity = None
        if verify:
            rtol, agree = (FP16_RTOL, FP16_AGREEMENT) if half else (FP32_RTOL, FP32_AGREEMENT)
            parity = check_parity(model, tmp, input_size, batch=2, rtol=rtol, min_agreement=agree)
            if not parity.passed:
                raise RuntimeError(
                    f"ONNX export of {path} does not reproduce PyTorch: argmax agreement "
                    f"{100 * parity.argmax_agreement:.4f}% (need >= {100 * agree:.2f}%), max "
                    f"rel diff {parity.max_rel_diff:.2e} (need <= {rtol:.0e}); not written"
                )
    return ExportReport(str(path), used, opset, dynamic_batch, half, input_size, parity)


def report_dict(report: ExportReport) -> dict[str, Any]:
    """JSON-safe dict of an ExportReport."""
    return asdict(report)
