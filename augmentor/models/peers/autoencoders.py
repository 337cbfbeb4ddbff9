"""Deterministic autoencoders: AE, WAE-MMD and the regularised autoencoders (RAE).

* :class:`AE`: reconstruction only; sampled with N(0, I) or a GMM on its codes.
* :class:`WAE`: Wasserstein autoencoder (Tolstikhin et al., 2018), reconstruction
  plus ``mmd_weight`` times the unbiased MMD between the batch's codes and as
  many N(0, I) draws, with pythae's inverse multiquadratic kernel summed over
  scales (:func:`imq_kernel`).
* :class:`RAE`: regularised autoencoders (Ghosh et al., 2020) with the L2
  penalty ``0.5 |z|^2`` on the codes, and by ``config.model``: ``"rae"`` that
  alone, ``"rae_l2"`` plus decoder weight decay, ``"rae_gp"`` plus a decoder
  gradient penalty, ``"rae_sn"`` with spectrally normalised decoder layers.
  They are meant to be sampled with the ex-post GMM.

Their codes have no posterior variance, so the Riemannian sampler does not apply.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Literal, Sequence

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from augmentor.models.vae import VAEConfig

from .base import PeerModel

__all__ = [
    "AE",
    "AEConfig",
    "RAE",
    "RAEConfig",
    "WAE",
    "WAEConfig",
    "decoder_gradient_penalty",
    "imq_kernel",
    "unbiased_mmd",
]


@dataclasses.dataclass
class AEConfig(VAEConfig):
    """A deterministic autoencoder: the architecture of :class:`~augmentor.models.VAEConfig`
    (``beta`` is not used)."""

    model: Literal["ae"] = "ae"


@dataclasses.dataclass
class WAEConfig(VAEConfig):
    """WAE-MMD settings (pythae's defaults).

    Args:
        mmd_weight: weight of the MMD term.
        kernel_bandwidth: ``sigma`` of the kernel's base constant ``C = 2 d sigma^2``.
        kernel_scales: the constants ``s * C`` the kernel sums over.
    """

    model: Literal["wae"] = "wae"
    mmd_weight: float = 3e-2
    kernel_bandwidth: float = 1.0
    kernel_scales: tuple[float, ...] = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)

    def validate(self) -> None:
        super().validate()
        if self.mmd_weight < 0:
            self._fail("mmd_weight", f"must be >= 0, got {self.mmd_weight}")
        if self.kernel_bandwidth <= 0:
            self._fail("kernel_bandwidth", f"must be > 0, got {self.kernel_bandwidth}")
        if not self.kernel_scales or min(self.kernel_scales) <= 0:
            self._fail("kernel_scales", f"must be a non-empty list of positive numbers, got {list(self.kernel_scales)}")


@dataclasses.dataclass
class RAEConfig(VAEConfig):
    """RAE settings (pythae's defaults).

    Args:
        model: ``"rae"``, ``"rae_l2"``, ``"rae_gp"`` or ``"rae_sn"``.
        embedding_weight: weight of ``0.5 |z|^2``, averaged over the batch.
        decoder_weight: weight of the decoder regulariser: the weight decay
            ``0.5 |theta|^2`` over every decoder parameter (``rae_l2``, the same
            gradient as Adam's ``weight_decay``) or the gradient penalty
            (``rae_gp``); not used by ``rae`` and ``rae_sn``.
    """

    model: Literal["rae", "rae_l2", "rae_gp", "rae_sn"] = "rae"
    embedding_weight: float = 1e-4
    decoder_weight: float = 1e-7

    def validate(self) -> None:
        super().validate()
        for name in ("embedding_weight", "decoder_weight"):
            if getattr(self, name) < 0:
                self._fail(name, f"must be >= 0, got {getattr(self, name)}")


class AE(PeerModel):
    """Deterministic autoencoder: minimises the summed reconstruction error."""

    config_class = AEConfig
    stochastic = False

    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"loss", "recon"}``: the mean summed reconstruction error of ``x`` ``(B, C, H, W[, D])``."""
        z, _ = self.encode(x)
        recon = self.reconstruction(self.decode(z), x).mean()
        return {"loss": recon, "recon": recon}


def imq_kernel(
    a: torch.Tensor, b: torch.Tensor, scales: Sequence[float] = (1.0,), bandwidth: float = 1.0
) -> torch.Tensor:
    """Inverse multiquadratic kernel ``k(a, b) = sum_s C_s / (C_s + |a - b|^2)``, ``C_s = s * 2 d bandwidth^2``.

    Args:
        a: ``(n, d)`` points.
        b: ``(m, d)`` points.
        scales: the multipliers ``s`` of the base constant.
        bandwidth: ``sigma`` of the base constant ``2 d sigma^2``.

    Returns:
        ``(n, m)`` kernel matrix.
    """
    squared = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    base = 2.0 * a.shape[1] * bandwidth**2
    return sum(s * base / (s * base + squared) for s in scales)


def unbiased_mmd(
    x: torch.Tensor, y: torch.Tensor, kernel: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """Unbiased estimate of ``MMD^2`` between the samples ``x`` ``(n, d)`` and ``y`` ``(m, d)``.

    ``1/(n(n-1)) sum_{i != j} k(x_i, x_j) + 1/(m(m-1)) sum_{i != j} k(y_i, y_j)
    - 2/(n m) sum_{i, j} k(x_i, y_j)``.

    Raises:
        ValueError: fewer than two points in either sample (the within-sample
            terms leave out the diagonal).
    """
    n, m = len(x), len(y)
    if n < 2 or m < 2:
        raise ValueError(f"the unbiased MMD needs at least 2 points per sample, got {n} and {m}")

    def within(k: torch.Tensor) -> torch.Tensor:
        return (k.sum() - k.diagonal().sum()) / (len(k) * (len(k) - 1))

    return within(kernel(x, x)) + within(kernel(y, y)) - 2 * kernel(x, y).mean()


class WAE(AE):
    """WAE-MMD: reconstruction plus ``mmd_weight * MMD(codes, N(0, I) draws)``.

    The prior draws come from the global torch RNG (reproducible under the trainer's seed).
    """

    config_class = WAEConfig

    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"loss", "recon", "mmd"}`` on a batch ``x`` of at least 2 images."""
        z, _ = self.encode(x)
        recon = self.reconstruction(self.decode(z), x).mean()
        config = self.config
        kernel = lambda a, b: imq_kernel(a, b, config.kernel_scales, config.kernel_bandwidth)  # noqa: E731
        mmd = unbiased_mmd(z, torch.randn_like(z), kernel)
        return {"loss": recon + config.mmd_weight * mmd, "recon": recon, "mmd": mmd}


def decoder_gradient_penalty(
    decode: Callable[[torch.Tensor], torch.Tensor], z: torch.Tensor, probe: torch.Tensor
) -> torch.Tensor:
    """Hutchinson estimate of the decoder's squared Jacobian norm, per code, ``(B,)``.

    ``|J(z)^T u|^2`` with ``u`` a standard normal probe has expectation
    ``|J(z)|_F^2``, the squared Frobenius norm of the decoder's Jacobian at ``z``
    (RAE-GP's penalty), at the cost of one backward pass. The graph is kept so
    the penalty can be minimised.

    Args:
        decode: the decoder, ``(B, d) -> (B, C, H, W[, D])``.
        z: codes ``(B, d)`` (part of the graph, or a leaf).
        probe: ``u``, same shape as ``decode(z)``.
    """
    training = torch.is_grad_enabled()
    with torch.enable_grad():  # the Jacobian is needed in evaluation too
        if not z.requires_grad:
            z = z.detach().requires_grad_()
        out = decode(z)
        (grad,) = torch.autograd.grad(out, z, grad_outputs=probe, create_graph=training)
    return (grad * grad).sum(1)


def _decoder_layers(net: nn.Module) -> list[nn.Module]:
    """The linear and (transposed) convolution layers of a VAE network's decoder."""
    parts = [net.decoder] + ([net.decoder_input] if hasattr(net, "decoder_input") else [])
    kinds = (nn.Linear, nn.modules.conv._ConvNd)
    return [m for part in parts for m in part.modules() if isinstance(m, kinds)]


class RAE(AE):
    """Regularised autoencoder; the variant is ``config.model`` (see the module docstring).

    ``rae_sn`` wraps the weight of every decoder layer in
    :func:`torch.nn.utils.parametrizations.spectral_norm` (one power iteration
    per training forward pass; the estimate is frozen in eval mode, so decoding
    is deterministic and the saved weights reproduce it).
    """

    config_class = RAEConfig

    def __init__(self, config: RAEConfig) -> None:
        super().__init__(config)
        if config.model == "rae_sn":
            for layer in _decoder_layers(self.net):
                spectral_norm(layer)

    def decoder_weight_decay(self) -> torch.Tensor:
        """``0.5 * sum |theta|^2`` over every decoder parameter (weights and biases)."""
        decoder = [p for layer in _decoder_layers(self.net) for p in layer.parameters()]
        return 0.5 * sum((p * p).sum() for p in decoder)

    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"loss", "recon", "embedding"[, "decoder"]}`` on a batch ``x``."""
        config = self.config
        z, _ = self.encode(x)
        recon = self.reconstruction(self.decode(z), x).mean()
        embedding = 0.5 * (z * z).sum(1).mean()
        losses = {"recon": recon, "embedding": embedding}
        total = recon + config.embedding_weight * embedding
        if config.model == "rae_l2":
            losses["decoder"] = self.decoder_weight_decay()
        elif config.model == "rae_gp":
            probe = torch.randn((len(z), *config.in_shape), device=z.device)
            losses["decoder"] = decoder_gradient_penalty(self.decode, z, probe).mean()
        if "decoder" in losses:
            total = total + config.decoder_weight * losses["decoder"]
        return {"loss": total, **losses}
