"""The package's surface: __all__ names every public module, and each one imports."""
import importlib
import pkgutil

import rgsym


def test_all_lists_every_public_module_and_each_imports():
    modules = sorted(m.name for m in pkgutil.iter_modules(rgsym.__path__)
                     if not m.name.startswith("_"))
    assert sorted(rgsym.__all__) == modules
    for name in rgsym.__all__:
        assert importlib.import_module(f"rgsym.{name}").__name__ == f"rgsym.{name}"
