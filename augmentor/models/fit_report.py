"""Did the VAEs fit, and equally well for every class? Diagnostics of a fitted augmentor.

A synthetic set can only help a classifier if each class's generative model fits
that class about as well as the others do. When one class's decoder is worse
(higher reconstruction error, blurrier images) a classifier trained on the
synthetic images learns which decoder made an image instead of the anatomy. This
module measures, per class:

* **reconstruction error**: squared error summed over the pixels of one image (the
  unit of the training loss's ``recon`` term), of the posterior-mean
  reconstructions, on the training images and on held-out images; on held-out
  images also relative to the error of predicting the class-mean training image
  (1: the model does no better than a blob of the class's average; a fitted one
  is far below) and the mean SSIM of the reconstructions;
* **KL per latent dimension** and the number of **active units** (Burda et al.,
  2016: dimension ``m`` is active when ``Var_x(E[z_m | x]) > 0.01``); few active
  units means the posterior collapsed onto the prior and the codes say little
  about the images;
* the **class-mean baseline**: the error of reconstructing every image by the
  mean image of its class's training images; a VAE whose error is not well below
  it reproduces the class average (a blob), not the individual images;
* the share of posterior log-variances that sit on the bound of
  ``VAEConfig.log_var_bound`` (a bound that binds pins the metric built from them);
* **sharpness**, the mean absolute Laplacian, of the real, reconstructed and
  synthetic images;

and warns (``logging.warning`` and in the report) when the posterior collapses,
the log-variance sits on its bound, or the classes' decoders differ in quality
enough to be a shortcut. :func:`synthetic_fidelity` checks that a synthetic set
carries its class: the accuracy of a classifier trained on real images, tested on
the synthetic ones. :func:`save_fit_grid` draws real / reconstructed / synthetic
images per class.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from augmentor.utils.plots import save_sample_grid
from augmentor.models.vae import reconstruction_error

__all__ = [
    "ClassFit",
    "FitReport",
    "FitThresholds",
    "active_units",
    "class_mean_error",
    "fit_report",
    "kl_per_dimension",
    "log_var_at_bound",
    "save_fit_grid",
    "ssim",
    "sharpness",
    "synthetic_fidelity",
]

logger = logging.getLogger(__name__)

ACTIVE_UNIT_THRESHOLD = 0.01
"""Burda et al.'s threshold on ``Var_x(E[z_m | x])`` for an active latent dimension."""


@dataclasses.dataclass(frozen=True)
class FitThresholds:
    """When :func:`fit_report` warns.

    Attributes:
        min_active_fraction: the posterior counts as collapsed when fewer than
            ``max(1, round(min_active_fraction * latent_dim))`` units are active.
        max_at_bound: the log-variance counts as stuck on its bound when more
            than this share of its values lies within ``bound_tolerance`` of it.
        bound_tolerance: relative distance to the bound counted as on it.
        max_recon_ratio: warn when the largest class's reconstruction error
            exceeds the smallest one's by this factor.
        max_sharpness_ratio: warn when the classes' ratios of generated to real
            sharpness (reconstructed or synthetic images) differ by this factor:
            one decoder blurs more than the other, a difference a classifier of
            synthetic images can learn instead of the anatomy.
        max_recon_to_class_mean: warn when a class's reconstruction error exceeds
            this share of its class-mean baseline: the VAE then explains less than
            half (at 0.5) of the images' variation around their class mean.
    """

    min_active_fraction: float = 0.25
    max_at_bound: float = 0.5
    bound_tolerance: float = 0.02
    max_recon_ratio: float = 1.5
    max_sharpness_ratio: float = 1.2
    max_recon_to_class_mean: float = 0.5


