"""The result-file format: its version, kind and layout, and the schema that checks it.

One JSON file per run and setting. Every metric sits beside its CI half-width; the file carries
what is needed to judge and reproduce the number (config, seeds, versions, commit, hardware,
dataset fingerprint, weights provenance and hash, the hash of the evaluated episodes, episodes
requested and run, wall time) and its seal (`section_hashes`, `content_hash`; see
results.schema.seal).

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
              records; absent in older files = false); annotations: "none" | "support" | "all",
              the test-time annotations its features read (results.protocols; absent in older
              files: implied by mask_mode); origin: where the learner came from (kind
              "builtin" | "module" | "entry-point" | "predictions", module, distribution,
              version, source_sha256, ...; see baselines.plugins.learner_origin)
    mask_quality (optional): {n_images, grid, grid_miou, image_miou, soft_miou, grid_iou,
              image_iou, soft_iou}
              the part head's IoU against the annotations (runs with predicted masks)
    learner_time_s (optional): {learner: seconds its fit and predict calls took, over every
        invocation of the run (kills and resumes included)}
    seed_spread (optional): {seeds, n_seeds, this_seed, confidence, learners: {learner:
              {accuracy, seed_std, episode_ci, per_seed}}}   one backbone per training seed
    section_hashes: {section: sha256}   (top-level sections and each metrics.<learner>)
    content_hash: sha256 (64 hex digits, as every hash partbench writes)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

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

    def __init__(
        self,
        fields: Mapping[str, _Spec],
        extra: _Spec | None = None,
        optional: Mapping[str, _Spec] | None = None,
    ):
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
LEARNER_METRICS = _Object(
    {
        "accuracy": NUMBER,
        "ci": _Optional(NUMBER),
        "n_episodes": INT,
        "mask_mode": _Optional(STR),  # part masks behind this learner's features; null: no parts
        # the run fingerprint its records carry (benchmark.run.identity); null: records without one
        "fingerprint": _Optional(STR),
        "per_super_category": _Mapping(METRIC),
    },
    optional={
        "transductive": BOOL,  # the learner used each episode's queries jointly
        "annotations": STR,  # results.protocols: test-time annotations its features read
        "origin": _Object({"kind": STR}, extra=ANY),  # where the learner's code came from
    },
)

RESULT_SCHEMA = _Object(
    {
        "schema_version": INT,
        "kind": STR,
        "run_id": STR,
        "name": STR,
        "created_utc": STR,
        "setting": _Object(
            {
                "split": STR,
                "n_way": _Optional(INT),
                "k_shot": _Optional(INT),
                "n_query": _Optional(INT),
                "mode": _Optional(STR),
                "mask_mode": _Optional(STR),
            }
        ),
        "config": _Mapping(ANY),
        "seeds": _Mapping(INT),
        "versions": _Object(
            {"partbench": STR, "torch": STR, "timm": STR, "python": STR}, extra=STR
        ),
        "git": _Object({"commit": _Optional(STR), "dirty": _Optional(BOOL)}),
        "hardware": _Object({"device": STR}, extra=ANY),
        "dataset": _Object({"name": STR, "fingerprint": STR}, extra=ANY),
        "weights": _Object(
            {
                "backbone": STR,
                "provenance": STR,
                "sha256": _Optional(STR),
                "saw_test_classes": BOOL,
            },
            extra=ANY,
        ),
        "episodes": _Object({"hash": STR, "requested": INT, "run": INT}),
        "wall_time_s": NUMBER,
        "ci": _Object({"confidence": NUMBER, "method": STR, "seed": INT, "n_boot": INT}),
        "metrics": _Mapping(LEARNER_METRICS),
        "section_hashes": _Mapping(STR),
        "content_hash": STR,
    },
    optional={
        # seconds each learner's fit and predict took, summed over every invocation of the run
        "learner_time_s": _Mapping(NUMBER),
        # part head vs annotations on the evaluated images (runs with predicted masks)
        "mask_quality": _Object(
            {
                "n_images": INT,
                "grid": _List(INT),
                "grid_miou": _Optional(NUMBER),
                "image_miou": _Optional(NUMBER),
                "soft_miou": _Optional(NUMBER),
                "grid_iou": _Mapping(_Optional(NUMBER)),
                "image_iou": _Mapping(_Optional(NUMBER)),
                "soft_iou": _Mapping(_Optional(NUMBER)),
            }
        ),
        # one backbone per training seed on the same episodes (`backbone.seeds`)
        "seed_spread": _Object(
            {
                "seeds": _List(INT),
                "n_seeds": INT,
                "this_seed": INT,
                "confidence": NUMBER,
                "learners": _Mapping(
                    _Object(
                        {
                            "accuracy": NUMBER,
                            "seed_std": _Optional(NUMBER),
                            "episode_ci": _Optional(NUMBER),
                            "per_seed": _Mapping(_Optional(NUMBER)),
                        }
                    )
                ),
            }
        ),
    },
)
