"""Run directories every study shares: the files they all have, their lock, their identity, the errors.

A run directory is tied to the settings every result in it depends on (each study's
``identity``: its config minus scheduling fields, the resolved device type and the
fingerprint of the data). ``study.json`` records them on first use
(:func:`claim_run_directory`); a later invocation with the same identity resumes (finished
jobs are skipped), one with a different identity is refused with the list of differing
settings.

One invocation at a time works in a run directory: it holds an exclusive ``flock`` on
``<run>/.lock`` until it ends (:func:`lock_run_directory`; the operating system releases it
when the process dies, however it dies); a second invocation is refused at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable, Iterator

from augmentor.utils.io import write_json

__all__ = [
    "FORMAT_VERSION",
    "JobFailure",
    "RunDirectory",
    "RunDirectoryError",
    "StudyError",
    "check_identity",
    "check_outside_data",
    "claim_run_directory",
    "identity_hash",
    "lock_run_directory",
    "saved_identity",
]


class RunDirectory:
    """The files every study's run directory has; each study's layout extends it.

    ``lock`` (held by the running invocation), ``study.json`` (the run's identity:
    settings, data fingerprint, device type), ``report/`` and ``tensorboard/``.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @property
    def lock(self) -> Path:
        return self.root / ".lock"

    @property
    def study(self) -> Path:
        return self.root / "study.json"

    @property
    def report(self) -> Path:
        return self.root / "report"

    def tensorboard(self, *parts: str) -> Path:
        return self.root.joinpath("tensorboard", *parts)


FORMAT_VERSION = 1


class StudyError(RuntimeError):
    """The study cannot run or some of its jobs failed."""


class RunDirectoryError(StudyError):
    """The output folder belongs to another study (different settings or data) or to nothing we wrote."""


class JobFailure(StudyError):
    """Some jobs failed; the finished ones are kept and a rerun resumes."""

    def __init__(self, failures: list[tuple[str, str]], out: Path) -> None:
        self.failures = failures
        lines = [f"{len(failures)} job(s) failed (finished jobs are kept; rerun the same command to resume):"]
        lines += [f"  {key}: {message}" for key, message in failures]
        lines.append(f"run directory: {out}")
        super().__init__("\n".join(lines))


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: data}


def _differences(saved: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    a, b = _flatten(saved), _flatten(wanted)
    return [
        f"  {key}: {a.get(key, '<absent>')!r} in the run directory, {b.get(key, '<absent>')!r} now"
        for key in sorted(set(a) | set(b))
        if a.get(key, object()) != b.get(key, object())
    ]


def _refuse(out: Path, differences: list[str]) -> RunDirectoryError:
    return RunDirectoryError(
        "\n".join(
            [f"{out} holds results of a different study configuration; refusing to mix them:"]
            + differences
            + ["Use a new --out folder, or the run directory's own settings (see its study.json) to resume it."]
        )
    )


def _saved_study(paths: RunDirectory) -> dict[str, Any] | None:
    if paths.study.is_file():
        try:
            return json.loads(paths.study.read_text())
        except ValueError as err:
            raise RunDirectoryError(f"{paths.study} is unreadable ({err}); not resuming") from err
    if paths.root.exists() and (not paths.root.is_dir() or any(p != paths.lock for p in paths.root.iterdir())):
        raise RunDirectoryError(
            f"{paths.root} already exists and is not a study run directory (no study.json); "
            "choose a new --out folder (existing files are never overwritten)"
        )
    return None


@contextlib.contextmanager
def lock_run_directory(paths: RunDirectory) -> Iterator[None]:
    """Hold the run directory (created if needed) for this process until the block ends.

    The lock is an exclusive, non-blocking ``flock`` on ``<run>/.lock``; the
    operating system releases it when the file is closed or the process dies, so a
    crashed run never leaves the directory locked. The lock file itself stays: it
    is only ever locked, never removed, so that two runs cannot lock two different
    files of the same name.

    Raises:
        RunDirectoryError: another run holds the directory.
    """
    paths.root.mkdir(parents=True, exist_ok=True)
    with open(paths.lock, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise RunDirectoryError(
                f"{paths.root} is in use: another run of the study holds it (lock {paths.lock}, process {holder}). "
                "Two runs in one directory would corrupt each other; wait for the other run to end, or "
                "choose another --out folder"
            ) from None
        handle.truncate(0)
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield


def identity_hash(ident: dict[str, Any]) -> str:
    """16 hex digits of SHA-256 over the identity's JSON (keys sorted)."""
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


def saved_identity(paths: RunDirectory) -> dict[str, Any] | None:
    """The ``study.json`` of a run directory, or ``None`` for a new (absent or empty) folder.

    Raises:
        RunDirectoryError: the folder holds files but no study, or an unreadable ``study.json``.
    """
    return _saved_study(paths)


def claim_run_directory(paths: RunDirectory, ident: dict[str, Any], record: dict[str, Any]) -> bool:
    """Tie a run directory to ``ident``: write its ``study.json``, or check the one it holds.

    The identity check of every study's run directory (a :class:`RunDirectory`).

    Args:
        paths: where the run directory and its ``study.json`` are.
        ident: the settings every result depends on (hashed with :func:`identity_hash`).
        record: further facts stored beside the identity in a new ``study.json``.

    Returns:
        whether the directory was new (``study.json`` written now).

    Raises:
        RunDirectoryError: the folder holds another identity, another format, or foreign files.
    """
    saved = _saved_study(paths)
    if saved is None:
        paths.root.mkdir(parents=True, exist_ok=True)
        write_json(paths.study, {"format_version": FORMAT_VERSION, "identity_hash": identity_hash(ident),
                                 "identity": ident, **record})
        return True
    check_identity(paths, saved, ident)
    return False


def check_identity(paths: RunDirectory, saved: dict[str, Any], ident: dict[str, Any]) -> None:
    """Check a run directory's ``study.json`` (``saved``) against the identity ``ident`` of this run.

    Raises:
        RunDirectoryError: another format, or another identity (the message lists the differing settings).
    """
    if saved.get("format_version") != FORMAT_VERSION:
        raise RunDirectoryError(f"{paths.study} has format {saved.get('format_version')}, expected {FORMAT_VERSION}")
    if saved.get("identity_hash") != identity_hash(ident):
        raise _refuse(paths.root, _differences(saved.get("identity", {}), ident))


def check_outside_data(root: Path, folders: Iterable[Path]) -> None:
    """Refuse a run directory inside a folder the input data are read from (input data are never written to).

    Raises:
        StudyError: naming the run directory and the data folder.
    """
    out = root.resolve()
    for folder in folders:
        if out == folder or folder in out.parents:
            raise StudyError(f"the run directory {out} lies inside the data folder {folder}; "
                             "input data are never written to")
