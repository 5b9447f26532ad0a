"""Few-shot episodes for PartImageNet: data-free, seeded, reproducible.

`from episodes import EpisodeSampler` is the public entry point; this package depends on numpy and
the standard library only (adapters import torch or learn2learn lazily).
"""

from episodes import taxonomy

__all__ = ["taxonomy"]
