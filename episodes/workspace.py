"""Scratch arrays reused across the chunks of one batch call.

Fresh numpy arrays of a few hundred KiB come from mmap'd or trimmed heap memory, and touching
them costs page faults: on the reference machine half of batch()'s time went there. A Workspace
hands out views of buffers that it keeps for the duration of one call. It holds no random state.
"""

from __future__ import annotations

import numpy as np


class Workspace:
    """Named scratch buffers: `get(name, shape, dtype)` reuses the same memory on every call."""

    def __init__(self) -> None:
        self._buffers: dict[str, np.ndarray] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype: np.dtype | type) -> np.ndarray:
        """An uninitialised array of `shape` and `dtype`, sharing memory with earlier `name` requests."""
        size = int(np.prod(shape, dtype=np.int64))
        buffer = self._buffers.get(name)
        if buffer is None or buffer.dtype != np.dtype(dtype) or buffer.size < size:
            buffer = np.empty(max(size, 1), dtype=dtype)
            self._buffers[name] = buffer
        return buffer[:size].reshape(shape)


def scratch(
    ws: Workspace | None, name: str, shape: tuple[int, ...], dtype: np.dtype | type
) -> np.ndarray:
    """ws.get(...) or, without a workspace, a fresh array."""
    return np.empty(shape, dtype=dtype) if ws is None else ws.get(name, shape, dtype)
