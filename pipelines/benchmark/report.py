"""The generation benchmark's report: the table of every finished row (CSV, Markdown), sample grids and plots."""

from __future__ import annotations

import math
import shutil
from typing import Any, Sequence

import pandas as pd
import torch

from augmentor.utils.batching import decode_batches, encode_batches
from augmentor.utils.io import write_bytes
from augmentor.metrics import DomainClassifier
from augmentor.models.peers import MODEL_LABELS
from augmentor.models.peers import SAMPLER_LABELS as PEER_SAMPLER_LABELS
from augmentor.utils.plots import save_sample_grid
from augmentor.sampling.samplers import SAMPLERS

from ..common.image_model import ImageData
from ..common.figures import figure_png
from ..common.markdown import render_table
from .config import BenchmarkConfig
from .stages import GenerationPaths, SampleSpec, domain_note, predict_classes, read_benchmark_result

__all__ = [
    "chain_ablation_plot",
    "finished_results",
    "markdown_table",
    "matched_differences_table",
    "results_table",
    "save_reconstruction_grid",
    "save_sample_preview",
    "run_spread_table",
    "write_report",
]

def results_table(results: Sequence[dict[str, Any]], labels: dict[str, str]) -> pd.DataFrame:
    """One row per evaluated sample set: every number of the report."""
    rows = []
    for result in results:
        counts = result["class_counts"]
        diagnostics = result.get("diagnostics") or {}
        location = diagnostics.get("location") or {}
        rows.append({
            "key": result["key"],
            "sampler": labels.get(result["key"], result["key"]),
            "n_fake": result["n_fake"],
            "n_real": result["n_real"],
            "fid": result["fid"],
            "fd_domain": result["fd_domain"],
            "prd_f8": result["prd"]["f_8"],
            "prd_f1_8": result["prd"]["f_1_8"],
            "precision": result["precision"],
            "recall": result["recall"],
            "density": result["density"],
            "coverage": result["coverage"],
            "memorisation_median_ratio": result["memorisation"]["median_ratio"],
            "memorisation_share_below_q01": result["memorisation"]["share_below_heldout_q01"],
            "class_count_min": min(counts),
            "class_count_max": max(counts),
            "hmc_acceptance": diagnostics.get("acceptance_rate"),
            "split_rhat": diagnostics.get("split_rhat"),
            "start_floor_share": location.get("start_floor_share"),
            "floor_share": location.get("final_floor_share"),
            "chain_floor_share": location.get("chain_floor_share"),
            "latent_distance_ratio": location.get("distance_ratio"),
            "feature_space": result["feature_space"],
        })
    return pd.DataFrame(rows)


def _value(value: Any) -> Any:
    """None for a missing table value (None or NaN), else the value."""
    return None if value is None or pd.isna(value) else value


def _cell(value: Any, digits: int = 2) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def markdown_table(table: pd.DataFrame) -> str:
    """The report's table; FID carries its sample counts (generated / real), an empty cell when skipped."""
    headers = ["Sampler", "FID (n_fake / n_real)", "FD_domain", "PRD F8", "PRD F1/8", "Precision", "Recall",
               "Density", "Coverage", "NN-train median ratio", "Classes min-max", "HMC accept",
               "Floor share (samples / chains)", "Latent distance ratio", "Split R-hat"]
    rows = []
    for row in table.to_dict("records"):
        fid = "" if row["fid"] is None or pd.isna(row["fid"]) else \
            f"{row['fid']:.2f} ({row['n_fake']} / {row['n_real']})"
        cells = [row["sampler"], fid, _cell(row["fd_domain"]), _cell(row["prd_f8"], 3), _cell(row["prd_f1_8"], 3),
                 _cell(row["precision"], 3), _cell(row["recall"], 3), _cell(row["density"], 3),
                 _cell(row["coverage"], 3), _cell(row["memorisation_median_ratio"], 3),
                 f"{row['class_count_min']}-{row['class_count_max']}",
                 _cell(_value(row["hmc_acceptance"]), 3),
                 " / ".join(_cell(_value(row.get(k))) for k in ("floor_share", "chain_floor_share")
                            if _value(row.get(k)) is not None),
                 # tables written before these columns existed leave them empty
                 _cell(_value(row.get("latent_distance_ratio"))), _cell(_value(row.get("split_rhat")))]
        rows.append(cells)
    return render_table(headers, rows, "l" + "r" * (len(headers) - 1))


