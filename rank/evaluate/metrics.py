"""Ranking metrics with trec_eval's exact conventions, computed by a compiled kernel.

Conventions (those of trec_eval, and so of pytrec_eval):

- Each query's documents are ordered by score descending; equal scores are ordered by
  document id in descending string order.
- A document is relevant when its qrels grade is >= `relevance_level`; documents missing from
  the qrels (unjudged) are non-relevant. nDCG uses the grade itself as the gain (any grade
  > 0 counts, whatever `relevance_level`), or ``2**grade - 1`` for ``ndcg_exp``; the ideal
  ranking sorts every judged document of the query by grade.
- Only the queries present both in the run and (with at least one judgement) in the qrels are
  evaluated, exactly as pytrec_eval does: a query of the qrels absent from the run gets no
  value and does not enter the mean (trec_eval's default; its ``-c`` option would count it as
  0), a query of the run absent from the qrels is ignored, and a query of the run with no
  documents scores 0 on every measure.
"""
from __future__ import annotations

import re
from typing import Any, Mapping, Sequence, Union

import numpy as np

from rank._validate import resolve_threads
from rank.errors import DTypeError, InvalidValueError, NonFiniteError, ShapeError, UnknownMethodError
from rank_kernels import evaluate as _kernel

__all__ = ["evaluate", "METRICS"]

Run = Mapping[str, Mapping[str, float]]
Qrels = Mapping[str, Mapping[str, int]]

# name -> (kernel code, whether a cutoff is required, whether a cutoff is allowed)
_BASE = {
    "ndcg": (_kernel.NDCG, False, True),
    "ndcg_exp": (_kernel.NDCG_EXP, False, True),
    "map": (_kernel.MAP, False, True),
    "mrr": (_kernel.RECIP_RANK, False, True),
    "recip_rank": (_kernel.RECIP_RANK, False, False),
    "precision": (_kernel.PRECISION, True, True),
    "recall": (_kernel.RECALL, False, True),
    "r_precision": (_kernel.R_PRECISION, False, False),
    "hit_rate": (_kernel.HIT_RATE, True, True),
    "bpref": (_kernel.BPREF, False, False),
}

#: Every valid metric name (``@k`` marks a cutoff: ``"ndcg@10"``; ``[@k]`` an optional one).
METRICS = ("ndcg[@k]", "ndcg_exp[@k]", "map[@k]", "mrr[@k]", "recip_rank", "precision@k",
           "recall[@k]", "r_precision", "hit_rate@k", "bpref")

_NAME = re.compile(r"^([a-z_]+)(?:@(.*))?$")


def parse_metric(name: object) -> tuple[int, int]:
    """(kernel code, cutoff or 0) of a metric name; UnknownMethodError / InvalidValueError."""
    if not isinstance(name, str):
        raise UnknownMethodError(f"metrics: expected metric names (str), got {name!r}; valid: {', '.join(METRICS)}")
    m = _NAME.match(name.strip().lower())
    base = m.group(1) if m else None
    if base not in _BASE:
        raise UnknownMethodError(f"metrics: unknown metric {name!r}; valid: {', '.join(METRICS)}")
    code, required, allowed = _BASE[base]
    assert m is not None  # base is in _BASE only when the pattern matched
    cut = m.group(2)
    if cut is None:
        if required:
            raise InvalidValueError(f"metrics: {name!r} needs a cutoff, e.g. '{base}@10'")
        return code, 0
    if not allowed:
        raise InvalidValueError(f"metrics: {name!r} takes no cutoff (use '{base}')")
    try:
        k = int(cut)
    except ValueError:
        raise InvalidValueError(f"metrics: cutoff of {name!r} must be a positive integer, got {cut!r}") from None
    if k <= 0:
        raise InvalidValueError(f"metrics: cutoff of {name!r} must be a positive integer, got {k}")
    return code, k


def _metric_list(metrics: Union[str, Sequence[str]]) -> list[str]:
    if isinstance(metrics, str):
        return [metrics]
    try:
        names = list(metrics)
    except TypeError:
        raise UnknownMethodError(f"metrics: expected a name or a list of names, got {metrics!r}") from None
    if not names:
        raise InvalidValueError(f"metrics: expected at least one metric; valid: {', '.join(METRICS)}")
    return names


def _check_dict(x: object, name: str) -> dict:
    if not isinstance(x, dict):
        if isinstance(x, Mapping):
            return {q: (d if isinstance(d, dict) else dict(d)) for q, d in x.items()}
        raise DTypeError(f"{name}: expected a dict {{qid: {{docid: value}}}}, got {type(x).__name__}")
    return x


def sort_run(offsets: np.ndarray, scores: np.ndarray, doc_lists: Any, n_threads: int) -> np.ndarray:
    """Positions of each segment's entries in trec_eval order (score desc, docid desc).

    `doc_lists(q)` returns the document ids of segment q (a list of str, in position order); it
    is called only for segments holding equal scores.
    """
    perm = np.empty(scores.shape[0], np.int64)
    tied = np.empty(offsets.shape[0] - 1, np.uint8)
    _kernel.sort_segments(offsets, scores, perm, tied, n_threads)
    for q in np.flatnonzero(tied):
        lo, hi = int(offsets[q]), int(offsets[q + 1])
        p = perm[lo:hi]
        s = scores[p]
        docs = doc_lists(q)
        starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1], True])
        for a, b in zip(starts[:-1], starts[1:]):
            if b - a > 1:
                seg = p[a:b].tolist()
                seg.sort(key=lambda i: docs[i - lo], reverse=True)
                p[a:b] = seg
    return perm


