"""Exact top-k retrieval of learned sparse vectors (SPLADE-style) by dot product.

Documents and queries are sparse vectors over integer term ids: ``{term_id: weight}`` dicts or
rows of a scipy CSR matrix. The index is the same term-major inverted index and the same
scoring kernel as :class:`rank.retrieve.BM25` (whose weights are BM25 impacts): a query's
score for a document is the float32 sum of ``query weight * document weight`` over shared
terms, and the top k are exact (pruning applies when all weights are non-negative).
"""
from __future__ import annotations

import os
from typing import Any, Optional, Union

import numpy as np

from rank._validate import as_float_array
from rank.errors import CorruptFileError, DTypeError, InvalidValueError, NonFiniteError, ShapeError
from rank.retrieve import _index
from rank.retrieve._shareable import HubShareable
from rank_kernels import sparse as _kernel

__all__ = ["SparseIndex"]

_FORMAT = "rank-kernels.sparse"


def _rows(vectors: Any, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row_ptr int64, terms int64, weights float32) of dict rows or a CSR matrix; each term
    once per row (repeated CSR entries are summed)."""
    if hasattr(vectors, "tocsr") and hasattr(vectors, "indptr"):
        m = vectors.tocsr(copy=True)
        m.sum_duplicates()
        terms = np.asarray(m.indices, np.int64)
        weights = _float32(as_float_array(m.data, f"{name} (values)", 1, allow_empty=True), f"{name} (values)")
        return np.asarray(m.indptr, np.int64), terms, weights
    if isinstance(vectors, dict):
        vectors = [vectors]
    if (isinstance(vectors, (str, bytes)) or not hasattr(vectors, "__iter__")
            or (isinstance(vectors, np.ndarray) and vectors.ndim == 0)):
        raise DTypeError(f"{name}: expected {{term_id: weight}} dicts or a scipy CSR matrix")
    keys: list = []
    vals: list = []
    lengths = []
    for i, v in enumerate(vectors):
        if not isinstance(v, dict):
            raise DTypeError(f"{name}[{i}]: expected a {{term_id: weight}} dict, got {type(v).__name__}")
        keys.extend(v.keys())
        vals.extend(v.values())
        lengths.append(len(v))
    try:
        terms = np.array(keys, dtype=np.int64) if keys else np.zeros(0, np.int64)
    except (TypeError, ValueError, OverflowError):
        raise DTypeError(f"{name}: term ids must be integers") from None
    if any(isinstance(t, (bool, float, np.floating, np.bool_)) for t in keys[:1000]):
        raise DTypeError(f"{name}: term ids must be integers")
    try:
        raw = np.array(vals, dtype=np.float64) if vals else np.zeros(0)
    except (TypeError, ValueError):
        raise DTypeError(f"{name}: weights must be numbers") from None
    weights = _float32(as_float_array(raw, f"{name} (weights)", 1, allow_empty=True), f"{name} (weights)")
    return _index.pointers(np.asarray(lengths, np.int64)), terms, weights


def _float32(w: np.ndarray, name: str) -> np.ndarray:
    """`w` as float32; NonFiniteError for a finite value beyond float32's range (it would become inf)."""
    out = w.astype(np.float32)
    if out.size and w.dtype != np.float32 and not np.isfinite(out).all():
        bad = int(np.flatnonzero(~np.isfinite(out))[0])
        raise NonFiniteError(f"{name}: {float(w[bad])!r} is beyond the float32 range (|w| <= 3.4e38) "
                             "the index stores")
    return out


def _check_terms(terms: np.ndarray, name: str) -> None:
    if terms.size and (terms.min() < 0 or terms.max() >= _index.MAX_ID):
        raise InvalidValueError(f"{name}: term ids must lie in [0, {_index.MAX_ID}), got [{terms.min()}, {terms.max()}]")


