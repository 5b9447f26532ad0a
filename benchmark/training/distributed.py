"""Process-group set-up for `torchrun --nproc_per_node=N` (and a one-process default).

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; without them training runs as one process.
The backend is nccl on CUDA and gloo on CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from benchmark.models.device import resolve_device


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: rank among world_size processes, and its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    owns_group: bool  # True when this context initialised the process group (and destroys it)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.distributed:
            if self.device.type == "cuda":
                dist.barrier(device_ids=[self.device.index or 0])
            else:
                dist.barrier()

    def all_reduce_mean(self, value: float) -> float:
        """Mean of a float over ranks (for logging only)."""
        if not self.distributed:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return float(t.item()) / self.world_size

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def init_distributed(device: str | torch.device = "auto") -> DistContext:
    """Join the process group torchrun describes (env RANK/WORLD_SIZE/LOCAL_RANK), if any.

    Reuses a group that is already initialised (e.g. by tests via torch.multiprocessing.spawn).
    """
    if dist.is_available() and dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
        local_rank = int(os.environ.get("LOCAL_RANK", rank))
        dev = resolve_device(device, local_rank)
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        return DistContext(rank, world, local_rank, dev, owns_group=False)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext(0, 1, 0, resolve_device(device, 0), owns_group=False)
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    dev = resolve_device(device, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
        dist.init_process_group("nccl", device_id=dev)
    else:
        dist.init_process_group("gloo")
    return DistContext(rank, world, local_rank, dev, owns_group=True)
