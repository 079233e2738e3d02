"""The inverted index shared by BM25 and SparseIndex: query batches, masks, top-k, persistence."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
from typing import Any, Optional

import numpy as np

from rank._validate import check_positive_int, resolve_threads
from rank.errors import CorruptFileError, DTypeError, InvalidValueError, ShapeError
from rank_kernels import sparse as _kernel

MAX_ID = np.iinfo(np.int32).max


class Postings:
    """Term-major postings: indptr (n_terms + 1) int64, docs int32, values float32, per-term max.

    It also keeps the work array of the last finished search (13 bytes per document and
    thread, zero between calls) for the next one: fresh multi-megabyte arrays would cost their
    page faults at every call, which dominates one-query calls on large indexes. Concurrent
    searches each take their own array (the spare one, or a new one); one is kept at most.
    """

    __slots__ = ("indptr", "docs", "values", "max_value", "nonneg", "n_docs", "_spare", "_lock")

    def __init__(self, indptr: np.ndarray, docs: np.ndarray, values: np.ndarray, n_docs: int,
                 max_value: Optional[np.ndarray] = None, nonneg: Optional[bool] = None) -> None:
        self.indptr, self.docs, self.values, self.n_docs = indptr, docs, values, int(n_docs)
        self.max_value = _kernel.term_max(indptr, values) if max_value is None else max_value
        if nonneg is None:
            nonneg = bool(values.size == 0 or float(np.min(values)) >= 0.0)
        self.nonneg = nonneg
        self._spare: Optional[np.ndarray] = None
        self._lock = threading.Lock()

    def take_work(self, n_threads: int) -> np.ndarray:
        """A zero work array of at least n_threads rows for `topk` (the spare one if it fits)."""
        with self._lock:
            work, self._spare = self._spare, None
        if work is None or work.shape[0] < n_threads:
            work = np.zeros((n_threads, _kernel.work_bytes(self.n_docs)), np.uint8)
        return work

    def give_back(self, work: np.ndarray) -> None:
        """Keep `work` (zero again after a finished search) for the next search."""
        with self._lock:
            if self._spare is None or self._spare.shape[0] < work.shape[0]:
                self._spare = work

    @property
    def n_terms(self) -> int:
        return int(self.indptr.shape[0] - 1)


def pointers(counts: np.ndarray) -> np.ndarray:
    """Cumulative int64 pointer array (n + 1,) from per-item counts."""
    ptr = np.zeros(counts.shape[0] + 1, np.int64)
    np.cumsum(counts, out=ptr[1:])
    return ptr


def flatten_int_lists(lists: list, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Packed (ids int32, offsets int64) from a list of lists of non-negative ints."""
    try:
        lengths = np.fromiter((len(x) for x in lists), np.int64, count=len(lists))
    except TypeError:
        raise DTypeError(f"{name}: expected lists of ints") from None
    total = int(lengths.sum())
    try:
        flat = np.fromiter((v for x in lists for v in x), np.int64, count=total)
    except (TypeError, ValueError):
        raise DTypeError(f"{name}: expected lists of ints (token ids)") from None
    for x in lists:  # floats convert silently in fromiter: check the element types once
        for v in x:
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
                raise DTypeError(f"{name}: expected int token ids, got {type(v).__name__}")
            break
    if flat.size and (flat.min() < 0 or flat.max() >= MAX_ID):
        raise InvalidValueError(f"{name}: token ids must lie in [0, {MAX_ID}), got [{flat.min()}, {flat.max()}]")
    return flat.astype(np.int32), pointers(lengths)


