"""Choosing m distinct items out of n, many rows at once: a vectorised partial Fisher-Yates shuffle.

The specification, for one row with n items and 32-bit draws w[0..m-1], is the textbook
algorithm on the identity permutation `perm = [0, 1, ..., n-1]`:

    for t in range(m):
        r = t + below(w[t], n - t)
        perm[t], perm[r] = perm[r], perm[t]
    return perm[:m]

Two implementations give the same answer: a dense one that materialises `perm` (cost ~ rows x
width, in cache-sized chunks) and a sparse one that only tracks the positions touched (cost ~
rows x m^2, independent of n; it wins only for very large classes). `choose_distinct` picks the
cheaper one; tests check that both match the textbook loop.
"""

from __future__ import annotations

import numpy as np

from episodes.counter_rng import below
from episodes.workspace import Workspace, scratch

_SHIFT32 = np.uint64(32)


def choose_distinct(
    sizes: np.ndarray,
    draws: np.ndarray,
    width: int,
    *,
    ws: Workspace | None = None,
    name: str = "choose",
) -> np.ndarray:
    """m distinct positions in [0, sizes[r]) for each of R rows, in draw order (step-major).

    Args:
        sizes: (R,) int, the number of items of each row; every size must be >= m.
        draws: (m, R) uint64 random 32-bit draws (counter_rng.draws32), draws[t, r] for step t
            of row r.
        width: an upper bound on `sizes` (the dense implementation's row length).
        ws, name: an optional workspace; the result then lives in its buffer `name`.

    Returns:
        (m, R) integer positions (uint8, int16, int32 or int64, the narrowest that fits width);
        column r holds distinct values below sizes[r].
    """
    m = draws.shape[0]
    sizes = np.asarray(sizes, dtype=np.uint64)
    if width <= 16 * m * m:  # measured crossover on one core, numpy 2.4
        return _choose_dense(sizes, draws, width, ws, name)
    chunk = 2048
    parts = [
        _choose_sparse(sizes[s : s + chunk], draws[:, s : s + chunk].T).T
        for s in range(0, len(sizes), chunk)
    ]
    return np.concatenate(parts, axis=1) if parts else np.empty((m, 0), dtype=np.int64)


def _choose_dense(
    sizes: np.ndarray,
    draws: np.ndarray,
    width: int,
    ws: Workspace | None = None,
    name: str = "choose",
) -> np.ndarray:
    m, n_rows = draws.shape
    # the narrowest type that holds a position: less memory per row, more rows in cache
    dtype = next(
        t for t in (np.uint8, np.int16, np.int32, np.int64) if width - 1 <= np.iinfo(t).max
    )
    out = scratch(ws, name, (m, n_rows), dtype)
    steps = np.arange(m, dtype=np.uint64)[:, None]
    identity = np.arange(width, dtype=dtype)
    # rows per chunk: a permutation block of <= 1 MiB stays in L2 (measured best); equal chunks
    chunk = max(64, (1 << 20) // (width * np.dtype(dtype).itemsize))
    chunk = max(1, -(-n_rows // max(1, -(-n_rows // chunk))))
    perm_buffer = scratch(ws, name + ".perm", (min(chunk, n_rows), width), dtype)
    swap_buffer = scratch(ws, name + ".swap", (m, min(chunk, n_rows)), np.uint64)
    span_buffer = scratch(ws, name + ".span", (m, min(chunk, n_rows)), np.uint64)
    offsets = steps + np.arange(0, min(chunk, n_rows) * width, width, dtype=np.uint64)
    for start in range(0, n_rows, chunk):
        stop = min(start + chunk, n_rows)
        rows = stop - start
        perm = perm_buffer[:rows]
        perm[:] = identity
        flat = perm.reshape(-1)
        # swap_with[t, row] = flat position of r_t = row * width + t + below(draw, size - t)
        span = np.subtract(sizes[start:stop], steps, out=span_buffer[:, :rows])
        swap_with = np.multiply(draws[:, start:stop], span, out=swap_buffer[:, :rows])
        swap_with >>= _SHIFT32
        swap_with += offsets[:, :rows]
        swap_with = swap_with.view(np.int64)
        chosen = out[:, start:stop]
        for t in range(m):
            at_r = swap_with[t]
            # perm[t] is final after step t and never read again: write it to the output only.
            # mode="clip" (a no-op: positions are in range) spares numpy's buffered bounds check
            flat.take(at_r, out=chosen[t], mode="clip")
            flat.put(at_r, perm[:, t], mode="clip")
    return out


def _choose_sparse(sizes: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """Row-major (draws (R, m) -> (R, m)) twin of `_choose_dense`, tracking only touched positions.

    `head` holds perm[0..m-1]. A position p >= m that a swap touched is recorded once, as
    (moved_pos[s], moved_val[s]) in the column s of the step that first touched it; an untouched
    position p still holds p.
    """
    n_rows, m = draws.shape
    rows = np.arange(n_rows)
    head = np.broadcast_to(np.arange(m, dtype=np.int64), (n_rows, m)).copy()
    moved_pos = np.full((n_rows, m), -1, dtype=np.int64)
    moved_val = np.empty((n_rows, m), dtype=np.int64)
    for t in range(m):
        r = t + below(draws[:, t], sizes - t)
        old_t = head[:, t].copy()
        in_head = r < m
        hit = moved_pos[:, :t] == r[:, None]
        was_moved = hit.any(axis=1)
        slot = np.where(was_moved, hit.argmax(axis=1) if t else 0, t)
        value_r = np.where(
            in_head,
            head[rows, np.minimum(r, m - 1)],
            np.where(was_moved, moved_val[rows, slot], r),
        )
        # write perm[r] = old perm[t]: into the head, or into the record of position r
        head_rows = rows[in_head]
        head[head_rows, r[in_head]] = old_t[in_head]
        tail = ~in_head
        moved_pos[rows[tail], slot[tail]] = r[tail]
        moved_val[rows[tail], slot[tail]] = old_t[tail]
        head[:, t] = value_r
    return head
