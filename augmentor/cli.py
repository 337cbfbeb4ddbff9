"""Command line for one's own data: ``fit`` an augmentor on a data list, ``generate`` synthetic NIfTI subjects.

.. code-block:: text

    python -m augmentor fit --data list.csv --out model/ [--config NAME_OR_YAML] [--set vae.trainer.max_steps=50 ...]
    python -m augmentor generate model/ --n 20 --sampler riemannian --seed 0 --out synthetic/

(also installed as the console script ``geometric-augmentor``).

``fit`` reads a MONAI data list (Decathlon-style JSON ``{"training": [{"image", "label"}]}``
or a plain JSON list of such dicts, or a CSV with ``image,label`` columns) exactly as the
low-data study's ``datadicts`` source does (:func:`pipelines.lowdata.sources.read_data_list`,
``LoadImaged`` + ``EnsureChannelFirstd``, optional ``Resized`` and intensity scaling by
:func:`pipelines.lowdata.sources.preprocessing_transform`), trains the per-class
:class:`~augmentor.GeometricAugmentor` and writes into a new folder, published whole:

* ``augmentor/``: the fitted augmentor (:meth:`GeometricAugmentor.save` format;
  ``GeometricAugmentor.load("model/augmentor")`` reads it);
* ``fit.json``: the settings used, the classes and their sizes, the image shape and
  the affine of the first input image after preprocessing (the synthetic files get it);
* ``fit_report.json`` / ``fit_report.md``: per class the reconstruction error against
  the class-mean baseline, active latent units, KL, and the warnings of
  :func:`augmentor.fit_report.fit_report`;
* ``fit_grid.png``: per class real, reconstructed and synthetic images (volumes: middle slices);
* ``tensorboard/``: the training curves;
* ``manifest.json``: checksums of every file, verified by ``generate``.

Without ``--config`` a built-in configuration is chosen from the images' dimension
and size (:data:`BUILTIN_CONFIGS`, :func:`choose_config`). ``--set section.key=value``
overrides any field of :class:`FitConfig`, as in the studies' command lines.

``generate`` writes ``--n`` NIfTI files per class (``images/synthetic_00000_label0.nii.gz``,
the recorded affine) and the data lists ``datalist.json`` (Decathlon style) and
``datalist.csv``, with image paths relative to the output folder as MONAI's
``load_decathlon_datalist`` reads them (``--absolute-paths`` for absolute ones).

Exit codes: 0 done, 1 the run failed, 2 invalid input or configuration (an ``error:``
line names the problem), 130 interrupted. A non-empty ``--out`` is refused, and an
output folder appears whole or not at all.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io as _io
import json
import logging
import math
import os
import signal
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from .augmentor import AugmentorConfig, GeometricAugmentor
from .utils.config import Config, ConfigError, read_config_data
from .data import check_images, load_data_dicts
from .utils.devices import DEVICE_CHOICES, is_device_name
from .models.fit_report import FitReport, fit_report, save_fit_grid
from .sampling.hmc import HMCConfig
from .utils.io import (
    CorruptSaveError,
    OutputExistsError,
    ensure_new_output_dir,
    export_nifti,
    file_digest,
    read_saved_folder,
    saved_folder,
    write_bytes,
    write_json,
)
from .sampling.metric import MetricConfig
from .models.peers import model_samplers
from pipelines.common.settings import VAESection
from pipelines.common.cli import add_override_arguments, apply_overrides, command_line_overrides
from pipelines.lowdata.sources import PreprocessingConfig, preprocessing_transform, read_data_list

__all__ = [
    "BUILTIN_CONFIGS",
    "FIT_KIND",
    "SYNTHETIC_KIND",
    "FitConfig",
    "InputError",
    "build_parser",
    "choose_config",
    "fit",
    "generate",
    "load_fit_config",
    "main",
]

logger = logging.getLogger(__name__)

FIT_KIND = "geometric-augmentor-fit"
"""Manifest kind of the folder ``fit`` writes."""
SYNTHETIC_KIND = "geometric-augmentor-synthetic"
"""Manifest kind of the folder ``generate`` writes."""
FORMAT_VERSION = 1

EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_INTERRUPTED = 0, 1, 2, 130

SMALL_SIDE = 64
"""Images whose every spatial side is at most this many voxels get a ``*-small`` built-in config."""


class InputError(ValueError):
    """The data list, an image, the model folder or an output location is unusable (exit code 2)."""


@dataclasses.dataclass
class FitConfig(Config):
    """Everything ``fit`` uses besides the data list; JSON/YAML round-trippable.

    Attributes:
        name: the configuration's name (recorded in ``fit.json``).
        preprocessing: how each listed image is read (:class:`pipelines.lowdata.sources.PreprocessingConfig`).
        vae: the architecture (a preset and field overrides; ``in_shape`` comes from
            the data), the trainer and the encode batch size
            (:class:`pipelines.common.settings.VAESection`).
        model: the generative model per class (see :class:`~augmentor.AugmentorConfig`).
        model_options: the model's own settings.
        shared_vae: one VAE for all classes instead of one per class.
        hmc: the Riemannian sampler's chains; metric: how its metric is built.
        gmm_components: components of the GMM sampler.
        figure_sampler: the sampler of the synthetic rows of ``fit_grid.png``.
        figure_per_class: images per row of ``fit_grid.png``.
        device: ``auto``, ``cpu``, ``cuda[:N]`` or ``mps``.
        progress: progress bars.
    """

    name: str = "custom"
    preprocessing: PreprocessingConfig = dataclasses.field(default_factory=PreprocessingConfig)
    vae: VAESection = dataclasses.field(default_factory=lambda: VAESection(preset=None))
    model: str = "vae"
    model_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    shared_vae: bool = False
    hmc: HMCConfig = dataclasses.field(default_factory=HMCConfig)
    metric: MetricConfig = dataclasses.field(default_factory=MetricConfig)
    gmm_components: int = 10
    figure_sampler: str = "riemannian"
    figure_per_class: int = 8
    device: str = "auto"
    progress: bool = True

    def __post_init__(self) -> None:
        # A vae section without a preset means the generic architecture here, not the
        # study's default preset (the OASIS network).
        if isinstance(self.vae, dict):
            self.vae = VAESection.from_dict({"preset": None, **self.vae}, where="FitConfig.vae")
        super().__post_init__()

    def validate(self) -> None:
        if not is_device_name(self.device):
            self._fail("device", f"must be {DEVICE_CHOICES}, got {self.device!r}")
        if self.figure_per_class < 1:
            self._fail("figure_per_class", f"must be >= 1, got {self.figure_per_class}")
        self.augmentor_config(None)  # the model, its options and its samplers
        if self.figure_sampler not in model_samplers(self.model):
            self._fail("figure_sampler", f"{self.figure_sampler!r} does not apply to model {self.model!r}; "
                                         f"its samplers are {', '.join(model_samplers(self.model))}")

    def augmentor_config(self, in_shape: Sequence[int] | None) -> AugmentorConfig:
        """The :class:`~augmentor.AugmentorConfig` for images of ``in_shape`` ``(C, H, W[, D])``
        (None: everything but the architecture)."""
        return AugmentorConfig(
            vae=None if in_shape is None else self.vae.build(tuple(in_shape)),
            model=self.model,
            model_options=self.model_options,
            trainer=self.vae.trainer.replace(progress=self.progress),
            metric=self.metric,
            hmc=self.hmc,
            gmm_components=self.gmm_components,
            device=self.device,
            encode_batch_size=self.vae.encode_batch_size,
            shared_vae=self.shared_vae,
        )


def _builtin(side_layers: int, channels: list[int], latent_dim: int, max_steps: int, batch_size: int) -> dict:
    return {
        "vae": {
            "preset": None,
            "architecture": {
                "latent_dim": latent_dim,
                "channels": channels,
                "strides": [2] * side_layers,
                "kernel_size": 3,
                "norm": "batch",
                "beta": 1.0,
            },
            "trainer": {
                "max_steps": max_steps,
                "eval_every": 20,
                "batch_size": batch_size,
                "lr": 2.0e-3,
                "lr_patience": 5,
                "early_stopping_patience": None,
                "val_fraction": 0.2,
                "min_val_images": 2,
                "image_log_every": 0,
            },
            "encode_batch_size": 16,
        },
        "hmc": {"n_steps": 100, "n_leapfrog": 10, "step_size": 0.01},
    }


BUILTIN_CONFIGS: dict[str, dict[str, Any]] = {
    "2d-small": {"name": "2d-small", **_builtin(3, [32, 64, 128], 16, 1000, 32)},
    "2d-large": {"name": "2d-large", **_builtin(4, [32, 64, 128, 256], 16, 1000, 16)},
    "3d-small": {"name": "3d-small", **_builtin(3, [8, 16, 32], 8, 300, 8)},
    "3d-large": {"name": "3d-large", **_builtin(4, [16, 32, 64, 128], 16, 600, 4)},
}
"""Built-in ``fit`` configurations by name: ``{2d,3d}-{small,large}``; see :func:`choose_config`."""


def choose_config(spatial_shape: Sequence[int]) -> str:
    """The built-in configuration for images of ``spatial_shape`` ``(H, W[, D])``:
    ``2d-`` or ``3d-``, then ``small`` when every side is at most :data:`SMALL_SIDE`, else ``large``."""
    dims = len(spatial_shape)
    if dims not in (2, 3):
        raise InputError(f"images must be 2D or 3D, got spatial shape {tuple(spatial_shape)}")
    return f"{dims}d-{'small' if max(spatial_shape) <= SMALL_SIDE else 'large'}"


def load_fit_config(config: str | Path | None, overrides: dict[str, Any], default: str = "2d-small") -> FitConfig:
    """A :class:`FitConfig` from a built-in name or a YAML/JSON file, with ``{"section.key": value}`` overrides.

    Args:
        config: a name of :data:`BUILTIN_CONFIGS`, a file, or None for ``default``.
        overrides: dotted keys to values (``--set``).
        default: the built-in name used when ``config`` is None.

    Raises:
        ConfigError: unknown name, unreadable file, unknown key or bad value (named).
    """
    name = default if config is None else str(config)
    if name in BUILTIN_CONFIGS:
        data, where = BUILTIN_CONFIGS[name], f"built-in config {name!r}"
    elif Path(name).suffix.lower() in (".yaml", ".yml", ".json"):
        data, where = read_config_data(name), name
    else:
        raise ConfigError(f"--config {name!r} is neither a built-in config ({', '.join(BUILTIN_CONFIGS)}) "
                          "nor a .yaml/.json file")
    try:
        return FitConfig.from_dict(apply_overrides(data, overrides))
    except ConfigError as err:
        suffix = f" (with overrides {sorted(overrides)})" if overrides else ""
        raise ConfigError(f"{where}{suffix}: {err}") from None


class _ReadingTransform:
    """The preprocessing of each data dict, naming the file in any error and keeping the first affine."""

    def __init__(self, transform: Callable, total: int, progress: bool) -> None:
        self.transform = transform
        self.first_affine: np.ndarray | None = None
        self.bar = tqdm(total=total, desc="reading images", unit="image", disable=not progress)

    def __call__(self, item: dict[str, Any]) -> dict[str, Any]:
        try:
            out = self.transform(item)
        except Exception as err:  # MONAI wraps the reader's error in a RuntimeError naming the transform
            cause = err
            while cause.__cause__ is not None:
                cause = cause.__cause__
            raise InputError(f"image {item.get('image')!r} cannot be read: {type(cause).__name__}: "
                             f"{str(cause)[:300]}") from err
        image = torch.as_tensor(out["image"])
        bad = int((~torch.isfinite(image)).sum()) if image.is_floating_point() else 0
        if bad:
            raise InputError(f"image {item.get('image')!r} holds {bad} NaN or infinite voxel(s) after preprocessing")
        low, high = float(image.min()), float(image.max())
        if low < 0 or high > 1:
            raise InputError(f"image {item.get('image')!r} lies in [{low:.4g}, {high:.4g}] after preprocessing, "
                             "not [0, 1]; set preprocessing.intensity to minmax or percentile")
        if self.first_affine is None:
            self.first_affine = np.asarray(getattr(out["image"], "affine", np.eye(4)), dtype=np.float64)
        self.bar.update(1)
        return out


def _read_data(path: Path, config: FitConfig) -> tuple[torch.Tensor, torch.Tensor, np.ndarray, list[str]]:
    """Images ``(N, C, H, W[, D])`` in [0, 1], labels ``(N,)``, the first image's ``(4, 4)`` affine and the files."""
    items = read_data_list(path)
    reader = _ReadingTransform(preprocessing_transform(config.preprocessing), len(items), config.progress)
    try:
        images, labels = load_data_dicts(items, reader)
    finally:
        reader.bar.close()
    images = check_images(images, tuple(images.shape[1:]), f"the images of {path} after preprocessing", 2)
    # MONAI's readers give a (4, 4) affine for 2D images too, updated by Resized.
    return images, labels, reader.first_affine, [item["image"] for item in items]


