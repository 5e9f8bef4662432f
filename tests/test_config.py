"""The run config's home: schema with docs, locking, grids, and listing fields from the shell."""
import json
import subprocess
import sys

import ml_collections
import pytest

from rgsym import config
from tests.scripts import ROOT, script_env


def _leaves(c, prefix=""):
    out = []
    for k, v in c.items():
        if isinstance(v, ml_collections.ConfigDict):
            out += _leaves(v, f"{prefix}{k}.")
        else:
            out.append(prefix + k)
    return out


def test_every_field_has_one_schema_row_with_a_doc():
    fields = [f for f, _, _ in config.SCHEMA]
    assert len(set(fields)) == len(fields)
    assert sorted(_leaves(config.base_config())) == sorted(fields)
    assert all(doc.strip() for _, _, doc in config.SCHEMA)


def test_describe_lists_every_field_with_its_value_and_doc():
    c = config.base_config()
    c.optim.lr = 0.25
    lines = config.describe(c).splitlines()
    assert len(lines) == len(config.SCHEMA)
    lr = next(line for line in lines if line.startswith("optim.lr "))
    assert "0.25" in lr and "# learning rate" in lr


def test_base_config_is_locked_against_typos():
    c = config.base_config()
    with pytest.raises(AttributeError, match="modle"):
        c.modle = 3
    with pytest.raises(AttributeError, match="widht"):
        c.model.widht = 3


def test_configs_share_no_field_a_change_to_one_reaches_another():
    # model.soft_symmetry's default is a placeholder (None, typed str): once a FieldReference
    # shared by every base_config, so one config's soft_symmetry leaked into later ones.
    a = config.base_config()
    a.model.soft_symmetry = "odd"
    b = config.base_config()
    assert b.model.soft_symmetry is None
    b.model.soft_symmetry = "tied_hidden"
    assert a.model.soft_symmetry == "odd"
    with pytest.raises(TypeError):
        b.model.soft_symmetry = 3  # still typed


def test_grid_is_the_cartesian_product_first_axis_slowest():
    g = config.grid(symmetry=("none", "odd"), **{"optim.lr": (1e-3, 1e-2, 1e-1)})
    assert len(g) == 6
    assert g[0] == {"symmetry": "none", "optim.lr": 1e-3}
    assert g[3] == {"symmetry": "odd", "optim.lr": 1e-3}
    assert len({tuple(sorted(v.items())) for v in g}) == 6


def test_zipped_and_product_compose():
    v = config.product(config.grid(activation=("tanh", "relu")),
                       config.zipped(width=(8, 32), depth=(1, 2)))
    assert v == [dict(activation="tanh", width=8, depth=1),
                 dict(activation="tanh", width=32, depth=2),
                 dict(activation="relu", width=8, depth=1),
                 dict(activation="relu", width=32, depth=2)]


