"""The persistent compilation cache: settings, and never a program for another config."""
import os

import jax
import numpy as np
import pytest

from rgsym import compile_cache, train
from test_train import assert_trees_close, tiny


@pytest.fixture
def cache_events():
    """Counts of JAX's persistent-cache events while the test runs; restores the cache
    directory and the write threshold the suite had."""
    before = jax.config.jax_compilation_cache_dir
    threshold = jax.config.jax_persistent_cache_min_compile_time_secs
    counts = {"hits": 0, "misses": 0}

    def listen(name, *args, **kwargs):
        for kind in counts:
            if name == f"/jax/compilation_cache/cache_{kind}":
                counts[kind] += 1
    jax.monitoring.register_event_listener(listen)
    try:
        yield counts
    finally:
        jax.monitoring.unregister_event_listener(listen)
        jax.config.update("jax_compilation_cache_dir", before)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", threshold)
        compile_cache._jax_cache.reset_cache()


def test_settings_resolve_to_a_directory_or_off(monkeypatch, tmp_path):
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    for auto in ("auto", "AUTO", " Auto "):
        assert compile_cache.resolve(auto) == str(tmp_path / "rgsym" / "jax")
    for off in ("", "off", "None", " OFF "):
        assert compile_cache.resolve(off) is None
    assert compile_cache.resolve("~/x") == os.path.expanduser("~/x")
    assert compile_cache.resolve(tmp_path / "p") == str(tmp_path / "p")  # a path-like
    with pytest.raises(ValueError, match="compile_cache=3 is not valid"):
        compile_cache.resolve(3)


def test_auto_is_the_directory_jax_was_given_else_an_absolute_xdg_cache_home(monkeypatch,
                                                                              tmp_path):
    home = os.path.join(os.path.expanduser("~"), ".cache", "rgsym", "jax")
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/dir")  # the XDG rule: ignored
    assert compile_cache.resolve("auto") == home
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert compile_cache.resolve("auto") == home
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "jaxdir"))
    assert compile_cache.resolve("auto") == str(tmp_path / "jaxdir")


def test_a_directory_that_cannot_be_made_or_written_is_refused_naming_it(monkeypatch,
                                                                         tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("")
    for bad in (afile, afile / "below"):
        with pytest.raises(ValueError, match=f"compile_cache='{bad}' is not valid: the "
                                             f"directory {bad} cannot be created or written"):
            compile_cache.prepare(str(bad))
    if os.path.isdir("/proc/self"):  # Linux: a directory nothing can be written to
        with pytest.raises(ValueError, match="cannot be created or written"):
            compile_cache.prepare("/proc")
    assert compile_cache.prepare(str(tmp_path / "new" / "dir")) == str(tmp_path / "new" / "dir")
    assert (tmp_path / "new" / "dir").is_dir() and not any((tmp_path / "new" / "dir").iterdir())
    assert compile_cache.prepare("off") is None
    # 'auto' through JAX's variable: the message says where the directory came from
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(afile))
    with pytest.raises(ValueError, match=r"compile_cache='auto' is not valid: the directory "
                       r".*afile \(from JAX_COMPILATION_CACHE_DIR\) .*\(not a directory\); "
                       r"give a writable directory or '' \(off\)"):
        compile_cache.prepare("auto")


def _run(cfg, lr=None):
    trainer = train.make_train(cfg)
    hp = None if lr is None else trainer.hparams(lr=lr)
    return jax.jit(trainer.train)(jax.random.key(7), hp)


def test_cache_serves_the_same_program_from_disk_and_never_one_for_another_config(
        tmp_path, cache_events):
    base, wider = tiny(), tiny(model__width=12)
    compile_cache.enable("")  # references without any cache
    want = {"base": _run(base), "lr": _run(base, lr=3e-3), "wider": _run(wider)}
    assert cache_events == {"hits": 0, "misses": 0}

    assert compile_cache.enable(str(tmp_path)) == str(tmp_path)
    jax.clear_caches()  # the in-memory caches: every program below goes through the disk
    assert_trees_close(_run(base), want["base"])
    assert cache_events["misses"] > 0 and any(tmp_path.iterdir())
    jax.clear_caches()
    hits = cache_events["hits"]
    # the same program read back (positive control: the disk served it) ...
    assert_trees_close(_run(base), want["base"])
    assert cache_events["hits"] > hits
    # ... a traced field (the learning rate) runs the same program on other values, and a
    # static field (the width) compiles a program of its own
    assert_trees_close(_run(base, lr=3e-3), want["lr"])
    misses = cache_events["misses"]
    assert_trees_close(_run(wider), want["wider"])
    assert cache_events["misses"] > misses
    assert not np.allclose(np.asarray(want["wider"][1]["final"]["test_rel_err"]),
                           np.asarray(want["base"][1]["final"]["test_rel_err"]))


