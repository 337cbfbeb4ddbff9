"""Safe, atomic input/output: saved-model folders, tensors, and image export.

Rules kept here so that every module inherits them:

* every file is written to a temporary name in the same folder and renamed into
  place, so a crash never leaves a half-written file under the final name;
* a saved folder is assembled under a temporary name and renamed whole, and it
  carries a manifest of SHA-256 checksums so that a truncated or edited folder
  is reported instead of half-loaded;
* tensors are stored with ``torch.save`` and read with ``weights_only=True``:
  loading never unpickles arbitrary code;
* an output folder that already holds files is never written into, and an
  export or save that fails midway leaves no folder behind;
* names written into file names (export prefixes, class labels) are checked, so
  they cannot point outside the output folder.

:func:`class_labels` / :func:`class_id` are the toolkit's one check of class
labels (augmentor, transforms and exporters all use them): integer class ids
are kept as given (``{0, 5}`` stays ``{0, 5}``), integral floats (``1.0``) and
booleans (0/1) are accepted, anything else (``0.7``, ``"011"``, ``"AD"``,
``None``, values beyond int64) is an error naming the offending entry.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import hashlib
import json
import math
import operator
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

__all__ = [
    "CorruptSaveError",
    "OutputExistsError",
    "atomic_write",
    "file_digest",
    "write_json",
    "write_bytes",
    "save_tensors",
    "load_tensors",
    "staged_folder",
    "saved_folder",
    "read_saved_folder",
    "ensure_new_output_dir",
    "class_id",
    "class_labels",
    "check_file_prefix",
    "export_nifti",
    "export_png",
    "export_npz",
]

MANIFEST = "manifest.json"
# A file-name prefix: letters, digits, "_", "-" and ".", starting with a letter,
# digit or "_" (so never "", "." or "..") and without any path separator.
_PREFIX_PATTERN = re.compile(r"\w[\w.-]*")
_INT64 = np.iinfo(np.int64)


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


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.new(algorithm)
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
def staged_folder(path: str | Path) -> Iterator[Path]:
    """Assemble a new folder under a temporary name; publish it whole on success.

    Yields a temporary folder beside ``path`` (same parent, so the final rename
    is atomic). On success it is renamed to ``path``; on any error it is
    removed, so a failure midway leaves no partial folder.

    Args:
        path: final location; must not exist or be an empty folder.

    Raises:
        OutputExistsError: ``path`` holds files (checked before and, atomically,
            when publishing).
    """
    path = ensure_new_output_dir(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        _publish_folder(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _publish_folder(tmp: Path, path: Path) -> None:
    """Rename ``tmp`` onto ``path``, which may only be missing or an empty folder."""
    try:
        # POSIX rename replaces an empty folder and refuses a non-empty one in one
        # step, so files that appeared since the first check are never clobbered.
        os.rename(tmp, path)
    except OSError as err:
        if err.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR):
            raise
        if not (path.is_dir() and not any(path.iterdir())):
            raise OutputExistsError(
                f"{path} already holds files; choose a new location (finished results are never overwritten)"
            ) from err
        path.rmdir()  # an empty folder on a system whose rename does not replace folders
        os.rename(tmp, path)


@contextlib.contextmanager
def saved_folder(path: str | Path, kind: str) -> Iterator[Path]:
    """A :func:`staged_folder` that also carries a manifest of checksums.

    Yields the temporary folder to write into. On exit a manifest with the
    checksum of every file is written and the folder is renamed to ``path``.

    Args:
        path: final location; must not exist or be an empty folder.
        kind: a tag stored in the manifest and checked by :func:`read_saved_folder`.
    """
    with staged_folder(path) as tmp:
        yield tmp
        files = sorted(p for p in tmp.rglob("*") if p.is_file())
        manifest = {
            "kind": kind,
            "format_version": 1,
            "torch_version": torch.__version__,
            "files": {str(p.relative_to(tmp)): file_digest(p) for p in files},
        }
        write_json(tmp / MANIFEST, manifest)


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
        if file_digest(file) != checksum:
            raise CorruptSaveError(f"{path}: file {name} is truncated or modified (checksum mismatch)")
    return path


def class_id(value: Any, name: str = "label") -> int:
    """One class label as a Python int.

    Args:
        value: an integer (Python, NumPy or a one-element tensor/array), a
            boolean (0/1) or a float with an integer value (``1.0``).
        name: how the value is named in errors, e.g. ``"labels[3]"``.

    Raises:
        TypeError: a string (e.g. a class name), None or another non-number.
        ValueError: a non-integer number (``0.7``, NaN) or one outside int64.
    """
    if isinstance(value, (torch.Tensor, np.ndarray)):
        count = value.numel() if isinstance(value, torch.Tensor) else value.size
        if count != 1:
            raise ValueError(f"{name} must be a single integer class id, got an array of shape {tuple(value.shape)}")
        value = value.item()
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        if not (math.isfinite(value) and float(value).is_integer()):
            raise ValueError(f"{name} is {value!r}; class labels must be integers (values are never truncated)")
        value = int(value)
    try:
        label = operator.index(value)
    except TypeError:
        hint = "; map class names to integers first" if isinstance(value, (str, bytes)) else ""
        raise TypeError(f"{name} is {value!r} ({type(value).__name__}); class labels must be integers{hint}") from None
    if not _INT64.min <= label <= _INT64.max:
        raise ValueError(f"{name} is {label}, outside the int64 range of class labels")
    return label


def class_labels(labels: Any, n: int | None = None, name: str = "labels") -> torch.Tensor:
    """Class labels as an ``(N,)`` int64 tensor; every entry is checked by :func:`class_id`.

    Class ids are kept as given, never remapped: ``{0, 5}`` stays ``{0, 5}``.

    Args:
        labels: a sequence, NumPy array or tensor of ``N`` labels.
        n: the expected ``N`` (the number of images), if known.
        name: how the labels are named in errors.

    Raises:
        TypeError: a single string (it is not split into one label per
            character) or an entry that is not a number.
        ValueError: not one-dimensional, not ``n`` long, or an entry that is
            not an integer.
    """
    if isinstance(labels, (str, bytes)):
        raise TypeError(
            f"{name} must be a sequence of integer class ids, got the string {labels!r} "
            "(a string is not split into one label per character)"
        )
    if isinstance(labels, (torch.Tensor, np.ndarray)):
        shape, values = tuple(labels.shape), labels.tolist()
    else:
        values = list(labels)
        shape = (len(values),)
    if len(shape) != 1 or (n is not None and shape[0] != n):
        expected = "(N,)" if n is None else f"({n},), one per image"
        raise ValueError(f"{name} must have shape {expected}, got {shape}")
    return torch.tensor([class_id(v, f"{name}[{i}]") for i, v in enumerate(values)], dtype=torch.int64)


def check_file_prefix(prefix: Any) -> str:
    """Return ``prefix`` if it is a plain file-name prefix that stays inside its folder.

    Raises:
        ValueError: empty, starting with ``.`` or ``-`` (``..``, hidden files), or
            holding a path separator or any character but letters, digits, ``_``, ``-``, ``.``.
    """
    if not isinstance(prefix, str) or not _PREFIX_PATTERN.fullmatch(prefix):
        raise ValueError(
            "prefix must be a plain file-name prefix: letters, digits, '_', '-' and '.', starting with a "
            f"letter, digit or '_', no path separators or '..'; got {prefix!r}"
        )
    return prefix


def _as_numpy_images(images: torch.Tensor | np.ndarray) -> np.ndarray:
    array = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if array.ndim not in (4, 5):
        raise ValueError(f"expected images of shape (N, C, H, W[, D]), got {tuple(array.shape)}")
    return array


def _labels_or_zeros(labels: Any, n: int) -> list[int]:
    return [0] * n if labels is None else class_labels(labels, n).tolist()


def _export_images(
    array: np.ndarray, folder: str | Path, labels: Any, prefix: str, suffix: str, encode: Callable[[np.ndarray], bytes]
) -> list[Path]:
    """Write ``{prefix}_{i:05d}_label{y}{suffix}`` per image into a new folder, published whole.

    Names are checked before anything is written; the files are assembled in a
    :func:`staged_folder`, so an export that fails midway leaves no folder.
    """
    labels = _labels_or_zeros(labels, len(array))
    names = [f"{check_file_prefix(prefix)}_{i:05d}_label{label}{suffix}" for i, label in enumerate(labels)]
    with staged_folder(folder) as tmp:
        for name, image in zip(names, array):
            write_bytes(tmp / name, encode(image))
    return [Path(folder) / name for name in names]


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
        folder: a new (or empty) folder; it appears only once every file is written.
        labels: ``(N,)`` integer class labels written into the names (see :func:`class_labels`).
        affine: ``(4, 4)`` voxel-to-world matrix of the reference image (identity if None).
        prefix: start of every file name; a plain name, no path (see :func:`check_file_prefix`).

    Returns:
        The paths of the written files, in image order.
    """
    import nibabel as nib

    array = _as_numpy_images(images)
    affine = np.eye(4) if affine is None else np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4):
        raise ValueError(f"affine must be 4x4, got {affine.shape}")

    def encode(image: np.ndarray) -> bytes:
        volume = np.moveaxis(image, 0, -1)  # (H, W[, D], C)
        if volume.shape[-1] == 1:
            volume = volume[..., 0]
        return gzip.compress(nib.Nifti1Image(volume.astype(np.float32), affine).to_bytes(), mtime=0)

    return _export_images(array, folder, labels, prefix, ".nii.gz", encode)