@pytest.mark.parametrize("make, message", [
    (lambda: config.zipped(width=(8, 32), depth=(1,)), "equal lengths"),
    (lambda: config.grid(width=()), "width=()"),
    (lambda: config.grid(activation="tanh"), "activation='tanh'"),
    (lambda: config.product(config.grid(width=(8,)), config.grid(width=(16,))),
     "'width' is set by two factors"),
])
def test_bad_axes_are_refused_by_name(make, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make()


def test_a_grid_resolves_into_validated_named_variants():
    c = config.base_config()
    c.lattice.sites, c.model.width, c.model.depth = 4, 4, 1
    c.variants = config.grid(symmetry=("none", "block_local"), activation=("tanh", "quadratic"))
    config.validate_config(c)
    names = [n for n, _ in config.variant_configs(c)]
    assert names == ["mlp-none-tanh", "mlp-none-quadratic", "mlp-block_local-tanh",
                     "mlp-block_local-quadratic"]
    c.variants = config.grid(symmetry=("none", "tnah_symmetry"))
    with pytest.raises(ValueError, match="variant 'mlp-tnah_symmetry-tanh'"):
        config.validate_config(c)


def test_shadowed_fields_are_those_every_variant_sets():
    c = config.base_config()
    c.variants = (dict(activation="tanh", width=8), {"activation": "relu", "optim.lr": 0.1})
    assert config.shadowed_fields(c, ["model.activation", "model.width", "optim.lr",
                                      "optim.steps"]) == ["model.activation"]
    c.variants = ()
    assert config.shadowed_fields(c, ["model.activation"]) == []


def test_rgsym_config_lists_a_config_files_fields():
    out = subprocess.run([sys.executable, "-m", "rgsym.config",
                          str(ROOT / "experiments" / "configs" / "test.py")],
                         capture_output=True, text=True, timeout=120, env=script_env(), cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert "optim.steps = 40 " in out.stdout and "# training steps" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "rgsym.config", "nope.py"], capture_output=True,
                         text=True, timeout=120, env=script_env(), cwd=ROOT)
    assert bad.returncode == 1 and bad.stderr.startswith("error: nope.py: cannot be loaded")


def _spec_value(spec, field):
    """A dotted schema field read off a RunSpec: model fields live in the ModelSpec, which
    takes the lattice fields and dtype as its own too."""
    value = spec
    for part in field.split("."):
        value = getattr(value, part)
    return value


def test_resolve_gives_a_frozen_typed_spec_holding_every_schema_field():
    import dataclasses
    c = config.base_config()
    c.optim.lr, c.eval.scales, c.eval.families = 1, [2.0, 0.5], ["gaussian"]
    spec = config.resolve(c)
    for field, _, _ in config.SCHEMA:
        if field != "variants":  # a RunSpec is one variant
            want = _spec_value(c, field)  # (a ConfigDict reads the same way)
            want = tuple(want) if isinstance(want, list) else want
            assert _spec_value(spec, field) == want, field
    assert type(spec.optim.lr) is float and spec.eval.scales == (2.0, 0.5)
    assert spec.model == config.models.spec_from_config(config.model_config(c))
    assert (spec.model.width, spec.model.depth) == (64, 2)  # the schema's, not ModelSpec's
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.optim.lr = 2.0
    assert config.resolve(spec) is spec and hash(spec) == hash(config.resolve(c))


def test_resolve_applies_a_single_variant_and_refuses_several_naming_variant_configs():
    c = config.base_config()
    c.variants = config.grid(width=(8,))
    assert config.resolve(c).model.width == 8
    c.variants = config.grid(width=(8, 16))
    with pytest.raises(ValueError, match=r"'variants'.*rgsym\.config\.variant_configs"):
        config.resolve(c)
    specs = config.resolve_variants(c)
    assert [(n, s.model.width) for n, s in specs] == [("mlp-none-tanh-width=8", 8),
                                                      ("mlp-none-tanh-width=16", 16)]
    c.variants = (dict(width=0),)
    with pytest.raises(ValueError, match=r"variant 'mlp-none-tanh-width=0'.*width"):
        config.resolve(c)
    c.variants, c.optim.steps = (), -1
    with pytest.raises(ValueError, match=r"config field 'optim.steps'=-1"):
        config.resolve(c)


def test_upgrade_renames_model_family_to_kind_and_leaves_the_data_family():
    """upgrade: a config.json written before 2026-11-30 (model.family, variant key
    'family') reads under today's names; data.family and eval.families keep theirs."""
    saved = config.base_config().to_dict()
    saved["model"]["family"] = saved["model"].pop("kind")
    saved["variants"] = [{"family": "gnn", "symmetry": "shared"}, {"model.family": "mlp"},
                         {"data.family": "gaussian"}]
    up = config.upgrade(saved)
    assert up["model"]["kind"] == "mlp" and "family" not in up["model"]
    assert up["variants"] == [{"kind": "gnn", "symmetry": "shared"}, {"model.kind": "mlp"},
                              {"data.family": "gaussian"}]
    assert up["data"]["family"] == "uniform" and up["eval"]["families"] == ()
    assert "family" in saved["model"]                  # the input is left as it was
    assert config.upgrade(up) == up                    # today's configs pass unchanged
    today = json.loads(config.base_config().to_json())
    assert config.upgrade(today) == today


