"""Token pooling: shrink multi-vector (ColBERT-style) document representations.

Similar token vectors of a document are clustered hierarchically (Ward linkage) and each
cluster is replaced by its mean, re-normalised to unit length. With ``pool_factor=2`` a
document keeps about half of its vectors, which halves index size and MaxSim cost for a
small loss in retrieval quality.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from rank._ragged import is_packed, ndim_or_ragged, unpack
from rank._validate import as_float_array, check_positive_int, resolve_threads
from rank.errors import InvalidValueError, NonFiniteError, ShapeError
from rank_kernels import pooling as _kernel

if TYPE_CHECKING:
    import numpy.typing as npt

    _Array = np.ndarray[Any, np.dtype[Any]]

__all__ = ["pool_tokens"]

_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)
_KINDS = {_F32: 4, _F64: 8}


def _check_protected(protected: object) -> int:
    if isinstance(protected, (bool, np.bool_)) or not isinstance(protected, (int, np.integer)):
        raise InvalidValueError(f"protected: expected a non-negative integer, got {protected!r}")
    if protected < 0:
        raise InvalidValueError(f"protected: expected a non-negative integer, got {protected}")
    return int(protected)


def _unpack(x: tuple[npt.ArrayLike, npt.ArrayLike], name: str) -> list[_Array]:
    """Split a packed (flat, offsets) pair into a list of row-slice views of flat."""
    flat, offsets = unpack(x, name, dtypes=(_F32, _F64), allow_empty_items=True)
    return [flat[offsets[i]:offsets[i + 1]] for i in range(offsets.shape[0] - 1)]


def _run(bodies: Sequence[_Array], outs: Sequence[npt.NDArray[np.float32]],
         n_threads: int) -> tuple[list[npt.NDArray[np.int64]], npt.NDArray[np.int8]]:
    """Pool each float32/float64 (n_i, d) array of `bodies` into the float32 (m_i, d) `outs`.

    All `bodies` share one dtype and d. Returns (labels int64 (n_i,) arrays, status int8
    (len(bodies),): 0 ok, 1 non-finite distances). Raises MemoryError when out of memory.
    """
    n = len(bodies)
    labels = [np.empty(b.shape[0], np.int64) for b in bodies]
    status = np.zeros(n, np.int8)
    if n == 0:
        return labels, status
    ptrs = np.array([b.ctypes.data for b in bodies], np.uint64)
    rows = np.array([b.shape[0] for b in bodies], np.int64)
    sizes = np.array([o.shape[0] for o in outs], np.int64)
    out_ptrs = np.array([o.ctypes.data for o in outs], np.uint64)
    label_ptrs = np.array([lab.ctypes.data for lab in labels], np.uint64)
    _kernel.pool_batch(ptrs, rows, bodies[0].shape[1], _KINDS[bodies[0].dtype], sizes, out_ptrs,
                       label_ptrs, min(n_threads, n), status)
    if (status == -1).any():
        raise MemoryError("pool_tokens: out of memory for the pairwise distance matrix")
    return labels, status


def _rescale(x: _Array) -> _Array:
    """A float64 array scaled by a power of two (exact) if its magnitude is so extreme that
    squared distances would overflow or underflow; the clustering is unchanged by it."""
    if x.dtype != _F64:
        return x
    mx = float(np.abs(x).max())
    if 1e-100 <= mx <= 1e100 or mx == 0.0 or not np.isfinite(mx):
        return x
    return np.ldexp(x, -np.frexp(mx)[1])


def _cluster(x: _Array, m: int) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """(pooled (m, d) float32, labels (n,) int64) of one float32/float64 (n, d) array."""
    out = np.empty((m, x.shape[1]), np.float32)
    labels, status = _run([x], [out], 1)
    if status[0]:
        raise NonFiniteError("doc: distances between token vectors are NaN or infinite")
    return out, labels[0]


def pool_tokens(doc: npt.ArrayLike | Sequence[npt.ArrayLike] | tuple[npt.ArrayLike, npt.ArrayLike],
                pool_factor: int = 2, *, protected: int = 0, n_threads: int | None = None,
                check_finite: bool = True) -> npt.NDArray[np.float32] | list[npt.NDArray[np.float32]]:
    """Pool the token vectors of a document (or of many) by Ward hierarchical clustering.

    The first `protected` tokens (e.g. a CLS token) are kept unchanged and first. The other
    n_u tokens are clustered with Ward linkage (on their Euclidean distances, as given) and
    the dendrogram is cut into ``m = max(1, n_u // pool_factor)`` clusters, exactly like
    ``scipy.cluster.hierarchy.fcluster(linkage(x, "ward"), m, "maxclust")`` when merge
    heights are distinct. Each cluster becomes the mean of its vectors scaled to unit L2
    norm (a zero mean stays zero). Clusters are ordered by their smallest token index.

    Parameters
    ----------
    doc : array-like (n, d), a list of such arrays, or a packed ``(flat, offsets)`` pair
        Token vectors. float32 and float64 are read in place; float16 and integer inputs
        become float32 (as do all documents of a list that mixes dtypes). A list, or a
        packed pair with document i being ``flat[offsets[i]:offsets[i + 1]]``, pools each
        document independently, in parallel, and returns a list; all its documents must
        share d.
    pool_factor : int, default 2
        Target reduction factor, >= 1. 1 keeps every token (only normalised).
    protected : int, default 0
        Number of leading tokens copied unchanged (cast to float32, not normalised),
        0 <= protected <= n.
    n_threads : int, optional
        Threads for a list of documents (default: all cores; 1 = serial). The GIL is
        released throughout.
    check_finite : bool, default True
        Raise NonFiniteError if a document holds NaN/inf. NaN/inf let through with
        check_finite=False still raise NonFiniteError when they reach a distance. float64
        documents of extreme magnitude are rescaled (exactly, by a power of two) so squared
        distances neither overflow nor underflow.

    Returns
    -------
    float32 array (protected + m, d), or a list of them for a list/packed input.

    Cost per document: O(n_u^2 * d) for the pairwise distances plus O(n_u^2) for the
    nearest-neighbour-chain clustering; O(n_u^2) memory (8 * n_u^2 / 2 bytes, e.g. 1 MB for
    512 tokens). ``pool_factor=1`` skips the clustering.

    >>> import numpy as np
    >>> doc = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    >>> pool_tokens(doc, 2).round(3)
    array([[0.999, 0.053],
           [0.053, 0.999]], dtype=float32)
    >>> pool_tokens(doc, 2, protected=1).shape  # token 0 kept, 3 tokens pooled into 1
    (2, 2)
    """
    pool_factor = check_positive_int(pool_factor, "pool_factor")
    protected = _check_protected(protected)
    n_threads = resolve_threads(n_threads)
    docs: list[Any]
    if is_packed(doc):
        docs, single = _unpack(doc, "doc"), False
    elif isinstance(doc, (list, tuple)) and (len(doc) == 0 or ndim_or_ragged(doc[0]) == 2):
        docs, single = list(doc), False
    else:
        docs, single = [doc], True
    arrays: list[_Array] = []
    for i, x in enumerate(docs):
        name = "doc" if single else f"doc[{i}]"
        x = as_float_array(x, name, 2, dtypes=(_F32, _F64), check_finite=check_finite)
        if arrays and x.shape[1] != arrays[0].shape[1]:
            raise ShapeError(f"{name}: expected dimension {arrays[0].shape[1]} like doc[0], got {x.shape[1]}")
        if protected > x.shape[0]:
            raise InvalidValueError(
                f"protected: {protected} exceeds the {x.shape[0]} tokens of {name} (shape {x.shape})")
        arrays.append(x)
    # One kernel dtype for the whole batch: float64 only if every document is float64.
    if any(x.dtype != _F64 for x in arrays):
        arrays = [x if x.dtype == _F32 else x.astype(np.float32) for x in arrays]
    results, bodies, outs, work = [], [], [], []
    for i, x in enumerate(arrays):
        n_body = x.shape[0] - protected
        m = max(1, n_body // pool_factor) if n_body else 0
        res = np.empty((protected + m, x.shape[1]), np.float32)
        if protected:
            with np.errstate(over="ignore"):
                res[:protected] = x[:protected]
            if check_finite and not np.isfinite(res[:protected]).all():
                name = "doc" if single else f"doc[{i}]"
                raise NonFiniteError(f"{name}: protected tokens overflow float32")
        if n_body:
            bodies.append(_rescale(x[protected:]))
            outs.append(res[protected:])
            work.append(i)
        results.append(res)
    _, status = _run(bodies, outs, n_threads)
    if status.any():
        i = work[int(np.flatnonzero(status)[0])]
        name = "doc" if single else f"doc[{i}]"
        raise NonFiniteError(
            f"{name}: distances between token vectors are NaN or infinite (the tokens hold NaN or "
            "infinity)")
    return results[0] if single else results
