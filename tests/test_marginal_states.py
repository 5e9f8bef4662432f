"""Hidden layers kept as per-unit marginals (the default) equal the diagonals of the joint
tensors that ``joint=True`` builds, in every mode, through the closure and the GNN chain."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rgsym import distributions
from rgsym.cumulants import MarginalCumulants, propagate, to_dense
from rgsym.models import build

CASES = [  # (model fields, mode, order, internal_order)
    (dict(kind="mlp", symmetry="none", activation="quadratic", depth=1), "exact", 4, None),
    (dict(kind="mlp", symmetry="none", activation="cubic", depth=2), "exact", 3, None),
    (dict(kind="mlp", symmetry="none", activation="quadratic", depth=2), "exact", 2, 4),
    (dict(kind="mlp", symmetry="none", activation="tanh", depth=2), "quadratic", 4, None),
    (dict(kind="mlp", symmetry="none", activation="tanh", depth=1), "gaussian_closure", 4,
     None),
    (dict(kind="mlp", symmetry="none", activation="relu", depth=1), "gaussian_closure", 2,
     None),
    (dict(kind="gnn", symmetry="directional", activation="tanh", depth=2), "quadratic", 4,
     None),
]


def _random_params(model, key):
    params = model.init(jax.random.key(key), jnp.zeros(model.spec.lattice_shape))
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(key + 1), len(leaves))
    return jax.tree.unflatten(tree, [a + 0.3 * jax.random.normal(k, a.shape, a.dtype)
                                     for a, k in zip(leaves, keys)])


@pytest.mark.parametrize("fields,mode,order,internal", CASES,
                         ids=[f"{c[0]['kind']}-{c[0]['activation']}-d{c[0]['depth']}-{c[1]}"
                              for c in CASES])
def test_marginal_states_equal_joint_diagonals(fields, mode, order, internal):
    model = build(dict(fields, width=3, sites=4, b=2, dim=1, alpha=0.4, dtype="float64"))
    params = _random_params(model, 3)
    fam = distributions.get("exponential")
    kw = dict(order=order, mode=mode, internal_order=internal)
    fast, full = propagate(model, params, fam, **kw), propagate(model, params, fam, joint=True, **kw)
    assert fast.labels == full.labels
    assert len(fast.states) == len(full.states)
    kinds = [type(s) for s in fast.states]
    assert MarginalCumulants in kinds          # the hidden activations are marginal-only
    assert not isinstance(fast.output, MarginalCumulants)
    for layer, (a, b) in enumerate(zip(fast.marginals(), full.marginals())):
        assert a.shape == b.shape, layer
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-12, err_msg=f"layer {layer}")
    np.testing.assert_allclose(np.concatenate([t.ravel() for t in to_dense(fast.output).tensors]),
                               np.concatenate([t.ravel() for t in to_dense(full.output).tensors]),
                               rtol=1e-11, atol=1e-12)


def test_marginal_state_refuses_joint_use():
    model = build(dict(kind="mlp", symmetry="none", activation="quadratic", depth=1, width=3,
                       sites=4, b=2, dim=1, alpha=0.4, dtype="float64"))
    params = _random_params(model, 0)
    out = propagate(model, params, distributions.get("uniform"), order=2)
    hidden = next(s for s in out.states if isinstance(s, MarginalCumulants))
    with pytest.raises(ValueError, match="joint=True"):
        to_dense(hidden)
    with pytest.raises(ValueError, match="exceeds"):
        out.marginals(3)


def test_marginals_of_a_batched_propagation_keep_the_seed_axis():
    """propagate_many stacks every state over seeds: marginals() maps over that axis
    (it raised a shape error) and equals each seed's own propagation."""
    from rgsym.cumulants import propagate_many
    model = build(dict(kind="mlp", symmetry="none", activation="quadratic", depth=1, width=3,
                       sites=4, b=2, dim=1, alpha=0.4, dtype="float64"))
    params = [_random_params(model, k) for k in (1, 2)]
    stacked = jax.tree.map(lambda *a: jnp.stack(a), *params)
    fam = distributions.get("exponential")
    many = propagate_many(model, stacked, fam, order=3).marginals()
    for s, p in enumerate(params):
        for got, want in zip(many, propagate(model, p, fam, order=3).marginals()):
            np.testing.assert_allclose(got[s], want, rtol=1e-12, atol=1e-13)