# The columns whose seed-to-seed spread decides which differences between rows mean anything.
SPREAD_COLUMNS = {"fid": ("FID", 2), "fd_domain": ("FD_domain", 1), "recall": ("Recall", 3),
                  "coverage": ("Coverage", 3), "memorisation_median_ratio": ("NN-train median ratio", 3)}


def run_spread_table(first: pd.DataFrame, second: pd.DataFrame) -> str:
    """The rows two runs share, side by side: each metric of :data:`SPREAD_COLUMNS` in both runs.

    Meant for two runs of one config that differ in one thing (``sampling.seed``, the machine):
    the difference of a row between them is the noise that a difference between two rows of one
    run must exceed. FD_domain is only comparable inside a run when the runs trained their own
    domain CNNs.

    Args:
        first: a benchmark's ``report/summary.csv`` (one row per ``key``).
        second: another run's, with some of the same keys.

    Returns:
        Markdown: sampler, then ``a / b (|a - b|)`` per metric, in ``first``'s row order.
    """
    second_keys = set(second["key"])
    shared = [key for key in first["key"] if key in second_keys]
    if not shared:
        raise ValueError("the two runs share no row (no key in both summary tables)")
    a, b = first.set_index("key"), second.set_index("key")
    rows = []
    for key in shared:
        cells = [a.loc[key, "sampler"]]
        for column, (_, digits) in SPREAD_COLUMNS.items():
            x, y = a.loc[key, column], b.loc[key, column]
            cells.append(f"{_cell(x, digits)} / {_cell(y, digits)} ({_cell(abs(x - y), digits)})")
        rows.append(cells)
    headers = ["Sampler"] + [label for label, _ in SPREAD_COLUMNS.values()]
    return render_table(headers, rows, "l" + "r" * len(SPREAD_COLUMNS))


def matched_differences_table(runs: Sequence[pd.DataFrame], pairs: Sequence[tuple[str, str]],
                              columns: Sequence[str] = ("fid", "fd_domain", "recall")) -> str:
    """Differences between two rows of each run, for rows compared at about equal memorisation.

    A difference between two rows of one run shares that run's models and draws; listed run by
    run, it shows whether an order holds in every run or flips with the noise.

    Args:
        runs: several benchmarks' ``report/summary.csv``, each with every key of ``pairs``.
        pairs: ``(baseline key, compared key)``: each table row is ``baseline - compared``.
        columns: metrics of :data:`SPREAD_COLUMNS`.

    Returns:
        Markdown: the two samplers with their NN-train median ratios (range over the runs), then per
        metric the differences in run order.

    Raises:
        KeyError: a run lacks a key of ``pairs``.
    """
    tables = [run.set_index("key") for run in runs]
    for number, table in enumerate(tables):
        missing = [key for pair in pairs for key in pair if key not in table.index]
        if missing:
            raise KeyError(f"run {number} has no row {missing[0]!r}")
    rows = []
    for baseline, compared in pairs:
        cells = []
        for key in (baseline, compared):
            ratios = [table.loc[key, "memorisation_median_ratio"] for table in tables]
            cells.append(f"{tables[0].loc[key, 'sampler']} ({min(ratios):.2f}-{max(ratios):.2f})")
        for column in columns:
            digits = SPREAD_COLUMNS[column][1]
            cells.append(", ".join(f"{table.loc[baseline, column] - table.loc[compared, column]:+.{digits}f}"
                                   for table in tables))
        rows.append(cells)
    headers = ["Baseline (NN-train ratio)", "Compared (NN-train ratio)"] + [
        f"{SPREAD_COLUMNS[column][0]}: baseline - compared" for column in columns]
    return render_table(headers, rows, "ll" + "r" * len(columns))


def _spec_of_key(key: str) -> SampleSpec | None:
    """The row a result file's key stands for (``gmm``, ``riemannian[...]``, ``<peer>-<sampler>``), if known."""
    model, _, sampler = key.partition("-")
    if sampler and model in MODEL_LABELS and sampler in PEER_SAMPLER_LABELS:
        return SampleSpec(key, sampler, model=model)
    sampler = key.split("[", 1)[0]
    return SampleSpec(key, sampler) if sampler in SAMPLERS else None


