"""The run config's sections turned into the objects of the stages that live outside benchmark/
(episodes, learners). Those packages know nothing of the config: their errors come back here and
leave as ConfigErrors naming the config key."""

from __future__ import annotations

from pathlib import Path

from baselines import get_learner, get_learner_class
from baselines.base import Learner
from benchmark.config.errors import ConfigError
from benchmark.config.features import PREDICTED_MASK_MODES
from benchmark.config.run import LearnerConfig, RunConfig
from benchmark.data.dataset import PartDataset
from benchmark.evaluation.guard import is_builtin_class
from benchmark.models.backbones import BackboneError, build_backbone
from episodes import EpisodeFileError, EpisodeSampler, EpisodeSettingsError, EpisodeSource
from episodes.errors import PartbenchError


def build_sampler(cfg: RunConfig, dataset: PartDataset) -> EpisodeSampler:
    """The sampler of the config's `episodes` section over `dataset`'s labels."""
    ep = cfg.episodes
    shape = (
        {} if ep.mode == "variable" else dict(n_way=ep.n_way, k_shot=ep.k_shot, n_query=ep.n_query)
    )
    try:
        return EpisodeSampler(
            dataset.labels,
            seed=ep.seed,
            split=ep.split,
            mode=ep.mode,
            n_episodes=ep.n_episodes,
            **shape,
        )
    except EpisodeSettingsError as exc:
        raise ConfigError(f"episodes: {exc}") from None


def episode_source(cfg: RunConfig, dataset: PartDataset) -> EpisodeSource:
    """The fixed episodes of `episodes.file` (made for this dataset), else the sampler's."""
    if cfg.episodes.file:
        try:
            return EpisodeSource.from_file(
                Path(cfg.episodes.file).expanduser(),
                dataset_fingerprint=dataset.fingerprint,
                labels=dataset.labels,
                image_splits=[r.split for r in dataset.images],
            )
        except (EpisodeFileError, OSError) as exc:
            raise ConfigError(f"episodes.file: {exc}") from None
    return EpisodeSource.sampled(build_sampler(cfg, dataset), cfg.episodes.n_episodes)


def build_learners(cfg: RunConfig) -> list[tuple[LearnerConfig, Learner]]:
    """(config entry, new learner) per entry of `learners`; part learners get the run's masks
    (the annotation-free controls bring their own), local-descriptor learners need dense maps."""
    learners = []
    for spec in cfg.learners:
        options = dict(spec.options)
        try:
            cls = get_learner_class(spec.name)
            if cls.uses_local_descriptors and not cfg.features.dense:
                raise ConfigError(
                    f"learners: {spec.name} compares local descriptors of the feature "
                    "maps; set features.dense: true to keep them"
                )
            if cls.uses_parts and cls.own_masks is None:
                if cfg.features.masks == "none":
                    raise ConfigError(
                        f"learners: {spec.name} pools features over part masks, but "
                        "features.masks is none; set it to oracle, predicted or "
                        "support-oracle"
                    )
            learners.append((spec, get_learner(spec.name, **options)))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"learners: {spec.name}: {exc}") from exc
        except PartbenchError:
            raise
        except (Exception, SystemExit) as exc:  # a plugin's constructor: its error, one line
            if is_builtin_class(cls):
                raise
            raise ConfigError(
                f"learners: {spec.name}: building it raised {type(exc).__name__}: {exc}"
            ) from exc
    return learners


def reads_predicted_masks(cfg: RunConfig) -> bool:
    """True when the run pools any features over the part head's masks: through features.masks
    or a learner's own mask mode (part_protonet_predicted). Such a run needs a part head."""
    modes = {cfg.features.masks}
    for spec in cfg.learners:
        try:
            modes.add(getattr(get_learner_class(spec.name), "own_masks", None))
        except KeyError:  # an unknown name is reported by build_learners
            continue
    return bool(modes & set(PREDICTED_MASK_MODES))


def check_part_stage(cfg: RunConfig) -> None:
    """Refuse a features.part_stage the backbone does not have before anything is trained: a
    randomly initialised copy of the model (no weights read) says which strides it has."""
    if cfg.features.part_stage == "last":
        return
    bb = cfg.backbone
    try:
        model = build_backbone(bb.name, image_size=bb.image_size)
    except BackboneError as exc:  # the model name (or size) is the backbone section's fault
        message = str(exc)
        raise ConfigError(
            message if message.startswith("backbone.") else f"backbone.name: {message}"
        ) from None
    try:
        model.stage_index(cfg.features.part_stage)
    except BackboneError as exc:
        raise ConfigError(f"features.{exc}") from None
