"""Results tables of the documentation, generated from the result files in ``docs/results/``.

A page marks a table with a line of its own::

    <!-- results-table: oasis_quick -->

When the site is built (``make docs``), this file, loaded as an MkDocs hook, replaces
each marker with the table rendered from that table's result files, by the same
functions that write the studies' own reports. A table whose files are not in the
repository becomes a note naming the command that produces them and where to copy
them, so that no number in the documentation is typed by hand.

As a script it prints every table, or with ``--check`` lists the tables that
still wait for their result files::

    python docs/gen_results.py [--check] [NAME ...]
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd

REPOSITORY = Path(__file__).resolve().parents[1]
# The checkout's own packages come first, also where another copy is installed in the environment.
if str(REPOSITORY) not in sys.path:
    sys.path.insert(0, str(REPOSITORY))

RESULTS = Path(__file__).resolve().parent / "results"
# ``written_to`` of a table whose file is what its command prints.
STDOUT = "-"
MARKER = re.compile(r"^<!-- results-table: ([\w-]+) -->[ \t]*$", flags=re.M)

__all__ = ["MARKER", "RESULTS", "TABLES", "ResultTable", "expand_markers", "missing_files", "render", "main"]


def _generation(path: Path, keys: Sequence[str] | None = None) -> str:
    from pipelines.benchmark.report import markdown_table

    table = pd.read_csv(path)
    if keys is not None:
        table = table[table["key"].isin(keys)]
    return markdown_table(table)


def _generation_vae_rows(path: Path) -> str:
    return _generation(path, keys=("prior", "gmm", "riemannian"))


def _sweep(path: Path) -> str:
    from pipelines.benchmark.report import markdown_table

    table = pd.read_csv(path)
    parts = []
    for size, rows in table.groupby("n_train", sort=True):
        parts += [f"**{size:,} training images**", "", markdown_table(rows), ""]
    return "\n".join(parts).rstrip()


def _run_spread(first: Path, second: Path) -> str:
    from pipelines.benchmark.report import run_spread_table

    return run_spread_table(pd.read_csv(first), pd.read_csv(second))


# The quick samplers runs' matched points: each geometric row against the kde bandwidth of about
# the same NN-train ratio.
_MATCHED_POINTS = (("kde[bandwidth=1.0]", "riemannian"), ("kde[bandwidth=0.5]", "published"),
                   ("kde", "riemannian[alpha=0.25,n_centroids=None,rho=18.7]"))


def _matched_points(*paths: Path) -> str:
    from pipelines.benchmark.report import matched_differences_table

    return matched_differences_table([pd.read_csv(path) for path in paths], _MATCHED_POINTS)


def _oasis_summary(path: Path) -> str:
    from pipelines.oasis_study.report import markdown_table

    return markdown_table(pd.read_csv(path, index_col="method"))


def _oasis_fit(fit: Path, fidelity: Path) -> str:
    from pipelines.oasis_study.report import fit_markdown

    return fit_markdown(pd.read_csv(fit), pd.read_csv(fidelity), warnings=())


def _class_effect(path: Path) -> str:
    from pipelines.oasis_study.report import class_effect_markdown

    return class_effect_markdown(pd.read_csv(path))


def _lowdata(summary: Path, distances: Path) -> str:
    from pipelines.lowdata.report import lowdata_markdown

    return lowdata_markdown(pd.read_csv(summary), pd.read_csv(distances))


def _paired(path: Path) -> str:
    from pipelines.common.methods import method_label
    from pipelines.common.stats import paired_markdown

    paired = pd.read_csv(path)
    labels = {m: method_label(m) for m in pd.concat([paired["method"], paired["baseline"]]).unique()}
    if "size" in paired.columns:
        return paired_markdown(paired, labels, ["size"], "Size / class")
    return paired_markdown(paired, labels)


def _lengths(path: Path) -> str:
    from pipelines.latent_map.study import lengths_markdown

    return lengths_markdown(pd.read_csv(path))


def _text(path: Path) -> str:
    return "```text\n" + path.read_text().rstrip() + "\n```"


@dataclass(frozen=True)
class ResultTable:
    """One generated table: its result files, how it is rendered and the command that writes the files.

    Attributes:
        files: paths relative to ``docs/results/``, passed to ``render`` in this order.
        render: the function turning the files into Markdown.
        command: the command line that writes the files.
        written_to: where that command writes them (copy them to ``files``), or
            :data:`STDOUT` where the file is what the command prints.
    """

    files: tuple[str, ...]
    render: Callable[..., str]
    command: str
    written_to: tuple[str, ...]


_OASIS_QUICK = "python -m augmentor.oasis --out runs/oasis_quick --no-progress"
_OASIS_3D = "python -m augmentor.oasis --config configs/oasis_3d_quick.yaml --out runs/oasis_3d_quick --no-progress"
_OASIS_PEERS = (
    "python -m augmentor.oasis --out runs/oasis_quick_peers --no-progress && "
    "python -m augmentor.oasis --out runs/oasis_quick_peers --no-progress "
    "--methods vamp-vamp,ae-gmm,real+vamp-vamp,real+ae-gmm"
)
_MNIST_QUICK = "python -m augmentor.benchmark --config configs/mnist_quick.yaml --out runs/mnist_quick --no-progress"
_SAMPLING_QUICK = (
    "python -m augmentor.benchmark --config configs/mnist_sampling_quick.yaml --out runs/sampling_quick --no-progress"
)
_QUICK_SAMPLERS = (
    "python -m augmentor.benchmark --config configs/mnist_quick_samplers.yaml --out runs/quick_samplers --no-progress"
)
# Eight rows of the quick samplers run, at a given sampling seed.
_QUICK_SAMPLERS_EIGHT = (
    _QUICK_SAMPLERS.replace("runs/quick_samplers", "runs/quick_samplers_seed{seed}")
    + " --set sampling.seed={seed} --set \"sampling.samplers=[gmm, kde, riemannian, published]\" "
    "--set \"sampling.kde_bandwidths=[0.25, 0.5, 1.0]\" --set \"sampling.riemannian_variants=[{{n_centroids: null, "
    "alpha: 0.25}}, {{n_centroids: null, rho: 18.7, alpha: 0.25}}]\""
)
_LOWDATA = (
    "python -m augmentor.study --config configs/mnist_lowdata_quick.yaml --out runs/mnist_lowdata_quick --no-progress"
)
_LOWDATA_PAIRED = (
    "for size in 10 50 100; do python -m augmentor.study --config configs/mnist_lowdata_paired.yaml "
    "--set \"train_sizes=[$size]\" --out runs/lowdata_paired_$size --no-progress; done && "
    "python benchmarks/concat_reports.py runs/lowdata_paired_10 runs/lowdata_paired_50 runs/lowdata_paired_100 "
    "--out runs/lowdata_paired"
)
_LOWDATA_RATIOS = (
    "for size in 10 50 100; do python -m augmentor.study --config configs/mnist_lowdata_paired.yaml "
    "--set \"train_sizes=[$size]\" --set \"synthetic_ratios=[1,5,10]\" "
    "--set \"methods=[real, torchio, real+kde, real+gmm, real+riemannian]\" --out runs/lowdata_ratios_$size "
    "--no-progress; done && python benchmarks/concat_reports.py runs/lowdata_ratios_10 runs/lowdata_ratios_50 "
    "runs/lowdata_ratios_100 --out runs/lowdata_ratios --tables summary,distances,paired"
)
_OASIS_PAIRED = (
    "python -m augmentor.oasis --config configs/oasis_quick_paired.yaml --out runs/oasis_quick_paired --no-progress"
)
_MNIST_QUICK_PEERS = (
    _MNIST_QUICK + " --set 'models=[{name: ae}, {name: wae}, {name: rae}, {name: rae_l2}, {name: rae_gp}, "
    "{name: rae_sn}, {name: vamp}, {name: hvae}, {name: rhvae}]'"
)
_LATENT = (
    "python -m augmentor.latent_map --config configs/mnist_latent2d.yaml --out runs/mnist_latent2d --no-progress"
)

TABLES: dict[str, ResultTable] = {
    "oasis_quick": ResultTable(
        ("oasis_quick/summary.csv",), _oasis_summary, _OASIS_QUICK, ("runs/oasis_quick/report/summary.csv",)),
    "oasis_quick_fit": ResultTable(
        ("oasis_quick/fit.csv", "oasis_quick/fidelity.csv"), _oasis_fit, _OASIS_QUICK,
        ("runs/oasis_quick/report/fit.csv", "runs/oasis_quick/report/fidelity.csv")),
    "oasis_quick_peers": ResultTable(
        ("oasis_quick_peers/summary.csv",), _oasis_summary, _OASIS_PEERS,
        ("runs/oasis_quick_peers/report/summary.csv",)),
    "oasis_3d_quick": ResultTable(
        ("oasis_3d_quick/summary.csv",), _oasis_summary, _OASIS_3D, ("runs/oasis_3d_quick/report/summary.csv",)),
    "oasis_3d_quick_fit": ResultTable(
        ("oasis_3d_quick/fit.csv", "oasis_3d_quick/fidelity.csv"), _oasis_fit, _OASIS_3D,
        ("runs/oasis_3d_quick/report/fit.csv", "runs/oasis_3d_quick/report/fidelity.csv")),
    "oasis_quick_class_effect": ResultTable(
        ("oasis_quick/class_effect.csv",), _class_effect, _OASIS_QUICK, ("runs/oasis_quick/report/class_effect.csv",)),
    "oasis_3d_quick_class_effect": ResultTable(
        ("oasis_3d_quick/class_effect.csv",), _class_effect, _OASIS_3D,
        ("runs/oasis_3d_quick/report/class_effect.csv",)),
    "mnist_quick": ResultTable(
        ("mnist_quick/summary.csv",), _generation, _MNIST_QUICK, ("runs/mnist_quick/report/summary.csv",)),
    # The VAE rows of the peer run: the same model, seed and settings as the quick benchmark.
    "mnist_quick_vae_rows": ResultTable(
        ("mnist_quick_peers.csv",), _generation_vae_rows,
        _MNIST_QUICK_PEERS,
        ("runs/mnist_quick/report/summary.csv",)),
    "mnist_quick_peers": ResultTable(
        ("mnist_quick_peers.csv",), _generation,
        _MNIST_QUICK_PEERS,
        ("runs/mnist_quick/report/summary.csv",)),
    "mnist_sampling_quick": ResultTable(
        ("mnist_sampling_quick/summary.csv",), _generation, _SAMPLING_QUICK,
        ("runs/sampling_quick/report/summary.csv",)),
    "mnist_quick_samplers": ResultTable(
        ("mnist_quick_samplers/summary.csv",), _generation, _QUICK_SAMPLERS,
        ("runs/quick_samplers/report/summary.csv",)),
    # Rows of two runs side by side: the seed's effect (one machine), the machine's (one seed).
    "mnist_quick_samplers_seeds": ResultTable(
        ("mnist_quick_samplers_xeon_seed0/summary.csv", "mnist_quick_samplers_xeon_seed1/summary.csv"), _run_spread,
        _QUICK_SAMPLERS_EIGHT.format(seed=0) + " && " + _QUICK_SAMPLERS_EIGHT.format(seed=1),
        ("runs/quick_samplers_seed0/report/summary.csv", "runs/quick_samplers_seed1/report/summary.csv")),
    "mnist_quick_samplers_machines": ResultTable(
        ("mnist_quick_samplers/summary.csv", "mnist_quick_samplers_xeon_seed0/summary.csv"), _run_spread,
        _QUICK_SAMPLERS + " && " + _QUICK_SAMPLERS_EIGHT.format(seed=0) + "  # on two CPUs",
        ("runs/quick_samplers/report/summary.csv", "runs/quick_samplers_seed0/report/summary.csv")),
    "mnist_quick_samplers_matched": ResultTable(
        ("mnist_quick_samplers/summary.csv", "mnist_quick_samplers_xeon_seed0/summary.csv",
         "mnist_quick_samplers_xeon_seed1/summary.csv"), _matched_points,
        _QUICK_SAMPLERS + " && " + _QUICK_SAMPLERS_EIGHT.format(seed=0) + " && " + _QUICK_SAMPLERS_EIGHT.format(seed=1),
        ("runs/quick_samplers/report/summary.csv", "runs/quick_samplers_seed0/report/summary.csv",
         "runs/quick_samplers_seed1/report/summary.csv")),
    "mnist_paper_h100": ResultTable(
        ("mnist_paper_h100.csv",), _generation,
        "python -m augmentor.benchmark --config configs/mnist_paper.yaml --device cuda --out runs/mnist_paper "
        "--set num_threads=16 --set vae.trainer.epochs=50 "
        "--set 'sampling.riemannian_variants=[{n_steps: 10}, {n_steps: 1000}, {step_size: 0.05}]'",
        ("runs/mnist_paper/report/summary.csv",)),
    "mnist_paper_peers_h200": ResultTable(
        ("mnist_paper_peers_h200.csv",), _generation,
        "python -m augmentor.benchmark --config configs/mnist_paper.yaml --device cuda --out runs/mnist_peers "
        "--set vae.trainer.epochs=3 --set sampling.n_samples=5000 --set num_threads=8 --set metrics.batch_size=500 "
        "--set 'models=[{name: ae}, {name: wae}, {name: vamp}, {name: rae}, {name: rae_l2}, {name: rae_gp}, "
        "{name: rae_sn}, {name: hvae}, {name: rhvae}]'",
        ("runs/mnist_peers/report/summary.csv",)),
    "mnist_quick_sweep": ResultTable(
        ("mnist_quick_sweep.csv",), _sweep,
        "python -m augmentor.benchmark --config configs/mnist_quick.yaml --out runs/mnist_quick_sweep "
        "--set 'train_sizes=[1000, 5000, 10000, 50000]'",
        ("runs/mnist_quick_sweep/sweep/summary.csv",)),
    "lowdata_mnist_quick": ResultTable(
        ("lowdata_mnist_quick/summary.csv", "lowdata_mnist_quick/distances.csv"), _lowdata, _LOWDATA,
        ("runs/mnist_lowdata_quick/report/summary.csv", "runs/mnist_lowdata_quick/report/distances.csv")),
    "lowdata_mnist_paired": ResultTable(
        ("lowdata_mnist_paired/summary.csv", "lowdata_mnist_paired/distances.csv"), _lowdata, _LOWDATA_PAIRED,
        ("runs/lowdata_paired/summary.csv", "runs/lowdata_paired/distances.csv")),
    "lowdata_mnist_paired_differences": ResultTable(
        ("lowdata_mnist_paired/paired.csv",), _paired, _LOWDATA_PAIRED,
        ("runs/lowdata_paired/paired.csv",)),
    "lowdata_mnist_ratios": ResultTable(
        ("lowdata_mnist_ratios/summary.csv", "lowdata_mnist_ratios/distances.csv"), _lowdata, _LOWDATA_RATIOS,
        ("runs/lowdata_ratios/summary.csv", "runs/lowdata_ratios/distances.csv")),
    "lowdata_mnist_ratios_differences": ResultTable(
        ("lowdata_mnist_ratios/paired.csv",), _paired, _LOWDATA_RATIOS,
        ("runs/lowdata_ratios/paired.csv",)),
    "oasis_quick_paired": ResultTable(
        ("oasis_quick_paired/summary.csv",), _oasis_summary, _OASIS_PAIRED,
        ("runs/oasis_quick_paired/report/summary.csv",)),
    "oasis_quick_paired_differences": ResultTable(
        ("oasis_quick_paired/paired.csv",), _paired, _OASIS_PAIRED, ("runs/oasis_quick_paired/report/paired.csv",)),
    "latent_map_lengths": ResultTable(
        ("latent_map/lengths.csv",), _lengths, _LATENT, ("runs/mnist_latent2d/latent_map/lengths.csv",)),
    "hmc_speed_cpu": ResultTable(
        ("hmc_speed_cpu.txt",), _text, "python benchmarks/hmc_speed.py --large-child hard", (STDOUT,)),
    "hmc_speed_h100": ResultTable(
        ("hmc_speed_h100.txt",), _text, "python benchmarks/hmc_speed.py --device cuda --repeats 1",
        (STDOUT,)),
    "hmc_regimes_cpu": ResultTable(
        ("hmc_regimes_cpu.txt",), _text, "python benchmarks/hmc_regimes.py", (STDOUT,)),
}


def missing_files(name: str, results: Path = RESULTS) -> list[Path]:
    """The result files of table ``name`` that are not in ``results``."""
    return [results / f for f in TABLES[name].files if not (results / f).is_file()]


def _awaiting(name: str) -> str:
    table = TABLES[name]
    copies = ", ".join(
        f"save its output as `docs/results/{dst}`" if src == STDOUT else f"copy `{src}` to `docs/results/{dst}`"
        for src, dst in zip(table.written_to, table.files)
    )
    return (
        '!!! note "To be regenerated"\n'
        f"    This table is generated from result files that are not in the repository yet. "
        f"To be regenerated by\n\n"
        f"    ```text\n    {table.command}\n    ```\n\n"
        f"    then {copies}.\n"
    )


def render(name: str, results: Path = RESULTS) -> str:
    """Table ``name`` as Markdown, or the note naming its command where a result file is missing.

    Raises:
        KeyError: ``name`` is no table of :data:`TABLES`.
    """
    if name not in TABLES:
        raise KeyError(f"unknown results table {name!r}; known: {', '.join(sorted(TABLES))}")
    table = TABLES[name]
    if missing_files(name, results):
        return _awaiting(name)
    body = table.render(*(results / f for f in table.files))
    sources = ", ".join(f"`docs/results/{f}`" for f in table.files)
    return f"{body}\n\n*Generated from {sources} by `docs/gen_results.py`.*\n"


def expand_markers(markdown: str, results: Path = RESULTS) -> str:
    """Replace every ``<!-- results-table: NAME -->`` line of ``markdown`` by the rendered table."""
    return MARKER.sub(lambda match: render(match.group(1), results), markdown)


def on_page_markdown(markdown: str, page: object, config: object, files: object) -> str:
    """MkDocs hook: expand the results-table markers of every page (an unknown name fails the build)."""
    try:
        return expand_markers(markdown)
    except KeyError as error:
        from mkdocs.exceptions import PluginError

        raise PluginError(f"{getattr(page, 'file', page)}: {error.args[0]}") from error


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Print the documentation's results tables from docs/results/.")
    parser.add_argument("names", nargs="*", help=f"tables to print (default: all): {', '.join(TABLES)}")
    parser.add_argument("--check", action="store_true", help="only list the tables whose result files are missing")
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder of the result files")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in TABLES]
    if unknown:
        parser.error(f"unknown table(s) {', '.join(unknown)}; known: {', '.join(TABLES)}")
    for name in args.names or list(TABLES):
        missing = missing_files(name, args.results)
        if args.check:
            if missing:
                print(f"{name}: waiting for {', '.join(str(m) for m in missing)} ({TABLES[name].command})")
            continue
        print(f"## {name}\n\n{render(name, args.results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
