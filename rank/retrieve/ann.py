"""Approximate dense search backed by FAISS: the ``hnsw``, ``ivf`` and ``ivfpq`` kinds of
:class:`rank.DenseIndex`.

This module is the engine :class:`rank.retrieve.dense.DenseIndex` dispatches to when it is built
with ``index="hnsw" | "ivf" | "ivfpq"``; use it through that class. FAISS (``faiss-cpu``, the
``ann`` extra, versions ``>=1.8,<2``) is imported on first use only.

Kinds (all score by inner product; the cosine metric stores unit vectors):

- ``"hnsw"``: a graph (FAISS ``IndexHNSWFlat``) over the float32 vectors; no training. Knobs:
  ``hnsw_m`` (graph degree, default 32), ``ef_construction`` (default 100) and ``ef_search``
  (candidate list of a search, default 64; larger is slower and more accurate).
- ``"ivf"``: an inverted file (``IndexIVFFlat``): k-means cells, a query scans the ``nprobe``
  nearest cells (default 32) exactly. Needs training.
- ``"ivfpq"``: the same cells, vectors stored as product-quantized residuals (``IndexIVFPQ``),
  ``pq_m * pq_nbits / 8`` bytes per vector (default pq_m: the largest divisor of dim at most
  dim / 8, so at most 1/32 of float32 at 8 bits) plus an 8-byte id. Needs training.

A mask (allowed rows) is applied inside the FAISS search (an ``IDSelectorBitmap``). A graph
search cannot reach rows a very selective mask isolates, so ``"hnsw"`` scores the allowed rows
exactly when they are at most ``max(1024, n / 100)``; the IVF kinds return the allowed rows of
the ``nprobe`` scanned cells (padding with -1 when there are fewer than k).

Training (IVF kinds) runs on the first :meth:`add` (on a random sample of its vectors,
``train_size``, default ``max(65536, 64 * nlist)``), or explicitly with ``train(sample)``.
``nlist`` defaults to ``4 * sqrt(n)`` cells for the n vectors of that first call.

File format of a saved approximate index (little-endian; loading never unpickles):

=======  ======  =====================================================================
offset   size    field
=======  ======  =====================================================================
0        8       magic ``b"RKDANN\\0\\0"``
8        4       format version (1)
12       4       header size (128)
16       8       dim
24       8       count (vectors in the index)
32       1       metric code (0 dot, 1 cosine)
33       1       kind code (1 hnsw, 2 ivf, 3 ivfpq)
34       1       trained flag
35       1       zero
36       4 x 8   uint32 nlist, pq_m, pq_nbits, hnsw_m, ef_construction, ef_search, nprobe, 0
68       16      FAISS version that wrote the file (ASCII, zero padded)
84       8       payload size in bytes
92       4       CRC-32 of the payload
96       28      zero
124      4       CRC-32 of bytes 0..123
128      ...     payload: ``faiss.serialize_index`` of the index
=======  ======  =====================================================================
"""
from __future__ import annotations

import math
import os
import struct
import threading
import zlib
from typing import TYPE_CHECKING, Any

import numpy as np

from rank._validate import check_positive_int
from rank.errors import CorruptFileError, InvalidValueError, MissingDependencyError

if TYPE_CHECKING:
    import numpy.typing as npt

__all__ = ["KINDS", "FAISS_SUPPORTED", "import_faiss", "ApproxIndex"]

#: Approximate kinds served by FAISS (``"flat"`` is the exact kernel of DenseIndex).
KINDS = ("hnsw", "ivf", "ivfpq")
#: The FAISS versions this module is written and tested against: ``>=1.8,<2`` (the
#: search-parameter objects, ``serialize_index`` and ``IDSelectorBitmap`` it uses are stable
#: across 1.8-1.x; a 2.x may change the serialized layout).
FAISS_SUPPORTED = ((1, 8), (2, 0))

DEFAULT_HNSW_M = 32
DEFAULT_EF_CONSTRUCTION = 100
DEFAULT_EF_SEARCH = 64
DEFAULT_NPROBE = 32
DEFAULT_PQ_NBITS = 8

_MAGIC = b"RKDANN\0\0"
_VERSION = 1
_HEADER = struct.Struct("<8sIIQQBBBx8I16sQI28x")  # + 4-byte header CRC
_HEADER_SIZE = _HEADER.size + 4
_KIND_CODES = {"hnsw": 1, "ivf": 2, "ivfpq": 3}
_METRIC_CODES = {"dot": 0, "cosine": 1}
_ADD_CHUNK = 1 << 15

