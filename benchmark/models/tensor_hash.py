"""Content hashes and finiteness of the tensors inside a saved object (cache file, checkpoint).

A file's own sha256 proves its bytes; these prove what the loader hands back, so a cache file
whose tensors were damaged (flipped bits, NaNs written by a faulty run) is caught after loading,
whatever wrapper format carried it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from episodes.storage import file_sha256

# The key under which a saved dict (checkpoint, feature file) carries tensors_sha256 of the rest.
TENSORS_HASH_KEY = "tensors_sha256"


def _tensors(obj: Any, path: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    """(dotted path, tensor) of every tensor in nested dicts/lists/tuples, in a fixed order."""
    if isinstance(obj, torch.Tensor):
        yield path, obj
    elif isinstance(obj, dict):
        for key in sorted(obj, key=str):
            yield from _tensors(obj[key], f"{path}.{key}" if path else str(key))
    elif isinstance(obj, (list, tuple)):
        for i, item in enumerate(obj):
            yield from _tensors(item, f"{path}[{i}]")


def tensors_sha256(obj: Any) -> str:
    """Hex sha256 over the path, dtype, shape and bytes of every tensor in `obj`."""
    digest = hashlib.sha256()
    for path, tensor in _tensors(obj):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{path}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def first_non_finite(obj: Any) -> str | None:
    """The path of the first floating tensor in `obj` holding a NaN or an infinity, else None."""
    for path, tensor in _tensors(obj):
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            return path
    return None


def checkpoint_problem(obj: Any) -> str | None:
    """Why loaded file contents cannot be trusted, or None: a dict's stored TENSORS_HASH_KEY
    no longer matches its tensors, or a float tensor holds NaN/inf."""
    if isinstance(obj, dict) and TENSORS_HASH_KEY in obj:
        body = {k: v for k, v in obj.items() if k != TENSORS_HASH_KEY}
        if obj[TENSORS_HASH_KEY] != tensors_sha256(body):
            return (
                "is damaged: its tensors no longer match the tensors_sha256 stored with them "
                "(flipped bits or an edit)"
            )
    bad = first_non_finite(obj)
    if bad is not None:
        return f"holds NaN or infinite values in {bad!r}"
    return None


def file_hash_problem(path: Path) -> str | None:
    """Why `path` differs from the sha256 recorded in `<path>.sha256` beside it, or None (also
    when there is no such file)."""
    hash_file = path.with_name(path.name + ".sha256")
    if not hash_file.is_file():
        return None
    recorded = (hash_file.read_text(errors="replace").split() or [""])[0]
    actual = file_sha256(path)
    if actual == recorded:
        return None
    return (
        f"is damaged: its sha256 {actual[:12]}... is not the {recorded[:12]}... recorded in "
        f"{hash_file.name}"
    )
