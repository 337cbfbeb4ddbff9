"""Read a local copy of OASIS-1 (cross-sectional) into tensors, reporting every subject left out.

Expected input (the layout of the public OASIS-1 distribution)::

    root/                                   # or root/ holding the OAS1_* folders directly
      oasis_cross-sectional.csv             # ID, M/F, Hand, Age, Educ, SES, MMSE, CDR, eTIV, nWBV, ASF, Delay
      disc1/OAS1_0001_MR1/PROCESSED/MPRAGE/T88_111/OAS1_0001_MR1_mpr_n4_anon_111_t88_masked_gfc.{hdr,img}
      disc1/OAS1_0002_MR1/...

The image used is the atlas-registered (Talairach 1988, "T88"), brain-masked,
gain-field-corrected volume: Analyze 7.5, 16-bit big-endian, grid 176 x 208 x 176
at 1 mm, read with nibabel. Files are only ever opened for reading.

Array conventions. nibabel returns the voxel array in file order, ``volume[x, y, z]``
with shape ``(X, Y, Z) = (176, 208, 176)`` on the T88 grid (a trailing axis of
length 1 in the files is dropped); the third axis ``z`` indexes axial slices.
The 2D image is the *transposed axial slice*::

    image = volume[:, :, k].T          # shape (Y, X) = (208, 176)
    image[row, col] == volume[col, row, k]

so rows follow the file's ``y`` axis and columns its ``x`` axis; no flip is applied.
The default ``k`` is ``Z // 2`` (88 on T88, the middle slice; the index used in the
paper is not known here). 3D images keep file order: ``images[n, 0, x, y, z]``.
The simulated cohort (:mod:`oasis.simulate`) runs ``x`` right to left, ``y``
posterior to anterior and ``z`` inferior to superior (LAS, as nibabel reads Analyze).

Labels follow the OASIS statement that every participant with CDR > 0 was
diagnosed with probable Alzheimer's disease: AD (1) when CDR > 0, otherwise CN (0).
An empty CDR cell counts as CN; "N/A" or any other text that is not a number gives
no label: the subject is skipped with that reason. On the real table this gives
100 AD and 316 CN among the 416 ``_MR1`` subjects. ``cohort="clinicadl"`` keeps
subjects aged 62 or more with a CDR value: 100 AD and 93 CN. The ``_MR2``
reliability rescans are excluded.

Subjects left out are never dropped silently: :attr:`OasisData.excluded` lists those
left out by design (``_MR2`` sessions, cohort criteria) and :attr:`OasisData.skipped`
those left out because of a problem (missing or unreadable image, absent from the
table, ...), each with its reason; :meth:`OasisData.report` prints both.
:class:`OasisDataError` is raised when the path or table is unusable or nothing
usable remains.
"""

from __future__ import annotations

import dataclasses
import re
import warnings
from collections import Counter
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

__all__ = [
    "CLINICADL_MIN_AGE",
    "CSV_COLUMNS",
    "CSV_NAME",
    "Cohort",
    "CohortSelection",
    "OasisData",
    "OasisDataError",
    "OasisEntry",
    "OasisScan",
    "SkippedSubject",
    "T88_FOLDER",
    "T88_SHAPE",
    "axial_slices",
    "extract_axial_slice",
    "load_oasis",
    "load_oasis_npz",
    "read_clinical_table",
    "scan_oasis",
    "select_cohort",
    "t88_image_name",
    "to_data_dicts",
]

CSV_NAME = "oasis_cross-sectional.csv"
CSV_COLUMNS = ("ID", "M/F", "Hand", "Age", "Educ", "SES", "MMSE", "CDR", "eTIV", "nWBV", "ASF", "Delay")
T88_SHAPE = (176, 208, 176)
T88_FOLDER = Path("PROCESSED", "MPRAGE", "T88_111")
CLINICADL_MIN_AGE = 62
Cohort = Literal["all", "clinicadl"]

_SUBJECT_RE = re.compile(r"^OAS1_(\d{4})_MR(\d+)$")
# The real table leaves missing values blank; "N/A" is how some exports write them.
_BLANK_CELLS = frozenset({"", "n/a", "na", "nan"})
# An empty CDR cell is how the real table marks the young controls (CN). Any other text,
# "N/A" included, may stand for a missing assessment of anyone: it is reported, not labelled.
_NO_CDR_CELLS = frozenset({""})
# n3 or n4 (the number of averaged acquisitions) varies between subjects.
_IMAGE_GLOB = "{sid}_mpr_n?_anon_111_t88_masked_gfc.img"


