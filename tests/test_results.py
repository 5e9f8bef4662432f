"""Run directories: atomic files, aggregates, the summary table, and resume."""
import json
import os
from pathlib import Path

import jax
import ml_collections
import numpy as np
import pytest
from flax import serialization

from rgsym import config, cumulants, distributions, metrics, models, results, sweep, train
from tests.test_sweep import assert_same_params
from tests.test_train import tiny


def test_atomic_savez_roundtrip_leaves_no_temporary_files(tmp_path):
    arrays = {"a": np.arange(3.0), "params/['w']": np.ones((2, 2), np.float32)}
    results.atomic_savez(tmp_path / "x.npz", arrays)
    results.atomic_write_json(tmp_path / "x.json", {"v": np.float32(1.5)})
    back = results.load_npz(tmp_path / "x.npz")
    for k, v in arrays.items():
        np.testing.assert_array_equal(back[k], v)
    assert json.loads((tmp_path / "x.json").read_text()) == {"v": 1.5}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.json", "x.npz"]
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "x.json").stat().st_mode & 0o777 == 0o666 & ~umask  # as open() makes


def test_aggregate_statistics_and_bootstrap_interval():
    v = np.array([1.0, 2.0, 3.0, 4.0, np.nan])
    a = metrics.aggregate(v)
    assert a["n"] == 4 and a["mean"] == 2.5 and a["median"] == 2.5
    np.testing.assert_allclose([a["q25"], a["q75"]], np.percentile(v[:4], [25, 75]))
    assert a["iqr"] == a["q75"] - a["q25"]
    assert 1.0 <= a["ci_lo"] <= a["median"] <= a["ci_hi"] <= 4.0
    assert metrics.aggregate([np.inf])["n"] == 0
    s = metrics.summarise({"m": np.array([1.0, 5.0, 9.0])}, np.array([False, True, False]))
    assert s["num_diverged"] == 1 and s["m"]["n"] == 2 and s["m"]["median"] == 5.0


def test_summary_table_lists_variants_and_diverged_counts():
    agg = metrics.aggregate([1e-3, 2e-3])
    table = results.summary_table({"mlp-none-tanh": {"num_seeds": 2, "num_diverged": 1,
                                                     "test_rel_err": agg}})
    header, _, row = table.splitlines()
    assert header.split()[:3] == ["variant", "seeds", "diverged"]
    assert row.split()[:4] == ["mlp-none-tanh", "2", "1", "-"]  # no train_loss column data
    assert "1.50e-03" in row


def _count_chunks(monkeypatch) -> list:
    """Patches sweep.make_sweep: every chunk trained appends its seeds to the list returned."""
    calls = []
    make_sweep = sweep.make_sweep

    def counting(*a, **k):
        sw = make_sweep(*a, **k)
        return sw._replace(run_chunk=lambda s, *r: calls.append(list(s)) or sw.run_chunk(s, *r))

    monkeypatch.setattr(sweep, "make_sweep", counting)
    return calls


def test_resume_skips_finished_chunks_and_variants(tmp_path, monkeypatch):
    cfg = tiny(num_seeds=4, chunk_size=2)
    work = tmp_path / "run"
    first = results.run(cfg, work, progress=False, log=lambda s: None)
    vdir = work / "variants" / "mlp-none-tanh"
    csv = (vdir / "metrics.csv").read_text()
    assert len(csv.splitlines()) == 5
    for f in ("config.json", "environment.json", "summary.txt", "summary.csv",
              "figures/learning_curves.png", "figures/ood_by_family.png"):
        assert (work / f).exists(), f
    env = json.loads((work / "environment.json").read_text())
    assert env["matmul_precision"] == "default" and env["jax"]
    # standard errors: over seeds (and of the evaluation set for cum_err) in every summary
    k4 = json.loads((vdir / "summary.json").read_text())["cum_err/k4"]
    assert k4["eval_se"] > 0 and k4["se"] >= max(k4["median_se"], k4["eval_se"])
    assert "cum_err_se/k4" in json.loads((work / "summary.json").read_text())["mlp-none-tanh"]
    assert {"se", "eval_se", "median_se"} <= set(
        (work / "summary.csv").read_text().splitlines()[0].split(","))
    assert "± " in (work / "summary.txt").read_text().splitlines()[2]
    assert results.load_variant(vdir).seeds.tolist() == [0, 1, 2, 3]

    # Lose the last chunk (as a SIGKILL in flight would): only that chunk is rerun.
    (vdir / "DONE").unlink()
    (vdir / "chunks" / "00001.msgpack").unlink()
    calls = _count_chunks(monkeypatch)
    assert results.run(cfg, work, progress=False, log=lambda s: None) == first
    assert calls == [[2, 3]]
    assert (vdir / "metrics.csv").read_text() == csv

    # Finished: nothing is built or compiled again.
    monkeypatch.setattr(sweep, "make_sweep", lambda *a, **k: pytest.fail("recompiled"))
    assert results.run(cfg, work, progress=False, log=lambda s: None) == first

    # A run written before a field joined the schema (here data.train_size) resumes while
    # the field keeps its default (what the older code computed), and is refused otherwise.
    saved = json.loads((work / "config.json").read_text())
    del saved["data"]["train_size"]
    (work / "config.json").write_text(json.dumps(saved))
    assert results.run(cfg, work, progress=False, log=lambda s: None) == first
    (work / "config.json").write_text(json.dumps(saved))
    cfg.data.train_size = cfg.data.batch
    with pytest.raises(ValueError, match="data.train_size"):
        results.run(cfg, work, progress=False)
    cfg.data.train_size = 0

    cfg.optim.lr = 0.5
    with pytest.raises(ValueError, match="optim.lr"):
        results.run(cfg, work, progress=False)


def test_a_kill_during_variant_finalisation_resumes_to_the_same_files(tmp_path, monkeypatch):
    """The 'finalise:<variant>' kill point (per-seed records written; summary and DONE not
    yet): a rerun finishes the variant to the files of an uninterrupted run."""
    cfg = tiny(num_seeds=2)
    quiet = dict(progress=False, log=lambda s: None)
    clean = results.run(cfg, tmp_path / "clean", **quiet)

    class Killed(BaseException):
        pass

    def kill_point(where):
        if where == "finalise:mlp-none-tanh":
            raise Killed(where)

    monkeypatch.setattr(results, "kill_point", kill_point)
    work = tmp_path / "killed"
    with pytest.raises(Killed):
        results.run(cfg, work, **quiet)
    vdir = work / "variants" / "mlp-none-tanh"
    assert (vdir / "metrics.jsonl").exists() and not (vdir / "summary.json").exists()
    assert not (vdir / "DONE").exists() and not (work / "summary.txt").exists()
    monkeypatch.undo()
    assert results.run(cfg, work, **quiet) == clean
    for f in ("metrics.jsonl", "metrics.csv", "curves.csv", "summary.json"):
        assert (vdir / f).read_text() == (tmp_path / "clean" / vdir.relative_to(work) / f
                                          ).read_text(), f
    assert (work / "summary.txt").read_text() == (tmp_path / "clean" / "summary.txt").read_text()
    assert_same_params(work, tmp_path / "clean")


CRASH_POINTS = ("compile:mlp-none-tanh", "trained:mlp-none-tanh:00001",
                "replace:00001.msgpack", "chunk:mlp-none-tanh:00000", "replace:metrics.jsonl",
                "finalise:mlp-none-tanh", "replace:summary.txt", "summary", "figures")


def test_a_crash_at_any_phase_resumes_to_the_files_of_an_uninterrupted_run(tmp_path,
                                                                           monkeypatch):
    """Each kill point (compiling, training, inside a chunk's write, after it, inside the
    records' writes, finalising, the run's summary, the figures) in turn: the run stops
    there, a rerun ends with the records, summary and parameters of a clean run, no
    temporary file left.  (In-process: the kill raises; tests/test_sweep.py SIGKILLs a
    real process inside a write.)"""
    from rgsym import atomic
    cfg = tiny(num_seeds=4, chunk_size=2)
    quiet = dict(progress=False, log=lambda s: None)
    clean = tmp_path / "clean"
    clean_summaries = results.run(cfg, clean, **quiet)

    class Killed(BaseException):
        pass

    for point in CRASH_POINTS:
        def kill(where, point=point):
            if where == point:
                raise Killed(where)
        monkeypatch.setattr(results, "kill_point", kill)
        monkeypatch.setattr(atomic, "kill_point", kill)
        work = tmp_path / point.replace(":", "_")
        with pytest.raises(Killed):
            results.run(cfg, work, **quiet)
        monkeypatch.undo()
        assert results.run(cfg, work, **quiet) == clean_summaries, point
        vdir = Path("variants") / "mlp-none-tanh"
        for f in ("metrics.jsonl", "metrics.csv", "curves.csv", "summary.json"):
            assert (work / vdir / f).read_text() == (clean / vdir / f).read_text(), (point, f)
        assert (work / "summary.txt").read_text() == (clean / "summary.txt").read_text()
        assert (work / "figures" / "learning_curves.png").exists(), point
        assert_same_params(work, clean)
        assert not list(work.rglob(".tmp-*")), point


def _captured_run(cfg, work, monkeypatch):
    """results.run, returning also what every run_chunk call gave back {variant: [(params)]}."""
    seen = {}
    make_sweep = sweep.make_sweep

    def capturing(spec, *a, **k):
        sw = make_sweep(spec, *a, **k)
        name = config.variant_name(spec, {"kind": 0})  # kind-symmetry-activation

        def run_chunk(seeds, *r):
            out = sw.run_chunk(seeds, *r)
            seen.setdefault(name, []).append(out[0])
            return out
        return sw._replace(run_chunk=run_chunk)

    monkeypatch.setattr(sweep, "make_sweep", capturing)
    summaries = results.run(cfg, work, progress=False, log=lambda s: None)
    monkeypatch.undo()
    return summaries, {n: jax.tree.map(lambda *a: np.concatenate(a), *p) for n, p in seen.items()}


def test_load_params_round_trip_for_an_mlp_and_a_gnn(tmp_path, monkeypatch):
    """The params come back as the model's own pytree [S, ...], equal to what training
    returned; model.apply on one seed reproduces its recorded test MSE; propagate_many
    takes the stack as it is."""
    cfg = tiny(num_seeds=3, chunk_size=2, variants=(
        dict(kind="mlp", symmetry="none", activation="quadratic"),
        dict(kind="gnn", symmetry="shared", activation="quadratic", width=4)))
    work = tmp_path / "run"
    _, trained = _captured_run(cfg, work, monkeypatch)
    uniform = distributions.get("uniform", standardised=True)
    run = results.load_run(work)
    assert run.variants == ("mlp-none-quadratic", "gnn-shared-quadratic-width=4")
    assert run.summaries.keys() == set(run.variants) and run.environment["jax"]
    assert repr(run).endswith("2 variants, 2 finished, num_seeds=3)")
    for name in run.variants:
        rec = run.variant(name)
        model = models.build(rec.config)   # a saved variant config builds its model
        params = results.load_params(work, name)
        template = model.init(jax.random.key(0), np.zeros(model.spec.lattice_shape))
        assert jax.tree.structure(params) == jax.tree.structure(template)
        jax.tree.map(np.testing.assert_array_equal, params,
                     trained[name.removesuffix("-width=4")])
        jax.tree.map(lambda a, t: np.testing.assert_equal(a.shape, (3, *t.shape)), params,
                     template)

        # Seed 1 (index 1): its test MSE recomputed with model.apply from the loaded params.
        ev = train.make_train(ml_collections.ConfigDict(rec.config)).evaluator
        x, y = ev.fixed_data()
        one = jax.tree.map(lambda a: a[1], params)
        mse = np.mean((np.asarray(model.apply(one, x[ev.sets.train])) - y[ev.sets.train]) ** 2)
        np.testing.assert_allclose(mse, rec.final["test_mse"][1], rtol=1e-9)

        # Seeds picked and reordered; propagate_many vmaps over their leading axis.
        picked = results.load_params(work, name, seeds=[2, 0])
        jax.tree.map(lambda a, p: np.testing.assert_array_equal(a, p[[2, 0]]), picked, params)
        many = cumulants.propagate_many(model, picked, uniform, order=2)
        for i, s in enumerate([2, 0]):
            single = cumulants.propagate(model, jax.tree.map(lambda a: a[s], params), uniform,
                                         order=2)
            jax.tree.map(lambda m, o: np.testing.assert_allclose(m[i], o, rtol=1e-10,
                                                                 atol=1e-12),
                         many.output, single.output)

    with pytest.raises(ValueError, match=r"variant='mlp-none-tanh' is not in .*mlp-none-quad"):
        results.load_params(work, "mlp-none-tanh")
    with pytest.raises(ValueError, match=r"seeds \[7\] are not in variant "
                                         r"'mlp-none-quadratic': it holds seeds 0..2"):
        results.load_params(work, "mlp-none-quadratic", seeds=[0, 7])
    # A variant whose config no longer builds the stored tree is refused, naming the leaf.
    saved = work / "variants" / "mlp-none-quadratic" / "config.json"
    cfg_json = json.loads(saved.read_text())
    cfg_json["model"]["width"] = 5
    saved.write_text(json.dumps(cfg_json))
    with pytest.raises(ValueError, match=r"00000.msgpack: parameter \['params'\]\['layer_0'\]"
                                         r"\['bias'\] has shape \(2, 8\), but 2 seeds .* \(2, 5\)"):
        results.load_params(work, "mlp-none-quadratic")


def test_run_directories_with_legacy_npz_chunks_are_read_and_resumed(tmp_path):
    """Chunks written before parameters kept their tree (flat npz, parameters under their
    key paths) load to the same records, and a resume mixes them with msgpack chunks."""
    cfg = tiny(num_seeds=4, chunk_size=2)
    work = tmp_path / "run"
    quiet = dict(progress=False, log=lambda s: None)
    first = results.run(cfg, work, **quiet)
    vdir = work / "variants" / "mlp-none-tanh"
    new = results.load_variant(vdir)
    for path in sorted((vdir / "chunks").glob("*.msgpack")):  # rewrite as the old code did
        chunk = serialization.msgpack_restore(path.read_bytes())
        flat = {"seeds": chunk["seeds"], "diverged": chunk["diverged"],
                "diverged_step": chunk["diverged_step"]}
        for kind in ("final", "curves"):
            flat.update({f"{kind}/{k}": v for k, v in chunk[kind].items()})
        leaves = jax.tree_util.tree_flatten_with_path(chunk["params"])[0]
        flat.update({"params/" + jax.tree_util.keystr(p): v for p, v in leaves})
        results.atomic_savez(path.with_suffix(".npz"), flat)
        path.unlink()
    old = results.load_variant(vdir)
    jax.tree.map(np.testing.assert_array_equal, old.params, new.params)
    jax.tree.map(np.testing.assert_array_equal, (old.final, old.curves, old.seeds),
                 (new.final, new.curves, new.seeds))

    (vdir / "DONE").unlink()
    (vdir / "chunks" / "00001.npz").unlink()
    assert results.run(cfg, work, **quiet) == first
    assert sorted(p.name for p in (vdir / "chunks").iterdir()) == ["00000.npz", "00001.msgpack"]
    jax.tree.map(np.testing.assert_array_equal, results.load_params(work, "mlp-none-tanh"),
                 new.params)
    assert "seeds=0..3" in repr(old) and len(repr(old)) < 200


def _as_before_kind(saved: dict) -> dict:
    """A config.json as rgsym wrote it before 2026-11-30, when model.kind was model.family
    (and a variant's override key 'kind' was 'family')."""
    saved = json.loads(json.dumps(saved))
    saved["model"]["family"] = saved["model"].pop("kind")
    saved["variants"] = [{("family" if k == "kind" else k): v for k, v in var.items()}
                         for var in saved["variants"]]
    return saved


def test_a_run_written_when_the_network_kind_was_model_family_resumes_and_loads(
        tmp_path, monkeypatch):
    """rgsym.config.upgrade: a run directory whose config.json files hold model.family
    resumes under today's config without training again, and loads (load_run, load_variant,
    models.build of its config, load_params)."""
    cfg = tiny(num_seeds=2, variants=(
        dict(kind="gnn", symmetry="shared", activation="tanh", width=4),))
    work = tmp_path / "run"
    first = results.run(cfg, work, progress=False, log=lambda s: None)
    (name,) = first
    new_params = results.load_params(work, name)
    for path in (work / "config.json", work / "variants" / name / "config.json"):
        path.write_text(json.dumps(_as_before_kind(json.loads(path.read_text()))))
    assert json.loads((work / "config.json").read_text())["variants"][0]["family"] == "gnn"
    (work / "variants.json").unlink()  # names computed from the old config.json too

    rec = results.load_run(work)
    assert rec.variants == (name,) and tuple(rec.summaries) == (name,)
    assert rec.config["model"]["kind"] == "mlp" and rec.config["variants"][0]["kind"] == "gnn"
    var = rec.variant(name)
    assert var.config["model"]["kind"] == "gnn" and "family" not in var.config["model"]
    assert var.config["data"]["family"] == "uniform"
    assert models.build(var.config).spec.kind == "gnn"
    old_json = json.loads((work / "variants" / name / "config.json").read_text())
    assert models.spec_from_config(old_json).kind == "gnn"  # a saved variant config as it is
    jax.tree.map(np.testing.assert_array_equal, results.load_params(work, name), new_params)

    monkeypatch.setattr(sweep, "make_sweep", lambda *a, **k: pytest.fail("retrained"))
    assert results.run(cfg, work, progress=False, log=lambda s: None) == first
    assert json.loads((work / "config.json").read_text())["model"]["kind"] == "mlp"
    cfg.variants = (dict(kind="mlp", symmetry="none", activation="tanh"),)  # another run
    (work / "config.json").write_text(json.dumps(_as_before_kind(rec.config)))
    with pytest.raises(ValueError, match=r"fields differ: variants"):
        results.check(cfg, work)


def test_the_printed_table_fits_100_columns_with_two_significant_digits():
    agg = metrics.aggregate([1.234e-3, 1.5e-3, 9e-3])
    long = "mlp-tied_hidden-quadratic-width=16-depth=1-sites=2-flow_steps=1-steps=4000-lr=0.01"
    summaries = {name: {"num_seeds": 8, "num_diverged": 0, **{m: agg for m in
                                                              results.SUMMARY_COLUMNS}}
                 for name in ("mlp-none-tanh", long)}
    printed = results.printed_table(summaries)
    lines = printed.splitlines()
    assert max(map(len, lines)) <= 100 < max(map(len, results.summary_table(summaries)
                                                 .splitlines()))
    assert lines[0].split() == ["variant", "seeds", "div", "train", "test", "ood_med",
                                "ood_max", "scale_max", "flow_max"]
    assert lines[2].split() == ["mlp-none-tanh", "8", "0"] + ["1.5e-03"] * 6
    assert lines[3].startswith(long[:20]) and lines[3].split()[0].endswith("~")
    assert "test: test_rel_err" in printed and "summary.txt" in printed


def test_a_finished_run_extended_with_more_seeds_trains_only_the_new_ones(tmp_path,
                                                                          monkeypatch):
    quiet = dict(progress=False, log=lambda s: None)
    clean = results.run(tiny(num_seeds=4, chunk_size=2), tmp_path / "clean", **quiet)
    work = tmp_path / "run"
    results.run(tiny(num_seeds=2, chunk_size=2), work, **quiet)
    calls = _count_chunks(monkeypatch)
    assert results.run(tiny(num_seeds=4, chunk_size=2), work, **quiet) == clean
    assert calls == [[2, 3]]
    vdir = work / "variants" / "mlp-none-tanh"
    assert sorted(p.name for p in (vdir / "chunks").iterdir()) == ["00000.msgpack",
                                                                   "00001.msgpack"]
    for f in ("metrics.jsonl", "summary.json"):
        assert (vdir / f).read_text() == (tmp_path / "clean" / "variants" / vdir.name / f
                                          ).read_text(), f
    assert_same_params(work, tmp_path / "clean")
    assert results.run(tiny(num_seeds=4, chunk_size=2), work, **quiet) == clean
    assert calls == [[2, 3]]  # finished again: nothing trained
    with pytest.raises(ValueError, match=r"'num_seeds'=3 is fewer than the 4 seeds"):
        results.check(tiny(num_seeds=3, chunk_size=2), work)


def test_a_full_disk_names_the_file_keeps_earlier_results_and_a_resume_completes(
        tmp_path, monkeypatch):
    """ENOSPC on the second chunk's write: the error names that file, the first chunk and
    the run's records stay intact, no temporary file is left, and a rerun finishes with
    the records of an uninterrupted run."""
    import errno
    from rgsym import atomic
    cfg = tiny(num_seeds=4, chunk_size=2)
    quiet = dict(progress=False, log=lambda s: None)
    clean = results.run(cfg, tmp_path / "clean", **quiet)
    work = tmp_path / "run"
    real = atomic.os.fdopen

    class Full:
        def __init__(self, f):
            self.f = f
        def __enter__(self):
            return self
        def __exit__(self, *a):
            self.f.close()
        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

    full = {"now": False}                     # the disk fills up at the second chunk
    write_bytes = results.atomic_write_bytes

    def writing(path, data):
        full["now"] = "00001" in str(path)
        return write_bytes(path, data)

    def fdopen(fd, mode="r", *a, **k):
        f = real(fd, mode, *a, **k)
        return Full(f) if full["now"] else f

    monkeypatch.setattr(results, "atomic_write_bytes", writing)
    monkeypatch.setattr(atomic.os, "fdopen", fdopen)
    with pytest.raises(OSError, match=r"No space left on device while writing .*00001") as e:
        results.run(cfg, work, **quiet)
    assert e.value.errno == errno.ENOSPC
    chunks = work / "variants" / "mlp-none-tanh" / "chunks"
    assert sorted(p.name for p in chunks.iterdir()) == ["00000.msgpack"]
    assert (work / "config.json").exists() and (work / "environment.json").exists()
    monkeypatch.setattr(atomic.os, "fdopen", real)
    assert results.run(cfg, work, **quiet) == clean
    assert not [p for p in work.rglob(".tmp-*")]


def test_a_damaged_chunk_or_json_file_is_named_with_the_way_out(tmp_path):
    """A file cut outside the atomic writes (a disk error, an interrupted copy): the error
    names it; deleting the chunk and DONE, as it says, trains its seeds again."""
    cfg = tiny(num_seeds=4, chunk_size=2)
    quiet = dict(progress=False, log=lambda s: None)
    work = tmp_path / "run"
    first = results.run(cfg, work, **quiet)
    vdir = work / "variants" / "mlp-none-tanh"
    chunk = vdir / "chunks" / "00001.msgpack"
    whole = chunk.read_bytes()
    chunk.write_bytes(whole[:100])
    (vdir / "DONE").unlink()
    for call in (lambda: results.run(cfg, work, **quiet), lambda: results.load_variant(vdir)):
        with pytest.raises(ValueError, match=r"00001\.msgpack is not a readable chunk .*"
                                             r"delete it, and the variant's DONE"):
            call()
    chunk.unlink()
    assert results.run(cfg, work, **quiet) == first
    assert chunk.read_bytes() == whole
    for name in ("environment.json", "config.json"):
        (work / name).write_text('{"jax": ')
        with pytest.raises(ValueError, match=rf"{name} is not valid JSON"):
            results.check(cfg, work)
        (work / name).unlink()


