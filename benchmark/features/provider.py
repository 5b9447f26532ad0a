"""FeatureProvider: the feature sets a run needs, extracted once per (image set, mask mode), and
the mask mode each learner is given."""

from __future__ import annotations

import os
from typing import Any, Callable

import numpy as np
import torch

from benchmark.config.errors import ConfigError
from benchmark.config.features import FeaturesConfig
from benchmark.features.extraction import extract_features
from benchmark.features.feature_set import FeatureSet
from benchmark.models.backbones import Backbone
from benchmark.models.device import resolve_device


def learner_masks(run_masks: str, learner: Any) -> str | None:
    """The mask mode of the part features `learner` is given: its own (the annotation-free
    controls), else the run's features.masks for a part learner; None for any other learner."""
    if getattr(learner, "own_masks", None) is not None:
        return learner.own_masks
    return run_masks if getattr(learner, "uses_parts", False) else None


class FeatureProvider:
    """The features a run needs, extracted once per (image set, mask mode), cached on disk and
    kept on the run's device.

    config: the run's features section (masks, part_stage, dense, batching, device, precision).
    cache_dir: the feature cache folder, or None for no disk cache.

    Raises:
        ConfigError: features.part_stage names a stride the backbone does not have.
    """

    def __init__(
        self,
        dataset: Any,
        backbone: Backbone,
        config: FeaturesConfig,
        cache_dir: str | os.PathLike | None,
        progress: bool = True,
    ) -> None:
        self.dataset, self.backbone, self.config = dataset, backbone, config
        self.cache_dir, self.progress = cache_dir, progress
        self.device = resolve_device(config.device)
        self._sets: dict[tuple[str, str, bool], FeatureSet] = {}
        try:
            backbone.stage_index(config.part_stage)
        except ValueError as exc:  # BackboneError
            raise ConfigError(f"features.{exc}") from None

    def features(
        self, indices: np.ndarray, masks: str, tag: str, dense: bool = False
    ) -> FeatureSet:
        """FeatureSet (on the run's device) of dataset images `indices` with `masks` part masks
        (and dense maps if `dense`); `tag` names the image set (one set per tag, mask mode and
        dense flag is kept in memory)."""
        if (tag, masks, dense) not in self._sets:
            fc = self.config
            features = extract_features(
                self.dataset,
                indices,
                self.backbone,
                masks=masks,
                batch_size=fc.batch_size,
                num_workers=fc.num_workers,
                device=self.device,
                precision=fc.precision,
                cache_dir=None if self.cache_dir is None else str(self.cache_dir),
                progress=self.progress,
                part_stage=fc.part_stage,
                dense=dense,
                mask_seed=fc.mask_seed,
            )
            self._sets[(tag, masks, dense)] = features.to(self.device)
        return self._sets[(tag, masks, dense)]

    def gatherers(self, indices: np.ndarray, learner: Any = None) -> tuple[Callable, Callable]:
        """(gather_support, gather_query) over the images `indices` that the episodes use, for
        `learner` (its own mask mode if it is a control); default: the run's masks.

        The run's own set keeps the dense maps when features.dense is set, so local-descriptor
        learners and the others share one extraction; a control's set has its own mask mode and
        no dense maps."""
        own = getattr(learner, "own_masks", None)
        masks = own or self.config.masks
        dense = own is None and self.config.dense
        if masks == "support-oracle":  # annotations on the support set only
            support = self.features(indices, "oracle", "episodes", dense)
            query = self.features(indices, "predicted", "episodes", dense)
        else:
            support = query = self.features(indices, masks, "episodes", dense)
        return support.gather, query.gather

    def keys(self) -> list[str]:
        """The cache keys of every feature set extracted so far, sorted (part of a run's identity)."""
        return sorted(features.key for features in self._sets.values())

    def base_embeddings(self) -> torch.Tensor:
        """(n_train, D) float32 global embeddings of the train split, for learners' prepare()."""
        train = self.dataset.split_indices("train")
        return self.features(train, "none", "train").embeddings.float()
