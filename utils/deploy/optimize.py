"""Inference optimisations for deployment: conv+BN folding, 1x1 conv before upsample, ONNX graph
optimisation, INT8 QDQ.

FastSegFormer (Cai et al., Computers and Electronics in Agriculture 217, 108604, 2024) is meant
for fruit-sorting lines, which often have only a CPU. Four optimisations, each checked for
accuracy by its caller (speeding.py, tests/test_deploy.py):

- `fold_batchnorm(model)`: a copy of an eval-mode model with every BatchNorm that directly
  follows a Conv2d folded into the convolution's weights and bias (W' = W * g / sqrt(v + eps),
  b' = (b - m) * g / sqrt(v + eps) + beta). The pairs are found by running the model once with
  hooks (a BN whose input tensor *is* a conv's output, both called once, the conv output read
  by nothing else), so module order in the source does not matter; the folded copy is then
  compared with the original and rejected when the logits differ beyond float32 rounding.
  timm's BatchNormAct2d keeps its activation (the BN part becomes the identity).
- `pointwise_before_upsample(model, size)`: a copy in which a 1x1 convolution that reads an
  upsampling's output runs before it (exact: both are linear, the upsampling's weights sum to
  1); FastSegFormer's last two ops, x2 bilinear up of 32 channels then 1x1 to the classes,
  become 1x1 at half size then up of the 4 class channels. Every export uses it.
- `optimize_onnx(src, dst)`: ONNX Runtime's graph optimiser (constant folding, node fusions such
  as Conv+Add+Relu, GELU, LayerNorm) applied once and saved, so a session starts faster. Saved
  files use the "extended" level: "all" adds layout transforms tied to the CPU it ran on (ORT's
  advice for offline optimisation); sessions can still enable "all" at load time.
- `quantize_int8(fp32, dst, reader)`: static INT8 quantisation in the QDQ format with
  onnxruntime.quantization: the model is first pre-processed (shape inference + optimisation,
  ORT's recommended step), activations are calibrated on real photos of the training split
  (`ImageCalibrationReader`, the shared letterbox/to_tensor preprocessing), weights are
  quantised per output channel. Activations are unsigned 8-bit, weights signed (U8S8, the
  fast path of x86 VNNI / AVX2 CPUs), with weights on 7 bits ([-64, 64], `reduce_range`):
  on x86 CPUs without VNNI (AVX2, AVX-512 without VNNI) ONNX Runtime multiplies U8S8 with
  VPMADDUBSW, which adds two u8 x s8 products into a saturating int16 (255 * 127 * 2 = 64770 >
  32767); 7-bit weights keep every pair within range (255 * 64 * 2 = 32640). ONNX Runtime's
  quantisation guide names reduce_range (or U8U8) as the remedy; VNNI CPUs do not need it, but a
  file quantised on one may run on the other, so it is on by default. By default only
  Conv/MatMul/Gemm are quantised: on these models quantising everything made PoolFormer's
  average pools (QLinearAveragePool) and EfficientFormerV2's GELU/resizes slower than in float
  (onnxruntime profiles in docs/benchmarks.md). `exclude` names node-exclusion policies for
  accuracy (default: the classifier head stays float). Export at opset >= 20 so GELU is one
  Gelu node that the quantiser leaves alone; at opset 18 it is five nodes that get split by
  Q/DQ pairs.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from utils.data.preprocess import LETTERBOX_FILL, letterbox, read_image, to_tensor
from utils.deploy.runtimes import ONNX_METADATA_KEY
from utils.fileio import atomic_path

FOLD_RTOL = 1e-4  # max |folded - original| / max |original logits| accepted
ORT_LEVELS = ("disable", "basic", "extended", "all")
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
EXCLUDE_POLICIES = ("none", "head", "head+stem")
# Op sets to quantise: "conv" = the matrix-product ops only (where INT8 kernels pay off), leaving
# GELU, resizes, pools and norms in float; "all" = everything onnxruntime can quantise.
INT8_OP_SETS = {"conv": ("Conv", "MatMul", "Gemm"), "all": None}
# QDQ: Q/DQ pairs around float ops, fused by ORT into integer kernels; QOperator: QLinearConv & co
INT8_FORMATS = ("qdq", "qoperator")


# ------------------------------------------------------- which module reads which output (hooks)
@dataclass
class _Trace:
    """One forward pass seen through hooks: each producer's output and the modules reading it."""

    names: dict[nn.Module, str]  # module -> a name it is registered under
    shared: set[nn.Module]  # modules registered under two names or more
    calls: dict[nn.Module, int]  # module -> times called (leaves, producers, `readers_of`)
    produced: dict[int, tuple[nn.Module, torch.Tensor]]  # id(output) -> (producer, output)
    readers: dict[int, list[nn.Module]]  # id(output) -> modules called on it


