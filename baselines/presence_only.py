"""presence_only: a leak probe that scores queries from part-slot presence alone.

It reads no pixel feature: only `part_present`, which slots an image's part masks mark present.
Per class, the prototype is the mean 0/1 presence vector of its support images; a query scores
-squared Euclidean distance between its presence vector and each prototype.

What it measures depends on where presence comes from (the run's annotation protocol, see
results.protocols):
- masks "oracle" (protocol "all"): the queries' annotations. PartImageNet's part set differs per
  super-category, so presence alone names a query's super-category: the score shows how much a
  test-time annotation leaks, with no image understanding at all.
- masks "predicted" / "support-oracle" (protocols "none" / "support"): the part head's presence on
  the queries, so it measures what the head's presence says about the class.
"""

from __future__ import annotations

import torch

from baselines.base import EpisodeFeatures, Learner, check_support, class_means
from baselines.part_protonet import _margin_shares
from baselines.registry import register


@register
class PresenceOnly(Learner):
    """Nearest mean presence vector: (B, n, S) 0/1 presence -> (B, m, N) scores."""

    name = "presence_only"
    paper = "diagnostic (this benchmark): nearest class-mean part-slot presence, no pixel feature"
    uses_parts = True

    def __init__(self) -> None:
        self.prototypes: torch.Tensor | None = None  # (B, N, S) mean presence per class
        self.contributions: torch.Tensor | None = None  # (B, S) margin shares of last predict()

    def fit(self, support: EpisodeFeatures, labels: torch.Tensor, n_way: int) -> PresenceOnly:
        check_support(support, labels, n_way, self.name)
        self.prototypes = class_means(_presence(support, self.name), labels, n_way)
        return self

    def predict(self, query: EpisodeFeatures) -> torch.Tensor:
        """(B, m, N) = -||presence(q) - mean presence(c)||^2, a sum of one term per slot."""
        prototypes = self._fitted("prototypes")
        present = _presence(query, self.name)  # (B, m, S)
        terms = (present.unsqueeze(2) - prototypes.unsqueeze(1)).square()  # (B, m, N, S)
        total = terms.sum(-1)
        self.contributions = _margin_shares(terms, torch.ones_like(terms), total)
        return -total

    def part_contributions(self) -> torch.Tensor | None:
        """(B, S): each slot's share of the last predict()'s top-1 vs runner-up margin."""
        return self.contributions


def _presence(features: EpisodeFeatures, learner: str) -> torch.Tensor:
    """(B, n, S) float32 presence; only `part_present` is read (never an embedding)."""
    if features.part_present is None:
        raise ValueError(
            f"{learner}: needs part_present (features with part pooling enabled; "
            "its part_embeddings are never read)"
        )
    present = features.part_present
    if present.dim() != 3:
        raise ValueError(f"{learner}: part_present must be (B, n, S), got {tuple(present.shape)}")
    return present.to(torch.float32)


@register
class PredictedPresenceOnly(PresenceOnly):
    name = "presence_only_predicted"
    paper = "diagnostic (this benchmark): presence_only over the part head's masks (protocol none)"
    own_masks = "predicted"


@register
class OraclePresenceOnly(PresenceOnly):
    name = "presence_only_oracle"
    paper = (
        "diagnostic (this benchmark): presence_only over every image's annotated masks, the "
        "queries' included (protocol all): what a test-time annotation leaks"
    )
    own_masks = "oracle"
