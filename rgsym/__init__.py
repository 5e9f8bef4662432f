"""rgsym: neural networks learning renormalisation-group maps, and the exact theory behind them.

``import rgsym`` loads the light modules ``clt`` and ``distributions``; every other module
loads on its own import (``from rgsym import results``): the training stack and matplotlib
are not pulled in by the cumulant algebra.
"""
from rgsym import clt, distributions

__version__ = "0.1.0"
# The public modules.
__all__ = ["atomic", "cli", "clt", "compile_cache", "config", "cumulants", "data", "distributions", "flow_check",
           "metrics", "models", "plotting", "reprs", "results", "sweep", "train", "validation"]
