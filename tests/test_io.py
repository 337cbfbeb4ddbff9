"""Atomic writes, checked saved folders, and image export."""

import json

import nibabel as nib
import numpy as np
import pytest
import torch

from augmentor.io import (
    CorruptSaveError,
    OutputExistsError,
    atomic_write,
    export_npz,
    export_png,
    read_saved_folder,
    saved_folder,
)


def test_atomic_write_leaves_old_content_on_failure(tmp_path):
    target = tmp_path / "result.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_write(target, "w") as handle:
            handle.write("half")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_saved_folder_is_published_whole_or_not_at_all(tmp_path):
    with pytest.raises(RuntimeError):
        with saved_folder(tmp_path / "model", "thing") as tmp:
            (tmp / "a.txt").write_text("a")
            raise RuntimeError("crash")
    assert list(tmp_path.iterdir()) == []
    with saved_folder(tmp_path / "model", "thing") as tmp:
        (tmp / "a.txt").write_text("a")
    assert read_saved_folder(tmp_path / "model", "thing") == tmp_path / "model"
    manifest = json.loads((tmp_path / "model" / "manifest.json").read_text())
    assert set(manifest["files"]) == {"a.txt"}
    with pytest.raises(CorruptSaveError, match="holds a saved 'thing'"):
        read_saved_folder(tmp_path / "model", "other")
    with pytest.raises(OutputExistsError):
        with saved_folder(tmp_path / "model", "thing"):
            pass


def test_export_png_and_npz(tmp_path):
    images, labels = torch.rand(3, 1, 5, 6), torch.tensor([0, 1, 1])
    paths = export_png(images, tmp_path / "png", labels)
    assert [p.name for p in paths] == ["synthetic_00000_label0.png", "synthetic_00001_label1.png", "synthetic_00002_label1.png"]
    npz = export_npz(images, tmp_path / "set.npz", labels)
    with np.load(npz) as data:
        np.testing.assert_array_equal(data["images"], images.numpy())
        np.testing.assert_array_equal(data["labels"], labels.numpy())
    with pytest.raises(OutputExistsError):
        export_npz(images, npz, labels)
    with pytest.raises(ValueError, match="PNG export"):
        export_png(torch.rand(2, 1, 4, 4, 4), tmp_path / "png3d")


def test_export_nifti_3d_keeps_affine(tmp_path):
    from augmentor.io import export_nifti

    volume = torch.rand(1, 1, 4, 5, 6)
    affine = np.diag([1.0, 2.0, 3.0, 1.0])
    (path,) = export_nifti(volume, tmp_path / "nii", [1], affine)
    image = nib.load(path)
    np.testing.assert_allclose(image.affine, affine)
    np.testing.assert_allclose(image.get_fdata(), volume[0, 0].numpy(), rtol=1e-6)
