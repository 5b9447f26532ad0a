"""Few-shot episodes for PartImageNet: data-free, seeded, reproducible.

`from episodes import EpisodeSampler` is the public entry point; this package depends on numpy and
the standard library only (adapters import torch or learn2learn lazily).
"""

from episodes import taxonomy
from episodes.episode import Episode, EpisodeBatch
from episodes.files import EpisodeFile, EpisodeFileError, load_episodes, save_episodes
from episodes.hashing import episodes_hash
from episodes.sampler import FORMAT_VERSION, MODES, EpisodeSampler, EpisodeSettingsError
from episodes.source import EpisodeSource
from episodes.stacking import stack_episodes, to_episodes
from episodes.variable import MetaDatasetProtocol

__all__ = [
    "FORMAT_VERSION",
    "MODES",
    "Episode",
    "EpisodeBatch",
    "EpisodeFile",
    "EpisodeFileError",
    "EpisodeSampler",
    "EpisodeSettingsError",
    "EpisodeSource",
    "MetaDatasetProtocol",
    "episodes_hash",
    "load_episodes",
    "save_episodes",
    "stack_episodes",
    "taxonomy",
    "to_episodes",
]
