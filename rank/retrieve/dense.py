"""Dense vector scoring (dot product, cosine similarity) and exact top-k search.

- :func:`dot_scores` and :func:`cosine_scores` score one query or a batch of queries against
  a matrix of float16/float32/float64 rows, read in place (no copy, no conversion pass).
- :class:`DenseIndex` stores vectors (float32 or float16) and answers exact top-k queries
  with a fused kernel that never materialises the full ``(n_queries, n)`` score matrix.

All scores are float32: each is one float32 fused-multiply-add chain over the d coordinates,
so results are bit-identical for any ``n_threads`` and whether a query is scored alone or in
any batch. Cosine similarity with a zero vector is 0. Batches of 5 or more queries share each
pass over the matrix (compute-bound, faster than NumPy's sgemm); 1-4 queries run at memory
bandwidth, like a matrix-vector product.

>>> import numpy as np
>>> m = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]], dtype=np.float32)
>>> dot_scores([1.0, 1.0], m)
array([1., 2., 2.], dtype=float32)
"""
from __future__ import annotations

import os
import struct
from typing import TYPE_CHECKING, Any

import numpy as np

from rank._validate import as_float_array, check_choice, check_positive_int, choice_error, resolve_threads
from rank.errors import CorruptFileError, DTypeError, InvalidValueError, NonFiniteError, ShapeError
from rank.retrieve._index import as_mask
from rank.retrieve._shareable import HubShareable
from rank_kernels import dense as _kernel

if TYPE_CHECKING:
    import numpy.typing as npt

__all__ = ["dot_scores", "cosine_scores", "DenseIndex"]

_KINDS: dict[np.dtype[Any], int] = {np.dtype(np.float16): 2, np.dtype(np.float32): 4, np.dtype(np.float64): 8}
METRICS = ("dot", "cosine")
INDEX_KINDS = ("flat", "hnsw", "ivf", "ivfpq")
STORAGE_DTYPES = ("float32", "float16")

# Rows normalised per chunk when adding to a cosine index (bounds the float64 temporary).
_CHUNK = 1 << 16


def _queries(query: npt.ArrayLike, dim: int, name: str, check_finite: bool, *,
             normalize: bool) -> tuple[npt.NDArray[np.float32], bool]:
    """`query` as a C-contiguous float32 (nq, dim) array, and whether it was 1-D."""
    q = as_float_array(query, name, (1, 2), check_finite=check_finite)
    single = q.ndim == 1
    if q.shape[-1] != dim:
        want = f"({dim},) or (n_queries, {dim})"
        raise ShapeError(f"{name}: expected shape {want} to match the vector dimension {dim}, got shape {q.shape}")
    q2 = q.reshape(1, dim) if single else q
    if normalize:
        q2 = _unit_rows(q2)
    elif q2.dtype != np.float32:
        with np.errstate(over="ignore"):  # overflow is reported below
            q2 = q2.astype(np.float32)
    if check_finite and q.dtype == np.float64 and not np.isfinite(q2).all():
        raise NonFiniteError(f"{name}: values overflow float32 (magnitude above {np.finfo(np.float32).max:.3g})")
    return np.ascontiguousarray(q2), single


def _unit_rows(x: np.ndarray[Any, np.dtype[Any]], dtype: npt.DTypeLike = np.float32) -> np.ndarray[Any, np.dtype[Any]]:
    """Rows of `x` divided by their Euclidean norm (computed in float64; zero rows stay zero)."""
    x = x.astype(np.float64)
    scale = np.abs(x).max(axis=1, keepdims=True)  # guards the squares against overflow
    np.divide(x, scale, out=x, where=scale > 0)
    norm = np.sqrt(np.einsum("ij,ij->i", x, x))[:, None]
    np.divide(x, norm, out=x, where=norm > 0)
    return x.astype(dtype)


def _matrix(matrix: npt.ArrayLike, name: str = "matrix") -> np.ndarray[Any, np.dtype[Any]]:
    """`matrix` as a C-contiguous (n, d) float16/float32/float64 array (no copy if already one)."""
    return as_float_array(matrix, name, 2, check_finite=False)