_faiss_lock = threading.Lock()
_faiss_module: Any = None


def _parse_version(text: str) -> tuple[int, ...]:
    parts = []
    for p in text.split(".")[:3]:
        digits = "".join(c for c in p if c.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def import_faiss(version: str | None = None) -> Any:
    """The ``faiss`` module, imported once; MissingDependencyError if absent or unsupported.

    `version` overrides the installed version string (for tests of the range check).
    """
    global _faiss_module
    if _faiss_module is not None and version is None:
        return _faiss_module
    try:
        import faiss
    except ImportError as e:
        raise MissingDependencyError(
            "approximate dense indexes (index='hnsw', 'ivf', 'ivfpq') and ColBERTIndex need FAISS: "
            "pip install 'rank-kernels[ann]' (faiss-cpu>=1.8,<2)") from e
    ver = getattr(faiss, "__version__", "") if version is None else version
    parsed = _parse_version(ver)
    lo, hi = FAISS_SUPPORTED
    if len(parsed) < 2 or not (lo <= parsed[:2] < hi):
        raise MissingDependencyError(
            f"FAISS {ver or '(unknown version)'} is installed; rank-kernels supports faiss-cpu>=1.8,<2: "
            "pip install 'rank-kernels[ann]'")
    if version is None:
        with _faiss_lock:
            _faiss_module = faiss
    return faiss


class _Threads:
    """Run FAISS calls with `n` OpenMP threads in the calling thread (its own OpenMP setting,
    restored afterwards; other Python threads are not affected)."""

    def __init__(self, faiss: Any, n: int) -> None:
        self.faiss, self.n, self.old = faiss, n, 0

    def __enter__(self) -> None:
        self.old = self.faiss.omp_get_max_threads()
        self.faiss.omp_set_num_threads(self.n)

    def __exit__(self, *exc: object) -> None:
        self.faiss.omp_set_num_threads(self.old)


def progress(total: int, desc: str, enabled: bool) -> Any:
    """A tqdm bar (or a no-op stand-in) with `update(n)` and `close()`."""
    if enabled:
        try:
            from tqdm.auto import tqdm
        except ImportError:
            pass
        else:
            return tqdm(total=total, desc=desc, unit="vec", disable=None, leave=False, dynamic_ncols=True)

    class _Null:
        def update(self, n: int = 1) -> None:
            pass

        def set_description(self, s: str) -> None:
            pass

        def close(self) -> None:
            pass
    return _Null()


def default_pq_m(dim: int) -> int:
    """The largest divisor of `dim` that is at most ``dim // 8`` (1 for dim < 16): sub-vectors
    of at least 8 coordinates, one byte each at 8 bits, i.e. at most 1/32 of float32. Each
    sub-quantizer is its own k-means, so training time grows with the number of them.

    >>> default_pq_m(384), default_pq_m(100), default_pq_m(8)
    (48, 10, 1)
    """
    for m in range(max(1, dim // 8), 0, -1):
        if dim % m == 0:
            return m
    return 1


class ApproxIndex:
    """A FAISS index of one approximate kind with our validation, knobs and file format.

    Used by :class:`rank.DenseIndex`; vectors arrive already validated as C-contiguous float32
    (unit rows for cosine). Searches are thread-safe (FAISS searches are read-only and the
    knobs go in per-call parameter objects); ``add`` / ``train`` are not.
    """

    def __init__(self, dim: int, metric: str, kind: str, *, nlist: int | None = None, nprobe: int = DEFAULT_NPROBE,
                 pq_m: int | None = None, pq_nbits: int = DEFAULT_PQ_NBITS, hnsw_m: int = DEFAULT_HNSW_M,
                 ef_construction: int = DEFAULT_EF_CONSTRUCTION, ef_search: int = DEFAULT_EF_SEARCH,
                 train_size: int | None = None, seed: int = 0) -> None:
        self.faiss = import_faiss()
        self.dim, self.metric, self.kind = dim, metric, kind
        self.nlist = check_positive_int(nlist, "nlist", allow_none=True)
        self.nprobe = check_positive_int(nprobe, "nprobe")
        self.hnsw_m = check_positive_int(hnsw_m, "hnsw_m")
        self.ef_construction = check_positive_int(ef_construction, "ef_construction")
        self.ef_search = check_positive_int(ef_search, "ef_search")
        self.train_size = check_positive_int(train_size, "train_size", allow_none=True)
        self.pq_nbits = check_positive_int(pq_nbits, "pq_nbits")
        if kind == "ivfpq" and not 1 <= self.pq_nbits <= 16:
            raise InvalidValueError(f"pq_nbits: expected 1 <= pq_nbits <= 16, got {pq_nbits}")
        self.pq_m = default_pq_m(dim) if pq_m is None else check_positive_int(pq_m, "pq_m")
        if kind == "ivfpq" and dim % self.pq_m:
            raise InvalidValueError(f"pq_m: must divide the dimension {dim}, got {self.pq_m}")
        if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
            raise InvalidValueError(f"seed: expected an integer, got {seed!r}")
        self.seed = int(seed)
        self.index: Any = None
        if kind == "hnsw":
            self.index = self.faiss.IndexHNSWFlat(dim, self.hnsw_m, self.faiss.METRIC_INNER_PRODUCT)
            self.index.hnsw.efConstruction = self.ef_construction

    # -- state ------------------------------------------------------------------------------

    @property
    def trained(self) -> bool:
        return self.index is not None and bool(self.index.is_trained)

    def __len__(self) -> int:
        return 0 if self.index is None else int(self.index.ntotal)

    def bytes_per_vector(self) -> float:
        """Index memory per stored vector (serialized size / count), including ids and graph links."""
        n = len(self)
        if n == 0:
            return float("nan")
        return self.faiss.serialize_index(self.index).nbytes / n

    def _min_train(self, nlist: int) -> int:
        need = nlist
        if self.kind == "ivfpq":
            need = max(need, 1 << self.pq_nbits)
        return need

    def train(self, sample: npt.NDArray[np.float32], *, show_progress: bool = True) -> None:
        """Train the cells (and PQ codebooks) of an IVF kind on `sample` (n, dim) float32 rows."""
        if self.kind == "hnsw":
            return
        if len(self):
            raise InvalidValueError("train: the index already holds vectors; training would invalidate them")
        n = sample.shape[0]
        nlist = self.nlist if self.nlist is not None else max(1, min(65536, int(round(4 * math.sqrt(n)))))
        need = self._min_train(nlist)
        if n < need:
            what = f"nlist={nlist} cells" + (f" and 2**pq_nbits={1 << self.pq_nbits} PQ centroids"
                                              if self.kind == "ivfpq" else "")
            raise InvalidValueError(
                f"train: an {self.kind!r} index with {what} needs at least {need} training vectors, got {n}; "
                "train on a larger sample (index.train(vectors)) or pass a smaller nlist")
        size = self.train_size if self.train_size is not None else max(65536, 64 * nlist)
        if n > size:
            pick = np.random.default_rng(self.seed).choice(n, size, replace=False)
            pick.sort()
            sample = np.ascontiguousarray(sample[pick])
        faiss = self.faiss
        quantizer = faiss.IndexFlatIP(self.dim)
        if self.kind == "ivf":
            index = faiss.IndexIVFFlat(quantizer, self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
        else:
            index = faiss.IndexIVFPQ(quantizer, self.dim, nlist, self.pq_m, self.pq_nbits,
                                     faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = self.seed
        bar = progress(1, f"train {self.kind} ({nlist} cells, {sample.shape[0]:,} vectors)", show_progress)
        try:
            index.train(sample)
            bar.update(1)
        finally:
            bar.close()
        index.nprobe = self.nprobe
        self.nlist = nlist
        self.index = index

    def add(self, vectors: npt.NDArray[np.float32], *, show_progress: bool = True) -> None:
        """Append float32 rows; trains an untrained IVF kind on (a sample of) them first."""
        if not self.trained:
            self.train(vectors, show_progress=show_progress)
        n = vectors.shape[0]
        bar = progress(n, f"add ({self.kind})", show_progress and n > _ADD_CHUNK)
        try:
            for i in range(0, n, _ADD_CHUNK):
                part = vectors[i:i + _ADD_CHUNK]
                self.index.add(part)
                bar.update(part.shape[0])
        finally:
            bar.close()

    # -- search -----------------------------------------------------------------------------

    def _params(self, nprobe: int | None, ef_search: int | None, sel: Any) -> Any:
        faiss = self.faiss
        if self.kind == "hnsw":
            p = faiss.SearchParametersHNSW()
            p.efSearch = self.ef_search if ef_search is None else ef_search
        else:
            p = faiss.SearchParametersIVF()
            p.nprobe = min(self.nprobe if nprobe is None else nprobe, int(self.index.nlist))
        if sel is not None:
            p.sel = sel
        return p

    def search(self, q: npt.NDArray[np.float32], k: int, n_threads: int, *, nprobe: int | None = None,
               ef_search: int | None = None,
               mask: np.ndarray[Any, np.dtype[np.uint8]] | None = None) -> tuple[npt.NDArray[np.int64],
                                                                                  npt.NDArray[np.float32]]:
        """(ids int64 (nq, k), scores float32 (nq, k)), padded with -1 / -inf where fewer were found.

        `mask` is a uint8 (1 or nq, len) array, nonzero = allowed.
        """
        faiss = self.faiss
        nq = q.shape[0]
        with _Threads(faiss, n_threads):
            if mask is None:
                scores, ids = self.index.search(q, k, params=self._params(nprobe, ef_search, None))
            else:
                ids = np.empty((nq, k), np.int64)
                scores = np.empty((nq, k), np.float32)
                rows = [(0, nq)] if mask.shape[0] == 1 else [(i, i + 1) for i in range(nq)]
                n = mask.shape[1]
                for r, (a, b) in enumerate(rows):
                    allowed = np.flatnonzero(mask[r])
                    if self.kind == "hnsw" and allowed.shape[0] <= max(1024, n // 100):
                        ids[a:b], scores[a:b] = self._exact_subset(q[a:b], allowed, k)
                        continue
                    bits = np.packbits(mask[r].astype(bool), bitorder="little")
                    sel = faiss.IDSelectorBitmap(n, faiss.swig_ptr(bits))
                    d_, i_ = self.index.search(q[a:b], k, params=self._params(nprobe, ef_search, sel))
                    scores[a:b], ids[a:b] = d_, i_
                    del sel, bits
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        scores = np.ascontiguousarray(scores, dtype=np.float32)
        missing = ids < 0
        if missing.any():
            ids[missing] = -1
            scores[missing] = -np.inf
        # FAISS breaks ties arbitrarily: reorder equal scores by the smaller id (the house rule).
        order = np.lexsort((np.where(missing, np.iinfo(np.int64).max, ids), -scores.astype(np.float64)), axis=-1)
        ids = np.take_along_axis(ids, order, axis=1)
        scores = np.take_along_axis(scores, order, axis=1)
        return ids, scores

    def _exact_subset(self, q: npt.NDArray[np.float32], allowed: npt.NDArray[np.int64],
                      k: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """Exact top-k among the rows `allowed` (hnsw keeps exact vectors), padded with -1 / -inf."""
        ids = np.full((q.shape[0], k), -1, np.int64)
        scores = np.full((q.shape[0], k), -np.inf, np.float32)
        if allowed.shape[0]:
            vec = self.index.reconstruct_batch(allowed.astype(np.int64))
            s = q @ vec.T
            top = np.argsort(-s, axis=1, kind="stable")[:, :k]
            ids[:, :top.shape[1]] = allowed[top]
            scores[:, :top.shape[1]] = np.take_along_axis(s, top, axis=1)
        return ids, scores

    def vectors(self) -> npt.NDArray[np.float32]:
        if self.kind != "hnsw":
            raise InvalidValueError(f"vectors: an {self.kind!r} index does not keep the vectors addressable "
                                    "by id (use index='flat' or 'hnsw')")
        n = len(self)
        return self.index.reconstruct_n(0, n) if n else np.empty((0, self.dim), np.float32)

    # -- persistence ------------------------------------------------------------------------

    def to_bytes_header(self, payload: np.ndarray[Any, np.dtype[np.uint8]]) -> bytes:
        nlist = self.nlist or 0
        head = _HEADER.pack(_MAGIC, _VERSION, _HEADER_SIZE, self.dim, len(self), _METRIC_CODES[self.metric],
                            _KIND_CODES[self.kind], int(self.trained),
                            nlist, self.pq_m, self.pq_nbits, self.hnsw_m, self.ef_construction, self.ef_search,
                            self.nprobe, 0, self.faiss.__version__.encode("ascii", "replace")[:16],
                            payload.nbytes, zlib.crc32(payload.data) & 0xFFFFFFFF)
        return head + struct.pack("<I", zlib.crc32(head) & 0xFFFFFFFF)

    def save(self, path: str) -> None:
        """Write the index to `path` atomically (:func:`rank._atomic.atomic_open`: sibling
        temporary, fsync, rename; mode of the replaced file or from the umask)."""
        from rank._atomic import atomic_open

        payload = (self.faiss.serialize_index(self.index) if self.index is not None
                   else np.empty(0, np.uint8))
        head = self.to_bytes_header(payload)
        with atomic_open(path, "wb") as f:
            f.write(head)
            f.write(payload.data)

    @classmethod
    def load(cls, path: str, f: Any, size: int) -> ApproxIndex:
        """Read an index from the open binary file `f` (positioned at 0) of `size` bytes."""
        head = f.read(_HEADER_SIZE)
        if len(head) < _HEADER_SIZE:
            raise CorruptFileError(f"{path}: truncated header ({len(head)} of {_HEADER_SIZE} bytes)")
        (crc,) = struct.unpack("<I", head[-4:])
        if zlib.crc32(head[:-4]) & 0xFFFFFFFF != crc:
            raise CorruptFileError(f"{path}: corrupt approximate DenseIndex header (checksum mismatch)")
        (magic, version, hsize, dim, count, mcode, kcode, trained, nlist, pq_m, pq_nbits, hnsw_m, efc, efs, nprobe,
         _, fver, psize, pcrc) = _HEADER.unpack(head[:-4])
        if version != _VERSION:
            raise CorruptFileError(f"{path}: unsupported approximate DenseIndex format version {version} "
                                   f"(this version reads {_VERSION})")
        metrics = {v: k for k, v in _METRIC_CODES.items()}
        kinds = {v: k for k, v in _KIND_CODES.items()}
        if (hsize != _HEADER_SIZE or dim < 1 or mcode not in metrics or kcode not in kinds
                or min(pq_m, pq_nbits, hnsw_m, efc, efs, nprobe) < 1):
            raise CorruptFileError(f"{path}: corrupt approximate DenseIndex header")
        if size != _HEADER_SIZE + psize:
            what = "truncated" if size < _HEADER_SIZE + psize else "has trailing data"
            raise CorruptFileError(f"{path}: file {what}: header announces a {psize}-byte index, "
                                   f"found {size - _HEADER_SIZE} bytes after the header")
        kind = kinds[kcode]
        try:
            self = cls(int(dim), metrics[mcode], kind, nlist=nlist or None, nprobe=nprobe, pq_m=pq_m,
                       pq_nbits=pq_nbits, hnsw_m=hnsw_m, ef_construction=efc, ef_search=efs)
        except InvalidValueError as e:
            raise CorruptFileError(f"{path}: corrupt approximate DenseIndex header ({e})") from None
        payload = np.empty(psize, np.uint8)
        view = payload.data.cast("B")
        pos = 0
        while pos < psize:
            got = f.readinto(view[pos:pos + (64 << 20)])
            if not got:
                raise CorruptFileError(f"{path}: file truncated while reading")
            pos += got
        if zlib.crc32(payload.data) & 0xFFFFFFFF != pcrc:
            raise CorruptFileError(f"{path}: corrupt approximate DenseIndex (payload checksum mismatch)")
        if psize == 0:
            if kind == "hnsw" or trained or count:
                raise CorruptFileError(f"{path}: corrupt approximate DenseIndex (no index payload)")
            return self
        faiss = self.faiss
        try:
            index = faiss.deserialize_index(payload)  # already of the concrete class
        except RuntimeError as e:
            raise CorruptFileError(f"{path}: FAISS could not read the stored index ({str(e).splitlines()[0]})") from None
        want = {"hnsw": faiss.IndexHNSWFlat, "ivf": faiss.IndexIVFFlat, "ivfpq": faiss.IndexIVFPQ}[kind]
        if (not isinstance(index, want) or index.d != dim or index.ntotal != count
                or index.metric_type != faiss.METRIC_INNER_PRODUCT or bool(index.is_trained) != bool(trained)):
            raise CorruptFileError(f"{path}: the stored FAISS index does not match the header "
                                   f"(expected {want.__name__}, dim {dim}, {count} vectors)")
        if kind != "hnsw" and int(index.nlist) != nlist:
            raise CorruptFileError(f"{path}: the stored FAISS index has {index.nlist} cells, header says {nlist}")
        self.index = index
        return self


def is_approx_file(head: bytes) -> bool:
    """True when `head` (the first 8 bytes of a file) is the magic of an approximate index."""
    return head[:8] == _MAGIC
