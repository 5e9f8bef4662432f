"""Cumulant estimators, algebra and propagation through networks."""
from rgsym.cumulants.estimators import KStats, k_statistics, k_statistics_with_se

__all__ = ["KStats", "k_statistics", "k_statistics_with_se"]
