"""The study's jobs and the run-directory layout they read and write.

Three kinds of job, all idempotent (a finished job is skipped, never redone):

* ``vae/seed_<s>/class_<c>`` (``vae/seed_<s>/<model>/class_<c>`` for a peer
  model): train class ``c``'s VAE (or peer model) on the training subjects of
  repetition ``s``, exactly as :meth:`augmentor.GeometricAugmentor.fit` trains it
  (:meth:`~augmentor.GeometricAugmentor.fit_class_model`), and save it. One job
  per class, so the classes of a seed can train at once (on several GPUs).
* ``generate/seed_<s>``, after the seed's ``vae`` jobs: fit the latent samplers
  on the per-class models (:meth:`~augmentor.GeometricAugmentor.fit_from_class_models`;
  for the ``shared-*`` methods also train one augmentor with ``shared_vae=True``,
  whose one VAE sees every class), save the fitted augmentors (per-class VAEs,
  and for the ``<model>-<sampler>`` methods one with ``model=<model>``, a peer
  model), and draw ``n_per_class`` latent codes per class
  with each sampler the methods need; then record how well the VAEs fit
  (:mod:`augmentor.fit_report`) and whether each synthetic set carries its class
  (a classifier trained on the real training images, tested on the synthetic
  ones). Shared by all methods of the seed.
* ``classify/seed_<s>/<method>``: build the method's training set, train the
  Table 4 classifier, evaluate it on the test subjects, write the result JSON.

Run directory::

    .lock                              held (flock) by the run working in the directory
    study.json                         identity of the run (config, data fingerprint, hash)
    data.pt                            the images every job reads
    splits/seed_<s>.json               subject IDs and image indices of train / val / test
    generate/seed_<s>/class_models/class_<c>/  class c's trained VAE (checksummed saved folder)
    generate/seed_<s>/class_models_<model>/class_<c>/  class c's trained peer model
    generate/seed_<s>/augmentor/       fitted VAEs + samplers (checksummed saved folder)
    generate/seed_<s>/augmentor_shared/        the shared-decoder augmentor (shared-* methods)
    generate/seed_<s>/augmentor_<model>/       a peer model's augmentor (<model>-<sampler> methods)
    generate/seed_<s>/latents_<source>.pt      latent codes and labels (decoded on use); the
                                       source is a sampler name, shared-<sampler> for the shared
                                       VAE, <model>-<sampler> for a peer model
    generate/seed_<s>/diagnostics_<source>.json (HMC acceptance, R-hat, ESS), samples_<source>.png
    generate/seed_<s>/fit.json         fit diagnostics per class and model, fidelity per source, class
                                       effect (ventricle size per class, oasis.anatomy) of the real
                                       training subjects and of each synthetic source
    generate/seed_<s>/fit_grid[_<generator>].png  real / reconstructed / synthetic images per class
    generate/seed_<s>/fit_views[_<generator>].png volumes: axial / coronal / sagittal mid-slices of
                                       held-out real volumes, their reconstructions, synthetic ones
    generate/seed_<s>/real_vs_synthetic.png    training images over each per-class sampler's, per
                                       class (volumes: their middle axial slice)
    results/seed_<s>/<method>.json     one finished classifier job (a damaged one is moved
                                       aside to <method>.json.corrupt and the job runs again)
    tensorboard/seed_<s>/{vae,<method>}/       training curves
    report/                            table (CSV, Markdown), per-run CSV, box plot

Intermediate files (splits, latents) carry a SHA-256 checksum ``<name>.sha256``
(:mod:`augmentor.utils.artifacts`), verified on read; a damaged one, like a damaged saved
augmentor or class model, is moved aside to ``<name>.corrupt`` and made again. A job
runs when its own outputs are missing or damaged: a deleted class model makes its
``vae`` job run again (the same weights, bit for bit), not the jobs after it whose
outputs are intact.

Every file is written atomically (temporary name + rename, :mod:`augmentor.io`),
so a killed job leaves either its complete result or nothing under the final
name. Synthetic sets are stored as latent codes and decoded by the classifier
jobs with the saved decoders: the paper's 2000 images per class x 3 samplers x
20 seeds would take about 35 GB as float32 images, the codes take kilobytes.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from augmentor.utils.allocator import keep_large_buffers
from augmentor.augmentor import CLASS_MODEL_KIND, ClassModel, GeometricAugmentor
from augmentor.models.fit_report import fit_report, save_fit_grid, synthetic_fidelity
from augmentor.utils.artifacts import load_intact, read_checked_json, save_checked_tensors
from augmentor.utils.io import CorruptSaveError, write_json
from augmentor.models.peers import MODEL_LABELS
from augmentor.utils.plots import save_sample_grid
from augmentor.utils.volume_figure import save_orthogonal_slices
from oasis.anatomy import class_effect
from oasis.loader import T88_SHAPE, axial_slices

from ..common.classifier import (TorchIOAugmentation, TrainedClassifier, classification_metrics, predict,
                                 train_classifier)
from ..common.jobs import (SEED_STRIDE, augmentor_config, augmentor_from_class_models, class_model_path,
                           fitted_class_model, intact_augmentor, job_environment, job_seed, read_result)
from ..common.methods import REAL_PREFIX, deprecated_name, method_sampler, split_source
from ..common.run_directory import RunDirectory, StudyError
from ..common.study_data import StudyData, oversample
from .config import CLASS_NAMES, METHODS, SEED_KEYS, StudyConfig

__all__ = [
    "Job", "RunPaths", "run_class_model", "run_classify", "run_generate", "run_job", "train_judge",
    "training_set",
]

logger = logging.getLogger(__name__)

PREVIEW_PER_CLASS = 8  # images per row of the generate job's figures


@dataclasses.dataclass(frozen=True)
class Job:
    """One unit of work (see the module docstring).

    Attributes:
        kind: ``vae`` (per seed, class and per-class generator), ``generate`` (per
            seed) or ``classify`` (per seed and method).
        seed: the repetition.
        method: the classifier's method (``classify``).
        samplers: the latent sources to draw (``generate``).
        label: the class whose model trains (``vae``).
        generator: ``vae`` or a peer model's name (``vae``).
        after: keys of the jobs whose outputs this one reads: both backends run
            them first, and skip this job when one of them fails.
    """

    kind: str
    seed: int
    method: str | None = None
    samplers: tuple[str, ...] = ()
    label: int | None = None
    generator: str = "vae"
    after: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        if self.kind == "vae":
            model = "" if self.generator == "vae" else f"{self.generator}/"
            return f"vae/seed_{self.seed}/{model}class_{self.label}"
        return f"generate/seed_{self.seed}" if self.kind == "generate" else f"classify/seed_{self.seed}/{self.method}"


class RunPaths(RunDirectory):
    """Where everything of a run directory lives (see the module docstring)."""

    @property
    def data(self) -> Path:
        return self.root / "data.pt"

    def split(self, seed: int) -> Path:
        return self.root / "splits" / f"seed_{seed}.json"

    def generate(self, seed: int) -> Path:
        return self.root / "generate" / f"seed_{seed}"

    def augmentor(self, seed: int, generator: str = "vae") -> Path:
        """The augmentor of a generator of :func:`~pipelines.common.methods.split_source` (``vae``, ``shared``, a peer)."""
        return self.generate(seed) / ("augmentor" if generator == "vae" else f"augmentor_{generator}")

    def class_model(self, seed: int, label: int, generator: str = "vae") -> Path:
        """Class ``label``'s trained model of a per-class generator (``vae`` or a peer)."""
        return class_model_path(self.generate(seed), label, generator)

    def latents(self, seed: int, source: str) -> Path:
        return self.generate(seed) / f"latents_{source}.pt"

    def fit(self, seed: int) -> Path:
        return self.generate(seed) / "fit.json"

    def fit_grid(self, seed: int, generator: str = "vae") -> Path:
        return self.generate(seed) / ("fit_grid.png" if generator == "vae" else f"fit_grid_{generator}.png")

    def fit_views(self, seed: int, generator: str = "vae") -> Path:
        return self.fit_grid(seed, generator).with_name(self.fit_grid(seed, generator).name.replace("grid", "views"))

    def real_vs_synthetic(self, seed: int) -> Path:
        return self.generate(seed) / "real_vs_synthetic.png"

    def result(self, seed: int, method: str) -> Path:
        return self.root / "results" / f"seed_{seed}" / f"{method}.json"

    def is_done(self, job: Job) -> bool:
        """Whether ``job`` has finished; a damaged result file is moved aside (see :func:`read_result`)."""
        if job.kind == "vae":
            return intact_augmentor(self.class_model(job.seed, job.label, job.generator), CLASS_MODEL_KIND)
        if job.kind == "generate":
            generators = {split_source(source)[0] for source in job.samplers}
            # Damaged augmentors and latents are moved aside here, so the job makes them again.
            return (
                all(intact_augmentor(self.augmentor(job.seed, generator)) for generator in generators)
                and all(load_intact(self.latents(job.seed, s)) is not None for s in job.samplers)
                and self.fit(job.seed).is_file()
            )
        return self.finished_result(job.seed, job.method or "") is not None

    def finished_result(self, seed: int, method: str) -> dict[str, Any] | None:
        """The finished result of ``method`` on ``seed``, or None; a damaged file is moved aside.

        A run directory of an earlier release holds it under the method's old name
        (:func:`~pipelines.common.methods.deprecated_name`, ``original.json`` for ``real``): it is read
        there too, so resuming such a directory does not train the renamed methods again.
        """
        result = read_result(self.result(seed, method))
        old = deprecated_name(method)
        if result is None and old != method:
            result = read_result(self.result(seed, old))
        return result

    def finished_results(self) -> dict[tuple[int, str], dict[str, Any]]:
        """Every finished classifier result in the run directory, keyed by ``(seed, method)``.

        Whichever invocations wrote them: a run extended or resumed with other seeds
        or methods keeps all of its results. Damaged files are moved aside (see
        :func:`read_result`) and left out.
        """
        names = [folder.name.removeprefix("seed_") for folder in (self.root / "results").glob("seed_*")]
        found = {}
        for seed in sorted(int(name) for name in names if name.isdigit()):
            for method in METHODS:
                result = self.finished_result(seed, method)
                if result is not None:
                    found[(seed, method)] = result
        return found