def _find_nonfinite_row(matrix: np.ndarray[Any, np.dtype[Any]], name: str) -> None:
    """Raise NonFiniteError naming the first row of `matrix` with NaN/inf (as float32), if any."""
    for start in range(0, matrix.shape[0], _CHUNK):
        with np.errstate(over="ignore"):  # float64 beyond the float32 range counts as infinite
            bad = ~np.isfinite(matrix[start:start + _CHUNK].astype(np.float32)).all(axis=1)
        if bad.any():
            row = start + int(np.flatnonzero(bad)[0])
            raise NonFiniteError(
                f"{name}[{row}]: contains NaN or infinity (or a value beyond the float32 range); "
                "pass check_finite=False to skip this check")


def _scores(query: npt.ArrayLike, matrix: npt.ArrayLike, n_threads: int | None, check_finite: bool,
            normalize: bool) -> npt.NDArray[np.float32]:
    m = _matrix(matrix)
    q, single = _queries(query, m.shape[1], "query", check_finite, normalize=normalize)
    n_threads = resolve_threads(n_threads)
    out = np.empty((q.shape[0], m.shape[0]), np.float32)
    args = (q, m.ctypes.data, m.shape[0], _KINDS[m.dtype], normalize)
    if _kernel.dense_scores(*args, bool(check_finite), n_threads, out):
        # Some product is NaN/inf: either the matrix holds one, or finite values overflowed.
        _find_nonfinite_row(m, "matrix")
        _kernel.dense_scores(*args, False, n_threads, out)
    return out[0] if single else out


def dot_scores(query: npt.ArrayLike, matrix: npt.ArrayLike, *, n_threads: int | None = None,
               check_finite: bool = True) -> npt.NDArray[np.float32]:
    """Dot products of one query or a batch of queries with every row of `matrix`.

    Parameters
    ----------
    query : array-like, shape (d,) or (n_queries, d)
        Query vectors; float16/float64/integer inputs are converted to float32.
    matrix : array-like, shape (n, d), float16, float32 or float64
        The vectors to score, read in place when C-contiguous (float16 halves the memory
        traffic; float64 is converted row block by row block, never as a whole).
    n_threads : int, optional
        Threads to use (default: every core available to the process; 1 = serial).
    check_finite : bool, default True
        Raise NonFiniteError if `query` or `matrix` holds NaN or infinity.

    Returns
    -------
    numpy.ndarray, float32, shape (n,) for a 1-D query, else (n_queries, n)
        ``scores[i, r] = <query[i], matrix[r]>``.

    Complexity: O(n_queries * n * d) time, no extra memory beyond the output and one block
    of rows per thread. Runs without the GIL.

    Raises ShapeError (wrong ndim, empty input, dimension mismatch), NonFiniteError, DTypeError,
    InvalidValueError (bad `n_threads`).

    >>> import numpy as np
    >>> dot_scores(np.array([[1, 0], [0, 1]]), np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]))
    array([[1., 3., 5.],
           [2., 4., 6.]], dtype=float32)
    """
    return _scores(query, matrix, n_threads, check_finite, False)


def cosine_scores(query: npt.ArrayLike, matrix: npt.ArrayLike, *, n_threads: int | None = None,
                  check_finite: bool = True) -> npt.NDArray[np.float32]:
    """Cosine similarities of one query or a batch of queries with every row of `matrix`.

    ``scores[i, r] = <query[i], matrix[r]> / (|query[i]| |matrix[r]|)``, and 0 when either
    vector is zero. Queries are normalised in float64 up front; row norms are computed inside
    the kernel as the rows stream by (no normalised copy of `matrix` is made).

    Parameters, return shapes and errors are as for :func:`dot_scores`: `query` (d,) or
    (n_queries, d), `matrix` (n, d) float16/float32/float64, result float32 (n,) or
    (n_queries, n); `n_threads` defaults to every core, `check_finite` to True.

    Complexity: O(n_queries * n * d + n * d) time, no extra memory beyond the output.

    >>> import numpy as np
    >>> cosine_scores([1.0, 0.0], np.array([[2.0, 0.0], [1.0, 1.0], [0.0, 0.0]]))
    array([1.        , 0.70710677, 0.        ], dtype=float32)
    """
    return _scores(query, matrix, n_threads, check_finite, True)


