"""End-to-end retrieval: first-stage retrieval, optional fusion of several retrievers, optional
reranking, in one object that the ``rank`` command is a thin layer over.

A *retriever* is anything with ``search(queries, k, n_threads=...)`` (or the older name
``retrieve``) returning ``(indices, scores)`` arrays of shape ``(n_queries, k)``, padded with
``-1`` / ``-inf`` when a query has fewer than k hits (:class:`rank.BM25` is one). Its document ids are taken from its
``ids`` attribute when it has one, otherwise a document's id is its index. A
:class:`rank.ColBERTIndex` is a retriever too when the pipeline is given the query encoder
(``Pipeline(colbert_index, encoder=colbert_encoder)``): queries are encoded, then searched.

A *reranker* is one of:

- a cross-encoder: an object with ``predict(pairs) -> scores`` over ``(query, text)`` pairs
  (:class:`rank.rerank.CrossEncoder`);
- a late-interaction encoder: an object with ``encode_queries(texts)`` and
  ``encode_documents(texts)`` returning token matrices, scored with MaxSim
  (:class:`rank.rerank.ColBERTEncoder`, or a reranker holding one as ``encoder``);
- a function ``f(query, texts) -> scores`` (one float per text).

Reranking reorders the first ``depth`` candidates of each query by the reranker's score, ties
kept in first-stage order, and needs the document texts (``documents``: a sequence aligned with
the retriever's indices, or a mapping from document id to text).

>>> import rank
>>> docs = ["parse a date string", "sort a list", "format a date as text"]
>>> bm25 = rank.BM25().index(docs, ids=["a", "b", "c"], show_progress=False)
>>> pipe = Pipeline(bm25)
>>> tuple(hit.id for hit in pipe.search(["date parsing"], k=2)[0])
('a', 'c')
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple, TypeVar, Union

import numpy as np

from rank._validate import check_positive_int, resolve_threads
from rank.errors import InvalidValueError, ShapeError

__all__ = ["Pipeline", "Hit", "rerank_run", "progress"]

T = TypeVar("T")
Run = dict[str, dict[str, float]]
Documents = Union[Sequence[str], Mapping[Any, str]]

#: Queries handed to a retriever per call when a progress bar is shown.
_CHUNK = 1024


class Hit(NamedTuple):
    """One ranked result: the document id and its final score (higher is better)."""

    id: Any
    score: float


def progress(iterable: Iterable[T], *, total: int | None = None, desc: str = "",
             enabled: bool = True, unit: str = "it") -> Iterator[T]:
    """Wrap `iterable` in a tqdm progress bar on stderr when `enabled` and tqdm is installed.

    tqdm is imported lazily; without it (or when stderr is not a terminal) the iterable is
    returned unchanged, so output stays clean in pipes and logs.
    """
    if enabled:
        try:
            from tqdm.auto import tqdm
        except ImportError:
            pass
        else:
            return iter(tqdm(iterable, total=total, desc=desc, unit=unit, disable=None,
                             leave=False, dynamic_ncols=True))
    return iter(iterable)


def _reranker_kind(reranker: object) -> str:
    if hasattr(reranker, "predict"):
        return "cross-encoder"
    if hasattr(reranker, "encode_queries") and hasattr(reranker, "encode_documents"):
        return "late-interaction"
    enc = getattr(reranker, "encoder", None)
    if enc is not None and hasattr(enc, "encode_queries") and hasattr(enc, "encode_documents"):
        return "late-interaction"
    if callable(reranker):
        return "function"
    raise InvalidValueError(
        f"reranker: expected an object with predict(pairs) (a cross-encoder), with "
        f"encode_queries/encode_documents (a late-interaction encoder), or a function "
        f"f(query, texts) -> scores; got {type(reranker).__name__}")


def _first_matrix(encoded: Any) -> np.ndarray:
    """Token matrix of the single text in an encoder's output (a list, or packed flat/offsets)."""
    if isinstance(encoded, tuple) and len(encoded) == 2 and np.ndim(encoded[1]) == 1:
        flat, offsets = encoded
        return np.asarray(flat)[int(offsets[0]):int(offsets[1])]
    return np.asarray(encoded[0])


