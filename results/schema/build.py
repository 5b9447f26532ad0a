"""Building a result: one run's sealed, validated result dict from its records and provenance."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

import pandas as pd

from episodes.storage import canonical_json
from results.schema.format import KIND, SCHEMA_VERSION
from results.schema.metrics import metrics_from_records
from results.schema.seal import SEAL_FIELDS, seal
from results.schema.validate import validate_result


def build_result(
    *,
    run_id: str,
    name: str,
    setting: Mapping[str, Any],
    config: Mapping[str, Any],
    seeds: Mapping[str, int],
    versions: Mapping[str, str],
    git_commit: str | None,
    git_dirty: bool | None,
    hardware: Mapping[str, Any],
    dataset: Mapping[str, Any],
    weights: Mapping[str, Any],
    episodes_hash: str,
    episodes_requested: int,
    wall_time_s: float,
    records: pd.DataFrame,
    confidence: float = 0.95,
    ci_method: str = "normal",
    ci_seed: int = 0,
    n_boot: int = 10_000,
    created_utc: str | None = None,
    sections: Mapping[str, Any] | None = None,
    origins: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """A sealed result dict for one run and setting; the metrics are computed from `records`.

    setting: {split, n_way, k_shot, n_query, mode, mask_mode}. dataset: {name, fingerprint, ...}.
    weights: {backbone, provenance, sha256, saw_test_classes, ...}. versions: {partbench, torch,
    timm, python, ...} (strings, collected by the runner; results/ never imports torch).
    records: the run's per-episode records (only rows of this run_id are used).
    sections: optional sections of the schema (mask_quality, seed_spread), by name.
    origins: learner -> where its code came from ({kind, ...}), stored as metrics.<learner>.origin.
    Raises ValueError listing every problem if the result would not validate.
    """
    own = records[records["run_id"] == run_id]
    if own.empty:
        raise ValueError(f"records hold no episode of run_id {run_id!r}")
    episodes_run = own.groupby("learner")["episode"].nunique()
    result = {
        "schema_version": SCHEMA_VERSION,
        "kind": KIND,
        "run_id": run_id,
        "name": name,
        "created_utc": created_utc or datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "setting": {
            key: setting.get(key)
            for key in ("split", "n_way", "k_shot", "n_query", "mode", "mask_mode")
        },
        "config": dict(config),
        "seeds": dict(seeds),
        "versions": dict(versions),
        "git": {"commit": git_commit, "dirty": git_dirty},
        "hardware": dict(hardware),
        "dataset": dict(dataset),
        "weights": dict(weights),
        "episodes": {
            "hash": episodes_hash,
            "requested": int(episodes_requested),
            "run": int(episodes_run.max()),
        },
        "wall_time_s": float(wall_time_s),
        "ci": {
            "confidence": float(confidence),
            "method": ci_method,
            "seed": int(ci_seed),
            "n_boot": int(n_boot),
        },
        "metrics": metrics_from_records(
            own, confidence=confidence, method=ci_method, seed=ci_seed, n_boot=n_boot
        ),
    } | {name: value for name, value in (sections or {}).items() if value is not None}
    for learner, origin in (origins or {}).items():
        if learner not in result["metrics"]:
            raise ValueError(f"origins: learner {learner!r} has no records in this run")
        result["metrics"][learner]["origin"] = dict(origin)
    _check_storable(result)
    return _sealed_valid(result)


def with_sections(result: Mapping[str, Any], sections: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a valid result with optional sections (e.g. seed_spread) added, sealed anew;
    ValueError if the result would then not validate."""
    body = {k: v for k, v in result.items() if k not in SEAL_FIELDS} | dict(sections)
    return _sealed_valid(body)


def _check_storable(result: Mapping[str, Any]) -> None:
    """ValueError naming the first field whose value JSON cannot store."""
    for key, value in result.items():
        try:
            canonical_json(value)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"result field {key!r} holds a value JSON cannot store ({exc}); "
                "pass plain str/int/float/bool/list/dict values (str() paths)"
            ) from None


def _sealed_valid(body: Mapping[str, Any]) -> dict[str, Any]:
    """`body` sealed; ValueError listing every problem if it would not validate."""
    # Round-trip through JSON so the dict equals what a reader will load (tuples -> lists, ...).
    sealed = seal(json.loads(canonical_json(body)))
    problems = validate_result(sealed)
    if problems:
        raise ValueError("the result would not validate:\n  " + "\n  ".join(problems))
    return sealed
