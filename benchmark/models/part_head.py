"""The part-segmentation head: a small top-down decoder over a backbone's stages.

It predicts, per cell of its finest input map, which of the 13 generic part slots
(episodes.taxonomy.PART_SLOTS) covers it, or background (the last channel). The features step
turns its softmax/argmax into "predicted" part masks, so no annotation is needed at test time.

The head protocol, shared by this head and any module a caller passes as `part_head`:
`head.stage_indices` (optional, default ()) names the timm `feature_info` entries it reads, finest
first, and `head(last_map, *stage_maps)` maps (B, C, h, w) last feature map plus those stage maps
to (B, S+1, h', w') logits. A head without `stage_indices` reads the last map alone.

Why a decoder: on the last map (2 x 2 cells at 64 px) even a perfect head cannot draw a part,
and a head there scored a pixel mIoU near 0 (docs/parts.md). Fusing the stride-2 ... 16 stages
gives it a 32 x 32 grid at 64 px.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.config.training import PART_HEAD_STRIDES, PART_HEAD_WIDTH
from episodes.taxonomy import PART_SLOTS

N_SLOTS = len(PART_SLOTS)


def _conv_bn_relu(c_in: int, c_out: int, kernel: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class PartSegHead(nn.Module):
    """Top-down fusion (FPN-like) of the last map and finer stage maps -> slot logits.

    Per input a 1x1 projection to `width` channels (+ BN, ReLU); from the last map down, upsample
    to the next finer map, add its projection, conv3x3 + BN + ReLU; a 1x1 classifier at the finest
    grid. With no stage maps it is a projection and a classifier on the last map.

    Args:
        last_channels: C of the last feature map.
        stage_channels: C_i of each stage map, finest first (same order as `stage_indices`).
        stage_indices: the timm feature_info indices of those maps.
    Channel `n_slots` (the last) of the output is background.
    """

    def __init__(
        self,
        last_channels: int,
        stage_channels: Sequence[int] = (),
        stage_indices: Sequence[int] = (),
        width: int = PART_HEAD_WIDTH,
        n_slots: int = N_SLOTS,
    ) -> None:
        super().__init__()
        if len(stage_channels) != len(stage_indices):
            raise ValueError("one channel count per stage index")
        self.stage_indices = tuple(int(i) for i in stage_indices)
        self.in_channels = (*map(int, stage_channels), int(last_channels))
        self.n_slots = n_slots
        self.project = nn.ModuleList(_conv_bn_relu(c, width, 1) for c in self.in_channels)
        self.fuse = nn.ModuleList(_conv_bn_relu(width, width, 3) for _ in self.stage_indices)
        self.classifier = nn.Conv2d(width, n_slots + 1, kernel_size=1)

    @property
    def background(self) -> int:
        return self.n_slots

    def forward(self, last_map: torch.Tensor, *stage_maps: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) last map, then (B, C_i, h_i, w_i) stage maps finest first
        -> (B, n_slots + 1, h_0, w_0) logits at the finest map's grid."""
        maps = (*stage_maps, last_map)
        if len(maps) != len(self.in_channels):
            raise ValueError(f"PartSegHead reads {len(self.in_channels)} maps, got {len(maps)}")
        for m, channels in zip(maps, self.in_channels):
            if m.ndim != 4 or m.shape[1] != channels:
                raise ValueError(
                    f"PartSegHead expects maps with channels {self.in_channels} (finest first, "
                    f"the last map last), got {[tuple(x.shape) for x in maps]}"
                )
        x = self.project[-1](last_map)
        for i in range(len(stage_maps) - 1, -1, -1):
            finer = stage_maps[i]
            x = F.interpolate(x, size=finer.shape[-2:], mode="bilinear", align_corners=False)
            x = self.fuse[i](x + self.project[i](finer))
        return self.classifier(x)


def part_head_for(model: nn.Module) -> PartSegHead:
    """The part head of a timm model: it reads the deepest feature_info stage of each stride in
    PART_HEAD_STRIDES finer than the last map (the last map alone for a model without
    feature_info/forward_intermediates, e.g. an isotropic ViT)."""
    info = getattr(model, "feature_info", None)
    indices: list[int] = []
    if info and hasattr(model, "forward_intermediates"):
        strides = [int(entry["reduction"]) for entry in info]
        last = strides[-1]
        for stride in sorted(set(PART_HEAD_STRIDES)):
            found = [i for i, s in enumerate(strides) if s == stride]
            if found and stride < last:
                indices.append(found[-1])
    channels = [int(model.feature_info[i]["num_chs"]) for i in indices]
    return PartSegHead(int(model.num_features), channels, indices)


def stage_inputs(head: nn.Module) -> tuple[int, ...]:
    """The feature_info indices a part head reads besides the last map (the head protocol)."""
    return tuple(getattr(head, "stage_indices", ()))


def slot_coverage(label_map: torch.Tensor, size: tuple[int, int], n_classes: int) -> torch.Tensor:
    """Per feature-map cell, the fraction of its pixels each slot (and background) covers.

    label_map: (B, H, W) int64 in [0, n_classes) (background = n_classes - 1).
    Returns (B, n_classes, h, w) float, summing to 1 over the class axis: area pooling of the
    one-hot map, the same "area coverage" the oracle part masks give the features step.
    """
    one_hot = F.one_hot(label_map, n_classes).permute(0, 3, 1, 2).float()
    return F.adaptive_avg_pool2d(one_hot, size)


def part_seg_loss(logits: torch.Tensor, label_map: torch.Tensor) -> torch.Tensor:
    """Soft cross-entropy of (B, S+1, h, w) logits against each cell's slot coverage, pooled from
    (B, H, W) pixel labels, each class weighted by the inverse square root of its share of the
    batch's pixels, normalised to a mean of 1 over the classes present (background is most
    pixels; without weights a head that says "background" everywhere is close to the optimum).
    Its softmax so estimates each slot's coverage of a cell, leaning towards the rare slots (the
    weights' point), and its argmax the majority slot."""
    n_classes = logits.shape[1]
    targets = slot_coverage(label_map, tuple(logits.shape[-2:]), n_classes)
    share = targets.mean(dim=(0, 2, 3))  # (S+1,)
    present = share > 0
    # an absent class has no target mass, so its weight is never used; 0 keeps the mean honest
    weight = torch.where(present, share.clamp_min(1e-12).rsqrt(), torch.zeros_like(share))
    weight = weight * present.sum() / weight.sum()
    return F.cross_entropy(logits.float(), targets, weight=weight)


def label_map_from_slot_masks(slot_masks: torch.Tensor) -> torch.Tensor:
    """(..., S, H, W) bool slot masks -> (..., H, W) int64 labels; background = S.

    Where slots overlap, the lowest slot index wins (a fixed, documented tie-break).
    """
    covered = slot_masks.any(dim=-3)
    first = slot_masks.to(torch.uint8).argmax(dim=-3)
    return torch.where(covered, first, torch.full_like(first, slot_masks.shape[-3]))
