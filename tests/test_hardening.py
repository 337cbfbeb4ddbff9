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
from pipelines.lowdata.sources import SourceConfig, load_source


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


# --- defects 3 and 4: run-directory artefacts checksummed on read; damaged ones moved aside and remade -------

BENCH = Path(__file__).resolve().parents[1] / "configs" / "mnist_tiny.yaml"


def _bench_config(mnist: Path, **overrides):
    from pipelines.benchmark.config import load_benchmark_config

    settings = {"data.path": str(mnist), "progress": False, "sampling.samplers": ["prior", "gmm"],
                "sampling.n_samples": 50, **overrides}
    return load_benchmark_config(BENCH, settings)


@pytest.fixture(scope="module")
def bench_template(tmp_path_factory, mnist_file: Path) -> Path:
    from pipelines.benchmark.study import run_benchmark

    out = tmp_path_factory.mktemp("bench") / "run"
    run_benchmark(_bench_config(mnist_file), out)
    return out


@pytest.fixture
def finished_bench(tmp_path: Path, bench_template: Path) -> Path:
    """A private copy of a finished tiny benchmark (prior and GMM rows)."""
    return Path(shutil.copytree(bench_template, tmp_path / "run"))


def test_tampered_samples_and_model_are_detected_and_remade(finished_bench: Path, mnist_file: Path) -> None:
    from pipelines.benchmark.study import run_benchmark

    samples, vae = finished_bench / "samples" / "gmm.pt", finished_bench / "model" / "vae.pt"
    original = torch.load(samples, weights_only=True)
    tampered = {**original, "z": original["z"] + 1.0}  # a valid archive with other numbers
    torch.save(tampered, samples)
    model = torch.load(vae, weights_only=True)
    model["state"] = {k: v + 0.5 if v.is_floating_point() else v for k, v in model["state"].items()}
    torch.save(model, vae)
    (finished_bench / "results" / "gmm.json").unlink()
    run_benchmark(_bench_config(mnist_file), finished_bench)
    assert (samples.parent / "gmm.pt.corrupt").is_file() and (vae.parent / "vae.pt.corrupt").is_file()
    assert torch.equal(torch.load(samples, weights_only=True)["z"], original["z"])


def test_damaged_intermediates_are_moved_aside_and_recomputed(finished_bench: Path, mnist_file: Path) -> None:
    from pipelines.benchmark.study import run_benchmark

    names = ["features/test_domain.pt", "domain_classifier.pt", "model/codes.pt", "samples/prior.pt"]
    for name in names:
        target = finished_bench / name
        target.write_bytes(target.read_bytes()[:100])  # truncated
    (finished_bench / "results" / "prior.json").unlink()
    rerun = run_benchmark(_bench_config(mnist_file), finished_bench)
    assert rerun.evaluated == 1
    for name in names:
        target = finished_bench / name
        assert target.with_name(target.name + ".corrupt").is_file(), name
        assert torch.load(target, weights_only=True), name  # made again, whole


def test_edited_result_with_a_string_for_a_number_is_moved_aside(finished_bench: Path, mnist_file: Path) -> None:
    from pipelines.benchmark.study import run_benchmark

    result = finished_bench / "results" / "gmm.json"
    record = json.loads(result.read_text())
    record["fd_domain"] = "12.5"
    result.write_text(json.dumps(record))
    rerun = run_benchmark(_bench_config(mnist_file), finished_bench)
    assert rerun.evaluated == 1 and (result.parent / "gmm.json.corrupt").is_file()
    assert isinstance(json.loads(result.read_text())["fd_domain"], float)


# --- defect 1: the benchmark sweep never overwrites a foreign folder or drops finished rows ---------------------


def test_sweep_refuses_a_foreign_folder_untouched(tmp_path: Path, mnist_file: Path) -> None:
    from pipelines.benchmark.study import run_sweep
    from pipelines.common.run_directory import RunDirectoryError

    (tmp_path / "sweep").mkdir()
    (tmp_path / "sweep" / "summary.csv").write_text("x\n")
    with pytest.raises(RunDirectoryError, match="not a study run directory"):
        run_sweep(_bench_config(mnist_file, train_sizes=[60], **{"sampling.samplers": ["prior"]}), tmp_path)
    assert (tmp_path / "sweep" / "summary.csv").read_text() == "x\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep"]