class OasisDataError(ValueError):
    """The OASIS path, clinical table or images cannot give a usable data set."""


@dataclasses.dataclass(frozen=True)
class SkippedSubject:
    """A subject left out, with the reason in words."""

    subject_id: str
    reason: str


@dataclasses.dataclass(frozen=True)
class OasisEntry:
    """One usable subject found on disk: its atlas-registered image, the image's grid and its label.

    ``shape`` is the volume's ``(X, Y, Z)`` as its header gives it.
    """

    subject_id: str
    image_path: Path
    label: int
    shape: tuple[int, int, int]


@dataclasses.dataclass
class CohortSelection:
    """Decision for every row of the clinical table.

    Attributes:
        labels: subject ID -> 0 (CN) or 1 (AD), for rows kept in the cohort.
        excluded: subject ID -> reason, for rows left out by design.
        skipped: subject ID -> reason, for rows whose values cannot be used.
    """

    labels: dict[str, int]
    excluded: dict[str, str]
    skipped: dict[str, str]


def _summary_lines(
    skipped: list[SkippedSubject], excluded: list[SkippedSubject], table_only: list[str]
) -> list[str]:
    lines = []
    if excluded:
        lines.append(f"  excluded by design: {len(excluded)}")
        for reason, count in sorted(Counter(s.reason for s in excluded).items()):
            lines.append(f"    {count:4d} x {reason}")
    if skipped:
        lines.append(f"  skipped because of a problem: {len(skipped)}")
        lines.extend(f"    {s.subject_id}: {s.reason}" for s in skipped)
    if table_only:
        shown = ", ".join(table_only[:5]) + (", ..." if len(table_only) > 5 else "")
        lines.append(
            f"  {len(table_only)} subject(s) of the cohort in the clinical table have no folder "
            f"under the root (other discs not present?): {shown}"
        )
    return lines


@dataclasses.dataclass
class OasisData:
    """A labelled OASIS-1 image set and the account of every subject left out.

    Attributes:
        images: ``(N, 1, H, W)`` (2D) or ``(N, 1, X, Y, Z)`` (3D) float32, each image
            min-max scaled to [0, 1].
        labels: ``(N,)`` int64, 0 = CN, 1 = AD.
        subject_ids: ``N`` subject IDs such as ``"OAS1_0001_MR1"``.
        skipped: subjects left out because of a problem, with reasons.
        excluded: subjects left out by design (``_MR2`` sessions, cohort criteria).
        table_only: cohort subjects listed in the table with no folder on disk.
        source: where the data came from, in words.
    """

    images: torch.Tensor
    labels: torch.Tensor
    subject_ids: list[str]
    skipped: list[SkippedSubject] = dataclasses.field(default_factory=list)
    excluded: list[SkippedSubject] = dataclasses.field(default_factory=list)
    table_only: list[str] = dataclasses.field(default_factory=list)
    source: str = ""

    def __post_init__(self) -> None:
        n = len(self.subject_ids)
        if self.images.ndim not in (4, 5) or self.images.shape[:2] != (n, 1):
            raise ValueError(f"images must be (N, 1, ...) with N = {n}, got {tuple(self.images.shape)}")
        if self.labels.shape != (n,):
            raise ValueError(f"labels must be ({n},), got {tuple(self.labels.shape)}")

    def __len__(self) -> int:
        return len(self.subject_ids)

    def report(self) -> str:
        """A human-readable account: what was loaded, and who was left out and why."""
        counts = Counter(int(v) for v in self.labels.tolist())
        names = {0: "CN", 1: "AD"}
        per_class = ", ".join(f"{counts[k]} {names.get(k, 'label')} (label {k})" for k in sorted(counts))
        lines = [
            f"OASIS-1 data from {self.source}",
            f"  loaded {len(self)} subjects: {per_class}; images {tuple(self.images.shape)} "
            f"{str(self.images.dtype).replace('torch.', '')} in [0, 1]",
        ]
        return "\n".join(lines + _summary_lines(self.skipped, self.excluded, self.table_only))


