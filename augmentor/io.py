"""Safe, atomic input/output: saved-model folders, tensors, and image export.

Rules kept here so that every module inherits them:

* every file is written to a temporary name in the same folder and renamed into
  place, so a crash never leaves a half-written file under the final name;
* a saved folder is assembled under a temporary name and renamed whole, and it
  carries a manifest of SHA-256 checksums so that a truncated or edited folder
  is reported instead of half-loaded;
* tensors are stored with ``torch.save`` and read with ``weights_only=True``:
  loading never unpickles arbitrary code;
* an output folder that already holds files is never written into.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

__all__ = [
    "CorruptSaveError",
    "OutputExistsError",
    "atomic_write",
    "write_json",
    "write_bytes",
    "save_tensors",
    "load_tensors",
    "saved_folder",
    "read_saved_folder",
    "ensure_new_output_dir",
    "export_nifti",
    "export_png",
    "export_npz",
]

MANIFEST = "manifest.json"


class CorruptSaveError(RuntimeError):
    """A saved folder is missing files, truncated, or its checksums do not match."""


class OutputExistsError(FileExistsError):
    """The output location already holds files; finished results are never overwritten."""


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "wb") -> Iterator[Any]:
    """Open a temporary file beside ``path``; rename it onto ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_write(path, "wb") as handle:
        handle.write(data)


def write_json(path: str | Path, obj: Any) -> None:
    write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def save_tensors(path: str | Path, tensors: dict[str, Any]) -> None:
    """Save a (nested) dict of tensors and plain values, loadable with ``weights_only``."""
    with atomic_write(path, "wb") as handle:
        torch.save(tensors, handle)


