"""Model configs: parsing, validation and refusals (all raised before any array work)."""
import jax
import jax.numpy as jnp
import ml_collections
import pytest

from rgsym import config, models, validation
from rgsym.models import activations
from rgsym.models.spec import spec_from_config

BASE = dict(kind="mlp", symmetry="none", activation="tanh", sites=8)


def test_spec_from_mapping_configdict_and_spec_agree():
    cfg = dict(BASE, width=5, depth=2)
    a = models.spec_from_config(cfg)
    b = models.spec_from_config(ml_collections.ConfigDict(cfg))
    assert a == b and models.spec_from_config(a) is a
    assert (a.width, a.depth, a.sites, a.b, a.dim, a.dtype) == (5, 2, 8, 2, 1, "float32")
    assert models.build(a).spec == a


def test_unknown_config_key_names_key_and_lists_valid():
    with pytest.raises(ValueError, match=r"'widht'.*valid keys.*width"):
        models.spec_from_config(dict(BASE, widht=3))


def test_missing_required_key():
    with pytest.raises(ValueError, match="missing activation"):
        models.spec_from_config(dict(kind="mlp", symmetry="none"))


@pytest.mark.parametrize("key, value, valid", [
    ("kind", "cnn", "mlp, gnn"),
    ("symmetry", "mirror", "none, block_local"),
    ("activation", "swish", "identity, quadratic"),
    ("pooling", "max", "sum, mean, learned"),
    ("boundary", "twisted", "periodic, open"),
])
def test_unknown_names_list_valid_choices(key, value, valid):
    cfg = dict(BASE, kind="gnn", symmetry="shared") if key in ("pooling", "boundary") else BASE
    with pytest.raises(ValueError, match=rf"{key}='{value}'.*{valid}"):
        models.build(dict(cfg, **{key: value}))


def test_gnn_symmetry_on_mlp_lists_mlp_choices():
    with pytest.raises(ValueError, match=r"symmetry='shared'.*kind='mlp'.*none, block_local"):
        models.build(dict(BASE, symmetry="shared"))


@pytest.mark.parametrize("key, value", [("width", 0), ("depth", 0), ("width", 2.5),
                                        ("depth", True), ("sites", 0), ("b", 1), ("dim", 3),
                                        ("init_scale", 0.0), ("alpha", float("nan"))])
def test_bad_numbers_name_the_argument_and_value(key, value):
    with pytest.raises(ValueError, match=rf"{key}={value!r}"):
        models.build(dict(BASE, **{key: value}))


def test_lattice_not_divisible_by_b():
    with pytest.raises(ValueError, match=r"sites.*multiple of b=3"):
        models.build(dict(BASE, sites=8, b=3))


@pytest.mark.parametrize("cfg, reason", [
    (dict(symmetry="symmetric_weights", depth=1), r"depth >= 2"),
    (dict(soft_symmetry="symmetric_weights", depth=1), r"depth >= 2"),
    (dict(soft_symmetry="odd", width=5), r"width must be even"),
    (dict(soft_symmetry="block_local", width=6), r"width must be a multiple of 4"),
    (dict(soft_symmetry="tied_hidden", symmetry="odd"), r"symmetry='none'"),
    (dict(soft_symmetry="mirror"), r"block_local, block_permutation, tied_hidden"),
    (dict(symmetry_strength=1.0), r"no effect without soft_symmetry"),
    (dict(soft_symmetry="odd", symmetry_strength=-1.0), r">= 0"),
])
def test_meaningless_combinations_refused_with_reason(cfg, reason):
    with pytest.raises(ValueError, match=reason):
        models.build(dict(BASE, **cfg))


def test_soft_symmetry_refused_for_gnn():
    with pytest.raises(ValueError, match="kind='mlp'"):
        models.build(dict(kind="gnn", symmetry="shared", activation="tanh",
                          soft_symmetry="odd"))


@pytest.mark.parametrize("kind, symmetry", [("mlp", "none"), ("mlp", "block_local"),
                                              ("gnn", "separate")])
def test_wrong_input_shape_at_apply(kind, symmetry):
    model = models.build(dict(BASE, kind=kind, symmetry=symmetry))
    params = model.init(jax.random.key(0), jnp.zeros((8,)))
    with pytest.raises(ValueError, match=r"x has lattice shape \(7,\).*multiple of b=2"):
        model.apply(params, jnp.zeros((4, 7)))
    with pytest.raises(ValueError, match=r"x has shape \(\).*trailing"):
        model.apply(params, jnp.zeros(()))
    if kind == "mlp" and symmetry == "none":
        with pytest.raises(ValueError, match=r"x has shape \(4, 6\).*built for lattice \(8,\)"):
            model.apply(params, jnp.zeros((4, 6)))
        with pytest.raises(ValueError, match=r"lattice_shape"):
            model.layers(params, (6,))
    else:  # iterable models accept other lattice sizes
        assert model.apply(params, jnp.zeros((4, 6))).shape == (4, 3)


