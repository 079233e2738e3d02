"""Fusion learnt from relevance judgements: each run's contribution at 1-based rank p comes
from statistics of where that run places relevant documents on training queries (qrels).

Training (``train_fusion(qrels, runs, method)``, or ``fuse(..., qrels=...)``) reads, for each
run and each query of the qrels, the run's hit list: 1 where the document at that rank is
relevant (grade >= relevance_level), else 0; a run lacking the query has an empty list.

==========  ==========================================  ====================================
bayesfuse   sum_r log_odds_r[p_r]; a run lacking the    Aslam & Montague 2001. log_odds_r
            document (or p beyond the table)            per rank band 1-5, 6-10, 11-15,
            adds log(0.001 / 0.999)                     16-20, 21-30, 31-100, 101-200,
                                                        201-500, 501-1000: log(P / (1 - P)),
                                                        P the mean precision in the band
                                                        (0 -> 0.001; 1 - P = 0 -> 0.001)
mapfuse     sum_r MAP_r / p_r                           Lillis et al. 2010; MAP_r from
                                                        rank.evaluate
posfuse     sum_r P_r(p_r) (0 past the table)           Lillis et al. 2010; P_r(p): fraction
                                                        of the training queries with at
                                                        least p documents whose p-th is
                                                        relevant
probfuse    sum_r P_r(k) / k, k the 1-based segment     Lillis et al. 2006; each ranking of
            of p when the run's list for the query      length L is cut into n_segments of
            is cut into n_segments                      ceil(L / n_segments); P_r(k): mean
                                                        over the queries of the fraction of
                                                        relevant documents in segment k
segfuse     sum_r P_r(k) * (s_r + 1), k the segment     Shokouhi 2007; segments 1-5, 6-15,
            of p (0 past rank 5115)                     16-35, ... (10 * 2**(k-1) - 5 ends)
slidefuse   sum_r mean of P_r over ranks                Lillis et al. 2008; P_r as posfuse
            max(p - w, 1) .. min(p + w, L)              (window sums stop at the table's end)
==========  ==========================================  ====================================
"""
from __future__ import annotations

import math

import numpy as np

from rank.fusion._registry import REQUIRED, Param, integer, method, per_run_arrays, per_run_numbers
from rank.fusion.grids import int_range

__all__ = ["BAYES_CUTOFFS", "SEGFUSE_BOUNDS", "MIN_LOG_ODDS"]

#: BayesFuse's rank bands (0-based starts; the last value ends the table).
BAYES_CUTOFFS = (0, 5, 10, 15, 20, 30, 100, 200, 500, 1000)
#: SegFuse's segment bounds (0-based): 0, 5, 15, 35, ..., 10 * 2**9 - 5.
SEGFUSE_BOUNDS = (0,) + tuple(10 * 2 ** (k - 1) - 5 for k in range(1, 11))
#: BayesFuse's log odds for a document a run did not retrieve.
MIN_LOG_ODDS = math.log(0.001 / 0.999)


def _tables(name):
    return Param(REQUIRED, per_run_arrays, per_run=True, doc=f"trained {name}, one array per run")


def _position_probs(hit_lists):
    """P(p): over the queries with at least p+1 documents, the fraction whose p-th is relevant."""
    longest = max((h.shape[0] for h in hit_lists), default=0)
    num = np.zeros(longest)
    den = np.zeros(longest)
    for h in hit_lists:
        num[:h.shape[0]] += h
        den[:h.shape[0]] += 1
    return num / np.maximum(den, 1)


# --- BayesFuse ------------------------------------------------------------------------------------

def _train_bayesfuse(ctx, hits, params, **_):
    out = []
    for lists in hits:
        odds = np.zeros(BAYES_CUTOFFS[-1])
        nq = max(len(lists), 1)
        for a, b in zip(BAYES_CUTOFFS[:-1], BAYES_CUTOFFS[1:]):
            prec = sum(float(h[a:b].sum()) / (b - a) for h in lists) / nq
            if prec == 0:
                prec += 0.001
            neg = 1 - prec
            if neg == 0:
                neg += 0.001
            odds[a:b] = math.log(prec / neg)
        out.append(odds)
    return {"log_odds": out}


def _lookup(tables, ctx, default):
    """tables[run][rank] per entry, `default` past a table's end."""
    out = np.full(ctx.rank.shape[0], default, np.float64)
    run = ctx.run
    for r, t in enumerate(tables):
        sel = np.flatnonzero((run == r) & (ctx.rank < t.shape[0]))
        out[sel] = t[ctx.rank[sel]]
    return out


@method("bayesfuse", "sum", ranks=True, params={"log_odds": _tables("log odds")},
        trainer=_train_bayesfuse, train_params=("log_odds",), aliases=("bayes_fuse",))
def bayesfuse(ctx, log_odds):
    """BayesFuse: the sum of each run's trained log odds of relevance at the document's rank."""
    fill = np.full(ctx.seg_length.shape[0], MIN_LOG_ODDS)
    return _lookup(log_odds, ctx, MIN_LOG_ODDS), fill


# --- MAPFuse --------------------------------------------------------------------------------------

def _train_mapfuse(ctx, hits, params, *, qrels, run_dicts, relevance_level, **_):
    from rank.evaluate import evaluate

    return {"map_scores": np.array([evaluate(qrels, run, "map", relevance_level=relevance_level,
                                             n_threads=ctx.n_threads)["map"] for run in run_dicts])}


