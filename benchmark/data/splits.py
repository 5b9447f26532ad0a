"""Which splits of the release a run needs, and why: a partial copy serves the runs it can.

Copies made by following other projects' instructions often hold train and val only. A run needs:
  - the split its episodes come from (episodes.split, or the split of episodes.file);
  - train and val when it trains the backbone (backbone.weights: train; val selects the model);
  - train when a learner prepares on the train-split features (SimpleShot centres on their mean).
The loader (load_partimagenet(..., needed=...)) requires these and names a missing one with the
reason given here.
"""

from __future__ import annotations

from pathlib import Path

from baselines import UnknownLearnerError, get_learner_class
from benchmark.config.errors import ConfigError
from benchmark.config.run import RunConfig
from episodes import EpisodeFileError, load_episodes
from episodes.taxonomy import SPLITS

# What training the backbone needs, and why (backbone.weights: train, python -m benchmark.training).
TRAINING_SPLITS: dict[str, str] = {
    "train": "trains the backbone on the train split",
    "val": "selects the trained backbone on val episodes",
}


def episode_split(cfg: RunConfig) -> str:
    """The split the run's episodes come from: episodes.split, or that of episodes.file."""
    if not cfg.episodes.file:
        return cfg.episodes.split
    try:
        loaded = load_episodes(Path(cfg.episodes.file).expanduser())
    except (EpisodeFileError, OSError) as exc:
        raise ConfigError(f"episodes.file: {exc}") from None
    if not loaded.episodes:
        raise ConfigError(f"episodes.file: {cfg.episodes.file} holds no episode")
    return loaded.episodes[0].split


def learners_preparing_on_train(cfg: RunConfig) -> list[str]:
    """Names of the configured learners that see the train-split features before any episode
    (those declaring needs_base_features, e.g. simpleshot)."""
    names = []
    for spec in cfg.learners:
        try:
            cls = get_learner_class(spec.name)
        except UnknownLearnerError as exc:
            raise ConfigError(f"learners: {spec.name}: {exc}") from None
        if cls.needs_base_features:
            names.append(spec.key)
    return names


def required_splits(cfg: RunConfig) -> dict[str, str]:
    """split -> why the run needs it (a phrase after "this run"), in train, val, test order.

    Example: the default config (test episodes, a backbone trained here) gives
    {"train": "trains the backbone on the train split (backbone.weights: train)",
     "val": "selects the trained backbone on val episodes (backbone.weights: train)",
     "test": "evaluates on the test split"}.
    Raises:
        ConfigError: episodes.file cannot be read (the runner would refuse it too).
    """
    reasons: dict[str, list[str]] = {s: [] for s in SPLITS}
    split = episode_split(cfg)
    source = " (episodes.file)" if cfg.episodes.file else ""
    reasons[split].append(f"evaluates on the {split} split{source}")
    if cfg.backbone.weights == "train":
        for s, why in TRAINING_SPLITS.items():
            reasons[s].append(f"{why} (backbone.weights: train)")
    if preparing := learners_preparing_on_train(cfg):
        reasons["train"].append(
            f"gives the train-split features to {', '.join(preparing)} (its prepare step)"
        )
    return {s: " and ".join(why) for s, why in reasons.items() if why}
