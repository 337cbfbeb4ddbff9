"""augmentor.seeding: global seeding and the per-class seed formula."""

import random

import numpy as np
import torch

from augmentor.utils.seeding import class_seed, seed_everything


def _draws() -> tuple[float, float, torch.Tensor]:
    return random.random(), float(np.random.rand()), torch.rand(3)


def _same(a, b) -> bool:
    return a[0] == b[0] and a[1] == b[1] and torch.equal(a[2], b[2])


def test_seed_everything_repeats_python_numpy_and_torch():
    seed_everything(3)
    first = _draws()
    seed_everything(3)
    assert _same(first, _draws())


def test_different_seeds_give_different_draws_in_every_generator():
    seed_everything(3)
    a = _draws()
    seed_everything(4)
    b = _draws()
    assert a[0] != b[0] and a[1] != b[1] and not torch.equal(a[2], b[2])


def test_class_seed_formula_and_range():
    assert [class_seed(5, i) for i in range(3)] == [5045, 5046, 5047]
    assert class_seed(-1, 0) == 2**64 - 1009  # negative seeds count modulo 2**64, as in torch
    for seed in (2**64 - 1, -(2**63), 2**62):
        assert 0 <= class_seed(seed, 7) < 2**64
        torch.Generator().manual_seed(class_seed(seed, 7))  # a seed torch accepts
