"""Device, precision and process-group helpers shared by feature extraction and training.

"auto" picks CUDA when present and falls back to the CPU; precision "auto" is bf16 autocast on
CUDA and float32 on the CPU (CPU bf16 is slow on most CPUs and changes results for no gain).
"""

from __future__ import annotations

import contextlib
from typing import ContextManager

import torch
import torch.distributed as dist

from benchmark.config.device import PRECISIONS
from results.provenance import hardware_info

_DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


def resolve_device(
    device: str | torch.device = "auto", local_rank: int | None = None
) -> torch.device:
    """ "auto" -> cuda when available, else cpu; anything else is checked.

    A CUDA device without an index becomes cuda:<local_rank> (one GPU per torchrun process) when
    local_rank is given, else the current CUDA device.
    """
    if isinstance(device, torch.device):
        resolved = device
    elif device == "auto":
        resolved = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    else:
        try:
            resolved = torch.device(device)
        except RuntimeError as err:
            raise ValueError(
                f"device={device!r} is not a torch device; use 'auto', 'cpu', 'cuda' or 'cuda:N'"
            ) from err
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r} asks for CUDA but torch.cuda.is_available() is False on this "
            "machine; use device='auto' to fall back to the CPU"
        )
    if resolved.type == "cuda" and resolved.index is None:
        index = (
            torch.cuda.current_device()
            if local_rank is None
            else local_rank % torch.cuda.device_count()
        )
        resolved = torch.device("cuda", index)
    return resolved


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    """The autocast dtype: "auto" -> bfloat16 on CUDA, float32 elsewhere."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r} is not one of {PRECISIONS}")
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return _DTYPES[precision]


def precision_name(dtype: torch.dtype) -> str:
    """The short name ("bf16", "fp32") of an autocast dtype."""
    return {v: k for k, v in _DTYPES.items()}[dtype]


def autocast(device: torch.device, dtype: torch.dtype) -> ContextManager:
    """torch.autocast for reduced precision; a no-op context for float32."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def dist_rank_world() -> tuple[int, int]:
    """(rank, world_size) of the initialised torch.distributed group, else (0, 1)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def comm_device(local_device: torch.device) -> torch.device:
    """The device collectives of the default group run on: CUDA for NCCL, CPU for gloo."""
    if dist.get_backend() == "nccl":
        return local_device if local_device.type == "cuda" else torch.device("cuda")
    return torch.device("cpu")


def hardware(device: torch.device) -> dict:
    """What a result file records of the machine: results.provenance.hardware_info plus, on CUDA,
    the GPU's name and count (results never imports torch, so torch's view is added here)."""
    extra = {}
    if device.type == "cuda":
        extra = {"gpu": torch.cuda.get_device_name(device), "gpu_count": torch.cuda.device_count()}
    return hardware_info(str(device), **extra)
