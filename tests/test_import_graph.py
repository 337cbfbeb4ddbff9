"""The architecture in the imports: every import runs down the declared layers.

Layers, bottom up: ``augmentor.utils`` < ``augmentor.data`` (and the ``oasis`` loaders) <
``augmentor.sampling`` < ``augmentor.models`` < ``augmentor.metrics`` < the augmentor itself
(``augmentor/*.py``, the package) < ``pipelines`` < the command-line entry points
(``python -m augmentor.oasis`` ...), which only hand over to ``pipelines``. A module may
import from its own layer or any below it, never above.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from augmentor._moved import MOVED_MODULES

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ["utils", "data", "sampling", "models", "metrics", "augmentor", "pipelines", "command line"]
COMMAND_LINES = {"augmentor.oasis", "augmentor.study", "augmentor.benchmark", "augmentor.latent_map", "augmentor.cli",
                 "augmentor.__main__", "augmentor.demo"}
SUBPACKAGES = {"utils", "data", "sampling", "models", "metrics"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> str | None:
    """The layer of a module of the project (None for third-party modules)."""
    parts = module.split(".")
    if parts[0] == "oasis":
        return "data"
    if parts[0] == "pipelines":
        return "pipelines"
    if parts[0] != "augmentor":
        return None
    if module in COMMAND_LINES:
        return "command line"
    if module == "augmentor._moved":
        return "utils"
    if len(parts) > 1 and parts[1] in SUBPACKAGES:
        return parts[1]
    return "augmentor"


def project_modules() -> list[Path]:
    return sorted(p for package in ("augmentor", "pipelines", "oasis") for p in (ROOT / package).rglob("*.py"))


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) of every import in the file, at any depth (lazy imports count)."""
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            # ``from package import submodule`` imports the submodule.
            found += [(node.lineno, f"{target}.{alias.name}") for alias in node.names]
    return found


def imported_layer(name: str) -> tuple[str, str | None]:
    """The module ``name`` (possibly ``module.attribute``) names, and its layer."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        as_path = ROOT.joinpath(*parts[:end])
        if as_path.with_suffix(".py").is_file() or (as_path / "__init__.py").is_file():
            return candidate, layer(candidate)
    return parts[0], layer(parts[0]) if parts[0] in ("augmentor", "pipelines", "oasis") else None


def test_the_project_has_the_declared_subpackages():
    for name in SUBPACKAGES:
        assert (ROOT / "augmentor" / name / "__init__.py").is_file(), name
    assert len(project_modules()) > 60


def test_every_import_runs_down_the_layers():
    upward = []
    for path in project_modules():
        own = layer(module_name(path))
        for line, name in imports(path):
            target, target_layer = imported_layer(name)
            if target_layer is not None and LAYERS.index(target_layer) > LAYERS.index(own):
                upward.append(f"{path.relative_to(ROOT)}:{line} ({own}) imports {target} ({target_layer})")
    assert not upward, "imports that run up:\n" + "\n".join(upward)


@pytest.mark.parametrize("subpackage", ["data", "metrics"])
def test_data_and_metrics_import_neither_the_augmentor_nor_training(subpackage):
    forbidden = ("augmentor.augmentor", "augmentor.models", "augmentor.sampling")
    offenders = [
        f"{path.relative_to(ROOT)}:{line} imports {imported_layer(name)[0]}"
        for path in (ROOT / "augmentor" / subpackage).rglob("*.py")
        for line, name in imports(path)
        if imported_layer(name)[0] == "augmentor" or imported_layer(name)[0].startswith(forbidden)
    ]
    assert not offenders, "\n".join(offenders)


def test_no_module_uses_a_deprecated_path():
    old = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for path in project_modules()
        for line, name in imports(path)
        if any(name == o or name.startswith(o + ".") for o in MOVED_MODULES)
    ]
    assert not old, "\n".join(old)


def test_old_paths_give_the_new_modules_with_a_deprecation_warning():
    import importlib
    import sys

    for old, new in MOVED_MODULES.items():
        sys.modules.pop(old, None)
        with pytest.warns(DeprecationWarning, match=f"{old} moved to {new}"):
            module = importlib.import_module(old)
        assert module is importlib.import_module(new)
    from augmentor.peers.samplers import RHVAESampler  # a submodule of a moved package
    from augmentor.models.peers.samplers import RHVAESampler as same

    assert RHVAESampler is same


STUDIES = ("oasis_study", "lowdata", "benchmark", "latent_map")


def _pipelines_part(module: str) -> str | None:
    """``common``, a study's subpackage name, or None (``pipelines`` itself, or outside pipelines)."""
    parts = module.split(".")
    return parts[1] if parts[0] == "pipelines" and len(parts) > 1 else None


def test_pipelines_has_common_and_one_subpackage_per_study():
    for name in ("common", *STUDIES):
        assert (ROOT / "pipelines" / name / "__init__.py").is_file(), name
    flat = sorted(p.name for p in (ROOT / "pipelines").glob("*.py") if p.name != "__init__.py")
    assert not flat, f"modules outside the subpackages: {flat}"


def test_common_imports_no_study_and_no_study_imports_another():
    offenders = []
    for path in (ROOT / "pipelines").rglob("*.py"):
        own = _pipelines_part(module_name(path))
        if own is None:
            continue  # the package's own __init__ re-exports the OASIS study's names
        for line, name in imports(path):
            target = _pipelines_part(imported_layer(name)[0])
            if target is None or target == own:
                continue
            if own == "common" or target != "common":
                offenders.append(f"{path.relative_to(ROOT)}:{line} ({own}) imports pipelines.{target}")
    assert not offenders, "\n".join(offenders)
