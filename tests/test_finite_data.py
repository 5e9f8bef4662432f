"""A finite training set (``data.train_size`` = n > 0): n pairs drawn once per seed, each
step a batch of their rows; 0 keeps fresh pairs every step, bit for bit."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from rgsym import data, distributions, sweep, train
from tests.test_train import _refused_before_compiling, tiny


def test_train_size_0_is_the_default_bit_for_bit():
    # (tests/test_golden.py pins the default's numbers to those before the option existed)
    explicit = tiny()
    explicit.data.train_size = 0
    assert tiny().data.train_size == 0
    jax.tree.map(np.testing.assert_array_equal, sweep.sweep(tiny()), sweep.sweep(explicit))


def test_a_network_over_fits_a_set_of_one_batch():
    # 4 pairs of 8 sites do not even fix a linear map: the net fits them and misses the rest
    cfg = tiny(num_seeds=2, data__batch=4, data__train_size=4, optim__steps=200,
               eval__every=100)
    m = sweep.sweep(cfg)[1]
    assert not m["diverged"].any()
    ratio = m["final"]["test_mse"] / m["final"]["train_loss"]
    assert (ratio > 10).all(), ratio


@pytest.mark.parametrize("n, batch", [(10, 3), (12, 4), (5, 5)])
def test_epoch_rows_are_distinct_rows_of_the_set_and_each_epoch_reshuffles(n, batch):
    key, per_epoch = jax.random.key(3), n // batch
    rows = np.asarray(data.epoch_rows(key, n, batch, 0, 4 * per_epoch))
    assert rows.shape == (4 * per_epoch, batch)
    assert ((rows >= 0) & (rows < n)).all()
    epochs = rows.reshape(4, per_epoch * batch)
    assert all(len(set(e)) == per_epoch * batch for e in epochs)  # no row twice an epoch
    assert len({tuple(e) for e in epochs}) > 1                    # a new order each epoch
    # a window from any (traced) start is the same stream: the trainer asks per period
    window = jax.jit(lambda s: data.epoch_rows(key, n, batch, s, 3))(5)
    np.testing.assert_array_equal(window, np.asarray(data.epoch_rows(key, n, batch, 0, 8))[5:])


def _initial_set_loss(cfg, seed):
    """The initial network's MSE on the seed's whole set, recomputed outside the trainer
    (the set drawn from the seed's key as make_train draws it)."""
    trainer, lat = train.make_train(cfg), cfg.lattice
    k_init, k_data = jax.random.split(jax.random.key(seed))
    x, y = data.sample_pairs(jax.random.split(jax.random.fold_in(k_data, 2 ** 32 - 1))[0],
                             distributions.get(cfg.data.family, standardised=True),
                             cfg.data.train_size, lat.sites, lat.b, lat.dim, dtype=cfg.dtype)
    hp = trainer.hparams()
    params = trainer.model.init(k_init, jnp.zeros((1, lat.sites), cfg.dtype),
                                init_scale=hp.init_scale)
    return x, float(jnp.mean((trainer.model.apply(params, x, alpha=hp.alpha) - y) ** 2))


def test_each_vmapped_seed_sees_its_own_set_once_an_epoch():
    # one epoch = 2 steps of 4 of the 8 rows; lr 1e-30 leaves the initial network in place,
    # so the epoch's mean training loss is the initial network's loss on the whole set
    cfg = tiny(data__batch=4, data__train_size=8, optim__steps=2, eval__every=2,
               optim__lr=1e-30)
    loss = sweep.sweep(cfg, seeds=[0, 1, 2])[1]["curves"]["train_loss"][:, 0]
    sets, want = zip(*(_initial_set_loss(cfg, s) for s in (0, 1, 2)))
    np.testing.assert_allclose(loss, want, rtol=1e-12)  # (rows in another order)
    assert not np.allclose(sets[0], sets[1]) and not np.allclose(sets[1], sets[2])


def test_a_finite_data_run_is_a_pure_function_of_its_key():
    cfg = tiny(seed=5, data__train_size=48)           # batch 32: a part of the set a step
    params, m = sweep.sweep(cfg)                       # seeds 5, 6, 7 vmapped
    single = jax.jit(train.make_train(cfg).train)
    p1, m1 = single(jax.random.key(6))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a[1], b, rtol=1e-9, atol=1e-12),
                 (params, m), (p1, m1))
    jax.tree.map(np.testing.assert_array_equal, (p1, m1), single(jax.random.key(6)))
    assert len(set(m["final"]["test_mse"])) == 3


@pytest.mark.parametrize("value", [-1, 1.5, 1, 31, True])
def test_bad_train_sizes_are_refused_by_name_before_anything_compiles(value):
    d = tiny().to_dict()                               # batch 32
    d["data"]["train_size"] = value                    # (a float gets past ConfigDict so)
    with _refused_before_compiling(r"data\.train_size'=.*(integer >= 0|data\.batch=32)"):
        sweep.sweep(ml_collections.ConfigDict(d))
