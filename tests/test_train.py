"""The training engine: pure runs of a key, vmapped / sharded sweeps, learning facts,
divergence handling and config validation."""
import contextlib
import dataclasses
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from rgsym import config, metrics, results, sweep, train

CONFIGS = Path(__file__).resolve().parent.parent / "experiments" / "configs"


def tiny(**overrides):
    """The end-to-end test config as one float64 variant of 3 seeds, 20 steps; overrides
    use ``section__field`` keys (tests run with x64 on)."""
    spec = importlib.util.spec_from_file_location("test_config", CONFIGS / "test.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    c = module.get_config()
    c.update(dict(dtype="float64", num_seeds=3, chunk_size=0, variants=()))
    c.optim.steps, c.eval.every = 20, 10
    for field, value in overrides.items():
        *path, leaf = field.split("__")
        section = c
        for p in path:
            section = section[p]
        section[leaf] = value
    return c


def assert_trees_close(a, b, rtol=1e-9, atol=1e-12):
    jax.tree.map(lambda x, y: np.testing.assert_allclose(np.asarray(x), np.asarray(y),
                                                         rtol=rtol, atol=atol), a, b)


def test_vmapped_seed_equals_single_seed_run_and_runs_repeat_exactly():
    cfg = tiny(seed=5)
    params, m = sweep.sweep(cfg)                       # seeds 5, 6, 7 vmapped
    assert m["final"]["test_rel_err"].shape == (3,)
    assert m["curves"]["test_rel_err"].shape == (3, 2)
    single = jax.jit(train.make_train(cfg).train)
    p1, m1 = single(jax.random.key(6))
    assert_trees_close(jax.tree.map(lambda a: a[1], (params, m)), (p1, m1))
    p2, m2 = single(jax.random.key(6))
    jax.tree.map(np.testing.assert_array_equal, (p1, m1), (p2, m2))
    assert not m["diverged"].any() and (m["diverged_step"] == -1).all()


def test_sweep_sharded_over_8_devices_equals_one_device():
    assert jax.device_count() == 8  # conftest: 8 host CPU devices
    cfg = tiny(num_seeds=8)
    seeds = np.arange(8)
    one = sweep.make_sweep(cfg, devices=jax.devices()[:1]).run_chunk(seeds)
    eight = sweep.make_sweep(cfg, devices=jax.devices())
    assert eight.mesh.size == 8
    assert_trees_close(one, eight.run_chunk(seeds))


# These count host CPU devices: on an accelerator the sweep's devices are its chips.
_CPU_ONLY = pytest.mark.skipif(jax.default_backend() != "cpu",
                               reason="counts split host CPU devices (default backend: CPU)")


@_CPU_ONLY
def test_a_sweep_of_fewer_seeds_than_devices_leaves_the_rest_out():
    sw = sweep.make_sweep(tiny(num_seeds=3))
    assert sw.mesh.size == 3 and sw.chunk_size == 3  # no device fed only padding


def _device_count_after(code: str, xla_flags: str | None) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    if xla_flags:
        env["XLA_FLAGS"] = xla_flags
    run = subprocess.run([sys.executable, "-c", "import jax\nfrom rgsym import sweep\n" + code],
                         env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    return run.stdout.split()


@_CPU_ONLY
def test_split_host_cpu_sets_the_device_count_unless_xla_flags_or_a_running_backend_do():
    show = "print(sweep.split_host_cpu({}), jax.device_count())"
    assert _device_count_after(show.format(3), None) == ["3", "3"]
    assert _device_count_after(show.format(3), "--xla_force_host_platform_device_count=2") == [
        "None", "2"]
    assert _device_count_after("jax.devices()\n" + show.format(3), None) == ["None", "1"]
    with pytest.raises(ValueError, match="devices"):
        sweep.split_host_cpu(-2)


@pytest.mark.parametrize("model", [dict(symmetry="none"), dict(symmetry="odd"),
                                   dict(symmetry="block_local"),
                                   dict(kind="gnn", symmetry="separate"),
                                   dict(kind="gnn", symmetry="shared")])  # no sym/* at all
def test_last_learning_curve_point_equals_the_final_evaluation_on_the_same_samples(model):
    # The in-scan curve evaluation (first curve_batch samples, no k-statistics) and the
    # final one are separate code paths: with curve_batch = batch, after the last period,
    # they see the same samples and parameters and must agree.
    cfg = tiny(num_seeds=2, eval__curve_batch=64, **{f"model__{k}": v for k, v in model.items()})
    _, m = sweep.sweep(cfg)
    names = [k for k in m["final"] if k.startswith("rel_err/")]
    assert len(names) == len(metrics.eval_sets(config.resolve(cfg)).names)
    for name in names + ["test_rel_err", "ood_rel_err_max"]:
        np.testing.assert_allclose(m["curves"][name][:, -1], m["final"][name], rtol=1e-10,
                                   err_msg=name)


def test_identity_mlp_learns_the_exact_map_on_every_family():
    cfg = tiny(num_seeds=2, model__activation="identity", optim__schedule="cosine",
               optim__steps=300, optim__lr=1e-2, eval__every=300, eval__batch=256)
    cfg.eval.families = ()  # default: every family with finite kappa_4
    _, m = sweep.sweep(cfg)
    rel = {k: v for k, v in m["final"].items() if k.startswith("rel_err/")}
    assert {f"rel_err/{f}" for f in metrics.default_families()} <= set(rel)
    for name, v in rel.items():
        assert (v < 1e-6).all(), (name, v)
    # Gaussian stays Gaussian (paired k-statistics; the unpaired sampling noise is ~0.1).
    assert (m["final"]["fixed_point_violation"] < 1e-3).all()


def test_tied_quadratic_mlp_is_worse_out_of_distribution():
    # One block (the probe of docs/science.md): tied units cannot cancel their quadratic form.
    cfg = tiny(num_seeds=2, lattice__sites=2, eval__flow_steps=1, model__width=16,
               model__symmetry="tied_hidden", model__activation="quadratic",
               optim__steps=1000, optim__schedule="cosine", eval__every=500, eval__batch=512)
    cfg.eval.families = ("uniform", "exponential", "laplace")
    cfg.eval.scales = (3.0,)
    _, m = sweep.sweep(cfg)
    f = m["final"]
    assert (f["ood_rel_err_max"] > 2 * f["test_rel_err"]).all(), f
    assert (f["rel_err/scale_3"] > 5 * f["test_rel_err"]).all(), f


@pytest.mark.parametrize("bad_lr, first_bad_step", [(1e200, 1), (np.inf, 0)])
def test_divergent_seed_is_frozen_and_marked_while_others_match_a_clean_run(bad_lr,
                                                                            first_bad_step):
    # 1e200: the first update is finite, the next loss overflows; inf: caught at once.
    cfg = tiny()
    sw = sweep.make_sweep(cfg)
    seeds = np.array([0, 1, 2])
    bad = sw.run_chunk(seeds, sw.trainer.hparams(lr=np.array([1e-2, bad_lr, 1e-2])))
    clean = sw.run_chunk(seeds, sw.trainer.hparams(lr=np.full(3, 1e-2)))
    params, m = bad
    np.testing.assert_array_equal(m["diverged"], [False, True, False])
    assert m["diverged_step"][1] == first_bad_step
    assert all(np.isfinite(leaf[1]).all() for leaf in jax.tree.leaves(params))
    keep = np.array([0, 2])
    assert_trees_close(jax.tree.map(lambda a: a[keep], bad),
                       jax.tree.map(lambda a: a[keep], clean), rtol=0, atol=0)
    assert metrics.summarise(m["final"], m["diverged"])["num_diverged"] == 1


@pytest.mark.parametrize("place", ["update", "state"])
def test_a_non_finite_value_made_inside_the_optimiser_diverges_only_its_seed(place,
                                                                             monkeypatch):
    """A transform appended to the optimiser poisons, at step 3, either the update or its
    own state, for the seed whose parameters are large (init_scale 50): that seed is
    marked (at step 3 for the update; at the end of the evaluation period, step 9, for
    the state, checked once per period) with finite parameters, the others equal a run
    where nothing fires."""
    import jax.numpy as jnp
    import optax

    def poison(updates, state, params):
        big = jnp.max(jnp.stack([jnp.max(jnp.abs(p)) for p in jax.tree.leaves(params)])) > 20.0
        hit = big & (state[0] == 3)
        if place == "update":
            updates = jax.tree.map(lambda u: jnp.where(hit, jnp.nan, u), updates)
        return updates, (state[0] + 1, jnp.where(hit & (place == "state"), jnp.nan, state[1]))

    real = train._optimizer
    appended = optax.GradientTransformation(
        lambda params: (jnp.zeros([], jnp.int32), jnp.zeros([])), poison)
    monkeypatch.setattr(train, "_optimizer", lambda o: optax.chain(real(o), appended))
    cfg = tiny()
    sw = sweep.make_sweep(cfg)
    seeds = np.array([0, 1, 2])
    params, m = sw.run_chunk(seeds, sw.trainer.hparams(init_scale=np.array([1.0, 50.0, 1.0])))
    clean_params, clean = sw.run_chunk(seeds, sw.trainer.hparams(init_scale=np.ones(3)))
    marked = 3 if place == "update" else cfg.eval.every - 1
    assert m["diverged"].tolist() == [False, True, False] and m["diverged_step"][1] == marked
    assert not clean["diverged"].any()
    assert all(np.isfinite(leaf[1]).all() for leaf in jax.tree.leaves(params))
    keep = np.array([0, 2])
    assert_trees_close(jax.tree.map(lambda a: a[keep], (params, m["final"])),
                       jax.tree.map(lambda a: a[keep], (clean_params, clean["final"])),
                       rtol=0, atol=0)


def test_an_update_that_overflows_some_elements_is_held_whole_and_marks_the_seed():
    # SGD at the largest float64 learning rate: lr * g overflows where |g| > 1 and stays
    # finite (~1e308) elsewhere.  The step is not finite, so none of it is kept: the seed is
    # marked at step 0 and keeps its initial parameters, every element of them.
    cfg = tiny(optim__optimizer="sgd")
    sw = sweep.make_sweep(cfg)
    seeds = np.array([0, 1, 2])
    lr = np.array([1e-2, np.finfo(np.float64).max, 1e-2])
    params, m = sw.run_chunk(seeds, sw.trainer.hparams(lr=lr, init_scale=4.0))
    init, _ = sw.run_chunk(seeds, sw.trainer.hparams(lr=np.zeros(3), init_scale=4.0))
    assert m["diverged"].tolist() == [False, True, False] and m["diverged_step"][1] == 0
    assert_trees_close(jax.tree.map(lambda a: a[1], params), jax.tree.map(lambda a: a[1], init),
                       rtol=0, atol=0)
    # positive control: the seeds beside it moved
    assert any((np.asarray(a)[0] != np.asarray(b)[0]).any()
               for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(init)))


def test_nested_vmap_over_seeds_and_learning_rates():
    trainer = train.make_train(tiny())
    lrs = trainer.hparams(lr=np.array([1e-3, 1e-2]))
    keys = jax.random.split(jax.random.key(0), 3)
    grid = jax.vmap(jax.vmap(trainer.train, (None, 0)), (0, None))
    _, m = jax.jit(grid)(keys, lrs)
    assert m["final"]["test_rel_err"].shape == (3, 2)
    # Cell (2, 1) is the run of key 2 at the second learning rate, and nothing else.
    _, cell = jax.jit(trainer.train)(keys[2], trainer.hparams(lr=1e-2))
    assert_trees_close(jax.tree.map(lambda a: a[2, 1], m), cell)


@contextlib.contextmanager
def _refused_before_compiling(match: str):
    """The block raises a ValueError matching ``match`` before XLA compiles anything (or
    reads a compiled program from the persistent cache)."""
    compiled = []
    compile_events = ("backend_compile", "/jax/compilation_cache/cache_hits")
    listen = lambda name, *a, **k: compiled.append(name) if any(
        e in name for e in compile_events) else None
    jax.monitoring.register_event_duration_secs_listener(listen)
    jax.monitoring.register_event_listener(listen)
    try:
        with pytest.raises(ValueError, match=match):
            yield
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
        jax.monitoring.unregister_event_listener(listen)
    assert not compiled, "compiled before refusing"


def test_the_refusal_check_fails_when_something_compiles_first():
    # Positive control: the listener sees XLA compile (a renamed event or a cache hit
    # would make every 'refused before compiling' check pass vacuously).
    def compile_then_refuse(match):
        jax.jit(lambda x: x * 3.25 - 0.5)(np.arange(7.0))  # a fresh function: compiled
        raise ValueError(match)

    with pytest.raises(AssertionError, match="compiled before refusing"):
        with _refused_before_compiling("field"):
            compile_then_refuse("field")


@pytest.mark.parametrize("edit, field", [
    # (base_config is locked against new keys; an unlocked copy reaches validation)
    (lambda c: (c.unlock(), setattr(c, "bogus", 1)), "bogus"),
    (lambda c: (c.unlock(), setattr(c.model, "widht", 3)), "model.widht"),
    (lambda c: setattr(c.optim, "steps", -5), "optim.steps"),
    (lambda c: setattr(c, "num_seeds", -1), "num_seeds"),
    (lambda c: setattr(c, "seed", -3), "seed"),
    (lambda c: setattr(c.data, "batch", 0), "data.batch"),
    (lambda c: setattr(c.lattice, "sites", 7), "lattice.sites"),
    (lambda c: setattr(c.eval, "flow_steps", 4), "eval.flow_steps"),
    (lambda c: setattr(c.eval, "every", 7), "eval.every"),
    (lambda c: setattr(c.eval, "curve_batch", c.eval.batch + 1), "eval.curve_batch"),
    (lambda c: setattr(c.eval, "scales", (2.0, 2.0)), "eval.scales"),
    (lambda c: setattr(c, "num_devices", 9), "num_devices"),
    (lambda c: setattr(c.eval, "families", ("uniform", "nosuch")), "eval.families"),
    (lambda c: setattr(c.eval, "families", ("student_t",)), None),
    (lambda c: setattr(c.data, "family", "nosuch"), "data.family"),
    (lambda c: setattr(c, "matmul_precision", "fast"), "matmul_precision"),
    (lambda c: setattr(c, "backend_opt_level", "4"), "backend_opt_level"),
    (lambda c: setattr(c, "variants", (dict(nosuch=1),)), "variants[0].nosuch"),
    (lambda c: setattr(c, "variants", (dict(symmetry="bogus"),)), "symmetry"),
])
def test_bad_config_fails_before_compilation_naming_the_field(edit, field, tmp_path):
    cfg = tiny()
    edit(cfg)
    if field is None:  # student_t(df=5) has kappa_4: a valid config
        config.validate_config(cfg)
        return
    with _refused_before_compiling(re.escape(field)):
        sweep.make_sweep(cfg)
    with _refused_before_compiling(re.escape(field)):
        results.run(cfg, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("call, argument", [
    (lambda cfg, tr: sweep.make_sweep(cfg, chunk_size=-2), "chunk_size"),
    (lambda cfg, tr: sweep.make_sweep(cfg, devices=[]), "devices"),
    (lambda cfg, tr: sweep.sweep(cfg, seeds=[]), "seeds"),
    (lambda cfg, tr: sweep.sweep(cfg, seeds=[2 ** 31]), "seeds"),
    (lambda cfg, tr: sweep.sweep(cfg, seeds=[0.5, 1.5]), "seeds"),
    (lambda cfg, tr: sweep.sweep(cfg, seeds=[[0, 1]]), "seeds"),
    (lambda cfg, tr: tr.hparams(learning_rate=1.0), "learning_rate"),
    (lambda cfg, tr: sweep.sweep(cfg, hparams=tr.hparams()._replace(lr=np.ones(2))),
     "hparams.lr"),
])
def test_bad_sweep_arguments_are_refused_by_name(call, argument):
    cfg = tiny()
    trainer = train.make_train(cfg)  # (the hparams cases take theirs from it)
    jax.block_until_ready(trainer.hparams())
    with _refused_before_compiling(argument):
        call(cfg, trainer)


def test_the_trainer_is_the_pure_function_jit_vmap_takes():
    """``jax.jit(jax.vmap(make_train(cfg)))(keys)`` is a seed sweep: each seed equals the
    trainer's own single-key run."""
    trainer = train.make_train(tiny())
    keys = jax.random.split(jax.random.key(7), 2)
    params, m = jax.jit(jax.vmap(trainer))(keys)
    one_params, one = jax.jit(trainer.train)(keys[1])
    assert_trees_close(jax.tree.map(lambda a: a[1], (params, m["final"])),
                       (one_params, one["final"]))


def test_make_train_resolves_a_config_of_one_variant_and_refuses_several():
    cfg = tiny(variants=(dict(width=8),))
    trainer = train.make_train(cfg)
    assert isinstance(trainer.config, config.RunSpec) and trainer.config.model.width == 8
    assert trainer.model.spec == trainer.config.model
    assert train.make_train(trainer.config).config is trainer.config  # a RunSpec as it is
    cfg.variants = config.grid(width=(8, 16))
    with _refused_before_compiling(r"rgsym\.config\.variant_configs"):
        train.make_train(cfg)
    with _refused_before_compiling(r"rgsym\.config\.variant_configs"):
        sweep.make_sweep(cfg)


def test_the_evaluator_takes_a_run_spec_never_an_unvalidated_config():
    cfg = tiny()
    model = train.make_train(cfg).model
    for build in (lambda c: metrics.make_evaluator(c, model), metrics.eval_sets):
        with pytest.raises(TypeError, match=r"rgsym\.config\.resolve"):
            build(cfg)
    assert metrics.eval_sets(config.resolve(cfg)).names[0] == cfg.data.family


def test_seed_chunks_cut_the_run_seeds_as_chunk_slices_do():
    spec = config.resolve(tiny(seed=4, num_seeds=5, chunk_size=2))
    assert [c.tolist() for c in sweep.seed_chunks(spec)] == [[4, 5], [6, 7], [8]]
    assert sweep.chunk_slices(0, 3) == []
    whole = dataclasses.replace(spec, chunk_size=0)  # 0: every seed in one chunk
    assert [c.tolist() for c in sweep.seed_chunks(whole)] == [[4, 5, 6, 7, 8]]
    with pytest.raises(ValueError, match="size"):
        sweep.chunk_slices(3, 0)
