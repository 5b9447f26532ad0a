"""Validating a loaded result: structure, seal, consistency between fields, and its records."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd
from scipy import stats as scipy_stats

from episodes.storage import canonical_json
from results.protocols import protocol_problems
from results.schema.format import KIND, RESULT_SCHEMA, SCHEMA_VERSION
from results.schema.metrics import metrics_from_records
from results.schema.seal import seal_problems
from results.stats import CI_METHODS

# Absolute tolerance (points of %) when comparing stored metrics with ones recomputed from records.
RECOMPUTE_TOLERANCE = 1e-6


def _consistency_problems(result: Mapping[str, Any]) -> list[str]:
    """Checks between fields, run on a structurally valid result."""
    problems = _run_field_problems(result)
    problems += _copied_metrics_problems(result["metrics"])
    problems += protocol_problems(result["metrics"])
    if result["wall_time_s"] < 0:
        problems.append(f"wall_time_s: must be >= 0, got {result['wall_time_s']}")
    if not result["metrics"]:
        problems.append("metrics: no learner")
    ci, episodes = result["ci"], result["episodes"]
    z = scipy_stats.norm.ppf((1 + ci["confidence"]) / 2) if 0 < ci["confidence"] < 1 else math.nan
    for learner, m in result["metrics"].items():
        entries = [(f"metrics.{learner}", m)] + [
            (f"metrics.{learner}.per_super_category.{name}", s)
            for name, s in m["per_super_category"].items()
        ]
        for where, entry in entries:
            problems += _metric_entry_problems(where, entry, ci["method"], z)
        if m["n_episodes"] != episodes["run"]:
            problems.append(
                f"metrics.{learner}.n_episodes: {m['n_episodes']} but episodes.run is "
                f"{episodes['run']}; every learner must run the same episodes"
            )
    return problems


def _run_field_problems(result: Mapping[str, Any]) -> list[str]:
    """Bounds on the ci, episodes, setting and weights fields."""
    problems = []
    ci = result["ci"]
    if not 0 < ci["confidence"] < 1:
        problems.append(f"ci.confidence: must lie in (0, 1), got {ci['confidence']}")
    if ci["method"] not in CI_METHODS:
        problems.append(f"ci.method: must be one of {', '.join(CI_METHODS)}, got {ci['method']!r}")
    episodes = result["episodes"]
    if episodes["run"] > episodes["requested"]:
        problems.append(
            f"episodes.run ({episodes['run']}) exceeds episodes.requested ({episodes['requested']})"
        )
    if episodes["run"] < 1:
        problems.append(f"episodes.run must be at least 1, got {episodes['run']}")
    setting = result["setting"]
    for key, low in (("n_way", 2), ("k_shot", 1), ("n_query", 1)):
        if setting[key] is not None and setting[key] < low:
            problems.append(f"setting.{key}: must be at least {low}, got {setting[key]}")
    weights = result["weights"]
    if weights["provenance"] == "hub" and not weights["saw_test_classes"]:
        problems.append(
            "weights.saw_test_classes: false, but hub weights (ImageNet-pretrained) "
            "saw the test classes; it must be true"
        )
    return problems


def _metric_entry_problems(
    where: str, entry: Mapping[str, Any], method: str, z: float
) -> list[str]:
    """One metric entry (a learner's or a super-category's): accuracy, episodes and a CI that
    such an accuracy over so many episodes allows; z: the normal quantile of the confidence."""
    problems = []
    acc, half, n = entry["accuracy"], entry["ci"], entry["n_episodes"]
    if not 0 <= acc <= 100:
        problems.append(f"{where}.accuracy: {acc} is not a percentage in [0, 100]")
    if n < 1:
        problems.append(f"{where}.n_episodes: must be at least 1, got {n}")
    if half is None:
        if n > 1:
            problems.append(f"{where}.ci: null but {n} episodes give a CI")
        return problems
    if n < 2:
        problems.append(
            f"{where}.ci: {half} from {n} episode; a CI needs at least 2 episodes (null)"
        )
    if half < 0:
        problems.append(f"{where}.ci: negative half-width {half}")
    elif half > 100:
        problems.append(f"{where}.ci: half-width {half} exceeds 100 points")
    # Accuracies in [0, 1] with mean p have sample variance <= n/(n-1) p(1-p)
    # (Bhatia-Davis), which bounds the normal CI given the stored accuracy.
    if method == "normal" and n > 1 and 0 <= acc <= 100:
        p = acc / 100
        bound = 100 * z * math.sqrt(p * (1 - p) / (n - 1))
        if half > bound + 1e-9:
            problems.append(
                f"{where}.ci: {half:.4g} is wider than any {n} episodes with "
                f"mean accuracy {acc:.4g}% allow (max {bound:.4g}); the "
                "accuracy or the CI was changed"
            )
    return problems


def _copied_metrics_problems(metrics: Mapping[str, Any]) -> list[str]:
    """Two learners with the very same metrics (accuracy, CI, episodes, every super-category)
    and the same run fingerprint: one learner's numbers copied under a second name. (Two real
    learners can tie on every number, e.g. on a degenerate backbone, but their records carry
    different fingerprints, since a fingerprint covers the learner's name and options.)"""
    seen: dict[bytes, str] = {}
    problems = []
    for learner, m in metrics.items():
        body = canonical_json({k: v for k, v in m.items() if k != "mask_mode"})
        if body in seen:
            problems.append(
                f"metrics.{learner}: identical to metrics.{seen[body]} in every "
                "number; the same results cannot stand under two learners"
            )
        seen.setdefault(body, learner)
    return problems


