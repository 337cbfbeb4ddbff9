"""The generation benchmark's stages: which rows it draws (:class:`SampleSpec`), its run directory, training
the models on Ray, drawing each row's samples, the domain network and the evaluation of one row."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any, Sequence

import torch

from augmentor.utils.batching import map_batches
from augmentor.sampling.hmc import HMCConfig
from augmentor.utils.artifacts import NUMBER, check_fields, load_intact, save_checked_tensors
from augmentor.utils.io import write_json
from augmentor.sampling.metric import MetricConfig
from augmentor.sampling.chain_location import nearest_code_distance_ratio
from augmentor.metrics import (DomainClassifier, FeatureExtractor, InceptionV3Features, density_coverage,
                               domain_accuracy, extract_features, feature_statistics, frechet_distance, memorisation_check,
                               precision_recall, prd_score, train_domain_classifier)
from augmentor.models.vae import VAEConfig
from augmentor.models.peers import PEER_SAMPLERS
from augmentor.sampling.samplers import GaussianMixtureSampler, HMCLatentSampler, LatentSampler, NormalSampler
from augmentor.sampling.samplers import RiemannianSampler
from augmentor.sampling import draw_latents
from augmentor.sampling.kde import KernelDensitySampler
from augmentor.sampling.published_chain import PublishedChainSampler
from augmentor.models.training import TrainerConfig

from ..common.image_model import ImageData, ModelPaths, load_image_data, train_stage
from ..common.jobs import job_environment, read_result
from ..common.local_pool import execute_local, resolve_workers
from ..common.ray_backend import RayTask
from ..common.methods import generator_label
from ..common.run_directory import StudyError
from .config import (BenchmarkConfig, BenchmarkMetricsConfig, BenchmarkSamplingConfig, PeerModelSpec, VARIANT_KEYS,
                     hmc_part, metric_part)

__all__ = [
    "GenerationPaths",
    "SampleSpec",
    "domain_note",
    "domain_stage",
    "domain_test_accuracy",
    "evaluate_stage",
    "inception_extractor",
    "load_domain_classifier",
    "peer_specs",
    "predict_classes",
    "read_benchmark_result",
    "reference_features",
    "sample_specs",
    "sample_stage",
    "train_models_in_workers",
    "train_models_on_ray",
    "trainer_settings",
]

logger = logging.getLogger(__name__)


# What a finished evaluation holds; a file without them is not a finished result.
_NUMBER_OR_NULL = (*NUMBER, type(None))  # NaN is written as NaN, an undefined metric as null
_RESULT_FIELDS = {"key": str, "sampler": str, "n_fake": int, "n_real": int, "fid": _NUMBER_OR_NULL,
                  "fd_domain": _NUMBER_OR_NULL, "feature_space": str, "prd.f_8": _NUMBER_OR_NULL,
                  "prd.f_1_8": _NUMBER_OR_NULL, "precision": _NUMBER_OR_NULL, "recall": _NUMBER_OR_NULL,
                  "density": _NUMBER_OR_NULL, "coverage": _NUMBER_OR_NULL,
                  "memorisation.median_ratio": _NUMBER_OR_NULL,
                  "memorisation.share_below_heldout_q01": _NUMBER_OR_NULL, "class_counts": list}


@dataclasses.dataclass(frozen=True)
class SampleSpec:
    """One row of the table: a sampler and, for ours, the chains' settings."""

    key: str
    sampler: str
    hmc: HMCConfig | None = None
    model: str = "vae"
    metric: MetricConfig | None = None
    chain_start: str | None = None
    bandwidth: float | None = None

    @property
    def label(self) -> str:
        if self.model != "vae":
            return generator_label(self.model, self.sampler)
        base = generator_label("vae", self.sampler)
        return base if self.key == self.sampler else f"{base} [{self.key.split('[', 1)[1]}"