def _trace(
    model: nn.Module, example: torch.Tensor, producer: type, readers_of: tuple[type, ...] = ()
) -> _Trace:
    """Run `model` on `example` once and record which modules read the output of each
    `producer`-type module. Readers seen: leaf modules, and modules of `readers_of` types even
    where they have children (timm's BatchNormAct2d). A tensor read by a functional op is not
    seen: callers compare the rewritten model's output with the original's."""
    entries = list(model.named_modules(remove_duplicate=False))
    seen: dict[nn.Module, int] = {}
    for _, m in entries:
        seen[m] = seen.get(m, 0) + 1
    trace = _Trace({m: n for n, m in entries}, {m for m, k in seen.items() if k > 1}, {}, {}, {})
    handles = []

    def output_hook(module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        trace.produced[id(output)] = (module, output)  # keep `output` alive: its id stays unique

    def reader_hook(module: nn.Module, inputs: tuple) -> None:
        trace.calls[module] = trace.calls.get(module, 0) + 1
        for t in inputs:
            if isinstance(t, torch.Tensor) and id(t) in trace.produced:
                trace.readers.setdefault(id(t), []).append(module)

    for m in model.modules():
        if isinstance(m, producer):
            handles.append(m.register_forward_hook(output_hook))
        if not list(m.children()) or isinstance(m, (producer, *readers_of)):
            handles.append(m.register_forward_pre_hook(reader_hook))
    try:
        with torch.inference_mode():
            model(example)
    finally:
        for h in handles:
            h.remove()
    return trace


# ---------------------------------------------------------------------------- conv + BN folding
def _fold_pairs(model: nn.Module, example: torch.Tensor) -> list[tuple[str, str]]:
    """(conv name, BN name) pairs where the BN reads exactly the conv's output, found by hooks."""
    trace = _trace(model, example, nn.Conv2d, readers_of=(nn.BatchNorm2d,))
    names, shared, calls, readers = trace.names, trace.shared, trace.calls, trace.readers
    pairs = []
    for key, (conv, _) in trace.produced.items():
        found = readers.get(key, [])
        if len(found) != 1 or not isinstance(found[0], nn.BatchNorm2d):
            continue
        bn = found[0]
        if (
            calls.get(conv) != 1
            or calls.get(bn) != 1
            or conv in shared
            or bn in shared
            or bn.running_mean is None
            or bn.num_features != conv.out_channels
        ):
            continue
        pairs.append((names[conv], names[bn]))
    return pairs


def _set_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attr, new)


def _bn_replacement(bn: nn.BatchNorm2d) -> nn.Module:
    """What is left of a BN once folded: nothing, or timm BatchNormAct2d's drop + activation."""
    drop, act = getattr(bn, "drop", None), getattr(bn, "act", None)
    if isinstance(drop, nn.Module) and isinstance(act, nn.Module):
        return nn.Sequential(drop, act)
    return nn.Identity()