def load_latents(paths: RunPaths, seed: int, source: str) -> dict[str, Any]:
    """The seed's latent codes of ``source``, checksum verified.

    Raises:
        StudyError: they are missing, or were damaged (then moved aside): the generate job makes them again.
    """
    latents = load_intact(paths.latents(seed, source))
    if latents is None:
        raise StudyError(f"{paths.latents(seed, source)} is missing or was damaged; rerun to draw it again")
    return latents


def read_split(paths: RunPaths, seed: int) -> dict[str, list[int]]:
    return read_checked_json(paths.split(seed))["indices"]


def _model_name(generator: str) -> str:
    """The name of a generator's TensorBoard and checkpoint folders."""
    return {"vae": "vae", "shared": "vae_shared"}.get(generator, generator)


def _class_model(
    paths: RunPaths, config: StudyConfig, data: StudyData, train: torch.Tensor, seed: int, generator: str, label: int
) -> ClassModel:
    """The seed's trained model of class ``label`` of a per-class ``generator``: loaded if saved, else trained."""
    augmentor = GeometricAugmentor(augmentor_config(config, seed, tuple(data.images.shape[1:]), generator))
    return fitted_class_model(
        paths.class_model(seed, label, generator), augmentor, data.images[train], data.labels[train], label,
        log_dir=paths.tensorboard(f"seed_{seed}", _model_name(generator)),
        checkpoint_dir=_checkpoints(paths, seed, generator),
    )