def sample_specs(config: BenchmarkSamplingConfig) -> list[SampleSpec]:
    """The table's rows: the samplers in order, then the Riemannian variants, then the kde bandwidths."""
    bandwidths = config.kde_bandwidths or (KernelDensitySampler().bandwidth,)
    specs = [SampleSpec(name, name, config.hmc if name == "riemannian" else None,
                        bandwidth=bandwidths[0] if name == "kde" else None) for name in config.samplers]
    for variant in config.riemannian_variants:
        settings = ",".join(f"{k}={variant[k]}" for k in VARIANT_KEYS if k in variant)
        specs.append(SampleSpec(f"riemannian[{settings}]", "riemannian", config.hmc.replace(**hmc_part(variant)),
                                metric=config.metric.replace(**metric_part(variant)),
                                chain_start=variant.get("chain_start")))
    taken = {spec.bandwidth for spec in specs if spec.sampler == "kde"}
    specs += [SampleSpec(f"kde[bandwidth={h}]", "kde", bandwidth=h) for h in config.kde_bandwidths if h not in taken]
    return specs


def peer_specs(models: Sequence[PeerModelSpec], config: BenchmarkSamplingConfig) -> list[SampleSpec]:
    """The peer models' rows, keyed ``<model>-<sampler>``; HMC samplers take ``config.hmc``."""
    hmc_samplers = ("riemannian", "rhvae")
    return [SampleSpec(f"{model.name}-{sampler}", sampler, config.hmc if sampler in hmc_samplers else None,
                       model.name)
            for model in models for sampler in model.rows()]


class GenerationPaths(ModelPaths):
    """Where everything of a benchmark run directory lives (see the module docstring)."""

    def __init__(self, root: str | Path) -> None:
        super().__init__(root)
        self.domain_classifier = self.root / "domain_classifier.pt"

    def features(self, space: str) -> Path:
        return self.root / "features" / f"test_{space}.pt"

    def samples(self, key: str) -> Path:
        return self.root / "samples" / f"{key}.pt"

    def result(self, key: str) -> Path:
        return self.root / "results" / f"{key}.json"


def _check_result(result: Any) -> None:
    check_fields(result, _RESULT_FIELDS)
    if not result["class_counts"] or not all(isinstance(c, int) for c in result["class_counts"]):
        raise ValueError("class_counts must be a non-empty list of integers")


def read_benchmark_result(path: Path) -> dict[str, Any] | None:
    """A finished evaluation, or ``None`` (a damaged file is moved aside, see :func:`pipelines.common.jobs.read_result`)."""
    return read_result(path, _check_result)


def trainer_settings(config: BenchmarkConfig) -> TrainerConfig:
    return config.vae.trainer.replace(device=config.device, progress=config.progress)


def _train_model_task(root: str, config_data: dict[str, Any], model_cfg: VAEConfig) -> None:
    """A Ray task: train (or find trained) one model of the benchmark, with the run's threads and seeds."""
    config = BenchmarkConfig.from_dict({**config_data, "progress": False})
    with job_environment(config, config.vae.trainer.seed) as device:
        train_stage(GenerationPaths(root), trainer_settings(config), load_image_data(config.data), model_cfg, device,
                    config.metrics.batch_size)


def _model_tasks(paths: GenerationPaths, config: BenchmarkConfig,
                 models: Sequence[tuple[str, VAEConfig]]) -> list[RayTask]:
    """A task per model not saved yet (:func:`_train_model_task`)."""
    root, data = str(paths.root.resolve()), config.to_dict()
    return [RayTask(f"model {name}", _train_model_task, (root, data, model_cfg)) for name, model_cfg in models
            if not (paths.model_file(name).is_file() and paths.codes_file(name).is_file())]


def train_models_in_workers(paths: GenerationPaths, config: BenchmarkConfig, models: Sequence[tuple[str, VAEConfig]],
                            device_type: str) -> dict[str, str]:
    """Train the models not saved yet ``config.workers`` at a time in worker processes
    (:func:`pipelines.common.local_pool.execute_local`); with one worker, nothing here (the run trains them in turn).

    Returns:
        ``{name: error}`` of every model whose training failed.
    """
    tasks = _model_tasks(paths, config, models)
    workers = resolve_workers(config.workers, config.num_threads, device_type, len(tasks))
    if workers == 1:
        return {}
    failures = execute_local(tasks, workers, config.progress)
    return {key.removeprefix("model "): message for key, message in failures}


