"""Tests of augmentor.fit_report: the fit diagnostics on constructed inputs, the warnings, fidelity."""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace

import pytest
import torch

from augmentor.models.fit_report import (
    class_mean_error,
    FitReport,
    active_units,
    fit_report,
    kl_per_dimension,
    log_var_at_bound,
    save_fit_grid,
    sharpness,
    ssim,
    synthetic_fidelity,
)
from augmentor.models.vae import reconstruction_error


def test_active_units_count_dimensions_whose_means_vary_over_the_images():
    g = torch.Generator().manual_seed(0)
    base = torch.randn(2000, 4, generator=g)
    base = (base - base.mean(0)) / base.std(0, correction=0)  # unit variance per dimension
    mu = base * torch.tensor([1.0, 0.0, 0.2, 0.05])  # variances 1, 0, 0.04, 0.0025
    assert active_units(mu) == 2
    assert active_units(mu, threshold=0.001) == 3
    with pytest.raises(ValueError, match="n >= 2"):
        active_units(mu[:1])


def test_kl_per_dimension_by_hand():
    mu = torch.tensor([[1.0, 0.0], [3.0, 0.0]])
    log_var = torch.tensor([[0.0, 0.0], [0.0, -2.0]])
    # KL per entry: 0.5 * (mu^2 + e^lv - 1 - lv): [[0.5, 0], [4.5, 0.5 * (e^-2 + 1)]]
    expected = torch.tensor([2.5, 0.25 * (torch.exp(torch.tensor(-2.0)) + 1)])
    assert torch.allclose(kl_per_dimension(mu, log_var), expected)


def test_log_var_at_bound_share():
    assert log_var_at_bound(torch.tensor([-1.0, -0.995, 0.0, 0.5]), 1.0) == 0.5
    assert log_var_at_bound(torch.tensor([-1.0]), None) is None


def test_sharpness_of_constant_checkerboard_and_blurred_images():
    constant = torch.full((1, 1, 8, 8), 0.3)
    checker = ((torch.arange(8)[:, None] + torch.arange(8)[None, :]) % 2).float().view(1, 1, 8, 8)
    assert sharpness(constant).item() == 0
    # Every interior pixel of a 0/1 checkerboard differs from its 4 neighbours by 1: |Laplacian| = 4.
    assert sharpness(checker).item() == pytest.approx(4.0)
    blurred = torch.nn.functional.avg_pool2d(checker, 3, stride=1, padding=1)
    assert sharpness(blurred).item() < sharpness(checker).item()
    checker_3d = ((torch.arange(5)[:, None, None] + torch.arange(5)[None, :, None] + torch.arange(5)) % 2)
    assert sharpness(checker_3d.float().view(1, 1, 5, 5, 5)).item() == pytest.approx(6.0)


def test_reconstruction_error_is_summed_per_image():
    x = torch.zeros(2, 1, 2, 2)
    recon = torch.stack([torch.full((1, 2, 2), 0.5), torch.zeros(1, 2, 2)])
    assert reconstruction_error(recon, x).tolist() == [1.0, 0.0]
    with pytest.raises(ValueError, match="differ in shape"):
        reconstruction_error(recon, x[:1])


class _StubAugmentor:
    """A stand-in fitted augmentor on 1 x 6 x 6 images whose classes fit well or collapsed.

    ``healthy``: the code is the image itself (36 active units, log-variance -0.5), decoded exactly.
    ``collapsed``: every code is 0 with log-variance on the bound -1, decoded to one blurred mean image.
    """

    def __init__(self, modes: dict[int, str], images: torch.Tensor, labels: torch.Tensor) -> None:
        self.classes = sorted(modes)
        self.modes = modes
        self.config = SimpleNamespace(vae=SimpleNamespace(log_var_bound=1.0))
        self.histories = {label: [{"step": 10, "val_loss": 1.0}, {"step": 20, "val_loss": 0.5}] for label in modes}
        self.mean = {label: torch.nn.functional.avg_pool2d(images[labels == label].mean(0), 3, 1, 1)
                     for label in modes}

    def encode(self, images, label):
        if self.modes[label] == "healthy":
            return images.flatten(1), torch.full((len(images), 36), -0.5)
        return torch.zeros(len(images), 36), torch.full((len(images), 36), -1.0)

    def decode(self, z, labels):
        label = int(labels[0])
        if self.modes[label] == "healthy":
            return z.view(-1, 1, 6, 6)
        return self.mean[label].expand(len(z), -1, -1, -1)


