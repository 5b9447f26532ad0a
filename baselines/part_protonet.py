"""Part-pooled ProtoNet: one prototype per part slot per class, plus the global prototype.

This benchmark's part-aware extension of ProtoNet (Snell et al. 2017, arXiv:1703.05175), over
PartImageNet's part slots. Per class c and slot s the prototype is the mean of the slot's pooled
embedding over the support images of c where the slot is present. The distance of query q to
class c is a weighted mean of T = S + 1 squared Euclidean terms: each slot present in q and in at
least one support image of c, and always the global embedding:

    dist(q, c) = sum_t w_t v_t(q, c) d_t(q, c) / sum_t w_t v_t(q, c),   score = -dist

(v_t: 1 when term t is available for the pair). The mean (not the sum) keeps classes with more
visible parts from being pushed away. Weights are fixed (`weighting="fixed"`: `global_weight`,
`part_weight`) or fitted per episode on the support set by leave-one-out (`weighting="loo"`):
each term's weight is floor + its LOO nearest-prototype accuracy above chance, rescaled to
[floor, 1 + floor]; a term with no LOO evidence (1-shot) keeps its fixed weight.

Term scale (`normalize`). By default (`"l2"`) every embedding, the global one and each slot's, is
L2-normalised before the prototypes are taken (the L2N step of SimpleShot, Wang et al. 2019,
arXiv:1911.04623), so every term is a squared distance between unit vectors (or to a mean of
them), in [0, 4]. Why: raw slot embeddings, pooled over few cells, have larger and noisier norms
than the global one, so their terms dominate the mean; `"none"` keeps that raw formulation. The
study that chose the rule, with its measurements, is in docs/learners.md.

Which masks made the part features (oracle, predicted, or oracle on the support set and predicted
on the queries) is decided by the harness that pools them, which also records it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from baselines.base import (
    EpisodeFeatures,
    Learner,
    check_support,
    class_means,
    one_hot,
    squared_euclidean,
    to_compute,
)
from baselines.registry import register

WEIGHTINGS = ("fixed", "loo")
NORMALIZATIONS = ("l2", "none")  # per-embedding scaling applied before any prototype
LOO_FLOOR = 0.05  # keeps every term (and so every denominator) alive under LOO weighting


@register
class PartProtoNet(Learner):
    """Slot prototypes + global prototype, combined by a weighted mean of squared distances."""

    name = "part_protonet"
    paper = (
        "Snell et al. 2017 (arXiv:1703.05175) with part-pooled prototypes per part slot "
        "(this benchmark)"
    )
    uses_parts = True
    default_weighting = "fixed"

    def __init__(
        self,
        global_weight: float = 1.0,
        part_weight: float | Sequence[float] = 1.0,
        weighting: str | None = None,
        normalize: str = "l2",
    ) -> None:
        weighting = self.default_weighting if weighting is None else weighting
        if normalize not in NORMALIZATIONS:
            raise ValueError(
                f"{self.name}: normalize must be one of {NORMALIZATIONS}, got {normalize!r}"
            )
        if weighting not in WEIGHTINGS:
            raise ValueError(
                f"{self.name}: weighting must be one of {WEIGHTINGS}, got {weighting!r}"
            )
        if not global_weight > 0:
            raise ValueError(
                f"{self.name}: global_weight must be > 0 (it keeps every query-class "
                f"distance defined), got {global_weight}"
            )
        parts = torch.as_tensor(part_weight, dtype=torch.float32).flatten()
        if bool((parts < 0).any()):
            raise ValueError(f"{self.name}: part_weight must be >= 0, got {part_weight}")
        self.global_weight = float(global_weight)
        self.part_weight = parts  # (1,) or (S,)
        self.weighting = weighting
        self.normalize = normalize
        self.n_way: int | None = None
        self.global_prototypes: torch.Tensor | None = None  # (B, N, D)
        self.slot_prototypes: torch.Tensor | None = None  # (B, N, S, D)
        self.slot_counts: torch.Tensor | None = None  # (B, N, S) support images with the slot
        self.weights: torch.Tensor | None = None  # (B, T) term weights, slots then global
        self.contributions: torch.Tensor | None = None  # (B, T) margin shares of last predict()

    def fit(self, support: EpisodeFeatures, labels: torch.Tensor, n_way: int) -> "PartProtoNet":
        check_support(support, labels, n_way, self.name)
        support = self._scaled(support)
        parts, present = _parts(support, self.name)
        onehot = one_hot(labels, n_way)  # (B, n, N)
        per_slot = onehot.unsqueeze(-1) * present.unsqueeze(2)  # (B, n, N, S)
        self.slot_counts = per_slot.sum(1)  # (B, N, S)
        sums = torch.einsum("bncs,bnsd->bcsd", per_slot, parts)
        self.slot_prototypes = sums / self.slot_counts.clamp_min(1.0).unsqueeze(-1)
        self.global_prototypes = class_means(to_compute(support.embeddings), labels, n_way)
        self.n_way = n_way
        self.weights = self._fixed_weights(parts.shape[0], parts.shape[2], parts.device)
        if self.weighting == "loo":
            self.weights = self._loo_weights(support, labels, self.weights)
        return self

    def predict(self, query: EpisodeFeatures) -> torch.Tensor:
        """(B, n_query, N) = -(weighted mean of the available slot and global distances)."""
        weights = self._fitted("weights")
        dist, valid = self._term_distances(self._scaled(query))  # (B, m, N, T) each
        terms = weights[:, None, None, :] * valid * dist
        weight_valid = weights[:, None, None, :] * valid
        total = terms.sum(-1) / weight_valid.sum(-1)  # (B, m, N)
        self.contributions = _margin_shares(terms, weight_valid, total)
        return -total

    def part_contributions(self) -> torch.Tensor | None:
        """(B, S): per episode, the share of the summed top-1 vs runner-up distance margin of the
        last predict()'s queries owed to each slot (the global term takes the rest; shares of a
        slot that argued for the runner-up are negative)."""
        return None if self.contributions is None else self.contributions[:, :-1]

    def _scaled(self, features: EpisodeFeatures) -> EpisodeFeatures:
        """`features` with every global and slot embedding L2-normalised (normalize="l2") so the
        terms share one scale, or unchanged (normalize="none"). An all-zero embedding stays 0."""
        if self.normalize == "none":
            return features
        parts = features.part_embeddings
        return EpisodeFeatures(
            torch.nn.functional.normalize(to_compute(features.embeddings), dim=-1),
            None if parts is None else torch.nn.functional.normalize(to_compute(parts), dim=-1),
            features.part_present,
        )

    def _fixed_weights(self, b: int, s: int, device: torch.device) -> torch.Tensor:
        if self.part_weight.numel() not in (1, s):
            raise ValueError(
                f"{self.name}: part_weight has {self.part_weight.numel()} values but "
                f"the features have S={s} part slots; give one value or S values"
            )
        slots = self.part_weight.to(device).expand(s)
        row = torch.cat([slots, slots.new_tensor([self.global_weight])])
        return row.expand(b, s + 1).clone()

    def _term_distances(self, query: EpisodeFeatures) -> tuple[torch.Tensor, torch.Tensor]:
        """Squared distances (B, m, N, T) of queries to the slot and global prototypes, and the
        0/1 availability (B, m, N, T) of each term (global always available)."""
        parts, present = _parts(query, self.name)
        protos = self._fitted("slot_prototypes")  # (B, N, S, D)
        b, m, s, _ = parts.shape
        if protos.shape[2] != s or protos.shape[0] != b:
            raise ValueError(
                f"{self.name}: query has (B, S) = ({b}, {s}) but fit() saw "
                f"({protos.shape[0]}, {protos.shape[2]})"
            )
        # One batched distance per slot (a loop over the S slots, not over episodes): each slot's
        # (B, m, D) block is made contiguous on its own, 1/S of the query parts at a time, so the
        # matmul runs on BLAS-friendly memory without a transposed copy of all of them.
        slot_dist = torch.stack(
            [
                squared_euclidean(parts[:, :, slot].contiguous(), protos[:, :, slot].contiguous())
                for slot in range(s)
            ],
            -1,
        )  # (B, m, N, S)
        slot_valid = present.unsqueeze(2) * (self.slot_counts > 0).unsqueeze(1).float()
        global_dist = squared_euclidean(to_compute(query.embeddings), self.global_prototypes)
        dist = torch.cat([slot_dist, global_dist.unsqueeze(-1)], -1)
        valid = torch.cat([slot_valid, torch.ones_like(global_dist).unsqueeze(-1)], -1)
        return dist, valid

    def _loo_weights(
        self, support: EpisodeFeatures, labels: torch.Tensor, prior: torch.Tensor
    ) -> torch.Tensor:
        """(B, T) weights from each term's leave-one-out nearest-prototype accuracy."""
        dist, valid = self._term_distances(support)  # (B, n, N, T): support as pseudo-queries
        global_counts = one_hot(labels, self.n_way).sum(1)  # (B, N)
        counts = torch.cat([self.slot_counts, global_counts.unsqueeze(-1)], -1)  # (B, N, T)
        own = one_hot(labels, self.n_way).unsqueeze(-1).bool()  # (B, n, N, 1)
        own_count = counts.unsqueeze(1).expand_as(dist)  # (B, n, N, T)
        # Leaving x out of its own class's mean m: x - m' = n/(n-1) (x - m), so d' = (n/(n-1))^2 d.
        scale = (own_count / (own_count - 1).clamp_min(1.0)) ** 2
        dist = torch.where(own, dist * scale, dist)
        valid = valid.bool() & ~(own & (own_count <= 1))
        present = (valid & own).any(2)  # (B, n, T): the image has the term and its class survives
        guess = dist.masked_fill(~valid, float("inf")).argmin(2)  # (B, n, T)
        correct = (guess == labels.unsqueeze(-1)) & present
        evaluated = present.sum(1)  # (B, T)
        accuracy = correct.sum(1) / evaluated.clamp_min(1)
        chance = 1.0 / self.n_way
        fitted = LOO_FLOOR + (accuracy - chance).clamp_min(0.0) / (1.0 - chance)
        return torch.where(evaluated > 0, fitted, prior)