def _as_mask(mask: Any, nq: int, n: int) -> np.ndarray[Any, np.dtype[np.uint8]] | None:
    """A uint8 (1, n) or (nq, n) view of a boolean mask (True = allowed), or None."""
    return None if mask is None else as_mask(mask, nq, n)


# ---------------------------------------------------------------------------------------------
# DenseIndex file format (little-endian):
#   offset 0   8 bytes  magic b"RKDENSE\0"
#          8   uint32   format version (1)
#         12   uint32   header size in bytes (64)
#         16   uint64   dim
#         24   uint64   count (number of vectors)
#         32   uint8    metric code (0 dot, 1 cosine)
#         33   uint8    dtype code (0 float32, 1 float16)
#         34   30 bytes zero padding
#         64   count * dim values of the storage dtype, row-major (vectors as stored, i.e.
#              already normalised for the cosine metric)
# The header is 64 bytes so that memory-mapped vectors stay 64-byte aligned.

_MAGIC = b"RKDENSE\0"
_ANN_MAGIC = b"RKDANN\0\0"  # approximate kinds (rank.retrieve.ann)
_VERSION = 1
_HEADER = struct.Struct("<8sIIQQBB30x")
_METRIC_CODES = {"dot": 0, "cosine": 1}
_DTYPE_CODES = {"float32": 0, "float16": 1}


def _check_finite_rows(path: str, data: np.ndarray[Any, np.dtype[Any]]) -> None:
    """CorruptFileError if a loaded vector holds NaN or infinity (chunked: O(chunk) memory)."""
    for i in range(0, data.shape[0], _CHUNK):
        if not np.isfinite(data[i:i + _CHUNK]).all():
            raise CorruptFileError(f"{path}: vectors contain NaN or infinity")


