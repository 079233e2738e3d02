"""A first-stage index for late interaction (ColBERT): PLAID-style compressed token storage,
centroid candidate generation, exact MaxSim over the candidates.

How it works (after PLAID, Santhanam et al. 2022):

1. **Training.** FAISS k-means over (a sample of) the document tokens gives ``n_centroids``
   centroids. The residuals ``x - centroid`` of the sample fit, per coordinate, an
   ``nbits``-bit scalar quantizer (1, 2, 3, 4 or 8 bits; 3-bit fields straddle byte
   boundaries) by Lloyd-Max iterations: bucket values are the mean residual of their bucket,
   cutoffs the midpoints between neighbouring values. PLAID's equal-count (quantile) buckets
   are the starting point; on SciFact token embeddings the iterations cut the squared error
   of 3-bit residuals by about 40%.
   A fractional ``nbits`` (e.g. 3.5) first rotates the residuals onto their principal axes
   and gives the widest axes one bit more than the others.
2. **Storage.** Each token is its nearest centroid's id (uint16 up to 65,536 centroids, int32
   above) plus ``dim * nbits / 8`` bytes of bucket ids; an inverted list maps each centroid
   to the documents that have a token there (uint16 positions up to 65,536 documents). The
   centroids are float16 (float32 when their scale does not fit float16); tokens are
   encoded against the stored values. Adding documents later encodes them with the
   same centroids (no retraining).
3. **Search.** The query tokens are scored against every centroid; each query token's
   ``nprobe`` best centroids select candidate documents; the candidates are ranked by the
   approximate MaxSim in which every token is replaced by its centroid (a compiled kernel),
   the best ``n_candidates`` are decompressed and scored with the exact MaxSim kernel of
   :func:`rank.maxsim_batch`, and the top k are returned.

Scores are MaxSim against the *decompressed* tokens: close to, not equal to, MaxSim against
the original float vectors (the error shrinks with ``nbits``).

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> docs = [rng.standard_normal((int(rng.integers(5, 20)), 16)).astype(np.float32) for _ in range(200)]
>>> index = ColBERTIndex(16, nbits=4, n_centroids=32)
>>> index.add(docs, show_progress=False)[:3]
array([0, 1, 2])
>>> query = docs[7]
>>> ids, scores = index.search(query[:4], k=3)
>>> int(ids[0])
7
"""
from __future__ import annotations

import json
import math
import os
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from rank import _deprecate
from rank._ragged import is_packed, unpack
from rank._validate import as_float_array, check_positive_int, resolve_threads
from rank.errors import CorruptFileError, InvalidValueError, NonFiniteError, ShapeError
from rank.retrieve.ann import progress, import_faiss
from rank_kernels import colbert_index as _kernel
from rank_kernels import dense as _dense

if TYPE_CHECKING:
    import numpy.typing as npt

__all__ = ["ColBERTIndex", "ColBERTRetriever"]

NBITS = (1, 2, 3, 4, 8)  # whole bits per coordinate; fractions between 1 and 8 are allowed too
FORMAT_VERSION = 4  # 4: float16 centroids, uint16 inverted lists; 3: per-coordinate bits and an optional
READ_VERSIONS = (1, 2, 3, 4)  # rotation; 2: uint16 codes; 1: int32 codes (all still read)
_UINT16_CENTROIDS = 1 << 16
_UINT16_DOCS = 1 << 16
_HALF_ERROR = 1e-3  # float16 centroids when rounding moves no row by more than this fraction of its norm
_KIND = "rank-kernels ColBERTIndex"
_CHUNK = 1 << 16  # tokens encoded per step
_LLOYD_ITERS = 20  # Lloyd-Max rounds fitting each coordinate's buckets
_ARRAYS = {  # file name -> (dtype, ndim)
    "centroids": (np.float32, 2),  # rotated when there is a rotation; float16 or float32 from format 4 on
    "cutoffs": (np.float32, 2),
    "weights": (np.float32, 2),
    "codes": (np.int32, 1),  # uint16 when the file's version and centroid count allow it (_codes_dtype)
    "residuals": (np.uint8, 2),
    "doc_offsets": (np.int64, 1),
    "ivf_offsets": (np.int64, 1),
    "ivf_docs": (np.int32, 1),  # uint16 when the file's version and document count allow it (_docs_dtype)
    "bits": (np.uint8, 1),  # format 3 on; earlier files: nbits for every coordinate
    "rotation": (np.float32, 2),  # only when meta.json says "rotated"
}


def _codes_dtype(n_centroids: int, version: int = FORMAT_VERSION) -> type[np.integer[Any]]:
    """The dtype of the centroid ids: uint16 when every id fits (format version >= 2), else int32."""
    return np.uint16 if version >= 2 and n_centroids <= _UINT16_CENTROIDS else np.int32


def _docs_dtype(n_docs: int, version: int = FORMAT_VERSION) -> type[np.integer[Any]]:
    """The dtype of the inverted lists' document positions: uint16 when every position fits
    (format version >= 4), else int32."""
    return np.uint16 if version >= 4 and n_docs <= _UINT16_DOCS else np.int32


def _stored_centroids(centroids: np.ndarray) -> np.ndarray:
    """The (C, dim) float32 `centroids` as the index keeps them: float16 when rounding moves no
    row by more than ``_HALF_ERROR`` of its norm (no overflow past 65,504, no scale so small that
    float16 loses it), else float32 unchanged. Tokens are encoded against the stored values, so
    the rounding adds no error to decompressed tokens; it only perturbs the centroid scores of
    candidate generation by at most ``2**-11`` relative."""
    with np.errstate(over="ignore"):
        half = centroids.astype(np.float16)
    moved = np.abs(half.astype(np.float32) - centroids).max(axis=1)  # inf where float16 overflows
    if (moved > _HALF_ERROR * np.linalg.norm(centroids, axis=1)).any():
        return centroids
    return np.ascontiguousarray(half)


