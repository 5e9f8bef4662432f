"""The training engine: a whole run is one pure function of a PRNG key.

    trainer = make_train(cfg)                      # resolves, builds model + optimiser
    params, metrics = trainer.train(key)           # init, scanned steps, periodic + final eval
    jax.jit(jax.vmap(trainer.train))(keys)         # a seed sweep: params/metrics gain [S, ...]

``rgsym.sweep.sweep(cfg, seeds)`` runs the same in memory-bounded chunks, with the seed axis
sharded over all devices.

Every loop is a ``lax.scan`` and the training batches are sampled inside the scanned step
from the seed's key (PureJaxRL style), so nothing per seed or per step runs in Python; with
``data.train_size`` = n > 0 the seed's n pairs are drawn once, in the graph, before the scan,
and each step takes a batch of their rows.
Vectorisable hyper-parameters (:class:`HParams`: learning rate, activation alpha, init scale,
symmetry-penalty strength) are traced arguments, so they can be vmapped as well.

A seed whose loss, gradients or learning rate go non-finite is frozen at its last
parameters (its gradients and learning rate are set to zero by ``jnp.where``, so the other
seeds of a vmapped batch are unaffected) and its metrics carry ``diverged`` = True and
``diverged_step``.  Parameters never become non-finite: an element that a finite update
would overflow keeps its old value.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Protocol

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from rgsym import data, distributions, models
from rgsym import config as config_lib
from rgsym import metrics as metrics_lib
from rgsym.config import RunSpec

__all__ = ["HParams", "TrainFn", "Trainer", "make_train"]

# ------------------------------------------------------------------------------------------
# The run as a pure function.

class HParams(NamedTuple):
    """Vectorisable hyper-parameters: scalars (or [S] arrays under vmap)."""
    lr: Any
    alpha: Any
    init_scale: Any
    symmetry_strength: Any


class TrainFn(Protocol):
    def __call__(self, key: jax.Array, hparams: HParams | None = None,
                 eval_data: Any = None) -> tuple[models.Params, dict]:
        """One whole run, a pure function of ``key`` (consumed): trained parameters and
        metrics (see :class:`Trainer`); vmap it over keys [S] for a seed sweep."""


class Trainer(NamedTuple):
    """What :func:`make_train` returns.

    train: ``(key, hparams=None, eval_data=None) -> (params, metrics)``; consumes ``key``;
      ``eval_data`` defaults to ``evaluator.fixed_data()``.  ``metrics`` is
      ``{'curves': {name: [E]}, 'final': {name: []}, 'diverged': [], 'diverged_step': []}``
      with E = steps // eval.every evaluation points (at ``eval_steps``).
    hparams: ``(**overrides) -> HParams`` with config defaults, broadcast to a common shape.
    model: the ``rgsym.models.Model`` trained; evaluator: its ``metrics.Evaluator``.
    config: the :class:`rgsym.config.RunSpec` the trainer was built from.
    eval_steps: [E] ints, the steps after which the curves are evaluated.
    train_packed: ``train`` with the metrics as vectors, ``{'curves': [E, Mc], 'final':
      [Mf], 'diverged_step': []}`` (what a sweep compiles: a named scalar taken out of an
      array in the program is one more kernel to compile).
    unpack: ``packed metrics [..., E, Mc] / [..., Mf] -> metrics`` as ``train`` returns
      them, with any leading (seed) axes; numpy on the host or traced.
    """
    train: TrainFn
    hparams: Callable[..., HParams]
    model: models.Model
    evaluator: metrics_lib.Evaluator
    config: RunSpec
    eval_steps: np.ndarray
    train_packed: TrainFn
    unpack: Callable[[dict], dict]

    def __call__(self, key: jax.Array, hparams: HParams | None = None,
                 eval_data: Any = None) -> tuple[models.Params, dict]:
        """``self.train``: a Trainer is the pure function of a key it wraps, so
        ``jax.jit(jax.vmap(make_train(cfg)))(keys)`` is a seed sweep."""
        return self.train(key, hparams, eval_data)


def _schedule(o: config_lib.OptimSpec) -> optax.Schedule:
    """A multiplier of the learning rate (the rate itself is a traced hyper-parameter)."""
    if o.schedule == "constant":
        return optax.constant_schedule(1.0)
    if o.schedule == "cosine":
        return optax.cosine_decay_schedule(1.0, o.steps)
    return optax.warmup_cosine_decay_schedule(0.0, 1.0, o.warmup_steps, o.steps)


def _optimizer(o: config_lib.OptimSpec) -> optax.GradientTransformation:
    """Direction of descent with a unit learning rate: the update is ``-lr * direction``."""
    parts = [optax.clip_by_global_norm(o.grad_clip)] if o.grad_clip > 0 else []
    if o.optimizer in ("adam", "adamw"):
        parts.append(optax.scale_by_adam())
        if o.optimizer == "adamw":
            parts.append(optax.add_decayed_weights(o.weight_decay))
    elif o.momentum > 0:
        parts.append(optax.trace(o.momentum))
    parts.append(optax.scale_by_schedule(_schedule(o)))
    return optax.chain(*parts)


def _all_finite(tree) -> jax.Array:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


def _batches(spec: RunSpec, dist, k_data, dtype):
    """The training batches of a run from its data key: ``(step_inputs, batch_of)``, where
    ``step_inputs(ts)`` is the scan input of a period's steps ``ts`` and ``batch_of(input)``
    a step's ``(t, x, y)``.  Traced: the finite set is drawn where this is called."""
    lat, n, batch = spec.lattice, spec.data.train_size, spec.data.batch
    if not n:  # unlimited data: fresh pairs every step
        return lambda ts: ts, lambda t: (t, *data.sample_pairs(
            jax.random.fold_in(k_data, t), dist, batch, lat.sites, lat.b, lat.dim, dtype=dtype))
    # A key that no step's fold_in(k_data, t) makes (under JAX's default threefry split(k)[i]
    # is fold_in(k, i)): the set is independent of the batches of an unlimited run.
    k_set, k_rows = jax.random.split(jax.random.fold_in(k_data, 2 ** 32 - 1))
    xs, ys = data.sample_pairs(k_set, dist, n, lat.sites, lat.b, lat.dim, dtype=dtype)
    # A period's rows at once, one shuffle an epoch: choice(replace=False) would sort all n
    # rows every step (48x slower at n = 65536 on a CPU).
    every = spec.eval.every
    return (lambda ts: (ts, data.epoch_rows(k_rows, n, batch, ts[0], every)),
            lambda inputs: (inputs[0], xs[inputs[1]], ys[inputs[1]]))


