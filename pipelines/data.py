"""Study data: load OASIS-1 (real or simulated), fingerprint it, split it per repetition.

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
from typing import Any

import numpy as np
import torch

from augmentor.utils.io import load_tensors, save_tensors
from oasis import OasisData, load_oasis, load_oasis_npz, load_simulated
from oasis.simulate import default_cache_root

from .config import DataConfig, SplitConfig

__all__ = [
    "CACHE_ENV",
    "StudyData",
    "data_fingerprint",
    "load_study_data",
    "resolve_cache_dir",
    "split_subjects",
]

logger = logging.getLogger(__name__)

CACHE_ENV = "GEOMETRIC_AUGMENTOR_CACHE"
"""Environment variable naming the cache root of simulated cohorts."""


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
