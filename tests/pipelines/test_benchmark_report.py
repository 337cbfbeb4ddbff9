"""The generation benchmark's report tables (pipelines.benchmark.report)."""

import pandas as pd
import pytest

from pipelines.benchmark.report import SPREAD_COLUMNS, matched_differences_table, run_spread_table


def _summary(rows):
    """A summary table with only the columns the spread table reads."""
    return pd.DataFrame([{"key": key, "sampler": f"VAE - {key}", **dict(zip(SPREAD_COLUMNS, values))}
                         for key, values in rows])


def test_seed_spread_shows_both_runs_and_their_difference_for_the_rows_they_share():
    first = _summary([("gmm", (40.0, 100.0, 0.6, 0.5, 0.9)), ("kde", (39.5, 80.0, 0.64, 0.62, 0.63))])
    second = _summary([("kde", (38.0, 51.5, 0.628, 0.666, 0.627)), ("prior", (120.0, 400.0, 0.4, 0.1, 0.9))])
    lines = run_spread_table(first, second).splitlines()
    assert len(lines) == 3  # header, alignment, kde: the only row in both
    assert lines[2] == ("| VAE - kde | 39.50 / 38.00 (1.50) | 80.0 / 51.5 (28.5) | 0.640 / 0.628 (0.012) "
                        "| 0.620 / 0.666 (0.046) | 0.630 / 0.627 (0.003) |")


def test_seed_spread_of_runs_without_a_shared_row_is_refused():
    with pytest.raises(ValueError, match="share no row"):
        run_spread_table(_summary([("gmm", (1, 2, 3, 4, 5))]), _summary([("kde", (1, 2, 3, 4, 5))]))


def test_matched_differences_list_each_runs_difference_of_the_two_rows():
    runs = [_summary([("kde", (39.5, 80.0, 0.64, 0.6, 0.63)), ("ours", (39.0, 86.0, 0.58, 0.6, 0.69))]),
            _summary([("kde", (38.0, 51.5, 0.63, 0.6, 0.62)), ("ours", (39.7, 61.0, 0.61, 0.6, 0.71))])]
    lines = matched_differences_table(runs, [("kde", "ours")]).splitlines()
    assert len(lines) == 3
    assert lines[2] == ("| VAE - kde (0.62-0.63) | VAE - ours (0.69-0.71) | +0.50, -1.70 | -6.0, -9.5 "
                        "| +0.060, +0.020 |")


def test_matched_differences_name_the_run_without_a_row():
    runs = [_summary([("kde", (1, 2, 3, 4, 5)), ("ours", (1, 2, 3, 4, 5))]), _summary([("kde", (1, 2, 3, 4, 5))])]
    with pytest.raises(KeyError, match="run 1 has no row 'ours'"):
        matched_differences_table(runs, [("kde", "ours")])
