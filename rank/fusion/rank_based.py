"""Rank-based fusion: each run contributes a function of the document's 1-based rank p in it
(normalisations only matter through the ranks: "min-max-inverted" reverses them); n is the
number of runs that retrieved the document, c the number of candidates of the query.

==========  ==========================================  ====================================
rrf         sum_r 1 / (k + p_r)                         Cormack et al. 2009 (k default 60)
isr         n * sum_r 1 / p_r**2                        Mourao et al. 2015
log_isr     log(n) * sum_r 1 / p_r**2                   Mourao et al. 2015
logn_isr    log(n + sigma) * sum_r 1 / p_r**2           Mourao et al. 2015 (sigma default 0.01)
rbc         sum_r (1 - phi) * phi**(p_r - 1)            Bailey et al. 2017 (phi required)
borda       sum over all runs of c - p_r + 1, or        Aslam & Montague 2001 (ranx
            (c - len(run) + 1) / 2 if run r lacks it      "bordafuse")
wborda      the same, run r's points times w_r          (ranx "w_bordafuse")
condorcet   candidates sorted by pairwise majority:     Montague & Aslam 2002; score c - i
            x before y when at least half of the        for the i-th (0-based) place
            runs rank x above y (a run ranks the
            documents it lacks below the others)
wcondorcet  the same, runs' votes weighted by w_r       (ranx "w_condorcet")
==========  ==========================================  ====================================
"""
from __future__ import annotations

import numpy as np

from rank.fusion._registry import REQUIRED, Param, method, real
from rank.fusion.grids import int_range, linear, weight_grid
from rank.fusion.score import WEIGHTS

__all__: list[str] = []


@method("rrf", "sum", ranks=True, params={"k": Param(60, real(0.0))},
        grid=lambda n_runs, min_k=10, max_k=100, step=10: [{"k": k} for k in int_range(min_k, max_k, step)])
def rrf(ctx, k):
    """Reciprocal rank fusion: the sum of 1 / (k + rank)."""
    return 1.0 / (k + ctx.rank + 1.0), None


def _inverse_square(ctx):
    p = ctx.rank + 1.0
    return 1.0 / (p * p)


@method("isr", "pow_n", power=lambda p: 1.0, ranks=True)
def isr(ctx):
    """Inverse square rank: n times the sum of 1 / rank**2."""
    return _inverse_square(ctx), None


@method("log_isr", "log_n", power=lambda p: 0.0, ranks=True, aliases=("logisr",))
def log_isr(ctx):
    """Log ISR: log(n) times the sum of 1 / rank**2 (0 for a document only one run retrieved)."""
    return _inverse_square(ctx), None


@method("logn_isr", "log_n", power=lambda p: p["sigma"], ranks=True, params={"sigma": Param(0.01, real(0.0, 1.0))},
        grid=lambda n_runs, min_sigma=0.01, max_sigma=1.0, step=0.01: [
            {"sigma": s} for s in linear(min_sigma, max_sigma, step)])
def logn_isr(ctx, sigma):
    """Normalised log ISR: log(n + sigma) times the sum of 1 / rank**2."""
    return _inverse_square(ctx), None


@method("rbc", "sum", ranks=True, params={"phi": Param(REQUIRED, real(0.0, 1.0))},
        grid=lambda n_runs, min_phi=0.01, max_phi=1.0, step=0.01: [{"phi": p} for p in linear(min_phi, max_phi, step)])
def rbc(ctx, phi):
    """Rank-biased centroid: the sum of (1 - phi) * phi**(rank - 1)."""
    return (1.0 - phi) * np.power(phi, ctx.rank.astype(np.float64)), None


def _borda(ctx):
    c = ctx.seg_candidates.astype(np.float64)
    fill = (c - ctx.seg_length + 1.0) / 2.0
    return ctx.candidates - ctx.rank.astype(np.float64), fill


@method("borda", "sum", ranks=True, aliases=("bordafuse", "borda_fuse"))
def borda(ctx):
    """Borda count: c - rank + 1 points from each run, (c - len(run) + 1) / 2 if it lacks the document."""
    return _borda(ctx)


@method("wborda", "sum", ranks=True, params={"weights": WEIGHTS},
        aliases=("w_bordafuse", "weighted_bordafuse", "w_borda", "weighted_borda"),
        grid=lambda n_runs, step=0.1: weight_grid(n_runs, step))
def wborda(ctx, weights):
    """Weighted Borda count: each run's Borda points times its weight."""
    return _borda(ctx)


@method("condorcet", "condorcet", ranks=True, aliases=("condorcet_fuse", "condorcetfuse"))
def condorcet(ctx):
    """Condorcet fusion: candidates ordered by pairwise majority votes of the runs."""
    return None, None


@method("wcondorcet", "condorcet", ranks=True, params={"weights": WEIGHTS},
        aliases=("w_condorcet", "weighted_condorcet"), grid=lambda n_runs, step=0.1: weight_grid(n_runs, step))
def wcondorcet(ctx, weights):
    """Weighted Condorcet fusion: each run's vote weighs its weight."""
    return None, None
