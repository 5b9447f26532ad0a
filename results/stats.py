"""Confidence intervals over episodes and paired comparisons of two learners on the same episodes.

Convention (stated once, used everywhere): the "normal" interval is the few-shot literature's
`z * std / sqrt(n)` with z = norm.ppf((1 + confidence) / 2) (1.95996 for 95%) and the *sample*
standard deviation (ddof=1), i.e. `z * scipy.stats.sem(x)`. Several papers' code uses np.std
(ddof=0); the two differ by a factor sqrt(n / (n - 1)), 0.08% at 600 episodes.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

CI_METHODS: tuple[str, ...] = ("normal", "bootstrap")
PAIRED_TESTS: tuple[str, ...] = ("ttest", "wilcoxon")


def _as_values(values: Any, name: str = "values") -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if array.size == 0:
        raise ValueError(f"{name}: no values (need at least one episode)")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name}: contains NaN or infinite values")
    return array


def mean_ci(
    values: Any,
    confidence: float = 0.95,
    method: str = "normal",
    *,
    n_boot: int = 10_000,
    seed: int = 0,
) -> tuple[float, float]:
    """Mean of `values` (n,) and the half-width of its `confidence` interval.

    method "normal": z * std(ddof=1) / sqrt(n). method "bootstrap": percentile bootstrap of the
    mean (scipy.stats.bootstrap, `n_boot` resamples, rng seeded with `seed`), half-width =
    (high - low) / 2. The half-width is NaN for a single value (no spread can be estimated).
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    array = _as_values(values)
    mean = float(array.mean())
    if array.size < 2:
        return mean, math.nan
    if method == "normal":
        z = stats.norm.ppf((1 + confidence) / 2)
        return mean, float(z * array.std(ddof=1) / math.sqrt(array.size))
    if method == "bootstrap":
        if np.all(array == array[0]):
            return mean, 0.0  # every resample has the same mean
        result = stats.bootstrap(
            (array,),
            np.mean,
            confidence_level=confidence,
            n_resamples=n_boot,
            method="percentile",
            rng=np.random.default_rng(seed),
        )
        low, high = result.confidence_interval
        return mean, float((high - low) / 2)
    raise ValueError(f"method must be one of {', '.join(CI_METHODS)}, got {method!r}")


@dataclass(frozen=True)
class PairedComparison:
    """A - B over the same episodes: mean difference, its CI, and the test's p-value."""

    mean_difference: float
    ci_low: float
    ci_high: float
    p_value: float
    n: int
    test: str
    confidence: float

    @property
    def half_width(self) -> float:
        return (self.ci_high - self.ci_low) / 2

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _align(a: Any, b: Any) -> tuple[np.ndarray, np.ndarray]:
    """Pair values by episode: Series are aligned on their index, arrays must match in length."""
    if isinstance(a, pd.Series) and isinstance(b, pd.Series):
        for name, s in (("a", a), ("b", b)):
            if not s.index.is_unique:
                raise ValueError(f"{name}: episode index has duplicates")
        only_a = a.index.difference(b.index)
        only_b = b.index.difference(a.index)
        if len(only_a) or len(only_b):
            raise ValueError(
                f"the two learners were not run on the same episodes: {len(only_a)} episodes only "
                f"in a (e.g. {list(only_a[:3])}), {len(only_b)} only in b (e.g. {list(only_b[:3])}); "
                "compare them on the same episodes (same seed, split, setting)"
            )
        b = b.loc[a.index]
        return _as_values(a, "a"), _as_values(b, "b")
    if isinstance(a, pd.Series) or isinstance(b, pd.Series):
        raise TypeError("pass both a and b as pd.Series indexed by episode, or both as arrays")
    a_values, b_values = _as_values(a, "a"), _as_values(b, "b")
    if a_values.shape != b_values.shape:
        raise ValueError(
            f"a has {a_values.size} episodes, b has {b_values.size}: "
            "a paired comparison needs the same episodes in the same order"
        )
    return a_values, b_values


def paired_difference(
    a: Any, b: Any, confidence: float = 0.95, test: str = "ttest"
) -> PairedComparison:
    """Compare two learners' per-episode accuracies on the same episodes.

    a, b: (n,) arrays in the same episode order, or pd.Series indexed by episode (aligned here;
    differing episode sets are refused). The CI is that of the mean of d = a - b: with
    test="ttest" the t interval that matches scipy.stats.ttest_rel's p-value; with
    test="wilcoxon" (signed-rank p-value, no normality assumed) the normal interval of `mean_ci`.
    """
    a_values, b_values = _align(a, b)
    n = a_values.size
    if n < 2:
        raise ValueError(f"a paired comparison needs at least 2 episodes, got {n}")
    diff = a_values - b_values
    mean = float(diff.mean())
    if test == "ttest":
        if np.all(diff == diff[0]):  # no spread: the t statistic is undefined
            return PairedComparison(
                mean, mean, mean, 1.0 if mean == 0 else 0.0, n, test, confidence
            )
        result = stats.ttest_rel(a_values, b_values)
        interval = result.confidence_interval(confidence_level=confidence)
        return PairedComparison(
            mean,
            float(interval.low),
            float(interval.high),
            float(result.pvalue),
            n,
            test,
            confidence,
        )
    if test == "wilcoxon":
        _, half = mean_ci(diff, confidence)
        if np.all(diff == 0):
            p_value = 1.0
        else:
            p_value = float(stats.wilcoxon(a_values, b_values).pvalue)
        return PairedComparison(mean, mean - half, mean + half, p_value, n, test, confidence)
    raise ValueError(f"test must be one of {', '.join(PAIRED_TESTS)}, got {test!r}")
