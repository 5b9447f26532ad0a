"""Training-seed spread: the same episodes scored with one backbone per training seed.

The episode CI says how much a number would move with other episodes; it says nothing about how
much it moves with another training run of the backbone. A multi-seed run evaluates every seed's
backbone on the very same episodes, and these tables give both:
- per learner, the mean over seeds of each seed's mean accuracy, the between-seed standard
  deviation (ddof=1) of those means, and the episode CI (the mean over seeds of each seed's
  half-width);
- per learner against a baseline, the paired difference computed within each seed (episode by
  episode) and then combined: its mean over seeds, the between-seed std of the per-seed
  differences, and the episode CI of the per-episode difference averaged over seeds (a paired t
  interval over episodes).

Input: a mapping seed -> records DataFrame (`records.read_records`) of one run each.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from results.stats import mean_ci, paired_difference
from results.tables import ACC_CI, LEARNER_COLUMNS, SETTING_COLUMNS, format_acc

SEED_COLUMN = "seed"


def _stacked(records_by_seed: Mapping[int, pd.DataFrame]) -> pd.DataFrame:
    """One frame with a `seed` column; every seed must hold the same learners and episodes."""
    if not records_by_seed:
        raise ValueError("no seeds: pass at least one seed's records")
    frames = []
    reference: set | None = None
    for seed, frame in sorted(records_by_seed.items()):
        keys = set(zip(frame["learner"], frame["episode"]))
        if reference is None:
            reference, first = keys, seed
        elif keys != reference:
            missing = sorted(reference - keys)[:3] or sorted(keys - reference)[:3]
            raise ValueError(
                f"seed {seed} was not scored on the same (learner, episode) pairs as "
                f"seed {first} (e.g. {missing}); every seed must run the same "
                "learners on the same episodes"
            )
        frames.append(frame.assign(**{SEED_COLUMN: int(seed)}))
    return pd.concat(frames, ignore_index=True)


def _std(values: np.ndarray) -> float:
    return float(np.std(values, ddof=1)) if values.size > 1 else float("nan")


def seed_accuracy_table(
    records_by_seed: Mapping[int, pd.DataFrame], *, confidence: float = 0.95
) -> pd.DataFrame:
    """Per setting and learner: seeds, episodes, mean over seeds, between-seed std, episode CI.

    Columns: setting..., learner, mask_mode, seeds, episodes, accuracy (mean over seeds of the
    per-seed mean, %), seed_std, episode_ci (mean of the per-seed half-widths), "acc ± ci",
    then one column `seed <s>` per seed with that seed's mean accuracy.
    """
    frame = _stacked(records_by_seed)
    keys = [*SETTING_COLUMNS, *LEARNER_COLUMNS]
    seeds = sorted(frame[SEED_COLUMN].unique())
    rows = []
    for key, block in frame.groupby(keys, dropna=False, sort=True):
        means, halves = [], []
        for _, one in block.groupby(SEED_COLUMN, sort=True):
            mean, half = mean_ci(one["accuracy"].to_numpy() * 100.0, confidence)
            means.append(mean)
            halves.append(half)
        means_arr = np.asarray(means)
        accuracy, episode_ci = float(means_arr.mean()), float(np.mean(halves))
        row = dict(zip(keys, key)) | {
            "seeds": len(means),
            "episodes": int(block["episode"].nunique()),
            "accuracy": accuracy,
            "seed_std": _std(means_arr),
            "episode_ci": episode_ci,
            ACC_CI: format_acc(accuracy, episode_ci),
        }
        row |= {f"seed {s}": m for s, m in zip(sorted(block[SEED_COLUMN].unique()), means)}
        rows.append(row)
    columns = [
        *keys,
        "seeds",
        "episodes",
        "accuracy",
        "seed_std",
        "episode_ci",
        ACC_CI,
        *(f"seed {s}" for s in seeds),
    ]
    table = pd.DataFrame(rows, columns=columns)
    return table.sort_values(
        [*SETTING_COLUMNS, "accuracy"], ascending=[True] * 4 + [False], kind="stable"
    ).reset_index(drop=True)


def seed_paired_table(
    records_by_seed: Mapping[int, pd.DataFrame], baseline: str, *, confidence: float = 0.95
) -> pd.DataFrame:
    """Each learner minus `baseline`, paired within each seed, then combined over seeds.

    Columns: setting..., learner, baseline, seeds, episodes, difference (mean over seeds of the
    per-seed mean paired difference, points of %), seed_std (between-seed std of those per-seed
    differences), ci_low, ci_high (paired t interval over episodes of the seed-averaged
    per-episode difference), p_value, "diff ± ci", then `seed <s>` per-seed differences.
    """
    frame = _stacked(records_by_seed)
    if baseline not in set(frame["learner"]):
        raise ValueError(
            f"baseline learner {baseline!r} is not in the records "
            f"(learners: {', '.join(sorted(set(frame['learner'])))})"
        )
    seeds = sorted(frame[SEED_COLUMN].unique())
    rows = []
    for setting, block in frame.groupby(list(SETTING_COLUMNS), dropna=False, sort=True):
        # (episode, seed) -> accuracy in %, one column per learner
        wide = (
            block.pivot_table(
                index=["episode", SEED_COLUMN],
                columns="learner",
                values="accuracy",
                aggfunc="first",
            )
            * 100.0
        )
        if baseline not in wide:
            continue
        for name in sorted(c for c in wide.columns if c != baseline):
            diff = (wide[name] - wide[baseline]).unstack(SEED_COLUMN)  # episode x seed
            per_seed = diff.mean(axis=0).to_numpy()
            averaged = wide[[name, baseline]].groupby(level="episode").mean()
            paired = paired_difference(averaged[name], averaged[baseline], confidence)
            row = dict(zip(SETTING_COLUMNS, setting)) | {
                "learner": name,
                "baseline": baseline,
                "seeds": diff.shape[1],
                "episodes": paired.n,
                "difference": float(per_seed.mean()),
                "seed_std": _std(per_seed),
                "ci_low": paired.ci_low,
                "ci_high": paired.ci_high,
                "p_value": paired.p_value,
                "diff ± ci": format_acc(float(per_seed.mean()), paired.half_width),
            }
            row |= {f"seed {s}": float(v) for s, v in zip(diff.columns, per_seed)}
            rows.append(row)
    columns = [
        *SETTING_COLUMNS,
        "learner",
        "baseline",
        "seeds",
        "episodes",
        "difference",
        "seed_std",
        "ci_low",
        "ci_high",
        "p_value",
        "diff ± ci",
        *(f"seed {s}" for s in seeds),
    ]
    return pd.DataFrame(rows, columns=columns)


def seed_summary(
    records_by_seed: Mapping[int, pd.DataFrame], *, confidence: float = 0.95
) -> dict[str, Any]:
    """JSON-able summary for a result file: the seeds, and per learner the mean over seeds, the
    between-seed std, the episode CI and every seed's accuracy (%)."""
    table = seed_accuracy_table(records_by_seed, confidence=confidence)
    seeds = sorted(int(s) for s in records_by_seed)

    def number(value: Any) -> float | None:
        return None if value != value else round(float(value), 6)  # NaN (one seed) -> null

    learners = {}
    for row in table.to_dict("records"):
        learners[str(row["learner"])] = {
            "accuracy": number(row["accuracy"]),
            "seed_std": number(row["seed_std"]),
            "episode_ci": number(row["episode_ci"]),
            "per_seed": {str(s): number(row[f"seed {s}"]) for s in seeds},
        }
    return {"seeds": seeds, "n_seeds": len(seeds), "confidence": confidence, "learners": learners}
