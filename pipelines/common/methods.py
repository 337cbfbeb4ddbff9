"""The one vocabulary of methods every study uses, how a method name is read, and its display name.

A *method* names the training set a classifier is trained on:

* real images only: ``real`` (as they are), ``resampled`` (minority classes oversampled to
  balance), ``torchio`` (TorchIO affine + elastic deformation redrawn every epoch), ``monai``
  (MONAI rotation, zoom and noise redrawn every epoch);
* ``<source>``: synthetic images only, drawn from a latent *source*;
* ``real+<source>``: the real images and the source's synthetic ones;
* ``<method>@xN``: ``N`` synthetic images per real image of each class (``real+gmm@x5``);
* ``<method>+filtered``: only the synthetic images a classifier of the real images gives their
  class confidently (``real+gmm+filtered@x5``).

A *source* is a generator and one of its samplers: a sampler of the per-class VAEs
(``prior``, ``gmm``, ``riemannian``, ``kde``, ``published``), ``shared-<sampler>`` (one VAE shared
by the classes) or a peer model's ``<model>-<sampler>`` (``ae-gmm``, ``vamp-vamp``, ...). Which
methods a study offers is the study's choice; this module only reads and names them.

Display names follow one rule: a source is ``"<generator> - <sampler>"`` (``"VAE - ours"``,
``"Shared VAE - GMM"``, ``"AE - GMM"``); a method adds ``"Real + "`` or ``"Synthetic only: "`` in
front, ``", confidence-filtered"`` and ``" (xN)"`` behind.

Names of earlier releases (``original``, ``classical``, ``original+<source>``) are still read,
mapped to the current ones with a :class:`DeprecationWarning` (:func:`canonical_method`).
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from typing import Iterable

from augmentor.models.peers import MODEL_LABELS, MODELS, model_samplers
from augmentor.models.peers import SAMPLER_LABELS as MODEL_SAMPLER_LABELS
from augmentor.sampling.samplers import SAMPLERS

__all__ = [
    "DEPRECATED_NAMES",
    "FILTER_MARK",
    "METHOD_LABELS",
    "PEER_SOURCES",
    "RATIO_MARK",
    "REAL_METHODS",
    "REAL_PREFIX",
    "SHARED_PREFIX",
    "SOURCE_SAMPLER_LABELS",
    "Method",
    "canonical_method",
    "canonical_methods",
    "deprecated_name",
    "generator_label",
    "is_filtered",
    "method_label",
    "method_sampler",
    "parse_method",
    "source_label",
    "split_source",
]

logger = logging.getLogger(__name__)

REAL_METHODS: tuple[str, ...] = ("real", "resampled", "torchio", "monai")
"""Methods that train on the real images only (no generative model)."""
REAL_PREFIX = "real+"
"""``real+<source>``: the real images plus the source's synthetic ones."""
SHARED_PREFIX = "shared-"
"""Sources drawn from the shared-decoder augmentor (``GeometricAugmentor(shared_vae=True)``) start with this."""
RATIO_MARK = "@x"
"""``real+gmm@x5``: real + 5 synthetic images per real image of each class."""
FILTER_MARK = "+filtered"
"""``real+gmm+filtered``: only the synthetic images a classifier of the real images is confident about."""

PEER_SOURCES: tuple[str, ...] = tuple(
    f"{model}-{sampler}" for model in MODELS if model != "vae" for sampler in model_samplers(model)
)
"""Latent sources of the peer models, each a per-class model and one of its samplers, keyed
``<model>-<sampler>`` as in the generation benchmark: ``ae-gmm``, ``vamp-vamp``, ``rae_l2-gmm``, ..."""

METHOD_LABELS: dict[str, str] = {
    "real": "Real",
    "resampled": "Real resampled",
    "torchio": "Real + TorchIO augmentation",
    "monai": "Real + MONAI augmentation",
}
"""Display names of the methods without a source; every other name is composed (:func:`method_label`)."""

SOURCE_SAMPLER_LABELS: dict[str, str] = {
    **MODEL_SAMPLER_LABELS,
    # A warning in the name: this chain targets another law than the sampler called "ours".
    "published": "published chain (NOT the Riemannian uniform law)",
}
"""Each sampler's part of a source's display name (``"<generator> - <sampler>"``)."""
_GENERATOR_LABELS = {**MODEL_LABELS, "shared": "Shared VAE"}

DEPRECATED_NAMES: dict[str, str] = {"original": "real", "classical": "torchio"}
"""Method names of earlier releases and their current names (``original+<source>`` reads as ``real+<source>``)."""
_DEPRECATED_PREFIX = "original+"


@dataclasses.dataclass(frozen=True)
class Method:
    """A method name read into its parts.

    Attributes:
        name: the method as written (``real+gmm+filtered@x5``).
        source: the latent source of its synthetic images (``gmm``), None for the real-image methods.
        with_real: whether the real images are part of the training set.
        ratio: synthetic images per real image of each class, None where the study's default count applies.
        filtered: whether only confidently classified synthetic images are kept.
    """

    name: str
    source: str | None
    with_real: bool
    ratio: int | None = None
    filtered: bool = False

    @property
    def base(self) -> str:
        """The method without its ratio and filter marks (``real+gmm``)."""
        if self.source is None:
            return self.name
        return (REAL_PREFIX if self.with_real else "") + self.source

    @property
    def generator(self) -> str | None:
        """The source's generator (``vae``, ``shared`` or a peer model), None without a source."""
        return None if self.source is None else split_source(self.source)[0]

    @property
    def sampler(self) -> str | None:
        """The source's sampler (``gmm``, ``riemannian``, ``vamp``, ...), None without a source."""
        return None if self.source is None else split_source(self.source)[1]


