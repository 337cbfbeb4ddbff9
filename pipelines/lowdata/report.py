"""The low-data study's report: per-run and summary tables, nearest-code distances, the size plot, paired
differences."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from augmentor.utils.artifacts import load_intact
from augmentor.utils.io import write_bytes
from augmentor.sampling.samplers import SAMPLERS

from ..common.jobs import read_result
from ..common.methods import FILTER_MARK, RATIO_MARK, method_label
from ..common.figures import figure_png
from ..common.markdown import render_table
from ..common.stats import write_paired_report
from .config import ALL, PAIRED_BASELINES, method_order
from .jobs import LowDataPaths, read_distances

__all__ = [
    "collect_lowdata_results",
    "lowdata_markdown",
    "size_plot",
    "summarize_distances",
    "summarize_lowdata",
    "write_lowdata_report",
]

def _size_order(size: Any) -> float:
    return math.inf if size == ALL else float(size)


def collect_lowdata_results(paths: LowDataPaths) -> pd.DataFrame:
    """One row per finished classifier of the run directory."""
    rows = []
    for file in sorted((paths.root / "results").glob("seed_*/n_*/*/clf_*.json")):
        result = read_result(file)
        if result is None:
            continue
        rows.append({"method": result["method"], "size": result["size"], "seed": result["seed"],
                     "classifier_seed": result["classifier_seed"],
                     "balanced_accuracy": result["test"]["balanced_accuracy"],
                     "accuracy": result["test"]["accuracy"], "best_epoch": result["best_epoch"],
                     "n_train": result["n_train"]})
    table = pd.DataFrame(rows, columns=["method", "size", "seed", "classifier_seed", "balanced_accuracy",
                                        "accuracy", "best_epoch", "n_train"])
    keys = table.assign(_m=table["method"].map(method_order), _s=table["size"].map(_size_order))
    return table.loc[keys.sort_values(["_m", "_s", "seed", "classifier_seed"]).index].reset_index(drop=True)


def summarize_lowdata(per_run: pd.DataFrame) -> pd.DataFrame:
    """Balanced accuracy per (method, size): mean, std over all runs, and the two sources of variance.

    ``split_std`` is the std over seeds of each seed's mean (the split and its
    generative models); ``classifier_std`` is the root mean within-seed variance
    over classifier seeds (one split, other initial weights and batch orders).
    """
    rows = []
    for (method, size), group in per_run.groupby(["method", "size"], sort=False):
        per_seed = group.groupby("seed")["balanced_accuracy"]
        within = per_seed.var(ddof=1).dropna()
        rows.append({
            "method": method, "size": size, "runs": len(group), "seeds": per_seed.ngroups,
            "balanced_accuracy_mean": group["balanced_accuracy"].mean(),
            "balanced_accuracy_std": group["balanced_accuracy"].std(ddof=1) if len(group) > 1 else 0.0,
            "split_std": per_seed.mean().std(ddof=1) if per_seed.ngroups > 1 else 0.0,
            "classifier_std": math.sqrt(within.mean()) if len(within) else 0.0,
        })
    return pd.DataFrame(rows)


def summarize_distances(paths: LowDataPaths) -> pd.DataFrame:
    """Per sampler and size: mean over seeds and classes of the latent distances (see :func:`latent_distances`)."""
    rows = []
    for file in sorted((paths.root / "generate").glob("seed_*/n_*/latent_distances.json")):
        size_text = file.parent.name.removeprefix("n_")
        size = size_text if size_text == ALL else int(size_text)
        distances = load_intact(file, read_distances)  # a damaged file is moved aside and made again by a rerun
        for sampler, per_class in (distances or {}).items():
            for values in per_class.values():
                rows.append({"sampler": sampler, "size": size, **values})
    if not rows:
        return pd.DataFrame(columns=["sampler", "size", "to_nearest_code", "between_codes", "ratio"])
    table = pd.DataFrame(rows).groupby(["sampler", "size"], sort=False).mean().reset_index()
    order = {s: i for i, s in enumerate(SAMPLERS)}
    keys = table.assign(_a=table["sampler"].map(order), _s=table["size"].map(_size_order))
    return table.loc[keys.sort_values(["_a", "_s"]).index].reset_index(drop=True)


def _sizes(summary: pd.DataFrame) -> list[Any]:
    return sorted(summary["size"].unique().tolist(), key=_size_order)


def _mean_std(row: Any) -> str:
    return f"{100 * row.balanced_accuracy_mean:.1f} ± {100 * row.balanced_accuracy_std:.1f}"


def lowdata_markdown(summary: pd.DataFrame, distances: pd.DataFrame) -> str:
    """Three Markdown tables: balanced accuracy per method and size (mean ± std, %), variance sources, distances."""
    sizes = _sizes(summary)
    cell = {(r.method, r.size): r for r in summary.itertuples()}
    methods = list(dict.fromkeys(summary["method"]))
    head = ["Method"] + [f"{s} / class" for s in sizes]
    rows = [[method_label(method)] + [_mean_std(cell[method, s]) if (method, s) in cell else "" for s in sizes]
            for method in methods]
    lines = [render_table(head, rows, "l" + "r" * len(sizes))]
    lines += ["", "Sources of variance (std of balanced accuracy, %: between splits / between classifier seeds "
              "on one split; runs = seeds x classifier seeds):", "",
              "| Method | Size / class | Runs | Mean | Std (all runs) | Split std | Classifier std |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for r in summary.itertuples():
        lines.append(f"| {method_label(r.method)} | {r.size} | {r.runs} ({r.seeds} x "
                     f"{r.runs // max(r.seeds, 1)}) | {100 * r.balanced_accuracy_mean:.1f} | "
                     f"{100 * r.balanced_accuracy_std:.1f} | {100 * r.split_std:.1f} | {100 * r.classifier_std:.1f} |")
    if len(distances):
        lines += ["", "Latent distances (mean over seeds and classes): from a sampler's latent to the nearest "
                  "training code, and from a training code to its nearest other code:", "",
                  "| Sampler | Size / class | To nearest code | Between codes | Ratio |", "|---|---:|---:|---:|---:|"]
        for r in distances.itertuples():
            lines.append(f"| {r.sampler} | {r.size} | {r.to_nearest_code:.3f} | {r.between_codes:.3f} "
                         f"| {r.ratio:.2f} |")
    return "\n".join(lines)


def size_plot(summary: pd.DataFrame, title: str = "") -> bytes:
    """PNG bytes: mean balanced accuracy (%) against the training size per method, ± the between-split std."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = _sizes(summary)
    fig, ax = plt.subplots(figsize=(9, 4.8))
    styles = {"real": ("k", "-"), "resampled": ("grey", "-"), "torchio": ("tab:orange", "--"),
              "monai": ("tab:brown", "--"), "real+prior": ("tab:green", "-"), "real+gmm": ("tab:blue", "-"),
              "real+riemannian": ("tab:red", "-"), "prior": ("tab:green", ":"), "gmm": ("tab:blue", ":"),
              "riemannian": ("tab:red", ":")}
    for method, group in summary.groupby("method", sort=False):
        group = group.assign(_s=group["size"].map(_size_order)).sort_values("_s")
        x = [sizes.index(s) for s in group["size"]]
        color, line = styles.get(method.partition(RATIO_MARK)[0].removesuffix(FILTER_MARK), (None, "-"))
        ax.errorbar(x, 100 * group["balanced_accuracy_mean"], yerr=100 * group["split_std"], color=color, ls=line,
                    marker="o", ms=4, capsize=3, label=method_label(method))
    ax.set_xticks(range(len(sizes)))
    ax.set_xticklabels([str(s) for s in sizes])
    ax.set_xlabel("real training images per class")
    ax.set_ylabel("test balanced accuracy (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return figure_png(fig)


def write_lowdata_report(paths: LowDataPaths, title: str) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """Write ``report/`` from every finished result of the run directory; return (per_run, summary, markdown)."""
    per_run = collect_lowdata_results(paths)
    summary = summarize_lowdata(per_run)
    distances = summarize_distances(paths)
    table = lowdata_markdown(summary, distances)
    write_bytes(paths.report / "per_run.csv", per_run.to_csv(index=False, float_format="%.6f").encode())
    write_bytes(paths.report / "summary.csv", summary.to_csv(index=False, float_format="%.6f").encode())
    write_bytes(paths.report / "distances.csv", distances.to_csv(index=False, float_format="%.6f").encode())
    header = (f"# {title}\n\nTest balanced accuracy (%), mean ± std over every seed and classifier seed; "
              "the size is the number of real training images per class.\n\n")
    write_bytes(paths.report / "summary.md", (header + table + "\n").encode())
    write_bytes(paths.report / "balanced_accuracy_vs_size.png", size_plot(summary, title))
    labels = {method: method_label(method) for method in per_run["method"].unique()}
    write_paired_report(paths.report, per_run, PAIRED_BASELINES, labels, ["size"], "Size / class",
                        f"{title}: paired differences")
    return per_run, summary, table
