"""Checkpoint files: atomic writes, sha256 beside each file, weights_only loading.

best.pt (the selected model, what the harness loads):
    {"model": backbone state_dict (timm model with num_classes=0),
     "part_head": PartSegHead state_dict | None,
     "meta": {"model_name", "image_size", "method", "epoch", "val_accuracy",
              "train_classes": "partimagenet-ood-train", "saw_test_classes": False,
              "dataset_fingerprint", "config": {...}, ...}}
last.pt (resume state): the same plus "classifier", "optimizer", "scheduler", "epochs_done",
    "best_val_accuracy", "best_epoch", "history".

Every checkpoint also carries "tensors_sha256" (benchmark.models.tensor_hash) and has "<name>.sha256"
beside it. `load_checkpoint` checks both, and that every float tensor is finite, so flipped bits
or NaN weights are never used: the trained-weights cache retrains (`usable_cached_checkpoint`)
and a checkpoint the user named is refused with one line.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

import torch

from benchmark.models.tensor_hash import (
    TENSORS_HASH_KEY,
    checkpoint_problem,
    file_hash_problem,
    tensors_sha256,
)
from episodes.errors import PartbenchError
from episodes.storage import atomic_write_bytes, sha256_hex

TRAIN_CLASSES_TAG = "partimagenet-ood-train"
# The files of one training folder (the trained-weights cache keeps one per setting).
CHECKPOINT_NAMES = ("best.pt", "last.pt", "selected.pt")


class CheckpointError(PartbenchError, ValueError):
    """A checkpoint that is missing, unreadable, damaged or holds non-finite weights."""


def cpu_state_dict(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A contiguous CPU copy of a state_dict (channels_last/CUDA tensors saved portably)."""
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in module.state_dict().items()}


def save_checkpoint(obj: dict[str, Any], path: str | Path, *, with_hash: bool = True) -> str:
    """torch.save `obj` to `path` atomically; write "<sha256>  <name>" to `<path>.sha256`.

    Returns the file's sha256 (hex).
    """
    path = Path(path)
    obj = {k: v for k, v in obj.items() if k != TENSORS_HASH_KEY}
    obj[TENSORS_HASH_KEY] = tensors_sha256(obj)
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    data = buffer.getvalue()
    digest = sha256_hex(data)
    atomic_write_bytes(path, data)
    if with_hash:
        atomic_write_bytes(
            path.with_name(path.name + ".sha256"), f"{digest}  {path.name}\n".encode()
        )
    return digest


def load_checkpoint(
    path: str | Path, *, verify: bool = True, map_location: str | torch.device = "cpu"
) -> dict[str, Any]:
    """torch.load(weights_only=True) a checkpoint and verify what it returns.

    With `verify`: the sha256 file beside it (if present) must match the bytes, the stored
    tensors_sha256 (if present) must match the tensors, and every float tensor must be finite.

    Raises:
        CheckpointError: one line naming the file and what is wrong.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    problem = file_hash_problem(path) if verify else None
    if problem is not None:
        raise CheckpointError(f"checkpoint {path} {problem}")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # truncated zip, garbage, a pickle that is not plain weights
        raise CheckpointError(
            f"checkpoint {path} cannot be read as weights "
            f"({type(err).__name__}: {' '.join(str(err).split())[:200]})"
        ) from None
    if verify:
        problem = checkpoint_problem(obj)
        if problem is not None:
            raise CheckpointError(f"checkpoint {path} {problem}")
    return obj


def usable_cached_checkpoint(out_dir: str | Path) -> Path | None:
    """best.pt of a trained-weights cache folder if it verifies; None if it must be (re)trained.

    A damaged best.pt, last.pt or selected.pt is never used: all three (and their .sha256) are
    renamed to `<name>.corrupt` with a warning naming the file, so training starts afresh (the
    resume state of a folder with one damaged file cannot be trusted either).
    """
    out_dir = Path(out_dir)
    for name in CHECKPOINT_NAMES:
        path = out_dir / name
        if not path.is_file():
            continue
        try:
            load_checkpoint(path)
        except CheckpointError as exc:
            warnings.warn(
                f"{exc}; retraining (the damaged files are kept as *.corrupt)", stacklevel=2
            )
            for other in CHECKPOINT_NAMES:
                for stale in (out_dir / other, out_dir / f"{other}.sha256"):
                    if stale.is_file():
                        stale.replace(stale.with_name(stale.name + ".corrupt"))
            return None
    best = out_dir / "best.pt"
    return best if best.is_file() else None
