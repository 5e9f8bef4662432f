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


def test_plotting_leaves_matplotlib_and_the_training_stack_alone():
    """Importing rgsym.plotting (a fresh interpreter) neither loads pyplot nor switches the
    backend, nor imports the training stack: figures use the object API."""
    import subprocess
    import sys
    code = ("import sys, matplotlib; before = matplotlib.rcParams._get_backend_or_none(); "
            "import rgsym.plotting; "
            "print(before == matplotlib.rcParams._get_backend_or_none(), "
            "'matplotlib.pyplot' in sys.modules, 'rgsym.train' in sys.modules, "
            "'rgsym.results' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["True", "False", "False", "False"], out