@pytest.fixture(scope="module")
def sweep_template(tmp_path_factory, mnist_file: Path) -> Path:
    from pipelines.benchmark.study import run_sweep

    out = tmp_path_factory.mktemp("sweep") / "run"
    run_sweep(_bench_config(mnist_file, train_sizes=[60]), out)
    return out


def test_sweep_of_other_settings_is_refused_and_the_report_kept(tmp_path: Path, sweep_template: Path,
                                                                  mnist_file: Path) -> None:
    from pipelines.benchmark.study import run_sweep
    from pipelines.common.run_directory import RunDirectoryError

    out = Path(shutil.copytree(sweep_template, tmp_path / "run"))
    before = (out / "sweep" / "summary.csv").read_bytes()
    other = _bench_config(mnist_file, train_sizes=[80], **{"sampling.samplers": ["prior"], "sampling.n_samples": 40})
    with pytest.raises(RunDirectoryError, match="n_samples"):
        run_sweep(other, out)
    assert (out / "sweep" / "summary.csv").read_bytes() == before and not (out / "n_train_80").exists()


def test_sweep_rerun_with_fewer_samplers_or_sizes_keeps_every_row(tmp_path: Path, sweep_template: Path,
                                                                   mnist_file: Path) -> None:
    import pandas as pd

    from pipelines.benchmark.study import run_sweep

    out = Path(shutil.copytree(sweep_template, tmp_path / "run"))
    run_sweep(_bench_config(mnist_file, train_sizes=[60], **{"sampling.samplers": ["prior"]}), out)
    table = pd.read_csv(out / "sweep" / "summary.csv")
    assert sorted(table["key"]) == ["gmm", "prior"]
    run_sweep(_bench_config(mnist_file, train_sizes=[80], **{"sampling.samplers": ["prior"]}), out)
    table = pd.read_csv(out / "sweep" / "summary.csv")
    assert sorted(zip(table["n_train"], table["key"])) == [(60, "gmm"), (60, "prior"), (80, "prior")]


def test_benchmark_rerun_with_fewer_samplers_keeps_every_row(finished_bench: Path, mnist_file: Path) -> None:
    import pandas as pd

    from pipelines.benchmark.study import run_benchmark

    result = run_benchmark(_bench_config(mnist_file, **{"sampling.samplers": ["gmm"]}), finished_bench)
    assert sorted(result.table["key"]) == ["gmm", "prior"]
    assert sorted(pd.read_csv(finished_bench / "report" / "summary.csv")["key"]) == ["gmm", "prior"]


# --- defect 5: resource exhaustion refused before allocation, errors of bounded length --------------------------

LOWDATA_TINY = Path(__file__).resolve().parents[1] / "configs" / "lowdata_tiny.yaml"