def test_a_config_still_setting_model_family_is_refused_naming_model_kind():
    c = config.base_config()
    with pytest.raises((AttributeError, KeyError), match="family"):
        c.model.family = "gnn"
    c.variants = (dict(family="gnn", symmetry="shared"),)
    with pytest.raises(ValueError, match=r"variants\[0\]\.family' is unknown: 'family' is not a "
                                         r"config field \(renamed to model\.kind"):
        config.validate_config(c)
    with pytest.raises(ValueError, match=r"'family' is unknown \(renamed to 'kind'\)"):
        config.models.build(dict(family="mlp", symmetry="none", activation="tanh"))


def test_a_variant_value_of_the_wrong_type_or_a_whole_section_is_a_value_error():
    # (found in review: a TypeError or KeyError traceback escaped rgsym-sweep's one-line
    # errors; a numpy grid such as 2 ** np.arange(3, 5) was refused)
    np = pytest.importorskip("numpy")
    c = config.base_config()
    c.lattice.sites, c.model.width, c.model.depth = 4, 4, 1
    c.variants = config.grid(width=tuple(2 ** np.arange(2, 4)),
                             **{"optim.lr": (np.float32(0.01),)})
    names = [n for n, _ in config.variant_configs(c)]
    assert names == ["mlp-none-tanh-width=4-lr=0.009999999776482582",
                     "mlp-none-tanh-width=8-lr=0.009999999776482582"]
    assert [type(v.model.width) for _, v in config.variant_configs(c)] == [int, int]
    config.validate_config(c)
    json.loads(c.to_json())  # the run directory's config.json
    assert config.zipped(width=tuple(np.arange(2, 4))) == [{"width": 2}, {"width": 3}]
    assert type(config.zipped(width=tuple(np.arange(2, 4)))[0]["width"]) is int
    for variants, match in [(config.grid(**{"data.train_size": (256.0,)}),
                             r"'variants\[0\].data.train_size'=256.0 is not valid: "
                             "'data.train_size' holds a int, not a float"),
                            (config.grid(optim=({"lr": 1e-2},)),
                             r"'variants\[0\].optim'=\{'lr': 0.01\} is not valid: 'optim' is a "
                             "section: a variant sets its fields one by one, e.g. "
                             r"'optim\."),
                            (config.grid(**{"eval.families": ("gaussian",)}),
                             "'eval.families' holds a tuple, not a str"),
                            ([{"width": np.int64(8)}],
                             r"'variants\[0\].width'=np.int64\(8\) is not valid: a run records "
                             "its variants in config.json")]:
        c.variants = variants
        with pytest.raises(ValueError, match=match):
            config.validate_config(c)


def test_variant_names_are_the_same_however_a_field_is_written_and_never_collide():
    c = config.base_config()
    c.variants = ({"kind": "gnn", "symmetry": "shared"},
                  {"model.kind": "gnn", "model.symmetry": "separate", "optim.lr": 0.5})
    assert [n for n, _ in config.variant_configs(c)] == ["gnn-shared-tanh",
                                                         "gnn-separate-tanh-lr=0.5"]
    c.variants = ({"data.batch": 256}, {"eval.batch": 256}, {"seed": 3}, {"eval.seed": 3})
    assert [n for n, _ in config.variant_configs(c)] == [
        "mlp-none-tanh-data.batch=256", "mlp-none-tanh-eval.batch=256", "mlp-none-tanh-seed=3",
        "mlp-none-tanh-eval.seed=3"]
