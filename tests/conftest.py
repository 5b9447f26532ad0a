"""Shared fixtures: a tiny synthetic twin and a tiny run config over it, made once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Keep tests on few threads: CI has 2 cores, and small tensors gain nothing from more.
os.environ.setdefault("OMP_NUM_THREADS", "1")

TINY_TWIN = {"images_per_class": 6, "image_size": 48, "seed": 0}


@pytest.fixture(scope="session")
def tiny_twin_root(tmp_path_factory) -> Path:
    """A 158-class twin with 6 images per class at 48 px (about 1,000 images)."""
    from benchmark.data.twin.generate import generate_twin

    return generate_twin(tmp_path_factory.mktemp("twin") / "twin", **TINY_TWIN)


@pytest.fixture
def tiny_run_config(tiny_twin_root, tmp_path) -> dict:
    """Raw config for a fast run: random resnet10t at 32 px, 5-way 1-shot 3-query, 40 episodes."""
    return {
        "name": "tiny",
        "output_dir": str(tmp_path / "outputs"),
        "cache_dir": str(tmp_path / "cache"),
        "data": {"source": "synthetic", "root": str(tiny_twin_root), "synthetic": TINY_TWIN},
        "backbone": {"name": "resnet10t", "weights": "random", "image_size": 32},
        "features": {"batch_size": 128},
        "episodes": {"n_way": 5, "k_shot": 1, "n_query": 3, "n_episodes": 40, "batch_size": 8},
        "learners": ["protonet", "part_protonet"],
    }
