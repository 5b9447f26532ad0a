"""The run config's sections turned into the objects of the stages that live outside benchmark/
(episodes, learners). Those packages know nothing of the config: their errors come back here and
leave as ConfigErrors naming the config key."""

from __future__ import annotations

from pathlib import Path

from baselines import get_learner, get_learner_class
from baselines.base import Learner
from benchmark.config import ConfigError, LearnerConfig, RunConfig
from benchmark.data.dataset import PartDataset
from episodes import EpisodeFileError, EpisodeSampler, EpisodeSettingsError, EpisodeSource


def build_sampler(cfg: RunConfig, dataset: PartDataset) -> EpisodeSampler:
    """The sampler of the config's `episodes` section over `dataset`'s labels."""
    ep = cfg.episodes
    shape = {} if ep.mode == "variable" else dict(n_way=ep.n_way, k_shot=ep.k_shot,
                                                   n_query=ep.n_query)
    try:
        return EpisodeSampler(dataset.labels, seed=ep.seed, split=ep.split, mode=ep.mode,
                              n_episodes=ep.n_episodes, **shape)
    except EpisodeSettingsError as exc:
        raise ConfigError(f"episodes: {exc}") from None


def episode_source(cfg: RunConfig, dataset: PartDataset) -> EpisodeSource:
    """The fixed episodes of `episodes.file` (made for this dataset), else the sampler's."""
    if cfg.episodes.file:
        try:
            return EpisodeSource.from_file(Path(cfg.episodes.file).expanduser(),
                                           dataset_fingerprint=dataset.fingerprint)
        except (EpisodeFileError, OSError) as exc:
            raise ConfigError(f"episodes.file: {exc}") from None
    return EpisodeSource.sampled(build_sampler(cfg, dataset), cfg.episodes.n_episodes)


def build_learners(cfg: RunConfig) -> list[tuple[LearnerConfig, Learner]]:
    """(config entry, new learner) per entry of `learners`; part learners get the run's masks."""
    learners = []
    for spec in cfg.learners:
        options = dict(spec.options)
        try:
            if get_learner_class(spec.name).uses_parts:
                if cfg.features.masks == "none":
                    raise ConfigError(f"learners: {spec.name} pools features over part masks, but "
                                      "features.masks is none; set it to oracle, predicted or "
                                      "support-oracle")
                options.setdefault("mask_mode", cfg.features.masks)
            learners.append((spec, get_learner(spec.name, **options)))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"learners: {spec.name}: {exc}") from exc
    return learners