def load_tensors(path: str | Path) -> dict[str, Any]:
    """Load what :func:`save_tensors` wrote, refusing anything but tensors and plain values."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for bad archives
        raise CorruptSaveError(f"{path}: cannot be read as a tensor archive ({err})") from err


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def ensure_new_output_dir(path: str | Path) -> Path:
    """Return ``path`` as a Path, refusing a location that already holds files."""
    path = Path(path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise OutputExistsError(
            f"{path} already exists and is not an empty folder; "
            "choose a new location (finished results are never overwritten)"
        )
    return path


@contextlib.contextmanager
def saved_folder(path: str | Path, kind: str) -> Iterator[Path]:
    """Assemble a saved folder under a temporary name; publish it whole on success.

    Yields the temporary folder to write into. On exit a manifest with the
    checksum of every file is written and the folder is renamed to ``path``.

    Args:
        path: final location; must not exist or be an empty folder.
        kind: a tag stored in the manifest and checked by :func:`read_saved_folder`.
    """
    path = ensure_new_output_dir(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        files = sorted(p for p in tmp.rglob("*") if p.is_file())
        manifest = {
            "kind": kind,
            "format_version": 1,
            "torch_version": torch.__version__,
            "files": {str(p.relative_to(tmp)): _sha256(p) for p in files},
        }
        write_json(tmp / MANIFEST, manifest)
        if path.exists():  # an empty folder, checked above
            path.rmdir()
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read_saved_folder(path: str | Path, kind: str) -> Path:
    """Check a saved folder against its manifest; return it as a Path.

    Raises:
        CorruptSaveError: the folder, its manifest or a listed file is missing,
            the kind differs, or a checksum does not match.
    """
    path = Path(path)
    if not path.is_dir():
        raise CorruptSaveError(f"{path} is not a folder saved by this toolkit")
    try:
        manifest = json.loads((path / MANIFEST).read_text())
        files = manifest["files"]
        found_kind = manifest["kind"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise CorruptSaveError(f"{path}: missing or unreadable {MANIFEST} ({err})") from err
    if found_kind != kind:
        raise CorruptSaveError(f"{path} holds a saved {found_kind!r}, not a {kind!r}")
    for name, checksum in files.items():
        file = path / name
        if not file.is_file():
            raise CorruptSaveError(f"{path}: file {name} listed in the manifest is missing")
        if _sha256(file) != checksum:
            raise CorruptSaveError(f"{path}: file {name} is truncated or modified (checksum mismatch)")
    return path


def _as_numpy_images(images: torch.Tensor | np.ndarray) -> np.ndarray:
    array = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if array.ndim not in (4, 5):
        raise ValueError(f"expected images of shape (N, C, H, W[, D]), got {tuple(array.shape)}")
    return array


def _check_labels(labels: Any, n: int) -> list[int]:
    labels = [int(v) for v in (labels if labels is not None else [0] * n)]
    if len(labels) != n:
        raise ValueError(f"{n} images but {len(labels)} labels")
    return labels


def export_nifti(
    images: torch.Tensor | np.ndarray,
    folder: str | Path,
    labels: Any = None,
    affine: np.ndarray | None = None,
    prefix: str = "synthetic",
) -> list[Path]:
    """Write each image as ``{prefix}_{i:05d}_label{y}.nii.gz`` with the given affine.

    Args:
        images: ``(N, C, H, W)`` or ``(N, C, H, W, D)``; channels go last in the file.
        folder: a new (or empty) folder.
        labels: ``(N,)`` class labels written into the names.
        affine: ``(4, 4)`` voxel-to-world matrix of the reference image (identity if None).
    """
    import nibabel as nib

    array = _as_numpy_images(images)
    labels = _check_labels(labels, len(array))
    affine = np.eye(4) if affine is None else np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4):
        raise ValueError(f"affine must be 4x4, got {affine.shape}")
    folder = ensure_new_output_dir(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (image, label) in enumerate(zip(array, labels)):
        volume = np.moveaxis(image, 0, -1)  # (H, W[, D], C)
        if volume.shape[-1] == 1:
            volume = volume[..., 0]
        nifti = nib.Nifti1Image(volume.astype(np.float32), affine)
        path = folder / f"{prefix}_{i:05d}_label{label}.nii.gz"
        write_bytes(path, gzip.compress(nifti.to_bytes(), mtime=0))
        paths.append(path)
    return paths


def export_png(
    images: torch.Tensor | np.ndarray, folder: str | Path, labels: Any = None, prefix: str = "synthetic"
) -> list[Path]:
    """Write 2D images ``(N, C, H, W)`` in [0, 1] as 8-bit PNG files (C = 1 or 3)."""
    import io as _io

    import matplotlib.image

    array = _as_numpy_images(images)
    if array.ndim != 4 or array.shape[1] not in (1, 3):
        raise ValueError(f"PNG export needs (N, 1|3, H, W) images, got {tuple(array.shape)}")
    labels = _check_labels(labels, len(array))
    folder = ensure_new_output_dir(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (image, label) in enumerate(zip(array, labels)):
        pixels = np.clip(np.moveaxis(image, 0, -1), 0, 1)
        buffer = _io.BytesIO()
        if pixels.shape[-1] == 1:
            matplotlib.image.imsave(buffer, pixels[..., 0], cmap="gray", vmin=0, vmax=1, format="png")
        else:
            matplotlib.image.imsave(buffer, pixels, format="png")
        path = folder / f"{prefix}_{i:05d}_label{label}.png"
        write_bytes(path, buffer.getvalue())
        paths.append(path)
    return paths


def export_npz(images: torch.Tensor | np.ndarray, path: str | Path, labels: Any = None) -> Path:
    """Write ``images`` and ``labels`` to one compressed ``.npz`` (refuses an existing file)."""
    import io as _io

    array = _as_numpy_images(images)
    labels = np.asarray(_check_labels(labels, len(array)), dtype=np.int64)
    path = Path(path)
    if path.exists():
        raise OutputExistsError(f"{path} already exists; finished results are never overwritten")
    buffer = _io.BytesIO()
    np.savez_compressed(buffer, images=array, labels=labels)
    write_bytes(path, buffer.getvalue())
    return path
