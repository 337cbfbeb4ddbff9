"""Variational autoencoders for 2D and 3D images, built from MONAI blocks.

The geometric method of Chadebec & Allassonnière (NeurIPS 2022) trains a
*vanilla* VAE (diagonal Gaussian posterior, ELBO = reconstruction + beta * KL to
N(0, I)) and only changes how latent codes are sampled afterwards. This module
holds that VAE:

* :class:`VAE`: convolutional encoder/decoder for ``(C, H, W)`` or ``(C, H, W, D)``
  images, made of :class:`monai.networks.blocks.Convolution` layers;
* :class:`MLPVAE`: fully connected encoder/decoder on flattened images;
* :class:`VAEConfig`: the validated, JSON-serialisable description of either;
* :func:`vae_preset`: the paper's architectures (Table 3) and tiny test models;
* :func:`vae_loss`: the per-sample summed reconstruction + beta * KL.

Both networks end with a sigmoid, so images must be scaled to [0, 1].
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Literal, NamedTuple, Sequence

import torch
import torch.nn.functional as F
from monai.networks.blocks import Convolution
from monai.networks.layers.utils import get_act_layer
from torch import nn

from augmentor.utils.config import Config
from augmentor.utils.limits import TRAINING_COPIES, check_fits, vae_parameter_count

__all__ = [
    "VAEConfig",
    "VAEOutput",
    "VAE",
    "MLPVAE",
    "build_vae",
    "default_vae_config",
    "vae_preset",
    "VAE_PRESETS",
    "vae_loss",
    "reconstruction_error",
]

Activation = Literal["relu", "leakyrelu", "prelu", "elu", "selu", "celu", "gelu", "relu6", "swish", "mish", "tanh"]


def _same_padding(kernel_size: int) -> int:
    return (kernel_size - 1) // 2


def _conv_out(size: int, kernel_size: int, stride: int) -> int:
    """Output length of a strided convolution with :func:`_same_padding`."""
    return (size + 2 * _same_padding(kernel_size) - kernel_size) // stride + 1


def _transposed_output_padding(kernel_size: int, stride: int) -> int:
    """Output padding that makes a transposed convolution multiply the length by ``stride``.

    It is exact for odd kernels; for an even kernel with stride 1 the layer grows
    the length by one instead, which the final center crop absorbs.
    """
    return max(0, stride - kernel_size + 2 * _same_padding(kernel_size))


@dataclasses.dataclass
class VAEConfig(Config):
    """Architecture and loss settings of a VAE.

    Args:
        in_shape: image shape without the batch axis, ``(C, H, W)`` or ``(C, H, W, D)``.
        latent_dim: dimension ``d`` of the latent space.
        kind: ``"conv"`` for :class:`VAE`, ``"mlp"`` for :class:`MLPVAE`.
        channels: output channels of the encoder convolutions; the decoder mirrors them
            (``kind="conv"`` only).
        strides: stride of each encoder convolution, same length as ``channels``.
        kernel_size: kernel size of every convolution.
        norm: normalisation after each hidden convolution.
        act: activation after each hidden layer (MONAI activation name).
        hidden: widths of the MLP hidden layers, input side first (``kind="mlp"`` only).
        log_var_bound: if set, the log-variance head outputs
            ``bound * tanh(raw / bound)`` so posterior variances stay within
            ``[exp(-bound), exp(bound)]``; this keeps the Riemannian metric built
            from them well conditioned.
        reconstruction: ``"mse"`` (summed squared error) or ``"bce"`` (summed
            binary cross-entropy).
        beta: weight of the KL term (1 is the standard ELBO) for images of
            ``kl_reference_size`` values; see :attr:`kl_weight`.
        kl_reference_size: number of image values (``C x H x W[ x D]``) at which
            ``beta`` is meant. The reconstruction term is a sum over pixels, so
            the same ``beta`` weighs the KL more, relative to the data, on
            smaller images (16 times more at 52 x 44 than at 208 x 176). With a
            reference size the KL weight actually used is ``beta * n_values /
            kl_reference_size``: the balance per pixel stays the one ``beta``
            has at the reference size, whatever the image is resampled to.
            ``None`` (the default, and what configs written before this setting
            load as) uses ``beta`` as given.
    """

    in_shape: tuple[int, ...]
    latent_dim: int = 16
    kind: Literal["conv", "mlp"] = "conv"
    channels: tuple[int, ...] = (32, 64, 128)
    strides: tuple[int, ...] = (2, 2, 2)
    kernel_size: int = 3
    norm: Literal["batch", "instance", "none"] = "batch"
    act: Activation = "relu"
    hidden: tuple[int, ...] = (512, 256)
    log_var_bound: float | None = None
    reconstruction: Literal["mse", "bce"] = "mse"
    beta: float = 1.0
    kl_reference_size: int | None = None

    @property
    def kl_weight(self) -> float:
        """The weight of the KL term in the loss: ``beta``, rescaled by the image size when
        ``kl_reference_size`` is set (``beta * prod(in_shape) / kl_reference_size``)."""
        if self.kl_reference_size is None:
            return self.beta
        return self.beta * math.prod(self.in_shape) / self.kl_reference_size

    @property
    def spatial_dims(self) -> int:
        """2 for ``(C, H, W)`` images, 3 for ``(C, H, W, D)`` volumes."""
        return len(self.in_shape) - 1

    def encoder_grid(self) -> tuple[int, ...]:
        """Spatial size of the last encoder feature map (``kind="conv"``)."""
        grid = self.in_shape[1:]
        for stride in self.strides:
            grid = tuple(_conv_out(n, self.kernel_size, stride) for n in grid)
        return grid

    @property
    def min_train_batch(self) -> int:
        """Fewest images every training batch must hold: 2 or 1.

        Batch normalisation takes each channel's statistics over the batch and
        the feature map, so when the last encoder feature map is a single voxel
        (``encoder_grid()`` all ones) a batch of one image has one value per
        channel and cannot be normalised.
        """
        if self.kind == "conv" and self.norm == "batch" and math.prod(self.encoder_grid()) == 1:
            return 2
        return 1

    def validate(self) -> None:
        if len(self.in_shape) not in (3, 4):
            self._fail("in_shape", f"expected (C, H, W) or (C, H, W, D), got {self.in_shape}")
        if min(self.in_shape) < 1:
            self._fail("in_shape", f"all sizes must be positive, got {self.in_shape}")
        if self.latent_dim < 1:
            self._fail("latent_dim", f"must be positive, got {self.latent_dim}")
        for name in ("channels", "strides", "hidden"):
            values = getattr(self, name)
            if not values or min(values) < 1:
                self._fail(name, f"must be a non-empty list of positive integers, got {list(values)}")
        if len(self.channels) != len(self.strides):
            self._fail(
                "strides",
                f"needs one stride per encoder layer: {len(self.strides)} strides for {len(self.channels)} channels",
            )
        if self.kernel_size < 1:
            self._fail("kernel_size", f"must be positive, got {self.kernel_size}")
        if self.log_var_bound is not None and not (0 < self.log_var_bound < math.inf):
            self._fail("log_var_bound", f"must be a positive number or null, got {self.log_var_bound}")
        if not (0 <= self.beta < math.inf):
            self._fail("beta", f"must be a non-negative number, got {self.beta}")
        if self.kl_reference_size is not None and self.kl_reference_size < 1:
            self._fail("kl_reference_size", f"must be a positive number of image values or null, "
                                            f"got {self.kl_reference_size}")
        if self.kind == "conv" and min(self.encoder_grid()) < 1:
            self._fail(
                "in_shape",
                f"spatial size {self.in_shape[1:]} vanishes after strides {list(self.strides)} "
                f"with kernel {self.kernel_size}; use fewer or smaller strides",
            )
        check_fits(math.prod(self.in_shape), f"VAEConfig.in_shape {list(self.in_shape)}: one image")
        parameters = vae_parameter_count(self)
        check_fits(parameters * TRAINING_COPIES, f"VAEConfig (latent_dim {self.latent_dim}, in_shape "
                   f"{list(self.in_shape)}): the VAE's {parameters:,} parameters with their gradients and "
                   "optimiser state")
        if self.kind == "conv" and self.norm == "instance" and math.prod(self.encoder_grid()) == 1:
            # Instance normalisation takes statistics over each image's feature map alone.
            self._fail(
                "norm",
                f"'instance' cannot normalise the last encoder feature map of size {self.encoder_grid()} "
                f"(one value per channel); use norm='batch' or 'none', or fewer or smaller strides",
            )


class VAEOutput(NamedTuple):
    """Result of a VAE forward pass.

    Attributes:
        recon: reconstruction in [0, 1], ``(B, C, H, W[, D])``.
        mu: posterior means, ``(B, d)``.
        log_var: posterior log-variances, ``(B, d)``.
        z: reparameterised sample ``mu + exp(log_var / 2) * eps``, ``(B, d)``.
    """

    recon: torch.Tensor
    mu: torch.Tensor
    log_var: torch.Tensor
    z: torch.Tensor


class _BaseVAE(nn.Module):
    """Shared heads, reparameterisation and forward pass; subclasses define the bodies."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        self.config = config

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _check_input(self, x: torch.Tensor) -> None:
        if tuple(x.shape[1:]) != self.config.in_shape:
            raise ValueError(
                f"{type(self).__name__} expects inputs of shape (B, {', '.join(map(str, self.config.in_shape))}), "
                f"got {tuple(x.shape)}"
            )

    def _check_latent(self, z: torch.Tensor) -> None:
        if z.ndim != 2 or z.shape[1] != self.config.latent_dim:
            raise ValueError(f"expected latent codes of shape (B, {self.config.latent_dim}), got {tuple(z.shape)}")

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior parameters of ``x``.

        Args:
            x: images ``(B, C, H, W[, D])`` matching ``config.in_shape``.

        Returns:
            ``(mu, log_var)``, each ``(B, d)``.
        """
        self._check_input(x)
        h = self._features(x)
        log_var = self.log_var_head(h)
        bound = self.config.log_var_bound
        if bound is not None:
            log_var = bound * torch.tanh(log_var / bound)
        return self.mu_head(h), log_var

    def forward(self, x: torch.Tensor) -> VAEOutput:
        """Encode, draw ``z`` with the reparameterisation trick, decode.

        The noise comes from the global torch RNG, so runs are reproducible after
        ``torch.manual_seed``.

        Args:
            x: images ``(B, C, H, W[, D])`` in [0, 1].
        """
        mu, log_var = self.encode(x)
        z = mu + torch.exp(0.5 * log_var) * torch.randn_like(mu)
        return VAEOutput(self.decode(z), mu, log_var, z)

    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The training objective on a batch: :func:`vae_loss` of ``forward(x)``.

        Every model the trainer fits (:func:`augmentor.training.train_vae`) has this
        method; it returns scalars, ``"loss"`` the one minimised.
        """
        return vae_loss(self(x), x, self.config.kl_weight, self.config.reconstruction)


