"""The metric registry, and the standard errors the summaries carry."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rgsym import metrics, results, train
from rgsym.cumulants.estimators import k_statistics, k_statistics_with_se
from tests.test_train import tiny

EXAMPLE_FIELDS = dict(set="laplace", s="2", n="4", j="3", name="oddness_residual")


def _example(m: metrics.Metric) -> str:
    return m.name(**{f: EXAMPLE_FIELDS[f] for f in m.fields})


def test_every_declared_metric_resolves_to_its_declaration():
    patterns = [m.pattern for m in metrics.REGISTRY]
    assert len(set(patterns)) == len(patterns)
    for m in metrics.REGISTRY:
        name = _example(m)
        assert metrics.metric_info(name) is m, name
        assert m.match(name) == {f: EXAMPLE_FIELDS[f] for f in m.fields}
        if m.se:   # its companion is declared too, with the same fields
            assert metrics.metric_info(m.se_name(name)).pattern == m.se
        if m.max_of:
            assert metrics.metric_info(metrics.Metric(m.max_of, "").name(
                **{f: EXAMPLE_FIELDS[f] for f in metrics.Metric(m.max_of, "").fields}))
    assert metrics.metric_info("rel_err/scale_0.5") is metrics.REL_ERR
    assert metrics.metric_info("cum_err/k4").se_name("cum_err/k4") == "cum_err_se/k4"
    # every name a run reports, the derived ones and the table columns are declared
    trainer = train.make_train(tiny(model__kind="gnn", model__symmetry="separate",
                                    model__activation="quadratic"))
    ev = trainer.evaluator
    finals = ev.final_names + ev.curve_names + (metrics.TRAIN_LOSS.name(),)
    for name in finals + tuple(metrics.with_derived({n: np.zeros(1) for n in finals}))[
            len(finals):] + results.SUMMARY_COLUMNS + (metrics.RG_EIG_ERR.name(),):
        metrics.metric_info(name)
    assert {"scale_rel_err_max", "flow_rel_err_max"} <= set(
        metrics.with_derived({n: np.zeros(1) for n in finals}))
    assert "cum_err_se/k4" in ev.final_names and "fixed_point_violation_se" in ev.final_names


@pytest.mark.parametrize("name", ["rel_err", "cum_err/k5", "cum_err/k4/x", "sym", "test_rel",
                                  "flow_rel_err/2", 3])
def test_unknown_metric_names_are_refused_listing_the_patterns(name):
    with pytest.raises(ValueError, match=r"is not known; known names and patterns: train_loss"
                                         r".*rel_err/<set>.*cum_err/<set>/k<n>.*sym/<name>"):
        metrics.metric_info(name)
    with pytest.raises(ValueError, match=r"takes the fields \['set'\], got \[\]"):
        metrics.REL_ERR.name()
    with pytest.raises(ValueError, match="better='best'"):
        metrics.Metric("x", "", better="best")


def _correlated_sets(key, reps, samples, sites):
    """reps independent evaluation sets [reps, samples, sites] whose sites are correlated
    within a sample (a shared part) and skewed, bounded (light tails: the spread of the
    higher k-statistics is then measured well), and a paired second output."""
    k1, k2 = jax.random.split(key)
    common = 2 * jax.random.uniform(k1, (reps, samples, 1), jnp.float64) ** 2
    own = jax.random.uniform(k2, (reps, samples, sites), jnp.float64, -1.0, 1.0)
    v = common + own
    return v, v + 0.3 * v ** 2


def _ratio_and_tolerance(k, se):
    """mean(se^2) / Var(k) over the replicates, and 4 standard errors of that ratio (from
    the replicates' own spread: the variance estimate's and the mean's)."""
    k, se2 = np.asarray(k), np.asarray(se) ** 2
    r = len(k)
    var = k.var(ddof=1)
    m4 = np.mean((k - k.mean()) ** 4)
    rel_var = math.sqrt((m4 / var ** 2 - (r - 3) / (r - 1)) / r)
    rel_mean = se2.std(ddof=1) / math.sqrt(r) / se2.mean()
    return se2.mean() / var, 4 * math.hypot(rel_var, rel_mean)


def test_the_kstat_standard_error_matches_the_spread_over_independent_evaluation_sets():
    """Monte Carlo, float64, fixed key: 4000 independent evaluation sets of 256 samples x 4
    correlated sites.  The mean squared SE of each pooled k-statistic (and of a paired
    difference of two outputs' k-statistics, as fixed_point/k<n>) equals the variance of the
    k-statistic over the sets, within 4 of the ratio's own standard errors.  Positive
    control: the i.i.d. SE of the pooled values (ignoring the correlation) fails it."""
    v, u = _correlated_sets(jax.random.key(7), 4000, 256, 4)
    pooled = lambda a: a.reshape(len(a), -1)  # noqa: E731
    kv, ku = k_statistics(pooled(v), axis=1), k_statistics(pooled(u), axis=1)
    cv, cu = metrics.sample_contributions(v), metrics.sample_contributions(u)
    se_v, se_diff = metrics.contribution_se(cv), metrics.contribution_se(cu - cv)
    naive = k_statistics_with_se(pooled(v), axis=1).se
    for p in range(4):
        ratio, tol = _ratio_and_tolerance(kv[:, p], se_v[:, p])
        assert abs(ratio - 1) < tol, (p + 1, ratio, tol)
        assert tol < 0.25, tol   # the check has power
        ratio, tol = _ratio_and_tolerance(ku[:, p] - kv[:, p], se_diff[:, p])
        assert abs(ratio - 1) < tol, ("paired", p + 1, ratio, tol)
    ratio, tol = _ratio_and_tolerance(kv[:, 1], naive[:, 1])
    assert abs(ratio - 1) > 2 * tol, ratio


def test_with_one_value_per_sample_the_se_is_the_iid_influence_function_se():
    x = jax.random.gamma(jax.random.key(3), 2.0, (3, 200), jnp.float64)
    want = k_statistics_with_se(x, axis=1).se
    got = metrics.contribution_se(metrics.sample_contributions(x[..., None]))
    np.testing.assert_allclose(got, want, rtol=1e-10)


def test_summaries_carry_seed_and_evaluation_set_standard_errors_and_tables_show_them():
    cum = np.array([1e-3, 2e-3, 4e-3, 3e-3])
    final = {"cum_err/k4": cum, "cum_err_se/k4": np.array([5e-4, 6e-4, 7e-4, 8e-4]),
             "test_rel_err": np.array([0.1, 0.2, 0.3, np.nan]), "undeclared": cum}
    s = metrics.summarise(final, np.array([False, False, False, False]))
    boot = np.median(cum[np.random.default_rng(0).integers(0, 4, (1000, 4))], axis=1)
    a = s["cum_err/k4"]
    assert a["median_se"] == pytest.approx(boot.std(ddof=1), rel=1e-12)
    assert a["mean_se"] == pytest.approx(cum.std(ddof=1) / 2, rel=1e-12)
    assert a["eval_se"] == pytest.approx(6.5e-4)
    assert a["se"] == pytest.approx(math.hypot(a["median_se"], 6.5e-4))
    assert "eval_se" not in s["test_rel_err"] and s["test_rel_err"]["se"] == s[
        "test_rel_err"]["median_se"]
    assert "se" not in s["undeclared"]
    assert math.isnan(metrics.aggregate([1.0])["median_se"])

    table = results.summary_table({"v": s})
    row = table.splitlines()[2]
    assert f"{a['median']:.2e} ± {a['se']:.1e} [" in row
    assert f"± {s['test_rel_err']['se']:.1e}" in row
    legend = results.summary_legend()
    assert "cum_err/k4" in legend and "fixed_point_violation" in legend
    assert max(map(len, legend.splitlines())) <= 100
    csv = results._summary_csv({"v": s}).splitlines()
    header = csv[0].split(",")
    assert {"median_se", "mean_se", "eval_se", "se"} <= set(header)
    row = dict(zip(header, next(r for r in csv if ",cum_err/k4," in r).split(",")))
    assert float(row["eval_se"]) == pytest.approx(6.5e-4)
    # a summary written before SEs were recorded is shown without one
    old = {k: v for k, v in a.items() if "se" not in k}
    assert "±" not in results.summary_table({"v": {**s, "cum_err/k4": old}}, ("cum_err/k4",))
