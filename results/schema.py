"""Leaderboard result files: the schema, its version, building, sealing, writing and validating.

One JSON file per run and setting. Every metric sits beside its CI half-width; the file carries
what is needed to judge and reproduce the number (config, seeds, versions, commit, hardware,
dataset fingerprint, weights provenance and hash, the hash of the evaluated episodes, episodes
requested and run, wall time) and a `content_hash` (sha256 of the canonical JSON of everything
else), so an edit after writing is detected. The hash is a seal against accidental or careless
edits, not a signature: anyone can recompute it. The strong check is recomputing the metrics
from the per-episode records (`validate_result(..., records=...)`).

Layout (SCHEMA_VERSION 2):
    schema_version: int                  kind: "partbench-result"
    run_id, name, created_utc: str
    setting: {split, n_way, k_shot, n_query, mode, mask_mode}   (null where not fixed; mask_mode:
             the run's part masks, used by the learners that use parts)
    config: {...}                        the resolved run config
    seeds: {name: int}
    versions: {partbench, torch, timm, python: str, ...}
    git: {commit: str|null, dirty: bool|null}
    hardware: {device: str, ...}
    dataset: {name: str, fingerprint: str, ...}
    weights: {backbone: str, provenance: str, sha256: str|null, saw_test_classes: bool, ...}
    episodes: {hash: str, requested: int, run: int}
    wall_time_s: float
    ci: {confidence: float, method: "normal"|"bootstrap", seed: int, n_boot: int}
    metrics: {learner: {accuracy, ci, n_episodes, mask_mode, fingerprint, per_super_category:
              {name: {accuracy, ci, n_episodes}}, [transductive: bool], [origin: {kind, ...}]}}
              accuracies and CI half-widths in %; fingerprint: the run fingerprint of the
              learner's records (what they depend on); transductive (recomputed from the
              records; absent in older files = false); origin: where the learner came from (kind
              "builtin" | "module" | "entry-point" | "predictions", module, distribution,
              version, source_sha256, ...; see baselines.plugins.learner_origin)
    mask_quality (optional): {n_images, grid, grid_miou, image_miou, soft_miou, grid_iou,
              image_iou, soft_iou}
              the part head's IoU against the annotations (runs with predicted masks)
    seed_spread (optional): {seeds, n_seeds, this_seed, confidence, learners: {learner:
              {accuracy, seed_std, episode_ci, per_seed}}}   one backbone per training seed
    section_hashes: {section: sha256}   (top-level sections and each metrics.<learner>)
    content_hash: sha256 (64 hex digits, as every hash partbench writes)
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
from scipy import stats as scipy_stats

from episodes.storage import StrictJSONError, atomic_write_text, canonical_json, json_sha256, loads_strict
from episodes.storage import MAX_RESULT_BYTES, read_input_bytes
from results.records import read_records
from results.stats import CI_METHODS, mean_ci

SCHEMA_VERSION = 2  # 2: content and section hashes are bare hex, like every partbench hash
KIND = "partbench-result"


# ------------------------------------------------------------------ the schema, as data

class _Spec:
    """A type rule; check() returns problems at a dotted path."""

    def check(self, value: Any, path: str) -> list[str]:
        raise NotImplementedError


class _Scalar(_Spec):
    def __init__(self, *types_: type, name: str):
        self.types, self.name = types_, name

    def check(self, value: Any, path: str) -> list[str]:
        if isinstance(value, bool) and bool not in self.types:
            return [f"{path}: expected {self.name}, got {value!r}"]
        if not isinstance(value, self.types):
            return [f"{path}: expected {self.name}, got {type(value).__name__} {value!r}"]
        if isinstance(value, float) and not math.isfinite(value):
            return [f"{path}: expected a finite number, got {value!r}"]
        return []


class _Optional(_Spec):
    def __init__(self, inner: _Spec):
        self.inner = inner

    def check(self, value: Any, path: str) -> list[str]:
        return [] if value is None else self.inner.check(value, path)


class _List(_Spec):
    """A JSON array whose items all follow `items`."""

    def __init__(self, items: _Spec):
        self.items = items

    def check(self, value: Any, path: str) -> list[str]:
        if not isinstance(value, list):
            return [f"{path}: expected a list, got {type(value).__name__}"]
        return [p for i, v in enumerate(value) for p in self.items.check(v, f"{path}[{i}]")]


class _Anything(_Spec):
    def check(self, value: Any, path: str) -> list[str]:
        return []


class _Mapping(_Spec):
    """A JSON object with free keys whose values all follow `values`."""

    def __init__(self, values: _Spec):
        self.values = values

    def check(self, value: Any, path: str) -> list[str]:
        if not isinstance(value, dict):
            return [f"{path}: expected an object, got {type(value).__name__}"]
        return [p for k, v in value.items() for p in self.values.check(v, f"{path}.{k}")]


class _Object(_Spec):
    """A JSON object with required fields and `optional` ones; other keys allowed only if
    `extra` is given."""

    def __init__(self, fields: Mapping[str, _Spec], extra: _Spec | None = None,
                 optional: Mapping[str, _Spec] | None = None):
        self.fields, self.extra, self.optional = dict(fields), extra, dict(optional or {})

    def check(self, value: Any, path: str) -> list[str]:
        if not isinstance(value, dict):
            return [f"{path}: expected an object, got {type(value).__name__}"]
        prefix = f"{path}." if path else ""
        problems = [f"missing field {prefix}{k}" for k in self.fields if k not in value]
        for key, item in value.items():
            if key in self.fields:
                problems += self.fields[key].check(item, prefix + key)
            elif key in self.optional:
                problems += self.optional[key].check(item, prefix + key)
            elif self.extra is None:
                problems.append(f"unknown field {prefix}{key}")
            else:
                problems += self.extra.check(item, prefix + key)
        return problems


STR = _Scalar(str, name="a string")
INT = _Scalar(int, name="an integer")
NUMBER = _Scalar(int, float, name="a number")
BOOL = _Scalar(bool, name="true/false")
ANY = _Anything()

METRIC = _Object({"accuracy": NUMBER, "ci": _Optional(NUMBER), "n_episodes": INT})
LEARNER_METRICS = _Object({
    "accuracy": NUMBER, "ci": _Optional(NUMBER), "n_episodes": INT,
    "mask_mode": _Optional(STR),  # part masks behind this learner's features; null: no parts
    # the run fingerprint its records carry (benchmark.run_identity); null: records without one
    "fingerprint": _Optional(STR),
    "per_super_category": _Mapping(METRIC),
}, optional={
    "transductive": BOOL,  # the learner used each episode's queries jointly
    "origin": _Object({"kind": STR}, extra=ANY),  # where the learner's code came from
})

RESULT_SCHEMA = _Object({
    "schema_version": INT,
    "kind": STR,
    "run_id": STR,
    "name": STR,
    "created_utc": STR,
    "setting": _Object({
        "split": STR, "n_way": _Optional(INT), "k_shot": _Optional(INT),
        "n_query": _Optional(INT), "mode": _Optional(STR), "mask_mode": _Optional(STR),
    }),
    "config": _Mapping(ANY),
    "seeds": _Mapping(INT),
    "versions": _Object({"partbench": STR, "torch": STR, "timm": STR, "python": STR},
                        extra=STR),
    "git": _Object({"commit": _Optional(STR), "dirty": _Optional(BOOL)}),
    "hardware": _Object({"device": STR}, extra=ANY),
    "dataset": _Object({"name": STR, "fingerprint": STR}, extra=ANY),
    "weights": _Object({"backbone": STR, "provenance": STR, "sha256": _Optional(STR),
                        "saw_test_classes": BOOL}, extra=ANY),
    "episodes": _Object({"hash": STR, "requested": INT, "run": INT}),
    "wall_time_s": NUMBER,
    "ci": _Object({"confidence": NUMBER, "method": STR, "seed": INT, "n_boot": INT}),
    "metrics": _Mapping(LEARNER_METRICS),
    "section_hashes": _Mapping(STR),
    "content_hash": STR,
}, optional={
    # part head vs annotations on the evaluated images (runs with predicted masks)
    "mask_quality": _Object({"n_images": INT, "grid": _List(INT),
                             "grid_miou": _Optional(NUMBER), "image_miou": _Optional(NUMBER),
                             "soft_miou": _Optional(NUMBER),
                             "grid_iou": _Mapping(_Optional(NUMBER)),
                             "image_iou": _Mapping(_Optional(NUMBER)),
                             "soft_iou": _Mapping(_Optional(NUMBER))}),
    # one backbone per training seed on the same episodes (`backbone.seeds`)
    "seed_spread": _Object({"seeds": _List(INT), "n_seeds": INT, "this_seed": INT,
                            "confidence": NUMBER, "learners": _Mapping(_Object({
                                "accuracy": NUMBER, "seed_std": _Optional(NUMBER),
                                "episode_ci": _Optional(NUMBER),
                                "per_seed": _Mapping(_Optional(NUMBER))}))}),
})

SEAL_FIELDS: tuple[str, ...] = ("section_hashes", "content_hash")

# Absolute tolerance (points of %) when comparing stored metrics with ones recomputed from records.
RECOMPUTE_TOLERANCE = 1e-6


# ------------------------------------------------------------------ hashing

def _sections(result: Mapping[str, Any]) -> dict[str, Any]:
    """What section_hashes covers: each top-level field and each learner's metrics."""
    sections = {k: v for k, v in result.items() if k not in SEAL_FIELDS}
    metrics = result.get("metrics")
    if isinstance(metrics, dict):
        sections |= {f"metrics.{learner}": m for learner, m in metrics.items()}
    return sections