class VAE(_BaseVAE):
    """Convolutional VAE for 2D or 3D images.

    Encoder: ``len(channels)`` strided convolutions (conv -> norm -> act), flatten,
    and two linear heads giving ``mu`` and ``log_var``. Decoder: a linear layer to a
    ``(channels[-1], *grid)`` map with ``grid = ceil(size / prod(strides))`` per
    axis, transposed convolutions mirroring the encoder strides (each multiplies
    the size by its stride), a stride-1 transposed convolution to ``C`` channels,
    a sigmoid, and a center crop to ``in_shape``. Rounding the grid up and cropping
    the surplus makes any input size work (208 x 176, 30 x 26, odd 3D sizes)
    without per-size padding tables.

    Args:
        config: a :class:`VAEConfig` with ``kind="conv"``.

    Example::

        >>> model = VAE(VAEConfig(in_shape=(1, 30, 26), latent_dim=8))
        >>> model(torch.rand(4, 1, 30, 26)).recon.shape
        torch.Size([4, 1, 30, 26])
    """

    def __init__(self, config: VAEConfig) -> None:
        super().__init__(config)
        dims, k = config.spatial_dims, config.kernel_size
        norm = None if config.norm == "none" else config.norm
        in_channels = config.in_shape[0]

        def stack(channels: list[int], strides: list[int], start: int, transposed: bool) -> list[nn.Module]:
            """Strided (transposed) convolutions with norm and activation, ``start`` input channels."""
            layers: list[nn.Module] = []
            for out, stride in zip(channels, strides):
                extra = {"output_padding": _transposed_output_padding(k, stride)} if transposed else {}
                layers.append(
                    Convolution(
                        dims, start, out, strides=stride, kernel_size=k, padding=_same_padding(k),
                        act=config.act, norm=norm, is_transposed=transposed, **extra,
                    )
                )
                start = out
            return layers

        self.encoder = nn.Sequential(*stack(list(config.channels), list(config.strides), in_channels, False))
        flat = config.channels[-1] * math.prod(config.encoder_grid())
        self.mu_head = nn.Linear(flat, config.latent_dim)
        self.log_var_head = nn.Linear(flat, config.latent_dim)

        total_stride = math.prod(config.strides)
        self.grid = tuple(math.ceil(n / total_stride) for n in config.in_shape[1:])
        self.decoder_input = nn.Linear(config.latent_dim, config.channels[-1] * math.prod(self.grid))
        # Mirror of the encoder: layer i maps channels[i] -> channels[i - 1]; the
        # outermost one keeps channels[0] so the output head below sees as many
        # feature maps as the first encoder layer produced.
        outs = list(config.channels[-2::-1]) + [config.channels[0]]
        decoder = stack(outs, list(reversed(config.strides)), config.channels[-1], True)
        decoder.append(
            Convolution(
                dims,
                config.channels[0],
                in_channels,
                strides=1,
                kernel_size=k,
                padding=_same_padding(k),
                output_padding=_transposed_output_padding(k, 1),
                conv_only=True,
                is_transposed=True,
            )
        )
        decoder.append(nn.Sigmoid())
        self.decoder = nn.Sequential(*decoder)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x).flatten(1)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Images of latent codes.

        Args:
            z: latent codes ``(B, d)``.

        Returns:
            ``(B, C, H, W[, D])`` with values in [0, 1], exactly ``config.in_shape``.
        """
        self._check_latent(z)
        h = self.decoder_input(z).view(z.shape[0], self.config.channels[-1], *self.grid)
        out = self.decoder(h)
        # The grid was rounded up, so the output is at least in_shape: crop the centre.
        crop = [slice(None), slice(None)]
        for have, want in zip(out.shape[2:], self.config.in_shape[1:]):
            start = (have - want) // 2
            crop.append(slice(start, start + want))
        return out[tuple(crop)]


class MLPVAE(_BaseVAE):
    """Fully connected VAE on flattened images of any shape.

    Encoder: ``prod(in_shape) -> hidden[0] -> ... -> hidden[-1]`` (linear -> act),
    then linear heads to ``mu`` and ``log_var``. Decoder: the mirror image,
    ``d -> hidden[-1] -> ... -> hidden[0] -> prod(in_shape)``, a sigmoid and a
    reshape to ``in_shape``. ``channels``, ``strides``, ``kernel_size`` and
    ``norm`` of the config are not used.

    Args:
        config: a :class:`VAEConfig` with ``kind="mlp"``.
    """

    def __init__(self, config: VAEConfig) -> None:
        super().__init__(config)
        features = math.prod(config.in_shape)
        widths = (features, *config.hidden)
        self.encoder = self._mlp(widths, config.act)
        self.mu_head = nn.Linear(widths[-1], config.latent_dim)
        self.log_var_head = nn.Linear(widths[-1], config.latent_dim)
        self.decoder = nn.Sequential(
            self._mlp((config.latent_dim, *reversed(config.hidden)), config.act),
            nn.Linear(config.hidden[0], features),
            nn.Sigmoid(),
        )

    @staticmethod
    def _mlp(widths: tuple[int, ...], act: str) -> nn.Sequential:
        layers: list[nn.Module] = []
        for n_in, n_out in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(n_in, n_out), get_act_layer(act)]
        return nn.Sequential(*layers)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x.flatten(1))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Images of latent codes.

        Args:
            z: latent codes ``(B, d)``.

        Returns:
            ``(B, C, H, W[, D])`` with values in [0, 1].
        """
        self._check_latent(z)
        return self.decoder(z).view(z.shape[0], *self.config.in_shape)


