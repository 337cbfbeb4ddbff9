"""Tables and figure of a finished study: mean +- std over the repetitions, per method.

Written to ``<run>/report/`` (derived from the result files, so regenerated on
every invocation): ``summary.csv`` (numbers), ``summary.md`` (the table printed
to the terminal), ``per_run.csv`` (one row per seed and method) and
``balanced_accuracy.png`` (box plot); the table and the figure also go to
TensorBoard under ``tensorboard/summary``. The report always covers every
finished result of the run directory, whichever seeds and methods the
invocation ran.

Standard deviations are sample standard deviations (``ddof=1``), 0 for a single run.
"""

from __future__ import annotations

import io
import shutil
from typing import Sequence

import numpy as np
import pandas as pd

from augmentor.io import write_bytes

from .config import CLASS_NAMES, METHODS
from .jobs import RunPaths

__all__ = ["METHOD_LABELS", "box_plot", "collect_results", "markdown_table", "summarize", "write_report"]

METHOD_LABELS = {
    "original": "Original (unbalanced)",
    "resampled": "Original resampled",
    "prior": "VAE - N(0, I)",
    "gmm": "VAE - GMM",
    "riemannian": "VAE - ours",
    "original+prior": "Original + VAE - N(0, I)",
    "original+gmm": "Original + VAE - GMM",
    "original+riemannian": "Original + VAE - ours",
    "classical": "Original + affine/elastic (TorchIO)",
}
_PER_CLASS = ("f1", "precision", "recall")


PROTOCOL = (
    "Protocol: each seed draws its own stratified 70/10/20 subject-level split; the per-class VAEs "
    "and the latent samplers are refitted for every seed on that seed's training subjects only "
    "(no generative model sees its seed's validation or test subjects); the classifier keeps the "
    "epoch with the best validation balanced accuracy."
)


def _class_name(label: str | int) -> str:
    return CLASS_NAMES.get(int(label), f"class{label}")


def metric_columns(classes: Sequence[str]) -> list[str]:
    return ["balanced_accuracy"] + [f"{_class_name(c)}_{m}" for c in classes for m in _PER_CLASS]


def collect_results(paths: RunPaths) -> pd.DataFrame:
    """One row per finished (method, seed) of the run directory: test metrics and training facts.

    Columns: balanced accuracy, accuracy, per-class F1 / precision / recall, best
    epoch, training-set size. Rows: methods in :data:`~pipelines.config.METHODS`
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
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(["---"] + ["---:"] * (len(headers) - 1)) + "|"]
    for method, row in summary.iterrows():
        cells = [METHOD_LABELS.get(method, method), str(int(row["runs"]))]
        cells += [f"{100 * row[f'{m}_mean']:.1f} ± {100 * row[f'{m}_std']:.1f}" for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


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
    ax.set_xticklabels([METHOD_LABELS.get(m, m) for m in methods], rotation=25, ha="right", fontsize=8)
    ax.axhline(50, color="grey", lw=0.8, ls=":")
    ax.set_ylabel("test balanced accuracy (%)")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


def write_report(paths: RunPaths, title: str = "") -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """Collect every finished result of the run directory; write the report files and the TensorBoard summary.

    The report covers the whole run directory, not only what the invocation ran:
    rerunning with ``--methods original`` never shrinks the table to one row.

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
    png = box_plot(per_run, methods, title)
    write_bytes(folder / "balanced_accuracy.png", png)
    _tensorboard_summary(paths, summary, table, png)
    return per_run, summary, table


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
