"""Typed configs: validation errors name the field; JSON/YAML round trips."""

import pytest

from augmentor import AugmentorConfig, ConfigError, HMCConfig, MetricConfig, TrainerConfig, vae_preset
from augmentor.utils.config import load_config_file


def test_augmentor_config_round_trips_through_json():
    config = AugmentorConfig(vae=vae_preset("tiny2d"), metric=MetricConfig(n_centroids=5), hmc=HMCConfig(n_steps=7))
    again = AugmentorConfig.from_json(config.to_json())
    assert again == config and isinstance(again.vae.in_shape, tuple)


@pytest.mark.parametrize(
    "data, message",
    [
        ({"hmc": {"n_step": 3}}, r"unknown key\(s\) \['n_step'\]"),
        ({"hmc": {"n_steps": 0}}, "HMCConfig.n_steps: must be >= 1"),
        ({"hmc": {"step_size": "small"}}, "HMCConfig.step_size: expected a number"),
        ({"metric": {"lam": -1}}, "MetricConfig.lam"),
        ({"device": "gpu"}, "AugmentorConfig.device"),
        ({"trainer": {"epochs": 2.5}}, "TrainerConfig.epochs: expected an integer"),
        ({"hmc": {"adapt_step_size": True}}, "n_warmup"),
        ({"gmm_components": True}, "expected an integer"),
        ({"colour": 1}, "unknown key"),
    ],
)
def test_validation_errors_name_the_field(data, message):
    with pytest.raises(ConfigError, match=message):
        AugmentorConfig.from_dict(data)


def test_yaml_file_errors_name_the_file(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("trainer:\n  epochs: 3\nhmc:\n  n_steps: 5\n")
    config = load_config_file(good, AugmentorConfig)
    assert config.trainer == TrainerConfig(epochs=3) and config.hmc.n_steps == 5
    bad = tmp_path / "bad.yaml"
    bad.write_text("trainer:\n  epoch: 3\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: .*unknown key\(s\) \['epoch'\]"):
        load_config_file(bad, AugmentorConfig)
    broken = tmp_path / "broken.yaml"
    broken.write_text("trainer: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config_file(broken, AugmentorConfig)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config_file(tmp_path / "missing.yaml", AugmentorConfig)


def test_fixed_length_tuples_are_checked():
    import dataclasses

    from augmentor import Config

    @dataclasses.dataclass
    class Shape(Config):
        size: tuple[int, int, int] = (1, 2, 3)

    assert Shape.from_dict({"size": [4, 5, 6]}).size == (4, 5, 6)
    with pytest.raises(ConfigError, match="expected 3 values"):
        Shape.from_dict({"size": [4, 5]})
    with pytest.raises(ConfigError, match=r"Shape.size\[1\]: expected an integer"):
        Shape.from_dict({"size": [4, "x", 6]})


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"hmc": {"step_size": Infinity}}', r"HMCConfig.step_size: must be a finite number, got inf"),
        ('{"trainer": {"lr": NaN}}', r"TrainerConfig.lr: must be a finite number, got nan"),
        ('{"metric": {"rho": -Infinity}}', r"MetricConfig.rho: must be a finite number, got -inf"),
        ('{"metric": {"seed": 1180591620717411303424}}', r"MetricConfig.seed: \d+ does not fit in a 64-bit integer"),
    ],
)
def test_saved_json_with_non_finite_or_huge_numbers_names_the_field(text, message):
    with pytest.raises(ConfigError, match=message):
        AugmentorConfig.from_json(text)


def _float_fields():
    """(config class, field) for every float or optional float field of the toolkit's configs."""
    import dataclasses
    from typing import get_type_hints

    from augmentor import VAEConfig

    for cls in (AugmentorConfig, TrainerConfig, MetricConfig, HMCConfig, VAEConfig):
        hints = get_type_hints(cls)
        for field in dataclasses.fields(cls):
            if hints[field.name] in (float, float | None):
                yield cls, field.name


@pytest.mark.parametrize("cls, name", list(_float_fields()), ids=lambda v: getattr(v, "__name__", v))
@pytest.mark.parametrize("value", [float("inf"), float("nan")])
def test_every_float_field_refuses_non_finite_values(cls, name, value):
    base = {"in_shape": [1, 16, 16]} if cls.__name__ == "VAEConfig" else {}
    with pytest.raises(ConfigError, match=rf"{cls.__name__}.{name}: must be a finite number"):
        cls.from_dict({**base, name: value})
