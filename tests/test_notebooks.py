"""Every notebook's code cells run top to bottom (so notebooks do not rot)."""
import glob
import json
import os

import matplotlib
import pytest

matplotlib.use("Agg")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = sorted(glob.glob(os.path.join(ROOT, "notebooks", "*.ipynb")))


def test_there_are_notebooks():
    assert NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_notebook_runs(path):
    cells = json.load(open(path))["cells"]
    code = [("".join(c["source"])) for c in cells if c["cell_type"] == "code"]
    namespace = {"__name__": "__notebook__"}
    for i, src in enumerate(code):
        try:
            exec(compile(src, f"{os.path.basename(path)}[cell {i}]", "exec"), namespace)
        except Exception as e:  # name the cell that failed
            raise AssertionError(f"{os.path.basename(path)} code cell {i} failed: {e!r}") from e
