"""ProtoNet (Snell et al. 2017, "Prototypical Networks for Few-shot Learning", NeurIPS):
episodic training loss, episode sources, and the val-episode accuracy used for model selection.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from baselines import get_learner
from benchmark.evaluation.feature_learners import predict_batch
from benchmark.features.feature_set import FeatureSet
from benchmark.training.data import SplitImages
from episodes import EpisodeSampler
from episodes.episode import Episode, EpisodeBatch
from episodes.taxonomy import class_splits


@dataclass(frozen=True)
class EpisodeSpec:
    """Shape and count of a set of episodes (all ways have k_shot support, n_query query images)."""

    n_way: int = 5
    k_shot: int = 5
    n_query: int = 10
    n_episodes: int = 200

    def as_dict(self) -> dict:
        return asdict(self)


def episode_sampler(labels: Sequence[str], *, seed: int, split: str, spec: EpisodeSpec):
    """episodes.EpisodeSampler over the classes of `split` that the dataset holds (a twin or a
    subset may lack some of the split's classes)."""
    splits = class_splits()
    present = {s: splits[s] for s in sorted(set(np.asarray(labels).tolist())) if s in splits}
    return EpisodeSampler(
        list(labels),
        seed=seed,
        split=split,
        n_way=spec.n_way,
        k_shot=spec.k_shot,
        n_query=spec.n_query,
        class_splits=present,
    )


def episode_arrays(sampler, n_episodes: int) -> tuple[np.ndarray, np.ndarray]:
    """support (B, N, K) and query (B, N, Q) int64 image indices of episodes 0..n_episodes-1."""
    batch = sampler.batch(0, n_episodes)
    return np.asarray(batch.support, np.int64), np.asarray(batch.query, np.int64)


class EpisodeImages(Dataset):
    """Train episodes as image stacks.

    item i -> (images (N*(K+Q), 3, S, S), label_maps (N*(K+Q), S, S) | (N*(K+Q), 0), n_way, k_shot),
    images ordered support (way-major, K per way) then query (way-major, Q per way).
    `episode_ids[i]` is the sampler's episode number, so each epoch can use fresh episodes.
    """

    def __init__(
        self, images: SplitImages, sampler, episode_ids: Sequence[int], with_masks: bool = False
    ) -> None:
        if images.with_masks != with_masks:
            raise ValueError("EpisodeImages(with_masks=...) must match its SplitImages")
        self.images, self.sampler = images, sampler
        self.episode_ids = [int(e) for e in episode_ids]

    def __len__(self) -> int:
        return len(self.episode_ids)

    def __getitem__(self, i: int):
        episode: Episode = self.sampler[self.episode_ids[i]]
        k_shot = len(episode.support[0])
        if (
            any(len(w) != k_shot for w in episode.support)
            or len({len(w) for w in episode.query}) != 1
        ):
            raise ValueError(
                f"episode {episode.index}: ProtoNet training needs equal shots per way"
            )
        order = [x for way in episode.support for x in way] + [
            x for way in episode.query for x in way
        ]
        loaded = [self.images.load(int(x)) for x in order]
        stack = torch.stack([image for image, _, _ in loaded])
        maps = torch.stack([m for _, _, m in loaded])
        return stack, maps, episode.n_way, k_shot


def protonet_logits(support: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
    """support (..., N, K, D), query (..., M, D) -> (..., M, N) negative squared euclidean
    distances to the class prototypes (support means)."""
    prototypes = support.float().mean(dim=-2)
    return -torch.cdist(query.float(), prototypes).pow(2)


def protonet_loss(
    embeddings: torch.Tensor, n_way: int, k_shot: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Episode loss and query accuracy. embeddings: (N*(K+Q), D) in EpisodeImages order."""
    n_support = n_way * k_shot
    support = embeddings[:n_support].reshape(n_way, k_shot, -1)
    query = embeddings[n_support:]
    n_query = query.shape[0] // n_way
    targets = torch.arange(n_way, device=embeddings.device).repeat_interleave(n_query)
    logits = protonet_logits(support, query)
    return F.cross_entropy(logits, targets), (logits.argmax(-1) == targets).float().mean()


@torch.no_grad()
def protonet_accuracy(
    embeddings: torch.Tensor,
    image_indices: np.ndarray,
    support: np.ndarray,
    query: np.ndarray,
    chunk: int = 256,
) -> float:
    """Mean query accuracy of ProtoNet over B episodes, on precomputed embeddings.

    embeddings: (n, D) for dataset images `image_indices` (n,); support (B, N, K) and query
    (B, N, Q) hold dataset image indices. Returns the mean over episodes (equal Q, so also queries).
    The learner and gather are the benchmark's own, so selection scores what the runner scores.
    """
    features = FeatureSet(embeddings, None, None, torch.as_tensor(image_indices, dtype=torch.int64))
    learner = get_learner("protonet")
    correct, total = 0, 0
    for start in range(0, support.shape[0], chunk):
        s, q = support[start : start + chunk], query[start : start + chunk]
        batch = EpisodeBatch("val", np.arange(len(s)), np.zeros(s.shape[:2], np.int64), s, q)
        try:
            out = predict_batch(learner, batch, features.gather, features.gather)
        except KeyError as err:
            raise ValueError(f"episodes name images that were not embedded: {err}") from None
        correct += int((out.predicted == out.labels).sum())
        total += out.labels.size
    return correct / total