def build_vae(config: VAEConfig) -> VAE | MLPVAE:
    """The network described by ``config``: :class:`VAE` or :class:`MLPVAE` by ``config.kind``."""
    return VAE(config) if config.kind == "conv" else MLPVAE(config)


_PAPER_CONV = {"channels": (128, 256, 512, 1024), "strides": (2, 2, 2, 2), "norm": "batch", "act": "relu"}

_PRESETS: dict[str, dict[str, Any]] = {
    "mnist": {"in_shape": (1, 32, 32), "latent_dim": 16, "kernel_size": 4, **_PAPER_CONV},
    "cifar": {"in_shape": (3, 32, 32), "latent_dim": 32, "kernel_size": 4, **_PAPER_CONV},
    "celeba": {"in_shape": (3, 64, 64), "latent_dim": 64, "kernel_size": 5, **_PAPER_CONV},
    "oasis": {
        "in_shape": (1, 208, 176),
        "latent_dim": 16,
        "channels": (64, 128, 256, 512, 1024),
        "strides": (2, 2, 2, 2, 2),
        "kernel_size": 5,
        "norm": "none",
        "act": "relu",
        # The authors' OASIS model squashes the log-variance with tanh, i.e. bound 1.
        "log_var_bound": 1.0,
        "beta": 1.0,
    },
    "svhn_mlp": {"in_shape": (3, 32, 32), "latent_dim": 16, "kind": "mlp", "hidden": (1000, 500), "act": "relu"},
    "tiny2d": {"in_shape": (1, 16, 16), "latent_dim": 4, "channels": (8, 16), "strides": (2, 2), "kernel_size": 3},
    "tiny3d": {"in_shape": (1, 12, 12, 12), "latent_dim": 4, "channels": (4, 8), "strides": (2, 2), "kernel_size": 3},
}

