"""The quick-start demo and the toy data run end to end (tiny settings)."""

import json

import pytest
import torch

from augmentor.demo import main
from augmentor.utils.io import OutputExistsError
from augmentor.sampling.metric import RiemannianMetric
from augmentor.toy import plot_latent_geometry, rings_and_disks


def test_demo_writes_its_outputs(tmp_path):
    out = tmp_path / "demo"
    summary = main(["--out", str(out), "--epochs", "2", "--n-per-class", "3", "--toy-epochs", "2", "--hmc-steps", "3",
                    "--device", "cpu"])
    for name in ("samples_prior.png", "samples_gmm.png", "samples_riemannian.png", "synthetic_riemannian.npz",
                 "latent_geometry_disks.png", "latent_geometry_rings.png", "summary.json", "model/manifest.json"):
        assert (out / name).is_file(), name
    assert json.loads((out / "summary.json").read_text()) == summary
    assert set(summary["samplers"]) == {"prior", "gmm", "riemannian", "kde"}
    with pytest.raises(OutputExistsError):
        main(["--out", str(out), "--epochs", "1"])


def test_rings_and_disks():
    images, labels = rings_and_disks(5, size=16, seed=0)
    assert images.shape == (10, 1, 16, 16) and labels.tolist() == [0] * 5 + [1] * 5
    assert set(images.unique().tolist()) <= {0.0, 1.0}
    centre = images[:, 0, 7:9, 7:9].mean(dim=(1, 2))
    assert (centre[:5] == 1).all() and (centre[5:] == 0).all()  # disks are full, rings hollow


def test_latent_plot_needs_two_dimensions(tmp_path):
    mu = torch.randn(10, 3)
    with pytest.raises(ValueError, match="2-D latent"):
        plot_latent_geometry(RiemannianMetric.from_codes(mu, torch.zeros_like(mu)), mu, tmp_path / "x.png")
