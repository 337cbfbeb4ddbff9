"""Study data: load OASIS-1 (real or simulated), fingerprint it, split it per repetition, balance a training set.

The images are read once by the driver with :mod:`oasis` (real copies are only
ever opened for reading) and stored in the run directory as ``data.pt``, which
every job reads; the split of each repetition is a pure function of the seed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from augmentor.utils.io import load_tensors, save_tensors
from oasis import OasisData, load_oasis, load_oasis_npz, load_simulated
from augmentor.utils.config import Config
from oasis.loader import T88_SHAPE
from oasis.simulate import SimulationConfig, default_cache_root

__all__ = [
    "CACHE_ENV",
    "DataConfig",
    "SplitConfig",
    "StudyData",
    "data_fingerprint",
    "load_study_data",
    "oversample",
    "resolve_cache_dir",
    "split_subjects",
]

logger = logging.getLogger(__name__)

CACHE_ENV = "GEOMETRIC_AUGMENTOR_CACHE"
"""Environment variable naming the cache root of simulated cohorts."""


@dataclasses.dataclass
class DataConfig(Config):
    """Where the images come from and how each subject becomes one 2D image or one 3D volume.

    Attributes:
        data_dir: a local OASIS-1 copy (``disc*/OAS1_XXXX_MR1``), or the authors'
            ``OASIS.npz``; ``null`` uses the simulated cohort of ``simulation``.
        csv: the clinical table; default ``data_dir/oasis_cross-sectional.csv``.
        cohort: ``all`` (100 AD / 316 CN on the real table) or ``clinicadl``
            (age >= 62 with a CDR: 100 AD / 93 CN).
        dim: 2 for the transposed axial slice ``(H, W)``, 3 for the whole volume
            ``(X, Y, Z)`` (the study then runs the 3D VAE and the 3D classifier).
        slice_index: axial slice ``k`` of the T88 volume (``dim: 2``); default the middle one.
        image_size: output ``[H, W]`` (``dim: 2``) or ``[X, Y, Z]`` (``dim: 3``),
            area-averaged; or use ``downsample``.
        downsample: integer factor dividing every size (1 = 208 x 176 slices or
            176 x 208 x 176 volumes on T88; 4 gives 52 x 44 or 44 x 52 x 44).
        cache_dir: where simulated cohorts are cached (see :func:`resolve_cache_dir`).
        simulation: parameters of the simulated cohort (used when ``data_dir`` is null).
    """

    data_dir: str | None = None
    csv: str | None = None
    cohort: Literal["all", "clinicadl"] = "all"
    dim: Literal[2, 3] = 2
    slice_index: int | None = None
    image_size: tuple[int, ...] | None = None
    downsample: int = 1
    cache_dir: str | None = None
    simulation: SimulationConfig = dataclasses.field(default_factory=SimulationConfig)

    def validate(self) -> None:
        if self.downsample < 1:
            self._fail("downsample", f"must be a positive integer, got {self.downsample}")
        if self.image_size is not None:
            if len(self.image_size) != self.dim or min(self.image_size) < 1:
                wanted = "[H, W]" if self.dim == 2 else "[X, Y, Z]"
                self._fail("image_size", f"must be {wanted} with positive sizes (dim {self.dim}), "
                           f"got {list(self.image_size)}")
            if self.downsample != 1:
                self._fail("image_size", "give either image_size or downsample, not both")
        if self.dim == 3 and self.slice_index is not None:
            self._fail("slice_index", "applies to 2D slices only; dim 3 uses the whole volume (set it to null)")
        if self.dim == 3 and self.data_dir is not None and Path(self.data_dir).suffix == ".npz":
            self._fail("dim", "the authors' OASIS.npz holds 2D slices only; dim 3 needs an OASIS-1 copy or the "
                       "simulated cohort")
        if self.slice_index is not None and self.slice_index < 0:
            self._fail("slice_index", f"must be >= 0 or null, got {self.slice_index}")
        if self.data_dir is None and self.slice_index is not None and self.slice_index >= self.simulation.shape[2]:
            self._fail(
                "slice_index",
                f"{self.slice_index} lies outside the simulated grid's {self.simulation.shape[2]} axial slices "
                f"(0..{self.simulation.shape[2] - 1})",
            )
        if self.csv is not None and self.data_dir is None:
            self._fail("csv", "a clinical table needs data_dir (the simulated cohort writes its own)")

    def expected_image_size(self) -> tuple[int, ...]:
        """The ``(H, W)`` or ``(X, Y, Z)`` the loader will produce, predicted from the settings alone."""
        if self.image_size is not None:
            return tuple(self.image_size)
        volume = self.simulation.shape if self.data_dir is None else T88_SHAPE
        x, y, _ = volume
        # The 2D image is the transposed axial slice (Y, X); volumes keep file order (X, Y, Z).
        base = (y, x) if self.dim == 2 else tuple(volume)
        return tuple(n // self.downsample for n in base)

    def data_folders(self) -> list[Path]:
        """The folder the OASIS images are read from (an ``.npz`` file's folder); none for a simulated cohort."""
        if self.data_dir is None:
            return []
        data = Path(self.data_dir).expanduser().resolve()
        return [data.parent if data.suffix == ".npz" else data]


@dataclasses.dataclass
class SplitConfig(Config):
    """Subject-level stratified split; the rest of the subjects is the training set (70 %)."""

    val_fraction: float = 0.1
    test_fraction: float = 0.2

    def validate(self) -> None:
        for name in ("val_fraction", "test_fraction"):
            if not 0 < getattr(self, name) < 1:
                self._fail(name, f"must lie strictly between 0 and 1, got {getattr(self, name)}")
        if self.val_fraction + self.test_fraction >= 0.9:
            self._fail("test_fraction", "val_fraction + test_fraction must leave at least 10 % for training")


@dataclasses.dataclass
class StudyData:
    """Images ``(N, 1, H, W)`` or volumes ``(N, 1, X, Y, Z)`` in [0, 1], labels ``(N,)``, one subject ID each."""

    images: torch.Tensor
    labels: torch.Tensor
    subject_ids: list[str]
    source: str = ""

    @property
    def image_size(self) -> tuple[int, ...]:
        return tuple(self.images.shape[2:])

    def fingerprint(self) -> str:
        return data_fingerprint(self.images, self.labels, self.subject_ids)

    def save(self, path: str | Path) -> None:
        save_tensors(
            path,
            {
                "images": self.images.contiguous(),
                "labels": self.labels,
                "subject_ids": list(self.subject_ids),
                "source": self.source,
                "fingerprint": self.fingerprint(),
            },
        )

    @classmethod
    def load(cls, path: str | Path) -> "StudyData":
        state = load_tensors(path)
        data = cls(state["images"], state["labels"], list(state["subject_ids"]), state.get("source", ""))
        if data.fingerprint() != state["fingerprint"]:
            raise RuntimeError(f"{path}: the stored images do not match their fingerprint (file modified?)")
        return data


def data_fingerprint(images: torch.Tensor, labels: torch.Tensor, subject_ids: list[str]) -> str:
    """16 hex digits of SHA-256 over the images (float32), labels and subject IDs."""
    digest = hashlib.sha256()
    digest.update(str(tuple(images.shape)).encode())
    digest.update(images.detach().cpu().float().contiguous().numpy().tobytes())
    digest.update(labels.detach().cpu().long().numpy().tobytes())
    digest.update("\n".join(subject_ids).encode())
    return digest.hexdigest()[:16]


def resolve_cache_dir(config: DataConfig, override: str | Path | None = None) -> Path:
    """Cache root of simulated cohorts.

    First of: ``override`` (the ``--cache-dir`` flag), ``data.cache_dir`` in the
    config, the ``GEOMETRIC_AUGMENTOR_CACHE`` environment variable, and
    ``$XDG_CACHE_HOME/geometric-augmentor/oasis-sim`` (``~/.cache/...``).
    """
    for candidate in (override, config.cache_dir, os.environ.get(CACHE_ENV)):
        if candidate:
            return Path(candidate).expanduser()
    return default_cache_root()


def load_study_data(config: DataConfig, cache_dir: str | Path | None = None, progress: bool = True) -> StudyData:
    """Load the images the study runs on, as :class:`StudyData`, and log who was left out.

    ``data_dir`` null: the simulated cohort (generated on first use, cached);
    a ``.npz`` file: the authors' ``OASIS.npz``; otherwise a local OASIS-1 copy.
    """
    size = {"image_size": tuple(config.image_size) if config.image_size else None, "downsample": config.downsample}
    oasis_data: OasisData
    if config.data_dir is None:
        oasis_data = load_simulated(
            config.simulation,
            resolve_cache_dir(config, cache_dir),
            progress=progress,
            cohort=config.cohort,
            dim=config.dim,
            slice_index=config.slice_index,
            **size,
        )
    elif Path(config.data_dir).suffix == ".npz":
        oasis_data = load_oasis_npz(Path(config.data_dir).expanduser(), **size)
    else:
        oasis_data = load_oasis(
            Path(config.data_dir).expanduser(),
            None if config.csv is None else Path(config.csv).expanduser(),
            cohort=config.cohort,
            dim=config.dim,
            slice_index=config.slice_index,
            progress=progress,
            **size,
        )
    # A subject left out is a warning: the report must reach a user who configured no logging.
    level = logging.WARNING if oasis_data.skipped else logging.INFO
    logger.log(level, "%s", oasis_data.report())
    return StudyData(oasis_data.images.float(), oasis_data.labels.long(), list(oasis_data.subject_ids), oasis_data.source)


def split_subjects(
    subject_ids: list[str], labels: torch.Tensor, seed: int, config: SplitConfig
) -> dict[str, list[int]]:
    """Stratified train / validation / test split at subject level, seeded.

    All images of a subject land in the same part. Each part holds at least one
    subject per class.

    Returns:
        ``{"train": [...], "val": [...], "test": [...]}``: sorted image indices.

    Raises:
        ValueError: a subject carries two labels, or a class is too small to split.
    """
    from sklearn.model_selection import train_test_split

    labels_np = labels.cpu().numpy()
    subject_label: dict[str, int] = {}
    for sid, label in zip(subject_ids, labels_np.tolist()):
        if subject_label.setdefault(sid, label) != label:
            raise ValueError(f"subject {sid} has images with different labels")
    subjects = sorted(subject_label)
    y = np.array([subject_label[s] for s in subjects])
    classes, counts = np.unique(y, return_counts=True)
    if len(classes) < 2:
        raise ValueError(f"the data hold a single class ({classes.tolist()}); the study needs two")
    small = [int(c) for c, k in zip(classes, counts) if k < 4]
    if small:
        raise ValueError(
            f"class(es) {small} have fewer than 4 subjects; each class needs subjects in the training "
            "(at least 2, for its VAE), validation and test sets"
        )
    n = len(subjects)
    n_test = max(len(classes), int(round(config.test_fraction * n)))
    n_val = max(len(classes), int(round(config.val_fraction * n)))
    index = np.arange(n)
    rest, test = train_test_split(index, test_size=n_test, stratify=y, random_state=seed)
    train, val = train_test_split(rest, test_size=n_val, stratify=y[rest], random_state=seed)
    parts: dict[str, Any] = {"train": train, "val": val, "test": test}
    by_subject = {s: [] for s in subjects}
    for i, sid in enumerate(subject_ids):
        by_subject[sid].append(i)
    return {
        name: sorted(i for k in part.tolist() for i in by_subject[subjects[k]]) for name, part in parts.items()
    }


def oversample(labels: torch.Tensor, seed: int) -> torch.Tensor:
    """Indices that repeat minority-class images (drawn with replacement) up to the majority count.

    Args:
        labels: ``(N,)`` integer class labels.
        seed: seed of the draw (NumPy's ``default_rng``).

    Returns:
        ``(M,)`` int64 indices: ``0 .. N-1`` in order, then the minority classes' repeats.
    """
    rng = np.random.default_rng(seed)
    y = labels.numpy()
    classes, counts = np.unique(y, return_counts=True)
    extra = [
        rng.choice(np.flatnonzero(y == c), size=counts.max() - k, replace=True)
        for c, k in zip(classes, counts)
        if k < counts.max()
    ]
    return torch.from_numpy(np.concatenate([np.arange(len(y))] + extra)).long()
