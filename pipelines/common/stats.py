"""Paired comparisons of a study's methods: each method against a baseline on the same splits.

Two methods trained on the same split (same training images, same validation and
test sets) share that split's luck, so the honest comparison is the per-split
difference, not two independent means. For every method, baseline and group
(e.g. training size) this module takes, per unit of pairing (the split seed),
the mean over that unit's repeated runs (classifier seeds), then the difference
method - baseline per unit, and reports over the units:

* the mean difference and its sample standard deviation;
* a 95 % Student-t interval, mean ± t_{0.975, n-1} · sd / sqrt(n) (the splits as
  independent draws; needs n >= 2);
* a 95 % percentile bootstrap interval of the mean (units resampled with
  replacement, a fixed seed, so the report is reproducible);
* the two-sided paired t-test p-value and the number of units the method won.

Intervals are per comparison, not adjusted for the many comparisons of a table.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from .markdown import render_table

__all__ = [
    "PAIRED_COLUMNS",
    "bootstrap_interval",
    "paired_differences",
    "paired_markdown",
    "t_interval",
    "write_paired_report",
]

PAIRED_COLUMNS = ("method", "baseline", "units", "mean_difference", "std_difference", "t_low", "t_high",
                  "bootstrap_low", "bootstrap_high", "p_value", "wins")


def t_interval(differences: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """Student-t interval of the mean of ``differences`` (NaN, NaN for fewer than 2 values).

    Args:
        differences: one paired difference per unit, ``(n,)``.
        level: coverage of the two-sided interval.
    """
    from scipy import stats

    values = np.asarray(differences, dtype=float)
    if len(values) < 2:
        return math.nan, math.nan
    mean = values.mean()
    half = stats.t.ppf(0.5 + level / 2, df=len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values))
    return float(mean - half), float(mean + half)


def bootstrap_interval(differences: Sequence[float], level: float = 0.95, n_boot: int = 10_000,
                       seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``differences`` (NaN, NaN for fewer than 2 values).

    Args:
        differences: one paired difference per unit, ``(n,)``.
        level: coverage of the two-sided interval.
        n_boot: bootstrap resamples of the units.
        seed: seeds the resampling (a fixed seed: the same report every time).
    """
    values = np.asarray(differences, dtype=float)
    if len(values) < 2:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(n_boot, len(values)))].mean(axis=1)
    low, high = np.quantile(means, [0.5 - level / 2, 0.5 + level / 2])
    return float(low), float(high)


def _p_value(values: np.ndarray) -> float:
    """Two-sided paired t-test of a zero mean difference (NaN below 2 units or for identical differences)."""
    from scipy import stats

    if len(values) < 2 or np.all(values == values[0]):
        return math.nan
    return float(stats.ttest_1samp(values, 0.0).pvalue)


