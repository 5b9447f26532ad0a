"""A small part-segmentation head on a backbone's feature map.

It predicts, per feature-map cell, which of the 13 generic part slots (episodes.taxonomy.PART_SLOTS)
covers it, or background (the last channel). The features step turns its softmax/argmax into
"predicted" part masks, so no annotation is needed at test time.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from episodes.taxonomy import PART_SLOTS

N_SLOTS = len(PART_SLOTS)


class PartSegHead(nn.Module):
    """conv3x3 -> BN -> ReLU -> conv1x1: (B, C, h, w) features -> (B, n_slots + 1, h, w) logits.

    Channel `n_slots` (the last) is background. `hidden` defaults to min(256, in_channels).
    """

    def __init__(self, in_channels: int, n_slots: int = N_SLOTS, hidden: int | None = None) -> None:
        super().__init__()
        hidden = hidden or min(256, in_channels)
        self.in_channels = in_channels
        self.n_slots = n_slots
        self.block = nn.Sequential(
            nn.Conv2d(in_channels, hidden, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Conv2d(hidden, n_slots + 1, kernel_size=1)

    @property
    def background(self) -> int:
        return self.n_slots

    def forward(self, feature_map: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) -> (B, n_slots + 1, h, w) logits."""
        if feature_map.ndim != 4 or feature_map.shape[1] != self.in_channels:
            raise ValueError(
                f"PartSegHead expects (B, {self.in_channels}, h, w) features, "
                f"got {tuple(feature_map.shape)}"
            )
        return self.classifier(self.block(feature_map))


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
    (B, H, W) pixel labels. The head's softmax so estimates the coverage of every slot in a cell
    (a small part in a coarse cell still counts), and its argmax the majority slot."""
    targets = slot_coverage(label_map, tuple(logits.shape[-2:]), logits.shape[1])
    return F.cross_entropy(logits.float(), targets)


def label_map_from_slot_masks(slot_masks: torch.Tensor) -> torch.Tensor:
    """(..., S, H, W) bool slot masks -> (..., H, W) int64 labels; background = S.

    Where slots overlap, the lowest slot index wins (a fixed, documented tie-break).
    """
    covered = slot_masks.any(dim=-3)
    first = slot_masks.to(torch.uint8).argmax(dim=-3)
    return torch.where(covered, first, torch.full_like(first, slot_masks.shape[-3]))
