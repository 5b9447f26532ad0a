"""The run's dataset: the real PartImageNet_OOD release, or the synthetic twin, generated into the
cache on first use and reused by every later run with the same parameters."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

from benchmark.config.cache_layout import TWIN_PREFIX, cache_root, short_key
from benchmark.config.data import DataConfig
from benchmark.data.dataset import PartDataset
from benchmark.data.partimagenet import load_partimagenet
from benchmark.data.twin.generate import MARKER, generate_twin


def resolve_dataset(
    data: DataConfig, cache_dir: str | None = None, needed: Mapping[str, str] | None = None
) -> PartDataset:
    """Load `data.root` (partimagenet), or the twin of `data.synthetic`'s parameters (synthetic):
    at `data.root` if set, else in the cache folder under a key of the parameters.

    `needed` (split -> why, see benchmark.data.splits.required_splits): the splits the run uses,
    so that a partial copy (train and val only) serves the runs it can; None: all three. The
    image-size check of a copy is recorded in the cache folder.
    """
    checked_in = cache_root(cache_dir)
    if data.source == "partimagenet":
        return load_partimagenet(Path(data.root).expanduser(), needed=needed, cache_dir=checked_in)
    syn = data.synthetic
    params = {
        "images_per_class": syn.images_per_class,
        "image_size": syn.image_size,
        "seed": syn.seed,
        "full": syn.full,
    }
    root = (
        Path(data.root).expanduser()
        if data.root
        else cache_root(cache_dir) / f"{TWIN_PREFIX}{short_key(params)}"
    )
    if not (root / MARKER).is_file():
        print(
            f"generating the synthetic twin into {root} (once; reused by later runs)",
            file=sys.stderr,
            flush=True,
        )
    generate_twin(root, **params)  # reuses a twin made with the same parameters
    return load_partimagenet(root, needed=needed, cache_dir=checked_in)
