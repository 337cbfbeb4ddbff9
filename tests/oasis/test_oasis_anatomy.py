"""Tests of oasis.anatomy: the template regions and the class-effect measure on simulated cohorts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from oasis import load_oasis
from oasis.anatomy import anatomy_measures, class_effect, effect_regions, template_anatomy
from oasis.simulate import SimulationConfig, simulate_cohort

SHAPE = (44, 52, 44)  # T88 / 4, the quick studies' grid


def _cohort(tmp_path_factory, effect_size: float, dim: int):
    config = SimulationConfig(n_cn=5, n_ad=5, effect_size=effect_size, young_cn_fraction=0.0, shape=SHAPE, seed=3)
    folder = simulate_cohort(config, tmp_path_factory.getbasetemp() / "anatomy-cache", progress=False)
    return load_oasis(folder, dim=dim)


@pytest.fixture(scope="module")
def strong_3d(tmp_path_factory):
    return _cohort(tmp_path_factory, 2.0, 3)


@pytest.fixture(scope="module")
def none_3d(tmp_path_factory):
    return _cohort(tmp_path_factory, 0.0, 3)


def test_regions_lie_in_the_brain_and_hold_the_ventricles():
    anatomy = template_anatomy(SHAPE)
    regions = effect_regions(SHAPE)
    assert anatomy.ventricles.any() and anatomy.hippocampi.any()
    assert (regions.ventricle | ~anatomy.ventricles).all()  # the widened region holds the template ventricles
    assert (anatomy.mask[regions.ventricle] > 0.2).all() and (anatomy.mask[regions.white_matter] > 0.5).all()
    assert 0 < regions.csf_level < regions.gm_level < 1
    # A 2D slice is the transposed axial slice of the same regions.
    assert (effect_regions((52, 44)).ventricle == regions.ventricle[:, :, 22].T).all()
    with pytest.raises(ValueError, match="too coarse"):
        effect_regions((12, 14, 12))


def test_measure_orders_cn_below_ad_ventricles_for_a_known_effect(strong_3d, none_3d):
    strong = class_effect(strong_3d.images, strong_3d.labels)
    none = class_effect(none_3d.images, none_3d.labels)
    assert strong.n_cn == strong.n_ad == 5
    # effect_size 2: up to 6-8 mm ventricle displacement, every AD subject above every CN one.
    sizes = anatomy_measures(strong_3d.images)["ventricle"]
    y = strong_3d.labels.numpy()
    assert sizes[y == 1].min() > sizes[y == 0].max()
    # Without the AD effect only the age difference of the groups remains: a small fraction of it.
    assert strong.ventricle_effect > 0 and abs(none.ventricle_effect) < 0.3 * strong.ventricle_effect


def test_measure_on_the_middle_axial_slices(strong_3d):
    slices = strong_3d.images[..., SHAPE[2] // 2].transpose(-1, -2)  # the 2D study's images
    effect = class_effect(slices, strong_3d.labels)
    assert effect.ventricle_effect > 0 and effect.ventricle_ad > effect.ventricle_cn
    assert np.isnan(effect.hippocampus_cn)  # the middle slice lies above the hippocampi


def test_measure_ignores_the_intensity_scale_and_refuses_bad_input(strong_3d):
    x = strong_3d.images[:4]
    assert np.allclose(anatomy_measures(x)["ventricle"], anatomy_measures(3.0 * x)["ventricle"])
    with pytest.raises(ValueError, match="both classes"):
        class_effect(x, torch.zeros(4, dtype=torch.int64))
    with pytest.raises(ValueError, match="white matter"):
        anatomy_measures(torch.zeros(1, 1, *SHAPE))
    with pytest.raises(ValueError, match="expected"):
        anatomy_measures(x[:, 0])
