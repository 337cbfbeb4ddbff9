"""Defects a hostile test found in the pipelines: each test here failed before its fix.

Grouped by defect: data lists (leakage), run-directory artefacts (checksums, recovery),
the benchmark sweep (data loss), sizes and YAML (exhaustion), transforms, metrics,
saved folders, and error messages.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from augmentor.data import load_data_dicts
from pipelines.sources import SourceConfig, load_source


def _nifti_cohort(folder: Path, n: int = 8, shape: tuple[int, ...] = (6, 5)) -> list[dict]:
    """``n`` distinct NIfTI images (two classes) in ``folder``, as data dicts with relative paths."""
    import nibabel as nib

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    items = []
    for i in range(n):
        name = f"sub-{i:02d}.nii.gz"
        nib.save(nib.Nifti1Image(rng.uniform(0, 1, size=shape).astype(np.float32), np.eye(4)), folder / name)
        items.append({"image": name, "label": i % 2})
    return items


def _load_list(folder: Path, items: list[dict]) -> None:
    (folder / "list.json").write_text(json.dumps(items))
    load_source(SourceConfig(source="datadicts", path=str(folder / "list.json")))


# --- defect 2: one file listed twice (train/test leakage) -------------------------------------------------


def test_duplicate_data_list_entry_is_refused_naming_both(tmp_path: Path) -> None:
    items = _nifti_cohort(tmp_path)
    items.append(dict(items[2]))
    with pytest.raises(ValueError, match=r"data item 8 .*same file as data item 2"):
        _load_list(tmp_path, items)


def test_one_file_under_two_labels_and_two_spellings_is_refused(tmp_path: Path) -> None:
    items = _nifti_cohort(tmp_path)
    items[5] = {"image": "./sub-04.nii.gz", "label": 1}  # sub-04 is also item 4, label 0
    with pytest.raises(ValueError, match=r"data item 5 .*same file as data item 4"):
        _load_list(tmp_path, items)


def test_a_copy_of_a_file_is_refused_by_content(tmp_path: Path) -> None:
    items = _nifti_cohort(tmp_path)
    shutil.copy(tmp_path / "sub-01.nii.gz", tmp_path / "copy.nii.gz")
    items.append({"image": "copy.nii.gz", "label": 0})
    with pytest.raises(ValueError, match=r"data item 8 .*copy.nii.gz.* same content as data item 1"):
        _load_list(tmp_path, items)


def test_duplicate_data_dicts_are_refused_by_the_api(tmp_path: Path) -> None:
    items = [{**item, "image": str(tmp_path / item["image"])} for item in _nifti_cohort(tmp_path, n=3)]
    with pytest.raises(ValueError, match="same file as data item 0"):
        load_data_dicts(items + [items[0]], transform=None)
