"""On-disk cache of extracted features, keyed by a hash of everything that determines them.

One file per key, `<cache_dir>/features-<key>.pt`: a torch.save'd dict of half-precision tensors,
the key and the key's parts (JSON). The key covers the dataset fingerprint, the image indices,
the backbone name and weights hash, the preprocessing, the mask mode (and the part head's weights
hash, the shuffled masks' seed), the part stage, whether dense maps are kept, the autocast
precision and FEATURE_FORMAT_VERSION. Files are written atomically and carry `tensors_sha256`,
a content hash of their tensors. A file that cannot be read, whose stored key or shapes
disagree, whose tensors no longer match their hash (flipped bits) or hold a NaN or an infinity
is recomputed with a warning naming the file: never used silently.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmark.models.tensor_hash import TENSORS_HASH_KEY, first_non_finite, tensors_sha256
from episodes.storage import atomic_write, canonical_json, json_sha256, sha256_hex

# Bump when the pooling, presence rule or stored layout changes: old cache files then miss.
# 2: predicted masks as softmax coverage; 3: presence by image area; 4: tensors_sha256;
# 5: reduced-scale JPEG decoding
FEATURE_FORMAT_VERSION = 5


def indices_sha256(indices: np.ndarray) -> str:
    """Hex sha256 of an int64 index array (order matters)."""
    return sha256_hex(np.ascontiguousarray(indices, dtype="<i8").tobytes())


def cache_key(parts: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of the key parts plus the format version."""
    return json_sha256({**parts, "format_version": FEATURE_FORMAT_VERSION})


def cache_path(cache_dir: str | os.PathLike, key: str) -> Path:
    return Path(cache_dir) / f"features-{key}.pt"


def save_features(
    path: Path, key: str, parts: dict[str, Any], tensors: dict[str, torch.Tensor | None]
) -> None:
    """Write tensors (CPU; float ones stored as float16) with their key, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload: dict[str, Any] = {
        "key": key,
        "key_parts": canonical_json(parts),
        "format_version": FEATURE_FORMAT_VERSION,
    }
    stored = {}
    for name, tensor in tensors.items():
        if tensor is not None:
            tensor = tensor.detach().cpu()
            stored[name] = tensor.half() if tensor.is_floating_point() else tensor
    payload.update(stored)
    payload[TENSORS_HASH_KEY] = tensors_sha256(stored)
    atomic_write(path, lambda handle: torch.save(payload, handle))


def load_features(
    path: Path, key: str, expected_indices: np.ndarray
) -> dict[str, torch.Tensor] | None:
    """The cached tensors for `key`, or None on a miss.

    A missing file is a silent miss; an unreadable file, a stored key that differs from `key`,
    stored image indices that differ from `expected_indices`, tensors that differ from their
    stored content hash or that hold NaN/inf warn (naming the file) and miss: the caller
    recomputes and overwrites the file.
    """
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        stored_key = payload["key"]
        indices = payload["image_indices"]
        embeddings = payload["embeddings"]
    except Exception as err:  # truncated zip, garbage bytes, missing entries
        warnings.warn(
            f"feature cache file {path.name} is unreadable ({err!r}); recomputing", stacklevel=3
        )
        return None
    if stored_key != key:
        warnings.warn(
            f"feature cache file {path.name} holds key {str(stored_key)[:12]}..., not "
            f"{key[:12]}...; recomputing",
            stacklevel=3,
        )
        return None
    if not np.array_equal(indices.numpy(), expected_indices) or embeddings.shape[0] != len(
        expected_indices
    ):
        warnings.warn(
            f"feature cache file {path.name} covers other images; recomputing", stacklevel=3
        )
        return None
    names = ("embeddings", "part_embeddings", "part_present", "image_indices", "dense")
    tensors = {name: value for name, value in payload.items() if isinstance(value, torch.Tensor)}
    if payload.get(TENSORS_HASH_KEY) != tensors_sha256(tensors):
        warnings.warn(
            f"feature cache file {path} is damaged: its tensors no longer match the "
            "content hash stored with them; recomputing",
            stacklevel=3,
        )
        return None
    bad = first_non_finite(tensors)
    if bad is not None:
        warnings.warn(
            f"feature cache file {path} holds NaN or infinite values in {bad!r}; recomputing",
            stacklevel=3,
        )
        return None
    return {name: payload.get(name) for name in names}
