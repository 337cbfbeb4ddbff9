"""Tables and figure of a finished study: mean +- std over the repetitions, per method.

Written to ``<run>/report/`` (derived from the result files, so regenerated on
every invocation): ``summary.csv`` (numbers), ``summary.md`` (the table printed
to the terminal), ``per_run.csv`` (one row per seed and method),
``paired.csv`` / ``paired.md`` (each method minus ``real`` and minus
``torchio`` on the same seed, with 95 % intervals; :mod:`pipelines.common.stats`) and
``balanced_accuracy.png`` (box plot); from the generate jobs' ``fit.json``,
``fit.md`` (how well the VAEs fit each class, whether the synthetic sets carry
their class, the warnings), ``fit.csv`` / ``fidelity.csv`` (one row per seed),
``class_effect.csv`` (one row per seed and source: ventricle size per class and the
AD-minus-CN effect against the real one, :mod:`oasis.anatomy`)
and the real / reconstructed / synthetic grids of the first seed; the table and the figure also go to
TensorBoard under ``tensorboard/summary``. The report always covers every
finished result of the run directory, whichever seeds and methods the
invocation ran.

Standard deviations are sample standard deviations (``ddof=1``), 0 for a single run.
"""

from __future__ import annotations

import io
import shutil
from typing import Any, Sequence

import numpy as np
import pandas as pd

from augmentor.utils.io import write_bytes

from ..common.jobs import read_result
from ..common.methods import METHOD_LABELS, PEER_SOURCES, method_label, source_label, split_source
from ..common.figures import figure_png
from ..common.markdown import render_table
from ..common.stats import write_paired_report
from .config import CLASS_NAMES, METHODS
from .jobs import RunPaths

__all__ = [
    "box_plot",
    "class_effect_markdown",
    "collect_class_effect",
    "collect_fit",
    "collect_results",
    "fit_markdown",
    "markdown_table",
    "summarize",
    "write_report",
]

_PER_CLASS = ("f1", "precision", "recall")
# Every method is compared, seed by seed, with the real subjects alone and with TorchIO augmentation.
PAIRED_BASELINES = ("real", "torchio")


PROTOCOL = (
    "Protocol: each seed draws its own stratified 70/10/20 subject-level split; the per-class VAEs "
    "and the latent samplers are refitted for every seed on that seed's training subjects only "
    "(no generative model sees its seed's validation or test subjects); the classifier keeps the "
    "epoch with the best validation balanced accuracy."
)


def _set_label(name: str) -> str:
    """Display name of a set of images: the real training images (``real``) or a latent source's synthetic ones."""
    return METHOD_LABELS[name] if name in METHOD_LABELS else source_label(name)


def _class_name(label: str | int) -> str:
    return CLASS_NAMES.get(int(label), f"class{label}")


def metric_columns(classes: Sequence[str]) -> list[str]:
    return ["balanced_accuracy"] + [f"{_class_name(c)}_{m}" for c in classes for m in _PER_CLASS]


def collect_results(paths: RunPaths) -> pd.DataFrame:
    """One row per finished (method, seed) of the run directory: test metrics and training facts.

    Columns: balanced accuracy, accuracy, per-class F1 / precision / recall, best
    epoch, training-set size. Rows: methods in :data:`~pipelines.oasis_study.config.METHODS`
    order, then seeds.
    """
    rows = []
    for (seed, method), result in sorted(paths.finished_results().items(), key=lambda item: _row_order(*item[0])):
        test = result["test"]
        row = {
            "method": method,
            "seed": seed,
            "balanced_accuracy": test["balanced_accuracy"],
            "accuracy": test["accuracy"],
        }
        for label, values in sorted(test["per_class"].items()):
            for name in _PER_CLASS:
                row[f"{_class_name(label)}_{name}"] = values[name]
        row.update(best_epoch=result["best_epoch"], n_train=result["n_train"])
        rows.append(row)
    return pd.DataFrame(rows)


def _row_order(seed: int, method: str) -> tuple[int, int]:
    return METHODS.index(method), seed


