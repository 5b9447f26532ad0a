"""How good predicted part masks are: per-slot IoU of the part head against the annotations.

A run that pools features over *predicted* masks (features.masks: predicted or support-oracle)
publishes a number that depends on the part head; this module measures that head on the images
the run evaluates, so every predicted-mask row carries how good its masks were.

Both sides are reduced to one label per location (a slot index, or background = S) and compared
slot by slot, as in semantic segmentation:
- **grid**: on the part head's own (h, w) cells (its finest stage). The annotation's label of a
  cell is the argmax of its slot coverage with background = 1 - total coverage (what the head is
  trained against); the head's label is the argmax of its softmax.
- **image**: at the image's own resolution. The head's logits are upsampled bilinearly to (H, W)
  and arg-maxed; the annotation is each slot's mask as decoded (slots may overlap there: a pixel
  counts for every slot whose mask holds it).
- **soft**: on the grid, the head's softmax coverage (what predicted-mask features pool with)
  against the annotation's area coverage, intersection = sum of minima, union = sum of maxima,
  over the slots the annotations hold.
  On a coarse map an argmax hands nearly every cell to the background, so the hard IoUs can be 0
  while the soft coverage the features use still overlaps the parts.

IoU_s = (sum over images of |pred_s & true_s|) / (sum of |pred_s | true_s|), the dataset-level
IoU; a slot neither predicted nor annotated anywhere has no IoU (NaN) and is left out of the
mean (mIoU).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from benchmark.features.feature_set import N_SLOTS
from benchmark.features.images import PartImageDataset, SplitTransform
from benchmark.features.pooling import slot_coverage
from benchmark.models.backbones import Backbone
from benchmark.models.device import autocast, resolve_device, resolve_precision
from episodes.taxonomy import PART_SLOTS


class IoUCounter:
    """Running per-slot intersections and unions over many images.

    Masks may be hard (bool) or soft (coverage fractions in [0, 1]); for soft ones the
    intersection is the sum of the element-wise minimum and the union of the maximum (which
    reduce to AND and OR on bool masks)."""

    def __init__(self, n_slots: int = N_SLOTS) -> None:
        self.intersection = np.zeros(n_slots, dtype=np.float64)
        self.union = np.zeros(n_slots, dtype=np.float64)
        self.annotated = np.zeros(n_slots, dtype=np.float64)  # the truth's total mass per slot

    def add(self, predicted: torch.Tensor, truth: torch.Tensor) -> None:
        """predicted, truth: (S, ...) bool or float in [0, 1], one image (or a stack flattened
        into the trailing axes)."""
        if predicted.shape != truth.shape or predicted.shape[0] != len(self.union):
            raise ValueError(
                f"predicted {tuple(predicted.shape)} and truth {tuple(truth.shape)} "
                f"must both be ({len(self.union)}, ...)"
            )
        p, t = predicted.flatten(1).double(), truth.flatten(1).double()
        self.intersection += torch.minimum(p, t).sum(1).cpu().numpy()
        self.union += torch.maximum(p, t).sum(1).cpu().numpy()
        self.annotated += t.sum(1).cpu().numpy()

    def iou(self, annotated_only: bool = False) -> np.ndarray:
        """(S,) float64 IoU per slot; NaN where the slot was neither predicted nor annotated (with
        `annotated_only`, wherever it was never annotated: a soft prediction is never exactly 0,
        so every slot would otherwise count, including those the evaluated images lack)."""
        keep = (self.annotated > 0) if annotated_only else (self.union > 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(keep, self.intersection / np.maximum(self.union, 1e-12), np.nan)


def one_hot_labels(labels: torch.Tensor, n_slots: int = N_SLOTS) -> torch.Tensor:
    """(..., h, w) labels in [0, S] (S = background) -> (S, ..., h, w) bool, background dropped."""
    slots = torch.arange(n_slots, device=labels.device).view(-1, *([1] * labels.dim()))
    return labels.unsqueeze(0) == slots


def coverage_labels(coverage: torch.Tensor) -> torch.Tensor:
    """(B, S, h, w) slot coverage in [0, 1] -> (B, h, w) label of each cell (S = background)."""
    background = (1.0 - coverage.sum(1, keepdim=True)).clamp_min(0.0)
    return torch.cat([coverage, background], dim=1).argmax(1)


# The pixel mIoU a part head must reach before its masks are read as part masks (issue 17's
# goal); the mask-quality table says plainly whether a run's head reaches it.
PIXEL_MIOU_GOAL = 0.5


@dataclass(frozen=True)
class MaskQuality:
    """Per-slot IoU of predicted masks, on the feature grid and at image resolution."""

    n_images: int
    grid: tuple[int, int]
    grid_iou: tuple[float, ...]  # (S,), NaN: slot absent from both sides
    image_iou: tuple[float, ...]
    soft_iou: tuple[float, ...]

    @property
    def grid_miou(self) -> float:
        return _nanmean(self.grid_iou)

    @property
    def image_miou(self) -> float:
        return _nanmean(self.image_iou)

    @property
    def soft_miou(self) -> float:
        return _nanmean(self.soft_iou)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (NaN as null) for result files."""

        def per_slot(values):
            return {
                s: (None if np.isnan(v) else round(float(v), 6)) for s, v in zip(PART_SLOTS, values)
            }

        def mean(v: float) -> float | None:
            return None if np.isnan(v) else round(float(v), 6)

        return {
            "n_images": self.n_images,
            "grid": list(self.grid),
            "grid_miou": mean(self.grid_miou),
            "image_miou": mean(self.image_miou),
            "soft_miou": mean(self.soft_miou),
            "grid_iou": per_slot(self.grid_iou),
            "image_iou": per_slot(self.image_iou),
            "soft_iou": per_slot(self.soft_iou),
        }

    def rows(self) -> list[dict[str, Any]]:
        """One row per slot plus a final 'mIoU' row: slot, iou_grid, iou_image, iou_soft (%)."""
        rows = [
            {"slot": s, "iou_grid": 100 * g, "iou_image": 100 * i, "iou_soft": 100 * f}
            for s, g, i, f in zip(PART_SLOTS, self.grid_iou, self.image_iou, self.soft_iou)
        ]
        rows.append(
            {
                "slot": "mIoU",
                "iou_grid": 100 * self.grid_miou,
                "iou_image": 100 * self.image_miou,
                "iou_soft": 100 * self.soft_miou,
                "pixel_goal": self.pixel_goal(),
            }
        )
        return rows

    def pixel_goal(self) -> str:
        """Whether the head segments well enough to call its masks part masks: "reached" or
        "NOT reached" against PIXEL_MIOU_GOAL, in words (the mask-quality table's last column)."""
        goal = f"pixel mIoU >= {100 * PIXEL_MIOU_GOAL:.0f}"
        if not self.image_miou >= PIXEL_MIOU_GOAL:  # NaN: not reached
            return f"NOT reached ({goal})"
        return f"reached ({goal})"


