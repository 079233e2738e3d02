"""The inverted index shared by BM25 and SparseIndex: query batches, masks, top-k, persistence."""
from __future__ import annotations

import json
import math
import os
import re
import stat
import threading
import time
import zlib
from typing import Any, Optional

import numpy as np

from rank._atomic import atomic_dir
from rank._validate import check_positive_int, resolve_threads
from rank.errors import CorruptFileError, DTypeError, InvalidValueError, ShapeError
from rank_kernels import sparse as _kernel

MAX_ID = np.iinfo(np.int32).max


class WriteLocked:
    """Base of the indexes whose writers (`add`, `index`) are serialised by ``self._write_lock``;
    the lock is left out when pickling and made anew when unpickling."""

    def __init__(self) -> None:
        self._write_lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        d = self.__dict__.copy()
        d.pop("_write_lock", None)
        return d

    def __setstate__(self, d: dict[str, Any]) -> None:
        self.__dict__.update(d)
        self._write_lock = threading.Lock()


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

    def __getstate__(self) -> dict[str, Any]:  # picklable (e.g. to send an index to another process)
        return {name: getattr(self, name) for name in self.__slots__ if name not in ("_spare", "_lock")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            setattr(self, name, value)
        self._spare = None
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
    except OverflowError:
        raise InvalidValueError(f"{name}: token ids must lie in [0, {MAX_ID}), got an id beyond 64 bits") from None
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
    # bounds first, in the given dtype (a uint64 offset past 2**63 would wrap in int64)
    if (offsets.shape[0] < 1 or offsets[0] != 0 or offsets[-1] != ids.shape[0]
            or (offsets.dtype.kind == "i" and offsets.min() < 0) or offsets.max() > ids.shape[0]):
        raise InvalidValueError(f"{name}: offsets must start at 0, be non-decreasing and end at len(ids) "
                                f"= {ids.shape[0]}")
    offsets = np.ascontiguousarray(offsets, np.int64)
    if (np.diff(offsets) < 0).any():
        raise InvalidValueError(f"{name}: offsets must start at 0, be non-decreasing and end at len(ids) "
                                f"= {ids.shape[0]}")
    if ids.size and (ids.min() < 0 or ids.max() >= MAX_ID):
        raise InvalidValueError(f"{name}: token ids must lie in [0, {MAX_ID}), got [{ids.min()}, {ids.max()}]")
    return np.ascontiguousarray(ids, np.int32), offsets


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
    try:
        m = np.asarray(mask)
    except (ValueError, TypeError) as e:
        raise DTypeError(f"mask: expected a boolean array ({type(e).__name__}: {e})") from None
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
#: Names of stored arrays and JSON files: plain words, so no name in meta.json can point
#: outside the index directory.
_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
#: JSON files larger than this are refused before parsing (meta.json, vocabulary, ids).
MAX_JSON_BYTES = 1 << 31


def checksum(data: Any) -> str:
    """CRC-32 of the bytes of an array or a bytes object, as 8 hex digits (what the manifest stores)."""
    if isinstance(data, np.ndarray):
        data = np.ascontiguousarray(data).reshape(-1).view(np.uint8).data
    return format(zlib.crc32(data) & 0xFFFFFFFF, "08x")


def _meta_checksum(meta: dict[str, Any]) -> str:
    """CRC-32 of meta.json's content without its own checksum field (canonical JSON)."""
    body = {k: v for k, v in meta.items() if k != "meta_crc32"}
    return checksum(json.dumps(body, sort_keys=True, ensure_ascii=True).encode("ascii"))


def _check_replaceable(path: str) -> None:
    """Saving may replace an empty directory or an index saved earlier, nothing else: a file or
    a directory of other data at `path` raises InvalidValueError and is left untouched."""
    if not os.path.lexists(path):
        return
    if not os.path.isdir(path) or os.path.islink(path):
        raise InvalidValueError(f"path: {path} exists and is not a directory (not a saved index); refusing to "
                                "replace it (remove it or choose another output name)")
    entries = os.listdir(path)
    if not entries:
        return
    try:
        meta = read_json(path, "meta")
        ours = isinstance(meta, dict) and "format" in meta and "format_version" in meta
    except CorruptFileError:
        ours = False
    if not ours:
        raise InvalidValueError(f"path: {path} is a non-empty directory that is not a saved index; "
                                "refusing to replace it (choose another path or remove it)")


check_replaceable = _check_replaceable


def save_dir(path: Any, fmt: str, meta: dict[str, Any], arrays: dict[str, np.ndarray],
             extra_json: dict[str, Any]) -> None:
    """Write arrays (.npy), extra JSON files and meta.json (with a CRC-32 per file) into a
    temporary directory beside `path`, then rename it into place (:func:`rank._atomic.atomic_dir`:
    an existing index is replaced only once all is written, and restored if the swap fails)."""
    path = os.fspath(path)
    with atomic_dir(path, check=_check_replaceable) as tmp:
        files = {}
        for name, arr in arrays.items():
            arr = np.ascontiguousarray(arr)
            np.save(os.path.join(tmp, name + ".npy"), arr, allow_pickle=False)
            files[name] = {"dtype": arr.dtype.str, "shape": list(arr.shape), "crc32": checksum(arr)}
        sums = {}
        for name, obj in extra_json.items():
            data = json.dumps(obj, ensure_ascii=False).encode("utf-8")
            with open(os.path.join(tmp, name + ".json"), "wb") as f:
                f.write(data)
            sums[name] = checksum(data)
        full = {"format": fmt, "format_version": FORMAT_VERSION, **meta, "arrays": files,
                "json": sorted(extra_json), "json_crc32": sums}
        full["meta_crc32"] = _meta_checksum(full)
        with open(os.path.join(tmp, "meta.json"), "w", encoding="utf-8") as f:
            json.dump(full, f)


_SWAP_WAIT = 2.0  # seconds a load waits for a save between its two renames


def _save_in_progress(path: str) -> bool:
    """True if a save of `path` has its old version set aside (``.old-<name>-...`` sibling)."""
    parent, base = os.path.split(os.path.abspath(path))
    try:
        return any(n.startswith(f".old-{base}-") for n in os.listdir(parent or "."))
    except OSError:
        return False


class _Dir:
    """An index directory pinned by a file descriptor: every file is opened relative to it, so
    one load reads one directory even if a concurrent save renames another into its place."""

    def __init__(self, path: str) -> None:
        self.path = path
        flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)
        deadline = time.monotonic() + _SWAP_WAIT
        while True:
            try:
                self.fd = os.open(path, flags)
                return
            except FileNotFoundError as e:
                # where a save replaces a directory by two renames (no atomic exchange), the
                # target is briefly missing with the old version aside: wait for the new one
                if time.monotonic() > deadline or not _save_in_progress(path):
                    raise CorruptFileError(f"{path}: not a directory holding a saved index "
                                           f"({e.strerror or e})") from None
                time.sleep(0.001)
            except OSError as e:
                raise CorruptFileError(f"{path}: not a directory holding a saved index ({e.strerror or e})") from None

    def close(self) -> None:
        os.close(self.fd)

    def replaced(self) -> bool:
        """True when `path` no longer names the pinned directory (a save replaced it)."""
        try:
            a, b = os.stat(self.path), os.fstat(self.fd)
        except OSError:
            return True
        return (a.st_dev, a.st_ino) != (b.st_dev, b.st_ino)

    def open(self, name: str) -> Any:
        """A binary file object for regular file `name`; CorruptFileError for anything else (a
        FIFO, device, directory, or a symlink that is not a plain sibling file name)."""
        path = self.path
        try:
            st = os.stat(name, dir_fd=self.fd, follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                target = os.readlink(name, dir_fd=self.fd)
                if os.path.isabs(target) or os.sep in target or (os.altsep and os.altsep in target) \
                        or target in (".", ".."):
                    raise CorruptFileError(f"{path}: {name} is a symbolic link leading outside the index directory")
            fd = os.open(name, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0),
                         dir_fd=self.fd)
        except FileNotFoundError as e:
            if self.replaced():
                raise _Replaced() from None
            raise CorruptFileError(f"{path}: missing {name} ({e.strerror or e})") from None
        except OSError as e:
            raise CorruptFileError(f"{path}: unreadable {name} ({e.strerror or e})") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise CorruptFileError(f"{path}: {name} is not a regular file (corrupt or foreign index)")
        return os.fdopen(fd, "rb")