def _copied_episodes_problems(records: pd.DataFrame) -> list[str]:
    """Two learners whose records agree on every episode's per-class counts under the same run
    fingerprint (real learners' records carry different ones)."""
    seen: dict[bytes, str] = {}
    problems = []
    for learner, group in records.sort_values("episode").groupby("learner", sort=True):
        fingerprints = sorted(map(str, set(group["fingerprint"])))
        body = canonical_json(
            [fingerprints] + [[int(e), pc] for e, pc in zip(group["episode"], group["per_class"])]
        )
        if body in seen:
            problems.append(
                f"records: learner {learner!r} has the same per-episode results as "
                f"{seen[body]!r} on every episode; records copied under another name"
            )
        seen.setdefault(body, str(learner))
    return problems


def verify_result_against_records(result: Mapping[str, Any], records: pd.DataFrame) -> list[str]:
    """Every way a structurally valid result disagrees with the run's per-episode records.

    records: `results.records.read_records(...)` rows (any run; only the result's run_id is
    used). Recomputes every metric and compares; checks the setting, the episode count, and
    that no learner's per-episode results are another's. Empty list: the result is what its
    records say. This is the strong check (the content hash is a seal, not a signature).
    """
    return _record_problems(result, records)


def _record_problems(result: Mapping[str, Any], records: pd.DataFrame) -> list[str]:
    """Recompute the metrics from the per-episode records and compare with the stored ones."""
    own = records[records["run_id"] == result["run_id"]]
    if own.empty:
        return [f"records: no episode of run_id {result['run_id']!r} in the records given"]
    problems = _record_setting_problems(result["setting"], own)
    ci = result["ci"]
    try:
        recomputed = metrics_from_records(
            own,
            confidence=ci["confidence"],
            method=ci["method"],
            seed=ci["seed"],
            n_boot=ci["n_boot"],
        )
    except ValueError as exc:  # several mask modes or fingerprints under one learner
        return problems + [f"records: {exc}"]
    problems += _recomputed_metrics_problems(result["metrics"], recomputed)
    problems += _copied_episodes_problems(own)
    n_run = int(own.groupby("learner")["episode"].nunique().max())
    if n_run != result["episodes"]["run"]:
        problems.append(
            f"episodes.run: {result['episodes']['run']} in the file, {n_run} episodes "
            "in the records"
        )
    return problems


def _record_setting_problems(setting: Mapping[str, Any], own: pd.DataFrame) -> list[str]:
    """The fixed fields of the setting against the run's records `own`."""
    problems = []
    # mask_mode is checked per learner, with the metrics: the annotation-free controls and
    # part_protonet_predicted pool over their own masks, not the run's (setting.mask_mode)
    for key in ("split", "n_way", "k_shot", "n_query"):
        if setting.get(key) is None:
            continue  # not fixed for the run (variable episodes)
        found = set(own[key].dropna().unique())
        if found - {setting[key]} or own[key].isna().any():
            problems.append(
                f"setting.{key}: {setting[key]!r} but the records hold {sorted(map(str, found))}"
            )
    return problems


