"""CIs and paired comparisons against scipy's own interval and test functions."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from results.stats import mean_ci, paired_difference


@pytest.mark.parametrize("confidence", [0.95, 0.9, 0.99])
def test_normal_ci_equals_scipy_norm_interval_with_sem(confidence):
    values = np.random.default_rng(3).uniform(0.2, 0.9, size=600)
    low, high = stats.norm.interval(confidence, loc=values.mean(), scale=stats.sem(values))
    mean, half = mean_ci(values, confidence)
    assert mean == pytest.approx((low + high) / 2, abs=1e-12)
    assert half == pytest.approx((high - low) / 2, rel=1e-12)


def test_normal_ci_on_hand_computed_values():
    # [0.2, 0.4, 0.6, 0.8]: sample std (ddof=1) = sqrt(0.2/3) = 0.258199, sem = 0.129099.
    mean, half = mean_ci([0.2, 0.4, 0.6, 0.8])
    assert mean == pytest.approx(0.5)
    assert half == pytest.approx(1.959964 * 0.1290994, rel=1e-6)
    assert 1.96 * np.std([0.2, 0.4, 0.6, 0.8], ddof=1) / 2 == pytest.approx(half, rel=1e-4)


def test_single_value_has_no_ci_and_bad_input_is_refused():
    assert math.isnan(mean_ci([0.7])[1])
    with pytest.raises(ValueError, match="no values"):
        mean_ci([])
    with pytest.raises(ValueError, match="NaN"):
        mean_ci([0.5, float("nan")])
    with pytest.raises(ValueError, match="method"):
        mean_ci([0.1, 0.2], method="exact")


def test_bootstrap_ci_is_seeded_and_close_to_normal_on_many_episodes():
    values = np.random.default_rng(0).uniform(0.0, 1.0, size=400)
    _, normal = mean_ci(values)
    m1, boot1 = mean_ci(values, method="bootstrap", n_boot=2000, seed=1)
    _, boot1_again = mean_ci(values, method="bootstrap", n_boot=2000, seed=1)
    _, boot2 = mean_ci(values, method="bootstrap", n_boot=2000, seed=2)
    assert m1 == pytest.approx(values.mean())
    assert boot1 == boot1_again
    assert boot1 != boot2
    assert boot1 == pytest.approx(normal, rel=0.1)  # CLT: percentile bootstrap ~ normal
    assert mean_ci([0.5, 0.5, 0.5], method="bootstrap")[1] == 0.0


def test_paired_ttest_matches_scipy_ttest_rel_and_t_interval():
    rng = np.random.default_rng(5)
    b = rng.uniform(0.3, 0.8, size=50)
    a = b + rng.normal(0.02, 0.05, size=50)
    result = paired_difference(a, b)
    reference = stats.ttest_rel(a, b)
    d = a - b
    t = stats.t.ppf(0.975, df=len(d) - 1)
    half = t * d.std(ddof=1) / math.sqrt(len(d))
    assert result.p_value == pytest.approx(reference.pvalue, rel=1e-12)
    assert result.mean_difference == pytest.approx(d.mean())
    assert result.ci_low == pytest.approx(d.mean() - half, rel=1e-9)
    assert result.ci_high == pytest.approx(d.mean() + half, rel=1e-9)
    assert result.n == 50


def test_paired_wilcoxon_matches_scipy():
    rng = np.random.default_rng(6)
    a, b = rng.uniform(size=40), rng.uniform(size=40)
    result = paired_difference(a, b, test="wilcoxon")
    assert result.p_value == pytest.approx(stats.wilcoxon(a, b).pvalue, rel=1e-12)
    assert result.half_width == pytest.approx(mean_ci(a - b)[1])


def test_paired_series_are_aligned_on_episode_and_differing_sets_refused():
    a = pd.Series([0.9, 0.8, 0.7, 0.6], index=[3, 1, 2, 0])
    b = pd.Series([0.5, 0.6, 0.7, 0.8], index=[0, 1, 2, 3])
    result = paired_difference(a, b)
    # episode-wise: 0: .6-.5, 1: .8-.6, 2: .7-.7, 3: .9-.8
    assert result.mean_difference == pytest.approx(np.mean([0.1, 0.2, 0.0, 0.1]))
    with pytest.raises(ValueError, match="not run on the same episodes"):
        paired_difference(a, b.drop(3).rename(index={2: 7}))
    with pytest.raises(ValueError, match="same episodes"):
        paired_difference(np.ones(4), np.ones(5))