class _Replaced(Exception):
    """The directory was replaced by a concurrent save while it was being read: read again."""


def _read_bytes(d: _Dir, name: str) -> bytes:
    with d.open(name) as f:
        try:
            data = f.read(MAX_JSON_BYTES + 1)
        except OSError as e:
            raise CorruptFileError(f"{d.path}: unreadable {name} ({e.strerror or e})") from None
    if len(data) > MAX_JSON_BYTES:
        raise CorruptFileError(f"{d.path}: {name} is larger than {MAX_JSON_BYTES} bytes (corrupt index)")
    return data


def _parse_json(path: str, name: str, data: bytes) -> Any:
    try:
        return json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
        raise CorruptFileError(f"{path}: {name} is not valid JSON ({type(e).__name__}: {str(e)[:200]})") from None


def read_json(path: Any, name: str) -> Any:
    """The parsed JSON file `name`.json of index directory `path` (CorruptFileError if unreadable)."""
    d = _Dir(os.fspath(path))
    try:
        return _parse_json(d.path, name + ".json", _read_bytes(d, name + ".json"))
    except _Replaced:
        return read_json(path, name)
    finally:
        d.close()


def _npy_header(f: Any, size: int) -> tuple[tuple[int, ...], np.dtype, int]:
    """(shape, dtype, data offset) of the .npy file `f` (`size` bytes), checked against the
    size before any data is read (a header claiming 2**40 elements allocates nothing)."""
    fmt = np.lib.format
    version = fmt.read_magic(f)
    if version == (1, 0):
        shape, fortran, dtype = fmt.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, fortran, dtype = fmt.read_array_header_2_0(f)
    else:
        raise ValueError(f"unsupported .npy version {version}")
    if fortran or dtype.hasobject:
        raise ValueError("a Fortran-ordered or object array")
    offset = f.tell()
    want = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if want != size - offset:
        raise ValueError(f"{size - offset} data bytes for a {dtype.str} {list(shape)} array of {want} bytes")
    return shape, dtype, offset