def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    scale = bn.weight.detach() if bn.affine else torch.ones_like(bn.running_var)
    shift = bn.bias.detach() if bn.affine else torch.zeros_like(bn.running_mean)
    factor = scale / torch.sqrt(bn.running_var + bn.eps)  # (C_out,)
    fused = copy.deepcopy(conv)
    fused.weight = nn.Parameter(conv.weight.detach() * factor.reshape(-1, 1, 1, 1))
    bias = conv.bias.detach() if conv.bias is not None else torch.zeros_like(bn.running_mean)
    fused.bias = nn.Parameter((bias - bn.running_mean) * factor + shift)
    return fused


def fold_batchnorm(
    model: nn.Module,
    input_size: Sequence[int] | int | None = None,
    rtol: float = FOLD_RTOL,
    check: bool = True,
) -> tuple[nn.Module, int]:
    """An eval-mode copy of `model` with Conv2d -> BatchNorm2d pairs folded; (copy, pairs folded).

    `input_size` (h, w) defaults to `model.default_input_size`. With `check`, the copy's logits
    on a random input must match the original's within `rtol` of their largest magnitude, else
    RuntimeError (a pair whose conv output is also used elsewhere would show up here).
    """
    size = input_size if input_size is not None else getattr(model, "default_input_size", None)
    if size is None:
        raise ValueError("fold_batchnorm needs input_size (the model has no default_input_size)")
    h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    original = model.eval()
    device = next(original.parameters()).device
    example = torch.rand(1, 3, h, w, device=device)
    _clear_attention_caches(original)
    base = copy.deepcopy(original).eval()
    pairs = _fold_pairs(base, example)
    with torch.inference_mode():
        ref = original(example)  # (1, K, h, w)

    def error(model: nn.Module) -> float:
        _clear_attention_caches(model)
        with torch.inference_mode():
            got = model(example)
        return float((ref - got).abs().max() / ref.abs().max().clamp_min(1e-12))

    folded = _apply_folds(base, pairs)
    if check and error(folded) > rtol:
        # A conv output also read by a functional op (e.g. a residual `bn(c) + c`) is invisible
        # to the hooks: keep only the pairs that leave the logits unchanged, one at a time.
        kept: list[tuple[str, str]] = []
        for pair in pairs:
            if error(_apply_folds(base, [*kept, pair])) <= rtol:
                kept.append(pair)
        pairs = kept
        folded = _apply_folds(base, pairs)
        err = error(folded)
        if err > rtol:
            raise RuntimeError(
                f"BN folding changed the logits by {err:.2e} of their range (allowed {rtol:.0e})"
            )
    _clear_attention_caches(folded)
    return folded, len(pairs)


def _apply_folds(model: nn.Module, pairs: Sequence[tuple[str, str]]) -> nn.Module:
    """A copy of `model` with the (conv name, BN name) pairs folded."""
    _clear_attention_caches(model)
    folded = copy.deepcopy(model).eval()
    with torch.no_grad():
        for conv_name, bn_name in pairs:
            conv = folded.get_submodule(conv_name)
            bn = folded.get_submodule(bn_name)
            _set_module(folded, conv_name, _fold(conv, bn))
            _set_module(folded, bn_name, _bn_replacement(bn))
    return folded


# ---------------------------------------------------------------------- 1x1 conv before upsample
UPSAMPLE_MODES = ("nearest", "bilinear", "bicubic")  # each output pixel: weights summing to 1


def _upsample_pairs(model: nn.Module, example: torch.Tensor) -> list[tuple[str, str]]:
    """(upsample name, conv name) pairs where a 1x1 conv (no more outputs than inputs) reads
    exactly an nn.Upsample's output, both called once, nothing else reading it; by hooks."""
    trace = _trace(model, example, nn.Upsample)
    names, shared, calls, readers = trace.names, trace.shared, trace.calls, trace.readers
    pairs = []
    for key, (up, _) in trace.produced.items():
        found = readers.get(key, [])
        conv = found[0] if len(found) == 1 else None
        if (
            isinstance(conv, nn.Conv2d)
            and conv.kernel_size == (1, 1)
            and conv.stride == (1, 1)
            and conv.padding in ((0, 0), "valid")
            and conv.groups == 1
            and conv.out_channels <= conv.in_channels
            and up.mode in UPSAMPLE_MODES
            and calls.get(up) == 1
            and calls.get(conv) == 1
            and up not in shared
            and conv not in shared
        ):
            pairs.append((names[up], names[conv]))
    return pairs


