"""Grid coverage straight from the annotations' run lengths (benchmark.data.masks.rle_counts,
benchmark.features.pooling.run_coverage) against decoding the masks (pycocotools, slot_coverage)."""

from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from benchmark.data.masks import rle_counts
from benchmark.features.images import PartImageDataset
from benchmark.features.pooling import run_coverage, slot_coverage

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools")


def encode(mask: np.ndarray) -> dict:
    return mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))


@pytest.mark.parametrize("seed", range(4))
def test_run_lengths_rebuild_the_mask(seed):
    rng = np.random.default_rng(seed)
    for _ in range(50):
        h, w = (int(v) for v in rng.integers(1, 120, 2))
        mask = rng.random((h, w)) < rng.random()
        if rng.random() < 0.5:  # long runs: large counts, several 5-bit groups, negative deltas
            mask[:] = False
            mask[rng.integers(h) :, rng.integers(w) :] = True
        counts = rle_counts(encode(mask))
        assert counts.sum() == h * w and (counts[1:] > 0).all()
        rebuilt = np.repeat(np.arange(len(counts)) % 2, counts).astype(bool)
        np.testing.assert_array_equal(rebuilt, mask.flatten(order="F"))


@pytest.mark.parametrize("grid", [(1, 1), (2, 2), (4, 4), (3, 5), (7, 2)])
def test_run_coverage_equals_the_decoded_masks_coverage(grid):
    rng = np.random.default_rng(sum(grid))
    for _ in range(20):
        h, w = (int(v) for v in rng.integers(3, 200, 2))
        masks = np.zeros((13, h, w), dtype=bool)
        for slot in rng.choice(13, size=4, replace=False):
            y, x = rng.integers(h), rng.integers(w)
            masks[slot, y : y + rng.integers(1, h), x : x + rng.integers(1, w)] = True
            masks[slot] |= rng.random((h, w)) < 0.02  # specks: many short runs
        runs = {int(s): rle_counts(encode(masks[s])) for s in np.flatnonzero(masks.any((1, 2)))}
        coverage, area = run_coverage(runs, h, w, grid)
        np.testing.assert_allclose(coverage, slot_coverage(masks, grid), atol=2e-6)
        np.testing.assert_allclose(area, masks.reshape(13, -1).mean(axis=1), atol=1e-7)


def test_release_images_take_the_run_path_with_the_same_coverage(tiny_twin_root):
    from benchmark.data.partimagenet import load_partimagenet

    dataset = load_partimagenet(tiny_twin_root)
    indices = dataset.split_indices("test")[:40]
    items = PartImageDataset(dataset, indices, lambda image: image, (4, 4))
    for k, i in enumerate(indices):
        masks = dataset.slot_masks(int(i))
        coverage, area = items._parts(k)
        np.testing.assert_allclose(coverage, slot_coverage(masks, (4, 4)), atol=2e-6)
        np.testing.assert_allclose(area, masks.reshape(13, -1).mean(axis=1), atol=1e-7)
        assert set(np.flatnonzero(area.numpy())) == set(dataset.slot_rles(int(i)))
