"""Late-interaction (ColBERT / ColPali) MaxSim scoring.

MaxSim(Q, D) = sum over query tokens i of max over document tokens j of <Q_i, D_j>.

Ragged inputs (token matrices of varying length) come in three forms, all scored by the same
kernel without copying float16/float32/float64 data:

- a list of 2-D arrays ``[(L_0, d), (L_1, d), ...]``;
- a padded 3-D array ``(n, L_max, d)`` with optional ``doc_lengths`` (padding never wins
  the max: rows past a document's length are never read);
- a packed pair ``(flat, offsets)``: ``flat`` is ``(sum L, d)`` and document i is
  ``flat[offsets[i]:offsets[i + 1]]``.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Union, cast

import numpy as np

from rank._ragged import is_packed, unpack
from rank._topk import top_k as _top_k
from rank._validate import as_float_array, check_positive_int, resolve_threads
from rank.errors import DTypeError, InvalidValueError, NonFiniteError, ShapeError
from rank_kernels import maxsim as _kernel

if TYPE_CHECKING:
    import numpy.typing as npt

    #: Token matrices of varying length: a list of (L_i, d) arrays, a padded (n, L_max, d)
    #: array, or a packed ``(flat, offsets)`` pair.
    RaggedArrays = Union[Sequence[npt.ArrayLike], npt.ArrayLike, tuple[npt.ArrayLike, npt.ArrayLike]]

__all__ = ["maxsim", "maxsim_batch", "maxsim_matrix", "rerank_maxsim"]

_KINDS: dict[np.dtype[Any], int] = {np.dtype(np.float16): 2, np.dtype(np.float32): 4, np.dtype(np.float64): 8}
_DTYPES: dict[int, np.dtype[Any]] = {v: k for k, v in _KINDS.items()}


class _Ragged:
    """Row pointers of n token matrices of width d and one element kind.

    `view(i)` returns matrix i as an ndarray view; holding the _Ragged keeps the data alive.
    """

    __slots__ = ("ptrs", "lengths", "kind", "d", "view")

    def __init__(self, ptrs: npt.NDArray[np.uint64], lengths: npt.NDArray[np.int64], kind: int, d: int | None,
                 view: Callable[[int], Any]) -> None:
        self.ptrs, self.lengths, self.kind, self.d, self.view = ptrs, lengths, kind, d, view

    def __len__(self) -> int:
        return self.lengths.shape[0]


def _as_lengths(lengths: npt.ArrayLike, name: str, n: int, limit: int) -> npt.NDArray[np.int64]:
    lengths = np.asarray(lengths)
    if lengths.dtype.kind not in "iu":
        raise DTypeError(f"{name}: expected integer lengths, got dtype {lengths.dtype}")
    if lengths.shape != (n,):
        raise ShapeError(f"{name}: expected shape ({n},), one length per entry, got {lengths.shape}")
    lengths = lengths.astype(np.int64)
    if n and lengths.min() < 1:
        i = int(np.argmin(lengths))
        raise InvalidValueError(f"{name}[{i}] = {lengths[i]}: every entry needs at least one token")
    if n and lengths.max() > limit:
        i = int(np.argmax(lengths))
        raise InvalidValueError(f"{name}[{i}] = {lengths[i]} exceeds the padded axis length {limit}")
    return lengths


def _ragged(x: RaggedArrays, name: str, lengths: npt.ArrayLike | None = None,
            lengths_name: str = "doc_lengths") -> _Ragged:
    """Parse one of the three ragged forms into a _Ragged (validated, no copy when possible)."""
    if is_packed(x):
        if lengths is not None:
            raise InvalidValueError(f"{lengths_name}: not used with the packed (flat, offsets) form")
        flat, offsets = unpack(x, name)
        steps = np.diff(offsets)
        d, itemsize = flat.shape[1], flat.dtype.itemsize
        ptrs = (flat.ctypes.data + offsets[:-1] * (d * itemsize)).astype(np.uint64)
        return _Ragged(ptrs, steps, _KINDS[flat.dtype], d, lambda i: flat[offsets[i]:offsets[i + 1]])
    if isinstance(x, np.ndarray) and x.ndim == 3:
        pad = as_float_array(x, name, 3, check_finite=False, allow_empty=True)
        n, lmax, d = pad.shape
        if lmax == 0 or d == 0:
            raise ShapeError(f"{name}: expected non-empty token axes, got shape {pad.shape}")
        lengths = (np.full(n, lmax, np.int64) if lengths is None
                   else _as_lengths(lengths, lengths_name, n, lmax))
        step = lmax * d * pad.dtype.itemsize
        ptrs = (pad.ctypes.data + np.arange(n, dtype=np.uint64) * np.uint64(step)).astype(np.uint64)
        return _Ragged(ptrs, lengths, _KINDS[pad.dtype], d, lambda i: pad[i, :lengths[i]])
    if lengths is not None:
        raise InvalidValueError(f"{lengths_name}: only used with a padded 3-D array")
    if isinstance(x, np.ndarray) or not hasattr(x, "__len__"):
        shape = getattr(x, "shape", None)
        raise ShapeError(
            f"{name}: expected a list of 2-D (tokens, dim) arrays, a padded 3-D array or a "
            f"(flat, offsets) pair, got {type(x).__name__}" + (f" of shape {shape}" if shape else ""))
    items: list[Any] = list(cast(Sequence[Any], x))
    ptrs, rows, cols, kinds = _kernel.ragged_pointers(items)
    present = np.unique(kinds[kinds != 0])
    kind = int(present[0]) if present.shape[0] == 1 else 4  # one shared dtype, else float32
    redo = np.flatnonzero(kinds != kind)
    for i in redo.tolist():  # other dtypes, non-contiguous or not arrays: convert once
        a = as_float_array(items[i], f"{name}[{i}]", 2, dtypes=(_DTYPES[kind],), default=_DTYPES[kind],
                           check_finite=False, allow_empty=True)
        items[i] = a
        ptrs[i], rows[i], cols[i] = a.ctypes.data, a.shape[0], a.shape[1]
    if len(items) == 0:
        return _Ragged(ptrs, rows, kind, None, items.__getitem__)
    if (cols != cols[0]).any():
        i = int(np.flatnonzero(cols != cols[0])[0])
        raise ShapeError(f"{name}[{i}]: expected dimension {cols[0]} like {name}[0], got {cols[i]}")
    if cols[0] == 0:
        raise ShapeError(f"{name}: token vectors have dimension 0")
    if rows.min() < 1:
        i = int(np.argmin(rows))
        raise ShapeError(f"{name}[{i}]: has zero tokens, expected shape (L >= 1, {cols[0]})")
    return _Ragged(ptrs, rows, kind, int(cols[0]), items.__getitem__)


def _scores(queries: npt.NDArray[np.float32], q_offsets: npt.NDArray[np.int64], docs: _Ragged,
            n_threads: int | None, check_finite: bool, docs_name: str) -> npt.NDArray[np.float32]:
    """(n_docs, n_queries) float32 MaxSim of stacked float32 query rows against a _Ragged."""
    n = len(docs)
    out = np.empty((n, q_offsets.shape[0] - 1), np.float32)
    if n == 0:
        return out
    if docs.d != queries.shape[1]:
        raise ShapeError(
            f"{docs_name}: token dimension {docs.d} does not match the query dimension {queries.shape[1]}")
    bad = np.zeros(n, np.uint8)
    _kernel.maxsim_scores(queries, q_offsets, docs.ptrs, docs.lengths, docs.kind, bool(check_finite),
                          resolve_threads(n_threads), out, bad)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        if bad[i] == 2:
            raise MemoryError("maxsim: could not allocate per-thread buffers")
        raise NonFiniteError(
            f"{docs_name if docs_name == 'doc' else f'{docs_name}[{i}]'}: contains NaN or infinity "
            "(pass check_finite=False to skip this check)")
    return out


def _query(query: npt.ArrayLike, check_finite: bool) -> npt.NDArray[np.float32]:
    q = as_float_array(query, "query", 2, dtypes=(np.dtype(np.float32),), check_finite=check_finite)
    return q if q.dtype == np.float32 else q.astype(np.float32)


def maxsim_batch(query: npt.ArrayLike, docs: RaggedArrays, *, doc_lengths: npt.ArrayLike | None = None,
                 n_threads: int | None = None, check_finite: bool = True) -> npt.NDArray[np.float32]:
    """MaxSim of one query against many documents of varying length.

    Parameters
    ----------
    query : array-like (Lq, d)
        Query token vectors (converted to float32).
    docs : list of (L_i, d) arrays, padded (n, L_max, d) array, or (flat, offsets) pair
        Document token vectors, float16, float32 or float64 (read in place, accumulated in
        float32; other dtypes are converted). Each document needs at least one token.
    doc_lengths : array-like of int (n,), optional
        Valid tokens per document of a padded 3-D ``docs`` (default: all L_max).
    n_threads : int, optional
        OpenMP threads (default: all cores; 1 = serial). The GIL is released throughout.
    check_finite : bool, default True
        Raise NonFiniteError if the query or a document holds NaN/inf (checked inside the
        kernel, at no extra pass over memory).

    Returns
    -------
    float32 array (n,)
        ``scores[i] = sum_q max_t <query[q], docs[i][t]>``.

    Cost: 2 * Lq * d * sum(L_i) flops; extra memory O(threads * (Lq + 12 * d)), no
    (n, Lq, L_max) intermediate.

    >>> import numpy as np
    >>> q = np.array([[1.0, 0.0], [0.0, 1.0]])
    >>> maxsim_batch(q, [np.array([[1.0, 0.0], [0.5, 0.5]]), np.array([[0.0, 2.0]])])
    array([1.5, 2. ], dtype=float32)
    """
    q = _query(query, check_finite)
    d = _ragged(docs, "docs", doc_lengths)
    offsets = np.array([0, q.shape[0]], np.int64)
    return _scores(q, offsets, d, n_threads, check_finite, "docs")[:, 0].copy()


def maxsim(query: npt.ArrayLike, doc: npt.ArrayLike, *, check_finite: bool = True) -> float:
    """MaxSim of one query (Lq, d) against one document (Ld, d), as a Python float.

    ``sum_q max_t <query[q], doc[t]>``, accumulated in float32. Cost 2 * Lq * Ld * d flops.

    >>> maxsim([[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [0.5, 0.5]])
    1.5
    """
    q = _query(query, check_finite)
    d = as_float_array(doc, "doc", 2, check_finite=False)
    if d.shape[1] != q.shape[1]:
        raise ShapeError(f"doc: dimension {d.shape[1]} does not match the query dimension {q.shape[1]} "
                         f"(expected shape (Ld, {q.shape[1]}), got {d.shape})")
    one = _ragged([d], "doc")
    return float(_scores(q, np.array([0, q.shape[0]], np.int64), one, 1, check_finite, "doc")[0, 0])


def maxsim_matrix(queries: RaggedArrays, docs: RaggedArrays, *, query_lengths: npt.ArrayLike | None = None,
                  doc_lengths: npt.ArrayLike | None = None, n_threads: int | None = None,
                  check_finite: bool = True) -> npt.NDArray[np.float32]:
    """MaxSim of every query against every document of a candidate pool.

    Parameters
    ----------
    queries : list of (Lq_j, d) arrays, padded (m, Lq_max, d) array, or (flat, offsets) pair
    docs : list of (L_i, d) arrays, padded (n, L_max, d) array, or (flat, offsets) pair
    query_lengths, doc_lengths : array-like of int, optional
        Valid tokens per entry for the padded forms.
    n_threads, check_finite : as in :func:`maxsim_batch`.

    Returns
    -------
    float32 array (m, n)
        ``scores[j, i] = MaxSim(queries[j], docs[i])``.

    Each document is streamed through the cache once for all queries (their token rows are
    stacked into one packed panel set). Cost 2 * sum(Lq_j) * d * sum(L_i) flops.

    >>> import numpy as np
    >>> maxsim_matrix([np.eye(2)], [np.eye(2), np.ones((1, 2))])
    array([[2., 2.]], dtype=float32)
    """
    qr = _ragged(queries, "queries", query_lengths, "query_lengths")
    if len(qr) == 0:
        raise ShapeError("queries: expected at least one query, got none")
    rows = [qr.view(j) for j in range(len(qr))]
    stacked = np.concatenate(rows).astype(np.float32, copy=False)
    if check_finite and not np.isfinite(stacked).all():
        j = next(j for j, r in enumerate(rows) if not np.isfinite(r).all())
        raise NonFiniteError(f"queries[{j}]: contains NaN or infinity (pass check_finite=False to skip this check)")
    offsets = np.concatenate([[0], np.cumsum(qr.lengths)]).astype(np.int64)
    d = _ragged(docs, "docs", doc_lengths)
    if d.d is not None and d.d != qr.d:
        raise ShapeError(f"docs: token dimension {d.d} does not match the query dimension {qr.d}")
    return np.ascontiguousarray(_scores(stacked, offsets, d, n_threads, check_finite, "docs").T)


def rerank_maxsim(query: npt.ArrayLike, docs: RaggedArrays, top_k: int | None = None, *,
                  doc_lengths: npt.ArrayLike | None = None, n_threads: int | None = None,
                  check_finite: bool = True) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """Rank documents by MaxSim against `query`: ``(indices int64, scores float32)``.

    Sorted by score descending, ties by the smaller index. ``top_k=None`` ranks every
    document; otherwise the best ``min(top_k, n)``. Other arguments as in
    :func:`maxsim_batch`. Cost: the scoring plus O(n + k log k).

    >>> import numpy as np
    >>> rerank_maxsim(np.eye(2), [np.ones((1, 2)) * 0.1, np.eye(2), np.ones((1, 2))], top_k=2)
    (array([1, 2]), array([2., 2.], dtype=float32))
    """
    k = check_positive_int(top_k, "top_k", allow_none=True)
    scores = maxsim_batch(query, docs, doc_lengths=doc_lengths, n_threads=n_threads, check_finite=check_finite)
    return _top_k(scores, scores.shape[0] if k is None else k)
