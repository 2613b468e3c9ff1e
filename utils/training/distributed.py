"""Multi-process training with torchrun: process group, device, samplers, rank-0 helpers.

`torchrun --nproc_per_node=N train.py ...` sets RANK / LOCAL_RANK / WORLD_SIZE; `setup` then
joins the process group (NCCL on CUDA, gloo on CPU) and picks this process's device. Without
torchrun everything degrades to one process (rank 0, world size 1) and the helpers are no-ops.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.utils.data import Dataset, Sampler


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: its rank among `world_size` and its device."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """'auto' -> cuda:<local_rank> when available else cpu; 'cuda' -> cuda:<local_rank>."""
    name = name.strip().lower()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {name!r} requested but CUDA is not available; use --device cpu"
            )
        if name == "cuda":
            return torch.device("cuda", local_rank)
        return torch.device(name)
    if name == "cpu":
        return torch.device("cpu")
    raise ValueError(f"unknown device {name!r}: expected auto, cpu, cuda or cuda:N")


def env_world_size() -> int:
    """Number of processes torchrun started (1 without torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def env_rank() -> int:
    """Global rank torchrun gave this process (0 without torchrun), before the group is up."""
    return int(os.environ.get("RANK", "0"))


def setup(device: str = "auto") -> DistInfo:
    """Join the torchrun process group if launched by torchrun; return this process's info."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    if world_size > 1:
        if not dist.is_initialized():
            backend = "nccl" if dev.type == "cuda" else "gloo"
            if dev.type == "cuda":
                torch.cuda.set_device(dev)
            dist.init_process_group(backend=backend)
        rank, world_size = dist.get_rank(), dist.get_world_size()
        restarts = int(os.environ.get("TORCHELASTIC_MAX_RESTARTS", "0"))
        if rank == 0 and restarts and os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True":
            print(
                "note: torchrun --max-restarts with a rendezvous store shared across restarts: "
                "restarted workers can read what the failed ones left there and fail to "
                "connect (pytorch/pytorch#135712); set TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 "
                "for torchrun",
                flush=True,
            )
    return DistInfo(rank, local_rank, world_size, dev)


def cleanup() -> None:
    """Leave the process group (if any)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum `t` over processes in place (no-op in one process); returns `t`."""
    if dist.is_available() and dist.is_initialized():
        if dist.get_backend() == "nccl" and t.device.type != "cuda":
            moved = t.cuda()
            dist.all_reduce(moved)
            t.copy_(moved.cpu())
        else:
            dist.all_reduce(t)
    return t


def all_true(flag: bool, device: torch.device) -> bool:
    """True only if `flag` is True on every process (so all stop together)."""
    t = torch.tensor([0.0 if flag else 1.0], device=device)
    return float(all_reduce_sum(t).item()) == 0.0


def any_true(flag: bool, device: torch.device) -> bool:
    """True if `flag` is True on any process (so all act on it together)."""
    return not all_true(not flag, device)


def gather_objects(obj: object) -> list:
    """[obj of rank 0, obj of rank 1, ...] on every process ([obj] in one process)."""
    if not (dist.is_available() and dist.is_initialized()):
        return [obj]
    out: list = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


class ShardSampler(Sampler[int]):
    """Evaluation sampler: process r gets items r, r + N, ... in order, without padding.

    DistributedSampler pads the last shard with repeats, which would count some images twice
    in the confusion matrix; evaluation needs every image exactly once.
    """

    def __init__(self, dataset: Dataset, rank: int, world_size: int) -> None:
        self.n = len(dataset)  # type: ignore[arg-type]
        self.rank, self.world_size = rank, world_size

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.n, self.world_size))

    def __len__(self) -> int:
        return max(0, math.ceil((self.n - self.rank) / self.world_size))