@register
class PartProtoNetLOO(PartProtoNet):
    """Part-pooled ProtoNet with term weights fitted per episode by leave-one-out on the support."""

    name = "part_protonet_loo"
    default_weighting = "loo"


def _parts(features: EpisodeFeatures, learner: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, n, S, D) float32 part embeddings and (B, n, S) float32 0/1 presence, checked."""
    if features.part_embeddings is None or features.part_present is None:
        raise ValueError(
            f"{learner}: needs part_embeddings and part_present (features with "
            f"part pooling enabled)"
        )
    parts, present = features.part_embeddings, features.part_present
    if parts.dim() != 4 or present.shape != parts.shape[:3]:
        raise ValueError(
            f"{learner}: part_embeddings must be (B, n, S, D) and part_present "
            f"(B, n, S); got {tuple(parts.shape)} and {tuple(present.shape)}"
        )
    return to_compute(parts), present.to(torch.float32)


def _margin_shares(
    terms: torch.Tensor, weight_valid: torch.Tensor, total: torch.Tensor
) -> torch.Tensor:
    """(B, T) share of the summed margin dist(runner-up) - dist(top) owed to each term.

    terms: (B, m, N, T) w v d; weight_valid: (B, m, N, T) w v; total: (B, m, N) weighted means.
    """
    per_class = terms / weight_valid.sum(-1, keepdim=True)  # each term's part of dist(q, c)
    if total.shape[-1] < 2:
        return per_class.new_zeros(per_class.shape[0], per_class.shape[-1])
    order = total.topk(2, dim=-1, largest=False).indices  # (B, m, 2): top, runner-up
    pick = order.unsqueeze(-1).expand(-1, -1, -1, per_class.shape[-1])
    top, runner_up = per_class.gather(2, pick).unbind(2)  # (B, m, T) each
    margin = (runner_up - top).sum(1)  # (B, T)
    whole = margin.sum(-1, keepdim=True)
    return torch.where(whole > 0, margin / whole.clamp_min(1e-30), torch.zeros_like(margin))
