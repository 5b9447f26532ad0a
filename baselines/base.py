"""The learner protocol: fit on a support set, score the queries, many episodes at once.

Every tensor carries a leading episode axis B, so a learner runs a whole stack of same-shape
episodes in one call. Labels are way indices in [0, n_way). Learners compute in float32 whatever
the input dtype (cached features are float16) and return tensors on the input's device.

Randomness: a learner that draws random numbers sets `stochastic = True` and draws only from
`self.episode_generators(B)`, one torch.Generator per episode. The caller (the runner) hands it
the episodes' seeds with `seed_episodes(seeds)` before `fit`, computed by
`baselines.seeding.episode_seeds(run seed, learner name, episode indices)`, so an episode's
result never depends on the batch it ran in.

The helpers at the bottom (`to_compute`, `check_support`, `one_hot`, `class_means`,
`squared_euclidean`) are shared by the learners so each learner file stays a few lines.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from baselines.seeding import episode_seeds, generators

COMPUTE_DTYPE = torch.float32


@dataclass
class EpisodeFeatures:
    """Features of the images of B episodes (support or query side).

    Attributes:
        embeddings: (B, n, D) global embedding per image.
        part_embeddings: (B, n, S, D_part) one pooled embedding per part slot, or None. D_part
            (the width of the map the slots pool over) may differ from D.
        part_present: (B, n, S) bool, whether the part slot is present in the image, or None.
        local_descriptors: (B, n, L, D_part) the feature map's L cells per image (DN4), or None.
    """

    embeddings: torch.Tensor
    part_embeddings: torch.Tensor | None = None
    part_present: torch.Tensor | None = None
    local_descriptors: torch.Tensor | None = None

    @property
    def n_episodes(self) -> int:
        return self.embeddings.shape[0]


class Learner(ABC):
    """A few-shot learner. Subclasses set `name` and `paper`, and implement `fit` and `predict`."""

    name: ClassVar[str]
    paper: ClassVar[str] = ""
    transductive: ClassVar[bool] = False  # predict() may use all queries of an episode jointly
    uses_parts: ClassVar[bool] = False  # needs part_embeddings / part_present
    uses_local_descriptors: ClassVar[bool] = False  # needs local_descriptors (dense maps)
    # the mask mode its part features must be pooled with, whatever the run's features.masks
    # (the annotation-free controls); None: the run's
    own_masks: ClassVar[str | None] = None
    stochastic: ClassVar[bool] = False  # draws random numbers: use episode_generators()
    seed: int = 0  # run seed assumed when the caller gives no per-episode seeds
    # prepare() must see the train split's embeddings before any episode (SimpleShot's mean)
    needs_base_features: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        # A prepare() the runner would never call is a silent wrong number: make it declare itself.
        if "prepare" in vars(cls) and not cls.needs_base_features:
            raise TypeError(
                f"{cls.__qualname__} overrides prepare(); set the class attribute "
                "needs_base_features = True so that runners call it"
            )

    def prepare(self, base_embeddings: torch.Tensor | None) -> None:  # noqa: B027 (optional hook)
        """Hook called once before any episode with the train split's embeddings (n, D) when the
        class declares needs_base_features (SimpleShot)."""

    @abstractmethod
    def fit(self, support: EpisodeFeatures, labels: torch.Tensor, n_way: int) -> "Learner":
        """Fit on B support sets. labels: (B, n_support) int64 in [0, n_way)."""

    @abstractmethod
    def predict(self, query: EpisodeFeatures) -> torch.Tensor:
        """Scores (B, n_query, n_way) for the queries of the B fitted episodes; higher is likelier."""

    def seed_episodes(self, seeds: np.ndarray | torch.Tensor | None) -> None:
        """Seeds (B,) int64 of the next fit()'s B episodes (baselines.seeding.episode_seeds);
        None forgets them. The runner calls it before every fit() of a stochastic learner."""
        self._episode_seeds = (
            None if seeds is None else np.asarray(seeds, dtype=np.int64).reshape(-1)
        )

    def episode_generators(
        self, n_episodes: int, device: str | torch.device = "cpu"
    ) -> list[torch.Generator]:
        """One generator per episode of the current call (B = n_episodes).

        From the seeds given to seed_episodes(); without them (direct use), episode b of the call
        is taken to be episode index b of a run with seed `self.seed`.
        """
        seeds = getattr(self, "_episode_seeds", None)
        if seeds is None:
            seeds = episode_seeds(self.seed, self.name, np.arange(n_episodes))
        if len(seeds) != n_episodes:
            raise ValueError(
                f"{self.name}: seed_episodes() gave {len(seeds)} seeds for a call "
                f"with {n_episodes} episodes"
            )
        return generators(seeds, device)

    def part_contributions(self) -> torch.Tensor | None:
        """(B, S) share of the last predict()'s decision owed to each part slot, if meaningful."""
        return None

    def _fitted(self, attribute: str):
        """The fitted state `attribute`, or a clear error when predict() precedes fit()."""
        value = getattr(self, attribute, None)
        if value is None:
            raise RuntimeError(f"{self.name}: call fit(support, labels, n_way) before predict()")
        return value


