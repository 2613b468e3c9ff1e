"""The PyTorch runtime: an nn.Module behind the same callable contract as the exported runtimes.

FastSegFormer (Cai et al., Computers and Electronics in Agriculture 217, 108604, 2024) is
trained in PyTorch; `TorchBackend` runs the trained module eagerly, (B, 3, h, w) float32 in,
(B, K, h, w) float32 out, like utils.deploy.runtimes' ONNX Runtime and OpenVINO runtimes. On the
CPU the weights and inputs are channels-last (NHWC) by default: oneDNN's convolutions then skip
their layout reorders (about 10% less time for FastSegFormer-P and 5% for -E on a 2-core CPU,
docs/models.md). Logits are handed back contiguous NCHW either way.

Kept apart from utils.deploy.runtimes so that running an exported model never imports torch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch


class TorchBackend:
    """Runs an nn.Module on CPU or CUDA, in float32 or float16.

    `channels_last` (None: on for the CPU, off for CUDA) keeps weights and inputs in NHWC
    memory; the logits come back contiguous NCHW.
    """

    name = "torch"
    label = "torch"

    def __init__(
        self,
        model: torch.nn.Module,
        device: str = "cpu",
        half: bool = False,
        channels_last: bool | None = None,
    ) -> None:
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"device {device!r} asked for, but CUDA is not available here")
        self.dtype = torch.float16 if half else torch.float32
        if channels_last is None:
            channels_last = self.device.type == "cpu"
        self.channels_last = bool(channels_last)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model = model.to(self.device, self.dtype, memory_format=self.memory_format).eval()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device, self.dtype)
        x = x.contiguous(memory_format=self.memory_format)
        with torch.inference_mode():
            logits = self.model(x)  # (B, K, h, w)
        return logits.float().contiguous().cpu().numpy()

    def synchronize(self) -> None:
        """Wait for the device's queued work (CUDA); the CPU returns when the work is done."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def describe(self) -> str:
        precision = "fp16" if self.dtype == torch.float16 else "fp32"
        layout = ", channels_last" if self.channels_last else ""
        return f"torch {self.device} {precision}{layout}"


def cuda_sync(device: Any) -> Callable[[], None] | None:
    """torch.cuda.synchronize for a CUDA device, None for the CPU (nothing to wait for)."""
    device = torch.device(device)
    if device.type != "cuda":
        return None
    return lambda: torch.cuda.synchronize(device)
