"""Batch inference on Ray Data: cross-encoder reranking, ColBERT encoding and MaxSim reranking
with ``map_batches`` on a pool of actors, each holding one model (one ONNX Runtime session,
``intra_op_threads`` = the CPUs the actor reserves).

Inputs are candidate lists (a run ``{query_id: {doc_id: score}}`` or ``{query_id: [doc_id, ...]}``)
with the query and document texts, or a Ray Dataset of pairs with columns ``query_id``,
``doc_id``, ``query`` and ``text``; outputs are a run dict ``{query_id: {doc_id: score}}`` or a
Ray Dataset with a ``score`` column (``output="dataset"``, nothing collected on the caller).
"""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import numpy as np

from rank._validate import check_positive_int, check_choice, check_real
from rank.distributed import _ray
from rank.errors import DTypeError, InvalidValueError

__all__ = ["rerank", "encode", "maxsim_rerank"]

_OUTPUTS = ("run", "dataset")


def _threads(cpus: float) -> int:
    return max(1, int(cpus))


class CrossEncoderScorer:
    """Ray Data actor: scores a batch of (query, text) pairs with one CrossEncoder."""

    def __init__(self, model: str, threads: int, options: dict) -> None:
        from rank.rerank import CrossEncoder

        self.model = CrossEncoder.from_pretrained(model, intra_op_threads=threads, **options)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        pairs = list(zip(batch["query"].tolist(), batch["text"].tolist()))
        out = dict(batch)
        out["score"] = self.model.predict(pairs)
        return out


class ColBERTScorer:
    """Ray Data actor: MaxSim of a batch of (query, text) pairs with one ColBERTEncoder
    (each distinct query of the batch encoded once)."""

    def __init__(self, model: str, threads: int, options: dict) -> None:
        from rank.rerank import ColBERTEncoder

        self.encoder = ColBERTEncoder(model, intra_op_threads=threads, **options)
        self.threads = threads

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from rank.rerank import maxsim_batch

        queries = batch["query"].tolist()
        uniq = list(dict.fromkeys(queries))
        q_emb = dict(zip(uniq, self.encoder.encode_queries(uniq)))
        docs = self.encoder.encode_documents(batch["text"].tolist())
        scores = np.empty(len(queries), np.float32)
        by_query: dict[str, list[int]] = {}
        for i, q in enumerate(queries):
            by_query.setdefault(q, []).append(i)
        for q, rows in by_query.items():
            scores[rows] = maxsim_batch(q_emb[q], [docs[i] for i in rows], n_threads=self.threads)
        out = dict(batch)
        out["score"] = scores
        return out


class ColBERTEncoderActor:
    """Ray Data actor: ColBERT token embeddings of a batch of texts (queries or documents)."""

    def __init__(self, model: str, threads: int, options: dict, is_query: bool) -> None:
        from rank.rerank import ColBERTEncoder

        self.encoder = ColBERTEncoder(model, intra_op_threads=threads, **options)
        self.is_query = is_query

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        texts = batch["text"].tolist()
        mats = (self.encoder.encode_queries(texts) if self.is_query else self.encoder.encode_documents(texts))
        out = dict(batch)
        emb = np.empty(len(mats), object)
        emb[:] = [m.reshape(-1) for m in mats]  # flattened (L_i * dim,): ragged rows travel as objects
        out["embedding"] = emb
        out["n_tokens"] = np.fromiter((m.shape[0] for m in mats), np.int64, len(mats))
        return out


def _pairs_dataset(ray: Any, candidates: Any, queries: Optional[Mapping], documents: Optional[Mapping]) -> Any:
    """A Ray Dataset of (query_id, doc_id, query, text) rows, candidates in input order."""
    if hasattr(candidates, "map_batches"):
        return candidates
    if not isinstance(candidates, Mapping):
        raise DTypeError(f"candidates: expected a run dict {{query_id: {{doc_id: score}}}} or {{query_id: [doc_ids]}}, "
                         f"or a Ray Dataset, got {type(candidates).__name__}")
    if not isinstance(queries, Mapping) or not isinstance(documents, Mapping):
        raise DTypeError("queries, documents: expected dicts {id: text} when candidates is a run dict")
    rows = []
    for qid, docs in candidates.items():
        if qid not in queries:
            raise InvalidValueError(f"queries: no text for query {qid!r} of the candidates")
        for did in docs:
            if did not in documents:
                raise InvalidValueError(f"documents: no text for document {did!r} (a candidate of query {qid!r})")
            rows.append({"query_id": str(qid), "doc_id": str(did), "query": queries[qid], "text": documents[did]})
    if not rows:
        raise InvalidValueError("candidates: no (query, document) pair to score")
    return ray.data.from_items(rows)


