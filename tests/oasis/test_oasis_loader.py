"""The real OASIS-1 loader on small fake distributions written here (no real data needed)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch

from oasis.loader import (
    CSV_COLUMNS,
    CSV_NAME,
    T88_FOLDER,
    T88_SHAPE,
    OasisDataError,
    axial_slices,
    extract_axial_slice,
    load_oasis,
    load_oasis_npz,
    read_clinical_table,
    scan_oasis,
    select_cohort,
    t88_image_name,
    to_data_dicts,
)

SHAPE = (8, 10, 6)  # (X, Y, Z): small stand-in for the 176 x 208 x 176 T88 grid


def write_analyze(img_path: Path, volume: np.ndarray) -> None:
    """Analyze 7.5 pair, int16 big-endian, 4D (X, Y, Z, 1) like the OASIS files."""
    header = nib.AnalyzeHeader(endianness=">")
    header.set_data_dtype(np.int16)
    header.set_data_shape((*volume.shape, 1))
    img_path.parent.mkdir(parents=True, exist_ok=True)
    nib.AnalyzeImage(volume[..., None].astype(np.int16), None, header=header).to_filename(str(img_path))


def random_volume(seed: int, shape: tuple[int, ...] = SHAPE) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 1000, size=shape).astype(np.int16)


def add_subject(root: Path, subject_id: str, volume: np.ndarray | None = None, disc: str | None = "disc1",
                n_averages: int = 4) -> Path:
    folder = (root / disc if disc else root) / subject_id
    img = folder / T88_FOLDER / t88_image_name(subject_id, n_averages)
    write_analyze(img, random_volume(int(subject_id[5:9])) if volume is None else volume)
    return img


def csv_row(subject_id: str, age: int | str = 75, cdr: str = "0") -> dict[str, object]:
    return {"ID": subject_id, "M/F": "F", "Hand": "R", "Age": age, "Educ": 3, "SES": 2, "MMSE": 29,
            "CDR": cdr, "eTIV": 1500, "nWBV": 0.75, "ASF": 1.17, "Delay": ""}


def write_csv(path: Path, rows: list[dict[str, object]], columns: tuple[str, ...] = CSV_COLUMNS) -> Path:
    pd.DataFrame(rows, columns=list(CSV_COLUMNS))[list(columns)].to_csv(path, index=False)
    return path


@pytest.fixture
def good_tree(tmp_path: Path) -> Path:
    """Five usable subjects over two discs: CDR blank, 0, 0 (CN) and 0.5, 1 (AD)."""
    cdrs = {"OAS1_0001_MR1": ("", 25), "OAS1_0002_MR1": ("0", 70), "OAS1_0003_MR1": ("0.5", 80),
            "OAS1_0004_MR1": ("0", 66), "OAS1_0005_MR1": ("1", 77)}
    for i, subject_id in enumerate(cdrs):
        add_subject(tmp_path, subject_id, disc="disc1" if i < 3 else "disc2", n_averages=3 if i == 1 else 4)
    write_csv(tmp_path / CSV_NAME, [csv_row(s, age, cdr) for s, (cdr, age) in cdrs.items()])
    return tmp_path


def test_loads_2d_and_3d_with_cdr_labels(good_tree: Path) -> None:
    data = load_oasis(good_tree)
    assert data.subject_ids == [f"OAS1_000{i}_MR1" for i in range(1, 6)]
    assert data.labels.tolist() == [0, 0, 1, 0, 1]
    assert data.labels.dtype == torch.int64
    assert data.images.shape == (5, 1, SHAPE[1], SHAPE[0]) and data.images.dtype == torch.float32
    flat = data.images.flatten(1)
    assert torch.allclose(flat.min(1).values, torch.zeros(5)) and torch.allclose(flat.max(1).values, torch.ones(5))
    assert data.skipped == [] and data.excluded == [] and data.table_only == []
    assert "loaded 5 subjects: 3 CN (label 0), 2 AD (label 1)" in data.report()

    volumes = load_oasis(good_tree, dim=3)
    assert volumes.images.shape == (5, 1, *SHAPE)
    raw = random_volume(2).astype(np.float32)
    expected = (raw - raw.min()) / (raw.max() - raw.min())
    np.testing.assert_allclose(volumes.images[1, 0].numpy(), expected, atol=1e-6)


def test_subject_folders_directly_under_root(tmp_path: Path) -> None:
    for subject_id in ("OAS1_0001_MR1", "OAS1_0002_MR1"):
        add_subject(tmp_path, subject_id, disc=None)
    write_csv(tmp_path / CSV_NAME, [csv_row("OAS1_0001_MR1", cdr="2"), csv_row("OAS1_0002_MR1")])
    assert load_oasis(tmp_path).labels.tolist() == [1, 0]


def test_table_with_byte_order_mark_and_na_cells(tmp_path: Path) -> None:
    """Only an empty CDR cell means CN; "N/A" could hide anyone's missing assessment, so it is reported."""
    cdrs = {"OAS1_0001_MR1": "N/A", "OAS1_0002_MR1": " 0.5", "OAS1_0003_MR1": "", "OAS1_0004_MR1": "nan"}
    for subject_id in cdrs:
        add_subject(tmp_path, subject_id)
    rows = [csv_row(s, age="N/A" if s == "OAS1_0003_MR1" else 75, cdr=cdr) for s, cdr in cdrs.items()]
    (tmp_path / CSV_NAME).write_bytes(b"\xef\xbb\xbf" + pd.DataFrame(rows).to_csv(index=False).encode())
    data = load_oasis(tmp_path)
    assert data.subject_ids == ["OAS1_0002_MR1", "OAS1_0003_MR1"] and data.labels.tolist() == [1, 0]
    reasons = {s.subject_id: s.reason for s in data.skipped}
    assert set(reasons) == {"OAS1_0001_MR1", "OAS1_0004_MR1"}
    assert "CDR value 'N/A' is not a number" in reasons["OAS1_0001_MR1"]
    assert "CDR value 'nan' is not a non-negative number" in reasons["OAS1_0004_MR1"]
    assert "OAS1_0001_MR1: clinical table: CDR value 'N/A'" in data.report()