@method("mapfuse", "sum", ranks=True,
        params={"map_scores": Param(REQUIRED, per_run_numbers, per_run=True, doc="trained MAP per run")},
        trainer=_train_mapfuse, train_params=("map_scores",), aliases=("map_fuse",))
def mapfuse(ctx, map_scores):
    """MAPFuse: the sum of each run's training MAP divided by the document's rank."""
    return map_scores[ctx.run] / (ctx.rank + 1.0), None


# --- PosFuse --------------------------------------------------------------------------------------

def _train_positions(ctx, hits, params, **_):
    return {"probs": [_position_probs(lists) for lists in hits]}


@method("posfuse", "sum", ranks=True, params={"probs": _tables("probabilities")},
        trainer=_train_positions, train_params=("probs",), aliases=("pos_fuse",))
def posfuse(ctx, probs):
    """PosFuse: the sum of each run's trained probability of relevance at the document's rank."""
    return _lookup(probs, ctx, 0.0), None


# --- ProbFuse -------------------------------------------------------------------------------------

def _train_probfuse(ctx, hits, params, **_):
    n_seg = params.get("n_segments")
    if n_seg is None:
        from rank.errors import InvalidValueError
        raise InvalidValueError("params: training 'probfuse' needs 'n_segments' (e.g. params={'n_segments': 10})")
    out = []
    for lists in hits:
        probs = np.zeros(n_seg)
        for h in lists:
            size = -(-h.shape[0] // n_seg)
            if size == 0:
                continue
            for k in range(n_seg):
                seg = h[k * size:(k + 1) * size]
                if seg.shape[0]:
                    probs[k] += seg.mean()
        out.append(probs / max(len(lists), 1))
    return {"probs": out}


@method("probfuse", "sum", ranks=True,
        params={"probs": _tables("segment probabilities"), "n_segments": Param(None, integer(1))},
        trainer=_train_probfuse, train_params=("probs",), train_inputs=("n_segments",), aliases=("prob_fuse",),
        grid=lambda n_runs, min_n_segments=1, max_n_segments=100: [
            {"n_segments": n} for n in int_range(min_n_segments, max_n_segments)])
def probfuse(ctx, probs, n_segments=None):
    """ProbFuse: the sum of each run's trained probability of its segment, divided by the segment number."""
    n_seg = probs[0].shape[0]
    if any(p.shape[0] != n_seg for p in probs) or n_seg == 0 or (n_segments is not None and n_segments != n_seg):
        from rank.errors import ShapeError
        raise ShapeError(f"probs: expected n_segments ({n_segments or 'as many as the first run has'}) "
                         f"values per run, got {[p.shape[0] for p in probs]}")
    size = -(-ctx.length // n_seg)
    seg = ctx.rank // np.maximum(size, 1)
    table = np.stack(probs)
    return table[ctx.run, seg] / (seg + 1.0), None


# --- SegFuse --------------------------------------------------------------------------------------

def _train_segfuse(ctx, hits, params, **_):
    out = []
    for lists in hits:
        probs = np.zeros(len(SEGFUSE_BOUNDS) - 1)
        for h in lists:
            for k, (a, b) in enumerate(zip(SEGFUSE_BOUNDS[:-1], SEGFUSE_BOUNDS[1:])):
                probs[k] += h[a:b].sum() / (b - a)
        out.append(probs / max(len(lists), 1))
    return {"probs": out}


@method("segfuse", "sum", ranks=True, scores=True, params={"probs": _tables("segment probabilities")},
        trainer=_train_segfuse, train_params=("probs",), aliases=("seg_fuse",))
def segfuse(ctx, probs):
    """SegFuse: the sum of each run's trained segment probability times (normalised score + 1)."""
    seg = np.searchsorted(np.asarray(SEGFUSE_BOUNDS), ctx.rank, side="right") - 1
    p = np.zeros(ctx.rank.shape[0])
    for r, t in enumerate(probs):
        sel = np.flatnonzero((ctx.run == r) & (seg < min(t.shape[0], len(SEGFUSE_BOUNDS) - 1)))
        p[sel] = t[seg[sel]]
    return p * (ctx.score + 1.0), None


# --- SlideFuse ------------------------------------------------------------------------------------

@method("slidefuse", "sum", ranks=True,
        params={"probs": _tables("probabilities"), "w": Param(REQUIRED, integer(0))},
        trainer=_train_positions, train_params=("probs",), aliases=("slide_fuse",),
        grid=lambda n_runs, min_w=1, max_w=100: [{"w": w} for w in int_range(min_w, max_w)])
def slidefuse(ctx, probs, w):
    """SlideFuse: the sum of each run's trained probabilities averaged over a window of ranks +- w."""
    out = np.empty(ctx.rank.shape[0])
    lo = np.maximum(ctx.rank - w, 0)
    hi = np.minimum(ctx.rank + w, ctx.length - 1)
    for r, t in enumerate(probs):
        sel = np.flatnonzero(ctx.run == r)
        cs = np.concatenate(([0.0], np.cumsum(t)))
        n = t.shape[0]
        a = np.minimum(lo[sel], n)
        b = np.minimum(hi[sel] + 1, n)
        out[sel] = (cs[b] - cs[a]) / (hi[sel] - lo[sel] + 1)
    return out, None
