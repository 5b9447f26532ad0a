"""Controls for part_protonet that use no annotation of the image: the same learner over regions
that carry no part information, so `part_protonet - control` on the same episodes says what the
annotations add beyond pooling over local regions.

- part_protonet_grid2 / part_protonet_grid3: the slots are the 2x2 / 3x3 cells of the image.
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

from baselines.part_protonet import PartProtoNet
from baselines.registry import register


class _PartControl(PartProtoNet):
    """part_protonet over the regions of mask mode `own_masks` (not the run's part masks)."""

    own_masks: ClassVar[str]

    def __init__(self, global_weight: float = 1.0, part_weight: float | Sequence[float] = 1.0,
                 weighting: str | None = None, normalize: str = "l2") -> None:
        super().__init__(global_weight, part_weight, weighting, normalize)


@register
class GridProtoNet2(_PartControl):
    name = "part_protonet_grid2"
    paper = "control (this benchmark): part_protonet over the 2x2 cells of the image"
    own_masks = "grid2"


@register
class GridProtoNet3(_PartControl):
    name = "part_protonet_grid3"
    paper = "control (this benchmark): part_protonet over the 3x3 cells of the image"
    own_masks = "grid3"


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
    paper = ("upper bound (this benchmark): part_protonet over every image's annotated part masks, "
             "the queries' included (annotation protocol 'all')")
    own_masks = "oracle"
