"""The configs ship inside the package and are found by name, from any working directory."""

from pathlib import Path

import pytest

import augmentor
from augmentor.utils.config import ConfigError, config_path, read_config_data, shipped_config, shipped_configs
from pipelines.oasis_study.config import load_study_config
from pipelines.benchmark.config import load_benchmark_config
from pipelines.lowdata.config import load_lowdata_config

PACKAGE_CONFIGS = Path(augmentor.__file__).parent / "configs"


def test_every_shipped_config_lies_in_the_package_and_loads_by_name(tmp_path, monkeypatch):
    names = shipped_configs()
    assert {"oasis_tiny", "oasis_quick", "lowdata_tiny", "mnist_tiny", "mnist_quick"} <= set(names)
    assert sorted(p.stem for p in PACKAGE_CONFIGS.glob("*.yaml")) == names
    monkeypatch.chdir(tmp_path)  # no checkout around: only the package can supply them
    loaders = {"oasis": load_study_config, "lowdata": load_lowdata_config, "mnist": load_benchmark_config}
    for name in names:
        assert config_path(name) == shipped_config(name) == PACKAGE_CONFIGS / f"{name}.yaml"
        assert config_path(f"{name}.yaml") == shipped_config(name)
    assert load_study_config("oasis_tiny").name == "tiny"
    assert load_lowdata_config("lowdata_tiny").name == "lowdata_tiny"
    assert loaders["mnist"]("mnist_tiny").name == "tiny"


def test_a_local_file_wins_over_a_shipped_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "oasis_tiny.yaml").write_text("name: local\n")
    assert config_path("oasis_tiny.yaml") == Path("oasis_tiny.yaml")
    assert read_config_data("oasis_tiny.yaml") == {"name": "local"}
    # A path with a folder is never replaced by a shipped config.
    assert config_path("elsewhere/oasis_tiny.yaml") == Path("elsewhere/oasis_tiny.yaml")


def test_an_unknown_name_lists_the_shipped_configs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="does not exist.*oasis_tiny"):
        read_config_data("oasis_tinyy")
    with pytest.raises(ConfigError, match="no shipped config 'nope'.*oasis_quick"):
        shipped_config("nope")
