"""The low-data study's nested splits, run directory and jobs (generate per seed and size, classify per method
and classifier seed), with its MONAI augmentation."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import platform
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from augmentor.utils.artifacts import (NUMBER, check_fields, load_checked_tensors, load_intact, read_checked_json,
                                 save_checked_tensors, write_checked_json)
from augmentor.augmentor import CLASS_MODEL_KIND, GeometricAugmentor
from augmentor.utils.devices import resolve_device
from augmentor.utils.io import CorruptSaveError, write_json
from augmentor.models.training import result_settings
from augmentor.utils.batching import map_batches

from ..common.classifier import TorchIOAugmentation, classification_metrics, predict, train_classifier
from ..common.jobs import (augmentor_config, augmentor_from_class_models, class_model_path, fitted_class_model,
                           intact_augmentor, job_environment, job_seed, per_class_generators, read_result)
from ..common.methods import RATIO_MARK, is_filtered, method_sampler, split_source
from ..common.run_directory import RunDirectory, StudyError, check_outside_data, claim_run_directory
from ..common.settings import ClassifierConfig
from ..common.study_data import StudyData, oversample
from .sources import SourceConfig
from .config import ALL, LowDataConfig, LowDataSplitConfig, MonaiAugmentationConfig, size_name

__all__ = [
    "LowDataJob",
    "LowDataPaths",
    "MonaiAugmentation",
    "data_folders",
    "is_done",
    "latent_distances",
    "low_data_split",
    "lowdata_identity",
    "plan_lowdata_jobs",
    "run_class_model",
    "prepare_lowdata_run",
    "read_distances",
    "run_classify",
    "run_generate",
    "training_indices",
]

class MonaiAugmentation:
    """MONAI random rotation, zoom and noise of 2D or 3D images, reproducible per (seed, epoch).

    Set up as in a MONAI training script (array transforms in a ``Compose``); the
    ``Compose``'s random state is reseeded from ``seed`` and the epoch, so a given
    epoch always sees the same augmented set.
    """

    def __init__(self, config: MonaiAugmentationConfig, spatial_dims: int, seed: int) -> None:
        from monai.transforms import Compose, RandGaussianNoise, RandRotate, RandZoom

        angle = math.radians(config.degrees)
        ranges = {"range_x": angle} if spatial_dims == 2 else {"range_x": angle, "range_y": angle, "range_z": angle}
        self.transform = Compose([
            RandRotate(**ranges, prob=config.p_rotate, keep_size=True, padding_mode="zeros"),
            RandZoom(min_zoom=1 - config.zoom, max_zoom=1 + config.zoom, prob=config.p_zoom, keep_size=True),
            RandGaussianNoise(prob=config.p_noise, std=config.noise_std),
        ])
        self.seed = seed

    def __call__(self, images: torch.Tensor, epoch: int) -> torch.Tensor:
        """Augmented copy of ``(N, C, H, W[, D])`` images in [0, 1] (the input is not modified)."""
        self.transform.set_random_state(seed=(self.seed * 100_003 + epoch) % 2**32)
        out = torch.stack([torch.as_tensor(self.transform(image)).as_subclass(torch.Tensor).float()
                           for image in images.cpu()])
        return out.clamp_(0, 1)


# --- splits -------------------------------------------------------------------------------------------------


def low_data_split(labels: torch.Tensor, seed: int, config: LowDataSplitConfig,
                   sizes: Sequence[int | str] = ()) -> dict[str, Any]:
    """The fixed validation / test sets and the ordered training pool of one seed.

    Each class's images are put in a random order drawn from ``(seed, class)``:
    the first ``n_test`` are test images, the next ``n_val`` validation images,
    the rest the class's training pool in that order. A training set of ``n`` per
    class is the first ``n`` of each pool (:func:`training_indices`), hence
    stratified, deterministic per seed and nested across sizes.

    Args:
        labels: ``(N,)`` class of every image, ``0..K-1``.
        seed: the repetition.
        config: validation and test sizes.
        sizes: the training sizes to check against the pools.

    Returns:
        ``{"val": [...], "test": [...], "pool": {"<class>": [...]}}``: image indices
        (val and test sorted, the pools in training order).

    Raises:
        ValueError: a class is too small for its test, validation and largest training set.
    """
    y = labels.cpu().numpy()
    largest = max([s for s in sizes if s != ALL], default=1)
    val, test, pool = [], [], {}
    for label in sorted(int(c) for c in np.unique(y)):
        members = np.flatnonzero(y == label)
        order = np.random.default_rng([seed, label]).permutation(members).tolist()
        n_val, n_test = config.counts(len(members))
        if n_test + n_val + largest > len(members):
            raise ValueError(
                f"class {label} has {len(members)} images, too few for {n_test} test + {n_val} validation + "
                f"{largest} training images; lower split.*_per_class or train_sizes"
            )
        test += order[:n_test]
        val += order[n_test:n_test + n_val]
        pool[str(label)] = order[n_test + n_val:]
    return {"val": sorted(val), "test": sorted(test), "pool": pool}


def training_indices(split: dict[str, Any], size: int | str) -> list[int]:
    """Sorted indices of the training set of ``size`` images per class (``all``: every pool image)."""
    return sorted(i for pool in split["pool"].values() for i in (pool if size == ALL else pool[:size]))


# --- run directory ------------------------------------------------------------------------------------------


class LowDataPaths(RunDirectory):
    """Where everything of a low-data run directory lives (see the module docstring)."""

    def split(self, seed: int) -> Path:
        return self.root / "splits" / f"seed_{seed}.pt"

    def generate(self, seed: int, size: int | str) -> Path:
        return self.root / "generate" / f"seed_{seed}" / size_name(size)

    def augmentor(self, seed: int, size: int | str, generator: str = "vae") -> Path:
        """The fitted augmentor of ``generator`` (``vae``: the per-class VAEs; a peer model's name)."""
        return self.generate(seed, size) / ("augmentor" if generator == "vae" else f"augmentor_{generator}")

    def class_model(self, seed: int, size: int | str, label: int, generator: str = "vae") -> Path:
        """Class ``label``'s trained model of ``generator`` (``vae`` or a peer model's name)."""
        return class_model_path(self.generate(seed, size), label, generator)

    def latents(self, seed: int, size: int | str, sampler: str) -> Path:
        return self.generate(seed, size) / f"latents_{sampler}.pt"

    def distances(self, seed: int, size: int | str) -> Path:
        return self.generate(seed, size) / "latent_distances.json"

    def result(self, seed: int, size: int | str, method: str, classifier_seed: int) -> Path:
        return self.root / "results" / f"seed_{seed}" / size_name(size) / method / f"clf_{classifier_seed}.json"


@dataclasses.dataclass(frozen=True)
class LowDataJob:
    """``vae`` (per seed, size, class and per-class generator), ``generate`` (per seed and size) or ``classify``
    (per seed, size, method and classifier seed); ``after``: the keys of the jobs whose outputs it reads."""

    kind: str
    seed: int
    size: int | str
    method: str = ""
    classifier_seed: int = 0
    label: int | None = None
    generator: str = "vae"
    after: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        base = f"{self.kind}/seed_{self.seed}/{size_name(self.size)}"
        if self.kind == "vae":
            return f"{base}/{'' if self.generator == 'vae' else f'{self.generator}/'}class_{self.label}"
        return base if self.kind == "generate" else f"{base}/{self.method}/clf_{self.classifier_seed}"


def plan_lowdata_jobs(config: LowDataConfig, classes: Sequence[int]) -> list[LowDataJob]:
    """Seed by seed and size by size: if a method needs synthetic images, a ``vae`` job per class and per-class
    generator and the generate job after them; then the classifiers.

    Args:
        config: the study.
        classes: the class ids of the data (every training set holds every class).
    """
    jobs = []
    generators = per_class_generators(config.samplers)
    for seed in config.seed_list:
        for size in config.train_sizes:
            models = [LowDataJob("vae", seed, size, label=c, generator=g) for g in generators for c in classes]
            generate = LowDataJob("generate", seed, size, after=tuple(job.key for job in models))
            if config.samplers:
                jobs += [*models, generate]
            jobs += [LowDataJob("classify", seed, size, run, k, after=(generate.key,) if method_sampler(run) else ())
                     for method in config.methods for run in config.method_runs(method)
                     for k in range(config.classifier_seeds)]
    return jobs


def read_distances(path: Path) -> dict[str, Any]:
    """``latent_distances.json``, checksum and layout verified (sampler -> class -> the three distances)."""
    distances = read_checked_json(path)
    fields = {f"{sampler}.{label}.{key}": NUMBER for sampler, per_class in dict(distances).items()
              for label in dict(per_class) for key in ("to_nearest_code", "between_codes", "ratio")}
    check_fields(distances, fields)
    return distances


def _generate_done(paths: LowDataPaths, config: LowDataConfig, job: LowDataJob) -> bool:
    # Damaged files are moved aside here, so the job makes them again.
    return (intact_augmentor(paths.augmentor(job.seed, job.size))
            and load_intact(paths.distances(job.seed, job.size), read_distances) is not None
            and all(load_intact(paths.latents(job.seed, job.size, s)) is not None for s in config.samplers))


def is_done(paths: LowDataPaths, config: LowDataConfig, job: LowDataJob) -> bool:
    if job.kind == "vae":
        return intact_augmentor(paths.class_model(job.seed, job.size, job.label, job.generator), CLASS_MODEL_KIND)
    if job.kind == "generate":
        return _generate_done(paths, config, job)
    return read_result(paths.result(job.seed, job.size, job.method, job.classifier_seed)) is not None


def _seed_data(paths: LowDataPaths, seed: int, size: int | str) -> dict[str, torch.Tensor]:
    """The seed's stored images and labels: ``train_x``, ``train_y`` (``size`` per class), ``val_*``, ``test_*``."""
    state = load_checked_tensors(paths.split(seed))
    split = state["split"]
    position = {index: row for row, index in enumerate(state["indices"])}
    parts = {"train": training_indices(split, size), "val": split["val"], "test": split["test"]}
    data = {}
    for name, indices in parts.items():
        rows = torch.tensor([position[i] for i in indices], dtype=torch.long)
        data[f"{name}_x"], data[f"{name}_y"] = state["images"][rows], state["labels"][rows]
    return data


def _nearest_distance(a: torch.Tensor, b: torch.Tensor, exclude_self: bool = False) -> torch.Tensor:
    """For each row of ``a`` ``(n, d)``, the Euclidean distance to its nearest row of ``b`` ``(m, d)``."""
    distances = torch.cdist(a.double(), b.double())
    if exclude_self:
        distances.fill_diagonal_(math.inf)
    return distances.min(dim=1).values


def latent_distances(codes: torch.Tensor, samples: torch.Tensor) -> dict[str, float]:
    """How far a sampler's latents lie from the training codes, against the codes' own spacing.

    Args:
        codes: ``(n, d)`` posterior means of one class's training images.
        samples: ``(m, d)`` latents drawn for that class.

    Returns:
        ``to_nearest_code``: mean distance from a sample to its nearest code;
        ``between_codes``: mean distance from a code to its nearest other code
        (NaN for a single code); ``ratio``: the first over the second (well below
        1: the sampler mostly replays training codes).
    """
    to_code = float(_nearest_distance(samples, codes).mean())
    between = float(_nearest_distance(codes, codes, exclude_self=True).mean()) if len(codes) > 1 else math.nan
    return {"to_nearest_code": to_code, "between_codes": between, "ratio": to_code / between}


def _vae_seed(job: LowDataJob) -> int:
    """The seed of the (seed, size) models' trainers (offset per class) and of the jobs that fit them."""
    return job_seed(job.seed, f"vae/{size_name(job.size)}")


def run_class_model(paths: LowDataPaths, config: LowDataConfig, job: LowDataJob) -> None:
    """Train and save the (seed, size) model of one class (the ``vae`` job), unless saved."""
    if is_done(paths, config, job):
        return
    label = int(job.label)  # type: ignore[arg-type]
    with job_environment(config, _vae_seed(job)):
        data = _seed_data(paths, job.seed, job.size)
        shape = tuple(data["train_x"].shape[1:])
        augmentor = GeometricAugmentor(augmentor_config(config, _vae_seed(job), shape, job.generator))
        fitted_class_model(paths.class_model(job.seed, job.size, label, job.generator), augmentor,
                           data["train_x"], data["train_y"], label)


def run_generate(paths: LowDataPaths, config: LowDataConfig, job: LowDataJob) -> None:
    """Fit the (seed, size) augmentor on its training set; draw each sampler's latents; measure distances."""
    vae_seed = _vae_seed(job)
    with job_environment(config, vae_seed):
        data = _seed_data(paths, job.seed, job.size)
        augmentors: dict[str, GeometricAugmentor] = {}
        distances: dict[str, dict[str, dict[str, float]]] = {}
        n = config.synthetic_per_class(job.size)
        for source in config.samplers:
            generator, sampler = split_source(source)
            if generator not in augmentors:
                augmentors[generator] = _fitted_augmentor(paths, config, job, data, vae_seed, generator)
            augmentor = augmentors[generator]
            z, labels = augmentor.class_latents(n, sampler, seed=job.seed)
            distances[source] = {}
            for label, samples in zip(augmentor.classes, z.split(n)):
                model = augmentor.models[label].cpu().eval()
                with torch.no_grad():
                    mu = model.encode(data["train_x"][data["train_y"] == label])[0]
                distances[source][str(label)] = latent_distances(mu, samples)
            target = paths.latents(job.seed, job.size, source)
            if load_intact(target) is None:
                save_checked_tensors(target, {"z": z, "labels": labels, "sampler": source, "n_per_class": n})
        write_checked_json(paths.distances(job.seed, job.size), distances)


def _fitted_augmentor(paths: LowDataPaths, config: LowDataConfig, job: LowDataJob, data: dict[str, torch.Tensor],
                      seed: int, generator: str) -> GeometricAugmentor:
    """The (seed, size) augmentor of ``generator`` (``vae`` or a peer model): loaded if saved, else fitted, saved."""
    folder = paths.augmentor(job.seed, job.size, generator)
    saved = load_intact(folder, lambda path: GeometricAugmentor.load(path, device=config.device),
                        (CorruptSaveError,))  # only damage; other errors (a device) propagate
    if saved is not None:
        return saved
    augmentor = GeometricAugmentor(augmentor_config(config, seed, tuple(data["train_x"].shape[1:]), generator))
    augmentor_from_class_models(augmentor, data["train_x"], data["train_y"],
                                lambda c: paths.class_model(job.seed, job.size, c, generator))
    augmentor.save(folder)
    return augmentor


def _training_set(paths: LowDataPaths, config: LowDataConfig, data: dict[str, torch.Tensor],
                  job: LowDataJob) -> tuple[torch.Tensor, torch.Tensor]:
    """The images and labels ``job.method`` trains on (before on-the-fly augmentation)."""
    real_x, real_y = data["train_x"], data["train_y"]
    if job.method in ("real", "torchio", "monai"):
        return real_x, real_y
    if job.method == "resampled":
        index = oversample(real_y, job_seed(job.seed, f"resample/{size_name(job.size)}"))
        return real_x[index], real_y[index]
    sampler = method_sampler(job.method)
    latents = load_intact(paths.latents(job.seed, job.size, sampler))  # type: ignore[arg-type]
    if latents is None:
        raise StudyError(f"{paths.latents(job.seed, job.size, sampler)} is missing or was damaged; "
                         "rerun to draw it again")
    ratio = job.method.partition(RATIO_MARK)[2]
    z, synth_y = latents["z"], latents["labels"]
    if ratio:  # the first ratio x size codes of each class (chains are independent)
        keep = torch.cat([torch.nonzero(synth_y == c).flatten()[:config.synthetic_per_class(job.size, int(ratio))]
                          for c in synth_y.unique()])
        z, synth_y = z[keep], synth_y[keep]
    generator = split_source(sampler)[0]  # type: ignore[arg-type]
    augmentor = GeometricAugmentor.load(paths.augmentor(job.seed, job.size, generator), device=config.device)
    synth_x = augmentor.decode(z, synth_y)
    if is_filtered(job.method):
        confident = _confident(config, data, job, synth_x, synth_y)
        synth_x, synth_y = synth_x[confident], synth_y[confident]
    if job.method.startswith("real+"):
        return torch.cat([real_x, synth_x]), torch.cat([real_y, synth_y])
    return synth_x, synth_y


def _confident(config: LowDataConfig, data: dict[str, torch.Tensor], job: LowDataJob, images: torch.Tensor,
               labels: torch.Tensor) -> torch.Tensor:
    """Mask of the synthetic ``images`` ``(n, C, H, W[, D])`` to which a classifier of the (seed, size)'s real
    training images gives at least ``filter_confidence`` probability of their ``labels``."""
    seed = job_seed(job.seed, f"filter/{size_name(job.size)}")  # the same judge for every filtered method
    classifier = _classifier_config(config, len(data["train_x"]))
    device = resolve_device(config.device)
    judge = train_classifier(data["train_x"], data["train_y"], data["val_x"], data["val_y"], classifier, seed=seed,
                             device=device)
    probabilities = torch.cat(map_batches(lambda x: judge.model(x).softmax(1).cpu(), images,
                                          classifier.eval_batch_size, device))
    return probabilities[torch.arange(len(labels)), labels] >= config.filter_confidence


@contextlib.contextmanager
def _itk_threads(threads: int) -> Iterator[None]:
    """Give TorchIO's SimpleITK resampling the job's thread count for the block.

    ITK otherwise starts one thread per core for every image it resamples; on a
    busy 2-core machine that made a 28 x 28 affine + elastic draw 13 times slower
    (74 ms instead of 5.6 ms).
    """
    import SimpleITK

    before = SimpleITK.ProcessObject.GetGlobalDefaultNumberOfThreads()
    SimpleITK.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    try:
        yield
    finally:
        SimpleITK.ProcessObject.SetGlobalDefaultNumberOfThreads(before)


def _classifier_config(config: LowDataConfig, n_train: int) -> ClassifierConfig:
    if config.classifier_steps is None:
        return config.classifier
    batches = math.ceil(n_train / config.classifier.batch_size)
    return config.classifier.replace(epochs=max(1, math.ceil(config.classifier_steps / batches)))


def run_classify(paths: LowDataPaths, config: LowDataConfig, job: LowDataJob) -> None:
    """Train and test one classifier of (seed, size, method, classifier seed); write its result."""
    start = time.perf_counter()
    seed = job_seed(job.seed, f"{job.method}/{size_name(job.size)}/clf_{job.classifier_seed}")
    with job_environment(config, seed) as device, _itk_threads(config.num_threads):
        data = _seed_data(paths, job.seed, job.size)
        x, y = _training_set(paths, config, data, job)
        augment: Any = None
        if job.method == "torchio":
            augment = TorchIOAugmentation(config.augmentation, x.shape[2:], seed)
        elif job.method == "monai":
            augment = MonaiAugmentation(config.monai_augmentation, x.ndim - 2, seed)
        classifier = _classifier_config(config, len(x))
        trained = train_classifier(x, y, data["val_x"], data["val_y"], classifier, seed=seed, device=device,
                                   augment=augment, progress=False)
        prediction = predict(trained.model, data["test_x"], classifier.eval_batch_size, device)
        classes = sorted(int(c) for c in data["test_y"].unique())
        metrics = classification_metrics(data["test_y"].numpy(), prediction, classes)
    write_json(paths.result(job.seed, job.size, job.method, job.classifier_seed), {
        "seed": job.seed, "size": job.size, "method": job.method, "classifier_seed": job.classifier_seed,
        "job_seed": seed, "test": metrics, "best_epoch": trained.best_epoch, "epochs": classifier.epochs,
        "best_val_balanced_accuracy": trained.best_val_balanced_accuracy, "n_train": len(x),
        "n_val": len(data["val_y"]), "n_test": len(data["test_y"]), "history": trained.history,
        "seconds": round(time.perf_counter() - start, 3),
    })


# --- identity and preparation -------------------------------------------------------------------------------

# Settings that choose which jobs run or how they are shown, never what a job computes.
_NOT_IDENTITY = ("name", "seeds", "methods", "classifier_seeds", "workers", "progress", "backend", "ray")


def lowdata_identity(config: LowDataConfig, device_type: str, data_fingerprint: str) -> dict[str, Any]:
    """The settings every job's result depends on; the data enter through their fingerprint, not their paths."""
    ident = config.to_dict()
    for key in _NOT_IDENTITY:
        ident.pop(key)
    ident["data"] = {"source": config.data.source, "fingerprint": data_fingerprint}
    ident["vae"]["trainer"] = result_settings(ident["vae"]["trainer"])
    ident["sampling"]["hmc"].pop("progress", None)
    ident["device"] = device_type
    return ident


def data_folders(config: SourceConfig) -> list[Path]:
    """The folders the source reads its images from (none for embedded sets and simulated cohorts)."""
    folders = config.oasis.data_folders() if config.source == "oasis" else []
    if config.source == "datadicts" and config.path:
        folders.append(Path(config.path).expanduser().resolve().parent)
    return folders


def prepare_lowdata_run(paths: LowDataPaths, config: LowDataConfig, data: StudyData, device_type: str) -> None:
    """Check every seed's split, then write (or verify) ``study.json`` and each seed's split file.

    Raises:
        RunDirectoryError: the folder holds another study or foreign files, or a stored split differs.
        ValueError: a class is too small for the split and the sizes.
    """
    check_outside_data(paths.root, data_folders(config.data))
    splits = {seed: low_data_split(data.labels, seed, config.split, config.train_sizes) for seed in config.seed_list}
    record = {"config": config.to_dict(), "data_source": data.source, "n_images": len(data.labels),
              "image_shape": list(data.images.shape[1:]), "class_counts": torch.bincount(data.labels).tolist(),
              "versions": {"torch": torch.__version__, "python": platform.python_version()}}
    claim_run_directory(paths, lowdata_identity(config, device_type, data.fingerprint()), record)
    largest = max([s for s in config.train_sizes if s != ALL], default=0)
    for seed, split in splits.items():
        target = paths.split(seed)
        stored = load_intact(target)  # a damaged split is moved aside and stored again
        if stored is not None:
            if stored["split"] != split:
                raise StudyError(f"{target} differs from the split computed now; not resuming")
            continue
        # Stored: the validation and test images and as much of each pool as the largest size uses.
        kept = {k: v if ALL in config.train_sizes else v[:largest] for k, v in split["pool"].items()}
        indices = sorted(set(split["val"]) | set(split["test"]) | {i for v in kept.values() for i in v})
        rows = torch.tensor(indices, dtype=torch.long)
        save_checked_tensors(target, {"split": split, "indices": indices, "images": data.images[rows].contiguous(),
                              "labels": data.labels[rows]})