def _report_markdown(report: FitReport, config_name: str) -> str:
    lines = [
        f"# Fit report ({config_name})",
        "",
        "Reconstruction error: squared error summed over an image, mean over the class's images "
        "(posterior-mean reconstructions); class mean: the same error with the class's mean image as "
        "every reconstruction. A ratio well below 1 means the VAE reproduces individual images.",
        "",
        "| Class | Images | Recon. error | Class-mean error | Ratio | Active units | KL (nats) | Steps | Best step |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, fit in report.classes.items():
        baseline = fit.recon_class_mean or math.nan
        lines.append(
            f"| {label} | {fit.n_images} | {fit.recon:.4g} | {baseline:.4g} | {fit.recon / baseline:.3f} | "
            f"{fit.active_units} / {fit.latent_dim} | {fit.kl:.3g} | {fit.steps} | {fit.best_step} |"
        )
    lines += ["", "## Warnings", ""] + ([f"- {w}" for w in report.warnings] or ["none"])
    return "\n".join(lines) + "\n"


def fit(data_list: str | Path, out: str | Path, config: FitConfig | None, config_source: str | None = None,
        overrides: dict[str, Any] | None = None) -> Path:
    """Fit a :class:`~augmentor.GeometricAugmentor` on a data list and write its folder (see the module docstring).

    Args:
        data_list: the JSON or CSV data list.
        out: the new output folder.
        config: the settings; None chooses a built-in one for the images (:func:`choose_config`),
            with ``overrides`` applied.
        config_source: how ``config`` was given (recorded).
        overrides: the ``--set`` overrides (recorded; applied to the chosen built-in when ``config`` is None).

    Returns:
        ``out``.

    Raises:
        InputError, ConfigError, FileNotFoundError, OutputExistsError: unusable input (nothing written).
    """
    out, overrides = Path(out), overrides or {}
    ensure_new_output_dir(out)
    probe = config or load_fit_config(None, overrides)  # its preprocessing is the one every built-in shares
    images, labels, affine, files = _read_data(Path(data_list), probe)
    chosen = config is None
    if chosen:
        config_source = choose_config(images.shape[2:])
        config = load_fit_config(config_source, overrides)
        logger.info("images %s: built-in config %s", tuple(images.shape[1:]), config_source)
    augmentor_config = config.augmentor_config(images.shape[1:])
    classes, counts = labels.unique(return_counts=True)
    record = {
        "format_version": FORMAT_VERSION,
        "config_name": config.name,
        "config_source": config_source,
        "config_chosen_for_the_images": chosen,
        "overrides": overrides,
        "config": config.to_dict(),
        "data_list": str(Path(data_list).expanduser().resolve()),
        "first_image": files[0],
        "affine": affine.tolist(),
        "image_shape": list(images.shape[1:]),
        "classes": {str(int(c)): int(k) for c, k in zip(classes, counts)},
    }
    with saved_folder(out, FIT_KIND) as tmp:
        augmentor = GeometricAugmentor(augmentor_config).fit(images, labels, log_dir=tmp / "tensorboard")
        augmentor.save(tmp / "augmentor")
        n_shown = config.figure_per_class
        synthetic = augmentor.generate(n_shown, sampler=config.figure_sampler, seed=0)
        report = fit_report(augmentor, images, labels, synthetic={config.figure_sampler: synthetic})
        write_json(tmp / "fit_report.json", report.to_dict())
        write_bytes(tmp / "fit_report.md", _report_markdown(report, config.name).encode())
        rows = {}
        for label in augmentor.classes:
            real = images[labels == label][:n_shown]
            recon = augmentor.decode(augmentor.encode(real, label)[0], torch.full((len(real),), label))
            rows[label] = {"real": real, "reconstructed": recon,
                           f"synthetic ({config.figure_sampler})": synthetic[0][synthetic[1] == label]}
        save_fit_grid(rows, tmp / "fit_grid.png", f"{config.name}: real / reconstructed / synthetic",
                      per_row=n_shown)
        write_json(tmp / "fit.json", record)
    print(_report_markdown(report, config.name))
    return out


def _check_output_memory(n: int, n_classes: int, shape: Sequence[int]) -> None:
    """Refuse, before sampling, a request whose images cannot fit in half the machine's memory."""
    needed = n * n_classes * math.prod(shape) * 4
    try:
        available = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return
    if needed > available // 2:
        raise InputError(f"--n {n} asks for {n * n_classes} images of shape {tuple(shape)}: "
                         f"{needed / 2**30:.3g} GiB as float32, more than half of this machine's "
                         f"{available / 2**30:.3g} GiB; generate fewer per call")


def generate(model_dir: str | Path, out: str | Path, n: int, sampler: str = "riemannian", seed: int = 0,
             device: str | None = None, absolute_paths: bool = False) -> Path:
    """Write ``n`` synthetic NIfTI subjects per class and their data lists into a new folder.

    Args:
        model_dir: a folder written by :func:`fit` (its checksums are verified).
        out: the new output folder.
        n: images per class.
        sampler: a sampler of the fitted model (``riemannian``, ``gmm``, ``prior``, ...).
        seed: the same seed gives byte-identical files.
        device: overrides the fitted config's device.
        absolute_paths: write absolute image paths into the data lists (default: relative to ``out``).

    Returns:
        ``out``.
    """
    out = Path(out)
    ensure_new_output_dir(out)
    folder = read_saved_folder(model_dir, FIT_KIND)
    try:
        record = json.loads((folder / "fit.json").read_text())
        affine = np.asarray(record["affine"], dtype=np.float64)
    except (ValueError, KeyError, TypeError) as err:
        raise CorruptSaveError(f"{folder}/fit.json is unreadable ({err})") from err
    augmentor = GeometricAugmentor.load(folder / "augmentor", device=device)
    if sampler not in model_samplers(augmentor.config.model):
        raise InputError(f"--sampler {sampler!r} does not apply to model {augmentor.config.model!r}; "
                         f"choose one of {', '.join(model_samplers(augmentor.config.model))}")
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise InputError(f"--n must be an integer >= 1, got {n!r}")
    _check_output_memory(n, len(augmentor.classes), augmentor.config.vae.in_shape)
    images, labels = augmentor.generate(n, sampler=sampler, seed=seed)
    with saved_folder(out, SYNTHETIC_KIND) as tmp:
        files = export_nifti(images, tmp / "images", labels, affine=affine, prefix="synthetic")
        root = out.expanduser().resolve()
        entries = [
            {"image": str(root / "images" / f.name) if absolute_paths else f"images/{f.name}", "label": int(y)}
            for f, y in zip(files, labels.tolist())
        ]
        write_json(tmp / "datalist.json", {"training": entries})
        text = _io.StringIO()
        writer = csv.DictWriter(text, fieldnames=["image", "label"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(entries)
        write_bytes(tmp / "datalist.csv", text.getvalue().encode())
        write_json(tmp / "generation.json", {
            "format_version": FORMAT_VERSION,
            "model_manifest_sha256": file_digest(folder / "manifest.json"),
            "sampler": sampler,
            "seed": seed,
            "n_per_class": n,
            "classes": augmentor.classes,
            "hmc_acceptance": {str(k): d.acceptance_rate for k, d in augmentor.diagnostics.items()},
        })
    print(f"wrote {len(files)} synthetic images ({n} per class, sampler {sampler}, seed {seed}) "
          f"and {out / 'datalist.json'}, {out / 'datalist.csv'}")
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="geometric-augmentor",
        description="Fit per-class geometry-aware VAEs on your own labelled images and generate synthetic ones.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="{fit,generate}")
    fit_parser = commands.add_parser("fit", help="train the augmentor on a data list (JSON or CSV of image,label)")
    fit_parser.add_argument("--data", type=Path, required=True,
                            help="data list: Decathlon JSON {'training': [{'image', 'label'}]}, a JSON list, or CSV")
    fit_parser.add_argument("--out", type=Path, required=True, help="new folder for the fitted augmentor")
    fit_parser.add_argument("--config", help=f"built-in name ({', '.join(BUILTIN_CONFIGS)}) or YAML/JSON file; "
                                             "default: chosen from the images' dimension and size")
    fit_parser.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps")
    add_override_arguments(fit_parser, "vae.trainer.max_steps=100")
    gen_parser = commands.add_parser("generate", help="write synthetic NIfTI images and data lists")
    gen_parser.add_argument("model_dir", type=Path, help="a folder written by 'fit'")
    gen_parser.add_argument("--n", type=int, default=20, help="images per class (default: %(default)s)")
    gen_parser.add_argument("--sampler", default="riemannian", help="riemannian (default), gmm or prior")
    gen_parser.add_argument("--seed", type=int, default=0, help="the same seed gives identical files")
    gen_parser.add_argument("--out", type=Path, required=True, help="new folder for the synthetic images")
    gen_parser.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps (default: the fit's)")
    gen_parser.add_argument("--absolute-paths", action="store_true",
                            help="absolute image paths in the data lists (default: relative to --out)")
    return parser


def _run(args: argparse.Namespace) -> None:
    if args.command == "fit":
        overrides = command_line_overrides(args, {"device": args.device})
        config = None if args.config is None else load_fit_config(args.config, overrides)
        fit(args.data, args.out, config, args.config, overrides)
    else:
        generate(args.model_dir, args.out, args.n, args.sampler, args.seed, args.device, args.absolute_paths)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 failed run, 2 invalid input, 130 interrupted)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # A terminated run (kill, a batch system's time limit) cleans up like an interrupted one:
    # the temporary output folder is removed instead of left beside --out.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        _run(args)
    except ConfigError as err:
        print(f"error: invalid configuration: {err}", file=sys.stderr)
        return EXIT_INVALID
    except (InputError, OutputExistsError, CorruptSaveError, FileNotFoundError, NotADirectoryError,
            PermissionError, ValueError, TypeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_INVALID
    except KeyboardInterrupt:
        print(f"\ninterrupted; nothing was written to {args.out}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as err:  # a failed run: one line, not a traceback
        print(f"error: the run failed: {type(err).__name__}: {err}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        signal.signal(signal.SIGTERM, previous)
    return EXIT_OK


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt
