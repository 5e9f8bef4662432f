"""A sweep over two processes on JAX's distributed runtime (4 CPU devices each, coordinator
on 127.0.0.1, gloo collectives) gives the records and parameters of a one-process run."""
import socket
import subprocess
import time

from rgsym import results
from tests.scripts import ROOT, script, script_env
from tests.test_sweep import _records, assert_same_params

CMD = script("experiments", "sweep.py") + [
    f"--config={ROOT / 'experiments' / 'configs' / 'test.py'}", "--progress=false"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(tmp_path, extra, timeout=300):
    """Two processes of one sweep; extra[i]: process i's own arguments.  Returns
    [(returncode, stdout, stderr)]; every process is ended before it returns."""
    address = f"127.0.0.1:{_free_port()}"
    procs = [subprocess.Popen(
        CMD + [f"--workdir={tmp_path / 'two'}", "--cpu_devices=4", "--config.multihost=True",
               f"--coordinator_address={address}", "--num_processes=2", f"--process_id={i}",
               *extra[i]],
        env=script_env(XLA_FLAGS=None), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True) for i in range(2)]
    try:
        outs = [p.communicate(timeout=timeout) for p in procs]
    finally:
        for p in procs:  # every process this test started ends with it
            if p.poll() is None:
                p.kill()
                p.wait()
    return [(p.returncode, *out) for p, out in zip(procs, outs)]


def test_two_processes_give_the_results_of_one(tmp_path):
    env = script_env(XLA_FLAGS=None)
    single = subprocess.run(CMD + [f"--workdir={tmp_path / 'one'}", "--cpu_devices=8"],
                            env=env, capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr[-3000:]

    outs = _launch(tmp_path, [[], []])
    for rc, _, err in outs:
        assert rc == 0, err[-3000:]
    assert "results, figures" in outs[0][1] and "results, figures" not in outs[1][1]
    env_two = results._sessions(tmp_path / "two" / "environment.json")[-1]
    assert env_two["process_count"] == 2 and len(env_two["devices"]) == 8
    assert _records(tmp_path / "two") == _records(tmp_path / "one")
    assert_same_params(tmp_path / "two", tmp_path / "one")
    chunks = sorted(p.relative_to(tmp_path / "one")
                    for p in (tmp_path / "one").rglob("chunks/*.msgpack"))
    assert chunks and chunks == sorted(p.relative_to(tmp_path / "two")
                                       for p in (tmp_path / "two").rglob("chunks/*.msgpack"))
    for c in chunks:  # the very bytes (seeds once came back int32 from the broadcast plan)
        assert (tmp_path / "one" / c).read_bytes() == (tmp_path / "two" / c).read_bytes(), c


def test_processes_given_different_configs_all_refuse_at_once(tmp_path):
    """A process launched with another override would train its share of the seeds under
    another config, silently; every process refuses instead, in seconds (not after JAX's
    heartbeat timeout), naming the field, and nothing is trained."""
    start = time.monotonic()
    outs = _launch(tmp_path, [[], ["--config.optim.lr=0.02"]], timeout=120)
    assert time.monotonic() - start < 60
    assert [rc for rc, _, _ in outs] == [1, 1], [err[-2000:] for _, _, err in outs]
    assert "process 1 was given another config than process 0 (fields differ: optim.lr)" \
        in outs[1][2]
    assert "process(es) 1 refused the run" in outs[0][2]
    assert not (tmp_path / "two" / "variants").exists()


def test_an_error_in_one_process_ends_every_process_in_seconds(tmp_path):
    """Process 0 fails (here: a folder where a chunk file should be, as a write error
    would): both processes end within a minute, not after jax.distributed's 5-minute
    shutdown barrier, and process 0 names the file."""
    (tmp_path / "two" / "variants" / "mlp-none-tanh" / "chunks" / "00000.msgpack").mkdir(
        parents=True)
    start = time.monotonic()
    outs = _launch(tmp_path, [[], []], timeout=150)
    assert time.monotonic() - start < 60
    assert all(rc != 0 for rc, _, _ in outs)
    assert "IsADirectoryError" in outs[0][2] and "chunks/00000.msgpack" in outs[0][2]
