"""The ``>>>`` examples of the main entry points run and print what they show.

Each module's doctests run with ``doctest.testmod``; every entry point listed here must
keep at least one example, so deleting one fails this test as surely as breaking it.
"""
import doctest
import importlib

import pytest

#: module -> the entry points (qualified names in it; "" is the module docstring) that
#: must carry an example.
ENTRY_POINTS = {
    "rgsym.config": ["base_config", "describe", "grid", "resolve"],
    "rgsym.clt": ["cumulant_recursion"],
    "rgsym.distributions": ["", "get", "Distribution.cumulants"],
    "rgsym.cumulants.estimators": ["k_statistics_with_se"],
    "rgsym.cumulants.propagate": ["propagate"],
    "rgsym.models": [""],
    "rgsym.train": ["make_train"],
    "rgsym.sweep": ["sweep"],
    "rgsym.results": ["load_params"],
}

FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


@pytest.mark.parametrize("name", sorted(ENTRY_POINTS))
def test_doctests(name):
    # importlib, not attribute access: rgsym.cumulants.propagate is also a function's name
    module = importlib.import_module(name)
    found = {t.name.removeprefix(name).removeprefix(".")
             for t in doctest.DocTestFinder().find(module) if t.examples}
    missing = [e or "(module docstring)" for e in ENTRY_POINTS[name] if e not in found]
    assert not missing, f"{name}: no >>> example on {missing}"
    result = doctest.testmod(module, optionflags=FLAGS, verbose=False, report=True)
    assert result.failed == 0, f"{name}: {result.failed} of {result.attempted} examples failed"
