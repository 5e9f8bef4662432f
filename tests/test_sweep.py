"""End to end: experiments/sweep.py with the test config, killed mid-way and resumed."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CMD = [sys.executable, str(ROOT / "experiments" / "sweep.py"),
       f"--config={ROOT / 'experiments' / 'configs' / 'test.py'}", "--progress=false",
       "--config.model.width=6"]


def _env():
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)  # the script runs on the plain host device
    return env


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
    assert "test_rel_err" in done.stdout and "mlp-block_local-quadratic" in done.stdout
    assert json.loads((clean / "config.json").read_text())["model"]["width"] == 6

    proc = subprocess.Popen(CMD + [f"--workdir={killed}"], env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first_chunk = killed / "variants" / "mlp-none-tanh" / "chunks" / "00000.npz"
    deadline = time.time() + 240
    while not first_chunk.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert first_chunk.exists(), "killed before the first chunk was written: not mid-run"
    assert not (killed / "summary.txt").exists()

    resumed = subprocess.run(CMD + [f"--workdir={killed}"], env=_env(), capture_output=True,
                             text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert _records(killed) == _records(clean)
    assert (killed / "summary.txt").read_text() == (clean / "summary.txt").read_text()
