"""Counter-based random numbers: every draw is a pure function of (stream, episode, slot).

There is no generator state. A draw is splitmix64's output function applied to a 64-bit counter
built from a stream key (a hash of the sampler's seed and settings), the episode index and the
slot number of the draw within the episode. So episode i can be produced alone, in any order, in
any process, and all fixed-shape episodes come from integer arithmetic only: they are bit-for-bit
the same on every machine. numpy's uint64 arithmetic wraps modulo 2**64, which is what the mixing
function needs.

References: Steele, Lea & Flood, "Fast splittable pseudorandom number generators" (OOPSLA 2014);
Lemire, "Fast random integer generation in an interval" (TOMACS 2019).
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from episodes.storage import canonical_json
from episodes.workspace import Workspace, scratch

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MUL1 = np.uint64(0xBF58476D1CE4E5B9)
_MUL2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S32 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(32)
_LOW32 = np.uint64(0xFFFFFFFF)


def mix64(z: np.ndarray, shifted: np.ndarray | None = None) -> np.ndarray:
    """splitmix64's output function on a uint64 array (any shape), computed in place; returns z.

    `shifted`, if given, is a uint64 array of z's shape used for the shifted copies.
    """
    shifted = np.empty_like(z) if shifted is None else shifted
    z ^= np.right_shift(z, _S30, out=shifted)
    z *= _MUL1
    z ^= np.right_shift(z, _S27, out=shifted)
    z *= _MUL2
    z ^= np.right_shift(z, _S31, out=shifted)
    return z


def stream_key(settings: dict[str, Any]) -> int:
    """A 64-bit key naming the random stream of one sampler: the first 8 bytes of sha256(settings)."""
    digest = hashlib.sha256(canonical_json(settings).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little")


def episode_keys(stream: int, episodes: np.ndarray) -> np.ndarray:
    """Per-episode keys, shape (B,) uint64, for episode indices `episodes` (B,) (non-negative)."""
    counters = np.asarray(episodes, dtype=np.uint64) + np.uint64(1)
    return mix64(np.uint64(stream) + counters * _GOLDEN)  # a new array: mix64 works in place


def draws(keys: np.ndarray, first_slot: int, n_slots: int) -> np.ndarray:
    """Random 64-bit words for slots [first_slot, first_slot + n_slots) of each episode: (B, n_slots) uint64."""
    slots = np.arange(first_slot + 1, first_slot + n_slots + 1, dtype=np.uint64) * _GOLDEN
    return mix64(keys[:, None] + slots[None, :])  # a new array: mix64 works in place


def draws32(
    keys: np.ndarray,
    first_word: int,
    n: int,
    blocks: int = 1,
    *,
    ws: Workspace | None = None,
    name: str = "draws",
) -> np.ndarray:
    """Blocks of n random 32-bit draws per episode, step-major: (n, B, blocks) uint64 below 2**32.

    Block j uses the h = ceil(n / 2) words first_word + j*h .. first_word + j*h + h - 1 of each
    episode; its draw t is the high half of word t for t < h and the low half of word t - h
    otherwise (two draws per mixing, since every use needs 32 bits). With a workspace the result
    lives in its buffer `name` (valid until the next request of that name).
    """
    h = (n + 1) // 2
    b = len(keys)
    out = scratch(ws, name, (n, b, blocks), np.uint64)
    if h == 0:
        return out
    # counter of word t of block j = key + (first_word + j*h + t + 1) * golden, built as
    # base[b, j] + t * golden so that every elementwise loop runs over B * blocks elements
    block_starts = (
        np.arange(first_word + 1, first_word + blocks * h + 1, h, dtype=np.uint64) * _GOLDEN
    )
    base = (keys[:, None] + block_starts[None, :]).reshape(-1)
    steps = np.arange(h, dtype=np.uint64)[:, None] * _GOLDEN
    words = np.add(
        base[None, :], steps, out=scratch(ws, name + ".words", (h, b * blocks), np.uint64)
    )
    mix64(words, scratch(ws, name + ".shifted", (h, b * blocks), np.uint64))
    words = words.reshape(h, b, blocks)
    np.right_shift(words, _S32, out=out[:h])
    np.bitwise_and(words[: n - h], _LOW32, out=out[h:])
    return out


def below(draw32: np.ndarray, n: np.ndarray | int) -> np.ndarray:
    """Integers uniform in [0, n) from 32-bit draws (Lemire's multiply-shift): (d * n) >> 32.

    `draw32` holds values below 2**32 (draws32, or `words >> 32` of 64-bit words); `n`
    broadcasts against it and must lie in [1, 2**32). Returns int64 of the broadcast shape. The
    bias is below n / 2**32, far under anything an evaluation can detect.
    """
    return ((draw32 * np.asarray(n, dtype=np.uint64)) >> _S32).astype(np.int64)


def uniform01(words: np.ndarray) -> np.ndarray:
    """Floats uniform in [0, 1) (53-bit resolution, exact) from 64-bit words, same shape, float64."""
    return (words >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)
