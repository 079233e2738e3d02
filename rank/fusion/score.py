"""Score-based fusion (the Comb family and its weighted variants): each run contributes its
(normalised) score s_r of the document; n is the number of runs that retrieved it.

=========  ======================================  =======================================
combsum    sum_r s_r                               Fox & Shaw 1994 (ranx "sum")
combmnz    n * sum_r s_r                           Fox & Shaw 1994 (ranx "mnz")
combmax    max_r s_r                               Fox & Shaw 1994 (ranx "max")
combmin    min_r s_r                               Fox & Shaw 1994 (ranx "min")
combanz    sum_r s_r / n                           Fox & Shaw 1994 (ranx "anz")
combmed    median_r s_r                            Fox & Shaw 1994 (ranx "med")
combgmnz   n ** gamma * sum_r s_r                  Lee 1997 (ranx "gmnz"; gamma required)
wsum       sum_r w_r s_r                           weighted sum (weights default to 1)
wmnz       (sum_r s_r) * (sum_r w_r)               Wu & Crestani 2002, as ranx defines it
mixed      sqrt(n) * sum_r w_r s_r                 Wu & Crestani 2002 (ranx "mixed")
=========  ======================================  =======================================
"""
from __future__ import annotations

import numpy as np

from rank.fusion._registry import REQUIRED, Param, method, per_run_numbers, real
from rank.fusion.grids import linear, weight_grid

__all__: list[str] = []

WEIGHTS = Param(lambda n: np.ones(n), per_run_numbers, per_run=True, doc="one weight per run (default 1)")


@method("combsum", "sum", scores=True, aliases=("sum", "comb_sum"))
def combsum(ctx):
    """CombSUM: the sum of the scores."""
    return ctx.score, None


@method("combmnz", "pow_n", power=lambda p: 1.0, scores=True, aliases=("mnz", "comb_mnz"))
def combmnz(ctx):
    """CombMNZ: the sum of the scores times the number of runs retrieving the document."""
    return ctx.score, None


@method("combmax", "max", scores=True, aliases=("max", "comb_max"))
def combmax(ctx):
    """CombMAX: the largest score."""
    return ctx.score, None


@method("combmin", "min", scores=True, aliases=("min", "comb_min"))
def combmin(ctx):
    """CombMIN: the smallest score."""
    return ctx.score, None


@method("combanz", "mean", scores=True, aliases=("anz", "comb_anz"))
def combanz(ctx):
    """CombANZ: the mean score over the runs retrieving the document."""
    return ctx.score, None


@method("combmed", "median", scores=True, aliases=("med", "comb_med"))
def combmed(ctx):
    """CombMED: the median score over the runs retrieving the document."""
    return ctx.score, None


@method("combgmnz", "pow_n", power=lambda p: p["gamma"], scores=True, aliases=("gmnz", "comb_gmnz"),
        params={"gamma": Param(REQUIRED, real(0.0, 100.0))},
        grid=lambda n_runs, min_gamma=0.01, max_gamma=1.0, step=0.01: [
            {"gamma": g} for g in linear(min_gamma, max_gamma, step)])
def combgmnz(ctx, gamma):
    """CombGMNZ: the sum of the scores times n ** gamma (n: runs retrieving the document)."""
    return ctx.score, None


@method("wsum", "sum", scores=True, params={"weights": WEIGHTS}, aliases=("weighted_sum",),
        grid=lambda n_runs, step=0.1: weight_grid(n_runs, step))
def wsum(ctx, weights):
    """Weighted sum: sum of w_r times the run's score."""
    return ctx.score, None


@method("wmnz", "w_mnz", scores=True, params={"weights": WEIGHTS}, aliases=("weighted_mnz",),
        grid=lambda n_runs, step=0.1: weight_grid(n_runs, step))
def wmnz(ctx, weights):
    """Weighted MNZ: the sum of the scores times the sum of the weights of the runs retrieving the document."""
    return ctx.score, None


@method("mixed", "pow_n", power=lambda p: 0.5, scores=True, params={"weights": WEIGHTS},
        grid=lambda n_runs, step=0.1: weight_grid(n_runs, step))
def mixed(ctx, weights):
    """Mixed: the weighted sum of the scores times sqrt(n)."""
    return ctx.score, None

