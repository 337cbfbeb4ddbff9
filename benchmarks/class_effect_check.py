"""Does an OASIS study's report hold its class-effect table, complete, and which sources carry the class?

    PYTHONPATH=. python benchmarks/class_effect_check.py runs/oasis_quick [runs/oasis_3d_quick ...]

For each run directory (2D slices or 3D volumes), reads ``report/class_effect.csv`` and
``report/fidelity.csv`` as the study wrote them and checks that the class-effect table
has the documented columns, a ``real`` row with a finite effect for every seed, and a row
for every synthetic source of every seed that the fidelity table lists. Prints the table
(mean ± std over the seeds) and, per source, the mean effect ratio against the goal
of issue 18 (the real effect's sign and at least half its size). Exits 1 when a report
lacks the table or rows; the ratios themselves are reported, not enforced.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.oasis_study.report import CLASS_EFFECT_COLUMNS, class_effect_markdown

GOAL_RATIO = 0.5


def problems(report: Path) -> list[str]:
    """What the class-effect table of ``report`` (a run's ``report/`` folder) lacks; empty when complete."""
    path = report / "class_effect.csv"
    if not path.is_file():
        return [f"{path} does not exist"]
    effects = pd.read_csv(path)
    found = []
    if list(effects.columns) != list(CLASS_EFFECT_COLUMNS):
        found.append(f"{path}: columns {list(effects.columns)}, expected {list(CLASS_EFFECT_COLUMNS)}")
        return found
    fidelity_path = report / "fidelity.csv"
    fidelity = pd.read_csv(fidelity_path) if fidelity_path.is_file() else pd.DataFrame(columns=["seed", "source"])
    rows = set(zip(effects["seed"], effects["source"]))
    for seed in sorted(set(fidelity["seed"]) | set(effects["seed"])):
        real = effects[(effects["seed"] == seed) & (effects["source"] == "real")]
        if not len(real) or not np.isfinite(real["effect"]).all():
            found.append(f"{path}: seed {seed} has no real row with a finite effect")
    for seed, source in zip(fidelity["seed"], fidelity["source"]):
        if (seed, source) not in rows:
            found.append(f"{path}: no row for seed {seed}, source {source} (listed in fidelity.csv)")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run directories of python -m augmentor.oasis")
    args = parser.parse_args(argv)
    status = 0
    for run in args.runs:
        report = run / "report"
        print(f"## {run}\n")
        missing = problems(report)
        if missing:
            print("\n".join(f"MISSING: {m}" for m in missing) + "\n")
            status = 1
            if not (report / "class_effect.csv").is_file():
                continue
        effects = pd.read_csv(report / "class_effect.csv")
        print(class_effect_markdown(effects) + "\n")
        for source, rows in effects[effects["source"] != "real"].groupby("source", sort=False):
            ratio = float(rows["effect_ratio"].mean())
            verdict = "meets" if ratio >= GOAL_RATIO else "misses"
            print(f"{source}: effect ratio {ratio:.2f} over {len(rows)} seed(s), {verdict} the goal >= {GOAL_RATIO}")
        print()
    return status


if __name__ == "__main__":
    sys.exit(main())