class DenseIndex(HubShareable):
    """Top-k search over dense vectors by dot product or cosine: exact, or approximate (FAISS).

    Parameters
    ----------
    dim : int
        Vector dimension (> 0).
    metric : {"dot", "cosine"}, default "dot"
        ``"cosine"`` stores the vectors normalised to unit length (zero vectors stay zero) and
        normalises queries, so search scores are cosine similarities; ``vectors`` then returns
        the normalised vectors.
    dtype : {"float32", "float16"}, default "float32"
        Storage type of the exact index. float16 halves memory and memory traffic; scores are
        still computed in float32 from the stored (rounded) values. Approximate kinds store
        float32 (``"ivfpq"``: PQ codes).
    index : {"flat", "hnsw", "ivf", "ivfpq"}, default "flat"
        ``"flat"``: exact search with the fused kernel of this module (no dependency).
        The others are approximate and backed by FAISS (extra ``ann``: ``faiss-cpu>=1.8,<2``,
        imported when such an index is created; MissingDependencyError without it):
        ``"hnsw"`` a graph (no training), ``"ivf"`` k-means cells scanned exactly,
        ``"ivfpq"`` the cells with product-quantized vectors (``pq_m`` bytes each). See
        :mod:`rank.retrieve.ann` for the details and the file format.
    nlist : int, optional
        IVF cells (default ``round(4 * sqrt(n))`` for the n vectors trained on).
    nprobe : int, default 32
        IVF cells scanned per query (a search may override it); more is slower and more exact.
    pq_m, pq_nbits : int, optional
        ``"ivfpq"`` sub-quantizers (must divide dim; default the largest divisor <= dim / 8)
        and bits per code (default 8).
    hnsw_m, ef_construction, ef_search : int, default 32, 100, 64
        ``"hnsw"`` graph degree, build-time and search-time candidate list sizes (a search may
        override ef_search).
    train_size : int, optional
        Vectors sampled to train an IVF kind (default ``max(65536, 64 * nlist)``).
    seed : int, default 0
        Seed of the training sample and of k-means.

    Raises
    ------
    UnknownMethodError
        For an unknown `metric`, `dtype` or `index` (the message lists the valid names).
    InvalidValueError
        For a bad `dim` or knob, or ``dtype="float16"`` with an approximate kind.
    MissingDependencyError
        For an approximate kind without FAISS (or with a FAISS outside ``>=1.8,<2``).

    Notes
    -----
    Searching is safe from several threads at once (each call releases the GIL and also runs
    `n_threads` threads inside). :meth:`add` and :meth:`train` mutate the index and must not
    run concurrently with searches or other adds.

    IVF kinds train on the first :meth:`add` (a random sample of its vectors) unless
    :meth:`train` was called; searching an untrained IVF index raises InvalidValueError.

    Complexity: the exact :meth:`search` takes O(n_queries * len(index) * dim) time and
    O(n_threads * n_queries * k) extra memory; ``"hnsw"`` about O(ef_search * hnsw_m * dim *
    log n) per query, ``"ivf"`` O((nlist + nprobe * n / nlist) * dim) per query. :meth:`add` is
    amortised O(rows * dim) (``"hnsw"``: O(rows * ef_construction * hnsw_m * dim * log n)).

    Examples
    --------
    >>> import numpy as np
    >>> index = DenseIndex(2, metric="cosine")
    >>> index.add(np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
    array([0, 1, 2])
    >>> ids, scores = index.search([1.0, 0.2], k=2)
    >>> ids
    array([0, 2])
    """

    def __init__(self, dim: int, *, metric: str = "dot", dtype: npt.DTypeLike = "float32", index: str = "flat",
                 nlist: int | None = None, nprobe: int = 32, pq_m: int | None = None, pq_nbits: int = 8,
                 hnsw_m: int = 32, ef_construction: int = 100, ef_search: int = 64,
                 train_size: int | None = None, seed: int = 0) -> None:
        self._dim = check_positive_int(dim, "dim")
        check_choice("metric", metric, METRICS)
        try:
            name = np.dtype(dtype).name
        except TypeError:
            name = None
        if name not in STORAGE_DTYPES:
            raise choice_error("dtype", dtype, STORAGE_DTYPES)
        check_choice("index", index, INDEX_KINDS)
        if index != "flat" and name != "float32":
            raise InvalidValueError(f"dtype: the approximate index {index!r} stores float32 vectors, got {name!r}")
        self._metric = metric
        self._dtype = np.dtype(name)
        self._kind = index
        self._buf = np.empty((0, self._dim), self._dtype)  # capacity >= count rows
        self._n = 0
        self._ann: Any = None
        if index != "flat":
            from rank.retrieve.ann import ApproxIndex

            self._ann = ApproxIndex(self._dim, metric, index, nlist=nlist, nprobe=nprobe, pq_m=pq_m,
                                    pq_nbits=pq_nbits, hnsw_m=hnsw_m, ef_construction=ef_construction,
                                    ef_search=ef_search, train_size=train_size, seed=seed)

    # -- properties -------------------------------------------------------------------------

    @property
    def dim(self) -> int:
        """Vector dimension."""
        return self._dim

    @property
    def metric(self) -> str:
        """``"dot"`` or ``"cosine"``."""
        return self._metric

    @property
    def dtype(self) -> np.dtype[Any]:
        """Storage dtype (numpy.dtype float32 or float16)."""
        return self._dtype

    @property
    def index(self) -> str:
        """The index kind: ``"flat"`` (exact), ``"hnsw"``, ``"ivf"`` or ``"ivfpq"``."""
        return self._kind

    @property
    def is_trained(self) -> bool:
        """False only for an IVF kind that has not been trained yet."""
        return self._ann is None or self._ann.trained

    @property
    def nprobe(self) -> int | None:
        """IVF cells scanned per query (None for other kinds); settable."""
        return self._ann.nprobe if self._ann is not None and self._kind != "hnsw" else None

    @nprobe.setter
    def nprobe(self, value: int) -> None:
        if self._ann is None or self._kind == "hnsw":
            raise InvalidValueError(f"nprobe: only for the 'ivf' and 'ivfpq' kinds, this index is {self._kind!r}")
        self._ann.nprobe = check_positive_int(value, "nprobe")

    @property
    def ef_search(self) -> int | None:
        """HNSW search candidate list size (None for other kinds); settable."""
        return self._ann.ef_search if self._kind == "hnsw" else None

    @ef_search.setter
    def ef_search(self, value: int) -> None:
        if self._kind != "hnsw":
            raise InvalidValueError(f"ef_search: only for the 'hnsw' kind, this index is {self._kind!r}")
        self._ann.ef_search = check_positive_int(value, "ef_search")

    @property
    def nbytes(self) -> int:
        """Bytes the stored vectors take (approximate kinds: their serialized FAISS size)."""
        if self._ann is None:
            return self._n * self._dim * self._dtype.itemsize
        if len(self._ann) == 0:
            return 0
        return int(self._ann.faiss.serialize_index(self._ann.index).nbytes)

    @property
    def vectors(self) -> np.ndarray[Any, np.dtype[Any]]:
        """The stored vectors, a read-only (len(index), dim) view (normalised for cosine).

        ``"hnsw"`` returns a copy reconstructed from FAISS; the IVF kinds raise InvalidValueError.
        """
        if self._ann is not None:
            v = self._ann.vectors()
        else:
            v = self._buf[:self._n].view()
        v.flags.writeable = False
        return v

    def __len__(self) -> int:
        return self._n if self._ann is None else len(self._ann)

    def __repr__(self) -> str:
        kind = "" if self._kind == "flat" else f", index={self._kind!r}"
        return (f"DenseIndex(dim={self._dim}, metric={self._metric!r}, dtype={self._dtype.name!r}{kind}, "
                f"n={len(self)})")

    # -- adding -----------------------------------------------------------------------------

    def _rows(self, vectors: npt.ArrayLike, check_finite: bool) -> np.ndarray[Any, np.dtype[Any]]:
        v = as_float_array(vectors, "vectors", (1, 2), check_finite=check_finite)
        if v.shape[-1] != self._dim:
            raise ShapeError(
                f"vectors: expected shape (n, {self._dim}) or ({self._dim},) to match the index "
                f"dimension {self._dim}, got shape {v.shape}")
        return v.reshape(1, self._dim) if v.ndim == 1 else v

    def _float32_rows(self, v: np.ndarray[Any, np.dtype[Any]]) -> npt.NDArray[np.float32]:
        """`v` as float32 (unit rows for cosine); NonFiniteError for values beyond float32 or NaN."""
        if self._metric == "cosine":
            out = _unit_rows(v, np.float32)
        else:
            with np.errstate(over="ignore", invalid="ignore"):
                out = np.ascontiguousarray(v, dtype=np.float32)
        bad = ~np.isfinite(out).all(axis=1)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise NonFiniteError(f"vectors[{row}]: contains NaN or infinity, or a value beyond the float32 range "
                                 f"(an approximate {self._kind!r} index cannot store it)")
        return out

    def add(self, vectors: npt.ArrayLike, *, check_finite: bool = True,
            show_progress: bool = True) -> npt.NDArray[np.int64]:
        """Append vectors to the index and return their ids.

        **Mutates the index**: not safe to call while another thread searches or adds.

        Parameters
        ----------
        vectors : array-like, shape (n, dim) or (dim,)
            float16/float32/float64 (integers are converted). For ``metric="cosine"`` they
            are normalised (in float64) before being stored in the index dtype.
        check_finite : bool, default True
            Raise NonFiniteError for NaN or infinity. Values that overflow the storage type
            (float64 beyond the float32 range, or beyond float16 for ``dtype="float16"``) always
            raise NonFiniteError: they would be stored as infinity. Approximate kinds always
            refuse NaN/inf (FAISS cannot index them).
        show_progress : bool, default True
            A progress bar (tqdm, when installed and stderr is a terminal) for IVF training and
            large approximate adds.

        Returns
        -------
        numpy.ndarray int64, shape (n,)
            The ids of the new rows: ``len(index) - n ... len(index) - 1``.

        An untrained IVF index is first trained on a random sample of `vectors` (see
        :meth:`train`); InvalidValueError if there are fewer vectors than cells.

        Complexity: amortised O(n * dim) (storage grows geometrically); ``"hnsw"`` inserts in
        O(n * ef_construction * hnsw_m * dim * log n), IVF training O(train_size * nlist * dim)
        per k-means iteration.

        >>> index = DenseIndex(3)
        >>> index.add([[1, 2, 3], [4, 5, 6]])
        array([0, 1])
        >>> len(index)
        2
        """
        v = self._rows(vectors, check_finite)
        n = v.shape[0]
        if self._ann is not None:
            n0 = len(self._ann)
            self._ann.add(self._float32_rows(v), show_progress=show_progress)
            return np.arange(n0, n0 + n, dtype=np.int64)
        n0 = self._n
        if self._buf.shape[0] < n0 + n or not self._buf.flags.writeable:
            cap = max(n0 + n, self._buf.shape[0] + self._buf.shape[0] // 2)
            buf = np.empty((cap, self._dim), self._dtype)
            buf[:n0] = self._buf[:n0]
        else:
            buf = self._buf
        dst = buf[n0:n0 + n]
        for i in range(0, n, _CHUNK):
            part = v[i:i + _CHUNK]
            if self._metric == "cosine":
                part = _unit_rows(part, self._dtype)
            with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported below
                dst[i:i + _CHUNK] = part
            if part.dtype.itemsize > self._dtype.itemsize:
                stored = dst[i:i + _CHUNK]
                # A value that was finite in the input but is not in storage overflowed.
                bad = ~np.isfinite(stored).all(axis=1)
                if bad.any():
                    bad &= np.isfinite(part).all(axis=1)
                if bad.any():
                    row = i + int(np.flatnonzero(bad)[0])
                    if self._dtype == np.float16:
                        raise NonFiniteError(
                            f"vectors[{row}]: values overflow float16 storage (magnitude above 65504); "
                            "use dtype='float32' or metric='cosine'")
                    raise NonFiniteError(
                        f"vectors[{row}]: values overflow float32 storage (magnitude above "
                        f"{np.finfo(np.float32).max:.4g}); scale the vectors or use metric='cosine'")
        self._buf = buf
        self._n = n0 + n
        return np.arange(n0, n0 + n, dtype=np.int64)

    def train(self, vectors: npt.ArrayLike, *, check_finite: bool = True, show_progress: bool = True) -> None:
        """Train an IVF kind's cells (and PQ codebooks) on `vectors`, before any :meth:`add`.

        `vectors` (n, dim) is a representative sample (n >= nlist, and >= 2**pq_nbits for
        ``"ivfpq"``); at most `train_size` of them, drawn at random, are used. A no-op for
        ``"flat"`` and ``"hnsw"``. InvalidValueError when the index already holds vectors or
        the sample is too small. Complexity O(train_size * nlist * dim) per k-means iteration
        (25 iterations).

        **Mutates the index.**
        """
        v = self._rows(vectors, check_finite)
        if self._ann is not None:
            self._ann.train(self._float32_rows(v), show_progress=show_progress)

    # -- searching --------------------------------------------------------------------------

    def search(self, queries: npt.ArrayLike, k: int = 10, *, n_threads: int | None = None,
               check_finite: bool = True, mask: npt.ArrayLike | None = None, nprobe: int | None = None,
               ef_search: int | None = None) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """The `k` best rows for each query (largest dot product or cosine similarity).

        Parameters
        ----------
        queries : array-like, shape (dim,) or (n_queries, dim)
            Query vectors (converted to float32; normalised for the cosine metric).
        k : int, default 10
            Results per query (> 0). If k > len(index), every row is returned (k is clamped).
        n_threads : int, optional
            Threads to use (default: every core available to the process; 1 = serial).
        check_finite : bool, default True
            Raise NonFiniteError if `queries` holds NaN or infinity.
        mask : bool array, shape (len(index),) or (n_queries, len(index)), optional
            Rows allowed in the results (True = allowed), shared by every query or one row per
            query. Fewer than k allowed rows are padded with id -1 and score -inf. On the flat
            index a mask scores every row (an (n_queries, len(index)) float32 temporary).
        nprobe, ef_search : int, optional
            Override the index's knob for this call (``"ivf"``/``"ivfpq"``, ``"hnsw"``).

        Returns
        -------
        (indices, scores) : int64 and float32 arrays of shape (n_queries, min(k, len(index))),
            or (min(k, len(index)),) for a 1-D query; sorted by score descending, equal scores
            by smaller row id first (deterministic for any `n_threads`). Approximate kinds may
            find fewer than k rows (e.g. a small ``nprobe``): the rest is padded with -1 / -inf.

        Complexity: exact, O(n_queries * len(index) * dim) time; O(n_threads * n_queries * k)
        extra memory, no (n_queries, len(index)) intermediate (except with a mask, or when k is
        a large fraction of the index, where a full sort is cheaper). Approximate: see the
        class notes. Runs without the GIL; thread-safe.

        Raises InvalidValueError for an untrained IVF index, ShapeError for an empty index or
        a dimension mismatch, NonFiniteError, and DTypeError/ShapeError for a bad `mask`.

        >>> import numpy as np
        >>> index = DenseIndex(2)
        >>> _ = index.add([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0]])
        >>> index.search([[1.0, 0.0], [0.0, 1.0]], k=2)
        (array([[2, 0],
               [1, 0]]), array([[2., 1.],
               [1., 0.]], dtype=float32))
        >>> index.search([1.0, 0.0], k=2, mask=np.array([True, True, False]))
        (array([0, 1]), array([1., 0.], dtype=float32))
        """
        ann = self._ann
        if ann is not None and not ann.trained:
            raise InvalidValueError(
                f"search: the {self._kind!r} index is not trained; call train(sample) or add(vectors) first")
        n, buf = len(self), self._buf
        if n == 0:
            raise ShapeError("search: the index is empty; add vectors first")
        k = check_positive_int(k, "k")
        nprobe = check_positive_int(nprobe, "nprobe", allow_none=True)
        ef_search = check_positive_int(ef_search, "ef_search", allow_none=True)
        q, single = _queries(queries, self._dim, "queries", check_finite,
                             normalize=self._metric == "cosine")
        if ann is not None and not check_finite and not np.isfinite(q).all():
            raise NonFiniteError("queries: contains NaN or infinity (an approximate index cannot search them)")
        n_threads = resolve_threads(n_threads)
        m = _as_mask(mask, q.shape[0], n)
        k = min(k, n)
        if ann is not None:
            idx, top = ann.search(q, k, n_threads, nprobe=nprobe, ef_search=ef_search, mask=m)
        elif m is not None:
            idx, top = self._masked_search(q, k, n_threads, m)
        else:
            data = buf[:n]
            kind = _KINDS[data.dtype]
            if 4 * k >= n:
                # A large share of the index is returned anyway: score everything and sort.
                scores = np.empty((q.shape[0], n), np.float32)
                _kernel.dense_scores(q, data.ctypes.data, n, kind, False, False, n_threads, scores)
                idx = np.argsort(-scores, axis=1, kind="stable")[:, :k]
                top = np.take_along_axis(scores, idx, axis=1)
            else:
                idx = np.empty((q.shape[0], k), np.int64)
                top = np.empty((q.shape[0], k), np.float32)
                _kernel.dense_topk(q, data.ctypes.data, n, kind, False, False, k, n_threads, idx, top)
        if single:
            return idx[0], top[0]
        return idx, top

    def _masked_search(self, q: npt.NDArray[np.float32], k: int, n_threads: int,
                       m: np.ndarray[Any, np.dtype[np.uint8]]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        n = self._n
        data = self._buf[:n]
        scores = np.empty((q.shape[0], n), np.float32)
        _kernel.dense_scores(q, data.ctypes.data, n, _KINDS[data.dtype], False, False, n_threads, scores)
        allowed = np.broadcast_to(m.view(bool), scores.shape)
        scores[~allowed] = -np.inf
        idx = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        top = np.take_along_axis(scores, idx, axis=1)
        ok = np.take_along_axis(allowed, idx, axis=1)
        idx[~ok] = -1
        top[~ok] = -np.inf
        return idx, top

    # -- persistence ------------------------------------------------------------------------

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the index to `path` (see the module source for the format; approximate kinds:
        :mod:`rank.retrieve.ann`, FAISS's own serialization inside a checksummed header).

        The file is written to a temporary name in the same directory, flushed to disk and
        renamed into place, so a failed save leaves an existing file at `path` untouched.
        Size: 64 + len(index) * dim * itemsize bytes. O(len(index) * dim).

        >>> import os, tempfile
        >>> index = DenseIndex(2); _ = index.add([[1.0, 2.0]])
        >>> path = os.path.join(tempfile.mkdtemp(), "vectors.rkd")
        >>> index.save(path)
        >>> len(DenseIndex.load(path))
        1
        """
        from rank._atomic import atomic_open

        path = os.fspath(path)
        if self._ann is not None:
            self._ann.save(path)
            return
        header = _HEADER.pack(_MAGIC, _VERSION, _HEADER.size, self._dim, self._n,
                              _METRIC_CODES[self._metric], _DTYPE_CODES[self._dtype.name])
        data = self._buf[:self._n]
        data = np.ascontiguousarray(data, dtype=data.dtype.newbyteorder("<"))
        with atomic_open(path, "wb") as f:
            f.write(header)
            flat = data.reshape(-1)
            step = max(1, (64 << 20) // data.dtype.itemsize)
            for i in range(0, flat.shape[0], step):
                f.write(flat[i:i + step].data.cast("B"))

    @classmethod
    def load(cls, path: str | os.PathLike[str], mmap: bool = True, *, verify: bool = False) -> DenseIndex:
        """Read an index written by :meth:`save`.

        Every index class loads the same way, ``load(path, mmap=True, *, verify=False)``:
        memory-mapping is the default because loading is then O(1) in the collection size and
        processes serving the same file share its pages, while everything a kernel trusts is
        still checked.

        Parameters
        ----------
        path : str or os.PathLike
        mmap : bool, default True
            Map the vectors read-only from the file instead of reading them into memory
            (pages load on demand; a later :meth:`add` copies them into memory first).
            Approximate kinds are always read into memory (their checksum is verified first;
            nothing is unpickled).
        verify : bool, default False
            Also check that every stored vector is finite (reads every byte). Without mmap the
            vectors are read anyway, so they are always checked then.

        Returns
        -------
        DenseIndex
            The index, O(len(index) * dim) time without mmap or with `verify`, O(1) otherwise.

        Raises
        ------
        CorruptFileError
            For a truncated or foreign file, an unsupported format version or an inconsistent
            header.
        """
        path = os.fspath(path)
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(_HEADER.size)
            if len(head) >= 8 and head[:8] == _ANN_MAGIC:
                from rank.retrieve.ann import ApproxIndex

                f.seek(0)
                ann = ApproxIndex.load(path, f, size)
                index = cls(ann.dim, metric=ann.metric, index=ann.kind, nlist=ann.nlist, nprobe=ann.nprobe,
                            pq_m=ann.pq_m, pq_nbits=ann.pq_nbits, hnsw_m=ann.hnsw_m,
                            ef_construction=ann.ef_construction, ef_search=ann.ef_search)
                index._ann = ann
                return index
            if len(head) < 8 or head[:8] != _MAGIC:
                raise CorruptFileError(f"{path}: not a rank-kernels DenseIndex file (bad magic number)")
            if len(head) < _HEADER.size:
                raise CorruptFileError(f"{path}: truncated header ({len(head)} of {_HEADER.size} bytes)")
            _, version, hsize, dim, count, mcode, dcode = _HEADER.unpack(head)
            if version != _VERSION:
                raise CorruptFileError(
                    f"{path}: unsupported DenseIndex format version {version} (this version reads {_VERSION})")
            metrics = {v: k for k, v in _METRIC_CODES.items()}
            dtypes = {v: k for k, v in _DTYPE_CODES.items()}
            if hsize != _HEADER.size or dim < 1 or mcode not in metrics or dcode not in dtypes:
                raise CorruptFileError(f"{path}: corrupt DenseIndex header")
            index = cls(dim, metric=metrics[mcode], dtype=dtypes[dcode])
            dt = index._dtype.newbyteorder("<")
            expected = _HEADER.size + count * dim * dt.itemsize
            if size != expected:
                what = "truncated" if size < expected else "has trailing data"
                raise CorruptFileError(
                    f"{path}: file {what}: header announces {count} vectors of dimension {dim} "
                    f"({expected} bytes), found {size} bytes")
            if count == 0:
                return index
            data: np.ndarray[Any, np.dtype[Any]]
            if mmap:
                data = np.memmap(path, dtype=dt, mode="r", offset=_HEADER.size, shape=(count, dim))
                if verify:
                    _check_finite_rows(path, data)
            else:
                data = np.empty((count, dim), dt)
                view = data.reshape(-1).data.cast("B")
                pos = 0
                while pos < data.nbytes:
                    got = f.readinto(view[pos:pos + (64 << 20)])
                    if not got:
                        raise CorruptFileError(f"{path}: file truncated while reading")
                    pos += got
                _check_finite_rows(path, data)
        if data.dtype != index._dtype:  # big-endian host
            data = data.astype(index._dtype)
        index._buf = data
        index._n = count
        return index

