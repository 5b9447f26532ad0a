"""The feature-extraction settings (the run config's `features` section) and the part-mask modes.

Standard library only: the config checker and `benchmark list` read it without importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass

# Regions that use no annotation of the image: the 2x2 / 3x3 cells (mask mode -> cells per side)
# and another image's part masks (the controls of docs/parts.md).
GRID_MASK_MODES = {"grid2": 2, "grid3": 3}
CONTROL_MASK_MODES = (*GRID_MASK_MODES, "shuffled")
# Where a run's part masks come from: annotations, the part head, annotations on the support set
# and the part head on the queries (FeatureProvider.gatherers), no part features at all, or a
# control's regions.
MASK_MODES = ("oracle", "predicted", "support-oracle", "none", *CONTROL_MASK_MODES)
# Mask modes whose part masks come (at least on the query side) from the part head.
PREDICTED_MASK_MODES = ("predicted", "support-oracle")
# What one extraction pools over ("support-oracle" combines two extractions).
EXTRACTED_MASK_MODES = ("oracle", "predicted", "none", *CONTROL_MASK_MODES)
# features.part_stage's value for the backbone's last feature map
PART_STAGE_LAST = "last"


@dataclass
class FeaturesConfig:
    """Feature extraction (the run config's `features` section): part masks, batching, device
    and precision."""

    masks: str = "oracle"  # MASK_MODES
    part_stage: int | str = (
        PART_STAGE_LAST  # or the stride of an earlier map the slots pool over (16, 8)
    )
    dense: bool = False  # keep the part-stage maps as local descriptors (DN4); float16
    mask_seed: int = 0  # seed of masks "shuffled" (and of the part_protonet_shuffled control)
    batch_size: int = 64
    num_workers: int = 0
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:N"
    precision: str = "auto"  # benchmark.config.device.PRECISIONS
