"""Rank fusion: combine several runs (or score matrices) into one ranking.

:func:`fuse` takes runs as ``{qid: {docid: score}}`` dicts and returns the fused run;
:func:`fuse_scores` takes score matrices over a shared candidate list (a service's hybrid
search: one row per query, one column per candidate, NaN where a retriever did not return the
candidate) and returns the fused score matrix.

Definitions (as in ranx.fuse; r ranges over the runs that retrieved the document, rank_r is
its 1-based rank in run r, s_r its score after the normalisation `norm`):

=========  ==============================================================================
rrf        sum_r 1 / (k + rank_r)
isr        n_r * sum_r 1 / rank_r**2            (n_r: number of runs retrieving the doc)
combsum    sum_r s_r
combmnz    n_r * sum_r s_r
combmax    max_r s_r
combmin    min_r s_r
combanz    sum_r s_r / n_r
combmed    median_r s_r
wsum       sum_r w_r s_r                       (weights default to 1)
borda      sum over all runs of (c - rank_r + 1), or (c - len(run) + 1) / 2 for a run
           that did not retrieve the doc (c: candidates of the query over all runs)
=========  ==============================================================================

Normalisations (per run and query, over that run's documents): ``"min-max"``
(s - min) / (max - min), ``"zmuv"`` (s - mean) / std, ``"sum"`` (s - min) / (sum - n min),
``"max"`` s / max, ``"rank"`` 1 - (rank - 1) / n; each denominator is floored at 1e-9, as in
ranx. Rank-based methods (rrf, isr, borda) ignore `norm`. Ranks follow trec_eval's order
(score descending, equal scores by document id descending) in :func:`fuse`, and by column
ascending in :func:`fuse_scores`. The fused run lists each query's documents by fused score
descending; equal fused scores (frequent with rrf and borda) keep the order in which the
documents first appear (run 0 in rank order, then the documents only run 1 has, ...), which
avoids string comparisons; :func:`rank.evaluate.evaluate` re-sorts with trec_eval's rule anyway.
"""
from __future__ import annotations

import math
from typing import Mapping, Optional, Sequence

import numpy as np
from numpy.typing import ArrayLike

from rank._validate import as_float_array, resolve_threads
from rank.errors import DTypeError, InvalidValueError, NonFiniteError, ShapeError, UnknownMethodError
from rank.evaluate.metrics import sort_run
from rank_kernels import evaluate as _ev
from rank_kernels import fusion as _kernel

__all__ = ["fuse", "fuse_scores", "METHODS", "NORMS"]

_METHODS = {
    "rrf": _kernel.RRF, "combsum": _kernel.COMBSUM, "combmnz": _kernel.COMBMNZ,
    "combmax": _kernel.COMBMAX, "combmin": _kernel.COMBMIN, "combanz": _kernel.COMBANZ,
    "combmed": _kernel.COMBMED, "borda": _kernel.BORDA, "isr": _kernel.ISR, "wsum": _kernel.WSUM,
}
_NORMS = {None: _kernel.NORM_NONE, "min-max": _kernel.NORM_MINMAX, "zmuv": _kernel.NORM_ZMUV,
          "sum": _kernel.NORM_SUM, "max": _kernel.NORM_MAX, "rank": _kernel.NORM_RANK}
_RANKED = {_kernel.RRF, _kernel.ISR, _kernel.BORDA}

#: Valid `method` names.
METHODS = tuple(_METHODS)
#: Valid `norm` names (None: the scores as given).
NORMS = tuple(_NORMS)


def _options(method, norm, weights, k, n_runs):
    if method not in _METHODS:
        raise UnknownMethodError(f"method: unknown fusion method {method!r}; valid: {', '.join(map(repr, METHODS))}")
    if norm not in _NORMS:
        raise UnknownMethodError(f"norm: unknown normalisation {norm!r}; valid: {', '.join(map(repr, NORMS))}")
    code = _METHODS[method]
    if weights is not None and code != _kernel.WSUM:
        raise InvalidValueError(f"weights: only method='wsum' takes weights, got method={method!r}")
    if weights is None:
        w = np.ones(n_runs, np.float64)
    else:
        w = as_float_array(weights, "weights", 1, dtypes=(np.dtype(np.float64),), default=np.float64)
        if w.shape[0] != n_runs:
            raise ShapeError(f"weights: expected one weight per run ({n_runs}), got {w.shape[0]}")
    if isinstance(k, bool) or not isinstance(k, (int, float, np.integer, np.floating)) or not math.isfinite(k) or k < 0:
        raise InvalidValueError(f"k: expected a finite number >= 0, got {k!r}")
    return code, _NORMS[norm], w, float(k)


