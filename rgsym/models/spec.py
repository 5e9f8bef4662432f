"""ModelSpec: the validated plain-data description of one model, and its config parser.

Every refusal happens here, before any array is built: names are checked against their
valid choices, and combinations that are not meaningful are refused with the reason and
what would work instead.
"""
from __future__ import annotations

import dataclasses
from typing import Mapping

from rgsym import clt, validation
from rgsym.models.activations import validate_activation
from rgsym.models.graphs import BOUNDARIES

__all__ = ["ModelSpec", "spec_from_config", "KINDS", "MLP_SYMMETRIES", "GNN_SYMMETRIES",
           "SOFT_SYMMETRIES", "POOLINGS", "BOUNDARIES", "DTYPES", "RUN_CONFIG_FIELDS"]

KINDS = ("mlp", "gnn")
MLP_SYMMETRIES = ("none", "block_local", "block_permutation", "tied_hidden", "odd",
                  "nonnegative", "symmetric_weights")
GNN_SYMMETRIES = ("shared", "separate", "edge_typed", "directional")
SOFT_SYMMETRIES = ("block_local", "block_permutation", "tied_hidden", "odd", "nonnegative",
                   "symmetric_weights")
POOLINGS = ("sum", "mean", "learned")
DTYPES = ("float32", "float64")
# ModelSpec fields that a run config (rgsym.config.base_config) keeps outside its model
# section: spec field -> dotted run-config field.
RUN_CONFIG_FIELDS = {"dim": "lattice.dim", "sites": "lattice.sites", "b": "lattice.b",
                     "dtype": "dtype"}


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """One point of the design space (kind x symmetry x activation x width x depth).

    Attributes:
      kind: the network kind, 'mlp' or 'gnn' (one of KINDS).
      symmetry: mlp: one of MLP_SYMMETRIES; gnn: one of GNN_SYMMETRIES.
      activation: one of ACTIVATIONS.
      width: hidden units per layer (mlp) or features per node (gnn).
      depth: number of hidden layers (mlp) or message-passing layers (gnn).
      b, dim, sites: block size, lattice dimension, sites per side of the lattice the
        model is built for (iterable models also accept other sizes divisible by b).
      alpha: activation parameter (quadratic z + alpha z^2, cubic z + alpha z^3).
      init_scale: weights start with std init_scale / sqrt(fan_in).
      soft_symmetry: an MLP symmetry imposed as a penalty on an unconstrained ('none') MLP.
      symmetry_strength: the penalty weight (0 = free).
      pooling: gnn only: per-block 'sum', 'mean' or 'learned' (one weight per position).
      boundary: gnn only: 'periodic' or 'open' lattice graph.
      block_edges: gnn only: also connect every pair of sites in a block (not just
        nearest neighbours); matters for b > 2 and for 2-D block diagonals.
      use_bias: biases in every affine map (odd MLPs cancel the output bias exactly).
      dtype: parameter and compute dtype.
    Fields that do not apply to the kind are ignored.

    The defaults here (a small net: width 16, depth 1) serve direct use only, such as
    ``models.build(dict(kind=..., symmetry=..., activation=...))`` in a test or a
    notebook.  A run never falls back on them: ``rgsym.config.resolve`` builds its ModelSpec
    from every field of the run config, whose defaults (``rgsym.config.SCHEMA``: width 64,
    depth 2) are the ones runs use.
    """

    kind: str
    symmetry: str
    activation: str
    width: int = 16
    depth: int = 1
    b: int = 2
    dim: int = 1
    sites: int = 16
    alpha: float = 0.1
    init_scale: float = 1.0
    soft_symmetry: str | None = None
    symmetry_strength: float = 0.0
    pooling: str = "sum"
    boundary: str = "periodic"
    block_edges: bool = False
    use_bias: bool = True
    dtype: str = "float32"

    def __post_init__(self):
        validation.choice("kind", self.kind, KINDS)
        valid = MLP_SYMMETRIES if self.kind == "mlp" else GNN_SYMMETRIES
        if self.symmetry not in valid:
            raise ValueError(f"symmetry={self.symmetry!r} is unknown for kind={self.kind!r}: "
                             f"choose one of {', '.join(valid)}")
        validate_activation(self.activation)
        validation.integer("width", self.width, 1)
        validation.integer("depth", self.depth, 1)
        clt.validate_b(self.b)
        clt.validate_dim(self.dim)
        validation.integer("sites", self.sites, 1)
        clt.validate_lattice((self.sites,) * self.dim, self.b, self.dim, name="sites")
        validation.real("alpha", self.alpha)
        validation.real("init_scale", self.init_scale, positive=True)
        validation.real("symmetry_strength", self.symmetry_strength, low=0.0)
        validation.choice("pooling", self.pooling, POOLINGS)
        validation.choice("boundary", self.boundary, BOUNDARIES)
        validation.choice("dtype", self.dtype, DTYPES)
        for flag in ("block_edges", "use_bias"):
            if not isinstance(getattr(self, flag), bool):
                raise ValueError(f"{flag}={getattr(self, flag)!r} is not valid: it must be a bool")
        self._check_combination()

    def _check_combination(self) -> None:
        if self.symmetry == "symmetric_weights" and self.depth < 2:
            raise ValueError(
                f"symmetry='symmetric_weights' with depth={self.depth} is not meaningful: W = W^T "
                "needs square hidden-to-hidden layers, which exist only for depth >= 2; use "
                "depth >= 2 or another symmetry")
        if self.soft_symmetry is None:
            if self.symmetry_strength != 0:
                raise ValueError(
                    f"symmetry_strength={self.symmetry_strength!r} has no effect without "
                    f"soft_symmetry: set soft_symmetry to one of {', '.join(SOFT_SYMMETRIES)} "
                    "or leave symmetry_strength at 0")
            return
        if self.kind != "mlp" or self.symmetry != "none":
            raise ValueError(
                f"soft_symmetry={self.soft_symmetry!r} needs kind='mlp' and symmetry='none' "
                f"(the penalty acts on an unconstrained MLP); got kind={self.kind!r}, "
                f"symmetry={self.symmetry!r}")
        validation.choice("soft_symmetry", self.soft_symmetry, SOFT_SYMMETRIES)
        n_blocks = (self.sites // self.b) ** self.dim
        if self.soft_symmetry == "block_local" and self.width % n_blocks:
            raise ValueError(
                f"soft_symmetry='block_local' with width={self.width} is not meaningful: each of "
                f"the {n_blocks} blocks owns width/{n_blocks} hidden units, so width must be a "
                f"multiple of {n_blocks}")
        if self.soft_symmetry == "symmetric_weights" and self.depth < 2:
            raise ValueError(
                f"soft_symmetry='symmetric_weights' with depth={self.depth} is not meaningful: it "
                "needs square hidden-to-hidden layers (depth >= 2)")
        if self.soft_symmetry == "odd" and self.width % 2:
            raise ValueError(
                f"soft_symmetry='odd' with width={self.width} is not meaningful: the odd subspace "
                "pairs hidden units (w, b, v) with (-w, b, -v), so width must be even")

    @property
    def lattice_shape(self) -> tuple[int, ...]:
        """The fine lattice the model is built for: (sites,) or (sites, sites)."""
        return (self.sites,) * self.dim

    def replace(self, **changes) -> "ModelSpec":
        """A copy with ``changes`` applied, validated like a new spec.

        Args:
          **changes: ModelSpec fields and their new values.

        Returns:
          The new, frozen ModelSpec.

        Raises:
          TypeError: a name that is not a field.
          ValueError: an invalid value, as the constructor.
        """
        return dataclasses.replace(self, **changes)


_FIELDS = tuple(f.name for f in dataclasses.fields(ModelSpec))
_REQUIRED = tuple(f.name for f in dataclasses.fields(ModelSpec)
                  if f.default is dataclasses.MISSING)


def spec_from_config(cfg) -> ModelSpec:
    """A ModelSpec from a Mapping, an ml_collections.ConfigDict or a ModelSpec.

    Args:
      cfg: ModelSpec fields (``{'kind': 'mlp', ...}``), or a whole run config of one
        variant (a ``model`` section beside ``lattice`` and ``dtype``: a resolved variant's
        ConfigDict, or the ``config.json`` that a run directory saves for each variant;
        one saved before a field was renamed is read under the new names first, by
        ``rgsym.config.upgrade``).

    Returns:
      The validated, frozen ModelSpec (``cfg`` itself if it is one); fields left unset take
      their defaults, and a run config's lattice fields and dtype fill the spec's.

    Raises:
      ValueError: a ``cfg`` of another type, an unknown or missing key (named, with the valid ones listed), a run
        config that still holds variants, or an invalid field value.
    """
    if isinstance(cfg, ModelSpec):
        return cfg
    if hasattr(cfg, "to_dict"):  # ml_collections.ConfigDict / FrozenConfigDict
        cfg = cfg.to_dict()
    if not isinstance(cfg, Mapping):
        raise ValueError(f"cfg of type {type(cfg).__name__} is not valid: pass a Mapping, an "
                         "ml_collections.ConfigDict or a ModelSpec")
    from rgsym import config  # (rgsym.config imports the model zoo)
    if isinstance(cfg.get("model"), Mapping):
        cfg = _from_run_config(config.upgrade(cfg))  # a saved run's old field names
    for key in cfg:
        if key not in _FIELDS:
            new = config.renamed_to(f"model.{key}")
            renamed = f" (renamed to {new.split('.')[-1]!r})" if new else ""
            raise ValueError(f"model config key {key!r} is unknown{renamed}: valid keys are "
                             f"{', '.join(_FIELDS)}")
    missing = [k for k in _REQUIRED if k not in cfg]
    if missing:
        raise ValueError(f"model config is missing {', '.join(missing)}: required keys are "
                         f"{', '.join(_REQUIRED)}")
    return ModelSpec(**dict(cfg))


def _from_run_config(cfg: Mapping) -> dict:
    """The model section of a one-variant run config plus the fields other sections own."""
    if cfg.get("variants"):
        raise ValueError(f"cfg holds {len(cfg['variants'])} variants: build one variant's "
                         "config (rgsym.config.variant_configs resolves them)")
    out = dict(cfg["model"])
    for key, field in RUN_CONFIG_FIELDS.items():
        value = cfg
        for part in field.split("."):
            if not isinstance(value, Mapping) or part not in value:
                raise ValueError(f"run config field {field!r} is missing: a run config "
                                 "needs a model section beside lattice and dtype")
            value = value[part]
        out[key] = value
    return out
