"""The shared fusion pipeline: encode the runs once, rank, normalise, compute each method's
contributions, merge them in the kernel, check and build the output.

`Context` holds one encoding of the runs (flat columns grouped by (query, run) segments, see
``rank_kernels.fusion``) and computes on demand what the methods and normalisations read:
ranks, segment lengths, candidate counts, normalised scores. It is built once per call of
:func:`rank.fusion.fuse` and once for a whole :func:`rank.fusion.optimize_fusion` search.
"""
from __future__ import annotations

from functools import cached_property
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np

from rank.errors import DTypeError, NonFiniteError, ShapeError
from rank._runsort import sort_run
from rank.fusion._registry import Method, Norm
from rank_kernels import fusion as _kernel


class Context:
    """One encoding of the runs, and what methods read from it (computed once, on demand).

    Per entry (flat, grouped by segment ``s = q * n_runs + r``): `docs`, `raw` (the scores
    given), `score` (normalised), `rank` (0-based), `run`, `length` (entries in its segment),
    `candidates` (documents of its query over all runs). Per segment: `seg_length`,
    `seg_candidates`, `norm_fill` (the normalisation's value for the candidates the segment
    lacks, NaN for none).
    """

    def __init__(self, seg_off: np.ndarray, docs: np.ndarray, raw: np.ndarray, n_runs: int,
                 cand_per_query: np.ndarray, n_vocab: int, norm: Optional[Norm], n_threads: int,
                 tie_names: Optional[Callable[[int], list]] = None) -> None:
        self.seg_off = seg_off
        self.docs = docs
        self.raw = raw
        self.n_runs = n_runs
        self.n_queries = (seg_off.shape[0] - 1) // n_runs
        self.n_vocab = n_vocab
        self.norm = norm
        self.n_threads = n_threads
        self.tie_names = tie_names
        self.cand_per_query = cand_per_query
        self.ranked = False  # set once ranks were needed: the kernel then visits entries in rank order

    # --- layout ---------------------------------------------------------------------------------
    @cached_property
    def seg_length(self) -> np.ndarray:
        return np.diff(self.seg_off)

    @cached_property
    def seg_candidates(self) -> np.ndarray:
        return np.repeat(self.cand_per_query, self.n_runs)

    @cached_property
    def seg_start(self) -> np.ndarray:
        """Per entry: where its segment starts."""
        return np.repeat(self.seg_off[:-1], self.seg_length)

    @cached_property
    def run(self) -> np.ndarray:
        return np.repeat(np.tile(np.arange(self.n_runs, dtype=np.int64), self.n_queries), self.seg_length)

    @cached_property
    def length(self) -> np.ndarray:
        return np.repeat(self.seg_length, self.seg_length)

    @cached_property
    def candidates(self) -> np.ndarray:
        return np.repeat(self.seg_candidates, self.seg_length)

    # --- ranks ----------------------------------------------------------------------------------
    def order(self, values: np.ndarray) -> np.ndarray:
        """Per segment, positions of its entries by value descending (ties: docid descending as
        trec_eval orders them when the document ids are strings, else by position)."""
        if self.tie_names is not None:
            return sort_run(self.seg_off, values, self.tie_names, self.n_threads)
        perm = np.empty(values.shape[0], np.int64)
        _kernel.order_segments(self.seg_off, values, perm, self.n_threads)
        return perm

    def _ranks_of(self, perm: np.ndarray) -> np.ndarray:
        rank = np.empty(perm.shape[0], np.int64)
        rank[perm] = np.arange(perm.shape[0], dtype=np.int64) - self.seg_start
        return rank

    @cached_property
    def raw_perm(self) -> np.ndarray:
        return self.order(self.raw)

    @cached_property
    def raw_rank(self) -> np.ndarray:
        """0-based rank of each entry in its run for its query, by the scores given."""
        return self._ranks_of(self.raw_perm)

    @cached_property
    def perm(self) -> np.ndarray:
        if self.norm is not None and self.norm.reorders:
            return self.order(self.score)
        return self.raw_perm

    @cached_property
    def rank(self) -> np.ndarray:
        """0-based rank of each entry in its (normalised) run: the input order, reversed by
        "min-max-inverted"."""
        self.ranked = True
        if self.norm is not None and self.norm.reorders:
            return self._ranks_of(self.perm)
        return self.raw_rank

    # --- normalisation --------------------------------------------------------------------------
    @cached_property
    def _normalised(self) -> tuple[np.ndarray, Optional[np.ndarray]]:
        if self.norm is None:
            return self.raw, None
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # overflow is checked on the output
            return self.norm.apply(self)

    @property
    def score(self) -> np.ndarray:
        return self._normalised[0]

    @property
    def norm_fill(self) -> Optional[np.ndarray]:
        return self._normalised[1]

    def segment_stat(self, ufunc: Any, values: np.ndarray, empty: float = np.nan) -> np.ndarray:
        """Per segment, `ufunc`.reduce of its values (`empty` for an empty segment)."""
        n = self.seg_length
        out = np.full(n.shape[0], empty, np.float64)
        nz = np.flatnonzero(n > 0)
        if nz.size:
            out[nz] = ufunc.reduceat(values, self.seg_off[:-1][nz])
        return out

    def per_entry(self, per_segment: np.ndarray) -> np.ndarray:
        return np.repeat(per_segment, self.seg_length)

    # --- training data --------------------------------------------------------------------------
    def hit_lists(self, qrels: Mapping[str, Mapping[str, Any]], relevance_level: int, qids: Sequence[str],
                  names: Sequence[str]) -> list[list[np.ndarray]]:
        """For each run, for each query of `qrels`: the relevance flags (grade >= level) of the
        run's documents in rank order (an empty list when the run lacks the query)."""
        qindex = {q: i for i, q in enumerate(qids)}
        perm = self.perm
        off = self.seg_off
        nr = self.n_runs
        out: list[list[np.ndarray]] = [[] for _ in range(nr)]
        for q, judged in qrels.items():
            i = qindex.get(q)
            for r in range(nr):
                if i is None:
                    out[r].append(np.zeros(0, bool))
                    continue
                s = i * nr + r
                ids = self.docs[perm[off[s]:off[s + 1]]]
                out[r].append(np.fromiter(((judged.get(names[d], 0) >= relevance_level) for d in ids.tolist()),
                                          bool, count=ids.shape[0]))
        return out