def paired_differences(
    per_run: pd.DataFrame,
    baselines: Sequence[str],
    group_by: Sequence[str] = (),
    unit: str = "seed",
    value: str = "balanced_accuracy",
    level: float = 0.95,
    n_boot: int = 10_000,
    seed: int = 0,
) -> pd.DataFrame:
    """Every method against every baseline present, paired by ``unit`` within each group.

    Args:
        per_run: one row per run, with columns ``method``, ``unit``, ``value`` and
            ``group_by`` (further columns, e.g. the classifier seed, are averaged over
            within a unit).
        baselines: the reference methods (those absent from ``per_run`` are skipped).
        group_by: columns that split the comparison (e.g. ``("size",)``).
        unit: the column that pairs two methods' runs (the split).
        value: the metric compared.
        level, n_boot, seed: the intervals (see :func:`t_interval`, :func:`bootstrap_interval`).

    Returns:
        One row per (group, method, baseline) with a method other than the baseline:
        ``group_by`` columns then :data:`PAIRED_COLUMNS`. Only units where both methods
        finished count; ``units`` says how many.
    """
    group_by = list(group_by)
    columns = group_by + list(PAIRED_COLUMNS)
    if per_run.empty:
        return pd.DataFrame(columns=columns)
    means = {
        (tuple(key[:len(group_by)]), key[len(group_by)]): runs.groupby(unit, sort=True)[value].mean()
        for key, runs in per_run.groupby(group_by + ["method"], sort=False)
    }
    rows = []
    methods = list(dict.fromkeys(per_run["method"]))
    present = [b for b in dict.fromkeys(baselines) if b in methods]
    groups = per_run[group_by].drop_duplicates().itertuples(index=False) if group_by else [()]
    for group in groups:
        key = tuple(group)
        for baseline in present:
            reference = means.get((key, baseline))
            if reference is None:
                continue
            for method in methods:
                scores = means.get((key, method))
                if method == baseline or scores is None:
                    continue
                shared = scores.index.intersection(reference.index)
                if not len(shared):
                    continue
                differences = (scores[shared] - reference[shared]).to_numpy(dtype=float)
                t_low, t_high = t_interval(differences, level)
                boot_low, boot_high = bootstrap_interval(differences, level, n_boot, seed)
                rows.append({
                    **dict(zip(group_by, key)), "method": method, "baseline": baseline, "units": len(shared),
                    "mean_difference": float(differences.mean()),
                    "std_difference": float(differences.std(ddof=1)) if len(shared) > 1 else math.nan,
                    "t_low": t_low, "t_high": t_high, "bootstrap_low": boot_low, "bootstrap_high": boot_high,
                    "p_value": _p_value(differences), "wins": int((differences > 0).sum()),
                })
    return pd.DataFrame(rows, columns=columns)


def _interval(low: float, high: float) -> str:
    return "—" if math.isnan(low) else f"[{100 * low:+.1f}, {100 * high:+.1f}]"


def paired_markdown(paired: pd.DataFrame, labels: dict[str, str] | None = None, group_by: Sequence[str] = (),
                    group_title: str = "") -> str:
    """The paired table as Markdown, differences in percentage points.

    Args:
        paired: :func:`paired_differences`'s table.
        labels: display names of the methods.
        group_by: the grouping columns of ``paired`` (shown first).
        group_title: the header of the grouping column (default: its name).
    """
    labels = labels or {}
    group_by = list(group_by)
    head = ([group_title or c for c in group_by] + ["Method", "Baseline", "Splits", "Mean diff. (pts)",
                                                     "95 % CI (t)", "95 % CI (bootstrap)", "p (paired t)", "Wins"])
    rows = []
    for row in paired.itertuples(index=False):
        p = "—" if math.isnan(row.p_value) else f"{row.p_value:.3f}"
        cells = [str(getattr(row, c)) for c in group_by] + [
            labels.get(row.method, row.method), labels.get(row.baseline, row.baseline), str(row.units),
            f"{100 * row.mean_difference:+.1f}", _interval(row.t_low, row.t_high),
            _interval(row.bootstrap_low, row.bootstrap_high), p, f"{row.wins} / {row.units}"]
        rows.append(cells)
    return render_table(head, rows, "r" * len(group_by) + "ll" + "r" * 6)


def write_paired_report(folder: Path, per_run: pd.DataFrame, baselines: Sequence[str], labels: dict[str, str],
                        group_by: Sequence[str] = (), group_title: str = "", title: str = "") -> pd.DataFrame:
    """Write ``paired.csv`` and ``paired.md`` into ``folder`` (a study's report folder); return the table.

    The comparison is paired by split (``seed``), classifier seeds averaged within a split.
    """
    from augmentor.utils.io import write_bytes

    paired = paired_differences(per_run, baselines, group_by)
    write_bytes(folder / "paired.csv", paired.to_csv(index=False, float_format="%.6f").encode())
    header = (f"# {title}\n\nTest balanced accuracy, method minus baseline on the same split (percentage "
              "points; classifier seeds averaged within a split), over the splits where both finished: mean, "
              "95 % Student-t and percentile-bootstrap (10,000 resamples, seed 0) intervals, two-sided paired "
              "t-test p-value, splits won. Intervals are per comparison, not adjusted for multiplicity; with "
              "fewer than about 10 splits the bootstrap interval is too narrow (few distinct resamples): read the "
              "t interval.\n\n")
    write_bytes(folder / "paired.md", (header + paired_markdown(paired, labels, group_by, group_title) + "\n").encode())
    return paired
