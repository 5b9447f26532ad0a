"""The feature-extraction settings (the run config's `features` section) and the part-mask modes.

Standard library only: the config checker and `benchmark list` read it without importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass

# Where a run's part masks come from: annotations, the part head, annotations on the support set
# and the part head on the queries (FeatureProvider.gatherers), or no part features at all.
MASK_MODES = ("oracle", "predicted", "support-oracle", "none")
# What one extraction pools over ("support-oracle" combines two extractions).
EXTRACTED_MASK_MODES = ("oracle", "predicted", "none")


@dataclass
class FeaturesConfig:
    """Feature extraction (the run config's `features` section): part masks, batching, device
    and precision."""

    masks: str = "oracle"  # MASK_MODES
    batch_size: int = 64
    num_workers: int = 0
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:N"
    precision: str = "auto"  # benchmark.device.PRECISIONS
