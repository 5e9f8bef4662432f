"""The package's surface: __all__ names every public module, and each one imports."""
import importlib
import pkgutil

import rgsym


def test_all_lists_every_public_module_and_each_imports():
    modules = sorted(m.name for m in pkgutil.iter_modules(rgsym.__path__)
                     if not m.name.startswith("_"))
    assert sorted(rgsym.__all__) == modules
    for name in rgsym.__all__:
        assert importlib.import_module(f"rgsym.{name}").__name__ == f"rgsym.{name}"


def test_plotting_leaves_matplotlib_and_the_training_stack_alone():
    """Importing rgsym.plotting (a fresh interpreter) neither loads pyplot nor switches the
    backend, nor imports the training stack: figures use the object API."""
    import subprocess
    import sys
    code = ("import sys, matplotlib; before = matplotlib.rcParams._get_backend_or_none(); "
            "import rgsym.plotting; "
            "print(before == matplotlib.rcParams._get_backend_or_none(), "
            "'matplotlib.pyplot' in sys.modules, 'rgsym.train' in sys.modules, "
            "'rgsym.results' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["True", "False", "False", "False"], out


def test_model_and_trainer_functions_have_their_protocols_signatures():
    """The Protocols of rgsym.models / rgsym.train state the call conventions: every built
    model's functions (MLP and GNN) and a Trainer's train take exactly their parameters."""
    import inspect
    import typing

    from rgsym import config, models, train

    def params_of(fn):
        sig = inspect.signature(fn)
        return [(p.name, p.kind) for p in sig.parameters.values() if p.name != "self"]

    hints = typing.get_type_hints(models.Model)
    for kind, symmetry in (("mlp", "none"), ("gnn", "shared")):
        model = models.build(dict(kind=kind, symmetry=symmetry, activation="tanh", sites=4))
        for field, protocol in hints.items():
            if field != "spec":
                assert params_of(getattr(model, field)) == params_of(protocol.__call__), field
    cfg = config.base_config()
    cfg.lattice.sites, cfg.model.width, cfg.model.depth = 4, 4, 1
    trainer = train.make_train(cfg)
    assert params_of(trainer.train) == params_of(train.TrainFn.__call__)
    assert params_of(type(trainer).__call__) == params_of(train.TrainFn.__call__)


def _public_api():
    """``(qualified name, object)`` of every public function, class and method that the public
    modules' ``__all__`` name (rgsym.cumulants / rgsym.models re-exports included): constants,
    type aliases, names defined outside rgsym and Protocol classes are skipped, NamedTuple and
    dataclass records too (their public methods are not)."""
    import dataclasses
    import inspect

    def is_record(cls):
        return dataclasses.is_dataclass(cls) or (issubclass(cls, tuple) and hasattr(cls, "_fields"))

    seen = set()
    for module_name in rgsym.__all__:
        module = importlib.import_module(f"rgsym.{module_name}")
        for name in module.__all__:
            obj = getattr(module, name)
            qual = f"rgsym.{module_name}.{name}"
            if id(obj) in seen or not getattr(obj, "__module__", "").startswith("rgsym"):
                continue
            seen.add(id(obj))
            if inspect.isclass(obj):
                if getattr(obj, "_is_protocol", False):
                    continue
                if not is_record(obj):
                    yield qual, obj
                for attr, member in vars(obj).items():
                    if isinstance(member, (staticmethod, classmethod)):
                        member = member.__func__
                    if (not attr.startswith("_") and inspect.isfunction(member)
                            and member.__qualname__ == f"{obj.__qualname__}.{attr}"):
                        yield f"{qual}.{attr}", member
            elif callable(obj) and inspect.isfunction(inspect.unwrap(obj)):
                yield qual, obj


def test_public_api_has_docstrings_with_args_sections():
    """Every public function, class and method has a docstring, with an 'Args:' section where
    it takes parameters (other than self / cls)."""
    import inspect

    api = list(_public_api())
    assert len(api) > 100, len(api)  # the walk reaches the whole API
    missing = []
    for qual, obj in api:
        doc = inspect.getdoc(obj) or ""
        if not doc.strip():
            missing.append(f"{qual}: no docstring")
        elif not inspect.isclass(obj):
            params = [p for p in inspect.signature(obj).parameters if p not in ("self", "cls")]
            if params and "Args:" not in doc:
                missing.append(f"{qual}: no 'Args:' section for {', '.join(params)}")
    assert not missing, "\n".join(missing)
