"""Is a convolution's weight gradient right when its padding exceeds its input? (bf16, CPU)

The minimal case of the NaN that bfloat16 training on a CPU wrote into FastSegFormer's 7x7 MSP
branch at a 64x64 input (utils/training/conv_padding.py has the cause and the fix): one
convolution, 256 -> 64 channels, kernel 7, padding 3, on a 2x2 map, under bfloat16 autocast,
channels-last. Before each backward pass the allocator's free memory is filled with NaN, so
that a gradient element the kernel leaves unwritten shows up. Each case is compared with the
same gradient in float64 (from the same bfloat16-rounded inputs). "wrong" counts gradient
elements off by more than 2% of the largest; "unreached" counts non-zero gradient elements of
kernel taps that only ever multiply padding (their true gradient is exactly 0). Last, it
times what the fix's torch function mode adds to each PyTorch call (20000 calls of a tiny
``torch.add``, in and out of the mode, best of 5) and counts the calls of one FastSegFormer-P
forward pass at 224x224 (what the mode intercepts per training step).

    python tools/check_conv_grad.py                 # the grid below, 15-30 s on 2 cores
    ONEDNN_VERBOSE=1 python tools/check_conv_grad.py --kernel 7 --size 2 --trials 1

Exit status 1 when the explicit padding (what training uses) still gives a wrong gradient.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # also runnable as `python tools/check_conv_grad.py`
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.overrides import TorchFunctionMode  # noqa: E402

import nets  # noqa: E402
from utils.cli import parse_config  # noqa: E402
from utils.training.conv_padding import (  # noqa: E402
    ExplicitConvPadding,
    conv2d_padded_explicitly,
)
from utils.training.speed import cpu_has_native_bf16, speed_flags  # noqa: E402


@dataclass
class Config:
    kernel: tuple[int, ...] = (3, 5, 7)  # kernel sizes (padding kernel // 2)
    size: tuple[int, ...] = (1, 2, 3, 7)  # input heights = widths
    trials: int = 5  # backward passes per case, memory refilled with NaN before each
    channels_last: bool = True  # the training default on this project's CPUs


def _dirty_free_memory(numel: int) -> None:
    """Allocate and free NaN-filled blocks about the size of a gradient buffer."""
    blocks = [torch.full((numel + i,), float("nan")) for i in range(8)]
    del blocks


def count_bad(k: int, n: int, explicit: bool, cfg: Config) -> tuple[int, int]:
    """(wrong, unreached) gradient elements over cfg.trials backward passes."""
    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
    conv = conv2d_padded_explicitly if explicit else torch.conv2d
    w = torch.randn(64, 256, k, k).contiguous(memory_format=fmt).requires_grad_()
    pad = k // 2
    reach = [i for i in range(k) if any(0 <= o + i - pad < n for o in range(n))]
    unreached = torch.ones(k, k, dtype=torch.bool)
    unreached[min(reach) : max(reach) + 1, min(reach) : max(reach) + 1] = False
    wrong = stray = 0
    for _ in range(cfg.trials):
        x = torch.randn(4, 256, n, n).contiguous(memory_format=fmt)
        _dirty_free_memory(w.numel())
        w.grad = None
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = conv(x, w, None, 1, pad)  # (4, 64, n, n)
        dy = torch.randn(y.shape)
        y.float().backward(dy)
        ref_w = w.detach().bfloat16().double().requires_grad_()
        F.conv2d(x.bfloat16().double(), ref_w, padding=pad).backward(dy.bfloat16().double())
        err = (w.grad.double() - ref_w.grad).abs()
        wrong += int((~(err <= 0.02 * ref_w.grad.abs().max())).sum())  # NaN counts as wrong
        stray += int((w.grad[:, :, unreached] != 0).sum())
    return wrong, stray


def mode_cost_us(calls: int = 20000, rounds: int = 5) -> float:
    """Microseconds the ExplicitConvPadding mode adds to one PyTorch call."""
    a, b = torch.randn(4), torch.randn(4)

    def best() -> float:
        times = []
        for _ in range(rounds):
            start = time.perf_counter()
            for _ in range(calls):
                torch.add(a, b)
            times.append((time.perf_counter() - start) / calls)
        return min(times)

    plain = best()
    with ExplicitConvPadding():
        moded = best()
    return 1e6 * (moded - plain)


class _CountCalls(TorchFunctionMode):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        self.calls += 1
        return func(*args, **(kwargs or {}))


def forward_calls(model: str = "fastsegformer_p", size: int = 224) -> int:
    """PyTorch calls of one forward pass of `model` (what the mode sees per step)."""
    net = nets.build_model(model, 4).eval()
    counter = _CountCalls()
    with torch.no_grad(), counter:
        net(torch.rand(1, 3, size, size))
    return counter.calls


def main(argv: list[str] | None = None) -> int:
    cfg = parse_config(Config, argv, description=__doc__)
    torch.manual_seed(0)
    print(
        f"torch {torch.__version__}, CPU flags {' '.join(speed_flags()) or '-'}, native bf16 "
        f"{cpu_has_native_bf16()}, {'channels-last' if cfg.channels_last else 'NCHW'}, "
        f"{cfg.trials} trials per case"
    )
    print("kernel  input  | conv padding: wrong  unreached | explicit F.pad: wrong  unreached")
    failed = False
    for k in cfg.kernel:
        for n in cfg.size:
            plain = count_bad(k, n, False, cfg)
            fixed = count_bad(k, n, True, cfg)
            failed |= any(fixed)
            print(
                f"{k}x{k}     {n}x{n}    | {plain[0]:>19} {plain[1]:>10} | {fixed[0]:>21} "
                f"{fixed[1]:>10}"
            )
    cost, calls = mode_cost_us(), forward_calls()
    print(
        f"the explicit-padding mode adds {cost:.2f} us per PyTorch call; a FastSegFormer-P "
        f"forward pass at 224x224 makes {calls}: {cost * calls / 1000:.2f} ms per step"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
