"""Running one job of a study: its threads, determinism and seed, its fitted augmentor, its result file.

Every study's job runs inside :func:`job_environment` with a seed from :func:`job_seed`, so a
result depends only on the job (never on which other jobs ran, or on the backend). Result files
are read back with :func:`read_result`, which moves a damaged file aside so the job runs again.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import zlib
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from augmentor.augmentor import SAVE_KIND, AugmentorConfig, ClassModel, GeometricAugmentor
from augmentor.utils.artifacts import load_intact, move_aside
from augmentor.utils.devices import resolve_device
from augmentor.utils.io import CorruptSaveError, read_saved_folder
from augmentor.utils.seeding import seed_everything

from .methods import split_source
from .settings import AugmentorSettings, RunSettings

__all__ = [
    "SEED_STRIDE", "augmentor_config", "augmentor_from_class_models", "class_model_path", "fitted_class_model",
    "intact_augmentor", "job_environment", "job_seed", "per_class_generators", "read_result",
]

SEED_STRIDE = 7919  # offsets the VAE trainer's seed between repetitions
# What the report reads from a result file; a file without them is not a finished result.
_RESULT_KEYS = ("test", "best_epoch", "n_train")
_TEST_KEYS = ("balanced_accuracy", "accuracy", "per_class")


def intact_augmentor(folder: Path, kind: str = SAVE_KIND) -> bool:
    """Whether a saved augmentor folder (or another saved ``kind``, e.g. a class model) is there and matches its
    manifest (a damaged one is moved aside)."""
    return load_intact(folder, lambda path: read_saved_folder(path, kind), (CorruptSaveError,)) is not None


def class_model_path(generate: Path, label: int, generator: str = "vae") -> Path:
    """Where a generate folder keeps class ``label``'s trained model of ``generator`` (``vae`` or a peer)."""
    return generate / ("class_models" if generator == "vae" else f"class_models_{generator}") / f"class_{label}"


def per_class_generators(sources: Any) -> list[str]:
    """The generators of latent ``sources`` that train one model per class (all but the shared VAE), in order."""
    return [generator for generator in dict.fromkeys(split_source(s)[0] for s in sources) if generator != "shared"]


def fitted_class_model(
    folder: Path, augmentor: GeometricAugmentor, images: torch.Tensor, labels: torch.Tensor, label: int,
    log_dir: Path | None = None, checkpoint_dir: Path | None = None,
) -> ClassModel:
    """Class ``label``'s model saved in ``folder``, or trained by ``augmentor`` on ``images`` ``(N, C, H, W[, D])``
    of every class and ``labels`` ``(N,)`` (:meth:`~augmentor.GeometricAugmentor.fit_class_model`) and saved there.

    A damaged folder is moved aside and the model trained again; its checkpoints
    (``checkpoint_dir/class_<label>``) are removed once the model is saved.
    """
    saved = load_intact(folder, ClassModel.load, (CorruptSaveError,))  # only damage; other errors propagate
    if saved is not None:
        return saved
    model = augmentor.fit_class_model(images, labels, label, log_dir=log_dir, checkpoint_dir=checkpoint_dir)
    model.save(folder)
    if checkpoint_dir is not None:
        shutil.rmtree(Path(checkpoint_dir) / f"class_{label}", ignore_errors=True)  # the saved model supersedes them
    return model


def augmentor_from_class_models(
    augmentor: GeometricAugmentor, images: torch.Tensor, labels: torch.Tensor, class_folder: Callable[[int], Path],
    log_dir: Path | None = None, checkpoint_dir: Path | None = None,
) -> GeometricAugmentor:
    """``augmentor`` fitted on ``images`` ``(N, C, H, W[, D])`` and ``labels`` ``(N,)`` from every class's model
    saved in ``class_folder(label)`` (:func:`fitted_class_model`: trained and saved there when missing)."""
    classes = sorted(int(c) for c in labels.unique())
    models = [fitted_class_model(class_folder(label), augmentor, images, labels, label, log_dir, checkpoint_dir)
              for label in classes]
    return augmentor.fit_from_class_models(images, labels, models)


def _check_result(result: Any) -> None:
    """Raise ``ValueError`` naming what a parsed result file lacks."""
    if not isinstance(result, dict) or not isinstance(result.get("test"), dict):
        raise ValueError("not a result object with a 'test' section")
    missing = [k for k in _RESULT_KEYS if k not in result] + [f"test.{k}" for k in _TEST_KEYS if k not in result["test"]]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")


def read_result(path: Path, check: Callable[[Any], None] | None = None) -> dict[str, Any] | None:
    """The result of a finished job, or ``None`` when it has not finished.

    A file that is no complete result (truncated, emptied by a full disk, edited) is
    moved aside to ``<name>.corrupt``, never deleted, with a warning naming both
    files; ``None`` is returned, so the job counts as unfinished and runs again.

    Args:
        path: the result's JSON file.
        check: raises ``ValueError`` naming what a parsed result lacks; default: the
            classifier result's check.
    """
    if not path.is_file():
        return None
    try:
        result = json.loads(path.read_bytes())
        (check or _check_result)(result)
    except ValueError as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        move_aside(path, f"not a complete result ({err})")
        return None
    return result


def job_seed(seed: int, method: str) -> int:
    """A stable seed per (repetition, method), independent of which other methods run.

    Args:
        seed: the repetition's seed.
        method: the string the seed is derived from (CRC-32): a method's seed key (the OASIS study's
            :data:`~pipelines.oasis_study.config.SEED_KEYS`) or a job's own key (``"fidelity"``,
            ``"vae/n_10"``, ...). Changing it changes every number of the job.
    """
    return (seed * 1_000_003 + zlib.crc32(method.encode())) % 2**31


@contextlib.contextmanager
def job_environment(config: RunSettings, seed: int) -> Iterator[torch.device]:
    """Threads, determinism and seeds of one job; the previous settings are restored after.

    The thread count is fixed per job (``num_threads``) in both backends, because
    floating-point reductions, hence results, depend on it.
    """
    from threadpoolctl import threadpool_limits

    device = resolve_device(config.device)
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.set_num_threads(config.num_threads)
    if config.deterministic:
        # CUDA kernels without a deterministic version only warn (CPU ones all have one).
        torch.use_deterministic_algorithms(True, warn_only=device.type != "cpu")
    seed_everything(seed)
    try:
        with threadpool_limits(limits=config.num_threads):
            yield device
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)


def augmentor_config(
    config: AugmentorSettings, seed: int, in_shape: tuple[int, ...], generator: str = "vae"
) -> AugmentorConfig:
    """The seed's augmentor of ``generator``: the per-class VAEs (``vae``), the shared VAE (``shared``)
    or per-class peer models (a name of :data:`augmentor.peers.MODELS`, with their default options)."""
    trainer = config.vae.trainer.replace(
        seed=(config.vae.trainer.seed + SEED_STRIDE * seed) % 2**32, progress=config.progress
    )
    return AugmentorConfig(
        vae=config.vae.build(in_shape),
        trainer=trainer,
        metric=config.sampling.metric,
        hmc=config.sampling.hmc,
        gmm_components=config.sampling.gmm_components,
        device=config.device,
        shared_vae=generator == "shared",
        model="vae" if generator == "shared" else generator,
        encode_batch_size=config.vae.encode_batch_size,
    )