def _nanmean(values: tuple[float, ...]) -> float:
    arr = np.asarray(values, dtype=np.float64)
    return float(np.nanmean(arr)) if np.isfinite(arr).any() else float("nan")


class _ImagesMasksDataset(PartImageDataset):
    """Model inputs plus each image's full-resolution (S, H, W) bool slot masks."""

    def __getitem__(self, k: int):
        image = super().__getitem__(k)[0]  # (image, coverage, area): the image alone
        masks = np.asarray(self.dataset.slot_masks(int(self.indices[k])), dtype=bool)
        return image, masks


def _collate(items):
    images, masks = zip(*items)
    return torch.stack(images), list(masks)


def measure_mask_quality(
    dataset: Any,
    indices: np.ndarray,
    backbone: Backbone,
    *,
    part_head: nn.Module | None = None,
    batch_size: int = 64,
    num_workers: int = 0,
    device: str | torch.device = "auto",
    precision: str = "auto",
) -> MaskQuality:
    """IoU of the part head's masks against dataset images `indices`' annotations.

    Args:
        dataset: a PartDataset (.load_image, .slot_masks -> (S, H, W) bool).
        indices: (n,) dataset image indices, e.g. the images a run's episodes use.
        backbone: the run's backbone; part_head defaults to the one saved with its checkpoint.
    """
    dev = resolve_device(device)
    dtype = resolve_precision(precision, dev)
    head = part_head if part_head is not None else backbone.part_head()
    split = SplitTransform.of(backbone.transform)
    ds = _ImagesMasksDataset(
        dataset, np.asarray(indices, dtype=np.int64), split or backbone.transform, None
    )
    loader = DataLoader(
        ds, batch_size=batch_size, shuffle=False, num_workers=num_workers, collate_fn=_collate
    )
    on_grid, on_image, soft = IoUCounter(), IoUCounter(), IoUCounter()
    backbone.model.to(dev).eval()
    head.to(dev).eval()
    with torch.inference_mode():
        grid: tuple[int, int] = (0, 0)
        for images, masks in loader:
            images = images.to(dev)
            images = split.normalise(images) if split is not None else images
            with autocast(dev, dtype):
                _, _, _, logits = backbone.part_features(images, None, head)
            logits = logits.float()
            grid = (int(logits.shape[2]), int(logits.shape[3]))  # the head's own grid
            predicted = logits.argmax(1)  # (B, h, w)
            coverage = torch.stack([slot_coverage(m, grid) for m in masks]).to(dev)
            truth = coverage_labels(coverage)
            # (S, B, h, w): the whole batch at once on the grid
            on_grid.add(one_hot_labels(predicted), one_hot_labels(truth))
            soft.add(logits.softmax(1)[:, :N_SLOTS].transpose(0, 1), coverage.transpose(0, 1))
            for b, true_masks in enumerate(masks):
                full = F.interpolate(
                    logits[b : b + 1],
                    size=true_masks.shape[-2:],
                    mode="bilinear",
                    align_corners=False,
                ).argmax(1)[0]
                on_image.add(one_hot_labels(full), torch.from_numpy(true_masks).to(dev))
    return MaskQuality(
        len(ds),
        grid,
        tuple(on_grid.iou().tolist()),
        tuple(on_image.iou().tolist()),
        tuple(soft.iou(annotated_only=True).tolist()),
    )