def _fit_buckets(resid: np.ndarray, nbits: int, iters: int = _LLOYD_ITERS) -> tuple[np.ndarray, np.ndarray]:
    """Per-coordinate ``nbits``-bit scalar quantizer of the (n, dim) residuals: (cutoffs
    (dim, 2**nbits - 1), values (dim, 2**nbits)) float32, cutoffs ascending.

    Lloyd-Max iterations from equal-count (quantile) cutoffs: each bucket's value is the mean
    of the residuals in it (bucket b holds ``cutoffs[b - 1] <= r < cutoffs[b]``, as the compress
    kernel), then each cutoff moves to the midpoint of its two neighbouring values; `iters`
    rounds or until no cutoff moves; the values returned are the means of the buckets of the
    cutoffs returned. Each half-step minimises the squared error on the sample given the
    other half, so no round raises it. An empty bucket takes the midpoint of its cutoffs.
    O(dim * (n log n + iters * 2**nbits * log n)).
    """
    n, dim = resid.shape
    nb = 1 << nbits
    cutoffs = np.empty((dim, nb - 1), np.float64)
    values = np.empty((dim, nb), np.float64)
    for j in range(dim):
        col = np.sort(resid[:, j].astype(np.float64))
        prefix = np.concatenate([[0.0], np.cumsum(col)])
        cut = col[np.minimum(n - 1, (np.arange(1, nb) * n) // nb)]  # equal-count start
        for round_ in range(iters + 1):
            edges = np.concatenate([[0], np.searchsorted(col, cut, side="left"), [n]])  # bucket b: edges[b]:edges[b+1]
            count = np.diff(edges)
            with np.errstate(invalid="ignore", divide="ignore"):
                val = (prefix[edges[1:]] - prefix[edges[:-1]]) / count
            val = np.where(count > 0, val, (np.concatenate([[cut[0]], cut]) + np.concatenate([cut, [cut[-1]]])) / 2)
            new = ((val[1:] + val[:-1]) / 2).astype(np.float32).astype(np.float64)  # as the kernel compares
            if round_ == iters or np.array_equal(new, cut):
                break  # the values are the means of the buckets of the final cutoffs
            cut = new
        cutoffs[j], values[j] = cut, val
    return np.ascontiguousarray(cutoffs, dtype=np.float32), np.ascontiguousarray(values, dtype=np.float32)


def _fit_all_buckets(resid: np.ndarray, bits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_fit_buckets` for coordinates of different bit counts: (cutoffs (dim, 2**max(bits)
    - 1) +inf padded, values (dim, 2**max(bits)) 0 padded), the layout the kernels read."""
    dim, top = bits.shape[0], int(bits.max())
    cutoffs = np.full((dim, (1 << top) - 1), np.inf, np.float32)
    values = np.zeros((dim, 1 << top), np.float32)
    for nb in np.unique(bits).tolist():
        cols = np.flatnonzero(bits == nb)
        cut, val = _fit_buckets(np.ascontiguousarray(resid[:, cols]), nb)
        cutoffs[cols, :(1 << nb) - 1] = cut
        values[cols, :1 << nb] = val
    return cutoffs, values


class _State(NamedTuple):
    """Everything a search reads; replaced whole by :meth:`ColBERTIndex.add` (readers see the
    old or the new index, never a mix)."""

    codes: np.ndarray           # (T,) uint16 (<= 65,536 centroids) or int32 centroid of each token
    residuals: np.ndarray       # (T, dim * nbits / 8) uint8 packed bucket ids
    doc_offsets: np.ndarray     # (n_docs + 1,) int64 token ranges
    ivf_offsets: np.ndarray     # (n_centroids + 1,) int64
    ivf_docs: np.ndarray        # documents of each centroid, ascending, uint16 (<= 65,536 documents) or int32
    ids: tuple[Any, ...] | None  # external document ids, or None
    unit: bool                  # every stored token had norm 1: decompressed tokens are renormalised


class _Codec(NamedTuple):
    """The quantizer. With a rotation R, everything lives in the rotated coordinates ``x @ R``
    (centroids, residuals, decompressed tokens, and the query at search time): inner products
    and distances are those of the original coordinates, R being orthogonal."""

    centroids: np.ndarray  # (C, dim) float16 or float32 (_stored_centroids), in the stored (rotated) coordinates
    cutoffs: np.ndarray    # (dim, 2**max(bits) - 1) float32, each row +inf padded past 2**bits[j] - 1
    weights: np.ndarray    # (dim, 2**max(bits)) float32
    bits: np.ndarray       # (dim,) uint8 bits of each residual coordinate
    rotation: np.ndarray | None  # (dim, dim) float32 orthogonal, or None (no rotation)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self if a is not None)

    def centroids32(self) -> np.ndarray:
        """The centroids as (C, dim) float32 (a copy when they are stored as float16)."""
        return np.ascontiguousarray(self.centroids, dtype=np.float32)

    def rotate(self, x: np.ndarray, n_threads: int = 1) -> np.ndarray:
        """`x` ((n, dim) float32, original coordinates) in the stored coordinates: ``x @ rotation``.

        Computed by the dense kernel (``x[i] . rotation[:, j]``), not BLAS: a BLAS call per
        query leaves the BLAS threads spinning, which halved the speed of the kernels after it."""
        if self.rotation is None:
            return x
        columns = np.ascontiguousarray(self.rotation.T)
        out = np.empty(x.shape, np.float32)
        _dense.dense_scores(np.ascontiguousarray(x, dtype=np.float32), columns.ctypes.data, columns.shape[0], 4,
                            False, False, n_threads, out)
        return out


def _check_nbits(nbits: Any, dim: int) -> int | float:
    """`nbits` as stored: an int of NBITS, or a float in (1, 8) with dim * nbits a multiple of 8."""
    expected = f"nbits: expected one of {', '.join(map(str, NBITS))} or a fraction between 1 and 8 (e.g. 3.5)"
    if isinstance(nbits, bool) or not isinstance(nbits, (int, float, np.integer, np.floating)):
        raise InvalidValueError(f"{expected}, got {nbits!r}")
    if float(nbits).is_integer():
        if int(nbits) not in NBITS:
            raise InvalidValueError(f"{expected}, got {nbits!r}")
        value: int | float = int(nbits)
    elif not 1 < float(nbits) < 8:
        raise InvalidValueError(f"nbits: a fractional nbits must lie between 1 and 8, got {nbits!r}")
    else:
        value = float(nbits)
    total = value * dim
    if not float(total).is_integer() or int(total) % 8:
        raise InvalidValueError(f"nbits: dim * nbits must be a multiple of 8, got dim {dim} and nbits {nbits}")
    return value


def _coordinate_bits(nbits: int | float, dim: int) -> np.ndarray:
    """(dim,) uint8: floor(nbits) bits for every coordinate, one more for the first
    ``(nbits - floor(nbits)) * dim`` (the highest-variance coordinates after the rotation)."""
    low = int(math.floor(nbits))
    bits = np.full(dim, low, np.uint8)
    bits[:int(round(nbits * dim)) - low * dim] += 1
    return bits


def _tokens(docs: Any, dim: int, name: str, check_finite: bool) -> tuple[np.ndarray, np.ndarray]:
    """(flat float32 (T, dim), offsets int64 (n + 1,)) from a list of (L_i, dim) arrays or a packed pair."""
    if is_packed(docs):
        flat, offsets = unpack(docs, name)
        if flat.shape[1] != dim:
            raise ShapeError(f"{name}: token dimension {flat.shape[1]} does not match the index dimension {dim}")
        flat = flat[offsets[0]:offsets[-1]]
        offsets = offsets - offsets[0]
    else:
        if isinstance(docs, np.ndarray) or not isinstance(docs, Sequence):
            raise ShapeError(f"{name}: expected a list of (n_tokens, {dim}) arrays or a packed (flat, offsets) "
                             f"pair, got {type(docs).__name__}" + (f" of shape {docs.shape}"
                                                                  if isinstance(docs, np.ndarray) else ""))
        mats = []
        for i, d in enumerate(docs):
            a = as_float_array(d, f"{name}[{i}]", 2, check_finite=False)
            if a.shape[1] != dim:
                raise ShapeError(f"{name}[{i}]: expected shape (n_tokens, {dim}) to match the index dimension, "
                                 f"got {a.shape}")
            mats.append(a)
        if not mats:
            raise ShapeError(f"{name}: expected at least one document, got none")
        lengths = np.array([m.shape[0] for m in mats], np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        flat = np.concatenate(mats) if len(mats) > 1 else mats[0]
    if offsets.shape[0] < 2:
        raise ShapeError(f"{name}: expected at least one document, got none")
    with np.errstate(over="ignore", invalid="ignore"):
        flat32 = np.ascontiguousarray(flat, dtype=np.float32)
    if not np.isfinite(flat32).all():
        bad = int(np.flatnonzero(~np.isfinite(flat32).all(axis=1))[0])
        doc = int(np.searchsorted(offsets, bad, side="right") - 1)
        if check_finite or np.isfinite(flat[bad]).all():
            raise NonFiniteError(f"{name}[{doc}]: contains NaN or infinity (or a value beyond the float32 range)")
        raise NonFiniteError(f"{name}[{doc}]: contains NaN or infinity, which the index cannot store")
    return flat32, offsets


def _query(q: Any, dim: int, name: str) -> np.ndarray:
    a = as_float_array(q, name, 2, check_finite=True)
    if a.shape[1] != dim:
        raise ShapeError(f"{name}: expected shape (n_query_tokens, {dim}) to match the index dimension, got {a.shape}")
    with np.errstate(over="ignore"):
        a32 = np.ascontiguousarray(a, dtype=np.float32)
    if not np.isfinite(a32).all():
        raise NonFiniteError(f"{name}: values overflow float32")
    return a32


class ColBERTIndex:
    """PLAID-style compressed index of document token matrices, searched by MaxSim.

    Parameters
    ----------
    dim : int
        Token vector dimension (> 0; ``dim * nbits`` must be a multiple of 8).
    nbits : {1, 2, 3, 4, 8} or a fraction between 1 and 8 (e.g. 3.5), default 2
        Bits per residual coordinate (``dim * nbits`` a multiple of 8). Bytes per token:
        ``2 + dim * nbits / 8`` (the centroid id is a uint16; 4 bytes above 65,536 centroids)
        (dim 128: 34 bytes at 2 bits, 50 at 3, 58 at 3.5, 66 at 4, 130 at 8, against 256 in
        float16), plus the inverted lists (2 bytes per distinct (centroid, document) pair up
        to 65,536 documents, 4 above) and the centroids (``2 * dim`` bytes each, float16).
        A fractional nbits rotates the residuals onto their principal axes (fitted on the
        training sample) and gives ``floor(nbits) + 1`` bits to the widest
        ``(nbits - floor(nbits)) * dim`` of them, ``floor(nbits)`` to the rest; the search
        rotates the query instead of the tokens, so MaxSim is unchanged. nbits 3.5 is the
        densest setting within a quarter of float16 at dim 128.
    n_centroids : int, optional
        k-means centroids (default ``2 ** floor(log2(4 * sqrt(T)))`` for the T tokens of the
        first :meth:`add`, at most T / 32; PLAID uses 16 * sqrt(T), 4x more and 4x the k-means
        cost).
    nprobe : int, default 4
        Centroids per query token that select candidates (a search may override it).
    n_candidates : int, default 256
        Candidates (at least 4 * k) decompressed and scored exactly after the centroid ranking.
    train_size : int, optional
        Tokens sampled for k-means (default ``max(262144, 64 * n_centroids)``).
    seed : int, default 0
        Seed of the training sample and of k-means.

    Notes
    -----
    Needs FAISS (extra ``ann``) for k-means and nearest-centroid assignment. Searches are
    thread-safe and lock-free: each reads one immutable snapshot of the index, which
    :meth:`add` replaces whole (a search running during an add sees the old or the new index).
    :meth:`add` itself must not run concurrently with another :meth:`add`.

    Complexity: search, per query of Lq tokens, O(Lq * n_centroids * dim) for the centroid
    scores, O(candidate tokens * Lq) for the centroid ranking, O(n_candidates * avg tokens *
    Lq * dim) exact. Add: O(T * n_centroids * dim) assignment (BLAS), training O(train_size *
    n_centroids * dim) per k-means iteration.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(1)
    >>> index = ColBERTIndex(8, nbits=8, n_centroids=4)
    >>> _ = index.add([rng.standard_normal((6, 8)) for _ in range(50)], show_progress=False)
    >>> ids, scores = index.search([rng.standard_normal((3, 8)), rng.standard_normal((2, 8))], k=5)
    >>> ids.shape, scores.shape
    ((2, 5), (2, 5))
    """

    _late_interaction_index = True  # what Pipeline looks for

    def __init__(self, dim: int, *, nbits: int = 2, n_centroids: int | None = None, nprobe: int = 4,
                 n_candidates: int = 256, train_size: int | None = None, seed: int = 0) -> None:
        self._dim = check_positive_int(dim, "dim")
        self._nbits = _check_nbits(nbits, self._dim)
        self._width = int(round(self._nbits * self._dim)) // 8  # bytes of residual per token
        self._n_centroids = check_positive_int(n_centroids, "n_centroids", allow_none=True)
        self.nprobe = check_positive_int(nprobe, "nprobe")
        self.n_candidates = check_positive_int(n_candidates, "n_candidates")
        self._train_size = check_positive_int(train_size, "train_size", allow_none=True)
        if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
            raise InvalidValueError(f"seed: expected an integer, got {seed!r}")
        self._seed = int(seed)
        self._codec: _Codec | None = None
        self._state = _State(np.empty(0, np.uint16), np.empty((0, self._width), np.uint8), np.zeros(1, np.int64),
                             np.zeros(1, np.int64), np.empty(0, np.int32), None, True)
        import_faiss()

    # -- properties -------------------------------------------------------------------------

    @property
    def dim(self) -> int:
        """Token vector dimension."""
        return self._dim

    @property
    def nbits(self) -> int | float:
        """Bits per residual coordinate (a float when fractional: the average)."""
        return self._nbits

    @property
    def n_centroids(self) -> int | None:
        """Number of centroids (None before training)."""
        return None if self._codec is None else int(self._codec.centroids.shape[0])

    @property
    def centroids(self) -> npt.NDArray[np.float32] | None:
        """The (n_centroids, dim) float32 centroids in the tokens' coordinates, read-only (None
        before training); a fractional-nbits index stores them rotated and rotates them back here."""
        if self._codec is None:
            return None
        codec = self._codec
        v = codec.centroids32() if codec.rotation is None else codec.centroids32() @ codec.rotation.T
        v.flags.writeable = False
        return v

    @property
    def is_trained(self) -> bool:
        return self._codec is not None

    @property
    def n_tokens(self) -> int:
        """Stored token vectors."""
        return int(self._state.codes.shape[0])

    @property
    def ids(self) -> tuple[Any, ...] | None:
        """External document ids given to :meth:`add` (None when none were given)."""
        return self._state.ids

    @property
    def nbytes(self) -> int:
        """Bytes of the stored index: codes, residuals, offsets, inverted lists, codec."""
        s = self._state
        total = sum(a.nbytes for a in (s.codes, s.residuals, s.doc_offsets, s.ivf_offsets, s.ivf_docs))
        if self._codec is not None:
            total += self._codec.nbytes
        return int(total)

    def __len__(self) -> int:
        return int(self._state.doc_offsets.shape[0] - 1)

    def __repr__(self) -> str:
        return (f"ColBERTIndex(dim={self._dim}, nbits={self._nbits}, n_centroids={self.n_centroids}, "
                f"n_docs={len(self)}, n_tokens={self.n_tokens})")

    # -- training ---------------------------------------------------------------------------

    def train(self, tokens: npt.ArrayLike, *, centroids: npt.ArrayLike | None = None, n_threads: int | None = None,
              show_progress: bool = True) -> None:
        """Learn the centroids and residual buckets from `tokens` ((T, dim), a sample of
        document tokens), before the first :meth:`add`. At most `train_size` tokens, drawn at
        random, are used. InvalidValueError if the index already holds documents or T is
        smaller than the number of centroids. **Mutates the index.**

        `centroids` ((C, dim), e.g. another index's :attr:`centroids`) skips k-means: only the
        residual buckets are fitted. Shards of one collection built this way share centroids.
        """
        if len(self):
            raise InvalidValueError("train: the index already holds documents; training would invalidate them")
        x = as_float_array(tokens, "tokens", 2, check_finite=True)
        if x.shape[1] != self._dim:
            raise ShapeError(f"tokens: expected shape (T, {self._dim}), got {x.shape}")
        with np.errstate(over="ignore"):
            x32 = np.ascontiguousarray(x, dtype=np.float32)
        if not np.isfinite(x32).all():
            raise NonFiniteError("tokens: values overflow float32")
        given = None
        if centroids is not None:
            given = as_float_array(centroids, "centroids", 2, check_finite=True)
            if given.shape[1] != self._dim:
                raise ShapeError(f"centroids: expected shape (n_centroids, {self._dim}), got {given.shape}")
            given = np.ascontiguousarray(given, dtype=np.float32)
        self._train(x32, resolve_threads(n_threads), show_progress, given)

    def _train(self, x: np.ndarray, n_threads: int, show_progress: bool, given: np.ndarray | None = None) -> None:
        faiss = import_faiss()
        t = x.shape[0]
        c = self._n_centroids if given is None else given.shape[0]
        if c is None:
            c = 2 ** int(math.floor(math.log2(4 * math.sqrt(t))))
            c = max(1, min(c, t // 32))
        if t < c:
            raise InvalidValueError(f"train: {c} centroids need at least {c} training tokens, got {t}; "
                                    "pass a smaller n_centroids or train on more tokens")
        size = self._train_size if self._train_size is not None else max(1 << 18, 64 * c)
        rng = np.random.default_rng(self._seed)
        sample = x if t <= size else x[np.sort(rng.choice(t, size, replace=False))]
        bar = progress(3, f"train ColBERTIndex ({c} centroids, {sample.shape[0]:,} tokens)", show_progress)
        try:
            from rank.retrieve.ann import _Threads

            with _Threads(faiss, n_threads):
                if given is None:
                    km = faiss.Kmeans(self._dim, c, niter=20, seed=self._seed, verbose=False,
                                      max_points_per_centroid=max(256, -(-sample.shape[0] // c)))
                    km.train(sample)
                    centroids = np.ascontiguousarray(km.centroids, dtype=np.float32)
                else:
                    centroids = given
                bar.update(1)

                def nearest(points: np.ndarray, cents: np.ndarray) -> np.ndarray:
                    quantizer = faiss.IndexFlatL2(self._dim)
                    quantizer.add(cents)
                    return quantizer.search(points, 1)[1][:, 0]

                bits = _coordinate_bits(self._nbits, self._dim)
                rotation = None
                if not isinstance(self._nbits, int):  # principal axes of the residuals, largest variance first
                    resid = sample - centroids[nearest(sample, centroids)]
                    _, vectors = np.linalg.eigh(np.cov(resid, rowvar=False))
                    rotation = np.ascontiguousarray(vectors[:, ::-1], dtype=np.float32)
                    sample = np.ascontiguousarray(sample @ rotation)
                    centroids = np.ascontiguousarray(centroids @ rotation, dtype=np.float32)
                stored = _stored_centroids(centroids)
                centroids = np.ascontiguousarray(stored, dtype=np.float32)
                # residuals against the stored centroids, assigned as _encode assigns
                resid = sample - centroids[nearest(sample, centroids)]
            bar.update(1)
            cutoffs, weights = _fit_all_buckets(resid, bits)
            bar.update(1)
        finally:
            bar.close()
        self._codec = _Codec(stored, cutoffs, weights, bits, rotation)

    # -- adding -----------------------------------------------------------------------------

    def _encode(self, flat: np.ndarray, n_threads: int, show_progress: bool) -> tuple[np.ndarray, np.ndarray]:
        codec = self._codec
        assert codec is not None
        faiss = import_faiss()
        from rank.retrieve.ann import _Threads

        t = flat.shape[0]
        codes = np.empty(t, _codes_dtype(codec.centroids.shape[0]))
        centroids = codec.centroids32()  # for this add only: the index keeps one (float16) copy
        quantizer = faiss.IndexFlatL2(self._dim)
        quantizer.add(centroids)
        packed = np.empty((t, self._width), np.uint8)
        bar = progress(t, "encode tokens", show_progress and t > _CHUNK)
        try:
            for s in range(0, t, _CHUNK):
                part = flat[s:s + _CHUNK]
                with _Threads(faiss, n_threads):
                    part = codec.rotate(part, n_threads)  # nearest centroid and residual in the stored coordinates
                    _, a = quantizer.search(part, 1)
                c = a[:, 0]
                codes[s:s + part.shape[0]] = c
                resid = np.ascontiguousarray(part - centroids[c])
                _kernel.compress(resid, codec.cutoffs, codec.bits,
                                 packed[s:s + part.shape[0]], n_threads)
                bar.update(part.shape[0])
        finally:
            bar.close()
        return codes, packed

    def add(self, docs: Any, *, ids: Sequence[Any] | None = None, check_finite: bool = True,
            n_threads: int | None = None, show_progress: bool = True) -> npt.NDArray[np.int64]:
        """Append documents and return their positions (``len(index) - n ... len(index) - 1``).

        Parameters
        ----------
        docs : list of (n_tokens_i, dim) arrays, or a packed ``(flat (T, dim), offsets (n + 1,))``
            pair as returned by ``ColBERTEncoder.encode_documents(texts, packed=True)``.
            float16/float32/float64; each document needs at least one token.
        ids : sequence, optional
            External ids of the new documents (reported by :attr:`ids`, used by
            :class:`rank.Pipeline`). Either every :meth:`add` gives ids or none does.
        check_finite : bool, default True
            NaN/inf raise NonFiniteError (always: the index cannot store them).
        n_threads : int, optional
            Threads for encoding (default every core).
        show_progress : bool, default True
            Progress bars (tqdm) for training and encoding.

        The first call trains the index on (a sample of) these tokens unless :meth:`train` was
        called; later calls reuse the centroids. **Mutates the index**; searches running
        meanwhile see the old or the new state. Complexity O(T * n_centroids * dim) plus
        O(stored tokens) to rebuild the arrays.
        """
        flat, offsets = _tokens(docs, self._dim, "docs", check_finite)
        n_new = offsets.shape[0] - 1
        old = self._state
        if ids is not None:
            ids = tuple(ids)
            if len(ids) != n_new:
                raise ShapeError(f"ids: expected {n_new} ids, one per document, got {len(ids)}")
        if (ids is None) != (old.ids is None) and len(self):
            raise InvalidValueError("ids: give ids on every add or on none (the index "
                                    + ("has" if old.ids is not None else "has no") + " ids)")
        threads = resolve_threads(n_threads)
        if self._codec is None:
            self._train(flat, threads, show_progress)
        codes, packed = self._encode(flat, threads, show_progress)
        n0 = len(self)
        c = self._codec.centroids.shape[0]  # type: ignore[union-attr]
        # Inverted lists of the new documents: distinct (centroid, doc) pairs, doc ascending.
        doc_of = np.repeat(np.arange(n0, n0 + n_new, dtype=np.int64), np.diff(offsets))
        pairs = np.unique(codes.astype(np.int64) * (n0 + n_new) + doc_of)
        new_cells, new_docs = pairs // (n0 + n_new), pairs % (n0 + n_new)
        old_cells = np.repeat(np.arange(c, dtype=np.int64), np.diff(old.ivf_offsets)) if n0 else np.empty(0, np.int64)
        cells = np.concatenate([old_cells, new_cells])
        docs_all = np.concatenate([old.ivf_docs.astype(np.int64), new_docs])
        order = np.argsort(cells, kind="stable")  # old documents (smaller ids) stay first in each list
        ivf_docs = docs_all[order].astype(_docs_dtype(n0 + n_new))
        ivf_offsets = np.zeros(c + 1, np.int64)
        np.cumsum(np.bincount(cells, minlength=c), out=ivf_offsets[1:])
        doc_offsets = np.concatenate([old.doc_offsets, old.doc_offsets[-1] + offsets[1:]])
        new_ids = None if ids is None else (old.ids or ()) + ids
        norms = np.sqrt(np.einsum("ij,ij->i", flat, flat))
        unit = old.unit and bool(np.all(np.abs(norms - 1) < 1e-3))
        # (codes of a version-1 file are int32: they are converted here, as add copies them anyway)
        self._state = _State(np.concatenate([old.codes.astype(codes.dtype, copy=False), codes]),
                             np.concatenate([old.residuals, packed]),
                             doc_offsets, ivf_offsets, ivf_docs, new_ids, unit)
        return np.arange(n0, n0 + n_new, dtype=np.int64)

    # -- searching --------------------------------------------------------------------------

    def decompress(self, doc: int) -> npt.NDArray[np.float32]:
        """The decompressed (n_tokens, dim) float32 token matrix of document position `doc`."""
        s = self._state
        if isinstance(doc, bool) or not isinstance(doc, (int, np.integer)) or not 0 <= doc < len(self):
            raise InvalidValueError(f"doc: expected a position in [0, {len(self)}), got {doc!r}")
        flat, _ = self._decompress(s, np.array([doc], np.int64), 1)
        rotation = self._codec.rotation  # type: ignore[union-attr]
        return flat if rotation is None else np.ascontiguousarray(flat @ rotation.T)

    def _decompress(self, s: _State, docs: np.ndarray, n_threads: int) -> tuple[np.ndarray, np.ndarray]:
        """(tokens (sum lengths, dim) float32, offsets) of documents `docs`, in the rotated
        coordinates when the codec has a rotation (``x @ rotation``)."""
        codec = self._codec
        assert codec is not None
        starts = s.doc_offsets[docs]
        lengths = s.doc_offsets[docs + 1] - starts
        out_offsets = np.zeros(docs.shape[0] + 1, np.int64)
        np.cumsum(lengths, out=out_offsets[1:])
        out = np.empty((int(out_offsets[-1]), self._dim), np.float32)
        centroids = codec.centroids.view(np.uint16) if codec.centroids.dtype == np.float16 else codec.centroids
        _kernel.decompress(s.codes, s.residuals, centroids, codec.weights, codec.bits, starts, lengths,
                           out_offsets, s.unit, out, n_threads)
        return out, out_offsets

    def _search_one(self, s: _State, q: np.ndarray, k: int, nprobe: int, n_cand: int,
                    n_threads: int) -> tuple[np.ndarray, np.ndarray]:
        from rank._topk import top_k
        from rank.rerank.maxsim import maxsim_batch

        codec = self._codec
        assert codec is not None
        q = codec.rotate(q)  # the stored coordinates (inner products unchanged)
        c = codec.centroids.shape[0]
        scores = np.empty((q.shape[0], c), np.float32)  # (Lq, C) centroid scores
        _dense.dense_scores(q, codec.centroids.ctypes.data, c, codec.centroids.itemsize, False, False,
                            _threads_for(q.shape[0] * c * self._dim, n_threads), scores)
        probe = min(nprobe, c)
        if probe < c:
            cells = np.argpartition(-scores, probe - 1, axis=1)[:, :probe]
        else:
            cells = np.broadcast_to(np.arange(c), scores.shape)
        cells = np.unique(cells)
        lists = [s.ivf_docs[a:b] for a, b in zip(s.ivf_offsets[cells].tolist(), s.ivf_offsets[cells + 1].tolist())]
        cand = np.unique(np.concatenate(lists)).astype(np.int64) if lists else np.empty(0, np.int64)
        out_i = np.full(k, -1, np.int64)
        out_s = np.full(k, -np.inf, np.float32)
        if cand.shape[0] == 0:
            return out_i, out_s
        n_cand = max(n_cand, 4 * k)
        if cand.shape[0] > n_cand:
            approx = np.empty(cand.shape[0], np.float32)
            work = int((s.doc_offsets[cand + 1] - s.doc_offsets[cand]).sum()) * q.shape[0]
            _kernel.centroid_maxsim(np.ascontiguousarray(scores.T), s.codes, s.doc_offsets, cand, approx,
                                    _threads_for(work, n_threads))
            keep, _ = top_k(approx, n_cand)
            cand = np.sort(cand[keep])
        lengths = s.doc_offsets[cand + 1] - s.doc_offsets[cand]
        flat, offs = self._decompress(s, cand, _threads_for(int(lengths.sum()) * self._dim, n_threads))
        exact = maxsim_batch(q, (flat, offs), n_threads=_threads_for(flat.shape[0] * q.shape[0] * self._dim, n_threads),
                             check_finite=False)
        pos, top = top_k(exact, k)
        out_i[:pos.shape[0]] = cand[pos]
        out_s[:pos.shape[0]] = top
        return out_i, out_s

    def search(self, query_tokens: Any, k: int = 10, *, nprobe: int | None = None,
               n_candidates: int | None = None, n_threads: int | None = None) -> tuple[npt.NDArray[np.int64],
                                                                                     npt.NDArray[np.float32]]:
        """The `k` best documents by MaxSim for one query or a batch of queries.

        Parameters
        ----------
        query_tokens : (Lq, dim) array (one query), or a list of such arrays / a packed
            ``(flat, offsets)`` pair (a batch; ``ColBERTEncoder.encode_queries`` output works).
        k : int, default 10
            Results per query; clamped to ``len(index)``.
        nprobe, n_candidates : int, optional
            Override the index's knobs for this call.
        n_threads : int, optional
            Threads of the kernels (default every core).

        Returns
        -------
        (ids, scores) : int64 and float32, shape (min(k, len(index)),) for one query or
            (n_queries, min(k, len(index))) for a batch: document positions (0-based, in add
            order) and MaxSim against the decompressed tokens, sorted by score descending,
            ties by smaller position; padded with -1 / -inf when the probed centroids hold
            fewer than k documents.

        Raises InvalidValueError for an empty index (or bad knobs), ShapeError for a
        dimension mismatch, NonFiniteError for NaN/inf in the query. Thread-safe.

        Complexity: see the class notes.
        """
        s = self._state  # one snapshot for the whole call
        if self._codec is None or len(s.doc_offsets) < 2:
            raise InvalidValueError("search: the index is empty; add documents first")
        k = check_positive_int(k, "k")
        nprobe = self.nprobe if nprobe is None else check_positive_int(nprobe, "nprobe")
        n_cand = self.n_candidates if n_candidates is None else check_positive_int(n_candidates, "n_candidates")
        threads = resolve_threads(n_threads)
        k = min(k, len(s.doc_offsets) - 1)
        single = isinstance(query_tokens, np.ndarray) and query_tokens.ndim == 2
        if single:
            i, sc = self._search_one(s, _query(query_tokens, self._dim, "query_tokens"), k, nprobe, n_cand, threads)
            return i, sc
        queries: list[Any]
        if is_packed(query_tokens):
            flat, offsets = unpack(query_tokens, "query_tokens")
            queries = [flat[offsets[j]:offsets[j + 1]] for j in range(offsets.shape[0] - 1)]
        elif isinstance(query_tokens, np.ndarray) and query_tokens.ndim == 3:
            queries = list(query_tokens)
        elif isinstance(query_tokens, Sequence) and not isinstance(query_tokens, (str, bytes)):
            queries = list(query_tokens)
            if queries and np.ndim(queries[0]) == 1:  # a nested list holding one query
                queries = [query_tokens]
                single = True
        else:
            raise ShapeError(f"query_tokens: expected an (Lq, {self._dim}) array or a list of them, "
                             f"got {type(query_tokens).__name__}")
        ids = np.empty((len(queries), k), np.int64)
        scores = np.empty((len(queries), k), np.float32)
        qs = [_query(q, self._dim, "query_tokens" if single else f"query_tokens[{j}]") for j, q in enumerate(queries)]
        if threads > 1 and len(qs) > 1:
            # One query per thread (the kernels release the GIL): a query's kernels are too short
            # to split across threads without paying more in synchronisation than they gain.
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=min(threads, len(qs))) as pool:
                results = list(pool.map(lambda q: self._search_one(s, q, k, nprobe, n_cand, 1), qs))
        else:
            results = [self._search_one(s, q, k, nprobe, n_cand, threads) for q in qs]
        for j, (i, sc) in enumerate(results):
            ids[j], scores[j] = i, sc
        if single:
            return ids[0], scores[0]
        return ids, scores

    # -- persistence ------------------------------------------------------------------------

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the index to the directory `path` (``meta.json`` + one ``.npy`` per array,
        each with a CRC-32 in ``meta.json``).

        The directory is written under a sibling temporary name and renamed into place; an
        existing index at `path` is replaced (moved aside, then removed), anything else there
        raises InvalidValueError. O(index bytes).
        """
        if self._codec is None:
            raise InvalidValueError("save: the index is not trained; add documents first")
        from rank._atomic import atomic_dir

        def check(where: str) -> None:
            target = Path(where)
            if (target.exists() or target.is_symlink()) and not _is_index_dir(target):
                raise InvalidValueError(f"{target}: exists and is not a saved ColBERTIndex; not replacing it")

        s, codec = self._state, self._codec
        arrays = {"centroids": codec.centroids, "cutoffs": codec.cutoffs, "weights": codec.weights,
                  "codes": s.codes, "residuals": s.residuals, "doc_offsets": s.doc_offsets,
                  "ivf_offsets": s.ivf_offsets, "ivf_docs": s.ivf_docs, "bits": codec.bits}
        if codec.rotation is not None:
            arrays["rotation"] = codec.rotation
        with atomic_dir(path, check=check) as where:  # files and directory fsync'ed, old index restored on failure
            tmp = Path(where)
            meta: dict[str, Any] = {
                "kind": _KIND, "format_version": FORMAT_VERSION, "dim": self._dim, "nbits": self._nbits,
                "n_centroids": int(codec.centroids.shape[0]), "n_docs": len(self),
                "n_tokens": int(s.codes.shape[0]), "nprobe": self.nprobe, "n_candidates": self.n_candidates,
                "seed": self._seed, "arrays": {}, "has_ids": s.ids is not None, "unit": s.unit,
                "rotated": codec.rotation is not None,
            }
            for name, arr in arrays.items():
                dtype: np.dtype[Any] = np.dtype(_ARRAYS[name][0])
                if name == "codes":
                    dtype = np.dtype(_codes_dtype(codec.centroids.shape[0]))
                elif name == "ivf_docs":
                    dtype = np.dtype(_docs_dtype(len(self)))
                elif name == "centroids":
                    dtype = codec.centroids.dtype  # float16, or float32 (_stored_centroids)
                a = np.ascontiguousarray(arr, dtype=dtype.newbyteorder("<"))
                with open(tmp / f"{name}.npy", "wb") as f:
                    np.lib.format.write_array(f, a, allow_pickle=False)
                meta["arrays"][name] = {"shape": list(a.shape), "crc32": zlib.crc32(a.data.cast("B")) & 0xFFFFFFFF}
            if s.ids is not None:
                text = json.dumps([str(i) for i in s.ids])
                (tmp / "ids.json").write_text(text, encoding="utf-8")
                meta["ids_crc32"] = zlib.crc32(text.encode("utf-8")) & 0xFFFFFFFF
            (tmp / "meta.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")

    @classmethod
    def load(cls, path: str | os.PathLike[str], mmap: bool = True, *, verify: bool | None = False) -> ColBERTIndex:
        """Read an index written by :meth:`save`.

        Parameters
        ----------
        mmap : bool, default True
            Map the arrays read-only (pages load on demand; a later :meth:`add` copies them).
        verify : bool, default False
            Check every array's CRC-32 (reads every byte). Without it, a flipped byte inside
            the residuals goes unnoticed; ids, offsets and codes are always checked (bounds and
            monotonicity), so no kernel reads out of bounds. ``None`` keeps the behaviour of
            earlier releases (verify when not mmap). The signature is the one every index
            class shares: ``load(path, mmap=True, *, verify=False)``.

        Raises CorruptFileError for a missing, truncated, foreign or inconsistent file;
        nothing is unpickled.
        """
        root = Path(os.fspath(path))
        if not root.is_dir():
            if root.exists():
                raise CorruptFileError(f"{root}: not a ColBERTIndex directory")
            raise FileNotFoundError(2, "No such ColBERTIndex directory", str(root))
        verify = (not mmap) if verify is None else bool(verify)
        try:
            meta = json.loads((root / "meta.json").read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise CorruptFileError(f"{root}: no meta.json (not a ColBERTIndex directory)") from None
        except (OSError, ValueError, RecursionError) as e:
            raise CorruptFileError(f"{root}/meta.json: unreadable ({type(e).__name__})") from None
        if not isinstance(meta, dict) or meta.get("kind") != _KIND:
            raise CorruptFileError(f"{root}: not a ColBERTIndex (meta.json kind is not {_KIND!r})")
        version = meta.get("format_version")
        if isinstance(version, bool) or version not in READ_VERSIONS:
            raise CorruptFileError(f"{root}: unsupported ColBERTIndex format version {version!r} "
                                   f"(this version reads {', '.join(map(str, READ_VERSIONS))})")
        try:
            index = cls(meta["dim"], nbits=meta["nbits"], n_centroids=meta["n_centroids"], nprobe=meta["nprobe"],
                        n_candidates=meta["n_candidates"], seed=meta["seed"])
            n_docs, n_tokens, c = int(meta["n_docs"]), int(meta["n_tokens"]), int(meta["n_centroids"])
            entries = meta["arrays"]
            if not isinstance(entries, dict) or n_docs < 1 or n_tokens < n_docs:
                raise ValueError("counts")
        except (KeyError, TypeError, ValueError, InvalidValueError) as e:
            raise CorruptFileError(f"{root}/meta.json: malformed ({type(e).__name__}: {e})") from None
        dim, width = index._dim, index._width
        rotated = version >= 3 and bool(meta.get("rotated", False))
        if rotated == isinstance(index._nbits, int):
            raise CorruptFileError(f"{root}/meta.json: malformed (a rotation goes with a fractional nbits, and only)")
        bits = _coordinate_bits(index._nbits, dim)
        nb = 1 << int(bits.max())
        shapes = {"centroids": (c, dim), "cutoffs": (dim, nb - 1), "weights": (dim, nb), "codes": (n_tokens,),
                  "residuals": (n_tokens, width), "doc_offsets": (n_docs + 1,), "ivf_offsets": (c + 1,),
                  "ivf_docs": None, "bits": (dim,), "rotation": (dim, dim)}
        names = [n for n in _ARRAYS if (n != "bits" or version >= 3) and (n != "rotation" or rotated)]
        arrays: dict[str, np.ndarray] = {}
        for name in names:
            dtype, ndim = _ARRAYS[name]
            if name == "codes":
                dtype = _codes_dtype(c, version)
            elif name == "ivf_docs":
                dtype = _docs_dtype(n_docs, version)
            file = root / f"{name}.npy"
            try:
                a = np.load(file, mmap_mode="r" if mmap else None, allow_pickle=False)
            except FileNotFoundError:
                raise CorruptFileError(f"{file}: missing") from None
            except (OSError, ValueError, EOFError) as e:
                raise CorruptFileError(f"{file}: not a valid array file ({e})") from None
            if name == "centroids" and version >= 4 and isinstance(a, np.ndarray) and a.dtype == np.dtype("<f2"):
                dtype = np.float16  # float16 or float32, whichever the index chose (_stored_centroids)
            if not isinstance(a, np.ndarray) or a.dtype != np.dtype(dtype).newbyteorder("<") or a.ndim != ndim:
                raise CorruptFileError(f"{file}: expected a {ndim}-D {np.dtype(dtype).name} array")
            want = shapes[name]
            if want is not None and a.shape != want:
                raise CorruptFileError(f"{file}: expected shape {want}, got {a.shape}")
            entry = entries.get(name)
            if not isinstance(entry, dict) or list(a.shape) != entry.get("shape"):
                raise CorruptFileError(f"{file}: does not match meta.json")
            if verify and zlib.crc32(np.ascontiguousarray(a).data.cast("B")) & 0xFFFFFFFF != entry.get("crc32"):
                raise CorruptFileError(f"{file}: checksum mismatch (the file is corrupt)")
            arrays[name] = a.astype(dtype, copy=False) if a.dtype != np.dtype(dtype) else a
        # Everything a kernel trusts: offsets, codes and document ids in bounds.
        do, io, iv, codes = arrays["doc_offsets"], arrays["ivf_offsets"], arrays["ivf_docs"], arrays["codes"]
        if do[0] != 0 or do[-1] != n_tokens or (np.diff(do) < 1).any():
            raise CorruptFileError(f"{root}/doc_offsets.npy: not strictly increasing from 0 to {n_tokens}")
        if io[0] != 0 or io[-1] != iv.shape[0] or (np.diff(io) < 0).any():
            raise CorruptFileError(f"{root}/ivf_offsets.npy: not non-decreasing from 0 to {iv.shape[0]}")
        for name, a, hi in (("codes", codes, c), ("ivf_docs", iv, n_docs)):
            for s0 in range(0, a.shape[0], 1 << 22):
                part = a[s0:s0 + (1 << 22)]
                if part.size and (part.min() < 0 or part.max() >= hi):
                    raise CorruptFileError(f"{root}/{name}.npy: values outside [0, {hi})")
        if version >= 3 and not np.array_equal(arrays["bits"], bits):
            raise CorruptFileError(f"{root}/bits.npy: does not match nbits {index._nbits} (expected {bits.tolist()})")
        used = np.arange(nb - 1)[None, :] < ((1 << bits.astype(np.int64)) - 1)[:, None]  # cutoffs in use
        cut = arrays["cutoffs"]
        if not (np.isfinite(cut[used]).all() and np.isposinf(cut[~used]).all()):
            raise CorruptFileError(f"{root}/cutoffs.npy: expected finite cutoffs padded with +inf")
        for name in ("centroids", "weights") + (("rotation",) if rotated else ()):
            if not np.isfinite(arrays[name]).all():
                raise CorruptFileError(f"{root}/{name}.npy: contains NaN or infinity")
        if rotated and np.abs(arrays["rotation"] @ arrays["rotation"].T - np.eye(dim)).max() > 1e-3:
            raise CorruptFileError(f"{root}/rotation.npy: not an orthogonal matrix")
        ids = None
        if meta.get("has_ids"):
            try:
                text = (root / "ids.json").read_text(encoding="utf-8")
                ids_list = json.loads(text)
            except (OSError, ValueError, RecursionError) as e:
                raise CorruptFileError(f"{root}/ids.json: unreadable ({type(e).__name__})") from None
            if not isinstance(ids_list, list) or len(ids_list) != n_docs or not all(isinstance(i, str) for i in ids_list):
                raise CorruptFileError(f"{root}/ids.json: expected a list of {n_docs} strings")
            if verify and zlib.crc32(text.encode("utf-8")) & 0xFFFFFFFF != meta.get("ids_crc32"):
                raise CorruptFileError(f"{root}/ids.json: checksum mismatch (the file is corrupt)")
            ids = tuple(ids_list)
        centroids = np.ascontiguousarray(arrays["centroids"])
        rotation = np.ascontiguousarray(arrays["rotation"], dtype=np.float32) if rotated else None
        index._codec = _Codec(centroids, np.ascontiguousarray(cut), np.ascontiguousarray(arrays["weights"]),
                              bits, rotation)
        index._state = _State(codes, arrays["residuals"], do, io, iv, ids, bool(meta.get("unit", False)))
        return index


#: Element operations below which a kernel call of one query runs on one thread (splitting
#: costs more in OpenMP synchronisation, and much more on a busy machine, than it gains).
_PARALLEL_WORK = 1 << 23


def _threads_for(work: int, n_threads: int) -> int:
    return n_threads if work >= _PARALLEL_WORK else 1


def _is_index_dir(p: Path) -> bool:
    try:
        meta = json.loads((p / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return False
    return p.is_dir() and not p.is_symlink() and isinstance(meta, dict) and meta.get("kind") == _KIND


class ColBERTRetriever:
    """A :class:`ColBERTIndex` with the query encoder that feeds it: a retriever for
    :class:`rank.Pipeline` (``search(texts, k, n_threads=...) -> (ids, scores)``).

    ``Pipeline(index, encoder=encoder)`` builds one; ``ids`` are the index's external ids.
    Thread-safe when the encoder is.
    """

    def __init__(self, index: ColBERTIndex, encoder: Any) -> None:
        if not isinstance(index, ColBERTIndex):
            raise InvalidValueError(f"index: expected a ColBERTIndex, got {type(index).__name__}")
        if not callable(getattr(encoder, "encode_queries", None)):
            raise InvalidValueError(f"encoder: expected an object with encode_queries(texts) "
                                    f"(a ColBERTEncoder), got {type(encoder).__name__}")
        enc_dim = getattr(encoder, "dim", index.dim)
        if enc_dim != index.dim:
            raise ShapeError(f"encoder: produces {enc_dim}-dimensional tokens, the index holds {index.dim}")
        self.index, self.encoder = index, encoder

    @property
    def ids(self) -> tuple[Any, ...] | None:
        return self.index.ids

    def search(self, queries: Sequence[str], k: int = 10, *,
               n_threads: int | None = None) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        if isinstance(queries, str):
            queries = [queries]
        if not len(queries):
            kk = min(check_positive_int(k, "k"), len(self.index))
            return np.empty((0, kk), np.int64), np.empty((0, kk), np.float32)
        encoded = self.encoder.encode_queries(list(queries))
        return self.index.search(list(encoded) if not is_packed(encoded) else encoded, k, n_threads=n_threads)

    retrieve = _deprecate.alias(search, "retrieve")
