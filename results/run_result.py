"""A run's leaderboard result, assembled from the resolved config and what each stage reports.

The runner hands over plain data (results never imports torch, a learner or the config classes):
the config as a dict (RunConfig.to_dict()), the evaluated episodes, the dataset, the weights'
provenance and the hardware. Versions and the git state are collected here.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from results.provenance import git_state, package_versions
from results.schema import build_result

# A result file's dataset.name for each data.source (the leaderboard never ranks two names together)
DATASET_NAMES = {"synthetic": "synthetic-twin", "partimagenet": "partimagenet-ood"}

# Packages whose versions a result records besides the required partbench, torch, timm, python.
RECORDED_PACKAGES = ("numpy", "pandas", "learn2learn")


def ci_settings(report: Mapping[str, Any]) -> dict[str, Any]:
    """{confidence, method, seed} of the config's `report` section, as the tables take them."""
    return {
        "confidence": report["confidence"],
        "method": "bootstrap" if report["bootstrap"] else "normal",
        "seed": report["seed"],
    }


def result_from_run(
    *,
    run_id: str,
    config: Mapping[str, Any],
    episodes: Mapping[str, Any],
    dataset: Mapping[str, Any],
    weights: Mapping[str, Any],
    hardware: Mapping[str, Any],
    records: pd.DataFrame,
    wall_time_s: float,
    sections: Mapping[str, Any] | None = None,
    origins: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """The sealed result dict of one run (see results.schema for the layout).

    config: the resolved run config as a dict (name, data, backbone, features, episodes, report).
    episodes: {split, settings (sampler settings: n_way, k_shot, n_query, mode), hash, requested}.
    dataset: {fingerprint, n_images, skipped_annotations}.
    weights: the backbone's provenance {name, source, sha256, saw_test_classes, checkpoint}.
    hardware: from results.provenance.hardware_info.
    records: the run's per-episode records.
    sections: the schema's optional sections (mask_quality, seed_spread), None where absent.
    origins: learner -> where its code came from (baselines.plugins.learner_origin).
    """
    settings = episodes["settings"]
    ci = ci_settings(config["report"])
    commit, dirty = git_state(Path(__file__).resolve().parent)
    return build_result(
        run_id=run_id,
        name=config["name"],
        setting={
            "split": episodes["split"],
            "n_way": settings.get("n_way"),
            "k_shot": settings.get("k_shot"),
            "n_query": settings.get("n_query"),
            "mode": settings.get("mode"),
            "mask_mode": config["features"]["masks"],
        },
        config=config,
        seeds={
            "episodes": config["episodes"]["seed"],
            "backbone": config["backbone"]["seed"],
            "synthetic_twin": config["data"]["synthetic"]["seed"],
            "report": config["report"]["seed"],
        },
        versions=package_versions(RECORDED_PACKAGES),
        git_commit=commit,
        git_dirty=dirty,
        hardware=hardware,
        dataset={
            "name": DATASET_NAMES[config["data"]["source"]],
            "fingerprint": dataset["fingerprint"],
            "n_images": dataset["n_images"],
            "skipped_annotations": dict(dataset["skipped_annotations"]),
        },
        weights={
            "backbone": weights["name"],
            "provenance": weights["source"],
            "sha256": weights.get("sha256"),
            "saw_test_classes": bool(weights["saw_test_classes"]),
            "checkpoint": weights.get("checkpoint"),
            "image_size": config["backbone"]["image_size"],
        },
        episodes_hash=episodes["hash"],
        episodes_requested=episodes["requested"],
        wall_time_s=wall_time_s,
        records=records,
        confidence=ci["confidence"],
        ci_method=ci["method"],
        ci_seed=ci["seed"],
        sections=sections,
        origins=origins,
    )
