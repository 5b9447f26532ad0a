"""Run image-level learners (baselines.ImageLearner): episode pixels in, per-query predictions out.

One episode at a time: its support and query images are loaded (resized as the backbone's
eval transform does, normalised on the device), the learner is seeded with the episode's own
seed, and fit and predict run on the run's device under its precision (autocast). Part masks
of the support images are loaded only for learners that set `uses_masks`. The learner gets the
backbone as an `EmbeddingNet`: images (n, 3, H, W) -> the pooled embeddings (n, D) that
feature learners see, with `last_stage()` naming the timm model's last stage.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from baselines.image_learner import ImageLearner
from baselines.seeding import episode_seeds
from benchmark.evaluation.feature_learners import EvaluatedEpisodes, Predictions
from benchmark.evaluation.guard import LearnerFailure, checked_scores
from benchmark.features.images import SplitTransform
from benchmark.models.backbones import Backbone, trunk_features
from benchmark.models.device import autocast, resolve_precision
from episodes.episode import Episode
from episodes.source import EpisodeSource

IMAGE_CACHE = 4096  # decoded images kept in memory (uint8, at the model's input size)


class EmbeddingNet(nn.Module):
    """A timm model as images (n, 3, H, W) -> pooled embeddings (n, D) (benchmark.models.backbones)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return trunk_features(self.model, images)[1]

    def last_stage(self) -> nn.Module:
        """The last top-level child of the model that holds parameters (a ResNet's layer4, a
        ViT's final norm: for transformers fine-tune more than this)."""
        with_params = [m for m in self.model.children() if any(True for _ in m.parameters())]
        if not with_params:
            raise ValueError(f"{type(self.model).__name__} has no child module with parameters")
        return with_params[-1]


class EpisodeImages:
    """Pixels (and part masks) of dataset images as the backbone's normalised inputs."""

    def __init__(self, dataset, backbone: Backbone, device: torch.device) -> None:
        self.dataset, self.device = dataset, device
        self.split = SplitTransform.of(backbone.transform)
        self.transform = backbone.transform
        self.size = backbone.image_size
        self._pixels = functools.lru_cache(maxsize=IMAGE_CACHE)(self._load)

    def _load(self, index: int) -> torch.Tensor:
        image = self.dataset.load_image(index)
        return self.split(image) if self.split is not None else self.transform(image)

    def images(self, indices: Sequence[int]) -> torch.Tensor:
        """(n, 3, H, W) float32 normalised images on the device."""
        batch = torch.stack([self._pixels(int(i)) for i in indices]).to(self.device)
        return self.split.normalise(batch) if self.split is not None else batch

    def masks(self, indices: Sequence[int]) -> torch.Tensor:
        """(n, S, H, W) bool part-slot masks at the input size (nearest resize of the originals)."""
        resized = [
            F.interpolate(
                torch.from_numpy(self.dataset.slot_masks(int(i)))[None].float(),
                size=self.size,
                mode="nearest",
            )[0]
            > 0.5
            for i in indices
        ]
        return torch.stack(resized).to(self.device)


def predict_image_episode(
    learner: ImageLearner,
    episode: Episode,
    images: EpisodeImages,
    net: nn.Module,
    precision: torch.dtype,
    *,
    run_seed: int = 0,
    learner_name: str | None = None,
) -> Predictions:
    """Fit `learner` on one episode's support images and predict its queries (way-major).

    Returns Predictions with labels/predicted (1, n_query_total) and no part contributions.
    """
    support = [i for way in episode.support for i in way]
    query = [i for way in episode.query for i in way]
    shots = torch.tensor([len(way) for way in episode.support])
    labels = torch.arange(episode.n_way).repeat_interleave(shots).to(images.device)
    if learner.stochastic:
        learner.seed_episode(
            int(episode_seeds(run_seed, learner_name or learner.name, [episode.index])[0])
        )
    masks = images.masks(support) if learner.uses_masks else None
    with autocast(images.device, precision):
        learner.fit(images.images(support), labels, episode.n_way, net, masks=masks)
        with torch.no_grad():
            scores = learner.predict(images.images(query))
    scores = checked_scores(
        scores, (len(query), episode.n_way), learner_name or learner.name, [episode.index]
    )
    query_labels = np.repeat(np.arange(episode.n_way), [len(way) for way in episode.query])
    return Predictions(
        labels=query_labels[None],
        predicted=scores.argmax(-1).cpu().numpy()[None],
        contributions=None,
    )


class UnchangedBackbone:
    """The shared backbone's weights and buffers as the run loaded them, to check after every
    image-learner episode (a learner must fine-tune a copy: baselines.ImageLearner)."""

    def __init__(self, net: nn.Module) -> None:
        self.net = net
        self.state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        self.requires_grad = [p.requires_grad for p in net.parameters()]

    def check(self, learner: str, episode: int) -> None:
        """Put back eval mode and requires_grad (harmless to restore); LearnerFailure naming the
        first changed tensor if a weight or buffer (BatchNorm statistics) changed or vanished."""
        self.net.eval()
        for parameter, flag in zip(self.net.parameters(), self.requires_grad):
            parameter.requires_grad_(flag)
        now = self.net.state_dict()
        changed = next(
            (k for k, v in self.state.items() if k not in now or not torch.equal(now[k], v)),
            None,
        )
        if changed is None and len(now) == len(self.state):
            return
        if changed is None:
            changed = next(k for k in now if k not in self.state)
        self.net.load_state_dict(self.state, strict=False)
        raise LearnerFailure(
            f"learner {learner!r} changed the shared backbone in place at episode {episode} "
            f"({changed!r}): every later episode and learner would see the change; deep-copy "
            "the backbone before fine-tuning it (as baselines' finetune does)"
        )


class ImageEvaluator:
    """What a run needs to evaluate image learners: the episodes' pixels, the backbone as an
    EmbeddingNet, and the run's precision. Made only when a run has an image learner."""

    def __init__(
        self, dataset, backbone: Backbone, device: torch.device, precision: str, run_seed: int
    ) -> None:
        self.images = EpisodeImages(dataset, backbone, device)
        self.net = EmbeddingNet(backbone.model).to(device).eval()
        self.precision = resolve_precision(precision, device)
        self.run_seed = run_seed
        self._guard = UnchangedBackbone(self.net)

    def episode(self, learner: ImageLearner, episode: Episode, learner_name: str) -> Predictions:
        """One episode; LearnerFailure (and nothing recorded) if the learner changed the
        shared backbone in place, since every later episode and learner would see the change."""
        predictions = predict_image_episode(
            learner,
            episode,
            self.images,
            self.net,
            self.precision,
            run_seed=self.run_seed,
            learner_name=learner_name,
        )
        self._guard.check(learner_name, episode.index)
        return predictions

    def positions(
        self, learner: ImageLearner, source: EpisodeSource, positions: list[int], learner_name: str
    ) -> EvaluatedEpisodes:
        """The one episode at `positions` (len 1) of `source`, as evaluate.predict_positions."""
        (position,) = positions
        episode = source.episode(position)
        shots = {len(way) for way in episode.support}
        return EvaluatedEpisodes(
            self.episode(learner, episode, learner_name),
            np.array([episode.index]),
            np.array([episode.classes]),
            shots.pop() if source.batched and len(shots) == 1 else None,
        )
