"""augmentor.devices: which names configs accept, and the device each name resolves to."""

import pytest
import torch

from augmentor.utils.devices import is_device_name, resolve_device


def _machine(monkeypatch, cuda: int = 0, mps: bool = False) -> None:
    """Pretend the machine has ``cuda`` CUDA devices and MPS or not."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)


@pytest.mark.parametrize("name", ["auto", "cpu", "mps", "cuda", "cuda:0", "cuda:12"])
def test_valid_names(name):
    assert is_device_name(name)


@pytest.mark.parametrize("name", ["gpu", "tpu", "CPU", "cuda:", "cuda:x", "cuda:-1", "mps:0", "cpu ", "", None, 0])
def test_invalid_names(name):
    assert not is_device_name(name)


@pytest.mark.parametrize(
    ("cuda", "mps", "expected"), [(0, False, "cpu"), (0, True, "mps"), (2, True, "cuda"), (1, False, "cuda")]
)
def test_auto_prefers_cuda_then_mps_then_cpu(monkeypatch, cuda, mps, expected):
    _machine(monkeypatch, cuda=cuda, mps=mps)
    assert resolve_device("auto") == torch.device(expected)


def test_explicit_devices(monkeypatch):
    _machine(monkeypatch, cuda=2, mps=False)
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(ValueError, match="only 2 CUDA device"):
        resolve_device("cuda:2")
    with pytest.raises(ValueError, match="MPS is not available"):
        resolve_device("mps")


def test_missing_accelerator_and_bad_name_are_named(monkeypatch):
    _machine(monkeypatch, cuda=0, mps=True)
    assert resolve_device("mps") == torch.device("mps")
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device("cuda")
    with pytest.raises(ValueError, match=r"device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got 'tpu'"):
        resolve_device("tpu")


def test_every_config_uses_the_same_rule():
    from augmentor import AugmentorConfig, ConfigError, TrainerConfig
    from pipelines.oasis_study.config import StudyConfig

    for config in (AugmentorConfig, TrainerConfig, StudyConfig):
        assert config(device="cuda:3").device == "cuda:3"
        with pytest.raises(ConfigError, match=f"{config.__name__}.device"):
            config(device="cuda:x")
