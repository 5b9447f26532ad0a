"""Per-episode random seeds: a pure function of (run seed, learner name, episode index).

A learner that draws random numbers (the `random` row, MAML with a random head, fine-tuning with
augmentations) must give an episode the same result whichever batch it ran in and whatever
`episodes.batch_size` was. So it never draws from one generator across a batch: each episode gets
its own torch.Generator seeded by `episode_seeds`, computed with the sampler's counter-based
mixing (episodes.counter_rng): seed_i = mix64(stream + (i + 1) * golden), stream = the first 8
bytes of sha256 of {"run_seed", "learner"} as canonical JSON, kept to 63 bits.
"""

from __future__ import annotations

import numpy as np
import torch

from episodes.counter_rng import episode_keys, stream_key

_SEED_BITS = np.uint64(0x7FFF_FFFF_FFFF_FFFF)  # torch.Generator.manual_seed takes int64 range


def episode_seeds(run_seed: int, learner: str, episodes: np.ndarray | list[int]) -> np.ndarray:
    """(B,) int64 seeds of the episodes with indices `episodes` (B,) for `learner` in a run."""
    indices = np.asarray(episodes, dtype=np.int64).reshape(-1)
    if (indices < 0).any():
        raise ValueError(f"episode indices must be >= 0, got {indices.min()}")
    stream = stream_key({"run_seed": int(run_seed), "learner": str(learner)})
    return (episode_keys(stream, indices) & _SEED_BITS).astype(np.int64)


def generators(
    seeds: np.ndarray | list[int], device: str | torch.device = "cpu"
) -> list[torch.Generator]:
    """One torch.Generator per seed (B,), on `device` (draws then match per device type)."""
    return [
        torch.Generator(device=device).manual_seed(int(s)) for s in np.asarray(seeds).reshape(-1)
    ]