def summarize(per_run: pd.DataFrame, methods: Sequence[str]) -> pd.DataFrame:
    """Mean and std of every metric per method (rows in ``methods`` order)."""
    metrics = [c for c in per_run.columns if c not in ("method", "seed", "best_epoch", "n_train")]
    grouped = per_run.groupby("method", sort=False)[metrics]
    mean = grouped.mean().add_suffix("_mean")
    std = grouped.std(ddof=1).fillna(0.0).add_suffix("_std")
    table = pd.concat([mean, std], axis=1)
    ordered = [c for m in metrics for c in (f"{m}_mean", f"{m}_std")]
    table = table[ordered].reindex(list(methods))
    table.insert(0, "runs", per_run.groupby("method", sort=False).size().reindex(list(methods)))
    table.index.name = "method"
    return table


def markdown_table(summary: pd.DataFrame) -> str:
    """The summary as a Markdown table, in percent, ``mean ± std``."""
    metrics = [c[: -len("_mean")] for c in summary.columns if c.endswith("_mean") and c != "accuracy_mean"]
    headers = ["Method", "Runs"] + [
        "Balanced acc." if m == "balanced_accuracy" else m.replace("_", " ").replace("f1", "F1") for m in metrics
    ]
    rows = [[method_label(method), str(int(row["runs"]))]
            + [f"{100 * row[f'{m}_mean']:.1f} ± {100 * row[f'{m}_std']:.1f}" for m in metrics]
            for method, row in summary.iterrows()]
    return render_table(headers, rows, "l" + "r" * (len(headers) - 1))


def box_plot(per_run: pd.DataFrame, methods: Sequence[str], title: str = "") -> bytes:
    """PNG bytes: balanced accuracy (%) per method over the repetitions, with the single runs as dots."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = [100 * per_run.loc[per_run["method"] == m, "balanced_accuracy"].to_numpy() for m in methods]
    fig, ax = plt.subplots(figsize=(1.3 * len(methods) + 2, 4.5))
    ax.boxplot(values, showmeans=True)
    jitter = np.random.default_rng(0)
    for i, v in enumerate(values, start=1):
        ax.plot(i + jitter.uniform(-0.12, 0.12, len(v)), v, "o", ms=3, alpha=0.6, color="tab:blue")
    ax.set_xticks(range(1, len(methods) + 1))
    ax.set_xticklabels([method_label(m) for m in methods], rotation=25, ha="right", fontsize=8)
    ax.axhline(50, color="grey", lw=0.8, ls=":")
    ax.set_ylabel("test balanced accuracy (%)")
    ax.set_title(title, fontsize=10)
    return figure_png(fig, dpi=110)


def write_report(paths: RunPaths, title: str = "") -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """Collect every finished result of the run directory; write the report files and the TensorBoard summary.

    The report covers the whole run directory, not only what the invocation ran:
    rerunning with ``--methods real`` never shrinks the table to one row.

    Returns:
        ``(per_run, summary, markdown)``.
    """
    per_run = collect_results(paths)
    methods = list(dict.fromkeys(per_run["method"]))
    seeds = per_run["seed"].unique()
    summary = summarize(per_run, methods)
    table = markdown_table(summary)
    folder = paths.report
    write_bytes(folder / "per_run.csv", per_run.to_csv(index=False, float_format="%.6f").encode())
    write_bytes(folder / "summary.csv", summary.to_csv(float_format="%.6f").encode())
    header = (
        f"# {title}\n\nTest balanced accuracy and per-class F1 / precision / recall (%), "
        f"mean ± std over {len(seeds)} seed(s).\n\n{PROTOCOL}\n\n"
    )
    write_bytes(folder / "summary.md", (header + table + "\n").encode())
    labels = {method: method_label(method) for method in methods}
    write_paired_report(folder, per_run, PAIRED_BASELINES, labels, title=f"{title}: paired differences")
    png = box_plot(per_run, methods, title)
    write_bytes(folder / "balanced_accuracy.png", png)
    _write_fit_report(paths)
    _tensorboard_summary(paths, summary, table, png)
    return per_run, summary, table


def _check_fit_record(record: Any) -> None:
    """Raise ``ValueError`` naming what a parsed ``fit.json`` lacks."""
    missing = [key for key in ("models", "fidelity", "judge_test") if not isinstance(record, dict) or key not in record]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")


def _fit_records(paths: RunPaths) -> dict[int, dict[str, Any]]:
    """The ``fit.json`` of every finished generate job, by seed.

    A damaged one is moved aside (see :func:`~pipelines.common.jobs.read_result`), so the
    seed's generate job writes it again on the next run.
    """
    found = {}
    for path in (paths.root / "generate").glob("seed_*/fit.json"):
        seed = path.parent.name.removeprefix("seed_")
        record = read_result(path, _check_fit_record) if seed.isdigit() else None
        if record is not None:
            found[int(seed)] = record
    return dict(sorted(found.items()))


def collect_fit(paths: RunPaths) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """The fit diagnostics of every seed: ``(fit, fidelity, warnings)``.

    ``fit``: one row per seed, model (``per_class`` / ``shared``) and class;
    ``fidelity``: one row per seed and synthetic source, with the accuracy of the
    real-image classifier on it and that classifier's own test balanced accuracy;
    ``warnings``: every warning, prefixed with its seed and model.
    """
    fit_rows, fidelity_rows, warnings = [], [], []
    for seed, record in _fit_records(paths).items():
        for model, report in record["models"].items():
            warnings += [f"seed {seed}, {model.replace('_', '-')} VAE: {w}" for w in report["warnings"]]
            for label, fit in report["classes"].items():
                row = {"seed": seed, "model": model, "class": _class_name(label)}
                row.update({k: fit.get(k, np.nan) for k in _FIT_COLUMNS})
                row["sharpness_synthetic"] = fit["sharpness_synthetic"].get("riemannian", np.nan)
                fit_rows.append(row)
        judge = record["judge_test"]["balanced_accuracy"]
        if record["fidelity"] and judge < MIN_JUDGE_BALANCED_ACCURACY:
            warnings.append(
                f"seed {seed}: the fidelity check's classifier of real images reaches only {100 * judge:.1f} % "
                "balanced accuracy on the real test subjects, so its verdict on that seed's synthetic sets "
                "says little"
            )
        for source, scores in record["fidelity"].items():
            row = {"seed": seed, "source": source, "accuracy": scores["accuracy"],
                   "balanced_accuracy": scores["balanced_accuracy"]}
            row.update({f"{_class_name(c)}_recall": r for c, r in scores["recall"].items()})
            row["judge_test_balanced_accuracy"] = record["judge_test"]["balanced_accuracy"]
            fidelity_rows.append(row)
    return pd.DataFrame(fit_rows), pd.DataFrame(fidelity_rows), warnings


MIN_JUDGE_BALANCED_ACCURACY = 0.6
"""Below this test balanced accuracy the fidelity check's real-image classifier is flagged as no judge."""

