"""The part head: a decoder over the backbone's stride-2 ... 16 stages, and its loss."""

from __future__ import annotations

import pytest
import torch

from benchmark.models.backbones import build_backbone
from benchmark.models.part_head import (
    N_SLOTS,
    PartSegHead,
    part_head_for,
    part_seg_loss,
    stage_inputs,
)

TINY = "test_resnet"


def test_the_head_reads_the_stride_2_to_16_stages_and_decodes_at_stride_2():
    backbone = build_backbone(TINY, image_size=64)
    head = part_head_for(backbone.model)
    strides = backbone.stage_strides()
    assert sorted({strides[i] for i in head.stage_indices}) == [2, 4, 8, 16]
    assert stage_inputs(head) == head.stage_indices
    with torch.no_grad():
        _, _, _, logits = backbone.part_features(torch.zeros(3, 3, 64, 64), None, head.eval())
    assert logits.shape == (3, N_SLOTS + 1, 32, 32)


def test_the_head_refuses_maps_that_do_not_match_its_stages():
    head = PartSegHead(8, stage_channels=(4,), stage_indices=(0,))
    with pytest.raises(ValueError, match="reads 2 maps, got 1"):
        head(torch.zeros(1, 8, 2, 2))
    with pytest.raises(ValueError, match="channels"):
        head(torch.zeros(1, 8, 2, 2), torch.zeros(1, 5, 4, 4))
    assert head(torch.zeros(1, 8, 2, 2), torch.zeros(1, 4, 4, 4)).shape == (1, N_SLOTS + 1, 4, 4)


def test_a_head_without_stage_indices_reads_the_last_map_alone():
    plain = torch.nn.Conv2d(8, N_SLOTS + 1, 1)
    assert stage_inputs(plain) == ()
    assert stage_inputs(PartSegHead(8)) == ()


def test_the_loss_weighs_rare_slots_up():
    labels = torch.full((1, 8, 8), N_SLOTS)  # background
    labels[0, :2, :2] = 0  # 4 of 64 pixels: Head
    all_background = torch.zeros(1, N_SLOTS + 1, 8, 8)
    all_background[:, N_SLOTS] = 10.0  # confident background everywhere: misses the head
    right = all_background.clone()
    right[0, :, :2, :2] = 0.0
    right[0, 0, :2, :2] = 10.0
    assert part_seg_loss(right, labels) < 1e-3
    # unweighted, the 4 missed pixels cost 4/64 of 10 nats: the weights (Head 1/16 of the
    # pixels, so sqrt(15) times the background's) make the miss cost 1.59 times that
    unweighted = 10.0 * 4 / 64
    torch.testing.assert_close(
        part_seg_loss(all_background, labels),
        torch.tensor(unweighted * 2 * 4 / (4 + (16 / 15) ** 0.5)),
        rtol=1e-3,
        atol=0,
    )