def test_init_checks_example_shape_and_scale():
    model = models.build(BASE)
    with pytest.raises(ValueError, match=r"x has lattice shape \(5,\)"):
        model.init(jax.random.key(0), jnp.zeros((5,)))
    with pytest.raises(ValueError, match="init_scale=-1.0"):
        model.init(jax.random.key(0), jnp.zeros((8,)), init_scale=-1.0)
    with pytest.raises(ValueError, match="init_scale=inf.*finite"):   # not all-inf params
        model.init(jax.random.key(0), jnp.zeros((8,)), init_scale=float("inf"))


def test_one_sided_bounds_are_stated_as_such():
    with pytest.raises(ValueError, match=r"symmetry_strength=-1.0 .*must be >= 0.0$"):
        models.build(dict(BASE, soft_symmetry="odd", symmetry_strength=-1.0))
    with pytest.raises(ValueError, match=r"a=2.0 .*must be <= 1.0$"):
        validation.real("a", 2.0, high=1.0)
    with pytest.raises(ValueError, match=r"a=2.0 .*must lie in \[0.0, 1.0\]$"):
        validation.real("a", 2.0, low=0.0, high=1.0)


def test_activation_names_and_polynomials():
    assert set(models.ACTIVATIONS) == {"identity", "quadratic", "square", "cubic", "tanh",
                                       "relu", "gelu", "silu", "sigmoid", "softplus"}
    with pytest.raises(ValueError, match="swish.*identity, quadratic"):
        activations.activation_fn("swish")
    z = jnp.linspace(-2.0, 2.0, 9, dtype=jnp.float64)
    for name in models.ACTIVATIONS:
        coeffs = activations.polynomial_coefficients(name, 0.3)
        if coeffs is None:
            assert name not in ("identity", "quadratic", "square", "cubic")
            continue
        poly = sum(c * z ** k for k, c in enumerate(coeffs))
        assert jnp.allclose(activations.activation_fn(name, 0.3)(z), poly, atol=1e-14)
    for name in activations.ODD_ACTIVATIONS:
        f = activations.activation_fn(name, 0.3)
        assert jnp.allclose(f(-z), -f(z), atol=1e-14)


def test_describe_counts_params_and_symmetries():
    model = models.build(dict(BASE, symmetry="tied_hidden", width=7, depth=2))
    d = model.describe()
    n_params = 9 + 3 + 8   # row (8) + bias; diag + offdiag + bias; column (4) + bias (4)
    assert d["n_params"] == n_params
    assert d["symmetries"] == ["tied_hidden"] and d["iterable"] is False
    params = model.init(jax.random.key(0), jnp.zeros((8,)))
    assert model.describe(params)["n_params"] == n_params   # counted on real params
    assert models.build(dict(BASE, symmetry="block_local")).describe()["iterable"] is True


def test_choice_names_argument_value_and_choices():
    assert validation.choice("mode", "b", ("a", "b")) == "b"
    with pytest.raises(ValueError, match=r"^mode='c' is unknown: choose one of a, b$"):
        validation.choice("mode", "c", ("a", "b"))
    with pytest.raises(ValueError, match=r"boundary='mirror'.*periodic, open"):
        models.lattice_graph((4,), 2, "mirror")


def test_lattice_shape_must_be_a_tuple_of_sides():
    with pytest.raises(ValueError, match=r"shape=8 .*tuple of side lengths"):
        models.lattice_graph(8, 2)
    model = models.build(dict(BASE, kind="gnn", symmetry="shared"))
    params = model.init(jax.random.key(0), jnp.zeros((8,)))
    with pytest.raises(ValueError, match=r"lattice_shape=4 .*tuple of side lengths"):
        model.layers(params, 4)
    with pytest.raises(ValueError, match=r"lattice_shape\[0\]=4.0 .*integer"):
        model.layers(params, (4.0,))
    assert len(model.layers(params, [4])) == 3   # a list of sides is fine


def test_a_run_config_of_one_variant_builds_its_model_and_one_with_variants_is_refused():
    from rgsym import train
    cfg = config.base_config()
    cfg.lattice.sites, cfg.model.width = 8, 5
    assert spec_from_config(cfg) == spec_from_config(config.model_config(cfg))
    assert spec_from_config(cfg.to_dict()).sites == 8  # a saved config.json (a dict)
    cfg.variants = (dict(width=3),)
    with pytest.raises(ValueError, match="holds 1 variants: build one variant's config"):
        spec_from_config(cfg)
    with pytest.raises(ValueError, match="run config field 'lattice.b' is missing"):
        spec_from_config({"model": dict(kind="mlp", symmetry="none", activation="tanh"),
                          "lattice": {"dim": 1, "sites": 8}, "dtype": "float32"})