def _checkpoints(paths: RunPaths, seed: int, generator: str) -> Path:
    """The training checkpoints of the seed's models of ``generator`` (a subfolder per class)."""
    return paths.generate(seed) / f"checkpoints_{_model_name(generator)}"


def _fitted_augmentor(
    paths: RunPaths, config: StudyConfig, data: StudyData, train: torch.Tensor, seed: int, generator: str
) -> GeometricAugmentor:
    """The seed's augmentor of ``generator`` (see :func:`augmentor_config`): loaded if saved, else fitted and saved.

    A per-class generator's augmentor is put together from the saved class models
    (the ``vae`` jobs'; one that is missing is trained here), the shared VAE trained here.
    """
    folder = paths.augmentor(seed, generator)
    saved = load_intact(folder, lambda path: GeometricAugmentor.load(path, device=config.device),
                         (CorruptSaveError,))  # only damage; other errors (a device) propagate
    if saved is not None:
        return saved
    log_dir = paths.tensorboard(f"seed_{seed}", _model_name(generator))
    checkpoints = _checkpoints(paths, seed, generator)
    augmentor = GeometricAugmentor(augmentor_config(config, seed, tuple(data.images.shape[1:]), generator))
    images, labels = data.images[train], data.labels[train]
    if generator == "shared":
        augmentor.fit(images, labels, log_dir=log_dir, checkpoint_dir=checkpoints)
    else:
        augmentor_from_class_models(augmentor, images, labels, lambda c: paths.class_model(seed, c, generator),
                                    log_dir, checkpoints)
    augmentor.save(folder)
    shutil.rmtree(checkpoints, ignore_errors=True)  # the saved augmentor supersedes them
    return augmentor