def _rerank_scores(reranker: Any, kind: str, query: str, texts: list[str], n_threads: int) -> np.ndarray:
    if kind == "cross-encoder":
        scores = reranker.predict([(query, t) for t in texts])
    elif kind == "late-interaction":
        from rank.rerank import maxsim_batch

        enc = reranker if hasattr(reranker, "encode_queries") else reranker.encoder
        q = _first_matrix(enc.encode_queries([query]))
        scores = maxsim_batch(q, enc.encode_documents(texts), n_threads=n_threads)
    else:
        scores = reranker(query, texts)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if scores.shape[0] != len(texts):
        raise ShapeError(f"reranker returned {scores.shape[0]} scores for {len(texts)} documents")
    return scores


def _rerank_one(reranker: Any, kind: str, query: str, doc_ids: list[Any], texts: list[str],
                n_threads: int) -> list[tuple[Any, float]]:
    """`doc_ids` reordered by the reranker's scores, descending, ties in their given order."""
    scores = _rerank_scores(reranker, kind, query, texts, n_threads)
    order = np.argsort(-scores, kind="stable")
    return [(doc_ids[i], float(scores[i])) for i in order]


def rerank_run(reranker: Any, queries: Mapping[str, str], run: Mapping[str, Mapping[Any, float]],
               documents: Mapping[Any, str], *, depth: int = 100, k: int | None = None,
               n_threads: int | None = None, show_progress: bool = False) -> Run:
    """Rerank an existing run: ``{query_id: {doc_id: score}}`` in, the reranked run out.

    For each query of `run`, its first `depth` documents (by score descending, ties in the
    run's order) are scored by `reranker` (a cross-encoder, a late-interaction encoder or a
    function, as for :class:`Pipeline`) against ``queries[query_id]`` with the texts
    ``documents[doc_id]``; the best `k` (default `depth`) are kept, in rank order, with the
    reranker's scores. Documents past `depth` are dropped. Complexity: the reranker on
    ``n_queries * depth`` pairs.

    >>> run = {"q1": {"a": 2.0, "b": 1.0, "c": 0.5}}
    >>> docs = {"a": "sorting lists", "b": "parsing dates", "c": "date formats"}
    >>> by_overlap = lambda q, texts: [len(set(q.split()) & set(t.split())) for t in texts]
    >>> rerank_run(by_overlap, {"q1": "parsing dates"}, run, docs, depth=3, k=2)
    {'q1': {'b': 2.0, 'a': 0.0}}
    """
    depth = check_positive_int(depth, "depth")
    k = depth if k is None else check_positive_int(k, "k")
    threads = resolve_threads(n_threads)
    kind = _reranker_kind(reranker)
    out: Run = {}
    for qid in progress(list(run), total=len(run), desc="rerank", enabled=show_progress, unit="query"):
        if qid not in queries:
            raise InvalidValueError(f"queries: no text for query id {qid!r} of the run")
        ranked = sorted(run[qid].items(), key=lambda t: -t[1])[:depth]
        doc_ids = [d for d, _ in ranked]
        try:
            texts = [documents[d] for d in doc_ids]
        except KeyError as e:
            raise InvalidValueError(f"documents: no text for document id {e.args[0]!r} "
                                    f"(ranked for query {qid!r})") from None
        hits = _rerank_one(reranker, kind, queries[qid], doc_ids, texts, threads) if doc_ids else []
        out[qid] = {d: s for d, s in hits[:k]}
    return out


