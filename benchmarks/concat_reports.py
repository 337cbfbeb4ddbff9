"""Join the report tables of several run directories of one study (e.g. one run per training size).

Run:  python benchmarks/concat_reports.py <run> [<run> ...] --out <folder> [--tables summary,distances,paired,per_run]

Each ``<run>/report/<table>.csv`` is read, the rows of every run are stacked in the order
the runs are given, and ``<folder>/<table>.csv`` is written (atomically; an existing file
is refused unless ``--overwrite``). Runs whose tables have different columns are refused,
and so are identical rows in two runs (the same results joined twice).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

REPOSITORY = Path(__file__).resolve().parents[1]
if str(REPOSITORY) not in sys.path:
    sys.path.insert(0, str(REPOSITORY))

from augmentor.utils.io import write_bytes  # noqa: E402


def concat_table(runs: list[Path], table: str) -> pd.DataFrame:
    """The rows of ``<run>/report/<table>.csv`` of every run, stacked.

    Raises:
        FileNotFoundError: a run has no such table.
        ValueError: the runs' columns differ, or a row appears in two runs.
    """
    frames = []
    for run in runs:
        path = run / "report" / f"{table}.csv"
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: is {run} a finished run directory?")
        frames.append(pd.read_csv(path))
    columns = list(frames[0].columns)
    for run, frame in zip(runs, frames):
        if list(frame.columns) != columns:
            raise ValueError(f"{run}/report/{table}.csv has columns {list(frame.columns)}, {runs[0]}'s has {columns}")
    joined = pd.concat(frames, ignore_index=True)
    if joined.duplicated().any():
        raise ValueError(f"{table}.csv: {int(joined.duplicated().sum())} row(s) appear in more than one run")
    return joined


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--tables", default="summary,distances,paired,per_run")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for table in args.tables.split(","):
        target = args.out / f"{table}.csv"
        if target.exists() and not args.overwrite:
            parser.error(f"{target} exists; pass --overwrite to replace it")
        joined = concat_table(args.runs, table)
        write_bytes(target, joined.to_csv(index=False).encode())
        print(f"{target}: {len(joined)} rows from {len(args.runs)} runs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
