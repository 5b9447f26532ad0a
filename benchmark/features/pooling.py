"""From part masks to the feature grid, and from the grid to slot embeddings: area coverage of
each cell, grid and shuffled controls, coverage-weighted pooling, predicted coverage."""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

from benchmark.features.feature_set import N_SLOTS, PRESENCE_MIN_AREA


@functools.lru_cache(maxsize=256)
def area_weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) float32: the fraction of output cell i's extent that input pixel p covers.

    Cell i spans [i * n_in / n_out, (i + 1) * n_in / n_out) in pixel units, pixel p spans
    [p, p + 1); rows sum to 1. `R_h @ mask @ R_w.T` is the exact area-interpolated mask (the
    fraction of each cell covered), equal to adaptive average pooling when n_out divides n_in.
    """
    edges = np.arange(n_out + 1, dtype=np.float64) * (n_in / n_out)
    pixels = np.arange(n_in, dtype=np.float64)
    ends = np.minimum(edges[1:, None], pixels[None] + 1)
    starts = np.maximum(edges[:-1, None], pixels[None])
    overlap = np.clip(ends - starts, 0, None)
    return (overlap / (n_in / n_out)).astype(np.float32)


def slot_coverage(masks: np.ndarray, grid: tuple[int, int]) -> torch.Tensor:
    """(S, H, W) bool slot masks -> (S, h, w) float32 fraction of each grid cell covered."""
    s, h_in, w_in = masks.shape
    coverage = np.zeros((s, *grid), dtype=np.float32)
    filled = np.flatnonzero(masks.reshape(s, -1).any(axis=1))  # most slots are empty
    if filled.size:
        # R_h @ mask @ R_w.T by numpy's own einsum loops (optimize=False: no BLAS), on one
        # thread: a matrix product through torch or BLAS would wake a thread pool for this small
        # reduction, which with num_workers=0 runs between forward passes, and on a busy 2-core
        # machine the pool's spinning cost 20-100x the arithmetic
        rows = area_weights(h_in, grid[0])
        cols = area_weights(w_in, grid[1])
        chosen = masks[filled].astype(np.float32)
        banded = np.einsum("ih,fhw->fiw", rows, chosen, optimize=False)
        coverage[filled] = np.einsum("fiw,jw->fij", banded, cols, optimize=False)
    return torch.from_numpy(coverage)


def run_coverage(
    runs: dict[int, np.ndarray], height: int, width: int, grid: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Slot coverage of the grid and slot areas straight from run lengths, no mask decoded.

    runs: slot -> (n,) int64 run lengths of its mask flattened column-major (zeros first, as
    benchmark.data.masks.rle_counts gives them). Returns (coverage (N_SLOTS, h, w) float32, as
    slot_coverage gives for the decoded masks up to float rounding; area (N_SLOTS,) float32).

    A run of ones [s, e) covers, in each column x it crosses, the rows [y0, y1); its share of
    cell (i, j) is R_w[j, x] (C_h[i, y1] - C_h[i, y0]) with C_h the running sum of R_h along y,
    so a run costs three outer products of size (h, w) however long it is.
    """
    coverage = np.zeros((N_SLOTS, *grid), dtype=np.float64)
    area = np.zeros(N_SLOTS, dtype=np.float64)
    rows = area_weights(height, grid[0]).astype(np.float64)  # (h, H)
    cols = area_weights(width, grid[1]).astype(np.float64)  # (w, W)
    cum_rows = np.concatenate([np.zeros((grid[0], 1)), np.cumsum(rows, axis=1)], axis=1)
    cum_cols = np.concatenate([np.zeros((grid[1], 1)), np.cumsum(cols, axis=1)], axis=1)
    for slot, counts in runs.items():
        bounds = np.cumsum(counts)
        starts, ends = bounds[0::2][: len(bounds) // 2], bounds[1::2]
        keep = ends > starts
        starts, ends = starts[keep], ends[keep]
        if not len(starts):
            continue
        area[slot] = (ends - starts).sum() / (height * width)
        x0, y0 = np.divmod(starts, height)
        x1, y1 = np.divmod(ends - 1, height)
        y1 = y1 + 1
        one_column = x0 == x1
        # first column: rows y0 .. (y1 if the run ends there, else the column's end)
        top = cum_rows[:, np.where(one_column, y1, height)] - cum_rows[:, y0]
        total = top @ cols[:, x0].T
        # last column (runs over several columns): rows 0 .. y1
        more = ~one_column
        total += cum_rows[:, y1[more]] @ cols[:, x1[more]].T
        # whole columns between them
        between = cum_cols[:, x1[more]] - cum_cols[:, x0[more] + 1]
        total += np.outer(cum_rows[:, height], between.sum(axis=1))
        coverage[slot] = total
    return torch.from_numpy(coverage.astype(np.float32)), torch.from_numpy(area.astype(np.float32))


def grid_coverage(cells: int, grid: tuple[int, int]) -> torch.Tensor:
    """(cells^2, h, w) float32: the fraction of each feature cell covered by each of the
    cells x cells equal regions of the image (row-major), the "gridN" control's slot masks.

    Region (r, c) is pixel (r, c) of a cells x cells "image", so area_weights gives it exactly:
    coverage[r * cells + c] = R_h[:, r] outer R_w[:, c].
    """
    rows = torch.from_numpy(area_weights(cells, grid[0]))  # (h, cells)
    cols = torch.from_numpy(area_weights(cells, grid[1]))  # (w, cells)
    return torch.einsum("yr,xc->rcyx", rows, cols).reshape(cells * cells, *grid).contiguous()


def shuffled_partners(indices: np.ndarray, seed: int) -> np.ndarray:
    """(n,) the image whose masks each of `indices` borrows under masks="shuffled".

    The images are put in a random order (numpy Generator seeded with `seed`) and each borrows the
    masks of the next one in that cycle, so no image keeps its own masks (n >= 2) and every
    image's masks are used exactly once.
    """
    if len(indices) < 2:
        raise ValueError("masks='shuffled' needs at least 2 images to swap masks between")
    order = np.random.default_rng(seed).permutation(len(indices))
    partners = np.empty(len(indices), dtype=np.int64)
    partners[order] = indices[np.roll(order, -1)]
    return partners


def pool_parts(
    fmap: torch.Tensor, coverage: torch.Tensor, area: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Coverage-weighted mean of a feature map per slot.

    Args:
        fmap: (B, C, h, w) float feature map.
        coverage: (B, S, h, w) fraction of each cell covered by each slot, in [0, 1].
        area: (B, S) fraction of the image each slot covers; default: the mean coverage (equal
            to it for exact area-interpolated masks; the estimate for predicted ones).

    Returns:
        part_embeddings (B, S, C), zero for absent slots; part_present (B, S) bool, true where
        area >= PRESENCE_MIN_AREA.
    """
    mass = coverage.sum(dim=(2, 3))
    area = coverage.mean(dim=(2, 3)) if area is None else area.to(mass.device)
    present = (area >= PRESENCE_MIN_AREA) & (mass > 0)
    pooled = torch.einsum("bshw,bchw->bsc", coverage, fmap) / mass.clamp_min(1e-6)[..., None]
    return torch.where(present[..., None], pooled, torch.zeros_like(pooled)), present


# How predicted_coverage maps a head's logits onto the part grid, in the feature cache's key:
# features pooled under another definition must miss.
PREDICTED_COVERAGE = "softmax, then area-pooled onto a coarser part grid (bilinear onto a finer)"


def predicted_coverage(logits: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """(B, S+1, h', w') part-head logits (background last) -> (B, S, h, w) soft coverage.

    The head is trained against each cell's area coverage per slot (soft targets), so its softmax
    estimates the same quantity the oracle masks give (leaning towards rare slots, as its loss's
    class weights ask); an argmax would hand nearly every cell of a
    small feature map to the background and no part would ever be present. A head grid finer
    than the part grid (the stride-2 decoder on a stride-8 map) is area-pooled after the softmax,
    the coverage of each part cell, as the oracle masks' is; a coarser one is upsampled
    bilinearly before it.
    """
    if logits.ndim != 4 or logits.shape[1] != N_SLOTS + 1:
        raise ValueError(
            f"part_head returned shape {tuple(logits.shape)}; expected (B, {N_SLOTS + 1}, h, w)"
        )
    h, w = logits.shape[-2:]
    if h >= grid[0] and w >= grid[1]:
        return F.adaptive_avg_pool2d(logits.float().softmax(dim=1)[:, :N_SLOTS], grid)
    logits = F.interpolate(logits.float(), size=grid, mode="bilinear", align_corners=False)
    return logits.softmax(dim=1)[:, :N_SLOTS]
