"""Results unchanged by speed work: the test config's metrics equal a golden file.

The golden file holds every final metric, learning-curve point and the divergence flags of
``experiments/configs/test.py`` (both variants, all seeds, its seed chunks) run in float64
on the suite's 8 host CPU devices.  It was written before the compile-time work of issue 12
and is regenerated only on purpose::

    python -m pytest -p no:cacheprovider tests/test_golden.py --regen-golden

Tolerance: rtol 1e-9 (atol 1e-12 for metrics that are differences near 0).  Float64 runs
repeat bit for bit on one machine, but a restructured program (other fusions, an XLA
version, another CPU's vector width) may reassociate sums: those change the last bits, and
40 Adam steps carry that to about 1e-13 relative; 1e-9 leaves room for that and for
nothing else (a changed sampler, step, seed stream or estimator moves these metrics by
1e-4 or more).
"""
import importlib.util
import json
from pathlib import Path

import numpy as np

from rgsym import config, sweep

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden" / "test_config_metrics.json"
RTOL, ATOL = 1e-9, 1e-12


def _test_config():
    spec = importlib.util.spec_from_file_location("test_config",
                                                  ROOT / "experiments" / "configs" / "test.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cfg = module.get_config()
    cfg.dtype = "float64"
    return cfg


def _metrics() -> dict:
    """``{variant: {'seeds', 'diverged', 'final/<name>', 'curves/<name>'}}`` as lists, the
    seeds run chunk by chunk as experiments/sweep.py does."""
    cfg = _test_config()
    out = {}
    for name, spec in config.resolve_variants(cfg):
        sw = sweep.make_sweep(spec)
        chunks = [sw.run_chunk(seeds)[1] for seeds in sweep.seed_chunks(spec)]
        m = {k: np.concatenate([c[k] for c in chunks]) for k in ("diverged", "diverged_step")}
        for kind in ("final", "curves"):
            for k in chunks[0][kind]:
                m[f"{kind}/{k}"] = np.concatenate([c[kind][k] for c in chunks])
        m["seeds"] = np.concatenate(sweep.seed_chunks(spec))
        out[name] = {k: np.asarray(v).tolist() for k, v in sorted(m.items())}
    return out


def test_test_config_metrics_equal_the_golden_file(request):
    got = _metrics()
    if request.config.getoption("--regen-golden"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
    want = json.loads(GOLDEN.read_text())
    assert got.keys() == want.keys()
    for variant in want:
        assert got[variant].keys() == want[variant].keys(), variant
        for k, v in want[variant].items():
            np.testing.assert_allclose(np.asarray(got[variant][k], float), np.asarray(v, float),
                                       rtol=RTOL, atol=ATOL, err_msg=f"{variant} {k}")