def fuse(runs: Sequence[Mapping[str, Mapping[str, float]]], method: str = "rrf", norm: Optional[str] = None,
         weights: Optional[ArrayLike] = None, k: float = 60, *, n_threads: Optional[int] = None
         ) -> dict[str, dict[str, float]]:
    """Fuse several runs ``{qid: {docid: score}}`` into one, as ranx.fuse defines the methods.

    Parameters
    ----------
    runs : sequence of dicts ``{qid: {docid: score}}``
        At least one run; scores are finite numbers. A query missing from a run counts as an
        empty result list for that run.
    method : str, default "rrf"
        One of ``METHODS``: "rrf", "combsum", "combmnz", "combmax", "combmin", "combanz",
        "combmed", "borda", "isr", "wsum" (see the module docstring for the formulas).
    norm : str or None, default None
        Score normalisation applied per run and query before a score-based method: None,
        "min-max", "zmuv", "sum", "max", "rank".
    weights : array-like of float, shape (n_runs,), optional
        Per-run weights, only for "wsum" (default: all 1).
    k : float, default 60
        The RRF constant (>= 0).
    n_threads : int, optional
        Threads for the kernel (default: every core).

    Returns
    -------
    dict ``{qid: {docid: fused score}}``: every query of any run, each listing the union of
    its documents by fused score descending (equal scores in order of first appearance).

    Complexity: one pass over the input items to intern ids, O(n log n) per (query, run) to
    rank, O(n * n_runs) per query to merge (no hashing inside the kernel), one pass to build
    the output dicts.

    Raises ShapeError (no run, or no document at all), DTypeError (a score is not a number),
    NonFiniteError (NaN/inf score), UnknownMethodError (method or norm; the valid names are
    listed), InvalidValueError (weights without "wsum", negative k).

    >>> a = {"q": {"d1": 3.0, "d2": 2.0, "d3": 1.0}}
    >>> b = {"q": {"d3": 0.9, "d1": 0.5}}
    >>> fuse([a, b], method="rrf", k=1)
    {'q': {'d1': 0.8333333333333333, 'd3': 0.75, 'd2': 0.3333333333333333}}
    """
    if isinstance(runs, Mapping) or not isinstance(runs, Sequence):
        raise DTypeError(f"runs: expected a list of runs {{qid: {{docid: score}}}}, got {type(runs).__name__}")
    runs = list(runs)
    if not runs:
        raise ShapeError("runs: expected at least one run, got none")
    for r, run in enumerate(runs):
        if not isinstance(run, dict):
            raise DTypeError(f"runs[{r}]: expected a dict {{qid: {{docid: score}}}}, got {type(run).__name__}")
    code, norm_code, w, kf = _options(method, norm, weights, k, len(runs))
    n_threads = resolve_threads(n_threads)
    try:
        qids, vocab, seg_off, docs, scores = _kernel.encode_runs(runs)
    except TypeError as e:
        raise DTypeError(str(e)) from None
    if scores.size == 0:
        raise ShapeError("runs: expected at least one document, every run is empty")
    nr = len(runs)
    if not np.isfinite(scores).all():
        bad = int(np.flatnonzero(~np.isfinite(scores))[0])
        seg = int(np.searchsorted(seg_off, bad, side="right") - 1)
        q, r = divmod(seg, nr)
        raise NonFiniteError(f"runs[{r}][{qids[q]!r}][{vocab[docs[bad]]!r}]: score is {scores[bad]} "
                             "(scores must be finite)")
    if code in _RANKED or norm_code == _kernel.NORM_RANK:
        perm = sort_run(seg_off, scores, lambda s: [vocab[d] for d in docs[seg_off[s]:seg_off[s + 1]]], n_threads)
    else:
        perm = np.arange(scores.shape[0], dtype=np.int64)
    out_docs = np.empty(scores.shape[0], np.int64)
    out_scores = np.empty(scores.shape[0], np.float64)
    counts = np.empty(len(qids), np.int64)
    _kernel.fuse(seg_off, docs, scores, perm, nr, len(vocab), code, norm_code, w, kf,
                 out_docs, out_scores, counts, n_threads)
    # Compact the per-query blocks, then order each query's documents.
    starts = seg_off[::nr][:-1]
    offsets = np.zeros(len(qids) + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    take = np.arange(offsets[-1], dtype=np.int64) + np.repeat(starts - offsets[:-1], counts)
    fdocs = out_docs[take]
    fscores = out_scores[take]
    order = np.empty(fscores.shape[0], np.int64)
    _ev.sort_segments(offsets, fscores, order, np.empty(len(qids), np.uint8), n_threads)
    names = np.asarray(vocab, dtype=object)[fdocs[order]].tolist()
    values = fscores[order].tolist()
    bounds = offsets.tolist()
    return {q: dict(zip(names[bounds[i]:bounds[i + 1]], values[bounds[i]:bounds[i + 1]]))
            for i, q in enumerate(qids)}


def fuse_scores(scores: ArrayLike, method: str = "rrf", norm: Optional[str] = None,
                weights: Optional[ArrayLike] = None, k: float = 60, *, n_threads: Optional[int] = None
                ) -> np.ndarray:
    """Fuse score matrices over a shared candidate list (the array form of :func:`fuse`).

    Parameters
    ----------
    scores : array-like, shape (n_runs, n_queries, n_candidates) or a list of n_runs arrays
        (n_queries, n_candidates), float
        ``scores[r, q, c]`` is run r's score of candidate c for query q; NaN means run r did not
        retrieve c (infinite values are rejected).
    method, norm, weights, k, n_threads
        As for :func:`fuse`. Ranks are by score descending, equal scores by column ascending.

    Returns
    -------
    numpy.ndarray, float64, shape (n_queries, n_candidates): fused scores, NaN for a candidate
    no run retrieved.

    Complexity: O(n_runs * n_queries * n_candidates) plus the per-(query, run) sorts for
    rank-based methods.

    >>> import numpy as np
    >>> s = np.array([[[3.0, 2.0, np.nan]], [[0.5, np.nan, 0.9]]])
    >>> fuse_scores(s, method="combsum", norm="max")
    array([[1.55555556, 0.66666667, 1.        ]])
    """
    if isinstance(scores, (list, tuple)) and scores and all(np.ndim(s) == 2 for s in scores):
        shapes = {np.shape(s) for s in scores}
        if len(shapes) > 1:
            raise ShapeError(f"scores: every run needs the same (n_queries, n_candidates) shape, got {sorted(shapes)}")
        scores = np.stack([np.asarray(s, np.float64) for s in scores])
    s = as_float_array(scores, "scores", 3, dtypes=(np.dtype(np.float64),), default=np.float64, check_finite=False)
    if np.isinf(s).any():
        raise NonFiniteError("scores: contains infinity (NaN marks a candidate a run did not retrieve)")
    nr, nq, nc = s.shape
    code, norm_code, w, kf = _options(method, norm, weights, k, nr)
    n_threads = resolve_threads(n_threads)
    st = np.ascontiguousarray(s.transpose(1, 0, 2))  # (nq, nr, nc): segments query-major
    flat = st.reshape(-1)
    present = np.flatnonzero(~np.isnan(flat))
    seg = present // nc
    seg_off = np.zeros(nq * nr + 1, np.int64)
    np.cumsum(np.bincount(seg, minlength=nq * nr), out=seg_off[1:])
    docs = (present % nc).astype(np.int64)
    vals = flat[present]
    if code in _RANKED or norm_code == _kernel.NORM_RANK:
        perm = np.empty(vals.shape[0], np.int64)
        tied = np.empty(nq * nr, np.uint8)
        _ev.sort_segments(seg_off, vals, perm, tied, n_threads)  # ties keep column order
    else:
        perm = np.arange(vals.shape[0], dtype=np.int64)
    out_docs = np.empty(vals.shape[0], np.int64)
    out_scores = np.empty(vals.shape[0], np.float64)
    counts = np.empty(nq, np.int64)
    _kernel.fuse(seg_off, docs, vals, perm, nr, nc, code, norm_code, w, kf, out_docs, out_scores, counts, n_threads)
    out = np.full((nq, nc), np.nan)
    starts = seg_off[::nr][:-1]
    offsets = np.zeros(nq + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    take = np.arange(offsets[-1], dtype=np.int64) + np.repeat(starts - offsets[:-1], counts)
    rows = np.repeat(np.arange(nq), counts)
    out[rows, out_docs[take]] = out_scores[take]
    return out