def _load_npy(d: _Dir, name: str, mmap: bool) -> np.ndarray:
    with d.open(name + ".npy") as f:
        try:
            shape, dtype, offset = _npy_header(f, os.fstat(f.fileno()).st_size)
            count = int(np.prod(shape, dtype=object))
            if mmap and count:
                return np.memmap(f, dtype=dtype, mode="r", offset=offset, shape=shape)
            arr = np.fromfile(f, dtype=dtype, count=count)
            if arr.size != count:
                raise ValueError("truncated data")
            return arr.reshape(shape)
        except Exception as e:  # any parse error of a truncated or foreign file (ValueError, TokenError, ...)
            raise CorruptFileError(f"{d.path}: {name}.npy is truncated or not a NumPy array file "
                                   f"({type(e).__name__}: {str(e)[:200]})") from None


def load_dir(path: Any, fmt: str, mmap: bool, arrays_expected: Any = None, json_expected: Any = None,
             verify: bool = False) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, Any]]:
    """(meta, arrays, json objects) of a directory written by save_dir; CorruptFileError if it is
    missing pieces, truncated, of another format or of an unsupported version, if meta.json names
    other files than `arrays_expected` / a subset of `json_expected`, or if a checksum differs
    from the manifest's: meta.json's own and the JSON files' always (they are parsed whole
    anyway), the arrays' only with `verify` (that reads every byte of them).

    Every file is read from one directory (pinned by a descriptor): a save replacing the
    index meanwhile makes the load start again on the new one, never mix the two."""
    path = os.fspath(path)
    for _ in range(100):
        d = _Dir(path)
        try:
            return _load_pinned(d, fmt, mmap, arrays_expected, json_expected, verify)
        except _Replaced:
            continue
        finally:
            d.close()
    raise CorruptFileError(f"{path}: replaced by other saves 100 times while loading it")