VAE_PRESETS: tuple[str, ...] = tuple(_PRESETS)
"""Names accepted by :func:`vae_preset`."""


def default_vae_config(in_shape: Sequence[int], latent_dim: int = 16) -> VAEConfig:
    """A small convolutional VAE for images of ``in_shape`` ``(C, H, W[, D])``.

    Three stride-2 convolutions (fewer when the image is too small for them).
    """
    in_shape = tuple(int(s) for s in in_shape)
    n_layers = 3
    while n_layers > 1 and min(in_shape[1:]) < 2**n_layers:
        n_layers -= 1
    channels = (16, 32, 64)[:n_layers] if len(in_shape) == 4 else (32, 64, 128)[:n_layers]
    return VAEConfig(in_shape=in_shape, latent_dim=latent_dim, channels=channels, strides=(2,) * n_layers)


def vae_preset(name: str, **overrides: Any) -> VAEConfig:
    """Configuration of a named architecture, with optional field overrides.

    Paper architectures (Table 3 of the paper; SVHN from its text):

    * ``"mnist"``: 1 x 32 x 32, latent 16, Conv 128-256-512-1024 k4 s2 BatchNorm ReLU.
    * ``"cifar"``: 3 x 32 x 32, latent 32, same network.
    * ``"celeba"``: 3 x 64 x 64, latent 64, same channels with k5.
    * ``"oasis"``: 1 x 208 x 176, latent 16, Conv 64-128-256-512-1024 k5 s2, no
      normalisation, log-variance bounded by ``tanh`` (bound 1) as in the authors' code.
    * ``"svhn_mlp"``: 3 x 32 x 32 MLP 3072-1000-500-16, mirrored decoder.

    Small models for tests and demos: ``"tiny2d"`` (1 x 16 x 16) and ``"tiny3d"``
    (1 x 12 x 12 x 12).

    All presets use the paper's ELBO weight ``beta = 1``; the authors' public code
    used 0.01 (MNIST), 0.001 (CIFAR10) and 0.05 (CelebA), e.g.
    ``vae_preset("mnist", beta=0.01)``.

    Deviations from the paper's decoders, which are hand-tuned per image size: the
    decoder here mirrors the encoder generically (linear layer to a
    ``channels[-1] x ceil(size / 16 or 32)`` grid, one transposed convolution per
    encoder stride, a stride-1 output layer, center crop). So the linear layer is
    smaller (e.g. MNIST: 16 -> 1024 x 2 x 2 instead of 16 -> 1024 x 8 x 8), there
    are as many upsampling layers as encoder layers, OASIS uses stride 2 everywhere
    (the paper's first decoder layer has stride (3, 2)) and decodes 224 x 192 before
    cropping to 208 x 176, and paddings are "same" rather than the paper's mixed ones.

    Args:
        name: one of :data:`VAE_PRESETS`.
        overrides: :class:`VAEConfig` fields to change, e.g. ``latent_dim=8``.

    Raises:
        ValueError: unknown preset name.
        ConfigError: unknown or invalid override.
    """
    if name not in _PRESETS:
        raise ValueError(f"unknown VAE preset {name!r}; valid names are {', '.join(VAE_PRESETS)}")
    return VAEConfig.from_dict({**_PRESETS[name], **overrides})


