"""The module paths of the flat layout, kept for one release: importing one warns and gives the module.

``import augmentor.metric`` (or ``from augmentor.hmc import HMCConfig``) returns the very
module object of its new home (``augmentor.sampling.metric``), so attributes, private
helpers and monkeypatching all behave as before; a :class:`DeprecationWarning` names the
new path. No file stays at an old path, so the old names cannot drift from the new ones.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings
from types import ModuleType

__all__ = ["MOVED_MODULES", "install"]

MOVED_MODULES: dict[str, str] = {
    "augmentor.metric": "augmentor.sampling.metric",
    "augmentor.hmc": "augmentor.sampling.hmc",
    "augmentor.samplers": "augmentor.sampling.samplers",
    "augmentor.diagnostics": "augmentor.sampling.diagnostics",
    "augmentor.interpolation": "augmentor.sampling.interpolation",
    "augmentor.hardware": "augmentor.sampling.hardware",
    "augmentor.training": "augmentor.models.training",
    "augmentor.fit_report": "augmentor.models.fit_report",
    "augmentor.peers": "augmentor.models.peers",
    "augmentor.datasets": "augmentor.data.datasets",
    "augmentor.transforms": "augmentor.data.transforms",
    "augmentor.seeding": "augmentor.utils.seeding",
    "augmentor.batching": "augmentor.utils.batching",
    "augmentor.devices": "augmentor.utils.devices",
    "augmentor.io": "augmentor.utils.io",
    "augmentor.config": "augmentor.utils.config",
    "augmentor.plots": "augmentor.utils.plots",
}
"""Old module path -> new module path (submodules of a moved package follow it)."""


def new_path(name: str) -> str | None:
    """The new path of old module ``name`` (None if it did not move)."""
    for old, new in MOVED_MODULES.items():
        if name == old or name.startswith(old + "."):
            return new + name[len(old):]
    return None


class _MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds the old paths first (ahead of the path finder, which would load a second copy of
    a moved package's submodule) and loads each as its new module."""

    def find_spec(self, fullname: str, path=None, target=None) -> importlib.machinery.ModuleSpec | None:
        if new_path(fullname) is None:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return None  # a placeholder; exec_module puts the real module in its place

    def exec_module(self, module: ModuleType) -> None:
        new = new_path(module.__name__)
        warnings.warn(
            f"{module.__name__} moved to {new}; the old path will be removed in the next release",
            DeprecationWarning,
            stacklevel=2,
        )
        # The import system returns what sys.modules holds under the old name once this returns.
        sys.modules[module.__name__] = importlib.import_module(new)


def install() -> None:
    """Put the finder of the old paths first on ``sys.meta_path`` (once)."""
    if not any(isinstance(finder, _MovedModuleFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _MovedModuleFinder())
