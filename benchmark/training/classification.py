"""Standard classification pre-training: a linear head on pooled features, cross-entropy over the
109 train classes; optionally plus the part-segmentation loss (joint part-aware pre-training)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from benchmark.models.part_head import part_seg_loss


def classification_loss(
    outputs: tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None],
    labels: torch.Tensor,
    label_maps: torch.Tensor | None,
    *,
    part_weight: float,
    label_smoothing: float = 0.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Loss of one batch and its parts for logging.

    outputs: TrainingModel's (pooled (B, D), class_logits (B, C) | None, part_logits | None);
    labels (B,) int64; label_maps (B, S, S) int64 pixel slot labels (background last) when the
    part head trains. Without class logits (part head trained after, backbone frozen) only the
    part loss counts.
    """
    _, logits, part_logits = outputs
    stats: dict[str, float] = {}
    loss = torch.zeros((), device=labels.device)
    if logits is not None:
        ce = F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing)
        loss = loss + ce
        stats["ce"] = float(ce.detach())
        stats["acc"] = float((logits.argmax(-1) == labels).float().mean())
    if part_logits is not None:
        if label_maps is None or label_maps.numel() == 0:
            raise ValueError("the part head is training but the batch carries no part masks")
        seg = part_seg_loss(part_logits, label_maps)
        loss = loss + part_weight * seg
        stats["seg"] = float(seg.detach())
    return loss, stats