class SparseIndex(_index.WriteLocked, HubShareable):
    """An inverted index of sparse vectors with exact top-k search by dot product.

    Add documents with :meth:`add` (``{term_id: weight}`` dicts or CSR rows), search with
    :meth:`search`. Term ids are non-negative ints (e.g. a tokenizer's vocabulary ids).

    Memory: 8 bytes per non-zero (int32 doc id, float32 weight) and 12 bytes per term.
    Thread safety: :meth:`search` and :meth:`get_scores` may run concurrently; :meth:`add`
    mutates the object: it builds new postings and swaps the one reference, so concurrent
    readers (each takes the reference once per call) see the old or the new index, never a
    mix; concurrent writers are serialised by a lock.

    >>> index = SparseIndex().add([{0: 1.0, 3: 0.5}, {3: 2.0}, {1: 1.0}])
    >>> idx, scores = index.search([{3: 1.0, 0: 0.1}], k=2)
    >>> idx.tolist(), scores.tolist()
    ([[1, 0]], [[2.0, 0.6000000238418579]])
    """

    def __init__(self) -> None:
        self._postings: Optional[_index.Postings] = None
        _index.WriteLocked.__init__(self)

    @property
    def n_docs(self) -> int:
        """Number of documents."""
        return 0 if self._postings is None else self._postings.n_docs

    @property
    def n_terms(self) -> int:
        """1 + the largest term id seen."""
        return 0 if self._postings is None else self._postings.n_terms

    def __len__(self) -> int:
        return self.n_docs

    def add(self, vectors: Any) -> "SparseIndex":
        """Append documents: a list of ``{term_id: weight}`` dicts or a scipy CSR matrix (rows).

        New documents get the next indices. O(non-zeros of the whole index) time. Returns self.
        Raises DTypeError (not dicts / CSR, non-integer ids), InvalidValueError (negative ids),
        NonFiniteError (NaN/inf weights).
        """
        row_ptr, terms, weights = _rows(vectors, "vectors")
        _check_terms(terms, "vectors")
        n_new = row_ptr.shape[0] - 1
        if n_new == 0:
            return self
        with self._write_lock:
            return self._add_locked(row_ptr, terms, weights, n_new)

    def _add_locked(self, row_ptr: np.ndarray, terms: np.ndarray, weights: np.ndarray, n_new: int) -> "SparseIndex":
        old = self._postings
        n_old = 0 if old is None else old.n_docs
        if n_old + n_new >= _index.MAX_ID:
            raise ShapeError(f"at most {_index.MAX_ID - 1} documents are supported")
        n_terms = max(0 if old is None else old.n_terms, int(terms.max()) + 1 if terms.size else 0)
        counts = np.bincount(terms, minlength=n_terms)
        indptr_b = _index.pointers(counts)
        docs_b = np.empty(terms.shape[0], np.int32)
        vals_b = np.empty(terms.shape[0], np.float32)
        _kernel.fill_weighted(row_ptr, terms.astype(np.int32), weights, indptr_b, docs_b, vals_b)
        if old is None:
            self._postings = _index.Postings(indptr_b, docs_b, vals_b, n_new)
            return self
        df_old = np.zeros(n_terms, np.int64)
        df_old[:old.n_terms] = np.diff(old.indptr)
        indptr = _index.pointers(df_old + counts)
        docs = np.empty(int(indptr[-1]), np.int32)
        vals = np.empty(int(indptr[-1]), np.float32)
        _kernel.merge_weighted(np.ascontiguousarray(old.indptr), np.ascontiguousarray(old.docs),
                               np.ascontiguousarray(old.values), indptr_b, docs_b, vals_b, n_old,
                               indptr, docs, vals)
        self._postings = _index.Postings(indptr, docs, vals, n_old + n_new)
        return self

    def _require(self) -> _index.Postings:
        if self._postings is None:
            raise InvalidValueError("the index is empty: call add() first")
        return self._postings

    def _batch(self, queries: Any, p: _index.Postings) -> _index.QueryBatch:
        row_ptr, terms, weights = _rows(queries, "queries")
        _check_terms(terms, "queries")
        return _index.make_batch(row_ptr, terms, weights, p)

    def search(self, queries: Any, k: int = 10, *, n_threads: Optional[int] = None,
               mask: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """The k documents with the largest dot product with each query, exactly.

        Parameters
        ----------
        queries : dict, list of dicts, or scipy CSR matrix (one row per query)
        k : int > 0, default 10 (clipped to the number of documents)
        n_threads : int, optional (default: every core)
        mask : bool array (n_docs,) or (n_queries, n_docs), optional
            False excludes a document; rows with fewer than k allowed documents are padded
            with index -1 and score -inf.

        Returns
        -------
        indices : int64 (n_queries, min(k, n_docs)), scores : float32 (same shape)
            Score descending, ties by ascending index; documents sharing no term score 0.

        Complexity: the postings of the query terms (fewer with pruning when every weight is
        >= 0), plus O(k log k) per query; no GIL.
        """
        p = self._require()  # one snapshot for the whole call
        return _index.search(p, self._batch(queries, p), k, n_threads, mask)

    def get_scores(self, query: Any) -> np.ndarray:
        """Dot product of one query (a dict or a 1-row CSR matrix) with every document, float32 (n_docs,).

        >>> SparseIndex().add([{0: 2.0}, {1: 1.0}]).get_scores({0: 0.5, 1: -1.0}).tolist()
        [1.0, -1.0]
        """
        p = self._require()
        batch = self._batch(query, p)
        if batch.n != 1:
            raise ShapeError(f"query: expected one query, got {batch.n}")
        return _index.scores(p, batch)

    def save(self, path: Union[str, os.PathLike]) -> None:
        """Save to directory `path` (.npy + meta.json with a CRC-32 per array), atomically
        (temporary directory beside it, then rename; see :mod:`rank._atomic`)."""
        p = self._require()
        _index.save_dir(path, _FORMAT, {"n_docs": p.n_docs, "n_terms": p.n_terms, "nonneg": p.nonneg},
                        {"indptr": p.indptr, "docs": p.docs, "values": p.values, "max_value": p.max_value}, {})

    @classmethod
    def load(cls, path: Union[str, os.PathLike], mmap: bool = True, *, verify: bool = False) -> "SparseIndex":
        """Load an index saved by :meth:`save` (memory-mapped by default).

        Mmap'ed or not, loading validates what the kernels trust (offsets, doc-id bounds and
        order, finite weights, per-term maxima; one sequential pass over the postings);
        ``verify=True`` also compares each array's CRC-32 with the manifest. CorruptFileError
        if the directory is missing, truncated, corrupt, inconsistent or foreign.
        """
        meta, a, _ = _index.load_dir(path, _FORMAT, mmap, ("indptr", "docs", "values", "max_value"), (), verify)
        n_docs = _index.meta_number(path, meta, "n_docs", int, 1, _index.MAX_ID - 1)
        n_terms = _index.meta_number(path, meta, "n_terms", int, 0, _index.MAX_ID)
        nonneg = _index.check_postings(path, a["indptr"], a["docs"], a["values"], n_docs, a["max_value"])
        if a["indptr"].shape[0] != n_terms + 1:
            raise CorruptFileError(f"{path}: array sizes disagree with meta.json (corrupt index)")
        index = cls()
        index._postings = _index.Postings(a["indptr"], a["docs"], a["values"], n_docs, a["max_value"], nonneg)
        return index