@dataclasses.dataclass
class OasisScan:
    """What :func:`scan_oasis` found on disk, before any image is read.

    Attributes:
        root: the OASIS-1 folder.
        csv_path: the clinical table used.
        cohort: the cohort rule applied.
        entries: usable subjects in ID order.
        skipped: subjects left out because of a problem, with reasons.
        excluded: subjects left out by design, with reasons.
        table_only: cohort subjects of the table with no folder under ``root``.
    """

    root: Path
    csv_path: Path
    cohort: Cohort
    entries: list[OasisEntry]
    skipped: list[SkippedSubject]
    excluded: list[SkippedSubject]
    table_only: list[str]

    def data_dicts(self) -> list[dict[str, Any]]:
        """MONAI-style ``{"image": str(.img path), "label": int, "subject_id": str}`` dicts."""
        return [{"image": str(e.image_path), "label": e.label, "subject_id": e.subject_id} for e in self.entries]

    def report(self) -> str:
        """A human-readable account of the scan."""
        n_ad = sum(e.label for e in self.entries)
        lines = [
            f"OASIS-1 scan of {self.root} (table {self.csv_path.name}, cohort {self.cohort!r})",
            f"  usable: {len(self.entries)} subjects: {len(self.entries) - n_ad} CN, {n_ad} AD",
        ]
        return "\n".join(lines + _summary_lines(self.skipped, self.excluded, self.table_only))


def t88_image_name(subject_id: str, n_averages: int = 4) -> str:
    """File name of the atlas-registered masked image, e.g. ``OAS1_0001_MR1_mpr_n4_anon_111_t88_masked_gfc.img``."""
    return _IMAGE_GLOB.format(sid=subject_id).replace("n?", f"n{n_averages}")


def read_clinical_table(csv_path: str | Path) -> pd.DataFrame:
    """Read ``oasis_cross-sectional.csv`` as text, checking its columns.

    Values are kept as written (stripped strings, blank cells as ``""``) so that a
    malformed cell is reported for its subject instead of silently becoming NaN;
    :func:`select_cohort` parses what it needs.

    Returns:
        The table indexed by ``ID`` (which also stays a column).

    Raises:
        OasisDataError: the file is missing or unreadable, lacks one of
            :data:`CSV_COLUMNS`, or lists an ID twice.
    """
    path = Path(csv_path)
    if not path.is_file():
        raise OasisDataError(f"clinical table {path} does not exist")
    try:
        # utf-8-sig: tables re-saved from a spreadsheet often start with a byte-order mark.
        table = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True, encoding="utf-8-sig")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise OasisDataError(f"{path}: cannot be read as a CSV table ({err})") from err
    table.columns = [str(c).strip() for c in table.columns]
    missing = [c for c in CSV_COLUMNS if c not in table.columns]
    if missing:
        raise OasisDataError(
            f"{path}: missing column(s) {missing}; an OASIS-1 clinical table has the columns "
            f"{list(CSV_COLUMNS)}, this one has {list(table.columns)}"
        )
    table = table.apply(lambda column: column.str.strip())
    duplicated = sorted(set(table["ID"][table["ID"].duplicated()]))
    if duplicated:
        raise OasisDataError(f"{path}: ID(s) listed more than once: {duplicated[:10]}")
    return table.set_index("ID", drop=False)


def _parse_number(text: str, column: str, blank_cells: frozenset[str] = _BLANK_CELLS) -> float | None:
    """The number in a cell; ``None`` for a cell in ``blank_cells`` (lower case).

    Raises:
        ValueError: naming the column, for text that is not a non-negative number.
    """
    if text.lower() in blank_cells:
        return None
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{column} value {text!r} is not a number") from None
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"{column} value {text!r} is not a non-negative number")
    return value


