"""Cumulant estimators, algebra and propagation through networks.

    state       FactorCumulants / DenseCumulants / MarginalCumulants pytrees, iid_lattice
    partitions  Leonov-Shiryaev connected partitions (trace time)
    rules       affine, polynomial, quadratic_expansion, gaussian_closure
    sites       polynomial nets carried exactly as polynomials of the input sites
    surrogate   mode 'hermite' (polynomial surrogates under each unit's law) and the
                error estimates every Propagation carries (``Propagation.errors``)
    propagate   propagate(model, params, input, order, mode), propagate_many
    monte_carlo monte_carlo(model, params, family, key, n_samples, batch)
    predict     predict_mse (exact for polynomial nets), clt_recursion_check, rg_eigenvalues
"""
from rgsym.cumulants.estimators import (KStats, PowerSums, combine, k_statistics,
                                        k_statistics_from_power_sums, k_statistics_with_se,
                                        power_sums)
from rgsym.cumulants.monte_carlo import MonteCarlo, monte_carlo
from rgsym.cumulants.predict import (MSEPrediction, RecursionCheck, RGEigenvalues,
                                     clt_recursion_check, error_chain, predict_mse,
                                     rg_eigenvalue_error, rg_eigenvalues)
from rgsym.cumulants.propagate import (APPROXIMATE_MODES, MODES, Propagation, propagate,
                                       propagate_chain, propagate_many)
from rgsym.cumulants.state import (CumulantCostError, CumulantMemoryError, DenseCumulants,
                                   FactorCumulants, MarginalCumulants, from_tensors,
                                   iid_lattice, independent_sites, marginals, to_dense)

__all__ = [
    "KStats", "PowerSums", "combine", "k_statistics", "k_statistics_from_power_sums",
    "k_statistics_with_se", "power_sums",
    "MonteCarlo", "monte_carlo",
    "MSEPrediction", "RecursionCheck", "RGEigenvalues", "clt_recursion_check", "error_chain",
    "predict_mse", "rg_eigenvalue_error", "rg_eigenvalues",
    "APPROXIMATE_MODES", "MODES", "Propagation", "propagate", "propagate_chain",
    "propagate_many",
    "CumulantCostError", "CumulantMemoryError", "DenseCumulants", "FactorCumulants",
    "MarginalCumulants", "from_tensors", "iid_lattice", "independent_sites", "marginals",
    "to_dense",
]