def finished_results(paths: GenerationPaths, specs: Sequence[SampleSpec]) -> tuple[list[dict[str, Any]],
                                                                                      dict[str, str]]:
    """Every finished result of the run directory: those of ``specs`` in their order, then the rows an
    earlier invocation added (other samplers, variants or peers), so that no rerun drops a finished row.

    Returns:
        the results and the row label of each key.
    """
    keys = [s.key for s in specs]
    keys += sorted({p.name.removesuffix(".json") for p in paths.root.glob("results/*.json")} - set(keys))
    labels = {s.key: s.label for s in specs}
    results = []
    for key in keys:
        result = read_benchmark_result(paths.result(key))
        if result is not None:
            results.append(result)
            spec = _spec_of_key(key)
            labels.setdefault(key, spec.label if spec is not None else key)
    return results, labels


def write_report(paths: GenerationPaths, config: BenchmarkConfig, specs: Sequence[SampleSpec],
                 header: str) -> tuple[pd.DataFrame, str]:
    """Collect every finished result (see :func:`finished_results`); write CSV, Markdown and the TensorBoard
    summary."""
    results, labels = finished_results(paths, specs)
    table = results_table(results, labels)
    markdown = markdown_table(table)
    notes = sorted({r["fid_note"] for r in results if r.get("fid_note")}) + [domain_note(paths)]
    labels = {s.key: s.label for s in specs}
    notes += [f"{labels[r['key']]}: {location['warning']}" for r in results
              if (location := (r.get("diagnostics") or {}).get("location") or {}).get("warning")]
    text = f"# {header}\n\n{markdown}\n" + "".join(f"\n{note}\n" for note in notes if note)
    write_bytes(paths.report / "summary.csv", table.to_csv(index=False, float_format="%.6f").encode())
    write_bytes(paths.report / "summary.md", text.encode())
    if table["key"].str.startswith("riemannian[").any():
        write_bytes(paths.report / "chain_ablation.png", chain_ablation_plot(table))
    from torch.utils.tensorboard import SummaryWriter

    folder = paths.tensorboard("summary")
    shutil.rmtree(folder, ignore_errors=True)  # a summary of fewer rows is superseded
    writer = SummaryWriter(log_dir=str(folder))
    try:
        for row in table.to_dict("records"):
            for name in ("fid", "fd_domain", "prd_f8", "prd_f1_8", "precision", "recall", "density", "coverage"):
                if row[name] is not None and not pd.isna(row[name]):
                    writer.add_scalar(f"{name}/{row['key']}", row[name], 0)
        writer.add_text("summary", text, 0)
    finally:
        writer.close()
    return table, text


def save_sample_preview(paths: GenerationPaths, spec: SampleSpec, images: torch.Tensor,
                 classifier: DomainClassifier) -> None:
    """Up to 8 samples per predicted class, one row per class."""
    preview = images[:256]
    save_sample_grid(preview, predict_classes(classifier, preview), paths.report / f"samples_{spec.key}.png",
                     f"{spec.label}: rows = class predicted by the domain CNN")


def chain_ablation_plot(table: pd.DataFrame) -> bytes:
    """PNG bytes: FD_domain (and FID when computed) of ours for each chain setting, with the GMM as reference."""
    from augmentor.utils.plots import pyplot

    plt = pyplot()
    metrics = ["fd_domain"] + (["fid"] if table["fid"].notna().any() else [])
    rows = table[table["key"].str.startswith("riemannian")]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics), 0.5 * len(rows) + 1.8), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        ax.barh(rows["key"], rows[metric], color="tab:green")
        gmm = table.loc[table["key"] == "gmm", metric]
        if len(gmm) and gmm.notna().all():
            ax.axvline(float(gmm.iloc[0]), color="tab:orange", ls="--", label="GMM")
            ax.legend(fontsize=8)
        ax.set_xlabel(metric)
        ax.tick_params(axis="y", labelsize=7)
    fig.suptitle("Riemannian sampler: quality against the chains' settings (lower is better)", fontsize=9)
    return figure_png(fig)


def save_reconstruction_grid(paths: GenerationPaths, model: torch.nn.Module, data: ImageData,
                         device: torch.device) -> None:
    target = paths.report / "reconstructions.png"
    if target.is_file():
        return
    real = data.test[:16]
    mu, _ = encode_batches(model, real, len(real), device)
    recon = decode_batches(model, mu, len(real), device)
    labels = torch.cat([torch.zeros(len(real)), torch.ones(len(real))]).long()
    save_sample_grid(torch.cat([real, recon]), labels, target, "test images and their reconstructions",
                     per_class=len(real), class_names={0: "test", 1: "reconstruction"})