def test_a_run_directory_older_than_the_rgsym_version_record_resumes(tmp_path):
    """Run directories written before environment.json kept rgsym's version (and its
    history) resume: an unrecorded version is no evidence of a change; jax is compared."""
    cfg = tiny(num_seeds=2)
    work = tmp_path / "run"
    results.run(cfg, work, progress=False, log=lambda s: None)
    env_path = work / "environment.json"
    env = json.loads(env_path.read_text())
    del env["rgsym"], env["history"], env["allow_version_change"]
    env_path.write_text(json.dumps(env))
    results.check(cfg, work)
    env["jax"] = "0.0.1"
    env_path.write_text(json.dumps(env))
    with pytest.raises(ValueError, match=r"versions \(jax 0\.0\.1 -> "):
        results.check(cfg, work)


def test_check_starts_no_jax_backend_so_the_cpu_may_still_be_split(tmp_path):
    """check() runs before split_host_cpu in scripts of one process: it must not start a
    backend (which would fix the device count)."""
    import subprocess
    import sys
    code = ("import jax; from jax._src import xla_bridge; from rgsym import config, results, sweep; "
            "c = config.base_config(); c.num_seeds = 2; "
            f"results.check(c, {str(tmp_path / 'run')!r}); "
            "assert not xla_bridge.backends_are_initialized(); "
            "sweep.split_host_cpu(3); assert jax.device_count() == 3, jax.devices()")
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env=env, cwd=Path(results.__file__).parent.parent)
    assert done.returncode == 0, done.stderr[-2000:]


def test_a_run_started_in_one_process_may_be_resumed_on_many(tmp_path):
    """multihost chooses where seeds run, not what they compute (tests/test_multiprocess.py):
    a run begun on one machine resumes under --config.multihost=True, and back."""
    work = tmp_path / "run"
    results.run(tiny(num_seeds=2), work, progress=False, log=lambda s: None)
    results.check(tiny(num_seeds=2, multihost=True), work)
    with pytest.raises(ValueError, match=r"fields differ: model\.width\)"):
        results.check(tiny(num_seeds=2, multihost=True, model__width=5), work)


def test_resuming_under_other_versions_is_refused_unless_allowed_and_recorded(tmp_path):
    cfg = tiny(num_seeds=2)
    quiet = dict(progress=False, log=lambda s: None)
    work = tmp_path / "run"
    first = results.run(cfg, work, **quiet)
    env_path = work / "environment.json"
    env = json.loads(env_path.read_text())
    assert env["history"] == [] and env["rgsym"] and env["jaxlib"]
    env["jax"] = "0.0.1"                      # as if written by another JAX
    env_path.write_text(json.dumps(env))
    with pytest.raises(ValueError, match=rf"jax 0\.0\.1 -> {jax.__version__}.*allow_version"):
        results.run(cfg, work, **quiet)
    assert results.run(cfg, work, allow_version_change=True, **quiet) == first
    env = json.loads(env_path.read_text())
    assert env["allow_version_change"] is True and env["jax"] == jax.__version__
    assert [h["jax"] for h in env["history"]] == ["0.0.1"]


def test_load_run_names_variants_whose_overrides_config_json_sorts(tmp_path):
    """config.json sorts every dict's keys, while a variant's name follows the order of its
    overrides: load_run must still find every variant (and its summary), in config order,
    also in a run written before variants.json existed."""
    cfg = tiny(num_seeds=1)
    cfg.variants = config.zipped(**{"optim.lr": (1e-2, 2e-2), "data.batch": (16, 32)})
    work = tmp_path / "run"
    summaries = results.run(cfg, work, progress=False, log=lambda s: None)
    expected = ("mlp-none-tanh-lr=0.01-data.batch=16", "mlp-none-tanh-lr=0.02-data.batch=32")
    assert tuple(summaries) == expected
    rec = results.load_run(work)
    assert rec.variants == expected and tuple(rec.summaries) == expected
    (work / "variants.json").unlink()  # as an older run directory
    rec = results.load_run(work)
    assert rec.variants == expected and tuple(rec.summaries) == expected