def kl_per_dimension(mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """``(d,)`` mean over images of ``KL(N(mu_m, exp(log_var_m)) || N(0, 1))`` per latent dimension.

    Args:
        mu, log_var: posterior parameters ``(n, d)``.
    """
    return (-0.5 * (1 + log_var - mu**2 - log_var.exp())).mean(0)


def active_units(mu: torch.Tensor, threshold: float = ACTIVE_UNIT_THRESHOLD) -> int:
    """Latent dimensions whose posterior mean varies over the images: ``Var_x(mu_m) > threshold``.

    Args:
        mu: posterior means ``(n, d)``, ``n >= 2``.
        threshold: Burda et al.'s 0.01 by default.
    """
    if mu.ndim != 2 or len(mu) < 2:
        raise ValueError(f"active_units needs posterior means of shape (n >= 2, d), got {tuple(mu.shape)}")
    return int((mu.var(0, correction=0) > threshold).sum())


def log_var_at_bound(log_var: torch.Tensor, bound: float | None, tolerance: float = 0.02) -> float | None:
    """Share of log-variances within ``tolerance * bound`` of ``-bound`` or ``+bound`` (None without a bound)."""
    if bound is None:
        return None
    return float((log_var.abs() >= (1 - tolerance) * bound).float().mean())


def _laplacian(images: torch.Tensor) -> torch.Tensor:
    """The discrete Laplacian (4 or 6 neighbours) of ``(n, C, H, W[, D])`` images, inside the border."""
    dims = images.ndim - 2
    if dims not in (2, 3):
        raise ValueError(f"images must have shape (n, C, H, W) or (n, C, H, W, D), got {tuple(images.shape)}")
    kernel = torch.zeros((3,) * dims)
    centre = (1,) * dims
    kernel[centre] = -2.0 * dims
    for axis in range(dims):
        for side in (0, 2):
            index = list(centre)
            index[axis] = side
            kernel[tuple(index)] = 1.0
    flat = images.reshape(-1, 1, *images.shape[2:]).float()
    conv = F.conv2d if dims == 2 else F.conv3d
    return conv(flat, kernel[None, None]).reshape(len(images), -1)


def sharpness(images: torch.Tensor) -> torch.Tensor:
    """``(n,)`` mean absolute Laplacian of each image (higher: sharper edges, more texture).

    Args:
        images: ``(n, C, H, W[, D])``, every spatial size at least 3.
    """
    return _laplacian(images).abs().mean(1)


def class_mean_error(reference: torch.Tensor, images: torch.Tensor | None = None) -> torch.Tensor:
    """``(n,)`` error (summed squared, as :func:`~augmentor.models.vae.reconstruction_error`) of the mean
    image of ``reference`` taken as the reconstruction of each of ``images`` (default: ``reference`` itself).

    Args:
        reference: ``(m, C, H, W[, D])`` images whose mean is the baseline's one reconstruction.
        images: ``(n, C, H, W[, D])`` images to score; None scores ``reference``.
    """
    images = reference if images is None else images
    return reconstruction_error(reference.mean(0, keepdim=True).expand_as(images), images)


def ssim(images: torch.Tensor, recon: torch.Tensor) -> torch.Tensor | None:
    """``(n,)`` structural similarity (MONAI's Gaussian-window SSIM, data range 1) of each image pair.

    The window is 11 pixels, or the largest odd size that fits the smallest side;
    None when no window of at least 3 fits.

    Args:
        images, recon: ``(n, C, H, W[, D])`` in [0, 1].
    """
    from monai.metrics import SSIMMetric

    if images.shape != recon.shape:
        raise ValueError(f"images {tuple(images.shape)} and reconstructions {tuple(recon.shape)} differ in shape")
    smallest = min(images.shape[2:])
    window = min(11, smallest if smallest % 2 else smallest - 1)
    if window < 3:
        return None
    metric = SSIMMetric(spatial_dims=images.ndim - 2, data_range=1.0, win_size=window)
    return metric(recon.float(), images.float()).reshape(-1)


@dataclasses.dataclass
class ClassFit:
    """The diagnostics of one class's generative model (see the module docstring).

    Attributes:
        label: the class.
        n_images: training images encoded (the codes the samplers were fitted on).
        n_heldout: held-out images the reconstruction error was also measured on.
        recon_train, recon_heldout: mean reconstruction error per image (summed
            squared error); ``recon_heldout`` is None without held-out images.
        kl: mean KL per image, summed over latent dimensions; ``kl_per_dim`` per dimension.
        active_units: dimensions with ``Var_x(mu_m) > 0.01``, of ``latent_dim``.
        log_var_mean: mean posterior log-variance.
        log_var_at_bound: share of log-variances on the bound (None: no bound).
        sharpness_real, sharpness_recon: mean absolute Laplacian of the training
            images and of their reconstructions.
        sharpness_synthetic: the same per synthetic set (sampler name -> value).
        steps: optimiser steps of the VAE's training; best_step: where its kept
            weights were taken (None when the history does not record steps).
        recon_class_mean: mean error of the class-mean baseline (the mean training
            image as every image's reconstruction) on the images :attr:`recon` is
            measured on (None in reports written before it was measured).
        heldout_recon_ratio: ``recon_heldout`` over the class-mean baseline on the
            held-out images (1.0 for a model that predicts the mean); ssim_heldout:
            mean SSIM of the held-out reconstructions (both None without held-out images).
    """

    label: int
    n_images: int
    n_heldout: int
    recon_train: float
    recon_heldout: float | None
    kl: float
    kl_per_dim: list[float]
    active_units: int
    latent_dim: int
    log_var_mean: float
    log_var_at_bound: float | None
    sharpness_real: float
    sharpness_recon: float
    sharpness_synthetic: dict[str, float]
    steps: int | None
    best_step: int | None
    recon_class_mean: float | None = None
    heldout_recon_ratio: float | None = None
    ssim_heldout: float | None = None

    @property
    def recon(self) -> float:
        """The held-out reconstruction error where there is one, else the training one."""
        return self.recon_train if self.recon_heldout is None else self.recon_heldout


@dataclasses.dataclass
class FitReport:
    """Per-class :class:`ClassFit` and the warnings they raise."""

    classes: dict[int, ClassFit]
    warnings: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "classes": {str(label): dataclasses.asdict(fit) for label, fit in self.classes.items()},
            "warnings": list(self.warnings),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "FitReport":
        classes = {int(label): ClassFit(**fit) for label, fit in data["classes"].items()}
        return cls(classes, list(data["warnings"]))


def _steps(history: Sequence[Mapping[str, float]]) -> tuple[int | None, int | None]:
    """Steps run and the step of the best validation loss, from a training history."""
    if not history or "step" not in history[-1]:
        return None, None
    best = min(history, key=lambda record: record["val_loss"])
    return int(history[-1]["step"]), int(best["step"])


def _class_fit(
    augmentor: Any,
    label: int,
    images: torch.Tensor,
    heldout: torch.Tensor | None,
    synthetic: Mapping[str, torch.Tensor],
    tolerance: float,
) -> ClassFit:
    recon_heldout = ratio = similarity = None
    baseline = float(class_mean_error(images).mean())
    if heldout is not None and len(heldout):
        mu_heldout = augmentor.encode(heldout, label)[0]
        recon = augmentor.decode(mu_heldout, torch.full((len(heldout),), label))
        recon_heldout = float(reconstruction_error(recon, heldout).mean())
        baseline = float(class_mean_error(images, heldout).mean())
        ratio = recon_heldout / baseline if baseline > 0 else None
        values = ssim(heldout, recon.to(heldout.dtype))
        similarity = None if values is None else float(values.mean())
    mu, log_var = augmentor.encode(images, label)
    recon = augmentor.decode(mu, torch.full((len(images),), label))
    kl = kl_per_dimension(mu, log_var)
    steps, best_step = _steps(augmentor.histories.get(label, []))
    return ClassFit(
        label=label,
        n_images=len(images),
        n_heldout=0 if heldout is None else len(heldout),
        recon_train=float(reconstruction_error(recon, images).mean()),
        recon_heldout=recon_heldout,
        kl=float(kl.sum()),
        kl_per_dim=[float(v) for v in kl],
        active_units=active_units(mu),
        latent_dim=mu.shape[1],
        log_var_mean=float(log_var.mean()),
        log_var_at_bound=log_var_at_bound(log_var, augmentor.config.vae.log_var_bound, tolerance),
        sharpness_real=float(sharpness(images).mean()),
        sharpness_recon=float(sharpness(recon).mean()),
        sharpness_synthetic={name: float(sharpness(x).mean()) for name, x in synthetic.items() if len(x)},
        steps=steps,
        best_step=best_step,
        recon_class_mean=baseline,
        heldout_recon_ratio=ratio,
        ssim_heldout=similarity,
    )


def _ratio(values: Sequence[float]) -> float:
    low, high = min(values), max(values)
    return math.inf if low <= 0 < high else (high / low if low > 0 else 1.0)


def _warnings(fits: Mapping[int, ClassFit], thresholds: FitThresholds) -> list[str]:
    """Messages for collapsed posteriors, log-variances on their bound and uneven decoders."""
    messages = []
    for label, fit in fits.items():
        needed = max(1, round(thresholds.min_active_fraction * fit.latent_dim))
        if fit.active_units < needed:
            messages.append(
                f"class {label}: posterior collapse, {fit.active_units} of {fit.latent_dim} latent units active "
                f"(Var_x(E[z|x]) > {ACTIVE_UNIT_THRESHOLD}), KL {fit.kl:.2f} nats; lower beta "
                "(or set VAEConfig.kl_reference_size) or train longer"
            )
        if fit.recon_class_mean and fit.recon > thresholds.max_recon_to_class_mean * fit.recon_class_mean:
            messages.append(
                f"class {label}: the VAE reconstructs its images about as well as their class-mean image does "
                f"(error per image {fit.recon:.3g} against {fit.recon_class_mean:.3g} for the class mean, ratio "
                f"{fit.recon / fit.recon_class_mean:.2f} above {thresholds.max_recon_to_class_mean}): it has "
                "learnt the class average, not the images; train longer (trainer.max_steps) or lower beta"
            )
        if fit.log_var_at_bound is not None and fit.log_var_at_bound > thresholds.max_at_bound:
            messages.append(
                f"class {label}: {100 * fit.log_var_at_bound:.0f} % of the posterior log-variances sit on the bound "
                "of VAEConfig.log_var_bound; the bound, not the data, sets the variances the metric is built "
                "from: raise or remove the bound"
            )
    if len(fits) < 2:
        return messages
    recon = {label: fit.recon for label, fit in fits.items()}
    if _ratio(list(recon.values())) > thresholds.max_recon_ratio:
        listed = ", ".join(f"class {label} {value:.3g}" for label, value in recon.items())
        messages.append(
            f"the classes' VAEs reconstruct unequally well (error per image: {listed}; ratio above "
            f"{thresholds.max_recon_ratio}): synthetic images may carry which decoder made them, a shortcut "
            "for a classifier; give the small class more steps (trainer.max_steps) or use shared_vae"
        )
    kinds = {"reconstructed": {label: fit.sharpness_recon for label, fit in fits.items()}}
    for name in set.intersection(*(set(fit.sharpness_synthetic) for fit in fits.values())):
        kinds[f"synthetic ({name})"] = {label: fit.sharpness_synthetic[name] for label, fit in fits.items()}
    for kind, values in sorted(kinds.items()):
        relative = {label: values[label] / max(fits[label].sharpness_real, 1e-12) for label in values}
        if _ratio(list(relative.values())) > thresholds.max_sharpness_ratio:
            listed = ", ".join(f"class {label} {value:.2f}" for label, value in relative.items())
            messages.append(
                f"the classes' {kind} images are unequally sharp relative to their real images "
                f"(sharpness ratio generated / real: {listed}; classes differ by more than a factor "
                f"{thresholds.max_sharpness_ratio}): blur can tell the classes apart instead of anatomy"
            )
    return messages


def fit_report(
    augmentor: Any,
    images: torch.Tensor,
    labels: torch.Tensor,
    heldout_images: torch.Tensor | None = None,
    heldout_labels: torch.Tensor | None = None,
    synthetic: Mapping[str, tuple[torch.Tensor, torch.Tensor]] | None = None,
    thresholds: FitThresholds | None = None,
) -> FitReport:
    """Diagnose a fitted :class:`~augmentor.GeometricAugmentor` class by class.

    Every warning is also logged with ``logging.warning``.

    Args:
        augmentor: the fitted augmentor.
        images, labels: its training images ``(N, C, H, W[, D])`` and classes ``(N,)``.
        heldout_images, heldout_labels: images the VAEs never trained on, for the
            held-out reconstruction error (optional).
        synthetic: sampler name -> ``(images, labels)`` of generated sets.
        thresholds: when to warn.

    Returns:
        A :class:`FitReport`.
    """
    thresholds = thresholds or FitThresholds()
    synthetic = synthetic or {}
    fits = {}
    for label in augmentor.classes:
        heldout = None if heldout_images is None else heldout_images[heldout_labels == label]
        mine = {name: x[y == label] for name, (x, y) in synthetic.items()}
        fits[label] = _class_fit(augmentor, label, images[labels == label], heldout, mine, thresholds.bound_tolerance)
    messages = _warnings(fits, thresholds)
    for message in messages:
        logger.warning(message)
    return FitReport(fits, messages)


def synthetic_fidelity(
    predict: Callable[[torch.Tensor], Any], images: torch.Tensor, labels: torch.Tensor
) -> dict[str, Any]:
    """Do synthetic images carry their class? Scores of a classifier of real images on them.

    Args:
        predict: maps images ``(n, C, H, W[, D])`` to predicted classes ``(n,)``
            (a classifier trained on real images only).
        images: a synthetic set ``(n, C, H, W[, D])``.
        labels: the class each image was generated for ``(n,)``.

    Returns:
        ``accuracy``, ``balanced_accuracy`` (mean of the per-class recalls) and
        ``recall`` per class (as strings), and ``n``.
    """
    predicted = np.asarray(predict(images)).reshape(-1)
    truth = labels.cpu().numpy().reshape(-1)
    if len(predicted) != len(truth):
        raise ValueError(f"predict returned {len(predicted)} classes for {len(truth)} images")
    recall = {str(int(c)): float((predicted[truth == c] == c).mean()) for c in np.unique(truth)}
    return {
        "accuracy": float((predicted == truth).mean()),
        "balanced_accuracy": float(np.mean(list(recall.values()))),
        "recall": recall,
        "n": len(truth),
    }


def save_fit_grid(
    rows: Mapping[int, Mapping[str, torch.Tensor]],
    path: str | Path,
    title: str,
    per_row: int = 8,
    class_names: Mapping[int, str] | None = None,
) -> Path:
    """A PNG grid with, per class, one row of each image kind (e.g. real, reconstructed, synthetic).

    Args:
        rows: class -> {kind: images ``(n, C, H, W[, D])``}, drawn in the given order
            (volumes show their middle slice along the last axis).
        path: PNG file to write (atomically).
        title: the figure's title.
        per_row: images per row.
        class_names: names of the classes in the row titles.
    """
    names = class_names or {}
    images, keys, titles = [], [], {}
    for label, kinds in rows.items():
        for kind, x in kinds.items():
            key = len(titles)
            titles[key] = f"{names.get(label, label)}: {kind}"
            x = x[..., x.shape[-1] // 2] if x.ndim == 5 else x
            images.append(x[:per_row])
            keys.append(torch.full((len(x[:per_row]),), key))
    return save_sample_grid(torch.cat(images), torch.cat(keys), path, title, per_class=per_row, class_names=titles)
