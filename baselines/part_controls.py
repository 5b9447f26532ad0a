"""Controls for part_protonet that use no annotation of the image: the same learner over regions
that carry no part information, so `part_protonet - control` on the same episodes says what the
annotations add beyond pooling over local regions.

- part_protonet_grid2 / part_protonet_grid3: the slots are the 2x2 / 3x3 cells of the image,
  weighted by default so the global term keeps part_protonet's share of the distance.
- part_protonet_foreground(_predicted): one slot, the union of the part masks: background removal
  without part structure.
- part_protonet_shuffled: each image is pooled with the part masks of another image (seeded),
  so the regions have realistic part shapes and areas but say nothing about this image.

A control names the mask mode of the features it must be given (`own_masks`): the harness pools
its features that way whatever `features.masks` says (see benchmark.config.features.MASK_MODES).
The same mechanism gives part_protonet_predicted (the part head's masks), so one run compares
oracle and predicted masks on the same episodes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch

from baselines.base import EpisodeFeatures
from baselines.part_protonet import PartProtoNet, _parts
from baselines.registry import register

# The global term's share of part_protonet's distance with oracle masks on the twin: about 2.6
# slots are present per image, so 1 / (1 + 2.6) ~ 0.28. A grid control's S always-present cells
# at weight 1 would cut that share to 1 / (1 + S) (0.10 for the 3x3 grid); by default the grid
# controls scale their cell weights so the global term keeps part_protonet's share.
PART_GLOBAL_SHARE = 0.28


class _PartControl(PartProtoNet):
    """part_protonet over the regions of mask mode `own_masks` (not the run's part masks)."""

    own_masks: ClassVar[str]

    def __init__(
        self,
        global_weight: float = 1.0,
        part_weight: float | Sequence[float] = 1.0,
        weighting: str | None = None,
        normalize: str = "l2",
    ) -> None:
        super().__init__(global_weight, part_weight, weighting, normalize)


class _GridControl(_PartControl):
    """A grid control whose `cells` always-present slots share the distance with the global
    term as part_protonet's present slots do: each cell's weight is
    global_weight * (1 - global_share) / (global_share * cells). global_share=None: weight
    `part_weight` per cell (the unmatched control)."""

    cells: ClassVar[int]

    def __init__(
        self,
        global_weight: float = 1.0,
        part_weight: float | Sequence[float] | None = None,
        weighting: str | None = None,
        normalize: str = "l2",
        global_share: float | None = PART_GLOBAL_SHARE,
    ) -> None:
        if part_weight is None:
            if global_share is None:
                part_weight = 1.0
            elif not 0 < global_share < 1:
                raise ValueError(
                    f"{self.name}: global_share must lie in (0, 1), got {global_share}"
                )
            else:
                part_weight = global_weight * (1 - global_share) / (global_share * self.cells)
        super().__init__(global_weight, part_weight, weighting, normalize)


@register
class GridProtoNet2(_GridControl):
    name = "part_protonet_grid2"
    paper = (
        "control (this benchmark): part_protonet over the 2x2 cells of the image, cell "
        "weights matched to part_protonet's global-term share"
    )
    own_masks = "grid2"
    cells = 4


@register
class GridProtoNet3(_GridControl):
    name = "part_protonet_grid3"
    paper = (
        "control (this benchmark): part_protonet over the 3x3 cells of the image, cell "
        "weights matched to part_protonet's global-term share"
    )
    own_masks = "grid3"
    cells = 9


@register
class ForegroundProtoNet(PartProtoNet):
    """part_protonet with one slot, the foreground: per image the mean of its present slots'
    (L2-normalised) pooled embeddings, present when any slot is. It pools over the run's part
    masks (oracle or predicted by protocol), so `part_protonet - part_protonet_foreground`
    separates part structure from background removal. The mean is over slots, not pixels (a
    slot-weighted, not area-weighted, union)."""

    name = "part_protonet_foreground"
    paper = (
        "control (this benchmark): part_protonet over one slot, the union of the part masks "
        "(foreground without part structure)"
    )

    def fit(self, support: EpisodeFeatures, labels: torch.Tensor, n_way: int) -> PartProtoNet:
        return super().fit(_foreground(support, self.name), labels, n_way)

    def predict(self, query: EpisodeFeatures) -> torch.Tensor:
        return super().predict(_foreground(query, self.name))

    def part_contributions(self) -> torch.Tensor | None:
        """None: its one slot is no part slot of the taxonomy."""
        return None


@register
class PredictedForegroundProtoNet(ForegroundProtoNet):
    name = "part_protonet_foreground_predicted"
    paper = "control (this benchmark): part_protonet_foreground over the part head's masks"
    own_masks = "predicted"


def _foreground(features: EpisodeFeatures, learner: str) -> EpisodeFeatures:
    """`features` with its S slots merged into one: part_embeddings (B, n, 1, D) the mean of
    the present slots' L2-normalised embeddings, part_present (B, n, 1) any slot present."""
    parts, present = _parts(features, learner)  # (B, n, S, D), (B, n, S)
    unit = torch.nn.functional.normalize(parts, dim=-1) * present.unsqueeze(-1)
    count = present.sum(-1, keepdim=True)  # (B, n, 1)
    merged = unit.sum(2) / count.clamp_min(1.0)  # (B, n, D)
    return EpisodeFeatures(
        features.embeddings, merged.unsqueeze(2), count > 0, features.local_descriptors
    )


@register
class ShuffledPartProtoNet(_PartControl):
    name = "part_protonet_shuffled"
    paper = "control (this benchmark): part_protonet over another image's part masks"
    own_masks = "shuffled"


@register
class PredictedPartProtoNet(_PartControl):
    name = "part_protonet_predicted"
    paper = "part_protonet over the part head's predicted masks (no annotation at test time)"
    own_masks = "predicted"


@register
class OraclePartProtoNet(_PartControl):
    name = "part_protonet_oracle"
    paper = (
        "upper bound (this benchmark): part_protonet over every image's annotated part masks, "
        "the queries' included (annotation protocol 'all')"
    )
    own_masks = "oracle"
