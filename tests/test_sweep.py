"""End to end: experiments/sweep.py with the test config, killed mid-way and resumed."""
import json
import signal
import subprocess
from pathlib import Path

import jax
import numpy as np

from rgsym import results
from tests.scripts import MISSING_BACKEND_LOG, ROOT, script, script_env

CMD = script("experiments", "sweep.py") + [
    f"--config={ROOT / 'experiments' / 'configs' / 'test.py'}", "--progress=false",
    "--config.model.width=6"]


def _env(kill_at=None):
    # XLA_FLAGS removed: the script runs on the plain host device
    return script_env(XLA_FLAGS=None, **{results.KILL_AT_ENV: kill_at})


def _records(workdir: Path) -> dict:
    out = {}
    for v in sorted((workdir / "variants").iterdir()):
        out[v.name] = [json.loads(line) for line in (v / "metrics.jsonl").read_text().splitlines()]
    return out


def test_sweep_script_killed_and_resumed_matches_an_uninterrupted_run(tmp_path):
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    done = subprocess.run(CMD + [f"--workdir={clean}"], env=_env(), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert MISSING_BACKEND_LOG not in done.stderr
    assert "test_rel_err" in done.stdout and "mlp-block_local-quadratic" in done.stdout
    assert json.loads((clean / "config.json").read_text())["model"]["width"] == 6
    # the learned maps' distance from the RG eigenvalues: exact for the quadratic nets only
    records = _records(clean)
    assert all(r["final"]["rg_eig_err"] is None for r in records["mlp-none-tanh"])
    assert all(r["final"]["rg_eig_err"] > 0 for r in records["mlp-block_local-quadratic"])

    # SIGKILLed deterministically inside the second chunk's write: its temporary file is
    # written and synced, not yet renamed (a SIGKILL runs no cleanup: the file stays).
    chunks = killed / "variants" / "mlp-none-tanh" / "chunks"
    proc = subprocess.run(CMD + [f"--workdir={killed}"],
                          env=_env(kill_at="replace:00001.msgpack"),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    assert (chunks / "00000.msgpack").exists()
    assert not (chunks / "00001.msgpack").exists()
    assert [p.name.startswith(".tmp-") for p in chunks.iterdir()].count(True) == 1
    assert not (killed / "summary.txt").exists()

    resumed = subprocess.run(CMD + [f"--workdir={killed}"], env=_env(), capture_output=True,
                             text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert not list(killed.rglob(".tmp-*"))
    assert _records(killed) == _records(clean)
    assert (killed / "summary.txt").read_text() == (clean / "summary.txt").read_text()
    assert_same_params(killed, clean)


def assert_same_params(run_a: Path, run_b: Path) -> None:
    """The final parameters of every variant are identical in the two run directories."""
    names = sorted(p.name for p in (run_b / "variants").iterdir())
    assert names and names == sorted(p.name for p in (run_a / "variants").iterdir())
    for name in names:
        a, b = (results.load_variant(r / "variants" / name) for r in (run_a, run_b))
        np.testing.assert_array_equal(a.seeds, b.seeds)
        assert jax.tree.structure(a.params) == jax.tree.structure(b.params)
        assert len(jax.tree.leaves(a.params)) > 1
        jax.tree.map(np.testing.assert_array_equal, a.params, b.params)
