"""The one method vocabulary of the studies: parsing, display names, deprecated names, seed keys."""

from __future__ import annotations

import logging
import re
import warnings
import zlib

import pytest

from augmentor.utils.config import ConfigError
from pipelines.common.methods import (
    Method,
    canonical_method,
    deprecated_name,
    method_label,
    method_sampler,
    parse_method,
    source_label,
    split_source,
)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("real", Method("real", None, True)),
        ("torchio", Method("torchio", None, True)),
        ("gmm", Method("gmm", "gmm", False)),
        ("real+riemannian", Method("real+riemannian", "riemannian", True)),
        ("real+gmm+filtered@x5", Method("real+gmm+filtered@x5", "gmm", True, 5, True)),
        ("kde@x2", Method("kde@x2", "kde", False, 2)),
        ("real+shared-gmm", Method("real+shared-gmm", "shared-gmm", True)),
        ("real+vamp-vamp", Method("real+vamp-vamp", "vamp-vamp", True)),
    ],
)
def test_method_names_read_into_their_parts(name, expected):
    assert parse_method(name) == expected
    assert method_sampler(name) == expected.source


def test_generator_and_sampler_of_sources():
    assert split_source("gmm") == ("vae", "gmm")
    assert split_source("shared-riemannian") == ("shared", "riemannian")
    assert split_source("rae_l2-gmm") == ("rae_l2", "gmm")
    method = parse_method("real+ae-gmm@x3")
    assert (method.generator, method.sampler, method.base) == ("ae", "gmm", "real+ae-gmm")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("magic", "'magic' is no latent source"),
        ("real+magic", "'magic' is no latent source"),
        ("real@x2", "has none"),
        ("torchio+filtered", "has none"),
        ("gmm@x0", "whole number >= 1"),
        ("gmm@xfive", "whole number >= 1"),
    ],
)
def test_names_outside_the_vocabulary_are_refused_with_the_reason(name, message):
    with pytest.raises(ValueError, match=message):
        parse_method(name)
    assert method_sampler(name) is None


@pytest.mark.parametrize(
    ("name", "label"),
    [
        ("real", "Real"),
        ("resampled", "Real resampled"),
        ("monai", "Real + MONAI augmentation"),
        ("riemannian", "Synthetic only: VAE - ours"),
        ("real+prior", "Real + VAE - N(0, I)"),
        ("real+shared-gmm", "Real + Shared VAE - GMM"),
        ("vamp-vamp", "Synthetic only: VAMP - VAMP"),
        ("real+gmm+filtered@x5", "Real + VAE - GMM, confidence-filtered (x5)"),
        ("original+gmm", "Real + VAE - GMM"),  # a deprecated name has the current one's label
        ("not-a-method", "not-a-method"),
    ],
)
def test_display_names_follow_one_rule(name, label):
    assert method_label(name) == label


def test_sources_are_named_generator_then_sampler():
    assert source_label("riemannian") == "VAE - ours"
    assert source_label("published").startswith("VAE - published chain")
    assert source_label("rhvae-rhvae") == "RHVAE - RHVAE"


def test_deprecated_names_map_to_current_ones_with_a_warning_and_a_log_line(caplog):
    for old, new in (("original", "real"), ("classical", "torchio"), ("original+riemannian", "real+riemannian")):
        with caplog.at_level(logging.WARNING, logger="pipelines.common.methods"):
            with pytest.warns(DeprecationWarning, match=re.escape(f"'{old}' is now called '{new}'")):
                assert canonical_method(old) == new
        assert f"'{old}' is now called '{new}'" in caplog.text
        assert deprecated_name(new) == old
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a current name passes silently
        assert canonical_method("real+gmm") == "real+gmm"
        assert canonical_method("original", warn=False) == "real"


def test_the_oasis_study_config_reads_deprecated_method_names():
    from pipelines.oasis_study.config import StudyConfig

    with pytest.warns(DeprecationWarning):
        config = StudyConfig(methods=("original", "classical", "original+gmm", "resampled"))
    assert config.methods == ("real", "torchio", "real+gmm", "resampled")
    with pytest.raises(ConfigError, match=r"lists a method twice"):
        StudyConfig(methods=("original", "real"))
    with pytest.raises(ConfigError, match=r"unknown method\(s\) \['monai'\]"):
        StudyConfig(methods=("real", "monai"))  # MONAI augmentation is the low-data study's


def test_renamed_oasis_methods_keep_the_classifier_seeds_of_their_old_names():
    from pipelines.oasis_study.config import METHODS, SEED_KEYS
    from pipelines.common.jobs import job_seed

    assert set(SEED_KEYS) == set(METHODS)
    for new, old in (("real", "original"), ("torchio", "classical"), ("real+riemannian", "original+riemannian"),
                     ("real+ae-gmm", "original+ae-gmm"), ("gmm", "gmm"), ("resampled", "resampled")):
        assert SEED_KEYS[new] == old
        assert job_seed(3, SEED_KEYS[new]) == (3 * 1_000_003 + zlib.crc32(old.encode())) % 2**31


def test_the_low_data_study_refuses_the_shared_decoder_sources():
    from pipelines.lowdata.config import LowDataConfig

    with pytest.raises(ConfigError, match="unknown: \\['real\\+shared-gmm'\\]"):
        LowDataConfig(methods=("real", "real+shared-gmm"))