def train_models_on_ray(paths: GenerationPaths, config: BenchmarkConfig,
                        models: Sequence[tuple[str, VAEConfig]]) -> dict[str, str]:
    """Train the models not saved yet as Ray tasks at once (see ``BenchmarkConfig.backend``).

    Returns:
        ``{name: error}`` of every model whose training failed.
    """
    from ..common.ray_backend import execute_ray

    tasks = _model_tasks(paths, config, models)
    if not tasks:
        return {}
    outcome = execute_ray(tasks, config.ray, config.num_threads, config.progress)
    for key, resources in outcome.resources.items():
        logger.info("%s trained on Ray with %s", key, resources)
    return {key.removeprefix("model "): message for key, message in outcome.failures}


def _fit_sampler(spec: SampleSpec, config: BenchmarkSamplingConfig, mu: torch.Tensor,
                 log_var: torch.Tensor) -> LatentSampler:
    if spec.sampler == "prior":
        return NormalSampler().fit(mu, log_var)
    if spec.sampler == "gmm":
        return GaussianMixtureSampler(config.gmm_components, seed=config.seed).fit(mu, log_var)
    if spec.sampler == "kde":
        return KernelDensitySampler(spec.bandwidth).fit(mu, log_var)
    if spec.sampler == "published":
        return PublishedChainSampler().fit(mu, log_var)
    return RiemannianSampler(spec.metric or config.metric, spec.hmc).fit(mu, log_var)


def sample_stage(paths: GenerationPaths, config: BenchmarkConfig, spec: SampleSpec,
                 device: torch.device, model: torch.nn.Module | None = None,
                 train_images: torch.Tensor | None = None) -> dict[str, Any]:
    """Fit ``spec``'s sampler on its model's training codes and draw ``n_samples`` latents (or read them).

    A peer model's own sampler (``vamp``, ``rhvae``) is fitted by ``model`` on ``train_images``.
    """
    target = paths.samples(spec.key)
    saved = load_intact(target)
    if saved is not None:
        return saved
    codes = load_intact(paths.codes_file(spec.model))
    if codes is None:
        raise StudyError(f"{paths.codes_file(spec.model)} is missing or damaged; rerun to encode the training "
                         "images again")
    mu, log_var = codes["mu"], codes["log_var"]
    sampling = config.sampling
    if spec.sampler in PEER_SAMPLERS:
        sampler = model.fit_sampler(train_images, config.metrics.batch_size, device, spec.hmc or sampling.hmc)
        model.cpu()
    else:
        sampler = _fit_sampler(spec, sampling, mu, log_var)
    n, diagnostics = sampling.n_samples, None
    if isinstance(sampler, HMCLatentSampler):
        init = None
        if isinstance(sampler, RiemannianSampler) and (spec.chain_start or sampling.chain_start) == "codes":
            start = torch.randint(len(mu), (n,), generator=torch.Generator().manual_seed(sampling.seed))
            init = mu[start]
        z = draw_latents(sampler, n, sampling.seed, hmc=spec.hmc.replace(progress=config.progress), device=device,
                         init=init)
        diagnostics = sampler.diagnostics.to_dict()
        if isinstance(sampler, RiemannianSampler):
            logger.info("%s: HMC acceptance %.3f, split R-hat %.3f, ESS %.0f", spec.key,
                        diagnostics["acceptance_rate"], diagnostics["split_rhat"], diagnostics["ess"])
    else:
        z = draw_latents(sampler, n, sampling.seed)
        if isinstance(sampler, PublishedChainSampler):
            diagnostics = sampler.diagnostics.to_dict()
    # Every row says how far its latents lie from the training codes (replay: 0).
    diagnostics = diagnostics or {}
    diagnostics["location"] = {**(diagnostics.get("location") or {}),
                               "distance_ratio": nearest_code_distance_ratio(z, mu)}
    record = {"z": z, "key": spec.key, "sampler": spec.sampler, "state": sampler.state_dict(),
              "hmc": None if spec.hmc is None else spec.hmc.to_dict(), "diagnostics": diagnostics}
    save_checked_tensors(target, record)
    return record


