import torch

from augmentor.sampling.hardware import linear, native_bfloat16


def test_native_bfloat16_follows_the_cpu_probes(monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    assert native_bfloat16("cpu") is False
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert native_bfloat16("cpu") is True


def test_native_bfloat16_follows_the_cuda_capability(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device: (7, 5))
    assert native_bfloat16("cuda") is False
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device: (8, 0))
    assert native_bfloat16("cuda") is True


def test_native_bfloat16_is_false_on_devices_without_a_probe():
    assert native_bfloat16("meta") is False


def test_linear_equals_matmul_and_keeps_gradients():
    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(7, 5, generator=g), torch.randn(3, 5, generator=g)
    torch.testing.assert_close(linear(x, w), x @ w.T)
    x.requires_grad_(True)
    linear(x, w).sum().backward()
    torch.testing.assert_close(x.grad, w.sum(dim=0).expand(7, 5))