def _draw_latents(paths: RunPaths, config: StudyConfig, augmentor: GeometricAugmentor, seed: int, source: str) -> None:
    """Draw and save ``n_per_class`` latents per class of ``source``, with its preview grid."""
    sampler = split_source(source)[1]
    n = config.sampling.n_per_class
    # The latents that GeometricAugmentor.generate(n, sampler, seed=seed) decodes.
    z, y = augmentor.class_latents(n, sampler, seed=seed)
    if sampler == "riemannian":
        diagnostics = {str(label): augmentor.diagnostics[label].to_dict() for label in augmentor.classes}
        write_json(
            paths.generate(seed) / f"diagnostics_{source}.json",
            {"n_per_class": n, "hmc": config.sampling.hmc.to_dict(), "per_class": diagnostics},
        )
    first = torch.cat([(y == label).nonzero().flatten()[:8] for label in augmentor.classes])  # 8 per class
    preview_labels = y[first]
    preview = augmentor.decode(z[first], preview_labels)
    save_sample_grid(axial_slices(preview), preview_labels, paths.generate(seed) / f"samples_{source}.png",
                     f"seed {seed}: {source}", class_names=CLASS_NAMES)
    save_checked_tensors(paths.latents(seed, source), {"z": z, "labels": y, "sampler": source, "n_per_class": n})


def train_judge(
    config: StudyConfig, data: StudyData, split: dict[str, torch.Tensor], seed: int, device: torch.device
) -> TrainedClassifier:
    """The classifier trained on the seed's real training images (minority class resampled), selected on the
    validation images: the fidelity check's judge."""
    real_y = data.labels[split["train"]]
    index = split["train"][oversample(real_y, job_seed(seed, "fidelity"))]
    return train_classifier(
        data.images[index], data.labels[index], data.images[split["val"]], data.labels[split["val"]],
        config.classifier, seed=job_seed(seed, "fidelity"), device=device, progress=config.progress,
        desc=f"seed {seed} fidelity judge",
    )


def _real_image_classifier(
    config: StudyConfig, data: StudyData, split: dict[str, torch.Tensor], seed: int, device: torch.device
) -> tuple[Callable[[torch.Tensor], np.ndarray], dict[str, Any]]:
    """The fidelity check's judge (:func:`train_judge`). Returns its predict function and its test metrics."""
    trained = train_judge(config, data, split, seed, device)
    judge = lambda x: predict(trained.model, x, config.classifier.eval_batch_size, device)  # noqa: E731
    classes = sorted(int(c) for c in data.labels.unique())
    test = classification_metrics(data.labels[split["test"]].numpy(), judge(data.images[split["test"]]), classes)
    return judge, {"balanced_accuracy": test["balanced_accuracy"], "accuracy": test["accuracy"]}


def _fit_grid_rows(
    augmentor: GeometricAugmentor, images: torch.Tensor, labels: torch.Tensor, synthetic: dict[str, Any]
) -> dict[int, dict[str, torch.Tensor]]:
    """Per class: 8 real training images, their reconstructions, 8 synthetic images of each set (volumes:
    their middle axial slice)."""
    rows = {}
    for label in augmentor.classes:
        real = images[labels == label][:8]
        recon = augmentor.decode(augmentor.encode(real, label)[0], torch.full((len(real),), label))
        rows[label] = {"real": axial_slices(real), "reconstructed": axial_slices(recon)}
        for sampler, (x, y) in synthetic.items():
            rows[label][f"synthetic ({sampler})"] = axial_slices(x[y == label][:8])
    return rows