def load_domain_classifier(path: Path) -> DomainClassifier | None:
    """The domain CNN saved at ``path`` by :func:`domain_stage`, in eval mode (None: absent or damaged)."""
    saved = load_intact(path)
    if saved is None:
        return None
    state = saved["state"]
    # Files saved before the grid was a setting hold the global-average-pooling CNN.
    classifier = DomainClassifier(state["body.0.weight"].shape[1], int(saved["n_classes"]),
                                  grid=int(saved.get("grid", 1)))
    classifier.load_state_dict(state)
    return classifier.eval()


# Below this share of correctly classified test images, the domain CNN's features say little
# about whether a generated image looks like a digit of its class.
DOMAIN_ACCURACY_WARNING = 0.9


def domain_test_accuracy(classifier: DomainClassifier, data: ImageData) -> float | None:
    """Share of the test images the domain CNN assigns to their class (None: the data set has no test labels)."""
    if data.test_labels is None:
        return None
    classes = data.train_labels.unique()  # the CNN numbers the training classes 0 .. K-1 in this order
    index = torch.searchsorted(classes, data.test_labels).clamp(max=len(classes) - 1)
    labels = torch.where(classes[index] == data.test_labels, index, -1)  # a class it never saw: wrong
    return domain_accuracy(classifier, data.test, labels)


def domain_stage(paths: GenerationPaths, config: BenchmarkConfig, data: ImageData,
                 device: torch.device) -> DomainClassifier:
    """Train the FD_domain classifier on the training images (or load it); report its test accuracy in
    ``report/domain_classifier.json``."""
    metrics = config.metrics
    saved = load_domain_classifier(paths.domain_classifier)
    if saved is not None and saved.grid == metrics.domain_grid:
        classifier = saved.to(device)
    else:
        classifier = train_domain_classifier(data.train, data.train_labels, seed=metrics.domain_seed,
                                             epochs=metrics.domain_epochs, batch_size=128, grid=metrics.domain_grid,
                                             device=str(device), progress=config.progress)
        save_checked_tensors(paths.domain_classifier, {
            "n_classes": int(data.train_labels.unique().numel()), "grid": metrics.domain_grid,
            "state": {k: v.cpu() for k, v in classifier.state_dict().items()}})
    accuracy = domain_test_accuracy(classifier, data)
    write_json(paths.report / "domain_classifier.json",
               {"epochs": metrics.domain_epochs, "grid": metrics.domain_grid, "seed": metrics.domain_seed,
                "n_test": len(data.test), "test_accuracy": accuracy})
    if accuracy is not None:
        logger.info("domain CNN: %.1f %% of the %d test images classified correctly", 100 * accuracy, len(data.test))
        if accuracy < DOMAIN_ACCURACY_WARNING:
            logger.warning("the domain CNN classifies only %.1f %% of the test images: FD_domain, precision / "
                           "recall in its features and the class counts measure little; raise "
                           "metrics.domain_epochs or metrics.domain_grid", 100 * accuracy)
    return classifier


def domain_note(paths: GenerationPaths) -> str:
    """One line on the domain CNN behind FD_domain, from ``report/domain_classifier.json`` ('' if absent)."""
    try:
        info = json.loads((paths.report / "domain_classifier.json").read_text())
    except (OSError, ValueError):
        return ""
    accuracy = info.get("test_accuracy")
    measured = ("" if accuracy is None else
                f", which classifies {100 * accuracy:.1f} % of the {info['n_test']} test images correctly")
    return (f"FD_domain (and the class counts) in the features of the domain CNN ({info['epochs']} epochs, "
            f"grid {info['grid']}){measured}.")