_FIT_COLUMNS = ("recon_train", "recon_heldout", "kl", "active_units", "latent_dim", "log_var_mean",
                "log_var_at_bound", "sharpness_real", "sharpness_recon", "steps", "heldout_recon_ratio",
                "ssim_heldout")


def _mean_std(frame: pd.DataFrame, keys: list[str], columns: list[str]) -> pd.DataFrame:
    grouped = frame.groupby(keys, sort=False)[columns]
    return grouped.mean().join(grouped.std(ddof=1).fillna(0.0), lsuffix="_mean", rsuffix="_std")


def _cell(mean: float, std: float, form: str) -> str:
    """``mean ± std`` in ``form``; a dash where the quantity does not apply (no bound, no held-out set)."""
    return "—" if np.isnan(mean) else f"{form.format(mean)} ± {form.format(std)}"


def fit_markdown(fit: pd.DataFrame, fidelity: pd.DataFrame, warnings: Sequence[str]) -> str:
    """The fit and fidelity tables (mean ± std over the seeds) and the warnings, as Markdown."""
    lines = []
    if len(fit):
        columns = ["recon_train", "recon_heldout", "heldout_recon_ratio", "ssim_heldout", "kl", "active_units",
                   "log_var_at_bound", "sharpness_real", "sharpness_recon", "sharpness_synthetic"]
        floats = {c: float for c in ("log_var_at_bound", "recon_heldout", "heldout_recon_ratio", "ssim_heldout")}
        table = _mean_std(fit.astype(floats), ["model", "class"], columns)
        lines += [
            "| VAE | Class | Recon. error (train) | Recon. error (held out) | Held out / class mean | "
            "SSIM (held out) | KL (nats) | Active units | "
            "log-var on bound | Sharpness real | recon. | synthetic (ours) |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        dims = fit.groupby(["model", "class"], sort=False)["latent_dim"].first()
        for (model, name), row in table.iterrows():
            cell = lambda c, f="{:.2f}": _cell(row[c + "_mean"], row[c + "_std"], f)  # noqa: E731
            lines.append(
                f"| {model.replace('_', '-')} | {name} | {cell('recon_train', '{:.1f}')} | "
                f"{cell('recon_heldout', '{:.1f}')} | {cell('heldout_recon_ratio')} | {cell('ssim_heldout', '{:.3f}')} | "
                f"{cell('kl', '{:.1f}')} | "
                f"{cell('active_units', '{:.1f}')} / {dims[(model, name)]} | {cell('log_var_at_bound')} | "
                f"{cell('sharpness_real', '{:.3f}')} | {cell('sharpness_recon', '{:.3f}')} | "
                f"{cell('sharpness_synthetic', '{:.3f}')} |"
            )
    if len(fidelity):
        recalls = [c for c in fidelity.columns if c.endswith("_recall")]
        table = _mean_std(fidelity, ["source"], ["balanced_accuracy"] + recalls)
        judge = fidelity["judge_test_balanced_accuracy"].groupby(fidelity["source"], sort=False).first()
        lines += ["", "Fidelity: balanced accuracy (%) of a classifier trained on the real training images "
                  f"(its own test balanced accuracy: {100 * judge.mean():.1f} on average), tested on each "
                  "synthetic set (does each synthetic image carry its class?).", "",
                  "| Synthetic set | Balanced acc. | " + " | ".join(c.replace("_", " ") for c in recalls) + " |",
                  "|---|" + "---:|" * (1 + len(recalls))]
        for source, row in table.iterrows():
            cells = [f"{100 * row[c + '_mean']:.1f} ± {100 * row[c + '_std']:.1f}"
                     for c in ["balanced_accuracy"] + recalls]
            lines.append(f"| {_set_label(source)} | " + " | ".join(cells) + " |")
    if warnings:
        lines += ["", "Warnings:", ""] + [f"* {w}" for w in warnings]
    return "\n".join(lines)


CLASS_EFFECT_COLUMNS = ("seed", "source", "ventricle_cn", "ventricle_ad", "effect", "effect_ratio",
                        "ventricle_cn_std", "ventricle_ad_std", "hippocampus_cn", "hippocampus_ad",
                        "hippocampus_effect", "hippocampus_effect_ratio", "n_cn", "n_ad")
"""Columns of ``class_effect.csv``: ``effect`` is the AD-minus-CN ventricle size, ``effect_ratio`` that of the
source over the real training subjects' on the same seed (1: the synthetic set carries the real effect)."""


def collect_class_effect(paths: RunPaths) -> pd.DataFrame:
    """One row per (seed, source) with a recorded class effect, ``real`` first (columns
    :data:`CLASS_EFFECT_COLUMNS`); empty when no record has one."""
    rows = []
    for seed, record in _fit_records(paths).items():
        effects = record.get("class_effect", {})
        real = effects.get("real")
        for source in sorted(effects, key=lambda name: (name != "real", name)):
            effect = effects[source]
            row = {"seed": seed, "source": source, "ventricle_cn": effect["ventricle_cn"],
                   "ventricle_ad": effect["ventricle_ad"], "effect": effect["ventricle_effect"]}
            for name, real_key in (("effect_ratio", "ventricle_effect"), ("hippocampus_effect_ratio",
                                                                          "hippocampus_effect")):
                reference = np.nan if real is None else real[real_key]
                row[name] = effect[real_key] / reference if reference and np.isfinite(reference) else np.nan
            row.update({key: effect[key] for key in CLASS_EFFECT_COLUMNS if key in effect and key not in row})
            rows.append(row)
    return pd.DataFrame(rows, columns=list(CLASS_EFFECT_COLUMNS))


def class_effect_markdown(effects: pd.DataFrame) -> str:
    """Mean ± std over the seeds of the ventricle sizes per class and of the effect ratio, per source."""
    if not len(effects):
        return ""
    columns = ["ventricle_cn", "ventricle_ad", "effect", "effect_ratio", "hippocampus_effect"]
    table = _mean_std(effects, ["source"], columns)
    lines = ["Class effect (oasis.anatomy): CSF in the ventricle region (mL; slices: cm²) per class, the "
             "AD-minus-CN difference, and that difference over the real training subjects' (effect ratio: 1 "
             "carries the real effect, 0 none, negative the wrong sign); hippocampal-region intensity relative "
             "to white matter, AD minus CN.", "",
             "| Source | Ventricle CN | Ventricle AD | AD − CN | Effect ratio | Hippocampus AD − CN |",
             "|---|---:|---:|---:|---:|---:|"]
    for source, row in table.iterrows():
        cell = lambda c, f="{:.2f}": _cell(row[c + "_mean"], row[c + "_std"], f)  # noqa: E731
        lines.append(f"| {_set_label(source)} | {cell('ventricle_cn')} | {cell('ventricle_ad')} | "
                     f"{cell('effect')} | {cell('effect_ratio')} | {cell('hippocampus_effect', '{:.3f}')} |")
    return "\n".join(lines)


def _write_fit_report(paths: RunPaths) -> None:
    """``fit.md``, ``fit.csv``, ``fidelity.csv`` and the first seed's fit grids (nothing without fit records)."""
    fit, fidelity, warnings = collect_fit(paths)
    if not len(fit) and not len(fidelity):
        return
    folder = paths.report
    write_bytes(folder / "fit.csv", fit.to_csv(index=False, float_format="%.6f").encode())
    write_bytes(folder / "fidelity.csv", fidelity.to_csv(index=False, float_format="%.6f").encode())
    seeds = sorted(set(fit["seed"]) | set(fidelity["seed"] if len(fidelity) else []))
    header = (
        f"# Fit of the generative models over {len(seeds)} seed(s)\n\nPer class, mean ± std over the seeds: "
        "reconstruction error (squared error summed over an image, posterior-mean reconstruction) on the "
        "VAE's training images and on the held-out validation subjects, and the held-out error over that of "
        "predicting the class-mean training image (1.0: no better than the class's average blob); mean SSIM of "
        "the held-out reconstructions; KL to the prior (nats); active "
        "units (Var_x(E[z|x]) > 0.01); share of posterior log-variances on their bound; sharpness (mean "
        "absolute Laplacian) of the real, reconstructed and synthetic (ours) images.\n\n"
    )
    effects = collect_class_effect(paths)
    if len(effects):
        write_bytes(folder / "class_effect.csv", effects.to_csv(index=False, float_format="%.6f").encode())
    body = "\n\n".join(part for part in (fit_markdown(fit, fidelity, warnings), class_effect_markdown(effects)) if part)
    write_bytes(folder / "fit.md", (header + body + "\n").encode())
    for generator in dict.fromkeys(["vae", "shared", *(split_source(m)[0] for m in PEER_SOURCES)]):
        for grid in (paths.fit_grid(seeds[0], generator), paths.fit_views(seeds[0], generator)):
            if grid.is_file():
                write_bytes(folder / f"{grid.stem}_seed_{seeds[0]}.png", grid.read_bytes())


def _tensorboard_summary(paths: RunPaths, summary: pd.DataFrame, table: str, png: bytes) -> None:
    from torch.utils.tensorboard import SummaryWriter

    folder = paths.tensorboard("summary")
    shutil.rmtree(folder, ignore_errors=True)  # a summary of fewer runs is superseded
    writer = SummaryWriter(log_dir=str(folder))
    try:
        for method, row in summary.iterrows():
            writer.add_scalar(f"balanced_accuracy_mean/{method}", row["balanced_accuracy_mean"], 0)
            writer.add_scalar(f"balanced_accuracy_std/{method}", row["balanced_accuracy_std"], 0)
        writer.add_text("summary", table, 0)
        import matplotlib.image

        image = matplotlib.image.imread(io.BytesIO(png), format="png")
        writer.add_image("balanced_accuracy", image[..., :3], 0, dataformats="HWC")
    finally:
        writer.close()
