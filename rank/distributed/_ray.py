"""Ray: the import (with the supported version range), connecting, and the shared helpers of
the sharded indexes (manifest files, atomic directory swaps, contiguous splits, exact merge)."""
from __future__ import annotations

import json
import os
from typing import Any, Callable, Optional, Sequence

import numpy as np

from rank.errors import CorruptFileError, InvalidValueError, MissingDependencyError, ShapeError

#: The Ray versions rank.distributed supports: >= MIN_RAY, < MAX_RAY (the `ray` extra pins the same).
MIN_RAY = (2, 9)
MAX_RAY = (3, 0)
RANGE = ">=2.9,<3"


def _version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit()) if not piece.isdigit() else piece
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def check_version(version: str) -> None:
    """Raise MissingDependencyError unless `version` lies in the supported range ``>=2.9,<3``."""
    v = _version_tuple(version)
    if not v or not (MIN_RAY <= v[:2] < MAX_RAY):
        raise MissingDependencyError(
            f"rank.distributed needs ray{RANGE} (install rank-kernels[ray]); found ray {version}")


def check_installed() -> None:
    """Raise MissingDependencyError naming the extra unless a supported Ray is installed,
    without importing it (importing Ray and Ray Data loads pandas, pyarrow, grpc...: that
    happens on first use)."""
    import importlib.metadata
    import importlib.util

    try:
        spec = importlib.util.find_spec("ray")
    except (ImportError, ValueError):  # a module entry of None (blocked import) or a broken one
        spec = None
    if spec is None:
        raise MissingDependencyError(
            f"rank.distributed needs Ray: install rank-kernels[ray] (ray[data]{RANGE}); ray is not installed")
    try:
        version = importlib.metadata.version("ray")
    except importlib.metadata.PackageNotFoundError:  # not installed as a distribution: checked on import
        return
    check_version(version)


def require_ray() -> Any:
    """The ray module, checked for the supported version; MissingDependencyError naming the
    extra when it is not installed (or Ray Data is missing)."""
    try:
        import ray
        import ray.data  # noqa: F401  (the extra is ray[data])
    except ImportError as e:
        raise MissingDependencyError(
            f"rank.distributed needs Ray: install rank-kernels[ray] (ray[data]{RANGE}); import failed: {e}") from None
    check_version(getattr(ray, "__version__", "0"))
    return ray


def init(address: Optional[str] = None, **kwargs: Any) -> Any:
    """Connect to Ray: to the cluster at `address` ("auto", "ray://host:port", ...), else a
    local cluster started on this machine (or the one this process already joined). Returns ray.

    Extra keyword arguments go to ``ray.init`` (e.g. ``num_cpus``). Does nothing when Ray is
    already initialised and no `address` is given.
    """
    ray = require_ray()
    if ray.is_initialized():
        return ray
    if address is not None:
        ray.init(address=address, **kwargs)
    else:
        kwargs.setdefault("include_dashboard", False)
        ray.init(**kwargs)
    return ray


def cluster_cpus(ray: Any) -> float:
    """CPUs of the cluster (1 if Ray cannot tell)."""
    try:
        return float(ray.cluster_resources().get("CPU", 1.0)) or 1.0
    except Exception:  # pragma: no cover - a cluster that does not answer
        return 1.0


def check_n_shards(n_shards: Any, n_docs: Optional[int] = None) -> int:
    if isinstance(n_shards, bool) or not isinstance(n_shards, (int, np.integer)) or n_shards < 1:
        raise InvalidValueError(f"n_shards: expected an integer >= 1, got {n_shards!r}")
    n = int(n_shards)
    if n_docs is not None:
        if n_docs == 0:
            raise ShapeError("corpus: expected at least one document, got none")
        if n > n_docs:
            raise ShapeError(f"n_shards: {n} shards for {n_docs} documents would leave a shard with an empty "
                             f"corpus split; use n_shards <= {n_docs}")
    return n


def bounds(n_docs: int, n_shards: int) -> list[int]:
    """Start of every contiguous shard and the end: shard i holds [b[i], b[i+1]), sizes differ by <= 1."""
    return [i * n_docs // n_shards for i in range(n_shards + 1)]


def shard_name(i: int) -> str:
    return f"shard-{i:05d}"


# --- manifests and atomic swaps -----------------------------------------------------------------

MANIFEST = "manifest.json"


def is_sharded(path: Any) -> bool:
    return os.path.isfile(os.path.join(os.fspath(path), MANIFEST))


def check_target(path: str) -> None:
    """`path` may be missing, an empty directory or a sharded index (replaced only once the new
    one is complete); anything else is refused and left untouched."""
    if os.path.lexists(path):
        if not os.path.isdir(path) or os.path.islink(path):
            raise InvalidValueError(f"path: {path} exists and is not a directory; refusing to replace it")
        if os.listdir(path) and not is_sharded(path):
            raise InvalidValueError(f"path: {path} is a non-empty directory that is not a sharded index; "
                                    "refusing to replace it (choose another path or remove it)")


def write_json(path: str, obj: Any) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False)


