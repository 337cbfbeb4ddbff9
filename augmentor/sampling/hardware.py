"""What the hardware offers: native bfloat16 products, and the fastest float32 product."""

from __future__ import annotations

import functools

import torch

__all__ = ["linear", "native_bfloat16"]


def native_bfloat16(device: torch.device | str) -> bool:
    """Whether ``device`` multiplies bfloat16 matrices in hardware.

    CPUs with AVX-512 BF16 or AMX tiles, CUDA GPUs of compute capability 8.0
    (Ampere) or newer. Elsewhere bfloat16 products are emulated and slower than
    float32.
    """
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_capability(device)[0] >= 8
    if device.type == "cpu":
        probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private, so probe defensively
        return any(getattr(torch.cpu, name, lambda: False)() for name in probes)
    return False


@functools.cache
def _onednn_linear_works() -> bool:
    """Whether oneDNN's fp32 linear kernel is present and agrees with ``@`` on a probe."""
    op = getattr(getattr(torch.ops, "mkldnn", None), "_linear_pointwise", None)
    if op is None or not torch.backends.mkldnn.is_available():
        return False
    probe = torch.linspace(-1, 1, 6 * 5).reshape(6, 5)
    try:
        return torch.allclose(op(probe, probe[:4], None, "none", [], ""), probe @ probe[:4].T, atol=1e-6)
    except RuntimeError:
        return False


def linear(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``x @ weight.T`` for ``(B, K)`` and ``(N, K)`` matrices, as fast as the CPU allows.

    On CPUs, float32 products go through oneDNN where it is available: torch's
    default float32 product (MKL) runs slower kernels on some CPUs (2.2x slower
    than oneDNN on the AMD EPYC this project is measured on, same accuracy:
    ``benchmarks/hmc_speed.py`` prints both). Elsewhere, and where autograd
    tracks the product, this is ``x @ weight.T``.
    """
    # oneDNN's kernel has no autograd formula: products that autograd tracks take `@`.
    tracked = torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)
    if not tracked and x.device.type == "cpu" and x.dtype == weight.dtype == torch.float32 and _onednn_linear_works():
        return torch.ops.mkldnn._linear_pointwise(x.contiguous(), weight.contiguous(), None, "none", [], "")
    return x @ weight.T
