"""The learner protocol: fit on a support set, score the queries, many episodes at once.

Every tensor carries a leading episode axis B, so a learner runs a whole stack of same-shape
episodes in one call. Labels are way indices in [0, n_way).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import torch


@dataclass
class EpisodeFeatures:
    """Features of the images of B episodes (support or query side).

    Attributes:
        embeddings: (B, n, D) global embedding per image.
        part_embeddings: (B, n, S, D) one pooled embedding per part slot, or None.
        part_present: (B, n, S) bool, whether the part slot is present in the image, or None.
    """

    embeddings: torch.Tensor
    part_embeddings: torch.Tensor | None = None
    part_present: torch.Tensor | None = None

    @property
    def n_episodes(self) -> int:
        return self.embeddings.shape[0]


class Learner(ABC):
    """A few-shot learner. Subclasses set `name` and `paper`, and implement `fit` and `predict`."""

    name: ClassVar[str]
    paper: ClassVar[str] = ""
    transductive: ClassVar[bool] = False  # predict() may use all queries of an episode jointly
    uses_parts: ClassVar[bool] = False  # needs part_embeddings / part_present

    def prepare(self, base_embeddings: torch.Tensor | None) -> None:
        """Optional hook: see train-split features (n, D) once before any episode (SimpleShot)."""

    @abstractmethod
    def fit(self, support: EpisodeFeatures, labels: torch.Tensor, n_way: int) -> "Learner":
        """Fit on B support sets. labels: (B, n_support) int64 in [0, n_way)."""

    @abstractmethod
    def predict(self, query: EpisodeFeatures) -> torch.Tensor:
        """Scores (B, n_query, n_way) for the queries of the B fitted episodes; higher is likelier."""

    def part_contributions(self) -> torch.Tensor | None:
        """(B, S) share of the last predict()'s decision owed to each part slot, if meaningful."""
        return None