def contributions(ctx: Context, m: Method, params: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """(values per entry, fill per segment (NaN: none)) of method `m`."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # overflow is checked on the output
        values, fill = m.contribution(ctx, **params)
    values = np.ascontiguousarray(values, dtype=np.float64)
    if not np.isfinite(values).all():  # NaN would read as "not retrieved" in the kernel
        bad = int(np.flatnonzero(~np.isfinite(values))[0])
        seg = int(np.searchsorted(ctx.seg_off, bad, side="right") - 1)
        raise NonFiniteError(f"runs[{seg % ctx.n_runs}]: the {m.name!r} contribution of the document at rank "
                             f"{int(ctx.raw_rank[bad]) + 1} of query #{seg // ctx.n_runs} is {values[bad]} (norm "
                             f"{ctx.norm.name if ctx.norm else None!r}): it overflows float64; rescale the input scores")
    if fill is None and m.scores and not m.ranks:
        fill = ctx.norm_fill  # "borda" normalisation: every run scores every candidate
    if fill is None:
        fill = np.full(ctx.seg_length.shape[0], np.nan)
    return values, np.ascontiguousarray(fill, dtype=np.float64)


def merge(ctx: Context, m: Method, params: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(docs, fused scores, per-query offsets): each query's documents in visiting order."""
    nr = ctx.n_runs
    total = ctx.docs.shape[0]
    weights = params.get("weights")
    w = np.ones(nr, np.float64) if weights is None else np.ascontiguousarray(weights, np.float64)
    out_docs = np.empty(total, np.int64)
    out_scores = np.empty(total, np.float64)
    counts = np.empty(ctx.n_queries, np.int64)
    if m.combine == "condorcet":
        m.contribution(ctx, **params)  # validates; condorcet reads ranks only
        _kernel.condorcet(ctx.seg_off, ctx.docs, ctx.rank, ctx.perm, nr, ctx.n_vocab, w,
                          out_docs, out_scores, counts, ctx.n_threads)
    else:
        values, fill = contributions(ctx, m, params)
        visit = ctx.perm if ctx.ranked else np.arange(total, dtype=np.int64)
        _kernel.combine(ctx.seg_off, ctx.docs, values, fill, visit, nr, ctx.n_vocab, m.rule,
                        float(m.power(params)), w, out_docs, out_scores, counts, ctx.n_threads)
    starts = ctx.seg_off[::nr][:-1]
    offsets = np.zeros(ctx.n_queries + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    take = np.arange(offsets[-1], dtype=np.int64) + np.repeat(starts - offsets[:-1], counts)
    return out_docs[take], out_scores[take], offsets


def check_finite_output(scores: np.ndarray, offsets: np.ndarray, docs: np.ndarray, qids: Sequence[Any],
                        names: Optional[Sequence[Any]], m: Method, norm: Optional[Norm]) -> None:
    """Fused scores overflowing float64 are an error, never written (a run file with inf is
    refused by every reader)."""
    if np.isfinite(scores).all():
        return
    bad = int(np.flatnonzero(~np.isfinite(scores))[0])
    q = int(np.searchsorted(offsets, bad, side="right") - 1)
    doc = names[docs[bad]] if names is not None else int(docs[bad])
    raise NonFiniteError(
        f"fused score of query {qids[q]!r}, document {doc!r} is {scores[bad]} (method {m.name!r}, "
        f"norm {norm.name if norm else None!r}): it overflows float64; rescale the input scores, the "
        "weights or the method's parameters, or use a normalisation")


def encode_dict_runs(runs: Any) -> tuple[list, list, list, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Validated encoding of a sequence of runs ``{qid: {docid: score}}``."""
    from collections.abc import Mapping as AbcMapping, Sequence as AbcSequence

    if isinstance(runs, AbcMapping) or not isinstance(runs, AbcSequence) or isinstance(runs, (str, bytes)):
        raise DTypeError(f"runs: expected a list of runs {{qid: {{docid: score}}}}, got {type(runs).__name__}")
    runs = list(runs)
    if not runs:
        raise ShapeError("runs: expected at least one run, got none")
    for r, run in enumerate(runs):
        if not isinstance(run, dict):
            raise DTypeError(f"runs[{r}]: expected a dict {{qid: {{docid: score}}}}, got {type(run).__name__}")
    try:
        qids, names, seg_off, docs, scores, name_off = _kernel.encode_runs(runs)
    except TypeError as e:
        raise DTypeError(str(e)) from None
    if scores.size == 0:
        raise ShapeError("runs: expected at least one document, every run is empty")
    nr = len(runs)
    if not np.isfinite(scores).all():
        bad = int(np.flatnonzero(~np.isfinite(scores))[0])
        seg = int(np.searchsorted(seg_off, bad, side="right") - 1)
        q, r = divmod(seg, nr)
        raise NonFiniteError(f"runs[{r}][{qids[q]!r}][{names[docs[bad]]!r}]: score is {scores[bad]} "
                             "(scores must be finite)")
    return runs, qids, names, seg_off, docs, scores, name_off


def dict_context(runs: Any, norm: Optional[Norm], n_threads: int) -> tuple[Context, list, list, list]:
    runs, qids, names, seg_off, docs, scores, name_off = encode_dict_runs(runs)

    def tie_names(s: int) -> list:
        return [names[d] for d in docs[seg_off[s]:seg_off[s + 1]].tolist()]

    ctx = Context(seg_off, docs, scores, len(runs), np.diff(name_off), len(names), norm, n_threads, tie_names)
    return ctx, runs, qids, names


def to_dict(ctx: Context, fdocs: np.ndarray, fscores: np.ndarray, offsets: np.ndarray, qids: Sequence[Any],
            names: Sequence[Any]) -> dict:
    """Fused columns -> ``{qid: {docid: score}}``, each query by score descending (ties: order
    of first appearance)."""
    order = np.empty(fscores.shape[0], np.int64)
    _kernel.order_segments(offsets, fscores, order, ctx.n_threads)
    names_out = np.asarray(names, dtype=object)[fdocs[order]].tolist()
    values = fscores[order].tolist()
    bounds = offsets.tolist()
    return {q: dict(zip(names_out[bounds[i]:bounds[i + 1]], values[bounds[i]:bounds[i + 1]]))
            for i, q in enumerate(qids)}


def normalised_run_dicts(ctx: Context, runs: list, qids: Sequence[Any], names: Sequence[Any]) -> list:
    """The runs as the methods see them: the runs given, or (when the normalisation reorders
    them) ``{qid: {docid: normalised score}}``."""
    if ctx.norm is None or not ctx.norm.reorders:
        return runs
    nr = ctx.n_runs
    score = ctx.score.tolist()
    out: list[dict] = [{} for _ in range(nr)]
    off = ctx.seg_off.tolist()
    docs = ctx.docs.tolist()
    for q, qid in enumerate(qids):
        for r in range(nr):
            a, b = off[q * nr + r], off[q * nr + r + 1]
            if qid in runs[r]:
                out[r][qid] = {names[docs[e]]: score[e] for e in range(a, b)}
    return out


def check_qrels(qrels: Any) -> dict:
    if not isinstance(qrels, Mapping):
        raise DTypeError(f"qrels: expected a dict {{qid: {{docid: grade}}}}, got {type(qrels).__name__}")
    if not qrels:
        raise ShapeError("qrels: expected at least one query, got empty qrels")
    for q, judged in qrels.items():
        if not isinstance(judged, Mapping):
            raise DTypeError(f"qrels[{q!r}]: expected a dict {{docid: grade}}, got {type(judged).__name__}")
        for d, g in judged.items():
            if isinstance(g, (bool, str, bytes)) or not isinstance(g, (int, float, np.integer, np.floating)) \
                    or g != g:
                raise DTypeError(f"qrels[{q!r}][{d!r}]: expected a numeric grade, got {g!r}")
    return dict(qrels)


def train(ctx: Context, m: Method, params: dict, qrels: Any, relevance_level: int, runs: list,
          qids: Sequence[Any], names: Sequence[Any]) -> dict:
    """`params` completed with what method `m` learns from `qrels`."""
    if isinstance(relevance_level, (bool, np.bool_)) or not isinstance(relevance_level, (int, np.integer)):
        from rank.errors import InvalidValueError
        raise InvalidValueError(f"relevance_level: expected an integer, got {relevance_level!r}")
    qrels = check_qrels(qrels)
    assert m.trainer is not None
    hits = ctx.hit_lists(qrels, int(relevance_level), qids, names)
    trained = m.trainer(ctx, hits, params, qrels=qrels, run_dicts=normalised_run_dicts(ctx, runs, qids, names),
                        relevance_level=int(relevance_level))
    return {**params, **trained}