def _fit_view_rows(
    augmentor: GeometricAugmentor, images: torch.Tensor, labels: torch.Tensor, synthetic: dict[str, Any],
    per_row: int = 2,
) -> dict[int, dict[str, torch.Tensor]]:
    """Per class: ``per_row`` held-out volumes, their reconstructions and ``per_row`` volumes of each synthetic set."""
    rows = {}
    for label in augmentor.classes:
        real = images[labels == label][:per_row]
        rows[label] = {"real": real} if len(real) else {}
        if len(real):
            rows[label]["reconstructed"] = augmentor.decode(augmentor.encode(real, label)[0],
                                                            torch.full((len(real),), label))
        for sampler, (x, y) in synthetic.items():
            rows[label][sampler] = x[y == label][:per_row]
    return rows


def _write_fit(
    paths: RunPaths,
    config: StudyConfig,
    data: StudyData,
    job: Job,
    augmentors: dict[str, GeometricAugmentor],
    device: torch.device,
) -> None:
    """``fit.json`` (fit diagnostics per model and class, fidelity per source) and the fit grids.

    A run resumed with more methods keeps the existing record and adds the generators it lacks.
    """
    record = json.loads(paths.fit(job.seed).read_text()) if paths.fit(job.seed).is_file() else None
    missing = {
        generator: augmentor for generator, augmentor in augmentors.items()
        if record is None or any(split_source(source)[0] == generator and source not in record["fidelity"]
                                 for source in job.samplers)
    }
    if not missing:
        return
    split = {k: torch.tensor(v) for k, v in read_split(paths, job.seed).items()}
    train_x, train_y = data.images[split["train"]], data.labels[split["train"]]
    judge, judge_test = _real_image_classifier(config, data, split, job.seed, device)
    record = record or {"judge_test": judge_test, "fidelity": {}, "models": {}}
    effects = record.setdefault("class_effect", {})
    _add_class_effect(effects, "real", config, train_x, train_y)
    for generator, augmentor in missing.items():
        kind = {"vae": "per_class", "shared": "shared"}.get(generator, generator)
        synthetic = {}
        for source in job.samplers:
            if split_source(source)[0] != generator:
                continue
            latents = load_latents(paths, job.seed, source)
            images = augmentor.decode(latents["z"], latents["labels"])
            synthetic[split_source(source)[1]] = (images, latents["labels"])
            record["fidelity"][source] = synthetic_fidelity(judge, images, latents["labels"])
            _add_class_effect(effects, source, config, images, latents["labels"])
        title = f"{kind.replace('_', '-')} VAE" if generator in ("vae", "shared") else MODEL_LABELS[generator]
        if generator in ("vae", "shared"):  # the diagnostics read a VAE's posterior (peers: fidelity only)
            logger.info("Seed %d, %s: fit diagnostics", job.seed, title)
            report = fit_report(
                augmentor, train_x, train_y, data.images[split["val"]], data.labels[split["val"]], synthetic
            )
            record["models"][kind] = report.to_dict()
        shown = {name: synthetic[name] for name in ("riemannian",) if name in synthetic} or synthetic
        save_fit_grid(
            _fit_grid_rows(augmentor, train_x, train_y, shown), paths.fit_grid(job.seed, generator),
            f"seed {job.seed}, {title}", class_names=CLASS_NAMES,
        )
        if data.images.ndim == 5:
            save_orthogonal_slices(
                _fit_view_rows(augmentor, data.images[split["val"]], data.labels[split["val"]], synthetic),
                paths.fit_views(job.seed, generator), f"seed {job.seed}, {title}: held-out real volumes, "
                "their reconstructions, synthetic volumes", class_names=CLASS_NAMES,
            )
    write_json(paths.fit(job.seed), record)


def _measure_axial_index(config: StudyConfig, image_shape: tuple[int, ...]) -> int | None:
    """The axial slice of 2D images on the measuring grid of :func:`oasis.anatomy.effect_regions`."""
    if config.data.dim == 3 or config.data.slice_index is None:
        return None
    file_z = T88_SHAPE[2] if config.data.data_dir is not None else config.data.simulation.shape[2]
    grid_z = round(image_shape[1] * T88_SHAPE[2] / T88_SHAPE[0])  # (H, W) = (Y, X); the grid keeps T88's aspect
    return min(grid_z - 1, int(config.data.slice_index * grid_z / file_z))


