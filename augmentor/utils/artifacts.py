"""Checksummed intermediate files of a run directory, and their recovery when damaged.

A saved augmentor folder carries a manifest of checksums (:func:`augmentor.io.saved_folder`);
the single files a run directory accumulates (latent codes, trained models,
features, splits) carry the same SHA-256 checksum in a sidecar ``<name>.sha256``:

* :func:`save_checked_tensors` / :func:`write_checked_json` write the file
  atomically, then its checksum; a run killed between the two leaves a file
  without checksum, which counts as damaged, never as finished;
* :func:`load_checked_tensors` / :func:`read_checked_json` verify the checksum
  before parsing, so changed bytes are reported (naming the file), never used;
* :func:`load_intact` turns damage into recovery: the file (or saved folder) is
  moved aside to ``<name>.corrupt`` with a warning naming both, never deleted,
  and ``None`` is returned so that the caller computes it again.

Example::

    record = load_intact(path)          # None: absent, or damaged and moved aside
    if record is None:
        record = compute()
        save_checked_tensors(path, record)
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from pathlib import Path
from typing import Any, Callable, TypeVar

import torch

from .io import CorruptSaveError, load_tensors, write_bytes

__all__ = [
    "CHECKSUM_SUFFIX",
    "NUMBER",
    "aside_path",
    "check_fields",
    "checksum_path",
    "load_checked_tensors",
    "load_intact",
    "move_aside",
    "read_checked",
    "read_checked_json",
    "save_checked_tensors",
    "write_checked",
    "write_checked_json",
]

logger = logging.getLogger(__name__)

CHECKSUM_SUFFIX = ".sha256"
T = TypeVar("T")


def checksum_path(path: str | Path) -> Path:
    """The sidecar ``<name>.sha256`` holding the checksum of ``path``."""
    path = Path(path)
    return path.with_name(path.name + CHECKSUM_SUFFIX)


def write_checked(path: str | Path, data: bytes) -> None:
    """Write ``data`` atomically, then its SHA-256 checksum beside it."""
    write_bytes(path, data)
    write_bytes(checksum_path(path), (hashlib.sha256(data).hexdigest() + "\n").encode())


def read_checked(path: str | Path) -> bytes:
    """The bytes of ``path`` once they match the checksum written with them.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CorruptSaveError: no checksum beside it (a write that never finished) or a mismatch.
    """
    path = Path(path)
    data = path.read_bytes()
    sidecar = checksum_path(path)
    try:
        expected = sidecar.read_text().strip()
    except (OSError, UnicodeDecodeError) as err:
        raise CorruptSaveError(f"{path} has no readable checksum {sidecar.name} (its write never finished, "
                               "or it was not written by this toolkit)") from err
    if hashlib.sha256(data).hexdigest() != expected:
        raise CorruptSaveError(f"{path} is truncated or modified (its bytes do not match {sidecar.name})")
    return data


def save_checked_tensors(path: str | Path, tensors: dict[str, Any]) -> None:
    """:func:`augmentor.io.save_tensors` with a checksum (read back by :func:`load_checked_tensors`)."""
    buffer = io.BytesIO()
    torch.save(tensors, buffer)
    write_checked(path, buffer.getvalue())


def load_checked_tensors(path: str | Path) -> dict[str, Any]:
    """Tensors saved by :func:`save_checked_tensors`, checksum verified, loaded with ``weights_only``.

    Raises:
        CorruptSaveError: the checksum is missing or differs, or the archive is unreadable.
    """
    data = read_checked(path)
    state = load_tensors(io.BytesIO(data))
    if not isinstance(state, dict):
        raise CorruptSaveError(f"{path}: expected a dict of tensors, found a {type(state).__name__}")
    return state


def write_checked_json(path: str | Path, obj: Any) -> None:
    """JSON (sorted keys, indented) with a checksum (read back by :func:`read_checked_json`)."""
    write_checked(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def read_checked_json(path: str | Path) -> Any:
    """JSON written by :func:`write_checked_json`, checksum verified.

    Raises:
        CorruptSaveError: the checksum is missing or differs, or the text is not JSON.
    """
    try:
        return json.loads(read_checked(path))
    except ValueError as err:
        raise CorruptSaveError(f"{path} is not valid JSON ({err})") from err


def aside_path(path: Path) -> Path:
    """``<name>.corrupt``, numbered if an earlier damaged copy already holds that name."""
    candidate, number = path.with_name(f"{path.name}.corrupt"), 1
    while candidate.exists():
        candidate, number = path.with_name(f"{path.name}.corrupt{number}"), number + 1
    return candidate


def move_aside(path: str | Path, reason: str) -> Path:
    """Move a damaged file or folder (and its checksum) to ``<name>.corrupt``, with a warning naming both.

    Args:
        path: the file or folder.
        reason: what is wrong, completing "<path> is ...", e.g. ``"damaged (checksum mismatch)"``.

    Returns:
        where it now lies.
    """
    path = Path(path)
    aside = aside_path(path)
    path.rename(aside)
    sidecar = checksum_path(path)
    if sidecar.is_file():
        sidecar.rename(checksum_path(aside))
    logger.warning("%s is %s; moved aside to %s, it will be computed again", path, reason, aside.name)
    return aside


def load_intact(path: str | Path, read: Callable[[Path], T] = load_checked_tensors,  # type: ignore[assignment]
                damage: tuple[type[BaseException], ...] = (CorruptSaveError, ValueError, KeyError)) -> T | None:
    """What ``read`` makes of ``path``; ``None`` when it is absent, or damaged and moved aside.

    Args:
        path: a file or a saved folder.
        read: parses and checks it, raising one of ``damage`` when it is not intact
            (default: :func:`load_checked_tensors`).
        damage: the exceptions that mean the file is damaged (others propagate).
    """
    path = Path(path)
    if not path.exists():
        return None
    try:
        return read(path)
    except damage as err:
        move_aside(path, f"damaged ({str(err).splitlines()[0][:500] if str(err) else type(err).__name__})")
        return None


NUMBER = (int, float)
"""A JSON number in a schema of :func:`check_fields` (booleans are refused)."""


def check_fields(record: Any, fields: dict[str, type | tuple[type, ...]]) -> None:
    """Check that a parsed JSON record holds every field, of the right type.

    Args:
        record: the parsed JSON object.
        fields: dotted paths (``"prd.f_8"``) and the type(s) each must have; a
            number's type is :data:`NUMBER` (``true`` is not a number here).

    Raises:
        ValueError: naming the first missing field or the first of the wrong type.
    """
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, found a {type(record).__name__}")
    for dotted, wanted in fields.items():
        value: Any = record
        for part in dotted.split("."):
            if not isinstance(value, dict) or part not in value:
                raise ValueError(f"missing {dotted}")
            value = value[part]
        wanted = wanted if isinstance(wanted, tuple) else (wanted,)
        if isinstance(value, bool) and bool not in wanted or not isinstance(value, wanted):
            names = " or ".join("null" if t is type(None) else t.__name__ for t in wanted)
            raise ValueError(f"{dotted} is a {type(value).__name__} ({str(value)[:40]!r}), expected {names}")