def _load_pinned(d: _Dir, fmt: str, mmap: bool, arrays_expected: Any, json_expected: Any,
                 verify: bool) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, Any]]:
    path = d.path
    meta = _parse_json(path, "meta.json", _read_bytes(d, "meta.json"))
    if not isinstance(meta, dict) or meta.get("format") != fmt:
        raise CorruptFileError(f"{path}: not a saved {fmt} index (format {meta.get('format') if isinstance(meta, dict) else None!r})")
    if meta.get("format_version") != FORMAT_VERSION:
        raise CorruptFileError(f"{path}: unsupported format version {meta.get('format_version')!r} "
                               f"(this version reads {FORMAT_VERSION})")
    if "meta_crc32" in meta and meta["meta_crc32"] != _meta_checksum(meta):  # small: always checked
        raise CorruptFileError(f"{path}/meta.json: checksum mismatch (the file changed since it was saved)")
    specs, names, sums = meta.get("arrays"), meta.get("json"), meta.get("json_crc32", {})
    if (not isinstance(specs, dict) or not isinstance(names, list) or not isinstance(sums, dict)
            or not all(isinstance(n, str) and _NAME.fullmatch(n) for n in list(specs) + names)):
        raise CorruptFileError(f"{path}: meta.json lists malformed file names (corrupt index)")
    if arrays_expected is not None and set(specs) != set(arrays_expected):
        raise CorruptFileError(f"{path}: meta.json lists arrays {sorted(specs)}, expected {sorted(arrays_expected)}")
    if json_expected is not None and not set(names) <= set(json_expected):
        raise CorruptFileError(f"{path}: meta.json lists JSON files {names}, expected some of {sorted(json_expected)}")
    arrays = {}
    for name, spec in specs.items():
        if not isinstance(spec, dict):
            raise CorruptFileError(f"{path}: meta.json: malformed entry for array {name!r}")
        arr = _load_npy(d, name, mmap)
        if arr.dtype.str != spec.get("dtype") or list(arr.shape) != list(spec.get("shape") or [None]):
            raise CorruptFileError(f"{path}/{name}.npy: expected {spec.get('dtype')} {spec.get('shape')}, "
                                   f"found {arr.dtype.str} {list(arr.shape)}")
        if verify and spec.get("crc32") is not None and checksum(arr) != spec["crc32"]:
            raise CorruptFileError(f"{path}/{name}.npy: checksum mismatch (the file changed since it was saved)")
        arrays[name] = arr
    objs = {}
    for name in names:
        data = _read_bytes(d, name + ".json")
        if sums.get(name) is not None and checksum(data) != sums[name]:  # cheaper than parsing: always
            raise CorruptFileError(f"{path}/{name}.json: checksum mismatch (the file changed since it was saved)")
        objs[name] = _parse_json(path, name + ".json", data)
    return meta, arrays, objs


def meta_number(path: Any, meta: dict[str, Any], key: str, kind: type, lo: float, hi: float) -> Any:
    """meta[key] as an int or a finite float in [lo, hi]; CorruptFileError otherwise."""
    v = meta.get(key)
    ok = (isinstance(v, (int, float)) and not isinstance(v, bool)
          and (kind is float or isinstance(v, int)) and math.isfinite(v) and lo <= v <= hi)
    if not ok:
        raise CorruptFileError(f"{path}: meta.json: {key} must be {'an integer' if kind is int else 'a finite number'} "
                               f"in [{lo:g}, {hi:g}], got {v!r} (corrupt index)")
    return kind(v)


def check_postings(path: Any, indptr: np.ndarray, docs: np.ndarray, values: np.ndarray, n_docs: int,
                   max_value: np.ndarray) -> bool:
    """Structural checks of loaded postings, everything the kernels trust: indptr starts at 0,
    never decreases and ends at the number of postings; every doc id lies in [0, n_docs) and
    ids increase strictly within each term's list; every weight is finite; the per-term maxima
    (which pruning trusts) equal the weights' maxima. One sequential pass without temporaries
    (mmap'ed pages are read once). Returns whether every weight is >= 0; CorruptFileError
    otherwise."""
    ok = (indptr.ndim == 1 and indptr.dtype == np.int64 and indptr.shape[0] >= 1 and docs.ndim == 1
          and docs.shape == values.shape and docs.dtype == np.int32 and values.dtype == np.float32
          and max_value.dtype == np.float32 and max_value.shape == (indptr.shape[0] - 1,))
    if not ok:
        raise CorruptFileError(f"{path}: inconsistent postings arrays (corrupt index)")
    code, nonneg = _kernel.check_postings(indptr, docs, values, n_docs, max_value)
    if code:
        what = {1: "offsets (indptr) out of order or range", 2: "document ids out of range or out of order",
                3: "non-finite weights", 4: "per-term maxima disagree with the weights"}[code]
        raise CorruptFileError(f"{path}: inconsistent postings: {what} (corrupt index)")
    return bool(nonneg)
