"""Features of a set of images: the global embedding and one pooled embedding per part slot
(FeatureSet), and the slots each mask mode has."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from baselines.base import EpisodeFeatures
from benchmark.config.features import GRID_MASK_MODES
from episodes.taxonomy import PART_SLOTS

N_SLOTS = len(PART_SLOTS)
# A slot covering less than 1% of the image is absent, whatever the feature grid: 0.25 of a cell
# of a 7x7 map (224 px, stride 32) is 0.5%, of a 2x2 map (64 px) 6%; one image-level rule keeps
# the set of present slots the same at every stage.
PRESENCE_MIN_AREA = 0.01


def n_slots(masks: str) -> int:
    """S: the part slots the features of mask mode `masks` have (0 for "none")."""
    if masks == "none":
        return 0
    if masks in GRID_MASK_MODES:
        return GRID_MASK_MODES[masks] ** 2
    return N_SLOTS


def slot_names(masks: str) -> tuple[str, ...]:
    """Names of the S slots of mask mode `masks`: PART_SLOTS, or "cell r,c" for a grid."""
    if masks in GRID_MASK_MODES:
        n = GRID_MASK_MODES[masks]
        return tuple(f"cell {r},{c}" for r in range(n) for c in range(n))
    return () if masks == "none" else tuple(PART_SLOTS)


@dataclass
class FeatureSet:
    """Features of a set of dataset images, stored in half precision.

    Attributes:
        embeddings: (n, D) float16 global embedding per image.
        part_embeddings: (n, S, D_part) float16 pooled embedding per part slot (PART_SLOTS
            order, or grid cells), zero where absent; None for masks="none". D_part is the
            part stage's width, D for the last stage.
        part_present: (n, S) bool; None for masks="none".
        image_indices: (n,) int64 dataset image index of each row.
        key: the cache key (sha256) of these features.
        dense: (n, L, D_part) float16 local descriptors (the part-stage map's L = h' * w' cells,
            row-major), or None when not extracted.
    """

    embeddings: torch.Tensor
    part_embeddings: torch.Tensor | None
    part_present: torch.Tensor | None
    image_indices: torch.Tensor
    key: str = ""
    dense: torch.Tensor | None = None
    _lookup: torch.Tensor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        n = self.image_indices.shape[0]
        size = int(self.image_indices.max()) + 1 if n else 0
        lookup = torch.full((size,), -1, dtype=torch.int64, device=self.image_indices.device)
        lookup[self.image_indices] = torch.arange(n, device=self.image_indices.device)
        self._lookup = lookup

    def __len__(self) -> int:
        return self.image_indices.shape[0]

    def rows(self, idx: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Row positions (...,) of dataset image indices of any shape (...)."""
        idx = torch.as_tensor(idx, dtype=torch.int64).to(self._lookup.device)
        inside = (idx >= 0) & (idx < self._lookup.shape[0])
        pos = torch.where(inside, self._lookup[idx.clamp(0, max(self._lookup.shape[0] - 1, 0))], -1)
        if (pos < 0).any():
            missing = torch.unique(idx[pos < 0])[:10].tolist()
            raise KeyError(f"image indices {missing} have no features in this FeatureSet")
        return pos

    def gather(
        self, idx: np.ndarray | torch.Tensor, dtype: torch.dtype = torch.float32
    ) -> EpisodeFeatures:
        """Features of dataset images idx (...) as EpisodeFeatures with embeddings (..., D),
        part_embeddings (..., S, D_part), part_present (..., S) and local_descriptors
        (..., L, D_part), floats cast to `dtype`."""
        pos = self.rows(idx)
        return EpisodeFeatures(
            embeddings=self.embeddings[pos].to(dtype),
            part_embeddings=None
            if self.part_embeddings is None
            else self.part_embeddings[pos].to(dtype),
            part_present=None if self.part_present is None else self.part_present[pos],
            local_descriptors=None if self.dense is None else self.dense[pos].to(dtype),
        )

    def to(self, device: str | torch.device) -> "FeatureSet":
        """A copy with every tensor on `device`."""
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return FeatureSet(
            move(self.embeddings),
            move(self.part_embeddings),
            move(self.part_present),
            move(self.image_indices),
            self.key,
            move(self.dense),
        )
