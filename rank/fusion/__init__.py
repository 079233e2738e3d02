"""Rank fusion: combine several runs (or score matrices) into one ranking.

:func:`fuse` takes runs as ``{qid: {docid: score}}`` dicts and returns the fused run;
:func:`fuse_scores` takes score matrices over a shared candidate list (a service's hybrid
search: one row per query, one column per candidate, NaN where a retriever did not return the
candidate) and returns the fused score matrix. :func:`train_fusion` learns the tables of the
trained methods from relevance judgements; :func:`optimize_fusion` searches a method's weights
or parameter on judgements for the metric of your choice, like ranx's ``optimize_fusion``.

Methods (the 25 of ranx; ranx's names are accepted as aliases: "sum", "mnz", "bordafuse",
"w_condorcet", ...). The formulas are in the docstrings of the family modules:

- score-based (:mod:`rank.fusion.score`): combsum, combmnz, combmax, combmin, combanz,
  combmed, combgmnz (gamma), wsum, wmnz, mixed (weights);
- rank-based (:mod:`rank.fusion.rank_based`): rrf (k), isr, log_isr, logn_isr (sigma),
  rbc (phi), borda, wborda, condorcet, wcondorcet (weights);
- trained on qrels (:mod:`rank.fusion.trained`): bayesfuse, mapfuse, posfuse, probfuse
  (n_segments), segfuse, slidefuse (w).

Normalisations (:mod:`rank.fusion.normalize`), per run and query before fusion: None,
"min-max", "min-max-inverted", "max", "sum", "zmuv" ("z-score"), "rank", "borda".

Ranks follow trec_eval's order in :func:`fuse` (score descending, equal scores by document id
descending; ranx keeps the input order of equal scores, so on tied runs the rank-based
methods can differ from ranx), and column order in :func:`fuse_scores`. The fused run lists
each query's documents by fused score descending; equal fused scores keep the order in which
the documents first appear (run 0 first); :func:`rank.evaluate.evaluate` re-sorts with
trec_eval's rule anyway. A fused score that overflows float64 raises NonFiniteError instead of
being written as ``inf``.

Adding a method: one function registered with ``@method(...)`` in its family module (see
:mod:`rank.fusion._registry`); a new way to merge the runs' contributions is one more entry of
the kernel's ``CombineRule`` enum and ``COMBINE`` table in ``rank_kernels/fusion.pyx``.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import numpy as np
from numpy.typing import ArrayLike

from rank._validate import as_float_array, resolve_threads
from rank.errors import InvalidValueError, NonFiniteError, ShapeError
from rank.fusion import normalize as _normalize  # noqa: F401  (registers the normalisations)
from rank.fusion import rank_based as _rank_based  # noqa: F401  (registers the methods)
from rank.fusion import score as _score  # noqa: F401
from rank.fusion import trained as _trained  # noqa: F401
from rank.fusion._engine import Context, check_finite_output, dict_context, merge, to_dict, train
from rank.fusion._registry import METHODS as _METHODS
from rank.fusion._registry import NORMS as _NORMS
from rank.fusion._registry import Method, get_method, get_norm, real, resolve_params
from rank.fusion.optimize import optimize_fusion

__all__ = ["fuse", "fuse_scores", "train_fusion", "optimize_fusion", "METHODS", "NORMS"]

#: Valid `method` names (ranx's names are also accepted, see the module docstring).
METHODS = tuple(_METHODS)
#: Valid `norm` names (None: the scores as given).
NORMS = tuple(_NORMS)

_check_k = real(0.0)


def method_params(m: Method, params: Optional[Mapping[str, Any]], weights: Any, k: Any, n_runs: int,
                  *, need_trained: bool = True) -> dict:
    """The checked parameters of `m` from `params` and the `weights` / `k` shortcuts."""
    _check_k("k", k)
    p = dict(params) if params is not None else {}
    if params is not None and not isinstance(params, Mapping):
        from rank.errors import DTypeError
        raise DTypeError(f"params: expected a dict of method parameters, got {type(params).__name__}")
    if weights is not None:
        if "weights" not in m.params:
            weighted = ", ".join(repr(n) for n, x in _METHODS.items() if "weights" in x.params)
            raise InvalidValueError(f"weights: method {m.name!r} takes no weights; weighted methods: {weighted}")
        if "weights" in p:
            raise InvalidValueError("weights: given both as weights= and in params")
        p["weights"] = weights
    if "k" in m.params and "k" not in p:
        p["k"] = k
    return resolve_params(m, p, n_runs, need_trained=need_trained)


def _needs_training(m: Method, params: Optional[Mapping[str, Any]]) -> bool:
    return m.trainer is not None and any(params is None or params.get(t) is None for t in m.train_params)


def fuse(runs: Sequence[Mapping[str, Mapping[str, float]]], method: str = "rrf", norm: Optional[str] = None,
         weights: Optional[ArrayLike] = None, k: float = 60, *, params: Optional[Mapping[str, Any]] = None,
         qrels: Optional[Mapping[str, Mapping[str, int]]] = None, relevance_level: int = 1,
         n_threads: Optional[int] = None) -> dict[str, dict[str, float]]:
    """Fuse several runs ``{qid: {docid: score}}`` into one, as ranx.fuse defines the methods.

    Parameters
    ----------
    runs : sequence of dicts ``{qid: {docid: score}}``
        At least one run; scores are finite numbers. A query missing from a run counts as an
        empty result list for that run.
    method : str, default "rrf"
        One of ``METHODS`` (or a ranx name such as "sum", "mnz", "bordafuse", "w_condorcet").
    norm : str or None, default None
        Score normalisation applied per run and query first: one of ``NORMS``.
    weights : array-like of float, shape (n_runs,), optional
        Per-run weights of the weighted methods (wsum, wmnz, mixed, wborda, wcondorcet;
        default all 1); same as ``params={"weights": ...}``.
    k : float, default 60
        The RRF constant (>= 0); same as ``params={"k": ...}``.
    params : dict, optional
        The method's parameters by ranx's names: "k" (rrf), "phi" (rbc, in [0, 1]), "gamma"
        (combgmnz), "sigma" (logn_isr, default 0.01), "w" (slidefuse), "weights", and the
        trained tables "log_odds" (bayesfuse), "map_scores" (mapfuse), "probs" (posfuse,
        probfuse, segfuse, slidefuse), as :func:`train_fusion` or :func:`optimize_fusion`
        return them (ranx's trained values are accepted as they are).
    qrels : dict ``{qid: {docid: grade}}``, optional
        Training judgements for a trained method given without its tables: they are learnt on
        `runs` first (``train_fusion(qrels, runs, method, norm, params=params)``).
    relevance_level : int, default 1
        Smallest grade counted as relevant when training.
    n_threads : int, optional
        Threads for the kernels (default: every core; clamped by ``rank._validate.resolve_threads``).

    Returns
    -------
    dict ``{qid: {docid: fused score}}``: every query of any run, each listing the union of
    its documents by fused score descending (equal scores in order of first appearance).

    Complexity: one pass over the input items to intern ids, O(n log n) per (query, run) to
    rank (rank-based methods and "rank"/"borda"), vectorised O(n) per entry for the
    contributions, O(n * n_runs) per query to merge (no hashing inside the kernel; Condorcet
    O(c log c * n_runs) for c candidates), one pass to build the output dicts.

    Raises ShapeError (no run, no document, wrong number of weights or trained tables),
    DTypeError (a score is not a number), NonFiniteError (NaN/inf score, or a fused score that
    overflows float64), UnknownMethodError (method or norm; the valid names are listed and the
    nearest suggested), InvalidValueError (weights for an unweighted method, a parameter out of
    range or missing, qrels for an untrained method).

    >>> a = {"q": {"d1": 3.0, "d2": 2.0, "d3": 1.0}}
    >>> b = {"q": {"d3": 0.9, "d1": 0.5}}
    >>> fuse([a, b], method="rrf", k=1)
    {'q': {'d1': 0.8333333333333333, 'd3': 0.75, 'd2': 0.3333333333333333}}
    >>> fuse([a, b], method="rbc", params={"phi": 0.5})
    {'q': {'d1': 0.75, 'd3': 0.625, 'd2': 0.25}}
    """
    m = get_method(method)
    nm = get_norm(norm)
    if qrels is not None and m.trainer is None:
        trained = ", ".join(repr(n) for n, x in _METHODS.items() if x.trainer is not None)
        raise InvalidValueError(f"qrels: method {m.name!r} is not trained; trained methods: {trained}")
    training = qrels is not None and _needs_training(m, params)
    n_threads = resolve_threads(n_threads)
    ctx, runs, qids, names = dict_context(runs, nm, n_threads)
    p = method_params(m, params, weights, k, ctx.n_runs, need_trained=not training)
    if training:
        p = resolve_params(m, train(ctx, m, p, qrels, relevance_level, runs, qids, names), ctx.n_runs)
    fdocs, fscores, offsets = merge(ctx, m, p)
    check_finite_output(fscores, offsets, fdocs, qids, names, m, nm)
    return to_dict(ctx, fdocs, fscores, offsets, qids, names)


def train_fusion(qrels: Mapping[str, Mapping[str, int]], runs: Sequence[Mapping[str, Mapping[str, float]]],
                 method: str, norm: Optional[str] = None, *, params: Optional[Mapping[str, Any]] = None,
                 relevance_level: int = 1, n_threads: Optional[int] = None) -> dict[str, Any]:
    """Learn a trained method's tables from judgements (ranx's ``*_train`` functions).

    Parameters
    ----------
    qrels : dict ``{qid: {docid: grade}}``
        Training judgements; every query of `qrels` is a training query (a run lacking it
        contributes an empty ranking).
    runs : sequence of dicts ``{qid: {docid: score}}``
        The training runs of each system, in the order they will be fused.
    method : str
        "bayesfuse", "mapfuse", "posfuse", "probfuse", "segfuse" or "slidefuse".
    norm : str or None
        The normalisation that will be used (it matters when it reorders: "min-max-inverted").
    params : dict, optional
        Training options and other parameters, kept in the result: "n_segments" (probfuse,
        required), "w" (slidefuse).
    relevance_level : int, default 1
        Smallest grade counted as relevant.

    Returns
    -------
    dict: `params` plus the trained tables ("log_odds", "map_scores" or "probs": one float64
    array per run), ready for ``fuse(test_runs, method, norm, params=...)``.

    Complexity: one pass over each run's entries of the judged queries (O(total entries)),
    plus rank.evaluate for mapfuse.

    >>> qrels = {"q": {"d1": 1}}
    >>> run_a = {"q": {"d1": 2.0, "d2": 1.0}}
    >>> run_b = {"q": {"d2": 2.0, "d1": 1.0}}
    >>> [p.tolist() for p in train_fusion(qrels, [run_a, run_b], "posfuse")["probs"]]
    [[1.0, 0.0], [0.0, 1.0]]
    """
    m = get_method(method)
    if m.trainer is None:
        trained = ", ".join(repr(n) for n, x in _METHODS.items() if x.trainer is not None)
        raise InvalidValueError(f"method: {m.name!r} is not trained; trained methods: {trained}")
    nm = get_norm(norm)
    ctx, runs, qids, names = dict_context(runs, nm, resolve_threads(n_threads))
    p = resolve_params(m, params, ctx.n_runs, partial=True)
    p = {key: v for key, v in p.items() if v is not None}
    return train(ctx, m, p, qrels, relevance_level, runs, qids, names)


def fuse_scores(scores: ArrayLike, method: str = "rrf", norm: Optional[str] = None,
                weights: Optional[ArrayLike] = None, k: float = 60, *, params: Optional[Mapping[str, Any]] = None,
                n_threads: Optional[int] = None) -> np.ndarray:
    """Fuse score matrices over a shared candidate list (the array form of :func:`fuse`).

    Parameters
    ----------
    scores : array-like, shape (n_runs, n_queries, n_candidates) or a list of n_runs arrays
        (n_queries, n_candidates), float
        ``scores[r, q, c]`` is run r's score of candidate c for query q; NaN means run r did not
        retrieve c (infinite values are rejected).
    method, norm, weights, k, params, n_threads
        As for :func:`fuse` (trained methods need their tables in `params`). Ranks are by
        score descending, equal scores by column ascending.

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
    m = get_method(method)
    nm = get_norm(norm)
    nr, nq, nc = s.shape
    p = method_params(m, params, weights, k, nr)
    n_threads = resolve_threads(n_threads)
    st = np.ascontiguousarray(s.transpose(1, 0, 2))  # (nq, nr, nc): segments query-major
    flat = st.reshape(-1)
    present = np.flatnonzero(~np.isnan(flat))
    seg = present // nc
    seg_off = np.zeros(nq * nr + 1, np.int64)
    np.cumsum(np.bincount(seg, minlength=nq * nr), out=seg_off[1:])
    docs = (present % nc).astype(np.int64)
    vals = np.ascontiguousarray(flat[present])
    cands = (~np.isnan(st)).any(axis=1).sum(axis=1).astype(np.int64)
    ctx = Context(seg_off, docs, vals, nr, cands, nc, nm, n_threads)
    fdocs, fscores, offsets = merge(ctx, m, p)
    check_finite_output(fscores, offsets, fdocs, list(range(nq)), None, m, nm)
    out = np.full((nq, nc), np.nan)
    rows = np.repeat(np.arange(nq), np.diff(offsets))
    out[rows, fdocs] = fscores
    return out
