"""The OASIS study of the paper (Sec. 5.3, Table 2): does VAE-based augmentation help an AD classifier?

For each of R seeds: a stratified 70 / 10 / 20 split of the subjects; one VAE per
class on the training subjects; ``n_per_class`` synthetic images per class from
the N(0, I) prior, a 10-component GMM and the Riemannian uniform (ours); then the
Table 4 CNN trained on each method's training set (real, real resampled,
synthetic only per sampler, real + ours, real + TorchIO augmentation) and
tested on the test subjects. The table reports the mean ± std over the seeds.

The generative models are refitted per seed: each seed has its own split, and a
model fitted on another seed's training subjects would have seen this seed's
test subjects.

Usage::

    python -m augmentor.oasis                                   # quick config, simulated cohort
    python -m augmentor.oasis --config configs/oasis_paper.yaml --data-dir /data/OASIS-1 --out runs/paper
    python -m augmentor.oasis --seeds 5 --backend ray --out runs/quick   # resumes / extends runs/quick
    python -m augmentor.oasis --set classifier.epochs=10 --set sampling.n_per_class=200
    python -m augmentor.oasis --config configs/oasis_3d_quick.yaml   # whole volumes (data.dim: 3)

With ``data.dim: 3`` every subject is its whole (downsampled) volume: the same
protocol runs the VAEs and the Table 4 classifier with 3D convolutions, and the
TorchIO baseline deforms in 3D.

Rerunning a command resumes its run directory (finished jobs are skipped);
a run directory made with other settings, or in use by another run, is refused.
The report always covers every finished result of the run directory.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from augmentor.utils.config import shipped_config
from augmentor.utils.devices import resolve_device

from ..common.cli import add_override_arguments, command_line_overrides, run_command
from ..common.run_directory import check_outside_data, lock_run_directory
from ..common.study_data import CACHE_ENV, load_study_data
from .config import StudyConfig, load_study_config
from .jobs import RunPaths
from .report import PROTOCOL, write_report
from .runner import check_run_directory, execute, plan_jobs, prepare_run_directory, train_classes

__all__ = ["DEFAULT_CONFIG", "StudyResult", "build_parser", "main", "run_study"]

logger = logging.getLogger(__name__)

DEFAULT_CONFIG = shipped_config("oasis_quick")


@dataclasses.dataclass
class StudyResult:
    """What :func:`run_study` returns: the tables and where everything was written."""

    out: Path
    per_run: Any  # pandas.DataFrame, one row per finished (method, seed) of the run directory
    summary: Any  # pandas.DataFrame, mean / std per method
    table: str  # the Markdown table printed to the terminal
    jobs_run: int
    jobs_skipped: int
    seconds: float
    job_resources: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)  # Ray: what each task got


def run_study(config: StudyConfig, out: str | Path, cache_dir: str | Path | None = None) -> StudyResult:
    """Run (or resume) the study into the run directory ``out``.

    The tables cover every finished result of ``out``, including seeds and methods
    of earlier invocations that this one did not ask for.

    Args:
        config: the validated study configuration.
        out: the run directory (created, or resumed if it holds the same study).
        cache_dir: cache root of simulated cohorts (see :func:`pipelines.common.study_data.resolve_cache_dir`).

    Raises:
        RunDirectoryError: ``out`` holds a different study or foreign files, or another run is using it.
        JobFailure: some jobs failed; the finished ones are kept.
    """
    start = time.perf_counter()
    paths = RunPaths(out)
    device_type = resolve_device(config.device).type
    check_outside_data(paths.root, config.data.data_folders())  # before the lock file could be created in the data folder
    check_run_directory(paths, config, device_type)  # before anything is created in a foreign folder
    with lock_run_directory(paths):
        data = load_study_data(config.data, cache_dir, progress=config.progress)
        config.classifier.check_image_size(data.image_size)
        config.vae.build(tuple(data.images.shape[1:]))
        prepare_run_directory(paths, config, data, device_type)

        jobs = plan_jobs(config, train_classes(paths, data, config.seed_list))
        todo = [job for job in jobs if not paths.is_done(job)]
        logger.info(
            "Study %r: %d seed(s) x %d method(s), %d jobs (%d already finished), backend %s, device %s, "
            "run directory %s",
            config.name, len(config.seed_list), len(config.methods), len(jobs), len(jobs) - len(todo),
            config.backend, device_type, paths.root,
        )
        resources = execute(paths, config, todo)
        title = f"OASIS study {config.name!r}: {len(set(data.subject_ids))} subjects, images {data.image_size}"
        per_run, summary, table = write_report(paths, title)
        seconds = time.perf_counter() - start
        return StudyResult(paths.root, per_run, summary, table, len(todo), len(jobs) - len(todo), seconds, resources)


def _seeds(text: str) -> int | list[int]:
    """``"5"`` -> 5 repetitions (seeds 0..4); ``"0,3,7"`` -> those seeds."""
    try:
        if "," in text:
            return [int(s) for s in text.split(",") if s.strip()]
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a count (e.g. 5) or a comma-separated list of seeds, got {text!r}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m augmentor.oasis",
        description="OASIS-1 augmentation study (paper Table 2): per-class VAEs, three samplers, "
        "the Table 4 classifier, R seeds; resumable run directories.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "Flags override the config file. Without --data-dir (and data.data_dir null) the study runs on "
            "the embedded simulated cohort, cached under --cache-dir, data.cache_dir, $"
            f"{CACHE_ENV}, or ~/.cache/geometric-augmentor/oasis-sim (first found). "
            "Rerunning with the same --out resumes; a run directory of other settings, or one in use by "
            "another run, is refused. The report covers every finished result of the run directory."
        ),
    )
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="study YAML/JSON file, or a shipped config's name such as oasis_tiny (default: %(default)s)")
    parser.add_argument("--data-dir", help="local OASIS-1 copy (disc*/OAS1_*) or OASIS.npz; default: simulated cohort")
    parser.add_argument("--csv", help="clinical table (default: <data-dir>/oasis_cross-sectional.csv)")
    parser.add_argument("--seeds", type=_seeds, help="number of repetitions (seeds 0..R-1) or a list like 0,3,7")
    parser.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument("--out", type=Path, help="run directory (default: runs/oasis_<config name>)")
    parser.add_argument("--backend", choices=("local", "ray"), help="run jobs in-process or as Ray tasks")
    parser.add_argument("--ray-address", help="Ray cluster to join (ray.init(address=...)); default local or $RAY_ADDRESS")
    parser.add_argument("--num-threads", type=int, help="torch/BLAS threads per job (= Ray CPUs per job)")
    parser.add_argument("--cache-dir", type=Path, help="cache root of simulated cohorts")
    parser.add_argument("--methods", help="comma-separated methods, e.g. real,resampled,riemannian")
    add_override_arguments(parser, "classifier.epochs=10")
    return parser


def config_from_args(args: argparse.Namespace) -> StudyConfig:
    """The study config of the parsed command line: file, then ``--set``, then the named flags."""
    named = {
        "data.data_dir": args.data_dir,
        "data.csv": args.csv,
        "seeds": args.seeds,
        "device": args.device,
        "backend": args.backend,
        "ray.address": args.ray_address,
        "num_threads": args.num_threads,
        "methods": None if args.methods is None else [m.strip() for m in args.methods.split(",") if m.strip()],
    }
    return load_study_config(args.config, command_line_overrides(args, named))


def _print_result(config: StudyConfig, result: StudyResult, out: Path) -> None:
    """The study's table, protocol and where the report lies, for the terminal."""
    paths = RunPaths(out)
    print()
    print(result.table)
    print(f"\n{PROTOCOL}")
    print(f"\nReport: {paths.report} (summary.csv, summary.md, per_run.csv, balanced_accuracy.png, "
          f"fit.md: how well the VAEs fit each class); "
          f"TensorBoard: tensorboard --logdir {paths.tensorboard()}")
    print(f"{result.jobs_run} job(s) run, {result.jobs_skipped} skipped, {result.seconds:.1f} s")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(
        lambda: config_from_args(args), "oasis_{name}", args.out,
        lambda config, out: run_study(config, out, cache_dir=args.cache_dir), _print_result,
    )


if __name__ == "__main__":
    sys.exit(main())