def inception_extractor(config: BenchmarkMetricsConfig, device: torch.device) -> tuple[Any, str]:
    """The FID network, or ``None`` with the reason FID is skipped."""
    if not config.fid:
        return None, "FID disabled in the configuration (metrics.fid: false)"
    try:
        return InceptionV3Features(device=device, resize=config.inception_resize), ""
    except FileNotFoundError as err:
        return None, f"FID skipped: {err}"


def reference_features(paths: GenerationPaths, space: str, extractor: FeatureExtractor,
                        images: torch.Tensor, config: BenchmarkConfig) -> torch.Tensor:
    """Features ``(N, D)`` of the test images in ``space``, computed once per run directory."""
    target = paths.features(space)
    saved = load_intact(target)
    if saved is not None:
        return saved["features"]
    features = extract_features(images, extractor, config.metrics.batch_size, config.progress)
    save_checked_tensors(target, {"features": features, "extractor": extractor.cache_key})
    return features


def _balanced(real: torch.Tensor, fake: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Equal-size random subsets of two feature sets (PRD compares sets of equal size)."""
    n = min(len(real), len(fake))
    generator = torch.Generator().manual_seed(seed)
    pick = lambda x: x if len(x) == n else x[torch.randperm(len(x), generator=generator)[:n]]  # noqa: E731
    return pick(real), pick(fake)


def evaluate_stage(paths: GenerationPaths, config: BenchmarkConfig, spec: SampleSpec, images: torch.Tensor,
                   data: ImageData, spaces: dict[str, tuple[FeatureExtractor, torch.Tensor]],
                   feature_space: str, classifier: DomainClassifier, fid_note: str,
                   diagnostics: dict[str, Any] | None) -> dict[str, Any]:
    """Every metric of ``images`` ``(M, C, H, W)`` (the samples of ``spec``) against the test images."""
    metrics = config.metrics
    fake_features = {space: extract_features(images, extractor, metrics.batch_size, config.progress)
                     for space, (extractor, _) in spaces.items()}

    def frechet(space: str) -> float:
        real = spaces[space][1]
        return frechet_distance(feature_statistics(real), feature_statistics(fake_features[space]))

    real, fake = spaces[feature_space][1], fake_features[feature_space]
    prd = prd_score(*_balanced(real, fake, config.sampling.seed), num_clusters=metrics.prd_clusters,
                    num_runs=metrics.prd_runs, seed=config.sampling.seed)
    precision, recall = precision_recall(real, fake, metrics.precision_recall_k)
    density, coverage = density_coverage(real, fake, metrics.density_coverage_k)
    m = metrics.memorisation_samples
    memorisation = memorisation_check(images[:m], data.train, data.test[:m]).summary
    counts = torch.bincount(predict_classes(classifier, images, metrics.batch_size),
                            minlength=int(data.train_labels.unique().numel()))
    result = {
        "key": spec.key,
        "sampler": spec.sampler,
        "hmc": None if spec.hmc is None else spec.hmc.to_dict(),
        "n_fake": len(images),
        "n_real": len(data.test),
        "fid": frechet("inception") if "inception" in spaces else None,
        "fid_note": fid_note,
        "fd_domain": frechet("domain"),
        "feature_space": feature_space,
        "prd": {"f_8": prd.f_8, "f_1_8": prd.f_1_8, "n": prd.n_real},
        "precision": precision,
        "recall": recall,
        "density": density,
        "coverage": coverage,
        "memorisation": memorisation,
        "class_counts": counts.tolist(),
        "diagnostics": diagnostics,
    }
    write_json(paths.result(spec.key), result)
    return result


def predict_classes(classifier: DomainClassifier, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Classes ``(N,)`` the domain CNN assigns to images ``(N, C, H, W)``."""
    device = next(classifier.parameters()).device
    return torch.cat(map_batches(lambda x: classifier(x).argmax(1).cpu(), images, batch_size, device))