def to_compute(x: torch.Tensor) -> torch.Tensor:
    """`x` as float32 on its own device (float16 caches are widened, never computed in half)."""
    return x.to(COMPUTE_DTYPE)


def check_support(support: EpisodeFeatures, labels: torch.Tensor, n_way: int, learner: str) -> None:
    """Raise ValueError unless labels (B, n) match support.embeddings (B, n, D) and every way
    in [0, n_way) has at least one support example in every episode."""
    emb = support.embeddings
    if emb.dim() != 3:
        raise ValueError(f"{learner}: support.embeddings must be (B, n, D), got {tuple(emb.shape)}")
    if labels.shape != emb.shape[:2]:
        raise ValueError(
            f"{learner}: labels must be (B, n_support) = {tuple(emb.shape[:2])}, "
            f"got {tuple(labels.shape)}"
        )
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise ValueError(f"{learner}: labels must be an integer tensor, got {labels.dtype}")
    if n_way < 1:
        raise ValueError(f"{learner}: n_way must be >= 1, got {n_way}")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= n_way):
        raise ValueError(
            f"{learner}: labels must lie in [0, {n_way}), "
            f"got [{int(labels.min())}, {int(labels.max())}]"
        )
    if bool((one_hot(labels, n_way).sum(1) == 0).any()):
        raise ValueError(f"{learner}: every way needs at least one support example per episode")


def one_hot(labels: torch.Tensor, n_way: int) -> torch.Tensor:
    """(B, n) int labels -> (B, n, N) float32 one-hot."""
    return torch.nn.functional.one_hot(labels.long(), n_way).to(COMPUTE_DTYPE)


def class_means(x: torch.Tensor, labels: torch.Tensor, n_way: int) -> torch.Tensor:
    """Per-episode class means: x (B, n, D), labels (B, n) -> (B, N, D), one batched matmul."""
    onehot = one_hot(labels, n_way)  # (B, n, N)
    counts = onehot.sum(1).unsqueeze(-1)  # (B, N, 1)
    return torch.bmm(onehot.transpose(1, 2), x) / counts


def squared_euclidean(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances: a (B, m, D), b (B, N, D) -> (B, m, N), clamped at 0.

    Uses |a|^2 - 2ab + |b|^2 so the cost is one batched matmul (cdist would take a square root);
    the norms come from vector_norm, which reads `a` without allocating an (B, m, D) temporary.
    """
    a_sq = torch.linalg.vector_norm(a, dim=-1, keepdim=True).square_()  # (B, m, 1)
    b_sq = torch.linalg.vector_norm(b, dim=-1).square_().unsqueeze(1)  # (B, 1, N)
    return torch.baddbmm(a_sq + b_sq, a, b.transpose(1, 2), alpha=-2.0).clamp_min_(0.0)