def _decide(row: pd.Series, cohort: Cohort) -> tuple[str, int | str]:
    """Return ``("label", 0|1)``, ``("excluded", reason)`` or ``("skipped", reason)`` for one row."""
    match = _SUBJECT_RE.match(row["ID"])
    if match is None:
        return "skipped", "ID is not of the form OAS1_XXXX_MRn"
    if match.group(2) != "1":
        return "excluded", f"_MR{match.group(2)} session (reliability rescan); only _MR1 sessions are used"
    try:
        cdr = _parse_number(row["CDR"], "CDR", _NO_CDR_CELLS)
    except ValueError as err:
        return "skipped", f"{err} (only an empty CDR cell means no CDR, labelled CN)"
    try:
        age = _parse_number(row["Age"], "Age")
    except ValueError as err:
        return "skipped", str(err)
    if cohort == "clinicadl":
        if cdr is None:
            return "excluded", "clinicadl cohort: no CDR value"
        if age is None:
            return "skipped", "clinicadl cohort: no Age value"
        if age < CLINICADL_MIN_AGE:
            return "excluded", f"clinicadl cohort: age under {CLINICADL_MIN_AGE}"
    return "label", int(cdr is not None and cdr > 0)


def select_cohort(table: pd.DataFrame, cohort: Cohort = "all") -> CohortSelection:
    """Label every row of the clinical table and apply the cohort rule.

    Args:
        table: as returned by :func:`read_clinical_table`.
        cohort: ``"all"``: every ``_MR1`` subject, AD (1) when CDR > 0 else CN (0)
            (an empty CDR cell is CN; a CDR cell of other text, ``N/A`` included, is skipped);
            ``"clinicadl"``: only subjects aged 62 or more with a CDR value.

    Returns:
        The label, exclusion reason or problem of every row.
    """
    if cohort not in ("all", "clinicadl"):
        raise ValueError(f"cohort must be 'all' or 'clinicadl', got {cohort!r}")
    selection = CohortSelection({}, {}, {})
    for subject_id, row in table.iterrows():
        kind, value = _decide(row, cohort)
        target = {"label": selection.labels, "excluded": selection.excluded, "skipped": selection.skipped}[kind]
        target[str(subject_id)] = value
    return selection


def _subject_folders(root: Path) -> tuple[dict[str, Path], list[SkippedSubject]]:
    """``OAS1_XXXX_MRn`` folders directly under ``root`` or under ``root/disc*``."""
    parents = [root] + sorted(p for p in root.glob("disc*") if p.is_dir())
    folders: dict[str, Path] = {}
    duplicates = []
    for parent in parents:
        for folder in sorted(parent.glob("OAS1_*")):
            if not (folder.is_dir() and _SUBJECT_RE.match(folder.name)):
                continue
            if folder.name in folders:
                reason = f"duplicate folder {folder} ignored; using {folders[folder.name]}"
                duplicates.append(SkippedSubject(folder.name, reason))
            else:
                folders[folder.name] = folder
    return folders, duplicates


def _volume_shape(header_shape: tuple[int, ...]) -> tuple[int, int, int]:
    """The 3D shape of a file's array, dropping trailing axes of length 1 (OASIS files are 4D)."""
    shape = tuple(int(s) for s in header_shape)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) != 3:
        raise ValueError(f"expected a single 3D volume, the header gives shape {header_shape}")
    return shape  # type: ignore[return-value]


class _UnusableImage(Exception):
    """A subject's image is missing or damaged; the message is the reason for the skip report."""


def _checked_shape(image_path: Path) -> tuple[int, int, int]:
    """The volume shape of an Analyze pair, checking header and file size without reading the voxels.

    Raises:
        _UnusableImage: header missing or unreadable, or image file too short for it.
    """
    import nibabel as nib

    header_path = image_path.with_suffix(".hdr")
    if not header_path.is_file():
        raise _UnusableImage(f"header {header_path.name} missing beside {image_path.name}")
    try:
        header = nib.load(str(image_path), mmap=False).header
        shape = _volume_shape(header.get_data_shape())
        expected = int(header.get_data_offset()) + int(
            np.prod(header.get_data_shape()) * header.get_data_dtype().itemsize
        )
    except Exception as err:  # nibabel raises many types for a damaged header
        raise _UnusableImage(f"unreadable image header {header_path.name} ({type(err).__name__}: {err})") from None
    size = image_path.stat().st_size
    if size < expected:
        raise _UnusableImage(f"image {image_path.name} truncated: {size} bytes, the header needs {expected}")
    return shape