def make_train(cfg: RunSpec | ml_collections.ConfigDict) -> Trainer:
    """Builds the pure training function of one run.

    Args:
      cfg: a :class:`rgsym.config.RunSpec`, or a run config of one variant, which is
        resolved (validated) here, once.

    Returns:
      The :class:`Trainer`; ``trainer.train(key)`` gives ``(params, metrics)`` with the
      model's parameter pytree and the metrics described there ([E] curves, [] finals).

    Raises:
      ValueError: from ``rgsym.config.resolve``, naming the field, before anything is
        traced; a config of several variants names ``rgsym.config.variant_configs``.

    Example:
      >>> import jax
      >>> from rgsym import config, train
      >>> c = config.base_config()
      >>> c.lattice.sites, c.model.width, c.model.depth = 4, 4, 1
      >>> c.optim.steps, c.eval.every, c.data.batch = 20, 10, 16
      >>> c.eval.batch, c.eval.curve_batch, c.eval.families = 64, 16, ("gaussian",)
      >>> trainer = train.make_train(c)
      >>> params, metrics = trainer.train(jax.random.key(0))
      >>> trainer.eval_steps.tolist(), metrics["curves"]["test_mse"].shape
      ([10, 20], (2,))
      >>> bool(metrics["diverged"]), params["params"]["layer_0"]["kernel"].shape
      (False, (4, 4))
    """
    spec = config_lib.resolve(cfg)
    dtype = jnp.dtype(spec.dtype)
    model = models.build(spec.model)
    lat, o = spec.lattice, spec.optim
    dist = distributions.get(spec.data.family, standardised=True)
    tx = _optimizer(o)
    evaluator = metrics_lib.make_evaluator(spec, model)
    every = spec.eval.every
    n_evals = o.steps // every

    def make_hparams(**overrides) -> HParams:
        d = dict(lr=o.lr, alpha=spec.model.alpha, init_scale=spec.model.init_scale,
                 symmetry_strength=spec.model.symmetry_strength)
        unknown = sorted(overrides.keys() - d.keys())
        if unknown:
            raise ValueError(f"hparams got {unknown[0]}={overrides[unknown[0]]!r}: not a "
                             f"vectorisable hyper-parameter; valid: {', '.join(HParams._fields)}")
        d.update(overrides)
        vals = [jnp.asarray(v, dtype) for v in d.values()]
        shape = jnp.broadcast_shapes(*(v.shape for v in vals))
        return HParams(*(jnp.broadcast_to(v, shape) for v in vals))

    # Curve vector: the evaluator's curve metrics (symmetry diagnostics last), then the
    # training loss; the final vector takes both from the last curve point (same params).
    curve_names = evaluator.curve_names + (metrics_lib.TRAIN_LOSS.name(),)
    first_sym = min((i for i, n in enumerate(curve_names) if metrics_lib.SYM.matches(n)),
                    default=len(curve_names) - 1)
    final_names = evaluator.final_names + curve_names[first_sym:]

    def unpack(packed):
        step = packed["diverged_step"]
        return dict(curves=metrics_lib.unpack(curve_names, packed["curves"]),
                    final=metrics_lib.unpack(final_names, packed["final"]),
                    diverged=step >= 0, diverged_step=step)

    def train(key: jax.Array, hparams: HParams | None = None, eval_data=None):
        """One run; consumes ``key``.  ``eval_data`` defaults to the evaluator's fixed set
        (pass it as an argument to keep it out of the compiled constants)."""
        params, packed = train_packed(key, hparams, eval_data)
        return params, unpack(packed)

    def train_packed(key: jax.Array, hparams: HParams | None = None, eval_data=None):
        hp = (make_hparams() if hparams is None
              else HParams(*(jnp.asarray(v, dtype) for v in hparams)))
        lr_finite = jnp.isfinite(hp.lr)  # step-invariant: tested once, outside the scan
        if eval_data is None:
            eval_data = evaluator.fixed_data()
        k_init, k_data = jax.random.split(key)
        step_inputs, batch_of = _batches(spec, dist, k_data, dtype)
        example = jnp.zeros((1,) + data.lattice_shape(lat.sites, lat.dim), dtype)
        params = model.init(k_init, example, init_scale=hp.init_scale)

        def loss_fn(p, x, y):
            mse = jnp.mean((model.apply(p, x, alpha=hp.alpha) - y) ** 2)
            return mse + model.penalty(p, strength=hp.symmetry_strength), mse

        def step(carry, inputs):
            params, opt_state, div_step = carry
            t, x, y = batch_of(inputs)
            (loss, mse), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, x, y)
            # Freeze (not branch) on divergence: a where keeps vmapped seeds independent.  The
            # update is computed from the raw gradients and kept only if the loss, the learning
            # rate and every moved parameter are finite: a non-finite gradient element makes
            # its moved parameter non-finite (Adam's inf/inf, SGD's lr * inf, even at lr 0), so
            # one finiteness test of the moved parameters covers the gradients too, and a
            # separate test of the gradients before the update cost 2-3% of the step
            # (benchmarks/RESULTS.md).  A diverged seed keeps the parameters of its last finite
            # step; its optimiser state (never reported) may hold the non-finite values.
            ok = jnp.isfinite(loss) & lr_finite & (div_step < 0)
            lr = jnp.where(ok, hp.lr, jnp.zeros_like(hp.lr))
            direction, opt_state = tx.update(grads, opt_state, params)
            moved = jax.tree.map(lambda p, d: (p - lr * d).astype(p.dtype), params, direction)
            ok = ok & _all_finite(moved)
            params = jax.tree.map(lambda q, p: jnp.where(ok, q, p), moved, params)
            div_step = jnp.where((div_step < 0) & ~ok, t, div_step).astype(jnp.int32)
            return (params, opt_state, div_step), mse

        def period(carry, e):
            ts = e * every + jnp.arange(every, dtype=jnp.int32)
            carry, mse = jax.lax.scan(step, carry, step_inputs(ts))
            # A non-finite optimiser state with a finite step (Adam's second moment
            # overflowing on a huge finite gradient makes the step 0: the seed would stall
            # unmarked) diverges the seed at the period's last step.  Checked once per
            # period: a pass over the state every step cost 7-14% of CPU throughput.
            params, opt_state, div_step = carry
            stalled = (div_step < 0) & ~_all_finite(opt_state)
            carry = (params, opt_state, jnp.where(stalled, ts[-1], div_step).astype(jnp.int32))
            curve = evaluator.curve(carry[0], hp, eval_data)
            return carry, jnp.concatenate([curve, jnp.mean(mse, keepdims=True).astype(dtype)])

        carry = (params, tx.init(params), jnp.asarray(-1, jnp.int32))
        periods = jnp.arange(n_evals, dtype=jnp.int32)
        (params, _, div_step), curves = jax.lax.scan(period, carry, periods)
        final = jnp.concatenate([evaluator.final(params, hp, eval_data), curves[-1, first_sym:]])
        return params, dict(curves=curves, final=final, diverged_step=div_step)

    return Trainer(train, make_hparams, model, evaluator, spec,
                   every * np.arange(1, n_evals + 1), train_packed, unpack)
