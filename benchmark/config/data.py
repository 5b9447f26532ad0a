"""The dataset settings (the run config's `data` section): the synthetic twin or the real release."""

from __future__ import annotations

from dataclasses import dataclass, field

DATA_SOURCES = ("synthetic", "partimagenet")


@dataclass
class SyntheticConfig:
    """Parameters of the synthetic twin generated on first use (see `python -m benchmark synth`)."""

    images_per_class: int = 20
    image_size: int = 128
    seed: int = 0
    full: bool = False


@dataclass
class DataConfig:
    """Which dataset (the run config's `data` section): the synthetic twin, or the real
    PartImageNet_OOD release."""

    source: str = "synthetic"  # DATA_SOURCES
    root: str | None = None  # partimagenet: the release folder; synthetic: where to put the twin
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