class Pipeline:
    """Retrieve, optionally fuse several retrievers, optionally rerank.

    Parameters
    ----------
    retriever : a retriever, or a sequence of retrievers over the same collection (their
        results are then fused; see `fusion`).
    reranker : None, a cross-encoder, a late-interaction encoder or a function (see the module
        documentation). Needs `documents`.
    fusion : how to fuse several retrievers: a method name of :func:`rank.fusion.fuse`
        (default ``"rrf"`` when several retrievers are given) or a function taking a list of
        run dicts ``{qid: {doc_id: score}}`` and returning one. Only valid with several
        retrievers.
    documents : the document texts, a sequence aligned with the retriever's indices or a
        mapping from document id to text; needed for reranking.
    depth : candidates per query taken from each retriever before fusion and reranking
        (default 100; at least the k of each search).
    fusion_k : the k constant of reciprocal rank fusion (default 60).
    encoder : the query encoder of token-level retrievers (:class:`rank.ColBERTIndex`): an
        object with ``encode_queries(texts)`` returning (Lq, dim) matrices, such as
        :class:`rank.rerank.ColBERTEncoder`. Required when a retriever is a ColBERTIndex.

    A Pipeline holds no mutable state: one may serve many threads at once if its parts may.

    Complexity: the retrievers' cost for ``max(k, depth)`` candidates, fusion in
    O(n_queries * depth * n_retrievers), plus the reranker on ``n_queries * depth`` pairs.
    """

    def __init__(self, retriever: Any, reranker: Any = None, fusion: str | Callable[[list[Run]], Run] | None = None,
                 *, documents: Documents | None = None, depth: int = 100, fusion_k: int = 60,
                 encoder: Any = None) -> None:
        retrievers = list(retriever) if isinstance(retriever, (list, tuple)) else [retriever]
        if not retrievers:
            raise InvalidValueError("retriever: expected a retriever or a non-empty sequence of retrievers")
        for i, r in enumerate(retrievers):
            if getattr(r, "_late_interaction_index", False):
                from rank.retrieve.colbert_index import ColBERTRetriever

                if encoder is None:
                    raise InvalidValueError(
                        "encoder: a ColBERTIndex retriever needs the query encoder: "
                        "Pipeline(index, encoder=ColBERTEncoder(...))")
                retrievers[i] = r = ColBERTRetriever(r, encoder)
            if not callable(getattr(r, "search", None)) and not callable(getattr(r, "retrieve", None)):
                where = f"retriever[{i}]" if len(retrievers) > 1 else "retriever"
                raise InvalidValueError(f"{where}: expected an object with a search(queries, k) method, "
                                        f"got {type(r).__name__}")
        if fusion is not None and len(retrievers) < 2:
            raise InvalidValueError("fusion: needs a sequence of at least two retrievers")
        if fusion is None and len(retrievers) > 1:
            fusion = "rrf"
        self.retrievers = retrievers
        self.fusion = fusion
        self.reranker = reranker
        self.reranker_kind = "" if reranker is None else _reranker_kind(reranker)
        if reranker is not None and documents is None:
            raise InvalidValueError("documents: reranking needs the document texts (a sequence or an id -> text mapping)")
        self.documents = documents
        self.depth = check_positive_int(depth, "depth")
        self.fusion_k = check_positive_int(fusion_k, "fusion_k")

    # -- stages ---------------------------------------------------------------------------------

    def _retrieve_one(self, retriever: Any, queries: list[str], k: int, n_threads: int,
                      show_progress: bool) -> list[list[tuple[Any, float]]]:
        ids = getattr(retriever, "ids", None)
        search = getattr(retriever, "search", None)
        answer = search if callable(search) else retriever.retrieve  # the protocol's older name
        out: list[list[tuple[Any, float]]] = []
        starts = range(0, len(queries), _CHUNK)
        for s in progress(starts, total=len(starts), desc="retrieve", enabled=show_progress and len(starts) > 1,
                          unit="batch"):
            idx, scores = answer(queries[s:s + _CHUNK], k=k, n_threads=n_threads)
            idx, scores = np.asarray(idx), np.asarray(scores)
            if idx.ndim != 2 or idx.shape != scores.shape or idx.shape[0] != len(queries[s:s + _CHUNK]):
                raise ShapeError(f"retriever returned arrays of shapes {idx.shape} and {scores.shape}, "
                                 f"expected ({len(queries[s:s + _CHUNK])}, k) each")
            for row_i, row_s in zip(idx.tolist(), scores.tolist()):
                out.append([(row if ids is None else ids[row], sc) for row, sc in zip(row_i, row_s) if row >= 0])
        return out

    def _fuse(self, per_retriever: list[list[list[tuple[Any, float]]]]) -> list[list[tuple[Any, float]]]:
        n = len(per_retriever[0])
        runs: list[Run] = [{str(q): {d: s for d, s in hits[q]} for q in range(n)} for hits in per_retriever]
        if callable(self.fusion):
            fused = self.fusion(runs)
        else:
            from rank.fusion import fuse

            fused = fuse(runs, method=str(self.fusion), k=self.fusion_k)
        order: dict[Any, int] = {}
        out = []
        for q in range(n):
            order.clear()
            for hits in per_retriever:  # ties: the order the documents were first met in
                for d, _ in hits[q]:
                    order.setdefault(d, len(order))
            scored = fused.get(str(q), {})
            out.append(sorted(scored.items(), key=lambda t: (-t[1], order.get(t[0], len(order)))))
        return out

    def _texts(self, doc_ids: list[Any]) -> list[str]:
        docs = self.documents
        assert docs is not None
        if isinstance(docs, Mapping):
            try:
                return [docs[d] for d in doc_ids]
            except KeyError as e:
                raise InvalidValueError(f"documents: no text for document id {e.args[0]!r}") from None
        index = self._position_of()
        return [docs[index(d)] for d in doc_ids]

    def _position_of(self) -> Callable[[Any], int]:
        ids = getattr(self.retrievers[0], "ids", None)
        if ids is None:
            return int
        pos = getattr(self, "_pos_cache", None)
        if pos is None:
            pos = {d: i for i, d in enumerate(ids)}
            self._pos_cache = pos
        return pos.__getitem__

    # -- public ---------------------------------------------------------------------------------

    def search(self, queries: Sequence[str] | str, k: int = 10, *, n_threads: int | None = None,
               show_progress: bool = False) -> list[list[Hit]]:
        """Rank documents for each query: one list of up to `k` :class:`Hit` per query.

        `queries` is a sequence of str (one str is taken as a single query). Each list is sorted
        by score descending (the reranker's score when there is a reranker, the fused score
        with several retrievers, else the retriever's), ties by first-stage rank. Fewer than
        `k` hits are returned when fewer documents match. `n_threads` (default: all cores) goes
        to the retriever and the MaxSim kernels; `show_progress` draws progress bars.
        """
        if isinstance(queries, str):
            queries = [queries]
        queries = list(queries)
        for i, q in enumerate(queries):
            if not isinstance(q, str):
                raise InvalidValueError(f"queries[{i}]: expected a str, got {type(q).__name__}")
        k = check_positive_int(k, "k")
        threads = resolve_threads(n_threads)
        if not queries:
            return []
        depth = max(k, self.depth) if (self.reranker is not None or len(self.retrievers) > 1) else k
        per = [self._retrieve_one(r, queries, depth, threads, show_progress) for r in self.retrievers]
        hits = per[0] if len(per) == 1 else self._fuse(per)
        if self.reranker is not None:
            reranked = []
            for q, cand in zip(progress(queries, total=len(queries), desc="rerank", enabled=show_progress,
                                        unit="query"), hits):
                cand = cand[:depth]
                if not cand:
                    reranked.append(cand)
                    continue
                doc_ids = [d for d, _ in cand]
                reranked.append(_rerank_one(self.reranker, self.reranker_kind, q, doc_ids,
                                            self._texts(doc_ids), threads))
            hits = reranked
        return [[Hit(d, float(s)) for d, s in h[:k]] for h in hits]

    def run(self, queries: Mapping[str, str], k: int = 10, *, n_threads: int | None = None,
            show_progress: bool = False) -> Run:
        """Search `queries` (``{query_id: text}``) and return a run ``{query_id: {doc_id: score}}``.

        The run dict is what :func:`rank.evaluate.evaluate` and :func:`rank.evaluate.write_run`
        take; each inner dict is in rank order. Same ranking as :meth:`search`.
        """
        qids = list(queries)
        results = self.search([queries[q] for q in qids], k, n_threads=n_threads, show_progress=show_progress)
        return {q: {str(h.id): h.score for h in res} for q, res in zip(qids, results)}