def _recomputed_metrics_problems(
    stored: Mapping[str, Any], recomputed: Mapping[str, Any]
) -> list[str]:
    """The file's metrics against those recomputed from the records: learners, fingerprints,
    every number and per super-category."""
    problems = []
    for learner in sorted(set(stored) & set(recomputed)):
        mine, theirs = stored[learner]["fingerprint"], recomputed[learner]["fingerprint"]
        if mine != theirs:
            problems.append(
                f"metrics.{learner}.fingerprint: the result was made under run "
                f"fingerprint {mine!r} but the records carry {theirs!r}: records of "
                "another setting (data, weights, features, episodes or options)"
            )
    for learner in sorted(set(stored) - set(recomputed)):
        problems.append(f"metrics.{learner}: not in the records")
    for learner in sorted(set(recomputed) - set(stored)):
        problems.append(f"metrics.{learner}: in the records but missing from the file")
    for learner in sorted(set(stored) & set(recomputed)):
        problems += _entry_mismatches(f"metrics.{learner}", stored[learner], recomputed[learner])
        s_super, r_super = (
            stored[learner]["per_super_category"],
            recomputed[learner]["per_super_category"],
        )
        for name in sorted(set(s_super) ^ set(r_super)):
            problems.append(
                f"metrics.{learner}.per_super_category.{name}: present in only one "
                "of the file and the records"
            )
        for name in sorted(set(s_super) & set(r_super)):
            problems += _entry_mismatches(
                f"metrics.{learner}.per_super_category.{name}", s_super[name], r_super[name]
            )
    return problems


def _entry_mismatches(where: str, a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """Fields of a stored metric entry `a` that differ from the recomputed `b` (numbers within
    RECOMPUTE_TOLERANCE)."""
    problems = []
    for field in ("accuracy", "ci", "n_episodes", "mask_mode", "transductive", "annotations"):
        if field not in a:
            continue  # per-super-category entries carry no mask_mode; older files no flag
        x, y = a[field], b[field]
        if isinstance(x, str) or isinstance(y, str):
            same = x == y
        else:
            same = (x is None and y is None) or (
                x is not None and y is not None and abs(x - y) <= RECOMPUTE_TOLERANCE
            )
        if not same:
            problems.append(
                f"{where}.{field}: {x!r} in the file, {y!r} recomputed from the records"
            )
    return problems


def validate_result(
    result: Any, *, episodes_hash: str | None = None, records: pd.DataFrame | None = None
) -> list[str]:
    """Every problem with a loaded result (empty list: valid).

    Checks the version, kind, every field's presence and type, the content hash (naming the
    edited section), cross-field consistency, and optionally the episode hash against
    `episodes_hash` and every metric against ones recomputed from `records`.
    """
    if not isinstance(result, dict):
        return [f"a result file must hold a JSON object, got {type(result).__name__}"]
    version = result.get("schema_version")
    if version != SCHEMA_VERSION:
        if isinstance(version, int) and not isinstance(version, bool) and version > SCHEMA_VERSION:
            return [
                f"schema_version: {version} is newer than this partbench reads "
                f"({SCHEMA_VERSION}); upgrade partbench"
            ]
        return [f"schema_version: expected {SCHEMA_VERSION}, got {version!r}"]
    if result.get("kind") != KIND:
        return [f"kind: expected {KIND!r}, got {result.get('kind')!r}: not a partbench result file"]
    problems = RESULT_SCHEMA.check(result, "")
    if problems:  # the checks below need every field present and typed
        return problems
    problems += seal_problems(result)
    problems += _consistency_problems(result)
    if episodes_hash is not None and result["episodes"]["hash"] != episodes_hash:
        problems.append(
            f"episodes.hash does not match the episodes given: file has "
            f"{result['episodes']['hash']!r}, the episodes hash to {episodes_hash!r}"
        )
    if records is not None:
        problems += _record_problems(result, records)
    return problems
