"""Tests of benchmarks/concat_reports.py: joining the report tables of several run directories."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd
import pytest

REPOSITORY = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("concat_reports", REPOSITORY / "benchmarks" / "concat_reports.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(root: Path, name: str, table: pd.DataFrame) -> Path:
    (root / name / "report").mkdir(parents=True)
    table.to_csv(root / name / "report" / "summary.csv", index=False)
    return root / name


def test_rows_of_every_run_are_stacked_in_order_and_an_existing_output_is_kept(tmp_path):
    a = _run(tmp_path, "a", pd.DataFrame({"size": [10, 10], "method": ["real", "torchio"], "mean": [0.5, 0.6]}))
    b = _run(tmp_path, "b", pd.DataFrame({"size": [50], "method": ["real"], "mean": [0.8]}))
    script = _script()
    assert script.main([str(a), str(b), "--out", str(tmp_path / "out"), "--tables", "summary"]) == 0
    joined = pd.read_csv(tmp_path / "out" / "summary.csv")
    assert joined["size"].tolist() == [10, 10, 50] and joined["mean"].tolist() == [0.5, 0.6, 0.8]
    with pytest.raises(SystemExit):  # finished results are never overwritten without being asked
        script.main([str(a), str(b), "--out", str(tmp_path / "out"), "--tables", "summary"])


def test_runs_with_other_columns_or_the_same_rows_twice_are_refused(tmp_path):
    a = _run(tmp_path, "a", pd.DataFrame({"size": [10], "mean": [0.5]}))
    b = _run(tmp_path, "b", pd.DataFrame({"size": [50], "std": [0.1]}))
    script = _script()
    with pytest.raises(ValueError, match="columns"):
        script.concat_table([a, b], "summary")
    with pytest.raises(ValueError, match="more than one run"):
        script.concat_table([a, a], "summary")
    with pytest.raises(FileNotFoundError, match="finished run"):
        script.concat_table([a, tmp_path / "missing"], "summary")