def _add_class_effect(
    effects: dict[str, Any], source: str, config: StudyConfig, images: torch.Tensor, labels: torch.Tensor
) -> None:
    """Record the ventricle / hippocampal-region class effect of one image set, unless recorded or unmeasurable."""
    if source in effects:
        return
    try:
        effect = class_effect(images, labels, _measure_axial_index(config, tuple(images.shape[2:])))
    except ValueError as err:  # too coarse a grid, one class only: the report shows no row
        logger.info("No class effect for %s: %s", source, err)
        return
    effects[source] = effect.to_dict()


def _generate_seed(config: StudyConfig, seed: int) -> int:
    """The global seed of a repetition's ``vae`` and ``generate`` jobs (each model's training seeds itself)."""
    return (config.vae.trainer.seed + SEED_STRIDE * seed) % 2**31


def run_class_model(root: str | Path, config: StudyConfig, job: Job) -> dict[str, Any]:
    """Train and save the seed's model of one class (the ``vae`` job), unless saved."""
    paths = RunPaths(root)
    if paths.is_done(job):
        return {"job": job.key, "skipped": True}
    start = time.perf_counter()
    with job_environment(config, _generate_seed(config, job.seed)):
        data = StudyData.load(paths.data)
        train = torch.tensor(read_split(paths, job.seed)["train"])
        _class_model(paths, config, data, train, job.seed, job.generator, job.label)  # type: ignore[arg-type]
    return {"job": job.key, "skipped": False, "seconds": time.perf_counter() - start}


def run_generate(root: str | Path, config: StudyConfig, job: Job) -> dict[str, Any]:
    """Fit the seed's augmentors (unless saved), draw the missing latent sets, record the fit."""
    paths = RunPaths(root)
    if paths.is_done(job):
        return {"job": job.key, "skipped": True}
    start = time.perf_counter()
    with job_environment(config, _generate_seed(config, job.seed)) as device:
        data = StudyData.load(paths.data)
        train = torch.tensor(read_split(paths, job.seed)["train"])
        augmentors = {}
        for generator in dict.fromkeys(split_source(source)[0] for source in job.samplers):
            augmentors[generator] = augmentor = _fitted_augmentor(paths, config, data, train, job.seed, generator)
            for source in job.samplers:
                if split_source(source)[0] == generator and load_intact(paths.latents(job.seed, source)) is None:
                    _draw_latents(paths, config, augmentor, job.seed, source)
        _write_fit(paths, config, data, job, augmentors, device)
        per_class = [source for source in job.samplers if split_source(source)[0] == "vae"]
        if per_class and not paths.real_vs_synthetic(job.seed).is_file():
            previews = {}
            for source in per_class:
                latents = load_latents(paths, job.seed, source)
                previews[source] = _decode_preview(augmentors["vae"], latents["z"], latents["labels"])
            _save_real_vs_synthetic(paths, per_class, job.seed, data.images[train], data.labels[train], previews)
    return {"job": job.key, "skipped": False, "seconds": time.perf_counter() - start}