def _run_of(ds: Any, top_k: Optional[int]) -> dict[str, dict[str, float]]:
    """Collect a scored pairs Dataset into a run, each query's documents by score descending
    (ties in candidate order), cut to `top_k`."""
    per: dict[str, list[tuple[str, float]]] = {}
    for batch in ds.iter_batches(batch_format="numpy", batch_size=4096):
        for q, d, s in zip(batch["query_id"].tolist(), batch["doc_id"].tolist(), batch["score"].tolist()):
            per.setdefault(str(q), []).append((str(d), float(s)))
    run = {}
    for q, items in per.items():
        order = sorted(range(len(items)), key=lambda i: (-items[i][1], i))
        if top_k is not None:
            order = order[:top_k]
        run[q] = {items[i][0]: items[i][1] for i in order}
    return run


def _map(ds: Any, actor: type, args: tuple, batch_size: int, concurrency: Optional[int], cpus: float) -> Any:
    ray = _ray.require_ray()
    n = concurrency if concurrency is not None else max(1, int(_ray.cluster_cpus(ray) // max(cpus, 1e-9)))
    return ds.map_batches(actor, fn_constructor_args=args, batch_size=batch_size, batch_format="numpy",
                          concurrency=check_positive_int(n, "concurrency"), num_cpus=cpus)


def _check_common(output: str, batch_size: Any, cpus_per_actor: Any) -> tuple[int, float]:
    check_choice("output", output, _OUTPUTS)
    bs = check_positive_int(batch_size, "batch_size")
    return bs, check_real("cpus_per_actor", cpus_per_actor, 0.0, inclusive="neither")


def rerank(candidates: Any, queries: Optional[Mapping] = None, documents: Optional[Mapping] = None, *,
           model: str, top_k: Optional[int] = None, batch_size: int = 64, concurrency: Optional[int] = None,
           cpus_per_actor: float = 1.0, output: str = "run", address: Optional[str] = None,
           model_options: Optional[dict] = None) -> Any:
    """Cross-encoder scores of candidate lists on a Ray Data actor pool.

    Parameters
    ----------
    candidates : run dict ``{query_id: {doc_id: score}}`` / ``{query_id: [doc_id, ...]}``, or a
        Ray Dataset with columns query_id, doc_id, query, text
    queries, documents : dict ``{id: text}``
        Needed with a run dict.
    model : str
        A directory written by :func:`rank.rerank.export_cross_encoder` (or a hub id in the
        local cache); loaded once per actor with ``CrossEncoder.from_pretrained``.
    top_k : int, optional
        Keep the best `top_k` per query in the returned run (default all).
    batch_size : int, default 64
        Pairs per ``map_batches`` call (the model's own ``batch_size`` splits them further).
    concurrency : int, optional
        Actors in the pool (default: the cluster's CPUs / cpus_per_actor).
    cpus_per_actor : float, default 1
        CPUs each actor reserves; its ONNX Runtime session uses that many threads (>= 1).
    output : {"run", "dataset"}
        A run dict collected on the caller, or the lazy Ray Dataset with a ``score`` column.
    model_options : dict, optional
        More keyword arguments for ``CrossEncoder.from_pretrained`` (max_length, batch_size,
        activation, quantized, ...).

    Every score is the one ``CrossEncoder.predict`` gives the same pair in one process (with
    the fp32 model up to float32 rounding of the padded batch it runs in: identical for
    ``model_options={"batch_size": 1}``). Cost: one transformer pass per pair, spread over the pool.
    """
    return _score_pairs(CrossEncoderScorer, candidates, queries, documents, model, top_k, batch_size, concurrency,
                        cpus_per_actor, output, address, model_options)


def maxsim_rerank(candidates: Any, queries: Optional[Mapping] = None, documents: Optional[Mapping] = None, *,
                  model: str, top_k: Optional[int] = None, batch_size: int = 64, concurrency: Optional[int] = None,
                  cpus_per_actor: float = 1.0, output: str = "run", address: Optional[str] = None,
                  model_options: Optional[dict] = None) -> Any:
    """ColBERT MaxSim scores of candidate lists on a Ray Data actor pool: each actor encodes
    its batch's queries and documents with one :class:`rank.rerank.ColBERTEncoder` and scores
    them with the MaxSim kernel. Arguments and output as for :func:`rerank` (`model` is a
    directory written by :func:`rank.rerank.export_colbert_encoder`; `model_options` go to
    ``ColBERTEncoder``)."""
    return _score_pairs(ColBERTScorer, candidates, queries, documents, model, top_k, batch_size, concurrency,
                        cpus_per_actor, output, address, model_options)


def _score_pairs(scorer: type, candidates: Any, queries: Optional[Mapping], documents: Optional[Mapping], model: Any,
                 top_k: Optional[int], batch_size: int, concurrency: Optional[int], cpus_per_actor: float,
                 output: str, address: Optional[str], model_options: Optional[dict]) -> Any:
    """The candidate pairs scored by a pool of `scorer` actors: a Dataset, or the reranked run."""
    bs, cpus = _check_common(output, batch_size, cpus_per_actor)
    k = check_positive_int(top_k, "top_k", allow_none=True)
    ray = _ray.init(address)
    ds = _pairs_dataset(ray, candidates, queries, documents)
    scored = _map(ds, scorer, (str(model), _threads(cpus), dict(model_options or {})), bs, concurrency, cpus)
    return scored if output == "dataset" else _run_of(scored, k)


def encode(texts: Any, *, model: str, ids: Optional[Sequence[Any]] = None, is_query: bool = False,
           batch_size: int = 64, concurrency: Optional[int] = None, cpus_per_actor: float = 1.0,
           output: str = "list", address: Optional[str] = None, model_options: Optional[dict] = None) -> Any:
    """ColBERT token embeddings of many texts on a Ray Data actor pool.

    Parameters
    ----------
    texts : sequence of str, or a Ray Dataset with a ``text`` column
    model : str
        A directory written by :func:`rank.rerank.export_colbert_encoder`.
    ids : sequence, optional
        Carried along as an ``id`` column (default: the position).
    is_query : bool, default False
        Encode as queries ([MASK]-padded to query_maxlen) instead of documents.
    output : {"list", "dataset"}
        A list of float32 (L_i, dim) arrays in input order, as
        ``ColBERTEncoder.encode_documents`` / ``encode_queries`` returns; or the lazy Ray
        Dataset with columns id, text, embedding (flattened L_i * dim floats), n_tokens.

    Cost: one transformer pass per text, spread over the pool.
    """
    check_choice("output", output, ("list", "dataset"))
    _, cpus = _check_common("run", batch_size, cpus_per_actor)
    ray = _ray.init(address)
    if hasattr(texts, "map_batches"):
        ds = texts
    else:
        if isinstance(texts, str) or not isinstance(texts, Sequence):
            raise DTypeError(f"texts: expected a sequence of str or a Ray Dataset, got {type(texts).__name__}")
        items = list(texts)
        if not all(isinstance(t, str) for t in items):
            raise DTypeError("texts: expected every text to be a str")
        if not items:
            return [] if output == "list" else ray.data.from_items([])
        keys = list(range(len(items))) if ids is None else list(ids)
        if len(keys) != len(items):
            raise InvalidValueError(f"ids: expected {len(items)} ids, got {len(keys)}")
        ds = ray.data.from_items([{"id": i, "pos": p, "text": t} for p, (i, t) in enumerate(zip(keys, items))])
    out = _map(ds, ColBERTEncoderActor, (str(model), _threads(cpus), dict(model_options or {}), bool(is_query)),
               check_positive_int(batch_size, "batch_size"), concurrency, cpus)
    if output == "dataset":
        return out
    rows: dict[int, np.ndarray] = {}
    for batch in out.iter_batches(batch_format="numpy", batch_size=1024):
        for p, e, n in zip(batch["pos"].tolist(), batch["embedding"], batch["n_tokens"].tolist()):
            rows[int(p)] = np.asarray(e, np.float32).reshape(int(n), -1)
    return [rows[p] for p in range(len(rows))]
