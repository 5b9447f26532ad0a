"""Mask quality: per-slot IoU of a part head against the annotations, on the grid and per pixel."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_features import SIZE, TINY, H, W, tiny_dataset

from benchmark.features.feature_set import N_SLOTS
from benchmark.features.mask_quality import (
    IoUCounter,
    MaskQuality,
    coverage_labels,
    measure_mask_quality,
)
from benchmark.models.backbones import build_backbone


class _FixedHead(torch.nn.Module):
    """Ignores the feature map: every image gets the same (S+1, 2, 2) logits."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("logits", logits)

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(fmap.shape[0], -1, -1, -1)


def _quadrant_head() -> _FixedHead:
    """Head (slot 0) in the top-left cell, background in the three others."""
    logits = torch.zeros(N_SLOTS + 1, 2, 2)
    logits[N_SLOTS] = 1.0
    logits[0, 0, 0] = 5.0
    return _FixedHead(logits)


def _constant_head(slot: int) -> _FixedHead:
    logits = torch.zeros(N_SLOTS + 1, 2, 2)
    logits[slot] = 1.0
    return _FixedHead(logits)


def _iou(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """(n, S, ...) bool stacks -> (S,) dataset-level IoU, NaN where both are empty."""
    inter = (pred & true).reshape(pred.shape[0], N_SLOTS, -1).sum((0, 2))
    union = (pred | true).reshape(pred.shape[0], N_SLOTS, -1).sum((0, 2))
    return np.where(union > 0, inter / np.maximum(union, 1), np.nan)


def test_iou_counter_is_intersection_over_union_summed_over_images():
    counter = IoUCounter(n_slots=2)
    # image 1: slot 0 predicted on 2 cells, true on 3 (overlap 2); slot 1 nowhere
    counter.add(
        torch.tensor([[1, 1, 0, 0], [0, 0, 0, 0]], dtype=torch.bool),
        torch.tensor([[1, 1, 1, 0], [0, 0, 0, 0]], dtype=torch.bool),
    )
    # image 2: slot 0 predicted on 1 cell it does not hold; slot 1 nowhere
    counter.add(
        torch.tensor([[0, 0, 0, 1], [0, 0, 0, 0]], dtype=torch.bool),
        torch.tensor([[0, 0, 0, 0], [0, 0, 0, 0]], dtype=torch.bool),
    )
    iou = counter.iou()
    assert iou[0] == pytest.approx(2 / 4)  # (2 + 0) / (3 + 1)
    assert np.isnan(iou[1])
    with pytest.raises(ValueError, match="must both be"):
        counter.add(torch.zeros(3, 4, dtype=torch.bool), torch.zeros(3, 4, dtype=torch.bool))


def test_soft_iou_is_the_sum_of_minima_over_the_sum_of_maxima():
    counter = IoUCounter(n_slots=1)
    counter.add(torch.tensor([[0.5, 0.2, 0.0]]), torch.tensor([[1.0, 0.0, 0.3]]))
    assert counter.iou()[0] == pytest.approx((0.5 + 0 + 0) / (1.0 + 0.2 + 0.3))
    never = IoUCounter(n_slots=1)
    never.add(torch.tensor([[0.1, 0.2]]), torch.tensor([[0.0, 0.0]]))
    assert never.iou()[0] == 0.0 and np.isnan(never.iou(annotated_only=True)[0])


def test_coverage_labels_take_background_as_what_the_slots_leave():
    coverage = torch.zeros(1, N_SLOTS, 1, 3)
    coverage[0, 0, 0, 0] = 0.7  # Head wins over 0.3 background
    coverage[0, 1, 0, 1] = 0.4  # background 0.6 wins
    coverage[0, 1, 0, 2], coverage[0, 2, 0, 2] = 0.5, 0.5  # background 0: first slot wins the tie
    assert coverage_labels(coverage).tolist() == [[[0, N_SLOTS, 1]]]


@pytest.fixture(scope="module")
def setup():
    return tiny_dataset(n=6, seed=3), build_backbone(TINY, image_size=SIZE, seed=0)


def test_grid_iou_matches_a_per_image_reference(setup):
    data, backbone = setup
    quality = measure_mask_quality(
        data, np.arange(6), backbone, part_head=_quadrant_head(), batch_size=4, device="cpu"
    )
    assert quality.grid == (2, 2) and quality.n_images == 6
    # reference: each 24 x 32 pixel cell's covered fraction per slot, arg-maxed with background
    true, pred = [], []
    for m in data.masks:
        cov = m.reshape(N_SLOTS, 2, H // 2, 2, W // 2).mean((2, 4))
        labels = np.concatenate([cov, np.clip(1 - cov.sum(0, keepdims=True), 0, None)]).argmax(0)
        true.append(labels[None] == np.arange(N_SLOTS)[:, None, None])
        p = np.full((2, 2), N_SLOTS)
        p[0, 0] = 0
        pred.append(p[None] == np.arange(N_SLOTS)[:, None, None])
    expected = _iou(np.stack(pred), np.stack(true))
    np.testing.assert_allclose(quality.grid_iou, expected, equal_nan=True)
    assert quality.grid_iou[0] == pytest.approx(1.0)  # the head's quadrant is exactly slot 0's mask
    assert quality.grid_miou == pytest.approx(np.nanmean(expected))
    # soft: the head's softmax coverage against each cell's covered fraction
    prob = _quadrant_head().logits.softmax(0)[:N_SLOTS].numpy()  # (S, 2, 2), every image
    covs = np.stack([m.reshape(N_SLOTS, 2, H // 2, 2, W // 2).mean((2, 4)) for m in data.masks])
    inter = np.minimum(prob[None], covs).sum((0, 2, 3))
    union = np.maximum(prob[None], covs).sum((0, 2, 3))
    annotated = covs.sum((0, 2, 3)) > 0
    np.testing.assert_allclose(
        quality.soft_iou, np.where(annotated, inter / union, np.nan), rtol=1e-5
    )
    assert annotated.sum() == 3 and np.isnan(quality.soft_iou[5])  # Head, Body, Foot only


def test_image_iou_compares_every_pixel_with_the_decoded_masks(setup):
    data, backbone = setup
    body = 1
    quality = measure_mask_quality(
        data, np.arange(6), backbone, part_head=_constant_head(body), batch_size=4, device="cpu"
    )
    masks = np.stack(data.masks)  # (n, S, H, W)
    pred = np.zeros_like(masks)
    pred[:, body] = True
    np.testing.assert_allclose(quality.image_iou, _iou(pred, masks), equal_nan=True)
    # all pixels Body: its IoU is the share of pixels it covers; the other annotated slots get 0
    assert quality.image_iou[body] == pytest.approx(masks[:, body].sum() / masks[:, body].size)
    assert quality.image_iou[0] == 0.0 and np.isnan(quality.image_iou[5])


def test_result_form_is_json_safe_and_names_every_slot(setup):
    data, backbone = setup
    quality = measure_mask_quality(
        data, np.arange(3), backbone, part_head=_quadrant_head(), device="cpu"
    )
    form = quality.to_dict()
    assert form["grid_iou"]["Head"] == 1.0 and form["image_iou"]["Wing"] is None
    assert 0 < form["soft_iou"]["Head"] < 1 and form["soft_miou"] == pytest.approx(
        quality.soft_miou, abs=1e-6
    )
    assert set(form["grid_iou"]) == set(form["image_iou"]) and len(form["grid_iou"]) == N_SLOTS
    rows = quality.rows()
    assert rows[-1]["slot"] == "mIoU" and rows[-1]["iou_grid"] == pytest.approx(
        100 * quality.grid_miou
    )
    assert rows[-1]["iou_soft"] == pytest.approx(100 * quality.soft_miou)


def test_the_table_says_whether_the_pixel_miou_goal_is_reached():
    def quality(image_iou):
        return MaskQuality(
            n_images=1, grid=(2, 2), grid_iou=(0.9,), image_iou=image_iou, soft_iou=(0.9,)
        )

    assert quality((0.6,)).rows()[-1]["pixel_goal"].startswith("reached")
    assert quality((0.2,)).rows()[-1]["pixel_goal"].startswith("NOT reached")
    assert quality((float("nan"),)).pixel_goal().startswith("NOT reached")