def _is_source(name: str) -> bool:
    return name.removeprefix(SHARED_PREFIX) in SAMPLERS or name in PEER_SOURCES


def parse_method(method: str) -> Method:
    """Read a method name into its parts (see the module docstring for the grammar).

    Raises:
        ValueError: ``method`` is not a name of the vocabulary (the message says what is wrong).
    """
    base, mark, ratio_text = method.partition(RATIO_MARK)
    ratio = None
    if mark:
        if not ratio_text.isdigit() or int(ratio_text) < 1:
            raise ValueError(f"method {method!r}: the ratio after {RATIO_MARK!r} must be a whole number >= 1")
        ratio = int(ratio_text)
    filtered = base.endswith(FILTER_MARK)
    base = base.removesuffix(FILTER_MARK)
    if base in METHOD_LABELS:
        if mark or filtered:
            raise ValueError(f"method {method!r}: a ratio or filter applies to synthetic images, {base!r} has none")
        return Method(method, None, True)
    source = base.removeprefix(REAL_PREFIX)
    if not _is_source(source):
        raise ValueError(f"method {method!r}: {source!r} is no latent source (a sampler of {sorted(SAMPLERS)}, "
                         f"{SHARED_PREFIX}<sampler> or a peer <model>-<sampler>)")
    return Method(method, source, base != source, ratio, filtered)


def method_sampler(method: str) -> str | None:
    """The latent source whose synthetic images ``method`` trains on (``riemannian``, ``shared-gmm``,
    ``vamp-vamp``, ...), or None for the real-image methods and for names outside the vocabulary."""
    try:
        return parse_method(method).source
    except ValueError:
        return None


def is_filtered(method: str) -> bool:
    """Whether ``method`` keeps only the synthetic images a real-image classifier is confident about."""
    return method.split(RATIO_MARK)[0].endswith(FILTER_MARK)


def split_source(source: str) -> tuple[str, str]:
    """A latent source's generator and sampler: ``"gmm"`` -> ``("vae", "gmm")`` (the per-class VAEs),
    ``"shared-gmm"`` -> ``("shared", "gmm")`` (the shared-decoder VAE), ``"ae-gmm"`` -> ``("ae", "gmm")``
    (a peer model per class)."""
    if source.startswith(SHARED_PREFIX):
        return "shared", source.removeprefix(SHARED_PREFIX)
    if source in PEER_SOURCES:
        model, sampler = source.split("-", 1)
        return model, sampler
    return "vae", source


def generator_label(generator: str, sampler: str) -> str:
    """Display name of a generator's sampler, the one rule of every table: ``("vae", "riemannian")`` ->
    ``"VAE - ours"``, ``("shared", "gmm")`` -> ``"Shared VAE - GMM"``, ``("vamp", "vamp")`` -> ``"VAMP - VAMP"``."""
    return f"{_GENERATOR_LABELS.get(generator, generator)} - {SOURCE_SAMPLER_LABELS.get(sampler, sampler)}"


def source_label(source: str) -> str:
    """Display name of a latent source (:func:`generator_label` of its :func:`split_source`)."""
    return generator_label(*split_source(source))


def method_label(method: str) -> str:
    """Display name of a method (``"Real + VAE - GMM, confidence-filtered (x5)"``); a name outside the
    vocabulary is shown as it is."""
    try:
        parsed = parse_method(canonical_method(method, warn=False))
    except ValueError:
        return method
    if parsed.source is None:
        return METHOD_LABELS[parsed.name]
    label = ("Real + " if parsed.with_real else "Synthetic only: ") + source_label(parsed.source)
    if parsed.filtered:
        label += ", confidence-filtered"
    return f"{label} (x{parsed.ratio})" if parsed.ratio else label


def deprecated_name(method: str) -> str:
    """The name ``method`` had in earlier releases (itself where it was not renamed): ``real`` -> ``original``,
    ``torchio`` -> ``classical``, ``real+<source>`` -> ``original+<source>``."""
    for old, new in DEPRECATED_NAMES.items():
        if method == new:
            return old
    if method.startswith(REAL_PREFIX):
        return _DEPRECATED_PREFIX + method.removeprefix(REAL_PREFIX)
    return method


def canonical_method(method: str, warn: bool = True) -> str:
    """The current name of ``method``: a name of an earlier release is mapped (``original`` -> ``real``,
    ``classical`` -> ``torchio``, ``original+<source>`` -> ``real+<source>``), with a
    :class:`DeprecationWarning` and a log line when ``warn``; any other name is returned as it is."""
    if method in DEPRECATED_NAMES:
        new = DEPRECATED_NAMES[method]
    elif method.startswith(_DEPRECATED_PREFIX):
        new = REAL_PREFIX + method.removeprefix(_DEPRECATED_PREFIX)
    else:
        return method
    if warn:
        message = f"method {method!r} is now called {new!r}; the old name will stop working in a later release"
        warnings.warn(message, DeprecationWarning, stacklevel=3)
        logger.warning(message)
    return new


def canonical_methods(methods: Iterable[str], warn: bool = True) -> tuple[str, ...]:
    """:func:`canonical_method` of every name, in order."""
    return tuple(canonical_method(method, warn) for method in methods)
