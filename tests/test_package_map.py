"""The tree shows the architecture: every subpackage is in the package map, every module says
what it exports (``__all__``), and everything it exports exists."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import skysift

MODULES = sorted(m.name for m in pkgutil.walk_packages(skysift.__path__, "skysift.")
                 if not m.name.endswith("__main__"))
PACKAGES = sorted(m.name for m in pkgutil.iter_modules(skysift.__path__) if m.ispkg)


def test_the_package_map_names_every_subpackage():
    assert PACKAGES  # core, io, parallel, measure, catalog, alerts, pipeline, analysis, timelag, aws, cli
    assert [p for p in PACKAGES if f"``{p}``" not in skysift.__doc__] == []


@pytest.mark.parametrize("name", [m for m in MODULES if not importlib.util.find_spec(m).submodule_search_locations])
def test_every_module_exports_what_it_names(name):
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    assert exported, f"{name} has no __all__"
    assert [n for n in exported if not hasattr(module, n)] == []