def _decode_preview(
    augmentor: GeometricAugmentor, z: torch.Tensor, labels: torch.Tensor, per_class: int = PREVIEW_PER_CLASS
) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``per_class`` codes of each class decoded: images ``(n, C, ...)`` and their labels."""
    chosen = torch.cat([torch.nonzero(labels == c).flatten()[:per_class] for c in labels.unique()])
    return augmentor.decode(z[chosen], labels[chosen]), labels[chosen]


def _save_real_vs_synthetic(
    paths: RunPaths,
    samplers: list[str],
    seed: int,
    images: torch.Tensor,
    labels: torch.Tensor,
    previews: dict[str, tuple[torch.Tensor, torch.Tensor]],
) -> None:
    """One PNG, per class a row of training images then a row per sampler (volumes: middle axial slice)."""
    rows, row_ids, row_names = [], [], {}
    for label in labels.unique().tolist():
        name = CLASS_NAMES.get(label, f"class {label}")
        sets = [("real", images[labels == label])]
        sets += [(s, previews[s][0][previews[s][1] == label]) for s in samplers]
        for title, chosen in sets:
            row_names[len(row_names)] = f"{name} {title}"
            chosen = axial_slices(chosen[:PREVIEW_PER_CLASS])
            rows.append(chosen)
            row_ids.append(torch.full((len(chosen),), len(row_names) - 1))
    save_sample_grid(torch.cat(rows), torch.cat(row_ids), paths.real_vs_synthetic(seed),
                     f"seed {seed}: training images and synthetic ones", PREVIEW_PER_CLASS, row_names)


def training_set(
    paths: RunPaths, config: StudyConfig, data: StudyData, train: torch.Tensor, job: Job
) -> tuple[torch.Tensor, torch.Tensor]:
    """The images and labels ``job.method`` trains on (before on-the-fly augmentation)."""
    method = job.method or ""
    real_x, real_y = data.images[train], data.labels[train]
    if method in ("real", "torchio"):
        return real_x, real_y
    if method == "resampled":
        index = oversample(real_y, job_seed(job.seed, SEED_KEYS[method]))
        return real_x[index], real_y[index]
    source = method_sampler(method)
    if source is None:
        raise ValueError(f"unknown method {method!r}")
    latents = load_latents(paths, job.seed, source)
    augmentor = GeometricAugmentor.load(paths.augmentor(job.seed, split_source(source)[0]), device=config.device)
    synth_x = augmentor.decode(latents["z"], latents["labels"])
    synth_y = latents["labels"]
    if method.startswith(REAL_PREFIX):
        return torch.cat([real_x, synth_x]), torch.cat([real_y, synth_y])
    return synth_x, synth_y


def run_classify(root: str | Path, config: StudyConfig, job: Job) -> dict[str, Any]:
    """Train and test the classifier of one (seed, method); write its result JSON."""
    paths = RunPaths(root)
    if paths.is_done(job):
        return {"job": job.key, "skipped": True}
    start = time.perf_counter()
    seed = job_seed(job.seed, SEED_KEYS[job.method])
    with job_environment(config, seed) as device:
        data = StudyData.load(paths.data)
        split = {k: torch.tensor(v) for k, v in read_split(paths, job.seed).items()}
        x, y = training_set(paths, config, data, split["train"], job)
        augment = None
        if job.method == "torchio":
            augment = TorchIOAugmentation(config.augmentation, data.image_size, seed)
        log_dir = paths.tensorboard(f"seed_{job.seed}", job.method)
        shutil.rmtree(log_dir, ignore_errors=True)  # curves of an interrupted attempt
        trained = train_classifier(
            x, y,
            data.images[split["val"]], data.labels[split["val"]],
            config.classifier,
            seed=seed,
            device=device,
            augment=augment,
            log_dir=log_dir,
            progress=config.progress,
            desc=f"seed {job.seed} {job.method}",
        )
        test_pred = predict(trained.model, data.images[split["test"]], config.classifier.eval_batch_size, device)
        classes = sorted(int(c) for c in data.labels.unique())
        metrics = classification_metrics(data.labels[split["test"]].numpy(), test_pred, classes)
    result = {
        "seed": job.seed,
        "method": job.method,
        "job_seed": seed,
        "test": metrics,
        "best_epoch": trained.best_epoch,
        "best_val_balanced_accuracy": trained.best_val_balanced_accuracy,
        "n_train": len(x),
        "n_train_per_class": {str(c): int((y == c).sum()) for c in classes},
        "n_val": len(split["val"]),
        "n_test": len(split["test"]),
        "history": trained.history,
        "seconds": round(time.perf_counter() - start, 3),
    }
    write_json(paths.result(job.seed, job.method), result)
    return {"job": job.key, "skipped": False, "seconds": result["seconds"]}


def run_job(root: str, config_data: dict[str, Any], job: Job, *dependencies: Any) -> dict[str, Any]:
    """Run one job (the entry point of both backends; ``dependencies`` only order Ray tasks).

    Large buffers stay in the heap (:func:`augmentor.utils.allocator.keep_large_buffers`): the
    3D convolutions' per-batch buffers are otherwise mapped and zero-filled anew on every call.
    """
    keep_large_buffers()
    config = StudyConfig.from_dict(config_data)
    if job.kind == "vae":
        return run_class_model(root, config, job)
    if job.kind == "generate":
        return run_generate(root, config, job)
    if job.kind == "classify":
        return run_classify(root, config, job)
    raise ValueError(f"unknown job kind {job.kind!r}")