def check_packed(x: tuple, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Validate a packed (ids, offsets) pair of token ids."""
    ids = np.asarray(x[0])
    offsets = np.asarray(x[1])
    if ids.ndim != 1 or offsets.ndim != 1 or ids.dtype.kind not in "iu" or offsets.dtype.kind not in "iu":
        raise DTypeError(f"{name}: expected a packed pair of 1-D integer arrays (ids, offsets)")
    if offsets.shape[0] < 1 or offsets[0] != 0 or offsets[-1] != ids.shape[0] or (np.diff(offsets) < 0).any():
        raise InvalidValueError(f"{name}: offsets must start at 0, be non-decreasing and end at len(ids)")
    if ids.size and (ids.min() < 0 or ids.max() >= MAX_ID):
        raise InvalidValueError(f"{name}: token ids must lie in [0, {MAX_ID})")
    return np.ascontiguousarray(ids, np.int32), np.ascontiguousarray(offsets, np.int64)


class QueryBatch:
    """Queries as flat arrays: per query, its distinct terms sorted by bound, weights, shift."""

    __slots__ = ("ptr", "terms", "weights", "bounds", "shift", "prune")

    def __init__(self, ptr: np.ndarray, terms: np.ndarray, weights: np.ndarray, bounds: np.ndarray,
                 shift: np.ndarray, prune: np.ndarray) -> None:
        self.ptr, self.terms, self.weights, self.bounds = ptr, terms, weights, bounds
        self.shift, self.prune = shift, prune

    @property
    def n(self) -> int:
        return int(self.ptr.shape[0] - 1)


def make_batch(ptr: np.ndarray, terms: np.ndarray, weights: np.ndarray, postings: Postings,
               shift_per_term: Optional[np.ndarray] = None) -> QueryBatch:
    """Queries `terms[ptr[i]:ptr[i + 1]]` (with their weights) as a batch for the kernels:
    repeated terms merged (weights add up), terms outside the index dropped, terms ordered by
    bound (weight * max value) descending, then term id.

    The order is what both `topk` and `accumulate` follow, so a document's score is the same
    whichever computes it.
    """
    ptr = np.ascontiguousarray(ptr, np.int64)
    nq = ptr.shape[0] - 1
    n = int(ptr[-1])
    out_ptr = np.empty(nq + 1, np.int64)
    t, w, bound = np.empty(n, np.int32), np.empty(n, np.float32), np.empty(n, np.float32)
    negative = np.empty(nq, np.uint8)
    used = _kernel.prepare_queries(ptr, np.ascontiguousarray(terms, np.int64),
                                   np.ascontiguousarray(weights, np.float64),
                                   np.ascontiguousarray(postings.max_value, np.float32),
                                   out_ptr, t, w, bound, negative)
    t, w, bound = t[:used], w[:used], bound[:used]
    if shift_per_term is not None and used:
        qi = np.repeat(np.arange(nq), np.diff(out_ptr))
        shift = np.bincount(qi, weights=w * shift_per_term[t].astype(np.float64), minlength=nq).astype(np.float32)
    else:
        shift = np.zeros(nq, np.float32)
    prune = ((negative == 0) & postings.nonneg).astype(np.uint8)
    return QueryBatch(out_ptr, t, w, bound, shift, prune)


def as_mask(mask: Any, nq: int, n_docs: int) -> np.ndarray:
    """A uint8 (0, n_docs), (1, n_docs) or (nq, n_docs) view of a boolean mask (True = allowed)."""
    if mask is None:
        return np.zeros((0, n_docs), np.uint8)
    m = np.asarray(mask)
    if m.dtype != np.bool_:
        raise DTypeError(f"mask: expected a boolean array, got dtype {m.dtype}")
    if m.ndim == 1:
        m = m.reshape(1, -1)
    if m.ndim != 2 or m.shape[1] != n_docs or m.shape[0] not in (1, nq):
        raise ShapeError(f"mask: expected shape ({n_docs},) or ({nq}, {n_docs}), got {np.shape(mask)}")
    return np.ascontiguousarray(m).view(np.uint8)


def search(postings: Postings, batch: QueryBatch, k: Any, n_threads: Any, mask: Any) -> tuple[np.ndarray, np.ndarray]:
    """(indices int64 (nq, k'), scores float32 (nq, k')) with k' = min(k, n_docs)."""
    k = check_positive_int(k, "k")
    n_threads = resolve_threads(n_threads)
    nq, n_docs = batch.n, postings.n_docs
    m = as_mask(mask, nq, n_docs)
    k = min(k, n_docs)
    idx = np.empty((nq, k), np.int64)
    scores = np.empty((nq, k), np.float32)
    if nq and k:
        work = postings.take_work(min(n_threads, nq))
        _kernel.topk(postings.indptr, postings.docs, postings.values, n_docs, batch.ptr, batch.terms,
                     batch.weights, batch.bounds, batch.shift, batch.prune, m, k, n_threads, idx, scores, work)
        postings.give_back(work)  # not after an error: the array may not be zero then
    return idx, scores


def scores(postings: Postings, batch: QueryBatch) -> np.ndarray:
    """Scores of every document for the single query of `batch`, float32 (n_docs,)."""
    out = np.zeros(postings.n_docs, np.float32)
    _kernel.accumulate(postings.indptr, postings.docs, postings.values, batch.terms, batch.weights,
                       float(batch.shift[0]), out)
    return out


# --- persistence ------------------------------------------------------------------------------

FORMAT_VERSION = 1


def _check_replaceable(path: str) -> None:
    """Saving may replace an empty directory or an index saved earlier, nothing else: a file or
    a directory of other data at `path` raises InvalidValueError and is left untouched."""
    if not os.path.lexists(path):
        return
    if not os.path.isdir(path) or os.path.islink(path):
        raise InvalidValueError(f"path: {path} exists and is not a directory; refusing to replace it with an index")
    entries = os.listdir(path)
    if not entries:
        return
    try:
        with open(os.path.join(path, "meta.json"), encoding="utf-8") as f:
            meta = json.load(f)
        ours = isinstance(meta, dict) and "format" in meta and "format_version" in meta
    except (OSError, ValueError):
        ours = False
    if not ours:
        raise InvalidValueError(f"path: {path} is a non-empty directory that is not a saved index; "
                                "refusing to replace it (choose another path or remove it)")


def save_dir(path: Any, fmt: str, meta: dict[str, Any], arrays: dict[str, np.ndarray],
             extra_json: dict[str, Any]) -> None:
    """Write arrays (.npy), extra JSON files and meta.json into a temporary directory beside
    `path`, then rename it into place (replacing an existing index only once all is written)."""
    path = os.fspath(path)
    _check_replaceable(path)
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".tmp-" + os.path.basename(path) + "-", dir=parent)
    try:
        files = {}
        for name, arr in arrays.items():
            arr = np.ascontiguousarray(arr)
            np.save(os.path.join(tmp, name + ".npy"), arr, allow_pickle=False)
            files[name] = {"dtype": arr.dtype.str, "shape": list(arr.shape)}
        for name, obj in extra_json.items():
            with open(os.path.join(tmp, name + ".json"), "w", encoding="utf-8") as f:
                json.dump(obj, f, ensure_ascii=False)
        full = {"format": fmt, "format_version": FORMAT_VERSION, **meta, "arrays": files,
                "json": sorted(extra_json)}
        with open(os.path.join(tmp, "meta.json"), "w", encoding="utf-8") as f:
            json.dump(full, f)
        if os.path.exists(path):
            old = tempfile.mkdtemp(prefix=".old-" + os.path.basename(path) + "-", dir=parent)
            os.rmdir(old)
            os.rename(path, old)
            os.rename(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def load_dir(path: Any, fmt: str, mmap: bool) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, Any]]:
    """(meta, arrays, json objects) of a directory written by save_dir; CorruptFileError if it is
    missing pieces, truncated, of another format or of an unsupported version."""
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise CorruptFileError(f"{path}: not a directory holding a saved index")
    try:
        with open(os.path.join(path, "meta.json"), encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, ValueError) as e:
        raise CorruptFileError(f"{path}: missing or unreadable meta.json ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != fmt:
        raise CorruptFileError(f"{path}: not a saved {fmt} index (format {meta.get('format') if isinstance(meta, dict) else None!r})")
    if meta.get("format_version") != FORMAT_VERSION:
        raise CorruptFileError(f"{path}: unsupported format version {meta.get('format_version')!r} "
                               f"(this version reads {FORMAT_VERSION})")
    arrays = {}
    try:
        for name, spec in meta["arrays"].items():
            arr = np.load(os.path.join(path, name + ".npy"), mmap_mode="r" if mmap else None, allow_pickle=False)
            if arr.dtype.str != spec["dtype"] or list(arr.shape) != list(spec["shape"]):
                raise CorruptFileError(f"{path}/{name}.npy: expected {spec['dtype']} {spec['shape']}, "
                                       f"found {arr.dtype.str} {list(arr.shape)}")
            arrays[name] = arr
        objs = {}
        for name in meta["json"]:
            with open(os.path.join(path, name + ".json"), encoding="utf-8") as f:
                objs[name] = json.load(f)
    except CorruptFileError:
        raise
    except (OSError, ValueError, KeyError, TypeError, EOFError) as e:
        raise CorruptFileError(f"{path}: truncated or corrupt index file ({type(e).__name__}: {e})") from None
    return meta, arrays, objs


def check_postings(path: Any, indptr: np.ndarray, docs: np.ndarray, values: np.ndarray, n_docs: int,
                   full: bool) -> None:
    """Structural checks of loaded postings; `full` also checks every doc id (reads them all)."""
    ok = (indptr.ndim == 1 and indptr.shape[0] >= 1 and indptr[0] == 0 and indptr[-1] == docs.shape[0]
          and docs.shape == values.shape and bool((np.diff(indptr) >= 0).all()))
    if ok and full and docs.size:
        ok = int(docs.min()) >= 0 and int(docs.max()) < n_docs
    if not ok:
        raise CorruptFileError(f"{path}: inconsistent postings (corrupt index)")
