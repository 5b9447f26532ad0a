"""Few-shot episodes for PartImageNet: data-free, seeded, reproducible.

`from episodes import EpisodeSampler` is the public entry point; this package depends on numpy and
the standard library only (adapters import torch or learn2learn lazily).
"""

from episodes import taxonomy
from episodes.adapters import EpisodicCollate, l2l_taskset
from episodes.episode import Episode, EpisodeBatch
from episodes.errors import PartbenchError
from episodes.files import EpisodeFile, EpisodeFileError, load_episodes, save_episodes
from episodes.hashing import episodes_hash
from episodes.sampler import FORMAT_VERSION, MODES, EpisodeSampler, EpisodeSettingsError
from episodes.source import EpisodeSource
from episodes.stacking import stack_episodes, to_episodes
from episodes.taxonomy import class_super_categories
from episodes.variable import MetaDatasetProtocol

__all__ = [
    "FORMAT_VERSION",
    "MODES",
    "Episode",
    "EpisodeBatch",
    "EpisodeBatchSampler",
    "EpisodicCollate",
    "EpisodeFile",
    "EpisodeFileError",
    "EpisodeSampler",
    "EpisodeSettingsError",
    "EpisodeSource",
    "MetaDatasetProtocol",
    "PartbenchError",
    "class_super_categories",
    "episodes_hash",
    "l2l_taskset",
    "load_episodes",
    "save_episodes",
    "stack_episodes",
    "taxonomy",
    "to_episodes",
]


def __getattr__(name: str):
    # EpisodeBatchSampler subclasses torch's Sampler, so it is made on first use: `import
    # episodes` never imports torch.
    if name == "EpisodeBatchSampler":
        from episodes import adapters

        return adapters.EpisodeBatchSampler
    raise AttributeError(f"module 'episodes' has no attribute {name!r}")
