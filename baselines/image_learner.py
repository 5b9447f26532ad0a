"""The image-level learner protocol: methods that need pixels and the backbone, one episode at a time.

A feature learner (baselines.base.Learner) sees frozen cached embeddings of many episodes at once.
An ImageLearner instead gets the support images of ONE episode and the run's backbone, may
adapt (a copy of) the backbone, and scores the query images:

    learner.seed_episode(seed)                        # the episode's own seed (stochastic learners)
    learner.fit(support_images, labels, n_way, backbone, masks=None)
    scores = learner.predict(query_images)            # (n_query, n_way), higher is likelier

Images are (n, 3, H, W) float32, normalised as the backbone expects, on the run's device; the
caller runs fit and predict under the run's precision (autocast). `backbone` is a torch module
mapping such images to (n, D) embeddings (the same embeddings feature learners see); the learner
must not change it in place: deep-copy it to fine-tune. It may offer `last_stage()`, the
submodule holding its last stage (the runner's does). `masks` are the support images' part
masks, (n, S, H, W) bool in taxonomy.PART_SLOTS order, given only to learners that set
`uses_masks`. This package does not import `benchmark`: the runner does the image loading.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import torch
from torch import nn


class ImageLearner(ABC):
    """A few-shot learner over pixels. Subclasses set `name` and `paper` and implement fit/predict."""

    name: ClassVar[str]
    paper: ClassVar[str] = ""
    transductive: ClassVar[bool] = False  # predict() may use all queries of the episode jointly
    uses_masks: ClassVar[bool] = False  # wants the support images' part masks in fit()
    stochastic: ClassVar[bool] = False  # draws random numbers: use self.generator
    uses_parts: ClassVar[bool] = False  # (feature-learner flag; image learners use uses_masks)
    needs_base_features: ClassVar[bool] = False  # (feature-learner flag: no prepare() here)
    uses_local_descriptors: ClassVar[bool] = False  # (feature-learner flag: no dense maps here)
    own_masks: ClassVar[str | None] = None  # (feature-learner flag: no pooled part features)

    generator: torch.Generator | None = None

    def seed_episode(self, seed: int, device: str | torch.device = "cpu") -> None:
        """Seed the generator of the next episode (baselines.seeding.episode_seeds)."""
        self.generator = torch.Generator(device=device).manual_seed(int(seed))

    @abstractmethod
    def fit(
        self,
        support_images: torch.Tensor,
        labels: torch.Tensor,
        n_way: int,
        backbone: nn.Module,
        masks: torch.Tensor | None = None,
    ) -> "ImageLearner":
        """Fit on one episode: support_images (n, 3, H, W), labels (n,) int64 in [0, n_way)."""

    @abstractmethod
    def predict(self, query_images: torch.Tensor) -> torch.Tensor:
        """Scores (n_query, n_way) of query_images (n_query, 3, H, W); higher is likelier."""

    def _generator(self) -> torch.Generator:
        """The episode's generator; a clear error when a stochastic learner was not seeded."""
        if self.generator is None:
            raise RuntimeError(f"{self.name}: call seed_episode(seed) before fit()")
        return self.generator


def check_images(images: torch.Tensor, labels: torch.Tensor, n_way: int, learner: str) -> None:
    """Raise ValueError unless images (n, 3, H, W) match labels (n,) covering every way."""
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(
            f"{learner}: support images must be (n, 3, H, W), got {tuple(images.shape)}"
        )
    if labels.shape != images.shape[:1] or labels.dtype.is_floating_point:
        raise ValueError(
            f"{learner}: labels must be (n,) = ({images.shape[0]},) integers, "
            f"got {tuple(labels.shape)} {labels.dtype}"
        )
    if n_way < 1 or labels.numel() == 0 or int(labels.min()) < 0 or int(labels.max()) >= n_way:
        raise ValueError(f"{learner}: labels must lie in [0, {n_way})")
    if torch.bincount(labels.long(), minlength=n_way).eq(0).any():
        raise ValueError(f"{learner}: every way needs at least one support image")