def test_transposed_axial_slice_convention(tmp_path: Path) -> None:
    volume = np.zeros(SHAPE, dtype=np.int16)
    volume[2, 7, 4] = 1000  # x = 2, y = 7 on slice z = 4
    volume[5, 1, 4] = 500
    volume[1, 1, SHAPE[2] // 2] = 800  # marker on the default (middle) slice
    add_subject(tmp_path, "OAS1_0001_MR1", volume)
    write_csv(tmp_path / CSV_NAME, [csv_row("OAS1_0001_MR1")])

    image = load_oasis(tmp_path, slice_index=4).images[0, 0]
    assert image.shape == (SHAPE[1], SHAPE[0])  # (Y, X): 208 x 176 on the T88 grid
    assert image[7, 2] == 1.0 and image[1, 5] == 0.5  # image[row, col] == volume[col, row, k]
    assert image.sum() == 1.5
    middle = load_oasis(tmp_path).images[0, 0]
    assert middle[1, 1] == 1.0 and middle.sum() == 1.0

    np.testing.assert_array_equal(extract_axial_slice(volume, 4), volume[:, :, 4].T)
    np.testing.assert_array_equal(extract_axial_slice(volume[..., None], 4), volume[:, :, 4].T)
    with pytest.raises(IndexError):
        extract_axial_slice(volume, SHAPE[2])


def test_resizing_options(good_tree: Path) -> None:
    assert load_oasis(good_tree, image_size=(5, 4)).images.shape == (5, 1, 5, 4)
    assert load_oasis(good_tree, downsample=2).images.shape == (5, 1, 5, 4)
    assert load_oasis(good_tree, dim=3, downsample=2).images.shape == (5, 1, 4, 5, 3)
    assert load_oasis(good_tree, dim=3, image_size=(4, 4, 4)).images.shape == (5, 1, 4, 4, 4)
    for bad in ({"image_size": (5, 4), "downsample": 2}, {"image_size": (5, 4, 3)}, {"downsample": 0}, {"dim": 4}):
        with pytest.raises(ValueError):
            load_oasis(good_tree, **bad)
    with pytest.raises(OasisDataError, match="downsample=20"):
        load_oasis(good_tree, downsample=20)


def test_every_bad_subject_is_reported_with_its_reason(tmp_path: Path) -> None:
    rows = [csv_row(f"OAS1_000{i}_MR1", cdr="0.5" if i == 2 else "0") for i in range(1, 10)]
    rows[8]["CDR"] = "abc"  # OAS1_0009: malformed CDR cell
    rows.append(csv_row("OAS1_0001_MR2"))
    rows.append(csv_row("OAS1_0099_MR1"))  # in the table, no folder on disk
    write_csv(tmp_path / CSV_NAME, rows)
    add_subject(tmp_path, "OAS1_0001_MR1")
    add_subject(tmp_path, "OAS1_0002_MR1")
    (tmp_path / "disc1" / "OAS1_0003_MR1" / T88_FOLDER).mkdir(parents=True)  # T88 folder, no image
    (tmp_path / "disc1" / "OAS1_0004_MR1" / "RAW").mkdir(parents=True)  # no T88 folder at all
    truncated = add_subject(tmp_path, "OAS1_0005_MR1")
    truncated.write_bytes(truncated.read_bytes()[:100])
    bad_header = add_subject(tmp_path, "OAS1_0006_MR1")
    bad_header.with_suffix(".hdr").write_bytes(b"not an analyze header")
    add_subject(tmp_path, "OAS1_0007_MR1").with_suffix(".hdr").unlink()
    add_subject(tmp_path, "OAS1_0008_MR1", random_volume(8, (8, 10, 7)))  # other grid than the first
    add_subject(tmp_path, "OAS1_0009_MR1")
    add_subject(tmp_path, "OAS1_0010_MR1")  # absent from the table
    add_subject(tmp_path, "OAS1_0001_MR2")  # reliability rescan
    add_subject(tmp_path, "OAS1_0002_MR1", disc="disc2")  # same subject twice
    (tmp_path / "disc1" / "notes.txt").write_text("not a subject")

    data = load_oasis(tmp_path)
    assert data.subject_ids == ["OAS1_0001_MR1", "OAS1_0002_MR1"] and data.labels.tolist() == [0, 1]
    reasons = {s.subject_id: s.reason for s in data.skipped}
    assert set(reasons) == {f"OAS1_000{i}_MR1" for i in range(2, 10)} | {"OAS1_0010_MR1"}
    assert "duplicate folder" in reasons["OAS1_0002_MR1"]
    assert "OAS1_0003_MR1_mpr_n?_anon_111_t88_masked_gfc.img" in reasons["OAS1_0003_MR1"]
    assert "no PROCESSED/MPRAGE/T88_111 folder" in reasons["OAS1_0004_MR1"]
    assert "truncated" in reasons["OAS1_0005_MR1"]
    assert "unreadable image header" in reasons["OAS1_0006_MR1"]
    assert "header OAS1_0007_MR1_mpr_n4_anon_111_t88_masked_gfc.hdr missing" in reasons["OAS1_0007_MR1"]
    assert "differs" in reasons["OAS1_0008_MR1"]
    assert "CDR value 'abc' is not a number" in reasons["OAS1_0009_MR1"]
    assert "absent from the clinical table" in reasons["OAS1_0010_MR1"]
    assert [(s.subject_id, "reliability rescan" in s.reason) for s in data.excluded] == [("OAS1_0001_MR2", True)]
    assert data.table_only == ["OAS1_0099_MR1"]
    report = data.report()
    for subject_id, reason in reasons.items():
        assert f"{subject_id}: {reason}" in report
    assert "excluded by design: 1" in report and "OAS1_0099_MR1" in report


def test_odd_first_subject_is_the_one_skipped(tmp_path: Path) -> None:
    """The grid is the most common shape among the headers, not the first subject's."""
    odd = (8, 10, 7)
    rows = []
    for i in range(1, 5):
        subject_id = f"OAS1_000{i}_MR1"
        add_subject(tmp_path, subject_id, random_volume(i, odd if i == 1 else SHAPE))
        rows.append(csv_row(subject_id, cdr="1" if i % 2 else "0"))
    write_csv(tmp_path / CSV_NAME, rows)
    data = load_oasis(tmp_path)
    assert data.subject_ids == ["OAS1_0002_MR1", "OAS1_0003_MR1", "OAS1_0004_MR1"]
    assert [s.subject_id for s in data.skipped] == ["OAS1_0001_MR1"]
    reason = data.skipped[0].reason
    assert f"volume shape {odd} differs from {SHAPE}, the most common grid (3 of 4 subjects)" in reason
    assert f"OAS1_0001_MR1: {reason}" in data.report()


def test_t88_grid_is_kept_when_shapes_tie(tmp_path: Path) -> None:
    add_subject(tmp_path, "OAS1_0001_MR1")  # the small stand-in grid, first in ID order
    add_subject(tmp_path, "OAS1_0002_MR1", random_volume(2, T88_SHAPE))
    write_csv(tmp_path / CSV_NAME, [csv_row("OAS1_0001_MR1"), csv_row("OAS1_0002_MR1", cdr="1")])
    data = load_oasis(tmp_path)
    assert data.subject_ids == ["OAS1_0002_MR1"] and data.images.shape == (1, 1, 208, 176)
    assert [s.subject_id for s in data.skipped] == ["OAS1_0001_MR1"]
    assert f"differs from {T88_SHAPE}, the T88 grid" in data.skipped[0].reason


def test_clinicadl_cohort_excludes_young_and_cdr_less_subjects(good_tree: Path) -> None:
    data = load_oasis(good_tree, cohort="clinicadl")
    assert data.subject_ids == ["OAS1_0002_MR1", "OAS1_0003_MR1", "OAS1_0004_MR1", "OAS1_0005_MR1"]
    assert data.labels.tolist() == [0, 1, 0, 1]
    assert [(s.subject_id, s.reason) for s in data.excluded] == [("OAS1_0001_MR1", "clinicadl cohort: no CDR value")]


def test_unusable_inputs_raise_clear_errors(tmp_path: Path, good_tree: Path) -> None:
    with pytest.raises(OasisDataError, match="does not exist"):
        load_oasis(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(OasisDataError, match="clinical table .* not found"):
        load_oasis(empty)
    write_csv(empty / CSV_NAME, [csv_row("OAS1_0001_MR1")])
    with pytest.raises(OasisDataError, match="no OAS1_XXXX_MRn subject folder"):
        load_oasis(empty)

    no_cdr_columns = tuple(c for c in CSV_COLUMNS if c != "CDR")
    without_cdr = write_csv(tmp_path / "no_cdr.csv", [csv_row("OAS1_0001_MR1")], no_cdr_columns)
    with pytest.raises(OasisDataError, match=r"missing column\(s\) \['CDR'\]"):
        load_oasis(good_tree, without_cdr)
    duplicated = write_csv(tmp_path / "dup.csv", [csv_row("OAS1_0001_MR1")] * 2)
    with pytest.raises(OasisDataError, match="more than once"):
        read_clinical_table(duplicated)

    unrelated = write_csv(tmp_path / "other.csv", [csv_row("OAS1_0777_MR1")])
    with pytest.raises(OasisDataError, match="no usable subject remains"):
        load_oasis(good_tree, unrelated)

    flat = tmp_path / "flat"
    add_subject(flat, "OAS1_0001_MR1", np.full(SHAPE, 7, dtype=np.int16))
    write_csv(flat / CSV_NAME, [csv_row("OAS1_0001_MR1")])
    with pytest.raises(OasisDataError, match="no readable image remains(.|\n)*constant"):
        load_oasis(flat)


def test_input_files_are_never_modified(good_tree: Path) -> None:
    def fingerprint() -> dict[str, tuple[str, int]]:
        return {str(p): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
                for p in sorted(good_tree.rglob("*")) if p.is_file()}

    before = fingerprint()
    load_oasis(good_tree)
    load_oasis(good_tree, dim=3)
    to_data_dicts(good_tree)
    assert fingerprint() == before


def test_label_rule_on_the_real_cdr_distribution(tmp_path: Path) -> None:
    """SPEC section 5: 416 MR1 (CDR blank 181, 0: 135, 0.5: 70, 1: 28, 2: 2) and 20 MR2 rows."""
    rows, number = [], iter(range(1, 1000))
    for count, cdr, ages in [
        (181, "", range(18, 60)),  # the blank-CDR subjects are all under 60
        (93, "0", range(62, 95)),
        (42, "0", range(33, 62)),  # CDR 0 but under 62: out of the ClinicaDL cohort
        (70, "0.5", range(62, 97)),
        (28, "1", range(62, 97)),
        (2, "2", range(62, 97)),
    ]:
        rows += [csv_row(f"OAS1_{next(number):04d}_MR1", ages[i % len(ages)], cdr) for i in range(count)]
    rows += [csv_row(f"OAS1_{i:04d}_MR2", 70, "0.5" if i % 3 else "0") for i in range(190, 210)]
    table = read_clinical_table(write_csv(tmp_path / CSV_NAME, rows))
    assert len(table) == 436

    everyone = select_cohort(table)
    assert sum(everyone.labels.values()) == 100 and len(everyone.labels) == 416
    assert len(everyone.excluded) == 20 and not everyone.skipped
    clinicadl = select_cohort(table, "clinicadl")
    assert sum(clinicadl.labels.values()) == 100 and len(clinicadl.labels) - 100 == 93
    assert len(clinicadl.excluded) == 20 + 181 + 42


def test_data_dicts_for_monai(good_tree: Path, tmp_path: Path) -> None:
    dicts = to_data_dicts(good_tree)
    assert [d["subject_id"] for d in dicts] == [f"OAS1_000{i}_MR1" for i in range(1, 6)]
    assert [d["label"] for d in dicts] == [0, 0, 1, 0, 1]
    assert all(isinstance(d["image"], str) and d["image"].endswith(".img") and Path(d["image"]).is_file()
               for d in dicts)
    assert "_mpr_n3_anon" in dicts[1]["image"]  # the n3 / n4 variants are both found

    transforms = pytest.importorskip("monai.transforms")
    loaded = transforms.LoadImaged(keys="image", reader="NibabelReader")(dicts[0])
    assert tuple(loaded["image"].shape[:3]) == SHAPE

    (good_tree / "disc1" / "OAS1_0002_MR1" / T88_FOLDER / t88_image_name("OAS1_0002_MR1", 3)).unlink()
    with pytest.warns(UserWarning, match="OAS1_0002_MR1: no OAS1_0002_MR1_mpr_n"):
        assert len(to_data_dicts(good_tree)) == 4
    assert len(scan_oasis(good_tree).skipped) == 1


def test_authors_npz_layout(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(4, 208, 176, 1)).astype(np.float64)
    x[2] = 17.0  # a blank image is reported, not loaded
    path = tmp_path / "OASIS.npz"
    np.savez(path, x_train=x, y_train=np.array([0, 1, 0, 1]))

    data = load_oasis_npz(path)
    assert data.images.shape == (3, 1, 208, 176) and data.images.dtype == torch.float32
    assert data.labels.tolist() == [0, 1, 1] and data.subject_ids == ["OASIS_0000", "OASIS_0001", "OASIS_0003"]
    np.testing.assert_allclose(data.images[0, 0].numpy(), (x[0, ..., 0] - x[0].min()) / (x[0].max() - x[0].min()),
                               atol=1e-6)
    assert [s.subject_id for s in data.skipped] == ["OASIS_0002"] and "constant" in data.skipped[0].reason
    assert load_oasis_npz(path, image_size=(52, 44)).images.shape == (3, 1, 52, 44)

    with pytest.raises(OasisDataError, match="does not exist"):
        load_oasis_npz(tmp_path / "missing.npz")
    np.savez(tmp_path / "bad.npz", x_train=x)
    with pytest.raises(OasisDataError, match=r"missing array\(s\) \['y_train'\]"):
        load_oasis_npz(tmp_path / "bad.npz")
    np.savez(tmp_path / "short.npz", x_train=x, y_train=np.array([0, 1]))
    with pytest.raises(OasisDataError, match="expected x_train"):
        load_oasis_npz(tmp_path / "short.npz")
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(OasisDataError, match="cannot be read"):
        load_oasis_npz(tmp_path / "junk.npz")


@pytest.mark.parametrize("labels, shown", [([0, 5, 0, 5], "5"), ([0, 1, 0.7, 1], "0.7"), ([0, 1, 2, 1], "2")])
def test_npz_labels_must_be_cn_or_ad(tmp_path: Path, labels: list[float], shown: str) -> None:
    """The study is binary: {0, 5} would give a 6-output classifier, 0.7 no class at all."""
    x = np.random.default_rng(0).integers(0, 256, size=(4, 16, 12, 1)).astype(np.float32)
    path = tmp_path / "OASIS.npz"
    np.savez(path, x_train=x, y_train=np.array(labels))
    message = rf"y_train holds label value\(s\) {shown};.*binary.*exactly 0 \(CN\) or 1 \(AD\)"
    with pytest.raises(OasisDataError, match=message):
        load_oasis_npz(path)
    np.savez(path, x_train=x, y_train=np.array([0.0, 1.0, 1.0, 0.0]))  # integral floats are fine
    assert load_oasis_npz(path).labels.tolist() == [0, 1, 1, 0]


def test_volume_mode_downsamples_by_area_averaging(good_tree: Path) -> None:
    """dim=3 with downsample: each volume area-averaged to the smaller grid, then scaled to [0, 1]."""
    volumes = load_oasis(good_tree, dim=3, downsample=2)
    assert volumes.images.shape == (5, 1, 4, 5, 3) and volumes.images.dtype == torch.float32
    raw = torch.from_numpy(random_volume(2).astype(np.float32))
    pooled = torch.nn.functional.avg_pool3d(raw[None, None], 2)[0, 0]
    expected = (pooled - pooled.min()) / (pooled.max() - pooled.min())
    torch.testing.assert_close(volumes.images[1, 0], expected)
    same = load_oasis(good_tree, dim=3, image_size=(4, 5, 3))
    assert torch.equal(same.images, volumes.images)
    with pytest.raises(ValueError, match="image_size must hold 3 positive sizes"):
        load_oasis(good_tree, dim=3, image_size=(4, 5))


def test_axial_slices_follow_the_2d_convention(good_tree: Path) -> None:
    """The middle axial slice of each loaded volume is the 2D loader's image (both scaled to [0, 1])."""
    volumes = load_oasis(good_tree, dim=3).images
    slices = axial_slices(volumes)
    assert slices.shape == (5, 1, SHAPE[1], SHAPE[0])
    flat = slices.flatten(1)
    low, high = flat.min(1).values.view(-1, 1, 1, 1), flat.max(1).values.view(-1, 1, 1, 1)
    torch.testing.assert_close((slices - low) / (high - low), load_oasis(good_tree).images)
    volume = volumes[2, 0].numpy()
    assert np.array_equal(axial_slices(volumes, index=1)[2, 0].numpy(), extract_axial_slice(volume, 1))
    images = torch.rand(2, 1, 6, 5)
    assert axial_slices(images) is images  # 2D images are shown as they are
    with pytest.raises(ValueError, match=r"\(N, C, X, Y, Z\) volumes"):
        axial_slices(torch.rand(6, 5, 4))
    with pytest.raises(IndexError, match="outside 0..5"):
        axial_slices(volumes, index=6)
