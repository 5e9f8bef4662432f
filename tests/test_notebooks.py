"""Every notebook's code cells run top to bottom (so notebooks do not rot)."""
import glob
import json
import os

import matplotlib
import pytest

matplotlib.use("Agg")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = sorted(glob.glob(os.path.join(ROOT, "notebooks", "*.ipynb")))


def _check_01(ns):
    """01_clt_flow_and_tied_networks: closed-form flow of the standardised Laplace law
    (kappa_3 = 0, kappa_4 = 3 halving per b = 2 step), the sampled exponential flow after 3
    steps (kappa_3 = 2 / sqrt(8)) within 5 SE; the trained one-block quadratic networks:
    free ones learn the exact map (exact MSE below 1e-6 on every OOD family, every seed),
    tied ones cannot (on every OOD family even their best seed is over 100 times worse than
    the free networks' worst); the tied network's exact MSE beside its Monte Carlo twin
    within 5 SE."""
    import numpy as np
    np.testing.assert_allclose(ns["flow"][:, 2:], [[0, 3], [0, 1.5], [0, 0.75], [0, 0.375]],
                               atol=1e-12)
    assert abs(float(ns["ks"].value[2]) - 2 / 8 ** 0.5) < 5 * float(ns["ks"].se[2])
    free, tied = ns["exact_mse"]["none"], ns["exact_mse"]["tied_hidden"]  # [seeds, families]
    assert free.shape == tied.shape and free.shape[1] >= 10
    assert "uniform" not in ns["families"]  # out of distribution only
    assert np.all(free < 1e-6), free
    assert np.all(tied.min(0) > 100 * free.max(0)), (tied.min(0), free.max(0))
    assert ns["pred"].label == "exact"
    assert abs(float(ns["pred"].mse) - float(ns["mc"].mse)) < 5 * float(ns["mc"].mse_se)
    assert ns["check"].standardised.shape == (4,)


def _check_02(ns):
    """02_train_a_grid_and_load_it: the loaded run holds the grid's four variants, each with
    the configured seeds and none diverged; one seed's parameters, taken back from disk and
    applied to the run's own evaluation set, reproduce the test error recorded for that
    seed (and for no other seed of the variant)."""
    import numpy as np
    assert ns["run"].variants == ("mlp-none-quadratic", "mlp-none-tanh",
                                  "mlp-block_local-quadratic", "mlp-block_local-tanh")
    for rec in ns["records"].values():
        np.testing.assert_array_equal(rec.seeds, np.arange(4))
        assert not rec.diverged.any()
        assert rec.curves["test_rel_err"].shape == (4, len(rec.steps))
    seeds, recorded = list(ns["rec"].seeds), np.asarray(ns["recorded"])
    mine = seeds.index(ns["seed"])
    np.testing.assert_allclose(ns["recomputed"], recorded[mine], rtol=1e-4)
    others = np.delete(recorded, mine)
    assert np.all(np.abs(others - ns["recomputed"]) > 1e-2 * ns["recomputed"]), recorded


def _check_03(ns):
    """03_propagate_through_a_trained_network: on every family shown, the exact (label
    'exact') output cumulants kappa_1..kappa_4 of the trained quadratic net lie within 5 SE
    of Monte Carlo at every output site."""
    import numpy as np
    assert len(ns["families"]) >= 3
    for f in ns["families"]:
        assert ns["labels"][f] == "exact"
        z = np.asarray(ns["z"][f])
        assert z.shape == (2, 4) and np.all(np.abs(z) < 5), (f, z)


def _check_04(ns):
    """04_inside_a_gnn: the labels the notebook describes; the input and the first
    message-passing layer within 5 SE of Monte Carlo at every unit and order; every state
    with a finite error estimate within that estimate + 4 SE (the tolerance of
    tests/test_surrogate.py); the surrogate layers measurably off (beyond 5 SE somewhere),
    the output's estimate unbounded, and the output off by more than 5 SE, as the text
    says."""
    import numpy as np
    assert ns["prop"].labels == ("input", "exact", "hermite", "hermite", "hermite+closure",
                                 "hermite+closure")
    dev, bound, se = ns["dev"], ns["bound"], ns["se"]
    for k in (0, 1):
        assert np.all(dev[k] < 5), (k, dev[k])
    for k in range(len(dev)):
        finite = np.isfinite(bound[k])
        assert np.all((dev[k] * se[k] <= bound[k] + 4 * se[k])[finite]), k
    assert np.all(np.isfinite(bound[2])) and np.all(np.isfinite(bound[3]))
    assert max(dev[2].max(), dev[3].max()) > 5
    assert not np.isfinite(bound[-1]).any()
    assert dev[-1].max() > 5


# What each notebook's output must show (every notebook needs an entry).
CHECKS = {"01_clt_flow_and_tied_networks.ipynb": _check_01,
          "02_train_a_grid_and_load_it.ipynb": _check_02,
          "03_propagate_through_a_trained_network.ipynb": _check_03,
          "04_inside_a_gnn.ipynb": _check_04}


def test_there_are_notebooks():
    assert NOTEBOOKS
    assert {os.path.basename(p) for p in NOTEBOOKS} == set(CHECKS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_notebook_is_stored_stripped(path):
    """Committed notebooks hold no outputs and no execution counts (their outputs come from
    running them; stale ones would disagree with the code)."""
    nb = json.load(open(path))
    assert nb["nbformat"] == 4
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code":
            assert cell.get("outputs") == [], f"code cell {i} has outputs"
            assert cell.get("execution_count") is None, f"code cell {i} has an execution count"
        else:
            assert "outputs" not in cell and not cell.get("attachments"), f"cell {i}"


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
    CHECKS[os.path.basename(path)](namespace)
