"""Weight and parameter search for fusion on relevance judgements (ranx's ``optimize_fusion``)."""
from __future__ import annotations

import math
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from rank._validate import resolve_threads
from rank.errors import DTypeError, InvalidValueError

__all__ = ["optimize_fusion"]


def optimize_fusion(qrels: Mapping[str, Mapping[str, int]], runs: Sequence[Mapping[str, Mapping[str, float]]],
                    method: str = "wsum", norm: Optional[str] = None, metric: str = "ndcg", *,
                    grid: Optional[Sequence[Mapping[str, Any]]] = None, return_report: bool = False,
                    relevance_level: int = 1, n_threads: Optional[int] = None, **grid_options: Any) -> Any:
    """Search the weights or the parameter of a fusion method for the best `metric` on `qrels`.

    Each configuration of the grid fuses `runs` (encoded, ranked and normalised once) and is
    scored with ``rank.evaluate(qrels, fused, metric)``; the best one is returned, the later one
    on equal scores (as ranx). Trained methods are trained on `qrels` and `runs` first
    (probfuse once per n_segments of its grid; bayesfuse, mapfuse, posfuse and segfuse have
    nothing else to search and are trained only).

    Parameters
    ----------
    qrels : dict ``{qid: {docid: grade}}``
        Judgements (training queries).
    runs : sequence of dicts ``{qid: {docid: score}}``
        The runs to fuse, as for :func:`rank.fusion.fuse`.
    method : str, default "wsum"
        A method with weights (wsum, wmnz, mixed, wborda, wcondorcet), a parameter (rrf,
        rbc, combgmnz, logn_isr, probfuse, slidefuse) or trained tables (bayesfuse, mapfuse,
        posfuse, segfuse).
    norm : str or None, default None
        The normalisation (ranx's default here is "min-max").
    metric : str, default "ndcg"
        Any name :func:`rank.evaluate.evaluate` takes ("ndcg@10", "map", ...).
    grid : sequence of dicts, optional
        The configurations to try (e.g. ``[{"k": 20}, {"k": 60}]``); default: ranx's grid for
        the method, shaped by `grid_options` (see :mod:`rank.fusion.grids`): ``step`` (weights:
        0.1; phi, gamma, sigma: 0.01; k: 10), ``min_k``/``max_k`` (10/100), ``min_phi``/
        ``max_phi``, ``min_gamma``/``max_gamma``, ``min_sigma``/``max_sigma`` (0.01/1.0),
        ``min_n_segments``/``max_n_segments``, ``min_w``/``max_w`` (1/100).
    return_report : bool, default False
        Also return every configuration tried with its score.
    relevance_level : int, default 1
        Smallest grade counted as relevant (training and evaluation).
    n_threads : int, optional
        Threads for the kernels.

    Returns
    -------
    dict of the best parameters, ready for ``fuse(runs, method, norm, params=best)``; with
    `return_report`, ``(best, report)`` where report is a list of ``(params, score)`` in the
    order tried (trained tables left out of the report's params).

    Complexity: one encoding of the runs, then per configuration one merge (O(entries)) and
    one evaluation.

    >>> qrels = {"q": {"d2": 1}}
    >>> a = {"q": {"d1": 2.0, "d2": 1.0}}
    >>> b = {"q": {"d2": 3.0, "d1": 1.0}}
    >>> optimize_fusion(qrels, [a, b], "wsum", metric="recip_rank", step=0.5)  # (0, 1) scores 1 too
    {'weights': (0.5, 0.5)}
    """
    from rank.evaluate import evaluate
    from rank.fusion import method_params
    from rank.fusion._engine import check_finite_output, check_qrels, dict_context, merge, to_dict, train
    from rank.fusion._registry import METHODS, get_method, get_norm, resolve_params

    m = get_method(method)
    nm = get_norm(norm)
    if not isinstance(metric, str):
        raise DTypeError(f"metric: expected one metric name (str), got {metric!r}")
    if grid is None and m.grid is None and m.trainer is None:
        tunable = ", ".join(repr(n) for n, x in METHODS.items() if x.grid is not None or x.trainer is not None)
        raise InvalidValueError(f"method: {m.name!r} has no weights or parameter to optimise; methods that have: "
                                f"{tunable}")
    if grid_options and (grid is not None or m.grid is None):
        raise InvalidValueError(f"{next(iter(grid_options))}: grid options apply only to the default grid of a "
                                "method that has one")
    qrels = check_qrels(qrels)
    n_threads = resolve_threads(n_threads)
    ctx, runs, qids, names = dict_context(runs, nm, n_threads)
    nr = ctx.n_runs
    if grid is not None:
        if isinstance(grid, Mapping) or not all(isinstance(g, Mapping) for g in grid):
            raise DTypeError("grid: expected a sequence of dicts of parameters")
        points = [dict(g) for g in grid]
    elif m.grid is not None:
        try:
            points = m.grid(nr, **grid_options)
        except TypeError as e:
            raise InvalidValueError(f"grid options: {e}") from None
    else:
        points = [{}]
    if not points:
        raise InvalidValueError("grid: no configuration to try")
    trained_cache: dict[tuple, dict] = {}
    best: Optional[dict] = None
    best_score = -math.inf
    report = []
    for point in points:
        p = method_params(m, point, None, point.get("k", 60), nr, need_trained=m.trainer is None)
        if m.trainer is not None:
            key = tuple(point.get(t) for t in m.train_inputs)
            if key not in trained_cache:
                given = {k: v for k, v in p.items() if v is not None}
                trained_cache[key] = {t: v for t, v in train(ctx, m, given, qrels, relevance_level, runs, qids,
                                                            names).items() if t in m.train_params}
            p = resolve_params(m, {**{k: v for k, v in p.items() if v is not None}, **trained_cache[key]}, nr)
        fdocs, fscores, offsets = merge(ctx, m, p)
        check_finite_output(fscores, offsets, fdocs, qids, names, m, nm)
        fused = to_dict(ctx, fdocs, fscores, offsets, qids, names)
        score = evaluate(qrels, fused, metric, relevance_level=relevance_level, n_threads=n_threads)[metric]
        public = {k: v for k, v in point.items()}
        report.append((public, score))
        if score >= best_score or best is None:
            best_score = score
            best = {**point, **(trained_cache[key] if m.trainer is not None else {})}
    assert best is not None
    best = {k: (tuple(v.tolist()) if isinstance(v, np.ndarray) and k == "weights" else v) for k, v in best.items()}
    return (best, report) if return_report else best