def _find_image(folder: Path, subject_id: str) -> tuple[Path, tuple[int, int, int]]:
    """The T88 masked image of a subject folder and its volume shape.

    Raises:
        _UnusableImage: no usable image, with the reason.
    """
    t88 = folder / T88_FOLDER
    if not t88.is_dir():
        raise _UnusableImage(f"no {T88_FOLDER.as_posix()} folder (atlas-registered image missing)")
    pattern = _IMAGE_GLOB.format(sid=subject_id)
    matches = sorted(t88.glob(pattern))
    if not matches:
        raise _UnusableImage(f"no {pattern} in {T88_FOLDER.as_posix()}")
    if len(matches) > 1:
        raise _UnusableImage(f"several candidate images, cannot tell which to use: {[m.name for m in matches]}")
    return matches[0], _checked_shape(matches[0])


def scan_oasis(root: str | Path, csv_path: str | Path | None = None, *, cohort: Cohort = "all") -> OasisScan:
    """Find the subjects of a local OASIS-1 copy and their labels, without reading voxels.

    Args:
        root: folder holding ``disc*/OAS1_XXXX_MR1`` folders or ``OAS1_XXXX_MR1`` folders.
        csv_path: the clinical table; default ``root/oasis_cross-sectional.csv``.
        cohort: see :func:`select_cohort`.

    Raises:
        OasisDataError: ``root`` does not exist, holds no subject folder, the table
            is missing or malformed, or no subject is usable.
    """
    root = Path(root)
    if not root.is_dir():
        raise OasisDataError(f"OASIS-1 path {root} does not exist or is not a folder")
    csv_path = root / CSV_NAME if csv_path is None else Path(csv_path)
    if not csv_path.is_file():
        raise OasisDataError(f"clinical table {csv_path} not found; pass csv_path= (the OASIS-1 file {CSV_NAME})")
    selection = select_cohort(read_clinical_table(csv_path), cohort)
    folders, skipped = _subject_folders(root)
    if not folders:
        raise OasisDataError(
            f"no OAS1_XXXX_MRn subject folder under {root} (expected {root}/disc*/OAS1_XXXX_MR1 "
            f"or {root}/OAS1_XXXX_MR1)"
        )
    entries, excluded = [], []
    for subject_id, folder in sorted(folders.items()):
        session = _SUBJECT_RE.match(subject_id).group(2)  # type: ignore[union-attr]
        if session != "1":
            reason = f"_MR{session} session (reliability rescan); only _MR1 sessions are used"
            excluded.append(SkippedSubject(subject_id, reason))
        elif subject_id in selection.excluded:
            excluded.append(SkippedSubject(subject_id, selection.excluded[subject_id]))
        elif subject_id in selection.skipped:
            skipped.append(SkippedSubject(subject_id, f"clinical table: {selection.skipped[subject_id]}"))
        elif subject_id not in selection.labels:
            skipped.append(SkippedSubject(subject_id, f"absent from the clinical table {csv_path.name}"))
        else:
            try:
                image_path, shape = _find_image(folder, subject_id)
            except _UnusableImage as err:
                skipped.append(SkippedSubject(subject_id, str(err)))
            else:
                entries.append(OasisEntry(subject_id, image_path, selection.labels[subject_id], shape))
    table_only = sorted(set(selection.labels) - set(folders))
    scan = OasisScan(root, csv_path, cohort, entries, skipped, excluded, table_only)
    if not entries:
        raise OasisDataError(f"no usable subject remains\n{scan.report()}")
    return scan


def to_data_dicts(
    root: str | Path, csv_path: str | Path | None = None, *, cohort: Cohort = "all"
) -> list[dict[str, Any]]:
    """MONAI-style data dicts for running one's own transforms on the 3D images.

    Each dict is ``{"image": str(path to the .img), "label": 0|1, "subject_id": str}``.
    MONAI picks no reader for ``.img`` by itself; load with
    ``monai.transforms.LoadImaged(keys="image", reader="NibabelReader")``.
    Subjects left out are reported in a warning; use :func:`scan_oasis` for the
    structured account.
    """
    scan = scan_oasis(root, csv_path, cohort=cohort)
    if scan.skipped:
        warnings.warn(scan.report(), stacklevel=2)
    return scan.data_dicts()