def _alias_bomb(levels: int) -> str:
    """YAML of a few hundred bytes whose aliases make ``name`` stand for ``10 ** levels`` values."""
    parts = ['&a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    parts += [f"&a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, levels)]
    return "name: [" + ", ".join(parts) + "]\n"


def test_yaml_alias_bomb_is_refused_with_a_short_message(tmp_path: Path) -> None:
    from augmentor.utils.config import ConfigError
    from pipelines.lowdata.config import load_lowdata_config

    path = tmp_path / "bomb.yaml"
    path.write_text(_alias_bomb(6))  # 10**6 values once expanded
    with pytest.raises(ConfigError) as raised:
        load_lowdata_config(path)
    assert "alias" in str(raised.value) and len(str(raised.value)) < 1000


def test_a_huge_value_quoted_in_an_error_is_cut(tmp_path: Path) -> None:
    from augmentor.utils.config import ConfigError
    from pipelines.lowdata.config import load_lowdata_config

    path = tmp_path / "long.yaml"
    path.write_text(json.dumps({"num_threads": "x" * 100_000, "seeds": list(range(50_000))}))
    with pytest.raises(ConfigError, match="num_threads") as raised:
        load_lowdata_config(path)
    assert len(str(raised.value)) < 1000


@pytest.mark.parametrize(
    ("setting", "named"),
    [
        ("sampling.n_per_class=1000000000000", "n_per_class = 1000000000000"),
        ("vae.architecture.latent_dim=1000000000", "latent_dim 1000000000"),
    ],
)
def test_absurd_sizes_are_refused_before_the_run_directory_is_made(tmp_path: Path, capsys, setting: str,
                                                                   named: str) -> None:
    from pipelines.lowdata.study import main

    out = tmp_path / "run"
    assert main(["--config", str(LOWDATA_TINY), "--set", setting, "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert named in error and "GiB" in error and not out.exists()


def test_absurd_resize_is_refused_by_the_config(tmp_path: Path) -> None:
    from augmentor.utils.config import ConfigError

    with pytest.raises(ConfigError, match=r"spatial_size \[1000000, 1000000\].*GiB"):
        SourceConfig(source="datadicts", path=str(tmp_path / "list.json"),
                     preprocessing={"spatial_size": [1_000_000, 1_000_000]})


def test_generate_of_an_absurd_count_is_refused_before_sampling(fitted_2d) -> None:
    augmentor, _, _ = fitted_2d
    with pytest.raises(ValueError, match=r"generate\(n_per_class=1000000000000\).*GiB"):
        augmentor.generate(10**12, "prior")


def test_tampered_latent_dim_in_a_saved_folder_is_refused_before_building(fitted_2d, tmp_path: Path) -> None:
    from augmentor import GeometricAugmentor
    from augmentor.utils.io import CorruptSaveError, file_digest

    augmentor, _, _ = fitted_2d
    folder = augmentor.save(tmp_path / "saved")
    config = json.loads((folder / "config.json").read_text())
    config["vae"]["latent_dim"] = 10**8
    (folder / "config.json").write_text(json.dumps(config))
    manifest = json.loads((folder / "manifest.json").read_text())  # regenerated, as a careful tamperer would
    manifest["files"]["config.json"] = file_digest(folder / "config.json")
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CorruptSaveError, match="latent_dim 100000000.*GiB"):
        GeometricAugmentor.load(folder)


# --- defect 6: RandSyntheticSwapd -----------------------------------------------------------------------------


def _swap_pool():
    from augmentor.data.transforms import SyntheticPool

    return SyntheticPool(torch.rand(4, 1, 4, 4), torch.tensor([0, 0, 1, 1]))


@pytest.mark.parametrize("prob", [2.0, -1.0, float("nan")])
def test_swapd_probability_outside_zero_one_is_refused(prob: float) -> None:
    from augmentor.data.transforms import RandSyntheticSwapd

    with pytest.raises(ValueError, match="prob must be in"):
        RandSyntheticSwapd("image", _swap_pool(), prob=prob)


def test_swapd_never_writes_a_synthetic_image_into_a_label_map() -> None:
    from augmentor.data.transforms import RandSyntheticSwapd

    with pytest.raises(ValueError, match="label_map_keys"):
        RandSyntheticSwapd(["image", "seg"], _swap_pool(), prob=1.0)
    seg = torch.ones(1, 4, 4, dtype=torch.uint8)
    transform = RandSyntheticSwapd("image", _swap_pool(), prob=1.0, label_map_keys="seg", label_map_fill=255)
    out = transform.set_random_state(0)({"image": torch.zeros(1, 4, 4), "seg": seg, "label": 1})
    assert out["synthetic"] == 1 and out["seg"].dtype == torch.uint8 and bool((out["seg"] == 255).all())
    assert seg.eq(1).all()  # the input mask is not changed in place
    with pytest.raises(ValueError, match="label_map_fill"):
        RandSyntheticSwapd("image", _swap_pool(), label_map_keys="seg")


def test_swapd_accepts_numpy_images() -> None:
    from augmentor.data.transforms import RandSyntheticSwapd

    out = RandSyntheticSwapd("image", _swap_pool(), prob=1.0).set_random_state(0)(
        {"image": np.zeros((1, 4, 4), dtype=np.float32), "label": 0})
    assert isinstance(out["image"], np.ndarray) and out["image"].dtype == np.float32 and out["image"].any()


# --- defect 7: metrics refuse what they cannot measure ---------------------------------------------------------


def test_prd_with_no_runs_is_refused() -> None:
    from augmentor.metrics import prd_score

    features = torch.randn(40, 3, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="num_runs"):
        prd_score(features[:20], features[20:], num_clusters=5, num_runs=0)


def test_fd_domain_of_images_of_other_sizes_is_refused() -> None:
    from augmentor.metrics import DomainClassifier, domain_frechet_distance

    torch.manual_seed(0)
    classifier = DomainClassifier(1, 2).eval()
    with pytest.raises(ValueError, match=r"\(1, 8, 8\).*\(1, 64, 64\)"):
        domain_frechet_distance(torch.rand(10, 1, 8, 8), torch.rand(10, 1, 64, 64), classifier)


def test_precision_recall_of_mismatched_shapes_is_refused() -> None:
    from augmentor.metrics import density_coverage, precision_recall

    real, fake = torch.rand(20, 1, 8, 8), torch.rand(20, 1, 4, 16)  # same number of values per item
    with pytest.raises(ValueError, match="differ in shape"):
        precision_recall(real, fake)
    with pytest.raises(ValueError, match="differ in shape"):
        density_coverage(real, fake)


@pytest.mark.parametrize("damage", ["nan_mean", "n_one"])
def test_unusable_fid_cache_is_recomputed(tmp_path: Path, damage: str) -> None:
    from augmentor.metrics.frechet import GaussianStats, cached_statistics

    class Flatten:
        name, cache_key, device = "flatten", "flatten-v1", torch.device("cpu")

        def __call__(self, images: torch.Tensor) -> torch.Tensor:
            return images.flatten(1)[:, :3]

    images = torch.rand(12, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    good = cached_statistics(images, Flatten(), tmp_path)
    (path,) = tmp_path.glob("*.npz")
    key = str(np.load(path)["key"])
    mean = good.mean.copy()
    if damage == "nan_mean":
        mean[0] = np.nan
    GaussianStats(mean, good.cov, 1 if damage == "n_one" else good.n).save(path, key)
    again = cached_statistics(images, Flatten(), tmp_path)
    assert np.isfinite(again.mean).all() and again.n == 12
    np.testing.assert_allclose(again.mean, good.mean)


# --- defect 8: a saved folder's classes.json is validated, not rounded ----------------------------------------


@pytest.mark.parametrize(("classes", "message"), [([0.7, 1], "0.7"), ([0, 0], "more than once"), ([], "non-empty")])
def test_edited_class_list_with_a_regenerated_manifest_is_refused(fitted_2d, tmp_path: Path, classes,
                                                                  message: str) -> None:
    from augmentor import GeometricAugmentor
    from augmentor.utils.io import CorruptSaveError, file_digest

    folder = fitted_2d[0].save(tmp_path / "saved")
    (folder / "classes.json").write_text(json.dumps(classes))
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"]["classes.json"] = file_digest(folder / "classes.json")
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CorruptSaveError, match=message):
        GeometricAugmentor.load(folder)


# --- defect 9: clear errors that name the item ------------------------------------------------------------------


def _source(path: Path, **preprocessing) -> SourceConfig:
    return SourceConfig(source="datadicts", path=str(path), preprocessing=preprocessing)


def test_csv_row_without_a_label_is_named(tmp_path: Path) -> None:
    items = _nifti_cohort(tmp_path)
    rows = [f"{item['image']},{item['label']}" for item in items]
    rows[3] = items[3]["image"]  # no label column at all
    (tmp_path / "list.csv").write_text("image,label\n" + "\n".join(rows) + "\n")
    with pytest.raises(ValueError, match=r"list.csv: line 5: every row needs an image path and a label"):
        load_source(_source(tmp_path / "list.csv"))


def test_csv_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    items = _nifti_cohort(tmp_path)
    text = "image,label\n" + "".join(f"{item['image']},{item['label']}\n" for item in items)
    (tmp_path / "list.csv").write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert len(load_source(_source(tmp_path / "list.csv")).labels) == 8


def test_deeply_nested_json_list_is_named(tmp_path: Path) -> None:
    (tmp_path / "list.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ValueError, match="nested too deeply"):
        load_source(_source(tmp_path / "list.json"))


def test_nan_voxels_name_the_item(tmp_path: Path) -> None:
    import nibabel as nib

    items = _nifti_cohort(tmp_path)
    image = np.full((6, 5), 0.5, dtype=np.float32)
    image[2, 2] = np.nan
    nib.save(nib.Nifti1Image(image, np.eye(4)), tmp_path / "sub-03.nii.gz")
    with pytest.raises(ValueError, match=r"data item 3 .*sub-03.nii.gz.* NaN or infinite"):
        _load_list(tmp_path, items)


def test_unreadable_image_is_named_with_the_reason(tmp_path: Path) -> None:
    items = _nifti_cohort(tmp_path)
    (tmp_path / "sub-05.nii.gz").write_bytes(b"not an image at all")
    with pytest.raises(ValueError, match=r"data item 5 .*sub-05.nii.gz.* cannot be read") as raised:
        _load_list(tmp_path, items)
    assert "applying transform" not in str(raised.value)


def test_an_odd_first_image_is_blamed_not_the_second(tmp_path: Path) -> None:
    import nibabel as nib

    items = _nifti_cohort(tmp_path)
    nib.save(nib.Nifti1Image(np.zeros((9, 9), dtype=np.float32) + 0.3, np.eye(4)), tmp_path / "sub-00.nii.gz")
    with pytest.raises(ValueError, match=r"data item 0 .*sub-00.nii.gz.* has shape \(1, 9, 9\)") as raised:
        _load_list(tmp_path, items)
    assert "data item 1 " not in str(raised.value)


@pytest.mark.parametrize("image", [None, "."])
def test_a_null_or_folder_image_path_is_named_as_such(tmp_path: Path, image) -> None:
    items = _nifti_cohort(tmp_path)
    items[2]["image"] = image
    with pytest.raises(ValueError, match=r"item 2: .*(must be a file path|is a folder)"):
        _load_list(tmp_path, items)


def test_a_folder_given_as_the_data_list_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="is a folder"):
        load_source(_source(tmp_path))


def _lowdata_args(list_file: Path, out: Path) -> list[str]:
    return ["--config", str(LOWDATA_TINY), "--set", "data.source=datadicts", "--set", f"data.path={list_file}",
            "--set", "data.preprocessing.spatial_size=[6,5]", "--out", str(out)]


def test_string_labels_give_an_error_line_not_a_traceback(tmp_path: Path, capsys) -> None:
    from pipelines.lowdata.study import main

    items = _nifti_cohort(tmp_path / "data")
    items[1]["label"] = "AD"
    (tmp_path / "data" / "list.json").write_text(json.dumps(items))
    assert main(_lowdata_args(tmp_path / "data" / "list.json", tmp_path / "run")) == 1
    assert "'AD'" in capsys.readouterr().err


def test_an_out_that_cannot_be_written_gives_an_error_line_not_a_traceback(tmp_path: Path, capsys) -> None:
    from pipelines.lowdata.study import main

    items = _nifti_cohort(tmp_path / "data")
    (tmp_path / "data" / "list.json").write_text(json.dumps(items))
    (tmp_path / "file").write_text("")  # no folder can be made under a file (a read-only folder: the same path)
    assert main(_lowdata_args(tmp_path / "data" / "list.json", tmp_path / "file" / "run")) == 1
    assert "Not a directory" in capsys.readouterr().err


def test_no_lock_file_is_created_inside_the_data_folder(tmp_path: Path, capsys) -> None:
    from pipelines.lowdata.study import main

    items = _nifti_cohort(tmp_path / "data")
    (tmp_path / "data" / "list.json").write_text(json.dumps(items))
    before = sorted(p.name for p in (tmp_path / "data").iterdir())
    assert main(_lowdata_args(tmp_path / "data" / "list.json", tmp_path / "data" / "run")) == 1
    assert "inside the data folder" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == before


def test_an_image_whose_header_declares_a_huge_size_is_named(tmp_path: Path) -> None:
    import nibabel as nib

    items = _nifti_cohort(tmp_path)
    header = nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.eye(4)).header.copy()
    header.set_data_shape((30000, 30000, 300))  # 1 TB of float32 declared by a 400-byte file
    (tmp_path / "sub-06.nii").write_bytes(header.binaryblock + bytes(4))
    items[6]["image"] = "sub-06.nii"
    with pytest.raises(ValueError, match=r"data item 6 .*sub-06.nii.*(cannot be read|more memory)") as raised:
        _load_list(tmp_path, items)
    assert "applying transform" not in str(raised.value)