def _textured(n: int, seed: int) -> torch.Tensor:
    return torch.rand(n, 1, 6, 6, generator=torch.Generator().manual_seed(seed))


def test_no_warning_for_two_healthy_classes(caplog):
    images, labels = torch.cat([_textured(10, 0), _textured(10, 1)]), torch.tensor([0] * 10 + [1] * 10)
    with caplog.at_level(logging.WARNING, logger="augmentor.models.fit_report"):
        report = fit_report(_StubAugmentor({0: "healthy", 1: "healthy"}, images, labels), images, labels)
    assert report.warnings == [] and not caplog.records
    fit = report.classes[1]
    assert fit.active_units == 36 and fit.recon_train == 0 and fit.log_var_at_bound == 0
    assert fit.steps == 20 and fit.best_step == 20
    assert fit.sharpness_recon == pytest.approx(fit.sharpness_real)


def test_warnings_fire_for_a_collapsed_class(caplog):
    images, labels = torch.cat([_textured(10, 0), _textured(10, 1)]), torch.tensor([0] * 10 + [1] * 10)
    stub = _StubAugmentor({0: "healthy", 1: "collapsed"}, images, labels)
    synthetic = {"riemannian": (stub.decode(torch.zeros(4, 36), torch.ones(4, dtype=torch.int64)),
                                torch.ones(4, dtype=torch.int64))}
    with caplog.at_level(logging.WARNING, logger="augmentor.models.fit_report"):
        report = fit_report(stub, images, labels, images[:3], labels[:3], synthetic=synthetic)
    text = "\n".join(report.warnings)
    assert "class 1: posterior collapse, 0 of 36" in text
    assert "class 1: 100 % of the posterior log-variances sit on the bound" in text
    assert "reconstruct unequally well" in text
    assert "reconstructed images are unequally sharp" in text
    assert "class 1: the VAE reconstructs its images about as well as their class-mean image" in text
    assert "class 0" not in text.split("reconstruct unequally")[0]  # the healthy class is not blamed
    assert [r.getMessage() for r in caplog.records] == report.warnings
    assert report.classes[0].n_heldout == 3 and report.classes[0].recon_heldout == 0
    assert set(report.classes[1].sharpness_synthetic) == {"riemannian"}
    # The report survives JSON.
    again = FitReport.from_dict(json.loads(json.dumps(report.to_dict())))
    assert again == report


def test_class_mean_error_is_the_summed_squared_distance_to_the_reference_mean():
    reference = torch.stack([torch.zeros(1, 2, 2), torch.ones(1, 2, 2)])  # mean 0.5 everywhere
    assert class_mean_error(reference).tolist() == [1.0, 1.0]  # 4 pixels x 0.25
    assert class_mean_error(reference, torch.full((1, 1, 2, 2), 2.0)).tolist() == [9.0]  # 4 x 1.5^2


def test_class_mean_baseline_and_its_warning(caplog):
    images, labels = torch.cat([_textured(10, 0), _textured(10, 1)]), torch.tensor([0] * 10 + [1] * 10)
    report = fit_report(_StubAugmentor({0: "healthy", 1: "collapsed"}, images, labels), images, labels)
    for label in (0, 1):
        expected = class_mean_error(images[labels == label]).mean()
        assert report.classes[label].recon_class_mean == pytest.approx(float(expected))
    # The collapsed class decodes a blurred class mean: no better than the baseline; the healthy one is exact.
    assert report.classes[1].recon >= 0.5 * report.classes[1].recon_class_mean
    flagged = [w for w in report.warnings if "class-mean image" in w]
    assert len(flagged) == 1 and flagged[0].startswith("class 1:")


