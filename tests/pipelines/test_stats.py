"""Paired statistics of the studies (pipelines.common.stats) against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from pipelines.common.stats import bootstrap_interval, paired_differences, paired_markdown, t_interval


def _per_run() -> pd.DataFrame:
    """Two sizes; ``ours`` with two classifier seeds per split, ``real`` with one; split 3 only for ``ours``."""
    rows = []
    ours = {0: (0.8, 0.9), 1: (0.7, 0.7), 2: (0.6, 0.8), 3: (0.5, 0.5)}
    real = {0: (0.8,), 1: (0.6,), 2: (0.75,)}
    for method, scores in (("real", real), ("ours", ours)):
        for seed, values in scores.items():
            for k, value in enumerate(values):
                rows.append({"method": method, "size": 10, "seed": seed, "classifier_seed": k,
                             "balanced_accuracy": value})
    rows.append({"method": "real", "size": 50, "seed": 0, "classifier_seed": 0, "balanced_accuracy": 0.9})
    rows.append({"method": "ours", "size": 50, "seed": 0, "classifier_seed": 0, "balanced_accuracy": 0.95})
    return pd.DataFrame(rows)


def test_t_interval_matches_the_hand_computed_interval() -> None:
    # differences 0.05, 0.10, -0.05: mean 1/30, squared deviations sum to 0.0116667, sd = sqrt(0.0116667 / 2)
    low, high = t_interval([0.05, 0.10, -0.05])
    half = stats.t.ppf(0.975, df=2) * math.sqrt(0.0116666667 / 2) / math.sqrt(3)
    assert low == pytest.approx(1 / 30 - half, abs=1e-9)
    assert high == pytest.approx(1 / 30 + half, abs=1e-9)
    assert half == pytest.approx(0.18973, abs=1e-5)  # 4.302653 x 0.0440959
    assert all(math.isnan(v) for v in t_interval([0.1]))


def test_bootstrap_interval_of_two_values_spans_both_atoms() -> None:
    # Resampled means of [0, 1] are 0 (1/4), 0.5 (1/2), 1 (1/4): the 2.5 % and 97.5 % quantiles are 0 and 1.
    assert bootstrap_interval([0.0, 1.0], n_boot=4000) == (0.0, 1.0)
    assert all(math.isnan(v) for v in bootstrap_interval([0.3]))


def test_bootstrap_interval_approaches_the_normal_interval_and_is_reproducible() -> None:
    values = np.random.default_rng(1).normal(0.02, 0.05, size=400)
    low, high = bootstrap_interval(values, n_boot=20_000, seed=3)
    assert (low, high) == bootstrap_interval(values, n_boot=20_000, seed=3)
    half = 1.959964 * values.std(ddof=1) / math.sqrt(len(values))
    # The bootstrap's own noise at 20,000 resamples and the sample's skew: well under 5 % of the half-width.
    assert low == pytest.approx(values.mean() - half, abs=0.05 * half)
    assert high == pytest.approx(values.mean() + half, abs=0.05 * half)


def test_paired_differences_average_classifier_seeds_and_pair_only_shared_splits() -> None:
    paired = paired_differences(_per_run(), baselines=["real", "missing"], group_by=["size"])
    assert list(paired[["size", "method", "baseline"]].itertuples(index=False, name=None)) == [
        (10, "ours", "real"), (50, "ours", "real")]
    row = paired.iloc[0]
    # split means of ours 0.85, 0.70, 0.70 (split 3 has no real run), minus real 0.80, 0.60, 0.75
    assert row.units == 3
    assert row.mean_difference == pytest.approx(1 / 30)
    assert row.std_difference == pytest.approx(math.sqrt(0.0116666667 / 2))
    assert (row.t_low, row.t_high) == pytest.approx(t_interval([0.05, 0.10, -0.05]))
    assert (row.bootstrap_low, row.bootstrap_high) == pytest.approx(bootstrap_interval([0.05, 0.10, -0.05]))
    assert row.p_value == pytest.approx(stats.ttest_rel([0.85, 0.7, 0.7], [0.8, 0.6, 0.75]).pvalue)
    assert row.wins == 2
    single = paired.iloc[1]
    assert single.units == 1 and single.mean_difference == pytest.approx(0.05)
    assert math.isnan(single.t_low) and math.isnan(single.p_value)


def test_paired_differences_without_groups_and_markdown() -> None:
    per_run = _per_run().query("size == 10").drop(columns="size")
    paired = paired_differences(per_run, baselines=["ours"])
    assert list(paired["method"]) == ["real"]
    assert paired.iloc[0].mean_difference == pytest.approx(-1 / 30)
    text = paired_markdown(paired, {"real": "Real", "ours": "Ours"})
    assert "| Real | Ours | 3 | -3.3 |" in text
    assert paired_differences(per_run.iloc[0:0], baselines=["real"]).empty
