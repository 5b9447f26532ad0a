"""The backbone settings (the run config's `backbone` section) and where weights may come from.

Standard library only: the config checker and `benchmark list` read it without importing timm.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# random init | a checkpoint file | timm's pretrained weights from the hub | trained on the train
# split by partbench (benchmark.models.backbones.build_backbone implements each)
WEIGHT_SOURCES = ("random", "file", "hub", "train")


@dataclass
class BackboneConfig:
    """A timm model and where its weights come from."""

    name: str = "resnet10t"
    weights: str = "train"  # WEIGHT_SOURCES
    checkpoint: str | None = None  # weights: file
    image_size: int = 64
    seed: int = 0
    # several training seeds: one backbone per seed, each evaluated on the same episodes, and
    # the spread between seeds reported beside the episode CI (empty: the one `seed` above)
    seeds: list[int] = field(default_factory=list)