def atomic_build(path: Any, build: Callable[[str], dict[str, Any]]) -> None:
    """Run ``build(tmp_dir) -> manifest`` in a temporary sibling of `path`, write the manifest
    last and swap the directory into place with :func:`rank._atomic.atomic_dir` (everything
    fsync'ed; on any error the temporary is removed and `path` is left as it was)."""
    from rank._atomic import atomic_dir

    path = os.fspath(path)
    with atomic_dir(path, check=check_target) as tmp:
        manifest = build(tmp)
        write_json(os.path.join(tmp, MANIFEST), manifest)


def read_manifest(path: Any, fmt: str, version: int) -> dict[str, Any]:
    path = os.fspath(path)
    try:
        with open(os.path.join(path, MANIFEST), encoding="utf-8") as f:
            m = json.load(f)
    except FileNotFoundError:
        raise CorruptFileError(f"{path}: not a sharded index (no {MANIFEST})") from None
    except (OSError, ValueError) as e:
        raise CorruptFileError(f"{path}/{MANIFEST}: unreadable ({e})") from None
    if not isinstance(m, dict) or m.get("format") != fmt:
        raise CorruptFileError(f"{path}: not a {fmt} index (format {m.get('format') if isinstance(m, dict) else None!r})")
    if m.get("format_version") != version:
        raise CorruptFileError(f"{path}: unsupported format version {m.get('format_version')!r} (this version reads {version})")
    shards = m.get("shards")
    if not isinstance(shards, list) or not shards:
        raise CorruptFileError(f"{path}/{MANIFEST}: no shards listed")
    start = 0
    for i, s in enumerate(shards):
        if (not isinstance(s, dict) or not isinstance(s.get("name"), str) or s.get("start") != start
                or not isinstance(s.get("n_docs"), int) or s["n_docs"] < 1 or os.sep in s["name"] or s["name"].startswith(".")):
            raise CorruptFileError(f"{path}/{MANIFEST}: shard {i} is described inconsistently")
        start += s["n_docs"]
    if m.get("n_docs") != start:
        raise CorruptFileError(f"{path}/{MANIFEST}: the shards hold {start} documents, the manifest says {m.get('n_docs')}")
    return m


def get(ray: Any, refs: Any) -> Any:
    """ray.get, raising a failed task's own exception (e.g. a rank.errors one) rather than Ray's
    wrapper. When one of several tasks fails, the others are waited for first, so none is still
    writing (e.g. into a build's temporary directory) once the error reaches the caller."""
    try:
        return ray.get(refs)
    except ray.exceptions.RayTaskError as e:
        if isinstance(refs, list) and len(refs) > 1:
            ray.wait(refs, num_returns=len(refs))
        cause = e.as_instanceof_cause()
        if isinstance(cause, ray.exceptions.RayTaskError):
            raise
        raise cause from None


# --- exact merge --------------------------------------------------------------------------------

def merge_topk(parts: Sequence[tuple[np.ndarray, np.ndarray]], k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best of several shards' top lists: score descending, equal scores by the smaller
    global index (the tie rule of one index). `parts` are (global indices int64 (nq, k_i),
    scores float32 (nq, k_i)); index -1 marks padding. Returns arrays (nq, min(k, columns)).

    Each (score, index) pair is packed into one uint64 key that sorts in exactly that order
    (the float32 bits made order-preserving and flipped, above a 32-bit index), so the merge
    is one partition and a sort of k keys per query: O(n_shards k + k log k).
    """
    idx = np.ascontiguousarray(np.concatenate([p[0] for p in parts], axis=1), np.int64)
    sc = np.ascontiguousarray(np.concatenate([p[1] for p in parts], axis=1), np.float32)
    cols = idx.shape[1]
    k = min(k, cols)
    if cols == 0 or idx.shape[0] == 0:
        return idx[:, :k], sc[:, :k]
    pad = idx < 0
    if int(idx.max()) >= 1 << 32:  # indices beyond 32 bits: the two-key sort
        key_idx = np.where(pad, np.iinfo(np.int64).max, idx)
        key_sc = np.where(pad, np.inf, -sc.astype(np.float64))
        order = np.lexsort((key_idx, key_sc), axis=-1)[:, :k]
    else:
        bits = (sc + np.float32(0.0)).view(np.uint32)  # -0.0 -> +0.0: equal scores, equal keys
        up = np.where(bits >> np.uint32(31), ~bits, bits | np.uint32(0x80000000))  # ascending with the score
        key = ((~up).astype(np.uint64) << np.uint64(32)) | idx.astype(np.uint64)
        key[pad] = np.iinfo(np.uint64).max
        if k < cols:
            part = np.argpartition(key, k - 1, axis=1)[:, :k]
            order = np.take_along_axis(part, np.argsort(np.take_along_axis(key, part, 1), axis=1), 1)
        else:
            order = np.argsort(key, axis=1)
    return np.take_along_axis(idx, order, axis=1), np.take_along_axis(sc, order, axis=1)


def batches(n: int, size: int) -> list[tuple[int, int]]:
    return [(s, min(n, s + size)) for s in range(0, n, size)] or [(0, 0)]
