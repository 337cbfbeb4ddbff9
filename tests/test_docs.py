"""The documentation: its Python examples run, and its results tables are generated from result files."""

import importlib.util
import re
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.md"))
BLOCKS = [
    (page, index, code)
    for page in PAGES
    for index, code in enumerate(re.findall(r"^```python\n(.*?)^```", page.read_text(), flags=re.S | re.M))
]


def _load_generator():
    spec = importlib.util.spec_from_file_location("gen_results", DOCS / "gen_results.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


gen_results = _load_generator()


@pytest.mark.parametrize(("page", "index", "code"), BLOCKS,
                         ids=[f"{p.relative_to(DOCS)}[{i}]" for p, i, _ in BLOCKS])
def test_docs_example_runs(page, index, code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(code, f"{page.relative_to(ROOT)}[python block {index}]", "exec"), {"__name__": "__docs__"})


def test_every_results_marker_names_a_table():
    names = [name for page in PAGES for name in gen_results.MARKER.findall(page.read_text())]
    assert names, "no results-table marker found"
    unknown = sorted(set(names) - set(gen_results.TABLES))
    assert not unknown, f"markers of unknown tables: {unknown}"


def test_every_table_with_its_files_renders():
    """The result files in the repository render (a changed column name in a pipeline's report fails here)."""
    rendered = [name for name in gen_results.TABLES if not gen_results.missing_files(name)]
    assert rendered, "no results table has its files in docs/results/"
    for name in rendered:
        text = gen_results.render(name)
        is_table = text.count("\n|") >= 3 or text.startswith("```text\n")  # a table, or a benchmark's output
        assert is_table and "To be regenerated" not in text and "*Generated from `docs/results/" in text, name


def test_missing_files_give_the_command(tmp_path):
    text = gen_results.render("oasis_quick", results=tmp_path)
    assert "To be regenerated" in text
    assert gen_results.TABLES["oasis_quick"].command in text
    assert "`runs/oasis_quick/report/summary.csv` to `docs/results/oasis_quick/summary.csv`" in text


def test_unknown_marker_fails():
    with pytest.raises(KeyError, match="unknown results table 'no_such_table'"):
        gen_results.expand_markers("text\n<!-- results-table: no_such_table -->\n")


def test_oasis_study_table_from_its_report_files(tmp_path):
    """A tiny OASIS report written as the study writes it becomes the documented table."""
    from pipelines.oasis_study.report import summarize

    per_run = pd.DataFrame({
        "method": ["real", "real", "riemannian", "riemannian"],
        "seed": [0, 1, 0, 1],
        "balanced_accuracy": [0.80, 0.90, 0.60, 0.70],
        "accuracy": [0.8, 0.9, 0.6, 0.7],
        "CN_f1": [0.9, 0.9, 0.5, 0.7], "CN_precision": [0.9, 0.9, 0.5, 0.7], "CN_recall": [0.9, 0.9, 0.5, 0.7],
        "AD_f1": [0.7, 0.9, 0.7, 0.7], "AD_precision": [0.7, 0.9, 0.7, 0.7], "AD_recall": [0.7, 0.9, 0.7, 0.7],
        "best_epoch": [3, 4, 5, 6], "n_train": [10, 10, 20, 20],
    })
    folder = tmp_path / "oasis_quick"
    folder.mkdir()
    summarize(per_run, ["real", "riemannian"]).to_csv(folder / "summary.csv", float_format="%.6f")
    text = gen_results.expand_markers("<!-- results-table: oasis_quick -->", results=tmp_path)
    lines = text.splitlines()
    # mean and sample std (ddof=1) of 0.80, 0.90 and of 0.60, 0.70, in percent
    assert lines[2].startswith("| Real | 2 | 85.0 ± 7.1 |")
    assert lines[3].startswith("| Synthetic only: VAE - ours | 2 | 65.0 ± 7.1 |")
    assert "`docs/results/oasis_quick/summary.csv`" in text


def test_class_effect_table_from_its_report_file(tmp_path):
    """``class_effect.csv`` as the study writes it becomes the documented table: mean ± std over the seeds."""
    from pipelines.oasis_study.report import CLASS_EFFECT_COLUMNS

    rows = [
        {"seed": 0, "source": "real", "ventricle_cn": 14.0, "ventricle_ad": 24.0, "effect": 10.0, "effect_ratio": 1.0},
        {"seed": 1, "source": "real", "ventricle_cn": 12.0, "ventricle_ad": 20.0, "effect": 8.0, "effect_ratio": 1.0},
        {"seed": 0, "source": "gmm", "ventricle_cn": 13.0, "ventricle_ad": 18.0, "effect": 5.0, "effect_ratio": 0.5},
        {"seed": 1, "source": "gmm", "ventricle_cn": 12.0, "ventricle_ad": 14.0, "effect": 2.0, "effect_ratio": 0.25},
    ]
    folder = tmp_path / "oasis_3d_quick"
    folder.mkdir()
    pd.DataFrame(rows, columns=list(CLASS_EFFECT_COLUMNS)).to_csv(folder / "class_effect.csv", index=False)
    text = gen_results.render("oasis_3d_quick_class_effect", results=tmp_path)
    gmm = next(line for line in text.splitlines() if line.startswith("| VAE - GMM"))
    # mean and sample std (ddof=1) of 13, 12 / 18, 14 / 5, 2 / 0.5, 0.25
    assert gmm.startswith("| VAE - GMM | 12.50 ± 0.71 | 16.00 ± 2.83 | 3.50 ± 2.12 | 0.38 ± 0.18 |"), gmm
    assert "`docs/results/oasis_3d_quick/class_effect.csv`" in text


def test_lowdata_table_from_its_report_files(tmp_path):
    from pipelines.lowdata.report import summarize_lowdata

    per_run = pd.DataFrame({
        "method": ["real"] * 4 + ["real+riemannian"] * 4,
        "size": [10, 10, 50, 50] * 2,
        "seed": [0, 1, 0, 1] * 2,
        "classifier_seed": [0] * 8,
        "balanced_accuracy": [0.70, 0.80, 0.90, 0.90, 0.60, 0.60, 0.85, 0.95],
        "accuracy": [0.0] * 8, "best_epoch": [1] * 8, "n_train": [20, 20, 100, 100] * 2,
    })
    distances = pd.DataFrame({"sampler": ["riemannian", "riemannian"], "size": [10, 50],
                              "to_nearest_code": [2.0, 1.5], "between_codes": [1.0, 1.5], "ratio": [2.0, 1.0]})
    folder = tmp_path / "lowdata_mnist_quick"
    folder.mkdir()
    summarize_lowdata(per_run).to_csv(folder / "summary.csv", index=False, float_format="%.6f")
    distances.to_csv(folder / "distances.csv", index=False, float_format="%.6f")
    text = gen_results.render("lowdata_mnist_quick", results=tmp_path)
    assert "| Method | 10 / class | 50 / class |" in text
    assert "| Real | 75.0 ± 7.1 | 90.0 ± 0.0 |" in text
    assert "| Real + VAE - ours | 60.0 ± 0.0 | 90.0 ± 7.1 |" in text
    assert "| riemannian | 10 | 2.000 | 1.000 | 2.00 |" in text


def test_generation_table_from_a_benchmark_csv(tmp_path):
    row = {"key": "riemannian", "sampler": "VAE - ours", "n_fake": 500, "n_real": 400, "fid": 12.345,
           "fd_domain": 1.5, "prd_f8": 0.9, "prd_f1_8": 0.8, "precision": 0.5, "recall": 0.25, "density": 0.1,
           "coverage": 0.2, "memorisation_median_ratio": 1.0, "memorisation_share_below_q01": 0.0,
           "class_count_min": 3, "class_count_max": 9, "hmc_acceptance": 0.875, "feature_space": "inception"}
    (tmp_path / "mnist_quick").mkdir()
    pd.DataFrame([row]).to_csv(tmp_path / "mnist_quick" / "summary.csv", index=False)
    text = gen_results.render("mnist_quick", results=tmp_path)
    assert "| VAE - ours | 12.35 (500 / 400) | 1.50 | 0.900 | 0.800 | 0.500 | 0.250 |" in text
    assert "| 3-9 | 0.875 |" in text


def test_script_check_lists_the_waiting_tables(tmp_path, capsys):
    assert gen_results.main(["--check", "--results", str(tmp_path), "mnist_quick"]) == 0
    assert "mnist_quick: waiting for" in capsys.readouterr().out
