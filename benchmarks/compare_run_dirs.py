"""Compare two run directories of a study file by file, to check that two versions give the same results.

Run:  python benchmarks/compare_run_dirs.py <run A> <run B>

Every file of run A must be in run B with the same content: result JSONs compared
without their wall time (``seconds``), saved folders by the checksums their
manifests list, every other file byte for byte. Left out: TensorBoard logs,
figures (PNG), the lock and ``study.json`` (it records the library versions).
Files only in B (e.g. the per-class model folders of a newer job graph) are
listed but do not count as differences. Prints one line per difference and a
last line ``<n> files compared, <m> differ or are missing``; exits 1 if any differ.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

SKIPPED_FOLDERS = ("tensorboard",)
SKIPPED_NAMES = (".lock", "study.json")


def _compared(folder: Path) -> list[Path]:
    """The files of ``folder`` that the comparison covers, relative to it."""
    return sorted(
        path.relative_to(folder) for path in folder.rglob("*")
        if path.is_file() and path.relative_to(folder).parts[0] not in SKIPPED_FOLDERS
        and path.name not in SKIPPED_NAMES and path.suffix != ".png"
    )


def _same(a: Path, b: Path, relative: Path) -> bool:
    """Whether two files hold the same result (see the module docstring)."""
    if relative.parts[0] == "results" and a.suffix == ".json":
        left, right = json.loads(a.read_text()), json.loads(b.read_text())
        left.pop("seconds", None)
        right.pop("seconds", None)
        return left == right
    if a.name == "manifest.json":
        return json.loads(a.read_text())["files"] == json.loads(b.read_text())["files"]
    return hashlib.sha256(a.read_bytes()).digest() == hashlib.sha256(b.read_bytes()).digest()


def compare(a: Path, b: Path) -> int:
    """Print the differences between run directories ``a`` and ``b``; return how many files differ."""
    files = _compared(a)
    differ = 0
    for relative in files:
        if not (b / relative).is_file():
            print(f"missing in {b}: {relative}")
            differ += 1
        elif not _same(a / relative, b / relative, relative):
            print(f"differs: {relative}")
            differ += 1
    for relative in sorted(set(_compared(b)) - set(files)):
        print(f"only in {b}: {relative}")
    print(f"{len(files)} files compared, {differ} differ or are missing")
    return differ


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.splitlines()[2], file=sys.stderr)
        return 2
    return 1 if compare(Path(argv[0]), Path(argv[1])) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