def pointwise_before_upsample(
    model: nn.Module, input_size: Sequence[int] | int, rtol: float = FOLD_RTOL
) -> tuple[nn.Module, int]:
    """An eval copy of `model` in which each 1x1 convolution that reads an nn.Upsample's output
    runs before the upsampling instead; (copy, pairs swapped).

    Exact in real arithmetic: a 1x1 convolution is the same affine map at every pixel, and
    nearest, bilinear and bicubic upsampling make each output pixel a combination of input
    pixels with weights summing to 1, so the two commute, bias included. The convolution then
    runs on a quarter of the pixels (x2) and, with fewer outputs than inputs, fewer channels are
    upsampled. FastSegFormer's image reconstruction branch ends that way (the original's
    `cnn_up`: x2 bilinear up of 32 channels to the input size, then a 1x1 convolution to the
    classes); the model keeps the paper's order, so that thop counts the paper's GFLOPs, and
    the exports (utils.deploy.onnx_export, openvino_export) take this copy. Pairs are found by
    hooks as for `fold_batchnorm`; the copy's logits on a random input must match within
    `rtol` of their range, and a pair that would change them (its upsampled tensor also read
    by a functional op) is left as it was.
    """
    h, w = (input_size, input_size) if isinstance(input_size, int) else map(int, input_size)
    original = model.eval()
    example = torch.rand(1, 3, h, w, device=next(original.parameters()).device)
    _clear_attention_caches(original)
    base = copy.deepcopy(original).eval()
    pairs = _upsample_pairs(base, example)
    if not pairs:
        return base, 0
    with torch.inference_mode():
        ref = original(example)  # (1, K, h, w)

    def error(candidate: nn.Module) -> float:
        _clear_attention_caches(candidate)
        try:
            with torch.inference_mode():
                got = candidate(example)
            return float((ref - got).abs().max() / ref.abs().max().clamp_min(1e-12))
        except RuntimeError:  # the upsampled tensor was also used at its size: not swappable
            return float("inf")

    kept: list[tuple[str, str]] = []
    for pair in pairs:
        if error(_apply_swaps(base, [*kept, pair])) <= rtol:
            kept.append(pair)
    swapped = _apply_swaps(base, kept)
    _clear_attention_caches(swapped)
    return swapped, len(kept)


def _apply_swaps(model: nn.Module, pairs: Sequence[tuple[str, str]]) -> nn.Module:
    """A copy of `model` with each (upsample, conv) pair run as conv then upsample."""
    _clear_attention_caches(model)
    out = copy.deepcopy(model).eval()
    for up_name, conv_name in pairs:
        up, conv = out.get_submodule(up_name), out.get_submodule(conv_name)
        _set_module(out, up_name, nn.Identity())
        _set_module(out, conv_name, nn.Sequential(conv, up))
    return out


def _clear_attention_caches(model: nn.Module) -> None:
    """timm's EfficientFormerV2 caches attention biases per device; stale after a copy/fold."""
    for m in model.modules():
        if isinstance(getattr(m, "attention_bias_cache", None), dict):
            m.attention_bias_cache = {}


# ---------------------------------------------------------------------------- ONNX Runtime
def session_options(level: str = "all", threads: int = 0, profile_prefix: str | None = None) -> Any:
    """onnxruntime.SessionOptions with the optimisation level and intra-op thread count."""
    import onnxruntime as ort

    if level not in ORT_LEVELS:
        raise ValueError(f"unknown ONNX Runtime optimisation level {level!r}; use {ORT_LEVELS}")
    opts = ort.SessionOptions()
    opts.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[level]
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if threads > 0:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    if profile_prefix:
        opts.enable_profiling = True
        opts.profile_file_prefix = profile_prefix
    return opts


