"""How a training step runs fast: precision, memory format and compilation, resolved per device.

FastSegFormer (Cai et al., Computers and Electronics in Agriculture 217, 108604, 2024) trains
for 1000 epochs, and every ablation repeats that, so the cost of one training step (forward,
loss, backward, optimizer) sets what a user can try. This module decides, once per run, how
the loop's step runs, and holds the step itself so that the loop and the training benchmark
(tools/train_speed.py) time the same code:

- **precision** (``--amp``, ``--amp-dtype``): the device's native low precision under
  autocast. CUDA: float16 with a GradScaler (bfloat16 on request, no scaler). A CPU that
  computes bfloat16 natively (AVX512-BF16 or AMX, ``cpu_has_native_bf16``): bfloat16 autocast.
  Any other CPU: float32, with a note saying why (its bfloat16 kernels are emulated and slower
  than float32; ``--amp-dtype bf16`` forces them anyway). Losses compute in float32 whatever
  the autocast dtype (utils/training/losses.py casts logits up).
- **memory format** (``--memory-format``): channels-last (NHWC) tensors let oneDNN (CPU) and
  cuDNN (GPU) skip layout reorders around every convolution. Whether that pays depends on the
  model family; ``auto`` reads ``CPU_CHANNELS_LAST``: measured with tools/train_speed.py
  for the models of ``CPU_CHANNELS_LAST_MEASURED`` (docs/training.md, "Training speed"),
  taken from a measured model of the same family for those of ``CPU_CHANNELS_LAST_FOLLOWS``;
  on CUDA it uses channels-last with autocast (tensor-core convolutions), NCHW in float32.
- **compile** (``--compile``): ``torch.compile`` of the task; off by default (measured on the
  CPU: compiling costs more than it saves in a short run; not measured on a GPU here).

``resolve_speed(cfg-like values, model names, device) -> SpeedPlan`` is the whole decision;
the plan's ``notes`` say what was chosen when it differs from what was asked, and the trainer
writes what ran back into the saved config. ``TrainStep`` runs one optimisation step with a
plan, and refuses a step whose gradients hold NaN or inf. Part of ``utils.training``: imports
torch, ``nets.checkpoint`` (the finite check) and ``conv_padding``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import nn

from nets.checkpoint import non_finite_tensors
from utils.training.conv_padding import explicit_conv_padding

PRECISIONS = ("fp32", "bf16", "fp16")  # what a step can run in
AMP_DTYPES = ("auto", "bf16", "fp16")  # --amp-dtype choices
MEMORY_FORMATS = ("auto", "channels_last", "nchw")  # --memory-format choices
TORCH_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
TORCH_FORMATS = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}

# Whether a training step of each registry model is faster in channels-last than in NCHW on a
# CPU, float32. Measured with tools/train_speed.py (fp32, nchw against channels_last; the table,
# commands and machine are in docs/training.md, "Training speed"):
CPU_CHANNELS_LAST_MEASURED: dict[str, bool] = {
    "fastsegformer_p": True,
    "fastsegformer_e": True,
    "swin_t_att_unet": True,
    "fast_scnn": True,
    "bisenet_r18": True,
    "pidnet_s": True,
    "fanet18": True,
}
# Not measured: each takes the answer of the measured model of its family named here.
CPU_CHANNELS_LAST_FOLLOWS: dict[str, str] = {
    "fanet34": "fanet18",  # the same network on a deeper ResNet
    "pidnet_m": "pidnet_s",  # wider and deeper PIDNets
    "pidnet_l": "pidnet_s",
    "swiftnet_rn18": "bisenet_r18",  # a ResNet-18 encoder with a light decoder, as BiSeNet's
    "bisenetv2": "bisenet_r18",
    "enet": "fast_scnn",  # another light encoder-decoder of plain and depthwise convolutions
}
# The table `--memory-format auto` reads; a model not in it trains in NCHW.
CPU_CHANNELS_LAST: dict[str, bool] = {
    **CPU_CHANNELS_LAST_MEASURED,
    **{name: CPU_CHANNELS_LAST_MEASURED[like] for name, like in CPU_CHANNELS_LAST_FOLLOWS.items()},
}

# CPU flags that matter to training speed, as /proc/cpuinfo spells them
SPEED_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16", "amx_tile")


@lru_cache(maxsize=1)
def cpu_flags() -> tuple[str, ...]:
    """The CPU's feature flags (Linux /proc/cpuinfo); empty where they cannot be read."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return tuple(sorted(set(line.split(":", 1)[1].split())))
    except OSError:
        pass
    return ()


def speed_flags() -> list[str]:
    """The flags of ``SPEED_FLAGS`` this CPU has (what to write beside a speed figure)."""
    have = set(cpu_flags())
    return [f for f in SPEED_FLAGS if f in have]


@lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 in hardware (AVX512-BF16 or AMX), as oneDNN sees it.

    Asks oneDNN (``torch.ops.mkldnn._is_mkldnn_bf16_supported``, a private PyTorch function);
    where that is missing, reads the CPU flags. ``FASTSEGFORMER_NATIVE_BF16=0/1`` overrides
    both (tests use it to take either path on any CPU).
    """
    forced = os.environ.get("FASTSEGFORMER_NATIVE_BF16")
    if forced in ("0", "1"):
        return forced == "1"
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return bool({"avx512_bf16", "amx_bf16"} & set(cpu_flags()))


@dataclass(frozen=True)
class SpeedPlan:
    """How the steps of a run execute: precision, memory format per model, compilation."""

    precision: str = "fp32"  # fp32, bf16 or fp16 (autocast dtype; fp32: no autocast)
    memory_format: str = "auto"  # --memory-format: auto, channels_last or nchw
    compile: bool = False  # torch.compile of the task
    device_type: str = "cpu"
    notes: tuple[str, ...] = ()  # what was decided and why (printed once)

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        """The autocast dtype, or None for float32 (autocast off)."""
        return None if self.precision == "fp32" else TORCH_DTYPES[self.precision]

    @property
    def uses_scaler(self) -> bool:
        """float16 gradients need loss scaling (a GradScaler); bfloat16 and float32 do not."""
        return self.precision == "fp16"

    def memory_format_of(self, model: nn.Module, choice: str | None = None) -> str:
        """nchw or channels_last for `model` under `choice` (default: the run's choice)."""
        return resolve_memory_format(
            choice or self.memory_format, model_name(model), self.device_type, self.precision
        )

    def autocast(self) -> contextlib.AbstractContextManager:
        """The autocast context of this plan (a no-op context in float32)."""
        dtype = self.autocast_dtype
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=dtype)


def model_name(model: nn.Module) -> str:
    """The registry name a model was built under (``build_config``), else its class name."""
    return str(getattr(model, "build_config", {}).get("name") or type(model).__name__)


def resolve_precision(amp: bool, amp_dtype: str, device: torch.device) -> tuple[str, list[str]]:
    """(precision that runs, notes) for ``--amp`` / ``--amp-dtype`` on `device`.

    Raises ValueError for a precision the device cannot train in (fp16 on the CPU, bf16 on a
    GPU without bfloat16).
    """
    if amp_dtype not in AMP_DTYPES:
        raise ValueError(f"--amp-dtype={amp_dtype!r}: expected one of {', '.join(AMP_DTYPES)}")
    if not amp:
        return "fp32", []
    if device.type == "cuda":
        if amp_dtype == "bf16" and not torch.cuda.is_bf16_supported():
            raise ValueError("--amp-dtype=bf16: this GPU has no bfloat16; use fp16 or auto")
        return ("bf16" if amp_dtype == "bf16" else "fp16"), []
    if device.type != "cpu":
        return "fp32", [f"--amp: no mixed precision on {device.type}; training in float32"]
    if amp_dtype == "fp16":
        raise ValueError(
            "--amp-dtype=fp16: float16 training needs CUDA; on the CPU use bf16 or auto"
        )
    native = cpu_has_native_bf16()
    if amp_dtype == "bf16":
        if native:
            return "bf16", []
        return "bf16", [
            "--amp-dtype bf16: this CPU has no native bfloat16 (AVX512-BF16/AMX); bfloat16 "
            "runs emulated, slower than float32"
        ]
    if native:
        return "bf16", ["--amp: bfloat16 autocast (the CPU computes bfloat16 natively)"]
    return "fp32", [
        "--amp: this CPU has no native bfloat16 (AVX512-BF16/AMX), where bfloat16 is slower than "
        "float32: training in float32 (--amp-dtype bf16 forces bfloat16)"
    ]


def resolve_memory_format(choice: str, name: str, device_type: str, precision: str) -> str:
    """nchw or channels_last for registry model `name` under ``--memory-format choice``."""
    if choice not in MEMORY_FORMATS:
        raise ValueError(f"--memory-format={choice!r}: expected one of {', '.join(MEMORY_FORMATS)}")
    if choice != "auto":
        return choice
    if device_type == "cuda":
        # tensor-core convolutions want NHWC; in float32 cuDNN gains little from it
        return "channels_last" if precision != "fp32" else "nchw"
    return "channels_last" if CPU_CHANNELS_LAST.get(name, False) else "nchw"


