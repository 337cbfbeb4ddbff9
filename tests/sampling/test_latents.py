"""The one path of synthetic latents: seeds per class, saved HMC settings, a metric set up once per device."""

import pytest
import torch

from augmentor import HMCConfig, RiemannianMetric
from augmentor.sampling.hmc import HMCSampler
from augmentor.sampling.samplers import NormalSampler, RiemannianSampler
from augmentor.sampling import draw_class_latents, draw_latents
from augmentor.utils.seeding import class_seed


def _codes(n: int = 30, d: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g), torch.full((n, d), -2.0)


def test_class_latents_are_each_class_sampler_drawn_with_its_class_seed():
    samplers = [NormalSampler().fit(*_codes(seed=s)) for s in range(3)]
    drawn = draw_class_latents(samplers, 4, seed=7)
    for index, (sampler, z) in enumerate(zip(samplers, drawn)):
        assert torch.equal(z, sampler.sample(4, seed=class_seed(7, index)))


def test_chain_starts_are_used_and_refused_without_chains():
    mu, log_var = _codes()
    sampler = RiemannianSampler(hmc_config=HMCConfig(n_steps=1, n_leapfrog=1, step_size=1e-6)).fit(mu, log_var)
    start = mu[:5]
    z = draw_latents(sampler, 5, seed=0, init=start)
    assert (z - start).abs().max() < 1e-3  # one tiny step from the starts, not from random centroids
    with pytest.raises(ValueError, match="runs no chains"):
        draw_latents(NormalSampler().fit(mu, log_var), 5, seed=0, init=start)
    with pytest.raises(ValueError, match="one entry per class"):
        draw_class_latents([sampler, sampler], 5, seed=0, init=[start])


def test_generate_uses_the_hmc_settings_saved_with_the_sampler(fitted_2d):
    augmentor = fitted_2d[0]
    saved = HMCConfig(n_steps=3, n_leapfrog=2, step_size=0.02)
    for label in augmentor.classes:
        augmentor.samplers[label]["riemannian"].hmc = HMCSampler(config=saved)
    try:
        augmentor.generate(2, "riemannian", seed=0)
        assert [augmentor.diagnostics[label].n_steps for label in augmentor.classes] == [3, 3]
        override = HMCConfig(n_steps=4, n_leapfrog=2)
        augmentor.generate(2, "riemannian", seed=0, hmc=override)
        assert [augmentor.diagnostics[label].n_steps for label in augmentor.classes] == [4, 4]
        # The override applied to that call only.
        augmentor.generate(2, "riemannian", seed=0)
        assert [augmentor.diagnostics[label].n_leapfrog for label in augmentor.classes] == [2, 2]
        assert [augmentor.diagnostics[label].n_steps for label in augmentor.classes] == [3, 3]
    finally:
        for label in augmentor.classes:
            augmentor.samplers[label]["riemannian"].hmc = HMCSampler(config=augmentor.config.hmc)


def test_metric_probe_runs_once_per_device_over_many_generate_calls(fitted_2d, monkeypatch):
    augmentor = fitted_2d[0]
    for label in augmentor.classes:  # forget earlier tests' device copies
        augmentor.samplers[label]["riemannian"]._copies.clear()
    probes = []
    original = RiemannianMetric._prefers_local

    def counted(metric):
        probes.append(metric)
        return original(metric)

    monkeypatch.setattr(RiemannianMetric, "_prefers_local", counted)
    first = augmentor.generate(3, "riemannian", seed=5)[0]
    assert len(probes) == len(augmentor.classes)  # one device copy per class
    for seed in (6, 7, 5):
        again = augmentor.generate(3, "riemannian", seed=seed)[0]
    assert len(probes) == len(augmentor.classes)
    # The reused copy gives what a fresh one gives: the same seed, the same images, bit for bit.
    assert torch.equal(again, first)


def test_reused_metric_copy_gives_a_run_independent_of_earlier_runs(monkeypatch):
    # Narrow bumps: the metric's local evaluation widens its candidate search during the
    # earlier runs; the run that follows must still match a run on a fresh copy. The search
    # runs in float32 here: in bfloat16 (CPUs with native bfloat16) its wider rounding margin
    # makes the probe start as wide as the chains ever need, and nothing would be tested.
    monkeypatch.setattr(RiemannianMetric, "_selection_dtype", lambda metric: metric.dtype)
    mu, log_var = _codes(n=40, d=3, seed=3)
    log_var = torch.full_like(log_var, -6.0)
    config = HMCConfig(n_steps=5, n_leapfrog=3)
    fresh = RiemannianSampler(hmc_config=config).fit(mu, log_var).sample(20, seed=1, device="cpu")
    used = RiemannianSampler(hmc_config=config).fit(mu, log_var)
    copy = used.target_on("cpu")
    widths = []
    for seed in range(2):
        used.sample(200, seed=seed, device="cpu")
        widths.append(copy._width)
    assert copy.local and max(widths) > copy._probed_width  # the search did widen
    assert torch.equal(used.sample(20, seed=1, device="cpu"), fresh)
    assert used.target_on("cpu") is copy


def test_refit_replaces_the_device_copy():
    sampler = RiemannianSampler(hmc_config=HMCConfig(n_steps=2, n_leapfrog=2)).fit(*_codes(seed=0))
    before = sampler.sample(5, seed=0, device="cpu")
    sampler.fit(*_codes(seed=1))
    after = sampler.sample(5, seed=0, device="cpu")
    fresh = RiemannianSampler(hmc_config=HMCConfig(n_steps=2, n_leapfrog=2)).fit(*_codes(seed=1))
    assert torch.equal(after, fresh.sample(5, seed=0, device="cpu")) and not torch.equal(before, after)