def ort_session(
    path: str | Path,
    providers: Sequence[str] | None = None,
    level: str = "all",
    threads: int = 0,
    profile_prefix: str | None = None,
) -> Any:
    """An onnxruntime.InferenceSession (CPU provider unless `providers` says otherwise)."""
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX model not found: {path}")
    return ort.InferenceSession(
        str(path),
        sess_options=session_options(level, threads, profile_prefix),
        providers=list(providers or ["CPUExecutionProvider"]),
    )


def optimize_onnx(src: str | Path, dst: str | Path, level: str = "extended") -> Path:
    """Run ONNX Runtime's graph optimiser on `src` (CPU provider) and save the result at `dst`."""
    import onnxruntime as ort

    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise FileNotFoundError(f"ONNX model not found: {src}")
    opts = session_options(level)
    with atomic_path(dst) as tmp:
        opts.optimized_model_filepath = str(tmp)
        ort.InferenceSession(str(src), sess_options=opts, providers=["CPUExecutionProvider"])
        _copy_metadata(src, tmp)
    return dst


def _copy_metadata(src: Path, dst: Path) -> None:
    """Keep the project's metadata (names, preprocessing) that Predictor.from_onnx reads."""
    import onnx

    source = onnx.load(str(src), load_external_data=False)
    entries = {p.key: p.value for p in source.metadata_props}
    if ONNX_METADATA_KEY not in entries:
        return
    model = onnx.load(str(dst))
    del model.metadata_props[:]
    for key, value in entries.items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value
    onnx.save(model, str(dst))


def profile_top_ops(profile_json: str | Path, top: int = 8) -> list[tuple[str, float, float]]:
    """(op type, total ms per run, share) of an ONNX Runtime profile, most expensive first."""

    events = json.loads(Path(profile_json).read_text())
    per_op: dict[str, float] = {}
    runs = sum(1 for e in events if e.get("name") == "model_run")
    for e in events:
        if e.get("cat") == "Node" and str(e.get("name", "")).endswith("_kernel_time"):
            op = e.get("args", {}).get("op_name", "?")
            per_op[op] = per_op.get(op, 0.0) + e.get("dur", 0) / 1e3
    total = sum(per_op.values()) or 1.0
    runs = max(runs, 1)
    ranked = sorted(per_op.items(), key=lambda kv: -kv[1])[:top]
    return [(op, ms / runs, ms / total) for op, ms in ranked]


# ---------------------------------------------------------------------------- INT8 calibration
class ImageCalibrationReader:
    """onnxruntime CalibrationDataReader over photos, through the shared preprocessing.

    Each photo is letterboxed to `input_size` on grey `fill`, scaled to [0, 1] and normalised
    with `mean`/`std` when given -- what the Predictor feeds the network. Arrays may be given
    instead of paths (e.g. tiny test images).
    """

    def __init__(
        self,
        images: Iterable[str | Path | np.ndarray],
        input_size: Sequence[int] | int,
        input_name: str = "images",
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        fill: int = LETTERBOX_FILL,
    ) -> None:
        size = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
        self.input_size = (int(size[0]), int(size[1]))
        self.images = list(images)
        if not self.images:
            raise ValueError("ImageCalibrationReader needs at least one image")
        self.input_name, self.mean, self.std, self.fill = input_name, mean, std, fill
        self._next = 0

    def _load(self, item: str | Path | np.ndarray) -> np.ndarray:
        image = item if isinstance(item, np.ndarray) else read_image(item)  # (H, W, 3) uint8
        boxed, _ = letterbox(image, self.input_size, fill=self.fill)
        return to_tensor(boxed, self.mean, self.std)[None]  # (1, 3, h, w) float32

    def inputs(self) -> list[np.ndarray]:
        """Every image as a preprocessed (1, 3, h, w) float32 network input (NNCF's dataset)."""
        return [self._load(item) for item in self.images]

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._next >= len(self.images):
            return None
        item = self.images[self._next]
        self._next += 1
        return {self.input_name: self._load(item)}

    def rewind(self) -> None:
        self._next = 0

    def __len__(self) -> int:
        return len(self.images)


