"""A run's metrics from its per-episode records: accuracy and CI per learner and super-category."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from results.protocols import annotations_of_mask_mode
from results.stats import mean_ci


def metrics_from_records(
    records: pd.DataFrame,
    *,
    confidence: float = 0.95,
    method: str = "normal",
    seed: int = 0,
    n_boot: int = 10_000,
) -> dict[str, dict[str, Any]]:
    """Per learner: accuracy (%), CI half-width (%), episodes, mask_mode, and per super-category.

    records: one run (`read_records` rows). NaN CIs (one episode) become null.
    """

    def entry(values: Any) -> dict[str, Any]:
        mean, half = mean_ci(values, confidence, method, n_boot=n_boot, seed=seed)
        return {
            "accuracy": mean,
            "ci": None if math.isnan(half) else half,
            "n_episodes": int(len(values)),
        }

    metrics: dict[str, dict[str, Any]] = {}
    for learner, group in records.groupby("learner", sort=True):
        modes = sorted(set(group["mask_mode"].dropna()))
        if len(modes) > 1:
            raise ValueError(
                f"learner {learner!r} has records under several mask modes {modes}; "
                "one result covers one run"
            )
        fingerprints = sorted(set(group["fingerprint"].dropna()))
        if len(fingerprints) > 1:
            raise ValueError(
                f"learner {learner!r} has records of {len(fingerprints)} run "
                f"fingerprints {fingerprints}: they were made under different "
                "settings and cannot be pooled"
            )
        per_super: dict[str, list[float]] = {}
        for counts in group["per_super_category"]:
            for name, (correct, total) in counts.items():
                if total > 0:
                    per_super.setdefault(name, []).append(100.0 * correct / total)
        metrics[str(learner)] = entry(group["accuracy"].to_numpy() * 100.0) | {
            "mask_mode": modes[0] if modes else None,
            "fingerprint": fingerprints[0] if fingerprints else None,
            "per_super_category": {name: entry(v) for name, v in sorted(per_super.items())},
            "transductive": bool(group["transductive"].any()) if "transductive" in group else False,
            "annotations": annotations_of_mask_mode(modes[0] if modes else None),
        }
    return metrics