def test_enable_keeps_every_program_also_in_a_directory_jax_was_already_given(tmp_path,
                                                                            cache_events):
    """As JAX_COMPILATION_CACHE_DIR leaves it: that directory, JAX's own 1 s threshold; enable
    on the same directory must still write a program that compiles in milliseconds."""
    jax.config.update("jax_compilation_cache_dir", str(tmp_path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    compile_cache._jax_cache.reset_cache()
    assert compile_cache.enable(str(tmp_path)) == str(tmp_path)
    jax.jit(lambda x: x * 3.25 - 0.5)(np.arange(7.0))
    assert cache_events["misses"] > 0 and any(tmp_path.iterdir())


def test_the_refusal_check_also_sees_a_program_served_by_the_cache(tmp_path, cache_events):
    """Positive control: a program read from the persistent cache (no backend compile) still
    counts as compiled in test_train's 'refused before compiling' check."""
    from test_train import _refused_before_compiling
    compile_cache.enable(str(tmp_path))  # (which keeps even this tiny program)
    f = lambda x: x * 2.75 + 1.25  # noqa: E731
    jax.jit(f)(np.arange(5.0))
    jax.clear_caches()
    hits = cache_events["hits"]
    with pytest.raises(AssertionError, match="compiled before refusing"):
        with _refused_before_compiling("field"):
            jax.jit(f)(np.arange(5.0))
            raise ValueError("field")
    assert cache_events["hits"] > hits  # it was the cache that served it


@pytest.mark.skipif(compile_cache.memory_mappings() is None,
                    reason="no /proc/self/maps or vm.max_map_count here")
def test_programs_are_dropped_past_the_threshold_and_not_again_without_growth():
    """release_if_crowded leaves compiled programs alone below its threshold, drops them above
    it and gives their mappings back, and does not drop again until the count has grown by
    min_growth: fails if it never clears, clears always, keeps the mappings, or thrashes."""
    held, limit = compile_cache.memory_mappings()
    assert 0 < held < limit
    compile_cache.release_if_crowded(above=0, min_growth=0)  # what earlier tests left
    empty = compile_cache.memory_mappings()[0]
    fns = [jax.jit(lambda x, k=k: x * k + 1.5) for k in range(60)]  # 60 programs
    for f in fns:
        f(np.arange(3.0))
    loaded = compile_cache.memory_mappings()[0]
    assert loaded > empty + 60  # about 3 mappings per program
    assert not compile_cache.release_if_crowded(above=limit, min_growth=0)
    assert all(f._cache_size() == 1 for f in fns)
    # grown by less than an eighth of the limit since the last release: kept
    assert not compile_cache.release_if_crowded(above=0)
    assert all(f._cache_size() == 1 for f in fns)
    assert compile_cache.release_if_crowded(above=0, min_growth=60)
    assert all(f._cache_size() == 0 for f in fns)
    assert compile_cache.memory_mappings()[0] < empty + (loaded - empty) // 2


@pytest.mark.parametrize("field, value", [("above", -1), ("above", 2.5), ("above", True),
                                          ("above", "10000"), ("min_growth", -3),
                                          ("min_growth", float("nan"))])
def test_a_bad_mapping_threshold_is_refused_by_name(field, value):
    with pytest.raises(ValueError, match=f"{field}=.* is not valid: it must be an integer >= 0"):
        compile_cache.release_if_crowded(**{field: value})


def test_a_compiler_option_this_xla_does_not_know_is_dropped_and_a_bad_value_refused():
    """XLA refuses any compile that names an option it does not know (and retires options
    as it evolves): the chain's options keep only the known ones, while a known option with
    a bad value still raises rather than being dropped silently."""
    from rgsym.cumulants.propagate import _known_option, _known_options
    known = {"xla_backend_optimization_level": 0}
    assert _known_options({**known, "xla_cpu_no_such_option_at_all": True}) == known
    with pytest.raises(Exception, match="xla_backend_optimization_level"):
        _known_option("xla_backend_optimization_level", "not a level")