def vae_loss(
    output: VAEOutput, x: torch.Tensor, beta: float = 1.0, reconstruction: Literal["mse", "bce"] = "mse"
) -> dict[str, torch.Tensor]:
    """Negative ELBO (up to constants), averaged over the batch.

    Args:
        output: the model's forward output for ``x``.
        x: target images ``(B, C, H, W[, D])`` in [0, 1].
        beta: weight of the KL term.
        reconstruction: ``"mse"``: squared error summed over pixels; ``"bce"``:
            binary cross-entropy summed over pixels.

    Returns:
        ``{"loss": recon + beta * kl, "recon": ..., "kl": ...}``, scalars, where
        ``kl = KL(N(mu, diag(exp(log_var))) || N(0, I))`` summed over latent axes.
    """
    recon = reconstruction_error(output.recon, x, reconstruction).mean()
    mu, log_var = output.mu, output.log_var
    kl = (-0.5 * (1 + log_var - mu**2 - log_var.exp()).sum(1)).mean()
    return {"loss": recon + beta * kl, "recon": recon, "kl": kl}


def reconstruction_error(
    recon: torch.Tensor, x: torch.Tensor, reconstruction: Literal["mse", "bce"] = "mse"
) -> torch.Tensor:
    """Per-image reconstruction error summed over pixels, ``(B,)``.

    It is ``-log p(x | z)`` up to a constant: ``"mse"`` the squared error (a
    Gaussian decoder of variance 1/2), ``"bce"`` the binary cross-entropy (a
    Bernoulli decoder).

    Args:
        recon: decoded images ``(B, C, H, W[, D])`` in [0, 1].
        x: target images, same shape, in [0, 1].
        reconstruction: ``"mse"`` or ``"bce"``.
    """
    if recon.shape != x.shape:
        raise ValueError(f"reconstructions {tuple(recon.shape)} and images {tuple(x.shape)} differ in shape")
    if reconstruction == "mse":
        per_pixel = (recon - x) ** 2
    elif reconstruction == "bce":
        per_pixel = F.binary_cross_entropy(recon, x, reduction="none")
    else:
        raise ValueError(f"reconstruction must be 'mse' or 'bce', got {reconstruction!r}")
    return per_pixel.flatten(1).sum(1)
