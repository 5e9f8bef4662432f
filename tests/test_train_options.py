"""Training options inside ``train``: each run equals a plain reference loop written with
optax's canonical optimisers (optax.adamw, optax.sgd(momentum=...), a schedule passed as the
learning rate, optax.clip_by_global_norm), the RG target from an explicit block-sum loop
and the soft-symmetry penalty added to the loss; vmapped hyper-parameters (alpha,
symmetry_strength, lr) equal runs at each value; divergence: a transient NaN batch freezes
the seed for good, and a float32 overflow is caught where float64 does not overflow."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from rgsym import data, distributions, sweep, train
from tests.reference import block_sum
from tests.test_train import tiny

STEPS = 12


def _reference_params(trainer, key, tx, alpha=None, strength=None, init_scale=None):
    """``STEPS`` steps of a plain optax loop on the batches ``train`` draws for ``key``."""
    cfg, model = trainer.config, trainer.model
    dtype = jnp.dtype(cfg.dtype)
    shape = (cfg.lattice.sites,) * cfg.lattice.dim
    dist = distributions.get(cfg.data.family, standardised=True)
    alpha = cfg.model.alpha if alpha is None else alpha
    strength = cfg.model.symmetry_strength if strength is None else strength
    k_init, k_data = jax.random.split(key)
    params = model.init(k_init, jnp.zeros((1,) + shape, dtype),
                        init_scale=cfg.model.init_scale if init_scale is None else init_scale)
    state = tx.init(params)

    @jax.jit
    def step(params, state, x, y):
        def loss(p):
            mse = jnp.mean((model.apply(p, x, alpha=alpha) - y) ** 2)
            return mse + strength * _squared_distance(cfg.model.soft_symmetry, p)
        updates, state = tx.update(jax.grad(loss)(params), state, params)
        return optax.apply_updates(params, updates), state

    for t in range(STEPS):
        with jax.threefry_partitionable(False):   # the training stream (data.sample_pairs)
            x = dist.sample(jax.random.fold_in(k_data, t), (cfg.data.batch,) + shape, dtype)
        y = jnp.asarray(block_sum(np.asarray(x, np.float64), cfg.lattice.b, cfg.lattice.dim),
                        dtype)
        params, state = step(params, state, x, y)
    return params


def _squared_distance(symmetry, params):
    """Squared distance of a plain one-hidden-layer MLP's raw parameters (W [H, N], c [H],
    V [O, H], d [O]) from a symmetric subspace, as |theta - P theta|^2 with P the average
    over the symmetry group, written out from the group action (not the library's code):
    tied_hidden, the hidden-unit permutations: P replaces rows of W, entries of c and
    columns of V by their means; odd, {1, g} with g = (-S W, S c, -V S, -d), S the mirror
    pairing of units a and a + H/2: P = (1 + g) / 2."""
    if symmetry is None:
        return 0.0
    (w, c), (v, d) = [(params["params"][f"layer_{i}"]["kernel"],
                       params["params"][f"layer_{i}"]["bias"]) for i in range(2)]
    if symmetry == "tied_hidden":
        return (jnp.sum((w - w.mean(0)) ** 2) + jnp.sum((c - c.mean()) ** 2)
                + jnp.sum((v - v.mean(1, keepdims=True)) ** 2))
    if symmetry == "odd":
        h = w.shape[0]
        s = jnp.roll(jnp.eye(h, dtype=w.dtype), h // 2, axis=0)
        theta, g = (w, c, v, d), (-s @ w, s @ c, -v @ s, -d)
        return sum(jnp.sum(((a - b) / 2) ** 2) for a, b in zip(theta, g))
    raise NotImplementedError(symmetry)


def _config(**overrides):
    return tiny(optim__steps=STEPS, eval__every=STEPS, model__activation="quadratic",
                **overrides)


LR = 2e-2
OPTIONS = {
    "adam": ({}, optax.adam(LR)),
    "adamw": (dict(optim__optimizer="adamw", optim__weight_decay=2.0),
              optax.adamw(LR, weight_decay=2.0)),
    "sgd_momentum": (dict(optim__optimizer="sgd", optim__momentum=0.9),
                     optax.sgd(LR, momentum=0.9)),
    "warmup_cosine": (dict(optim__schedule="warmup_cosine", optim__warmup_steps=5),
                      optax.adam(optax.warmup_cosine_decay_schedule(0.0, LR, 5, STEPS))),
    "grad_clip": (dict(optim__grad_clip=0.05),
                  optax.chain(optax.clip_by_global_norm(0.05), optax.adam(LR))),
    "soft_symmetry": (dict(model__soft_symmetry="tied_hidden", model__symmetry_strength=0.5),
                      optax.adam(LR)),
    "float32": (dict(dtype="float32"), optax.adam(LR)),
}


def _max_rel_diff(a, b):
    return max(float(np.max(np.abs(np.asarray(x, float) - np.asarray(y, float))
                            / (np.abs(np.asarray(y, float)) + 1e-3)))
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.mark.parametrize("name", list(OPTIONS))
def test_train_equals_a_reference_optax_loop(name):
    overrides, tx = OPTIONS[name]
    trainer = train.make_train(_config(optim__lr=LR, **overrides))
    key = jax.random.key(3)
    params, m = jax.jit(trainer.train)(key)
    ref = _reference_params(trainer, key, tx)
    f32 = name == "float32"
    # A dozen Adam steps amplify rounding (lr * schedule vs a scheduled lr) near g = 0:
    # ~1e-7 in float64, ~1e-6 in float32; a wrong option moves parameters by > 1e-2.
    assert _max_rel_diff(params, ref) < (1e-4 if f32 else 1e-6), name
    if name not in ("adam", "float32"):   # the option changed the run (not a no-op)
        plain = _reference_params(trainer, key, optax.adam(LR), strength=0.0)
        assert _max_rel_diff(params, plain) > 1e-4, name
    if f32:
        assert all(a.dtype == jnp.float32 for a in jax.tree.leaves(params))
        assert np.isfinite(m["final"]["test_rel_err"])


def test_vmapped_alpha_strength_and_lr_equal_reference_runs_at_each_value():
    cfg = _config(model__soft_symmetry="odd", model__symmetry_strength=0.1, model__width=4)
    trainer = train.make_train(cfg)
    hp = trainer.hparams(alpha=np.array([0.1, -0.6]), symmetry_strength=np.array([0.0, 3.0]),
                         lr=np.array([1e-2, 3e-2]))
    key = jax.random.key(5)
    params, m = jax.jit(jax.vmap(trainer.train, (None, 0)))(key, hp)
    for i in range(2):
        ref = _reference_params(trainer, key, optax.adam(float(hp.lr[i])),
                                alpha=float(hp.alpha[i]), strength=float(hp.symmetry_strength[i]))
        assert _max_rel_diff(jax.tree.map(lambda a: a[i], params), ref) < 1e-6, i
    # the penalty pulls towards the odd subspace: the strong-penalty run ends nearer to it
    odd = np.asarray(m["final"]["sym/oddness_residual"])
    assert odd[1] < 0.5 * odd[0], odd


def test_a_transient_nan_batch_freezes_the_seed_for_good(monkeypatch):
    """One poisoned batch (NaN targets, about one step in five) marks the seed diverged at
    the first one and freezes it: later finite batches must not move it again."""
    real = data.sample_pairs

    def poisoned(key, *args, **kwargs):
        x, y = real(key, *args, **kwargs)
        bad = jax.random.uniform(jax.random.fold_in(key, 99)) < 0.2
        return x, jnp.where(bad, jnp.nan, y)

    monkeypatch.setattr(data, "sample_pairs", poisoned)
    cfg = tiny(optim__steps=20, eval__every=1, eval__batch=16, eval__curve_batch=16)
    _, m = jax.jit(train.make_train(cfg).train)(jax.random.key(1))
    loss = np.asarray(m["curves"]["train_loss"])            # per step (every = 1)
    bad = np.flatnonzero(np.isnan(loss))
    assert len(bad) and bad[0] > 0, loss                      # poisoned, not from the start
    first = bad[0]
    assert np.isfinite(loss[first + 1:]).any(), "no finite batch after the NaN: not transient"
    assert bool(m["diverged"]) and int(m["diverged_step"]) == first
    curve = np.asarray(m["curves"]["test_rel_err"])
    assert len(np.unique(curve[:first])) > 1                 # it trained before
    np.testing.assert_array_equal(curve[first - 1:], curve[first - 1])   # frozen after


def test_float32_overflow_is_caught_where_float64_does_not_overflow():
    """SGD at lr = 1e25: the first update is finite in float32 (weights ~1e25), the next
    loss (~1e50) overflows float32 only.  The seed is marked at step 1, its parameters stay
    finite, and the other seeds equal a clean run."""
    seeds = np.array([0, 1, 2])
    lr = np.array([1e-2, 1e25, 1e-2])
    sweeps = {d: sweep.make_sweep(tiny(dtype=d, optim__optimizer="sgd"))
              for d in ("float32", "float64")}
    out = {d: sw.run_chunk(seeds, sw.trainer.hparams(lr=lr)) for d, sw in sweeps.items()}
    params, m = out["float32"]
    assert m["diverged"].tolist() == [False, True, False] and m["diverged_step"][1] == 1
    assert all(np.isfinite(leaf[1]).all() for leaf in jax.tree.leaves(params))
    _, m64 = out["float64"]
    assert m64["diverged_step"][1] != 1          # positive control: float64 holds 1e50
    sw = sweeps["float32"]
    clean_params, _ = sw.run_chunk(seeds, sw.trainer.hparams(lr=np.full(3, 1e-2)))
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(clean_params)):
        np.testing.assert_array_equal(np.asarray(a)[[0, 2]], np.asarray(b)[[0, 2]])
