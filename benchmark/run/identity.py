"""What a run's records depend on, sealed in the run folder so a resume cannot mix settings.

A run's identity has two parts, both stored in `<run>/run.json` (written only while the records
lock is held):

- `config`: every config key that changes what an episode record says, flattened to dotted keys
  (`episodes.seed`, `backbone.weights`, `learners`, ...). Keys that change only speed or where
  files go (RESUMABLE_KEYS) are left out. Compared before any data is loaded, so
  `--resume RUN --set episodes.seed=1` or an edited config.yaml is refused at once.
- `content`: what the config names, measured: the dataset fingerprint, the backbone weights'
  sha256, the feature cache keys, and the episode-file hash. Compared once they are known, so a
  dataset or checkpoint changed on disk behind the same config is refused too.

Every record carries `fingerprint` = learner_fingerprint(identity, learner): sha256 over both
parts and the learner's spec, so `validate --records` can tell records of another setting even
when they share a run_id. Like the other hashes it is a seal, not a signature.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from benchmark.config.errors import ConfigError
from benchmark.config.run import RunConfig
from episodes.storage import (
    StrictJSONError,
    atomic_write_text,
    canonical_json,
    json_sha256,
    loads_strict,
)
from results.run_files import IDENTITY_FILE

IDENTITY_FORMAT = "partbench-run"
# Config keys a resume may change: speed, devices, where files live (the content part still
# checks that the dataset and weights behind a moved path are the same), how many episodes
# (episode i is the same whatever the count), and the report's CI settings (computed at the
# end over all records).
RESUMABLE_KEYS: tuple[str, ...] = (
    "name",
    "output_dir",
    "cache_dir",
    "data.root",
    "backbone.checkpoint",
    "features.batch_size",
    "features.num_workers",
    "features.device",
    "train.num_workers",
    "episodes.batch_size",
    "episodes.n_episodes",
    "report.",
)


class RunIdentityError(ConfigError):
    """A resume whose settings differ from the run's; the message names the first difference."""


_canonical = canonical_json


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping) and value:
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def _resumable(key: str) -> bool:
    return any(key == k or (k.endswith(".") and key.startswith(k)) for k in RESUMABLE_KEYS)


def determining_config(cfg: RunConfig) -> dict[str, Any]:
    """The config keys the records depend on, flattened: {"episodes.seed": 0, "learners": [...]}."""
    raw = cfg.to_dict()
    learners = raw.pop("learners")
    flat = {k: v for k, v in _flatten(raw).items() if not _resumable(k)}
    flat["learners"] = learners
    return json.loads(_canonical(flat))


def first_difference(stored: Mapping[str, Any], now: Mapping[str, Any]) -> str | None:
    """'key: A in the run, B now' for the first (sorted) key that differs, else None."""
    for key in sorted(set(stored) | set(now)):
        before, after = stored.get(key, "(unset)"), now.get(key, "(unset)")
        if _canonical(before) != _canonical(after):
            return f"{key}: {_show(before)} in the run, {_show(after)} now"
    return None


def _show(value: Any) -> str:
    text = value if isinstance(value, str) else _canonical(value)
    return text if len(text) <= 80 else text[:77] + "..."


def learner_fingerprint(
    config: Mapping[str, Any], content: Mapping[str, Any], learner: Mapping[str, Any]
) -> str:
    """The fingerprint every record of `learner` ({"name", "options"}) carries (16 hex digits)."""
    body = {"config": config, "content": content, "learner": learner}
    return json_sha256(body)[:16]


def read_identity(run_dir: Path) -> dict[str, Any] | None:
    """The identity stored in run_dir (None if there is none yet).

    Raises:
        RunIdentityError: the file is unreadable, not JSON, or not a run identity.
    """
    path = Path(run_dir) / IDENTITY_FILE
    if not path.exists():
        return None
    try:
        doc = loads_strict(path.read_bytes())
    except (OSError, StrictJSONError) as exc:
        raise RunIdentityError(f"{path}: cannot read the run's identity: {exc}") from None
    if (
        not isinstance(doc, dict)
        or doc.get("format") != IDENTITY_FORMAT
        or not isinstance(doc.get("config"), dict)
        or not isinstance(doc.get("content", {}), dict)
    ):
        raise RunIdentityError(
            f"{path}: not a partbench run identity (field 'format' != "
            f"{IDENTITY_FORMAT!r}); was it edited?"
        )
    times = [doc.get("wall_time_s", 0.0), *doc.get("learner_time_s", {}).values()]
    if not isinstance(doc.get("learner_time_s", {}), dict) or not all(
        isinstance(t, (int, float)) and not isinstance(t, bool) and 0 <= t < 1e9 for t in times
    ):
        raise RunIdentityError(
            f"{path}: wall_time_s and learner_time_s must be seconds >= 0; was it edited?"
        )
    return doc


def write_identity(
    run_dir: Path,
    config: Mapping[str, Any],
    content: Mapping[str, Any] | None,
    wall_time_s: float = 0.0,
    learner_time_s: Mapping[str, float] | None = None,
) -> Path:
    """Store the identity (content may be None until it is measured), the run's wall time and
    each learner's evaluation time so far."""
    doc = {
        "format": IDENTITY_FORMAT,
        "config": dict(config),
        "content": dict(content or {}),
        "wall_time_s": float(wall_time_s),
        "learner_time_s": {k: float(v) for k, v in (learner_time_s or {}).items()},
    }
    return atomic_write_text(
        Path(run_dir) / IDENTITY_FILE,
        json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n",
    )


def check_config(stored: Mapping[str, Any], cfg: RunConfig, run_dir: Path) -> None:
    """Refuse a resume whose determining config differs from the run's, naming the key."""
    difference = first_difference(stored["config"], determining_config(cfg))
    if difference is not None:
        raise RunIdentityError(
            f"--resume {run_dir}: the settings differ from the run's ({difference}); its "
            "records would mix two settings. Resume without the change, or start a new run"
        )


def check_content(stored: Mapping[str, Any], content: Mapping[str, Any], run_dir: Path) -> None:
    """Refuse a resume whose data, weights, features or episodes differ from the run's."""
    if not stored.get("content"):
        return  # the first invocation stopped before measuring them: nothing to compare yet
    difference = first_difference(stored["content"], content)
    if difference is not None:
        raise RunIdentityError(
            f"--resume {run_dir}: what the run's config names has changed ({difference}); "
            "its records would mix two settings. Restore it, or start a new run"
        )
