"""Checkpoint files: atomic writes, sha256 beside each file, weights_only loading.

best.pt (the selected model, what the harness loads):
    {"model": backbone state_dict (timm model with num_classes=0),
     "part_head": PartSegHead state_dict | None,
     "meta": {"model_name", "image_size", "method", "epoch", "val_accuracy",
              "train_classes": "partimagenet-ood-train", "saw_test_classes": False,
              "dataset_fingerprint", "config": {...}, ...}}
last.pt (resume state): the same plus "classifier", "optimizer", "scheduler", "epochs_done",
    "best_val_accuracy", "best_epoch", "history".
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from episodes.storage import atomic_write_bytes, file_sha256, sha256_hex

TRAIN_CLASSES_TAG = "partimagenet-ood-train"


def cpu_state_dict(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A contiguous CPU copy of a state_dict (channels_last/CUDA tensors saved portably)."""
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in module.state_dict().items()}


def save_checkpoint(obj: dict[str, Any], path: str | Path, *, with_hash: bool = True) -> str:
    """torch.save `obj` to `path` atomically; write "<sha256>  <name>" to `<path>.sha256`.

    Returns the file's sha256 (hex).
    """
    path = Path(path)
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    data = buffer.getvalue()
    digest = sha256_hex(data)
    atomic_write_bytes(path, data)
    if with_hash:
        atomic_write_bytes(path.with_name(path.name + ".sha256"),
                            f"{digest}  {path.name}\n".encode())
    return digest


def load_checkpoint(path: str | Path, *, verify: bool = True,
                    map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """torch.load(weights_only=True); with `verify`, check the sha256 file beside it if present."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    hash_file = path.with_name(path.name + ".sha256")
    if verify and hash_file.is_file():
        expected = hash_file.read_text().split()[0]
        actual = file_sha256(path)
        if actual != expected:
            raise ValueError(f"checkpoint {path} is corrupt: sha256 {actual} != {expected} "
                             f"recorded in {hash_file.name}; delete both to retrain")
    return torch.load(path, map_location=map_location, weights_only=True)