def seal(result: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `result` with section_hashes and content_hash (re)computed."""
    body = {k: v for k, v in result.items() if k not in SEAL_FIELDS}
    body["section_hashes"] = {name: json_sha256(value) for name, value in _sections(body).items()}
    body["content_hash"] = json_sha256(body)
    return body


def _hash_problems(result: Mapping[str, Any]) -> list[str]:
    body = {k: v for k, v in result.items() if k != "content_hash"}
    try:
        if result["content_hash"] == json_sha256(body):
            return []
    except (TypeError, ValueError) as exc:  # NaN or a non-JSON value
        return [f"content_hash: cannot hash the file's content ({exc})"]
    edited = "content hash mismatch — the file was edited after it was written"
    stored = result.get("section_hashes")
    if not isinstance(stored, dict):
        return [f"{edited} (section_hashes missing, cannot say where)"]
    recomputed = {name: json_sha256(value) for name, value in _sections(result).items()}
    changed = [name for name in sorted(set(stored) | set(recomputed))
               if stored.get(name) != recomputed.get(name)]
    # "metrics" changes whenever one learner's metrics change: name the learner instead.
    if any(name.startswith("metrics.") for name in changed):
        changed = [name for name in changed if name != "metrics"]
    if not changed:
        return [f"section_hashes: {edited}"]
    return [f"{name}: {edited}" for name in changed]


# ------------------------------------------------------------------ building

def metrics_from_records(records: pd.DataFrame, *, confidence: float = 0.95,
                         method: str = "normal", seed: int = 0, n_boot: int = 10_000
                         ) -> dict[str, dict[str, Any]]:
    """Per learner: accuracy (%), CI half-width (%), episodes, mask_mode, and per super-category.

    records: one run (`read_records` rows). NaN CIs (one episode) become null.
    """
    def entry(values: Any) -> dict[str, Any]:
        mean, half = mean_ci(values, confidence, method, n_boot=n_boot, seed=seed)
        return {"accuracy": mean, "ci": None if math.isnan(half) else half,
                "n_episodes": int(len(values))}

    metrics: dict[str, dict[str, Any]] = {}
    for learner, group in records.groupby("learner", sort=True):
        modes = sorted(set(group["mask_mode"].dropna()))
        if len(modes) > 1:
            raise ValueError(f"learner {learner!r} has records under several mask modes {modes}; "
                             "one result covers one run")
        fingerprints = sorted(set(group["fingerprint"].dropna()))
        if len(fingerprints) > 1:
            raise ValueError(f"learner {learner!r} has records of {len(fingerprints)} run "
                             f"fingerprints {fingerprints}: they were made under different "
                             "settings and cannot be pooled")
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
        }
    return metrics


def build_result(*, run_id: str, name: str, setting: Mapping[str, Any],
                 config: Mapping[str, Any], seeds: Mapping[str, int],
                 versions: Mapping[str, str], git_commit: str | None, git_dirty: bool | None,
                 hardware: Mapping[str, Any], dataset: Mapping[str, Any],
                 weights: Mapping[str, Any], episodes_hash: str, episodes_requested: int,
                 wall_time_s: float, records: pd.DataFrame,
                 confidence: float = 0.95, ci_method: str = "normal", ci_seed: int = 0,
                 n_boot: int = 10_000, created_utc: str | None = None,
                 sections: Mapping[str, Any] | None = None,
                 origins: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Any]:
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
        "setting": {key: setting.get(key) for key in
                    ("split", "n_way", "k_shot", "n_query", "mode", "mask_mode")},
        "config": dict(config),
        "seeds": dict(seeds),
        "versions": dict(versions),
        "git": {"commit": git_commit, "dirty": git_dirty},
        "hardware": dict(hardware),
        "dataset": dict(dataset),
        "weights": dict(weights),
        "episodes": {"hash": episodes_hash, "requested": int(episodes_requested),
                     "run": int(episodes_run.max())},
        "wall_time_s": float(wall_time_s),
        "ci": {"confidence": float(confidence), "method": ci_method, "seed": int(ci_seed),
               "n_boot": int(n_boot)},
        "metrics": metrics_from_records(own, confidence=confidence, method=ci_method,
                                        seed=ci_seed, n_boot=n_boot),
    } | {name: value for name, value in (sections or {}).items() if value is not None}
    for learner, origin in (origins or {}).items():
        if learner not in result["metrics"]:
            raise ValueError(f"origins: learner {learner!r} has no records in this run")
        result["metrics"][learner]["origin"] = dict(origin)
    for key, value in result.items():
        try:
            canonical_json(value)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"result field {key!r} holds a value JSON cannot store ({exc}); "
                             "pass plain str/int/float/bool/list/dict values (str() paths)") from None
    # Round-trip through JSON so the dict equals what a reader will load (tuples -> lists, ...).
    result = seal(json.loads(canonical_json(result)))
    problems = validate_result(result)
    if problems:
        raise ValueError("the result would not validate:\n  " + "\n  ".join(problems))
    return result


def with_sections(result: Mapping[str, Any], sections: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a valid result with optional sections (e.g. seed_spread) added, sealed anew;
    ValueError if the result would then not validate."""
    body = {k: v for k, v in result.items() if k not in SEAL_FIELDS} | dict(sections)
    sealed = seal(json.loads(canonical_json(body)))
    problems = validate_result(sealed)
    if problems:
        raise ValueError("the result would not validate:\n  " + "\n  ".join(problems))
    return sealed


def write_result(path: str | os.PathLike[str], result: Mapping[str, Any]) -> Path:
    """Write a result atomically (indented JSON); refuses a result that does not validate."""
    problems = validate_result(result)
    if problems:
        raise ValueError(f"{path}: refusing to write an invalid result:\n  " + "\n  ".join(problems))
    text = json.dumps(result, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    return atomic_write_text(path, text)


def read_result(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a result file (no validation; see validate_result_file).

    Raises:
        OSError: unreadable. StrictJSONError: not JSON, a key twice, or absurdly nested.
    """
    return loads_strict(read_input_bytes(path, what="result file", max_bytes=MAX_RESULT_BYTES))


# ------------------------------------------------------------------ validating

def _consistency_problems(result: Mapping[str, Any]) -> list[str]:
    """Checks between fields, run on a structurally valid result."""
    problems = []
    ci = result["ci"]
    if not 0 < ci["confidence"] < 1:
        problems.append(f"ci.confidence: must lie in (0, 1), got {ci['confidence']}")
    if ci["method"] not in CI_METHODS:
        problems.append(f"ci.method: must be one of {', '.join(CI_METHODS)}, got {ci['method']!r}")
    episodes = result["episodes"]
    if episodes["run"] > episodes["requested"]:
        problems.append(f"episodes.run ({episodes['run']}) exceeds episodes.requested "
                        f"({episodes['requested']})")
    if episodes["run"] < 1:
        problems.append(f"episodes.run must be at least 1, got {episodes['run']}")
    setting = result["setting"]
    for key, low in (("n_way", 2), ("k_shot", 1), ("n_query", 1)):
        if setting[key] is not None and setting[key] < low:
            problems.append(f"setting.{key}: must be at least {low}, got {setting[key]}")
    weights = result["weights"]
    if weights["provenance"] == "hub" and not weights["saw_test_classes"]:
        problems.append("weights.saw_test_classes: false, but hub weights (ImageNet-pretrained) "
                        "saw the test classes; it must be true")
    problems += _copied_metrics_problems(result["metrics"])
    if result["wall_time_s"] < 0:
        problems.append(f"wall_time_s: must be >= 0, got {result['wall_time_s']}")
    if not result["metrics"]:
        problems.append("metrics: no learner")
    z = (scipy_stats.norm.ppf((1 + ci["confidence"]) / 2)
         if 0 < ci["confidence"] < 1 else math.nan)
    for learner, m in result["metrics"].items():
        entries = [(f"metrics.{learner}", m)] + [
            (f"metrics.{learner}.per_super_category.{name}", s)
            for name, s in m["per_super_category"].items()]
        for where, entry in entries:
            acc, half, n = entry["accuracy"], entry["ci"], entry["n_episodes"]
            if not 0 <= acc <= 100:
                problems.append(f"{where}.accuracy: {acc} is not a percentage in [0, 100]")
            if n < 1:
                problems.append(f"{where}.n_episodes: must be at least 1, got {n}")
            if half is None:
                if n > 1:
                    problems.append(f"{where}.ci: null but {n} episodes give a CI")
                continue
            if n < 2:
                problems.append(f"{where}.ci: {half} from {n} episode; a CI needs at least 2 "
                                "episodes (null)")
            if half < 0:
                problems.append(f"{where}.ci: negative half-width {half}")
            elif half > 100:
                problems.append(f"{where}.ci: half-width {half} exceeds 100 points")
            # Accuracies in [0, 1] with mean p have sample variance <= n/(n-1) p(1-p)
            # (Bhatia-Davis), which bounds the normal CI given the stored accuracy.
            if ci["method"] == "normal" and n > 1 and 0 <= acc <= 100:
                p = acc / 100
                bound = 100 * z * math.sqrt(p * (1 - p) / (n - 1))
                if half > bound + 1e-9:
                    problems.append(f"{where}.ci: {half:.4g} is wider than any {n} episodes with "
                                    f"mean accuracy {acc:.4g}% allow (max {bound:.4g}); the "
                                    "accuracy or the CI was changed")
        if m["n_episodes"] != episodes["run"]:
            problems.append(f"metrics.{learner}.n_episodes: {m['n_episodes']} but episodes.run is "
                            f"{episodes['run']}; every learner must run the same episodes")
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
            problems.append(f"metrics.{learner}: identical to metrics.{seen[body]} in every "
                            "number; the same results cannot stand under two learners")
        seen.setdefault(body, learner)
    return problems


def _copied_episodes_problems(records: pd.DataFrame) -> list[str]:
    """Two learners whose records agree on every episode's per-class counts under the same run
    fingerprint (real learners' records carry different ones)."""
    seen: dict[bytes, str] = {}
    problems = []
    for learner, group in records.sort_values("episode").groupby("learner", sort=True):
        fingerprints = sorted(map(str, set(group["fingerprint"])))
        body = canonical_json([fingerprints] + [[int(e), pc] for e, pc in
                                                zip(group["episode"], group["per_class"])])
        if body in seen:
            problems.append(f"records: learner {learner!r} has the same per-episode results as "
                            f"{seen[body]!r} on every episode; records copied under another name")
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
    setting = result["setting"]
    own = records[records["run_id"] == result["run_id"]]
    if own.empty:
        return [f"records: no episode of run_id {result['run_id']!r} in the records given"]
    problems = []
    # mask_mode is checked per learner, with the metrics below: the annotation-free controls and
    # part_protonet_predicted pool over their own masks, not the run's (setting.mask_mode)
    for key in ("split", "n_way", "k_shot", "n_query"):
        if setting.get(key) is None:
            continue  # not fixed for the run (variable episodes)
        found = set(own[key].dropna().unique())
        if found - {setting[key]} or own[key].isna().any():
            problems.append(f"setting.{key}: {setting[key]!r} but the records hold "
                            f"{sorted(map(str, found))}")
    ci = result["ci"]
    try:
        recomputed = metrics_from_records(own, confidence=ci["confidence"], method=ci["method"],
                                          seed=ci["seed"], n_boot=ci["n_boot"])
    except ValueError as exc:  # several mask modes or fingerprints under one learner
        return problems + [f"records: {exc}"]
    stored = result["metrics"]
    for learner in sorted(set(stored) & set(recomputed)):
        mine, theirs = stored[learner]["fingerprint"], recomputed[learner]["fingerprint"]
        if mine != theirs:
            problems.append(f"metrics.{learner}.fingerprint: the result was made under run "
                            f"fingerprint {mine!r} but the records carry {theirs!r}: records of "
                            "another setting (data, weights, features, episodes or options)")
    for learner in sorted(set(stored) - set(recomputed)):
        problems.append(f"metrics.{learner}: not in the records")
    for learner in sorted(set(recomputed) - set(stored)):
        problems.append(f"metrics.{learner}: in the records but missing from the file")

    def compare(where: str, a: Mapping[str, Any], b: Mapping[str, Any]) -> None:
        for field in ("accuracy", "ci", "n_episodes", "mask_mode", "transductive"):
            if field not in a:
                continue  # per-super-category entries carry no mask_mode; older files no flag
            x, y = a[field], b[field]
            if isinstance(x, str) or isinstance(y, str):
                same = x == y
            else:
                same = (x is None and y is None) or (
                    x is not None and y is not None and abs(x - y) <= RECOMPUTE_TOLERANCE)
            if not same:
                problems.append(f"{where}.{field}: {x!r} in the file, {y!r} recomputed from "
                                "the records")

    for learner in sorted(set(stored) & set(recomputed)):
        compare(f"metrics.{learner}", stored[learner], recomputed[learner])
        s_super, r_super = stored[learner]["per_super_category"], recomputed[learner][
            "per_super_category"]
        for name in sorted(set(s_super) ^ set(r_super)):
            problems.append(f"metrics.{learner}.per_super_category.{name}: present in only one "
                            "of the file and the records")
        for name in sorted(set(s_super) & set(r_super)):
            compare(f"metrics.{learner}.per_super_category.{name}", s_super[name], r_super[name])
    problems += _copied_episodes_problems(own)
    n_run = int(own.groupby("learner")["episode"].nunique().max())
    if n_run != result["episodes"]["run"]:
        problems.append(f"episodes.run: {result['episodes']['run']} in the file, {n_run} episodes "
                        "in the records")
    return problems


def validate_result(result: Any, *, episodes_hash: str | None = None,
                    records: pd.DataFrame | None = None) -> list[str]:
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
            return [f"schema_version: {version} is newer than this partbench reads "
                    f"({SCHEMA_VERSION}); upgrade partbench"]
        return [f"schema_version: expected {SCHEMA_VERSION}, got {version!r}"]
    if result.get("kind") != KIND:
        return [f"kind: expected {KIND!r}, got {result.get('kind')!r}: not a partbench result file"]
    problems = RESULT_SCHEMA.check(result, "")
    if problems:  # the checks below need every field present and typed
        return problems
    problems += _hash_problems(result)
    problems += _consistency_problems(result)
    if episodes_hash is not None and result["episodes"]["hash"] != episodes_hash:
        problems.append(f"episodes.hash does not match the episodes given: file has "
                        f"{result['episodes']['hash']!r}, the episodes hash to {episodes_hash!r}")
    if records is not None:
        problems += _record_problems(result, records)
    return problems


def validate_result_file(path: str | os.PathLike[str], *, episodes_hash: str | None = None,
                         episodes_file: str | os.PathLike[str] | None = None,
                         episode_file_hasher: Callable[[Path], str] | None = None,
                         records: pd.DataFrame | str | os.PathLike[str] | list | None = None
                         ) -> list[str]:
    """Every problem with a result file, as precise one-line messages (empty: valid).

    episodes_file + episode_file_hasher: hash the episode file with the hasher (the caller
    supplies it, e.g. one built on `episodes.episodes_hash`; results/ does not read episode files)
    and compare with episodes.hash. records: a DataFrame or path(s) for `read_records`.
    """
    path = Path(path)
    try:
        result = read_result(path)
    except FileNotFoundError:
        return ["no such file"]
    except OSError as exc:
        return [f"cannot read: {exc}"]
    except StrictJSONError as exc:
        return [str(exc)]
    if episodes_file is not None:
        if episode_file_hasher is None:
            raise TypeError("episodes_file needs episode_file_hasher (a function Path -> hash)")
        episodes_hash = episode_file_hasher(Path(episodes_file))
    if records is not None and not isinstance(records, pd.DataFrame):
        records = read_records(records)
    return validate_result(result, episodes_hash=episodes_hash, records=records)
