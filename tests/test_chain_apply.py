"""The layer chain that propagation and the Monte Carlo twin run equals ``model.apply``
over the option grid: every MLP symmetry and GNN symmetry x pooling x boundary x
block_edges, in 1-D and 2-D, with b = 2 and 3, at alpha values away from the default
(a traced alpha too, for the activations alpha enters), every activation, and iterated
(steps = 2) where the model is iterable.  The chain is ``propagate.model_chain`` (what
``propagate``, ``predict_mse`` and ``monte_carlo`` use), composed in float64."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rgsym import models
from rgsym.cumulants.propagate import model_chain
from rgsym.models import compose
from tests.test_paths_2d_b3 import random_params

ACTS = models.ACTIVATIONS
ALPHAS = (None, -0.7, 1.3)


def _cases():
    """Every option value at least once, each in both dims or with b = 3 somewhere."""
    cases = []
    # MLP: every symmetry, dims alternating, b = 3 every third case.
    for i, sym in enumerate(models.MLP_SYMMETRIES):
        dim, b = 1 + i % 2, 3 if i % 3 == 2 else 2
        cases.append(dict(kind="mlp", symmetry=sym, dim=dim, b=b,
                          sites=b * (2 if dim == 1 else 1) * (b if sym == "block_local" else 1),
                          activation=ACTS[i], depth=2))
    # GNN: every symmetry, pooling, boundary and block_edges value, each in 1-D and 2-D.
    options = [("shared", "sum", "periodic", False, 1, 2),
               ("separate", "mean", "open", True, 2, 2),
               ("edge_typed", "learned", "open", False, 2, 3),
               ("directional", "learned", "periodic", True, 1, 3),
               ("directional", "sum", "open", True, 2, 2),
               ("edge_typed", "mean", "periodic", True, 1, 2)]
    for i, (sym, pooling, boundary, block_edges, dim, b) in enumerate(options):
        cases.append(dict(kind="gnn", symmetry=sym, pooling=pooling, boundary=boundary,
                          block_edges=block_edges, dim=dim, b=b, sites=b * b,
                          activation=ACTS[(i + 7) % len(ACTS)], depth=2, use_bias=i != 5))
    return cases


CASES = _cases()


def _ids(case):
    keys = ("kind", "symmetry", "pooling", "boundary", "block_edges", "dim", "b",
            "activation")
    return "-".join(str(case[k]) for k in keys if k in case)


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_model_chain_equals_apply(case):
    model = models.build(dict(case, width=4, alpha=0.2, dtype="float64"))
    shape = model.spec.lattice_shape
    params = random_params(model, key=0, scale=0.3)
    x = jax.random.normal(jax.random.key(2), (3,) + shape, jnp.float64)
    iterable = model.describe()["iterable"]
    for alpha, steps in zip(ALPHAS, (1, 2, 1) if iterable else (1, 1, 1)):
        y = x
        for _ in range(steps):
            y = model.apply(params, y, alpha=alpha)
        chain = model_chain(model, params, shape, alpha, steps)
        np.testing.assert_allclose(compose(chain, x.reshape(3, -1)), y.reshape(3, -1),
                                   rtol=1e-11, atol=1e-12, err_msg=f"alpha={alpha} steps={steps}")
    if case["activation"] not in ("quadratic", "cubic"):
        return   # alpha only enters these two
    # a traced alpha (vmapped) gives the same chain as the concrete one
    alphas = jnp.array([0.25, -1.1])
    traced = jax.vmap(lambda a: compose(model_chain(model, params, shape, a), x.reshape(3, -1)))
    direct = jax.vmap(lambda a: model.apply(params, x, alpha=a).reshape(3, -1))
    np.testing.assert_allclose(traced(alphas), direct(alphas), rtol=1e-11, atol=1e-12)