def extract_axial_slice(volume: Any, index: int | None = None) -> np.ndarray:
    """The transposed axial slice ``volume[:, :, index].T`` of an ``(X, Y, Z[, 1])`` volume.

    Args:
        volume: array or nibabel array proxy of shape ``(X, Y, Z)`` or ``(X, Y, Z, 1)``;
            only the requested slice is read from a proxy.
        index: axial index ``k``; default ``Z // 2`` (88 on the T88 grid).

    Returns:
        ``(Y, X)`` float32 array with ``out[row, col] == volume[col, row, index]``.
    """
    x, y, z = _volume_shape(tuple(volume.shape))
    index = z // 2 if index is None else index
    if not 0 <= index < z:
        raise IndexError(f"axial slice index {index} outside 0..{z - 1} for a volume of shape {(x, y, z)}")
    return np.asarray(volume[:, :, index], dtype=np.float32).reshape(x, y).T


def axial_slices(images: torch.Tensor, index: int | None = None) -> torch.Tensor:
    """The transposed axial slice of each volume, for display: ``(N, C, X, Y, Z)`` -> ``(N, C, Y, X)``.

    The convention of :func:`extract_axial_slice` (``out[..., row, col] ==
    volume[..., col, row, index]``), so a 3D study's figures look like the 2D
    study's images. 2D images ``(N, C, H, W)`` are returned as they are.

    Args:
        images: ``(N, C, H, W)`` images or ``(N, C, X, Y, Z)`` volumes.
        index: axial index ``k``; default ``Z // 2``.
    """
    if images.ndim == 4:
        return images
    if images.ndim != 5:
        raise ValueError(f"expected (N, C, H, W) images or (N, C, X, Y, Z) volumes, got {tuple(images.shape)}")
    z = images.shape[-1]
    index = z // 2 if index is None else index
    if not 0 <= index < z:
        raise IndexError(f"axial slice index {index} outside 0..{z - 1}")
    return images[..., index].transpose(-1, -2)


