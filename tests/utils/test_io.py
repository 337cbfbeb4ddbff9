"""Atomic writes, checked saved folders, and image export."""

import json

import nibabel as nib
import numpy as np
import pytest
import torch

from augmentor.utils.io import (
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
    from augmentor.utils.io import export_nifti

    volume = torch.rand(1, 1, 4, 5, 6)
    affine = np.diag([1.0, 2.0, 3.0, 1.0])
    (path,) = export_nifti(volume, tmp_path / "nii", [1], affine)
    image = nib.load(path)
    np.testing.assert_allclose(image.affine, affine)
    np.testing.assert_allclose(image.get_fdata(), volume[0, 0].numpy(), rtol=1e-6)


@pytest.mark.parametrize("prefix", ["../existing/name", "sub/name", "/abs", "a\\b", "..", ".", "", ".hidden", "-x"])
@pytest.mark.parametrize("exporter", ["nifti", "png"])
def test_export_prefix_cannot_escape_the_folder(tmp_path, exporter, prefix):
    from augmentor.utils.io import export_nifti

    existing = tmp_path / "existing"
    existing.mkdir()
    precious = existing / "name_00000_label0.nii.gz"
    precious.write_text("finished result")
    export = export_nifti if exporter == "nifti" else export_png
    with pytest.raises(ValueError, match="prefix must be a plain file-name prefix"):
        export(torch.rand(1, 1, 4, 4), tmp_path / "out" / "new", [0], prefix=prefix)
    assert precious.read_text() == "finished result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing"]  # no output folder, no temporary


@pytest.mark.parametrize("exporter", ["nifti", "png"])
def test_export_failing_midway_leaves_no_folder(tmp_path, monkeypatch, exporter):
    import augmentor.utils.io

    written = []

    def fail_on_second_file(path, data):
        if written:
            raise OSError("disk full")
        written.append(path)
        real_write_bytes(path, data)

    real_write_bytes = augmentor.utils.io.write_bytes
    monkeypatch.setattr(augmentor.utils.io, "write_bytes", fail_on_second_file)
    export = augmentor.utils.io.export_nifti if exporter == "nifti" else export_png
    with pytest.raises(OSError, match="disk full"):
        export(torch.rand(3, 1, 4, 4), tmp_path / "out", [0, 1, 1])
    assert len(written) == 1 and list(tmp_path.iterdir()) == []  # neither the folder nor a temporary


def test_export_into_an_empty_folder_and_refusing_a_full_one(tmp_path):
    (tmp_path / "empty").mkdir()
    paths = export_png(torch.rand(2, 1, 4, 4), tmp_path / "empty", [0, 1])
    assert sorted(p.name for p in (tmp_path / "empty").iterdir()) == sorted(p.name for p in paths)
    with pytest.raises(OutputExistsError):
        export_png(torch.rand(2, 1, 4, 4), tmp_path / "empty", [0, 1])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]


@pytest.mark.parametrize(
    "labels, error, message",
    [
        ("011", TypeError, "got the string '011'"),
        ([0, 0.7, 1], ValueError, r"labels\[1\] is 0.7; class labels must be integers"),
        (["AD", "CN", "CN"], TypeError, r"labels\[0\] is 'AD' \(str\).*map class names to integers"),
        ([0, None, 1], TypeError, r"labels\[1\] is None"),
        ([0, 2**70, 1], ValueError, r"labels\[1\] is \d+, outside the int64 range"),
        ([0, 1], ValueError, r"shape \(3,\), one per image"),
        ([[0], [1], [1]], TypeError, r"labels\[0\] is \[0\] \(list\)"),
        (np.zeros((3, 1)), ValueError, r"shape \(3,\)"),
    ],
)
@pytest.mark.parametrize("exporter", ["nifti", "png", "npz"])
def test_export_labels_must_be_integers(tmp_path, exporter, labels, error, message):
    from augmentor.utils.io import export_nifti

    images = torch.rand(3, 1, 4, 4)
    with pytest.raises(error, match=message):
        if exporter == "npz":
            export_npz(images, tmp_path / "set.npz", labels)
        else:
            (export_nifti if exporter == "nifti" else export_png)(images, tmp_path / "out", labels)
    assert list(tmp_path.iterdir()) == []


def test_class_labels_keep_integer_ids():
    from augmentor.utils.io import class_id, class_labels

    assert class_labels(np.array([0, 5, 5])).tolist() == [0, 5, 5]  # kept, not remapped to 0, 1
    assert class_labels(torch.tensor([1.0, 0.0])).tolist() == [1, 0]  # integral floats are integers
    assert class_labels([True, False]).tolist() == [1, 0]
    assert class_id(np.int64(-3)) == -3 and class_id(torch.tensor([4])) == 4
    with pytest.raises(ValueError, match="single integer class id"):
        class_id(torch.tensor([1, 2]))


@pytest.mark.parametrize("late", ["file_in_folder", "file"])
def test_output_appearing_while_saving_is_never_clobbered(tmp_path, late):
    target = tmp_path / "model"
    with pytest.raises(OutputExistsError, match="already holds files"):
        with saved_folder(target, "thing") as tmp:
            (tmp / "a.txt").write_text("a")
            if late == "file":  # another process publishes its result meanwhile
                target.write_text("finished result")
            else:
                target.mkdir()
                (target / "result.txt").write_text("finished result")
    found = target if late == "file" else target / "result.txt"
    assert found.read_text() == "finished result"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # the temporary is gone