def _as_calibration_reader(reader: ImageCalibrationReader) -> Any:
    """Wrap in onnxruntime's CalibrationDataReader base class (its type check wants one)."""
    from onnxruntime.quantization import CalibrationDataReader

    class _Reader(CalibrationDataReader):
        def get_next(self) -> dict[str, np.ndarray] | None:
            return reader.get_next()

        def rewind(self) -> None:
            reader.rewind()

    return _Reader()


def excluded_nodes(path: str | Path, policy: str = "head") -> list[str]:
    """Node names to keep in float for an exclusion `policy`.

    "head": the last Conv (the 1x1 classifier, whose logits feed the argmax) and every node
    after it (the resize back to the input size); "head+stem": also the first Conv, which sees
    the raw [0, 1] pixels. "none": quantise everything quantisable.
    """
    import onnx

    if policy not in EXCLUDE_POLICIES:
        raise ValueError(f"unknown exclusion policy {policy!r}; use one of {EXCLUDE_POLICIES}")
    if policy == "none":
        return []
    graph = onnx.load(str(path), load_external_data=False).graph
    nodes = list(graph.node)  # topologically sorted, as ONNX requires
    convs = [i for i, n in enumerate(nodes) if n.op_type == "Conv"]
    if not convs:
        return []
    names = [n.name for n in nodes[convs[-1] :]]
    if policy == "head+stem":
        names.append(nodes[convs[0]].name)
    return [n for n in names if n]


def quantize_int8(
    src: str | Path,
    dst: str | Path,
    reader: ImageCalibrationReader,
    per_channel: bool = True,
    method: str = "minmax",
    exclude: str = "head",
    preprocess: bool = True,
    ops: str = "conv",
    reduce_range: bool = True,
    quant_format: str = "qdq",
) -> Path:
    """Static INT8 QDQ quantisation of the float32 ONNX model `src`, written to `dst`.

    Activations uint8 (asymmetric), weights int8 (symmetric, per output channel when
    `per_channel`); `method` picks the calibration ("minmax", "entropy", "percentile");
    `exclude` a policy of `excluded_nodes`; `ops` a key of INT8_OP_SETS; `reduce_range` 7-bit
    weights (no int16 saturation on x86 CPUs without VNNI, see the module docstring);
    `quant_format` "qdq" (default) or "qoperator". The project metadata is carried over.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if quant_format not in INT8_FORMATS:
        raise ValueError(f"unknown INT8 format {quant_format!r}; use one of {INT8_FORMATS}")
    if method not in CALIBRATION_METHODS:
        raise ValueError(f"unknown calibration method {method!r}; use {CALIBRATION_METHODS}")
    if ops not in INT8_OP_SETS:
        raise ValueError(f"unknown INT8 op set {ops!r}; use one of {tuple(INT8_OP_SETS)}")
    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise FileNotFoundError(f"ONNX model not found: {src}")
    dst.parent.mkdir(parents=True, exist_ok=True)
    model_in = src
    if preprocess:
        model_in = dst.with_name(dst.stem + "_prep.onnx")
        quant_pre_process(str(src), str(model_in), skip_symbolic_shape=False)
    try:
        with atomic_path(dst) as tmp:
            quantize_static(
                str(model_in),
                str(tmp),
                _as_calibration_reader(reader),
                quant_format=QuantFormat.QDQ if quant_format == "qdq" else QuantFormat.QOperator,
                per_channel=per_channel,
                reduce_range=reduce_range,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=excluded_nodes(model_in, exclude),
                op_types_to_quantize=list(INT8_OP_SETS[ops] or []) or None,
                calibrate_method={
                    "minmax": CalibrationMethod.MinMax,
                    "entropy": CalibrationMethod.Entropy,
                    "percentile": CalibrationMethod.Percentile,
                }[method],
            )
            _copy_metadata(src, tmp)
    finally:
        if preprocess:
            Path(model_in).unlink(missing_ok=True)
    return dst