def resolve_speed(
    amp: bool, amp_dtype: str, memory_format: str, compile: bool, device: torch.device | str
) -> SpeedPlan:
    """The plan of a run for ``--amp``, ``--amp-dtype``, ``--memory-format``, ``--compile``.

    ValueError for a choice that is not one, or a precision the device cannot train in.
    """
    device = torch.device(device)
    precision, notes = resolve_precision(amp, amp_dtype, device)
    if memory_format not in MEMORY_FORMATS:
        raise ValueError(
            f"--memory-format={memory_format!r}: expected one of {', '.join(MEMORY_FORMATS)}"
        )
    return SpeedPlan(precision, memory_format, bool(compile), device.type, tuple(notes))


def to_memory_format(module: nn.Module, fmt: str) -> nn.Module:
    """Convert `module`'s 4-D parameters and buffers to `fmt` (nchw or channels_last)."""
    return module.to(memory_format=TORCH_FORMATS[fmt])


def as_memory_format(x: torch.Tensor, fmt: str) -> torch.Tensor:
    """`x` (B, C, H, W) laid out as `fmt` (a no-op when it already is)."""
    return x.contiguous(memory_format=TORCH_FORMATS[fmt])


def compile_module(module: nn.Module) -> nn.Module:
    """``torch.compile`` of a module (static shapes: the loader drops incomplete batches)."""
    return torch.compile(module, dynamic=False)


def match_optimizer_layout(optimizer: torch.optim.Optimizer) -> None:
    """Lay out per-parameter optimizer state (Adam's moments) like its parameter.

    ``Optimizer.load_state_dict`` keeps the strides of the saved tensors; a run resumed in
    another memory format would otherwise mix layouts in every update.
    """
    for param, state in optimizer.state.items():
        for key, value in state.items():
            if torch.is_tensor(value) and value.shape == param.shape and value.dim() == 4:
                fmt = (
                    torch.channels_last
                    if param.is_contiguous(memory_format=torch.channels_last)
                    and not param.is_contiguous()
                    else torch.contiguous_format
                )
                state[key] = value.contiguous(memory_format=fmt)


class TrainStep:
    """One optimisation step under a `SpeedPlan`: forward under autocast, backward (scaled for
    float16), the gradients' finite check, optional gradient clipping, optimizer step.

    ``forward(engine, images, labels) -> terms`` and ``update(loss)`` are separate so the loop
    can check the loss is finite (and agree on it across processes) in between. `engine` is
    the task (or its DDP / compiled wrapper); the task lays its inputs out in its models'
    memory formats (``set_memory_format``). `names` name `params` in what ``update`` returns.

    The gradient check is one fused pass over the gradients (``nets.checkpoint.
    non_finite_tensors``). Under DDP every process holds the same averaged gradients, so every
    process comes to the same answer. float16 steps leave it to their GradScaler, which skips
    a step with NaN or inf gradients and lowers its scale, as mixed precision expects.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        params: list[nn.Parameter],
        plan: SpeedPlan,
        grad_clip: float = 0.0,
        names: list[str] | None = None,
    ) -> None:
        self.optimizer = optimizer
        self.params = params
        self.names = names if names is not None else [f"parameter {i}" for i in range(len(params))]
        self.plan = plan
        self.grad_clip = float(grad_clip)
        self.scaler = torch.amp.GradScaler("cuda", enabled=plan.uses_scaler)
        self.check_grads = not plan.uses_scaler

    def forward(
        self, engine: Callable[..., dict], images: torch.Tensor, labels: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """The task's loss terms for one batch, under the plan's autocast. In bfloat16 on the CPU,
        convolutions padded beyond their input get their zeros explicitly: oneDNN leaves part
        of their weight gradient unwritten otherwise (utils/training/conv_padding.py)."""
        with (
            self.plan.autocast(),
            explicit_conv_padding(self.plan.device_type, self.plan.precision),
        ):
            return engine(images, labels)

    def update(self, loss: torch.Tensor) -> list[tuple[str, int, int]]:
        """Back-propagate `loss` and step the optimizer (gradients cleared first), unless a
        gradient holds NaN or inf: then the weights and the optimizer are left as they were and
        those gradients are returned as (name, NaN/inf count, size). Empty: the step was taken.
        """
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
        if self.check_grads:  # before clipping, which would spread one NaN to every gradient
            named = zip(self.names, self.params, strict=True)
            bad = non_finite_tensors((n, p.grad) for n, p in named if p.grad is not None)
            if bad:
                return bad
        if self.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.params, self.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return []

    def __call__(
        self, engine: Callable[..., dict], images: torch.Tensor, labels: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """forward + update without the loop's loss check (benchmarks; update still checks the
        gradients and skips the optimizer step on NaN/inf)."""
        terms = self.forward(engine, images, labels)
        self.update(terms["loss"])
        return terms