def _first_nan(qids, offsets, scores, run):
    bad = int(np.flatnonzero(~np.isfinite(scores))[0])
    q = int(np.searchsorted(offsets, bad, side="right") - 1)
    doc = list(run[qids[q]])[bad - int(offsets[q])]
    raise NonFiniteError(f"run[{qids[q]!r}][{doc!r}]: score is {scores[bad]} (scores must be finite)")


def _evaluate_arrays(qrels: Qrels, run: Run, codes: np.ndarray, ks: np.ndarray, relevance_level: int,
                     n_threads: int) -> Any:
    """(qids, values float64 (n_queries, n_metrics)) for the queries in both run and qrels."""
    run = _check_dict(run, "run")
    qrels = _check_dict(qrels, "qrels")
    if not run:
        raise ShapeError("run: expected at least one query, got an empty run")
    if not qrels:
        raise ShapeError("qrels: expected at least one query, got empty qrels")
    try:
        qids, offsets, scores, grades, qoffsets, qgrades = _kernel.encode_run(run, qrels)
    except TypeError as e:
        raise DTypeError(str(e)) from None
    if scores.size and not np.isfinite(scores).all():
        _first_nan(qids, offsets, scores, run)
    perm = sort_run(offsets, scores, lambda q: list(run[qids[q]]), n_threads)
    out = np.empty((len(qids), codes.shape[0]), np.float64)
    _kernel.metrics(offsets, perm, grades, qoffsets, qgrades, codes, ks, relevance_level, out, n_threads)
    return qids, out


def evaluate(qrels: Qrels, run: Run, metrics: Union[str, Sequence[str]], *, per_query: bool = False,
             relevance_level: int = 1, n_threads: int | None = None) -> dict[str, Any]:
    """Evaluate a run against relevance judgements, with trec_eval's exact conventions.

    Parameters
    ----------
    qrels : dict ``{qid: {docid: grade}}``
        Relevance grades (int; >= `relevance_level` is relevant, see :func:`read_qrels`).
    run : dict ``{qid: {docid: score}}``
        Retrieval scores (int or float, finite), as pytrec_eval and ranx take them; the
        order of the inner dicts does not matter (see :func:`read_run`).
    metrics : str or list of str
        Names from ``METRICS``: ``"ndcg@k"``/``"ndcg"`` (gain = grade, log2 discount),
        ``"ndcg_exp@k"`` (gain ``2**grade - 1``), ``"map"``/``"map@k"``, ``"mrr@k"``/``"mrr"``/
        ``"recip_rank"``, ``"precision@k"`` (always divided by k), ``"recall@k"``/``"recall"``,
        ``"r_precision"``, ``"hit_rate@k"``, ``"bpref"``.
    per_query : bool, default False
        False: ``{metric: mean over the evaluated queries}``. True: ``{qid: {metric: value}}``
        (pytrec_eval's layout).
    relevance_level : int, default 1
        Smallest grade that counts as relevant.
    n_threads : int, optional
        Threads for the kernels (default: every core).

    Returns
    -------
    dict of float, or dict of dict of float (see `per_query`). The queries evaluated are those in
    both `run` and `qrels` (with at least one judgement), as with pytrec_eval: a query of the
    qrels absent from the run is left out rather than counted as 0.

    Complexity: one pass over the run's dict items, then O(n log n) per query of n documents
    (sorted in parallel without the GIL) and O(n) per metric.

    Raises DTypeError (a score or grade is not a number), NonFiniteError (NaN/inf score),
    ShapeError (empty run or qrels, or no query in common), UnknownMethodError (unknown metric;
    the message lists the valid ones), InvalidValueError (cutoff <= 0).

    >>> qrels = {"q1": {"d1": 2, "d2": 0, "d3": 1}}
    >>> run = {"q1": {"d1": 0.5, "d2": 0.9, "d4": 0.1}}
    >>> evaluate(qrels, run, ["map", "mrr", "precision@2"])
    {'map': 0.25, 'mrr': 0.5, 'precision@2': 0.5}
    """
    names = _metric_list(metrics)
    parsed = [parse_metric(n) for n in names]
    if isinstance(relevance_level, (bool, np.bool_)) or not isinstance(relevance_level, (int, np.integer)):
        raise InvalidValueError(f"relevance_level: expected an integer, got {relevance_level!r}")
    codes = np.array([c for c, _ in parsed], np.int32)
    ks = np.array([k for _, k in parsed], np.int64)
    qids, out = _evaluate_arrays(qrels, run, codes, ks, int(relevance_level), resolve_threads(n_threads))
    if not qids:
        raise ShapeError("run: no query of the run has judgements in qrels")
    if per_query:
        rows = out.tolist()
        return {q: dict(zip(names, row)) for q, row in zip(qids, rows)}
    return dict(zip(names, out.mean(axis=0).tolist()))
