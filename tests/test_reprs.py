"""Records print short: dtype[shape] for arrays, one line per state of a propagation."""
import jax
import jax.numpy as jnp
import numpy as np

from rgsym import cumulants, models
from rgsym import distributions as D
from rgsym.reprs import array_summary, short_repr


def test_propagation_and_monte_carlo_print_shapes_not_values():
    net = models.build(dict(kind="mlp", symmetry="none", activation="quadratic", width=16,
                            depth=1, sites=4, dtype="float64"))
    params = net.init(jax.random.key(1), jnp.zeros((4,)))
    uniform = D.get("uniform", standardised=True)
    prop = cumulants.propagate(net, params, uniform, order=4)
    lines = repr(prop).splitlines()
    assert lines[0] == f"Propagation({len(prop.states)} states)" and len(lines) == 1 + len(
        prop.states)
    assert "exact: MarginalCumulants(kappa=float64[16,4])" in repr(prop)   # the hidden layer
    assert "exact: DenseCumulants" in repr(prop)
    joint = cumulants.propagate(net, params, uniform, order=4, joint=True)
    assert "float64[16,16,16,16]" in repr(joint)
    mc = cumulants.monte_carlo(net, params, uniform, jax.random.key(2), n_samples=4096,
                               batch=1024)
    text = repr(mc)
    assert "\n" not in text and len(text) < 500, text
    assert text.startswith("MonteCarlo(layers=(KStats(value=float64[4,4]")
    assert f"n={int(mc.n)}" in text


def test_short_repr_of_nested_records_and_scalars():
    assert array_summary(np.zeros((2, 3), np.float32)) == "float32[2,3]"
    assert array_summary(np.int32(7)) == "7" and array_summary(np.float64(0.123456)) == "0.1235"
    rec = cumulants.KStats(value=np.ones((3, 4)), se=np.ones((3, 4)), n=np.asarray(10))
    assert short_repr({"a": (rec,)}) == (
        "{'a': (KStats(value=float64[3,4], se=float64[3,4], n=10),)}")