def _output_size(shape: tuple[int, ...], image_size: tuple[int, ...] | None, downsample: int) -> tuple[int, ...]:
    if image_size is not None:
        return tuple(image_size)
    size = tuple(s // downsample for s in shape)
    if min(size) < 1:
        raise OasisDataError(f"downsample={downsample} leaves nothing of an image of shape {shape}")
    return size


def _resize(image: np.ndarray, size: tuple[int, ...]) -> np.ndarray:
    """Resize a 2D or 3D image: area averaging when shrinking (no aliasing), linear otherwise."""
    if image.shape == size:
        return image
    shrinking = all(o <= i for o, i in zip(size, image.shape))
    mode = "area" if shrinking else ("bilinear" if image.ndim == 2 else "trilinear")
    options = {} if shrinking else {"align_corners": False}
    tensor = torch.from_numpy(np.ascontiguousarray(image))[None, None]
    return F.interpolate(tensor, size=size, mode=mode, **options)[0, 0].numpy()


def _min_max(image: np.ndarray) -> np.ndarray:
    """Scale to [0, 1]; ``ValueError`` for non-finite or constant images (nothing to learn from)."""
    if not np.isfinite(image).all():
        raise ValueError("image holds non-finite values")
    low, high = float(image.min()), float(image.max())
    if high <= low:
        raise ValueError(f"image is constant ({low}); nothing to scale")
    return ((image - low) / (high - low)).astype(np.float32)


def _check_options(dim: int, image_size: tuple[int, ...] | None, downsample: int) -> None:
    if dim not in (2, 3):
        raise ValueError(f"dim must be 2 or 3, got {dim}")
    if not isinstance(downsample, int) or downsample < 1:
        raise ValueError(f"downsample must be a positive integer, got {downsample!r}")
    if image_size is not None:
        if downsample != 1:
            raise ValueError("give either image_size or downsample, not both")
        if len(image_size) != dim or min(image_size) < 1:
            raise ValueError(f"image_size must hold {dim} positive sizes, got {image_size}")


def _read_image(path: Path, dim: int, slice_index: int | None) -> np.ndarray:
    """The 2D transposed axial slice ``(Y, X)`` or the 3D volume ``(X, Y, Z)``."""
    import nibabel as nib

    proxy = nib.load(str(path), mmap=False).dataobj
    if dim == 2:
        return extract_axial_slice(proxy, slice_index)
    return np.asarray(proxy, dtype=np.float32).reshape(_volume_shape(proxy.shape))


def _reference_grid(shapes: list[tuple[int, int, int]]) -> tuple[tuple[int, int, int], str]:
    """The volume shape every image must have, and how it was chosen (for the skip report).

    The most common shape among the subjects' headers, so that one odd file never
    decides the grid: the T88 grid on a real copy, the user's grid on a resampled
    copy. The T88 grid wins a tie; between other shapes, the first subject's (in
    ID order) does.
    """
    counts = Counter(shapes)
    most = max(counts.values())
    if counts.get(T88_SHAPE) == most:
        return T88_SHAPE, "the T88 grid"
    reference = next(shape for shape in shapes if counts[shape] == most)
    return reference, f"the most common grid ({most} of {len(shapes)} subjects)"


def load_oasis(
    root: str | Path,
    csv_path: str | Path | None = None,
    *,
    cohort: Cohort = "all",
    dim: int = 2,
    slice_index: int | None = None,
    image_size: tuple[int, ...] | None = None,
    downsample: int = 1,
    progress: bool = False,
) -> OasisData:
    """Load labelled OASIS-1 images from a local copy of the distribution.

    Args:
        root: folder holding ``disc*/OAS1_XXXX_MR1`` or ``OAS1_XXXX_MR1`` folders.
        csv_path: the clinical table; default ``root/oasis_cross-sectional.csv``.
        cohort: ``"all"`` (100 AD / 316 CN on the real table) or ``"clinicadl"``
            (age >= 62 with a CDR: 100 AD / 93 CN); see :func:`select_cohort`.
        dim: 2 for the transposed axial slice ``(Y, X)`` = ``(208, 176)`` (see the
            module docstring), 3 for the volume ``(X, Y, Z)`` = ``(176, 208, 176)``
            (26 MB per subject in float32 at full size: downsample large cohorts).
        slice_index: axial index ``k`` for ``dim=2``; default ``Z // 2`` (88 on T88).
        image_size: output size, ``(H, W)`` for 2D (e.g. ``(52, 44)``) or ``(X, Y, Z)``
            for 3D; area-averaged when shrinking.
        downsample: integer factor dividing every size instead of ``image_size``.
        progress: show a progress bar while reading.

    Returns:
        Images ``(N, 1, H, W)`` or ``(N, 1, X, Y, Z)`` float32, each min-max scaled to
        [0, 1], with labels and the account of subjects left out. All volumes must
        share one grid: the most common shape among the headers (the T88 grid on a
        real copy, which also wins a tie); subjects on another grid are skipped.

    Raises:
        OasisDataError: unusable path or table, or no readable subject.
    """
    _check_options(dim, image_size, downsample)
    scan = scan_oasis(root, csv_path, cohort=cohort)
    usable, off_grid = _on_common_grid(scan.entries)
    read, unreadable = _read_entries(usable, dim, slice_index, image_size, downsample, progress)
    skipped = sorted([*scan.skipped, *off_grid, *unreadable], key=lambda s: s.subject_id)
    if not read:
        lines = _summary_lines(skipped, scan.excluded, scan.table_only)
        raise OasisDataError("\n".join([f"no readable image remains under {scan.root}"] + lines))
    kind = f"2D axial slice {'middle' if slice_index is None else slice_index}" if dim == 2 else "3D volumes"
    return OasisData(
        torch.from_numpy(np.stack([image for _, image in read]))[:, None],
        torch.tensor([entry.label for entry, _ in read], dtype=torch.int64),
        [entry.subject_id for entry, _ in read],
        skipped=skipped,
        excluded=scan.excluded,
        table_only=scan.table_only,
        source=f"{scan.root} (cohort {cohort!r}, {kind})",
    )


def _on_common_grid(entries: list[OasisEntry]) -> tuple[list[OasisEntry], list[SkippedSubject]]:
    """The entries on the reference grid (see :func:`_reference_grid`), and the others as skipped."""
    reference, grid = _reference_grid([entry.shape for entry in entries])
    usable = [entry for entry in entries if entry.shape == reference]
    off_grid = [
        SkippedSubject(e.subject_id, f"volume shape {e.shape} differs from {reference}, {grid}; "
                       "all images must share one grid")
        for e in entries
        if e.shape != reference
    ]
    return usable, off_grid


def _read_entries(
    entries: list[OasisEntry],
    dim: int,
    slice_index: int | None,
    image_size: tuple[int, ...] | None,
    downsample: int,
    progress: bool,
) -> tuple[list[tuple[OasisEntry, np.ndarray]], list[SkippedSubject]]:
    """Each entry with its resized, min-max scaled image; entries whose file is damaged, as skipped."""
    read, unreadable = [], []
    for entry in tqdm(entries, desc="Reading OASIS-1", disable=not progress):
        try:
            image = _read_image(entry.image_path, dim, slice_index)
            image = _min_max(_resize(image, _output_size(image.shape, image_size, downsample)))
        except OasisDataError:
            raise
        except Exception as err:  # nibabel and numpy raise many types for damaged files
            unreadable.append(SkippedSubject(entry.subject_id, f"image {entry.image_path.name} unusable: {err}"))
            continue
        read.append((entry, image))
    return read, unreadable


def _check_binary_labels(labels: np.ndarray, where: str) -> None:
    """Raise :class:`OasisDataError` unless every label is 0 (CN) or 1 (AD).

    Another coding (``{0, 5}``, ``{1, 2}``, fractions) is refused rather than mapped:
    a guessed mapping could swap the classes, and labels outside ``{0, 1}`` would give
    the classifier one output per value up to the largest.
    """
    values = np.unique(labels)
    unexpected = values[~np.isin(values, (0, 1))]
    if unexpected.size:
        shown = ", ".join(f"{v:g}" for v in unexpected[:10].tolist())
        raise OasisDataError(
            f"{where} holds label value(s) {shown}; the OASIS study is binary (CN / AD): every label "
            "must be exactly 0 (CN) or 1 (AD), not a fraction or another code (no mapping is guessed)"
        )


def load_oasis_npz(
    path: str | Path, *, image_size: tuple[int, int] | None = None, downsample: int = 1
) -> OasisData:
    """Read the authors' ``OASIS.npz``: ``x_train`` ``(N, 208, 176, 1)`` in [0, 255], ``y_train`` ``(N,)``.

    Args:
        path: the ``.npz`` file (opened without pickle support).
        image_size: output ``(H, W)``; area-averaged when shrinking.
        downsample: integer factor instead of ``image_size``.

    Returns:
        Images ``(N, 1, H, W)`` float32, each min-max scaled to [0, 1]; subject IDs
        are ``"<file stem>_<index>"`` since the file carries none.

    Raises:
        OasisDataError: missing file or keys, bad shapes, labels other than 0 (CN)
            and 1 (AD), or no usable image.
    """
    _check_options(2, image_size, downsample)
    path = Path(path)
    if not path.is_file():
        raise OasisDataError(f"{path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [k for k in ("x_train", "y_train") if k not in archive.files]
            if missing:
                raise OasisDataError(f"{path}: missing array(s) {missing}; found {archive.files}")
            x, y = archive["x_train"], archive["y_train"]
    except OasisDataError:
        raise
    except Exception as err:  # zipfile and numpy raise many types for damaged archives
        raise OasisDataError(f"{path}: cannot be read as an .npz archive ({err})") from err
    if x.ndim == 4 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.ndim != 3 or y.shape != (len(x),) or not np.issubdtype(y.dtype, np.number):
        raise OasisDataError(
            f"{path}: expected x_train (N, H, W[, 1]) and numeric y_train (N,), "
            f"got {x.shape} and {y.shape} {y.dtype}"
        )
    _check_binary_labels(y, f"{path}: y_train")
    images, labels, subject_ids, skipped = [], [], [], []
    for i, (image, label) in enumerate(zip(x, y)):
        subject_id = f"{path.stem}_{i:04d}"
        try:
            image = image.astype(np.float32)
            images.append(_min_max(_resize(image, _output_size(image.shape, image_size, downsample))))
        except ValueError as err:
            skipped.append(SkippedSubject(subject_id, str(err)))
            continue
        labels.append(int(label))
        subject_ids.append(subject_id)
    if not images:
        raise OasisDataError(f"{path}: no usable image among {len(x)}: {skipped[:3]}")
    return OasisData(
        torch.from_numpy(np.stack(images))[:, None],
        torch.tensor(labels, dtype=torch.int64),
        subject_ids,
        skipped=skipped,
        source=str(path),
    )
