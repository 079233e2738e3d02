"""Score normalisations, applied per run and query before fusion (as ranx defines them).

For one run's n documents of a query with scores s (min lo, max hi), candidates c (the
documents of the query over all runs) and 0-based ranks i:

==================  =====================================================================
"min-max"           (s - lo) / max(hi - lo, 1e-9)
"min-max-inverted"  (hi - s) / max(hi - lo, 1e-9); ranks follow the new scores (reversed)
"max"               s / max(hi, 1e-9)
"sum"               (s - lo) / max(sum(s) - n lo, 1e-9)
"zmuv"              (s - mean) / max(std, 1e-9)      (alias "z-score"; population std)
"rank"              1 - i / n
"borda"             1 - i / c; a candidate the run lacks gets 0.5 - (n - 1) / (2 c), so every
                    run scores every candidate (score-based methods then count it as retrieved)
==================  =====================================================================

min-max, sum and zmuv are computed on scores scaled by a power of two (exact), so that huge
scores (near 1e308) normalise without overflowing in the intermediate sums.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from rank.fusion._registry import normalization

__all__: list[str] = []


def _scaled(ctx):
    """Scores divided per segment by a power of two near their largest magnitude (exact)."""
    s = ctx.raw
    big = ctx.segment_stat(np.maximum, np.abs(s), empty=1.0)
    big[big == 0] = 1.0
    _, exp = np.frexp(big)
    scale = np.ldexp(1.0, exp - 1)  # largest magnitude scaled into [1, 2)
    return s / ctx.per_entry(scale), scale


def _min_max(ctx: Any, invert: bool) -> np.ndarray:
    x, scale = _scaled(ctx)
    lo = ctx.segment_stat(np.minimum, x)
    hi = ctx.segment_stat(np.maximum, x)
    den = (hi - lo) * scale
    small = den <= 1e-9
    # Where the true denominator is floored, ranx divides unscaled values by 1e-9.
    den_scaled = np.where(small, 1e-9 / scale, hi - lo)
    top = ctx.per_entry(hi) - x if invert else x - ctx.per_entry(lo)
    return top / ctx.per_entry(den_scaled)


@normalization("min-max", aliases=("min_max", "minmax"))
def min_max(ctx):
    """(s - min) / (max - min), per run and query."""
    return _min_max(ctx, False), None


@normalization("min-max-inverted", reorders=True, aliases=("min_max_inverted",))
def min_max_inverted(ctx):
    """(max - s) / (max - min): for scores where lower is better (distances); reverses ranks."""
    return _min_max(ctx, True), None


@normalization("max")
def max_norm(ctx):
    """s / max, per run and query."""
    hi = ctx.segment_stat(np.maximum, ctx.raw)
    return ctx.raw / ctx.per_entry(np.maximum(hi, 1e-9)), None


@normalization("sum")
def sum_norm(ctx):
    """(s - min) / (sum(s) - n min), per run and query."""
    x, scale = _scaled(ctx)
    lo = ctx.segment_stat(np.minimum, x)
    tot = ctx.segment_stat(np.add, x, empty=0.0)
    den = tot - lo * ctx.seg_length
    den = np.where(den * scale <= 1e-9, 1e-9 / scale, den)
    return (x - ctx.per_entry(lo)) / ctx.per_entry(den), None


@normalization("zmuv", aliases=("z-score", "zscore", "z_score"))
def zmuv(ctx):
    """(s - mean) / std (zero mean, unit variance), per run and query."""
    x, scale = _scaled(ctx)
    n = np.maximum(ctx.seg_length, 1)
    mean = ctx.segment_stat(np.add, x, empty=0.0) / n
    dev = x - ctx.per_entry(mean)
    sd = np.sqrt(ctx.segment_stat(np.add, dev * dev, empty=0.0) / n)
    sd = np.where(sd * scale <= 1e-9, 1e-9 / scale, sd)
    return dev / ctx.per_entry(sd), None


@normalization("rank")
def rank_norm(ctx):
    """1 - i / n for the document at 0-based rank i of a run of n."""
    return 1.0 - ctx.raw_rank / ctx.length, None


@normalization("borda")
def borda_norm(ctx):
    """1 - i / c over the c candidates of the query; the candidates a run lacks get
    0.5 - (n - 1) / (2 c)."""
    c = ctx.seg_candidates.astype(np.float64)
    fill = 0.5 - (ctx.seg_length - 1) / (2.0 * np.maximum(c, 1.0))
    return 1.0 - ctx.raw_rank / ctx.candidates, fill