def test_fit_report_of_a_fitted_augmentor(fitted_2d, tmp_path):
    augmentor, images, labels = fitted_2d
    fake, fake_labels = augmentor.generate(4, sampler="gmm", seed=0)
    report = fit_report(augmentor, images, labels, synthetic={"gmm": (fake, fake_labels)})
    assert sorted(report.classes) == [0, 1]
    for label, fit in report.classes.items():
        assert fit.n_images == int((labels == label).sum()) and fit.latent_dim == augmentor.config.vae.latent_dim
        assert len(fit.kl_per_dim) == fit.latent_dim and fit.kl == pytest.approx(sum(fit.kl_per_dim))
        assert fit.recon_train > 0 and fit.sharpness_real > 0 and "gmm" in fit.sharpness_synthetic
    rows = {label: {"real": images[labels == label], "synthetic": fake[fake_labels == label]}
            for label in augmentor.classes}
    path = save_fit_grid(rows, tmp_path / "grid.png", "fit", per_row=4, class_names={0: "CN", 1: "AD"})
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _brightness_classifier(images: torch.Tensor):
    """A 'classifier trained on real images' whose rule is known: bright images are class 1."""
    return (images.flatten(1).mean(1) > 0.5).long().numpy()


def test_fidelity_on_a_toy_case_with_a_known_answer():
    dark, bright = torch.full((6, 1, 4, 4), 0.2), torch.full((4, 1, 4, 4), 0.8)
    images = torch.cat([dark, bright])
    carried = synthetic_fidelity(_brightness_classifier, images, torch.tensor([0] * 6 + [1] * 4))
    assert carried == {"accuracy": 1.0, "balanced_accuracy": 1.0, "recall": {"0": 1.0, "1": 1.0}, "n": 10}
    swapped = synthetic_fidelity(_brightness_classifier, images, torch.tensor([1] * 6 + [0] * 4))
    assert swapped["accuracy"] == 0 and swapped["balanced_accuracy"] == 0
    # Class 1's images all look like class 0: recall 0 for class 1, balanced accuracy 0.5.
    lost = synthetic_fidelity(_brightness_classifier, torch.cat([dark, dark[:4]]), torch.tensor([0] * 6 + [1] * 4))
    assert lost["recall"] == {"0": 1.0, "1": 0.0} and lost["balanced_accuracy"] == 0.5 and lost["accuracy"] == 0.6


class _MeanAugmentor(_StubAugmentor):
    """Class 0 decodes its codes exactly; class 1 decodes every code to its class-mean training image."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        super().__init__({0: "healthy", 1: "collapsed"}, images, labels)
        self.mean = {1: images[labels == 1].mean(0)}


def test_heldout_ratio_is_zero_for_an_exact_model_and_one_for_the_class_mean():
    images, labels = torch.cat([_textured(10, 0), _textured(10, 1)]), torch.tensor([0] * 10 + [1] * 10)
    heldout, heldout_labels = torch.cat([_textured(4, 2), _textured(4, 3)]), torch.tensor([0] * 4 + [1] * 4)
    report = fit_report(_MeanAugmentor(images, labels), images, labels, heldout, heldout_labels)
    exact, blob = report.classes[0], report.classes[1]
    assert exact.heldout_recon_ratio == 0 and exact.ssim_heldout == pytest.approx(1.0)
    # The collapsed class predicts exactly the class-mean image: the baseline itself.
    assert blob.heldout_recon_ratio == pytest.approx(1.0) and blob.recon_class_mean > 0
    assert blob.ssim_heldout < 0.5
    assert fit_report(_MeanAugmentor(images, labels), images, labels).classes[0].heldout_recon_ratio is None


def test_ssim_of_identical_noisy_and_tiny_images():
    x = _textured(3, 5)
    assert torch.allclose(ssim(x, x), torch.ones(3))
    noisy = (x + 0.3 * _textured(3, 6)).clamp(0, 1)
    assert (ssim(x, noisy) < 0.95).all()
    volume = torch.rand(2, 1, 7, 8, 9, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(ssim(volume, volume), torch.ones(2))
    assert ssim(torch.zeros(1, 1, 2, 8), torch.zeros(1, 1, 2, 8)) is None
