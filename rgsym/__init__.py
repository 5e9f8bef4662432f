"""rgsym: neural networks learning renormalisation-group maps, and the exact theory behind them."""
from rgsym import clt, distributions

__version__ = "0.1.0"
__all__ = ["clt", "distributions"]