def export_png(
    images: torch.Tensor | np.ndarray, folder: str | Path, labels: Any = None, prefix: str = "synthetic"
) -> list[Path]:
    """Write 2D images ``(N, C, H, W)`` in [0, 1] as 8-bit PNG files (C = 1 or 3).

    Names, labels and the folder follow :func:`export_nifti`.
    """
    import io as _io

    import matplotlib.image

    array = _as_numpy_images(images)
    if array.ndim != 4 or array.shape[1] not in (1, 3):
        raise ValueError(f"PNG export needs (N, 1|3, H, W) images, got {tuple(array.shape)}")

    def encode(image: np.ndarray) -> bytes:
        pixels = np.clip(np.moveaxis(image, 0, -1), 0, 1)
        buffer = _io.BytesIO()
        if pixels.shape[-1] == 1:
            matplotlib.image.imsave(buffer, pixels[..., 0], cmap="gray", vmin=0, vmax=1, format="png")
        else:
            matplotlib.image.imsave(buffer, pixels, format="png")
        return buffer.getvalue()

    return _export_images(array, folder, labels, prefix, ".png", encode)


def export_npz(images: torch.Tensor | np.ndarray, path: str | Path, labels: Any = None) -> Path:
    """Write ``images`` and ``labels`` to one compressed ``.npz`` (refuses an existing file).

    The file is written atomically; labels are checked as in :func:`export_nifti`.
    """
    import io as _io

    array = _as_numpy_images(images)
    labels = np.asarray(_labels_or_zeros(labels, len(array)), dtype=np.int64)
    path = Path(path)
    if path.exists():
        raise OutputExistsError(f"{path} already exists; finished results are never overwritten")
    buffer = _io.BytesIO()
    np.savez_compressed(buffer, images=array, labels=labels)
    write_bytes(path, buffer.getvalue())
    return path
