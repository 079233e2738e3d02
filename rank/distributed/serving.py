"""Serving sharded indexes on Ray: one actor per shard, queries scattered in batches, the
shards' top-k merged exactly; plus the sharded DenseIndex and SparseIndex.

Every actor loads its shard from its files (memory-mapped), so Ray can restart a dead actor
from them (``max_restarts``) and retry its pending calls (``max_task_retries``); the caller
also re-creates an actor that Ray gave up on and resubmits its batches, so no query is lost
and no partial answer is returned.
"""
from __future__ import annotations

import os
import threading
from typing import Any, Optional, Sequence, TypeVar, Union

import numpy as np

from rank._validate import as_float_array, check_positive_int
from rank.distributed import _ray
from rank.errors import CorruptFileError, InvalidValueError, ShapeError

__all__ = ["ShardedDenseIndex", "ShardedSparseIndex"]

#: Ray restarts a dead shard actor this many times (and retries its calls); then the caller
#: starts a fresh actor, up to this many times per search.
MAX_RESTARTS = 3


class ShardServer:
    """The state of one shard actor: a loaded shard and its offset in the global order.

    kind "bm25": a BM25 directory plus the collection statistics (root/df.npy,
    root/max_impact.npy, n_docs and avgdl of the manifest); "dense": a DenseIndex file;
    "sparse": a SparseIndex directory whose last document is the phantom row (masked out).
    A load error is kept and reported by :meth:`ready` (raising in the constructor would only
    make Ray restart the actor in a loop).
    """

    def __init__(self, kind: str, root: str, shard: dict[str, Any], n_threads: int,
                 stats: Optional[dict[str, Any]] = None) -> None:
        self.kind, self.root, self.shard, self.n_threads = kind, root, shard, max(1, int(n_threads))
        self.start = int(shard["start"])
        self.error: Optional[str] = None
        self.index: Any = None
        self.ids: Optional[list] = None
        try:
            self._load(stats or {})
        except Exception as e:  # reported by ready(), with the shard's name
            self.error = f"{type(e).__name__}: {e}"

    def _load(self, stats: dict[str, Any]) -> None:
        path = os.path.join(self.root, self.shard["name"])
        if not os.path.exists(path):
            raise CorruptFileError(f"{path}: shard file missing")
        if self.kind == "bm25":
            from rank.retrieve import BM25

            bm = BM25.load(path, mmap=True)
            if bm.n_docs != self.shard["n_docs"]:
                raise CorruptFileError(f"{path}: holds {bm.n_docs} documents, the manifest says {self.shard['n_docs']}")
            df = np.load(os.path.join(self.root, "df.npy"), mmap_mode="r", allow_pickle=False)
            top = np.load(os.path.join(self.root, "max_impact.npy"), mmap_mode="r", allow_pickle=False)
            bm.use_collection_stats(int(stats["n_docs"]), float(stats["avgdl"]), df, max_impact=top, recompute=False)
            self.index, self.ids = bm, bm.ids
        elif self.kind == "dense":
            from rank.rerank import DenseIndex

            self.index = DenseIndex.load(path, mmap=True)
            if len(self.index) != self.shard["n_docs"]:
                raise CorruptFileError(f"{path}: holds {len(self.index)} vectors, the manifest says {self.shard['n_docs']}")
        else:
            from rank.retrieve import SparseIndex

            self.index = SparseIndex.load(path, mmap=True)
            n = self.shard["n_docs"]
            if self.index.n_docs != n + 1:
                raise CorruptFileError(f"{path}: holds {self.index.n_docs} rows, the manifest says {n} (+ 1 phantom)")
            self._mask = np.ones(n + 1, bool)
            self._mask[n] = False

    def ready(self) -> Optional[str]:
        """None when the shard loaded, else the error message."""
        return self.error

    def pid(self) -> int:
        return os.getpid()

    def search(self, queries: Any, k: int, with_ids: bool = False) -> tuple[np.ndarray, np.ndarray, Optional[list]]:
        """(global indices int64 (nq, k'), scores float32, external ids or None) of this shard."""
        if self.error is not None:
            raise CorruptFileError(f"shard {self.shard['name']}: {self.error}")
        if self.kind == "bm25":
            idx, sc = self.index.search(queries, k, n_threads=self.n_threads)
        elif self.kind == "dense":
            idx, sc = self.index.search(queries, k, n_threads=self.n_threads)
        else:
            idx, sc = self.index.search(queries, k, n_threads=self.n_threads, mask=self._mask)
        idx = np.asarray(idx, np.int64)
        ext = None
        if with_ids and self.ids is not None:
            ext = [[self.ids[j] for j in row if j >= 0] for row in idx.tolist()]
        out = np.where(idx >= 0, idx + self.start, -1)
        return out, np.asarray(sc, np.float32), ext


class ShardGroup:
    """`replicas` Ray actors per shard, started lazily; :meth:`search` scatters and merges exactly.

    Actor ``s * replicas + r`` is replica r of shard s; batch b of a search goes to replica
    ``b % replicas`` of every shard, so replicas share the batches of one search (throughput),
    while shards split the documents (memory).
    """

    def __init__(self, kind: str, root: str, shards: list[dict[str, Any]], stats: Optional[dict[str, Any]] = None,
                 cpus_per_shard: Optional[float] = None, local: bool = False, replicas: int = 1) -> None:
        self.kind, self.root, self.shards, self.stats = kind, root, shards, stats
        self.cpus_per_shard = cpus_per_shard
        self.local = bool(local)
        self.replicas = check_positive_int(replicas, "replicas")
        self.actors: list[Any] = []
        self._lock = threading.Lock()  # one start / restart at a time when several threads search

    def batch_size(self, requested: int, n: int) -> int:
        """Queries per batch: at most `requested`, and small enough that each replica gets a batch
        of the `n` queries (a single batch would keep all but one replica idle)."""
        if self.local or self.replicas == 1 or n == 0:
            return requested
        return max(1, min(requested, -(-n // self.replicas)))

    def _actor_of(self, b: int, s: int) -> int:
        return s * self.replicas + b % self.replicas

    def _new_actor(self, ray: Any, a: int) -> Any:
        cpus = self.cpus_per_shard
        if cpus is None:
            # Reserve nothing (so serving never starves build tasks or other indexes' actors),
            # and give each actor's kernel an equal share of the cluster's cores as threads.
            reserve, threads = 0.0, max(1, int(_ray.cluster_cpus(ray) // (len(self.shards) * self.replicas)))
        else:
            reserve, threads = float(cpus), max(1, int(cpus))
        remote = ray.remote(ShardServer).options(num_cpus=reserve, max_restarts=MAX_RESTARTS,
                                                 max_task_retries=MAX_RESTARTS, max_concurrency=1)
        return remote.remote(self.kind, self.root, self.shards[a // self.replicas], threads, self.stats)

    def _check_ready(self, ray: Any, which: Sequence[int]) -> None:
        errors = ray.get([self.actors[a].ready.remote() for a in which])
        for a, err in zip(which, errors):
            if err is not None:
                self.close()
                i = a // self.replicas
                raise CorruptFileError(f"shard {i} ({self.shards[i]['name']} in {self.root}): {err}")

    def start(self) -> None:
        with self._lock:
            self._start()

    def _start(self) -> None:
        if self.actors:
            return
        if self.local:
            servers = [ShardServer(self.kind, self.root, s, os.cpu_count() or 1, self.stats) for s in self.shards]
            for i, srv in enumerate(servers):
                if srv.error is not None:
                    raise CorruptFileError(f"shard {i} ({self.shards[i]['name']} in {self.root}): {srv.error}")
            self.actors = servers
            return
        ray = _ray.require_ray()
        _ray.init()
        self.actors = [self._new_actor(ray, a) for a in range(len(self.shards) * self.replicas)]
        self._check_ready(ray, range(len(self.actors)))

    def close(self) -> None:
        """Stop the shard actors (they start again on the next search)."""
        if not self.actors:
            return
        if self.local:
            self.actors = []
            return
        ray = _ray.require_ray()
        for a in self.actors:
            try:
                ray.kill(a, no_restart=True)
            except Exception:  # already gone
                pass
        self.actors = []

    def search(self, payloads: Sequence[Any], k: int, with_ids: bool = False) -> list[list[tuple]]:
        """``results[b][s]`` is shard s's answer to batch b (from replica ``b % replicas``); an actor
        that died (and Ray could not restart) is replaced by a fresh one that gets its batches
        again, up to MAX_RESTARTS times per actor. With ``local=True`` the shards are served in
        this process, one after the other."""
        self.start()
        if self.local:
            return [[srv.search(p, k, with_ids) for srv in self.actors] for p in payloads]
        ray = _ray.require_ray()
        refs = [ray.put(p) for p in payloads]
        pending = {(b, s): self.actors[self._actor_of(b, s)].search.remote(refs[b], k, with_ids)
                   for b in range(len(payloads)) for s in range(len(self.shards))}
        out: list[list[Any]] = [[None] * len(self.shards) for _ in payloads]
        attempts = [0] * len(self.actors)
        while pending:
            (b, s), ref = next(iter(pending.items()))
            try:
                out[b][s] = ray.get(ref)
                del pending[(b, s)]
            except (ray.exceptions.RayActorError, ray.exceptions.ObjectLostError):
                a = self._actor_of(b, s)
                attempts[a] += 1
                if attempts[a] > MAX_RESTARTS:
                    raise
                with self._lock:
                    self.actors[a] = self._new_actor(ray, a)
                self._check_ready(ray, [a])
                for key in [key for key in pending if self._actor_of(*key) == a]:
                    pending[key] = self.actors[a].search.remote(refs[key[0]], k, with_ids)
            except ray.exceptions.RayTaskError as e:
                cause = e.as_instanceof_cause()
                raise cause from None
        return out

    @staticmethod
    def merge(results: list[list[tuple]], k: int, total: int) -> tuple[np.ndarray, np.ndarray, Optional[list]]:
        """Concatenate the batches after merging each batch's shards exactly."""
        kk = min(k, total)
        all_idx, all_sc, all_ids = [], [], []
        for per_shard in results:
            idx, sc = _ray.merge_topk([(r[0], r[1]) for r in per_shard], kk)
            all_idx.append(idx)
            all_sc.append(sc)
            if per_shard and per_shard[0][2] is not None:
                all_ids.append(_merge_ids(per_shard, idx))
        ids = [row for part in all_ids for row in part] if all_ids else None
        return np.concatenate(all_idx), np.concatenate(all_sc), ids


def _merge_ids(per_shard: list[tuple], merged: np.ndarray) -> list[list]:
    """External ids of the merged global indices, from the shards' (index, id) answers."""
    rows = []
    for q in range(merged.shape[0]):
        lookup: dict[int, Any] = {}
        for idx, _, ext in per_shard:
            valid = idx[q][idx[q] >= 0]
            lookup.update(zip(valid.tolist(), ext[q]))
        rows.append([lookup[j] for j in merged[q].tolist() if j >= 0])
    return rows


# --- sharded dense and sparse ------------------------------------------------------------------

_DENSE_FORMAT, _SPARSE_FORMAT, _VERSION = "rank-kernels.sharded-dense", "rank-kernels.sharded-sparse", 1


_S = TypeVar("_S", bound="ShardedBase")


class ShardedBase:
    """What every sharded index has: its directory, manifest and shard actors (``group``), its
    sizes, and closing (also as a context manager). Subclasses set the three attributes."""

    path: str
    manifest: dict[str, Any]
    group: ShardGroup

    @property
    def n_docs(self) -> int:
        """Documents in all shards."""
        return int(self.manifest["n_docs"])

    @property
    def n_shards(self) -> int:
        return len(self.manifest["shards"])

    def __len__(self) -> int:
        return self.n_docs

    def close(self) -> None:
        """Stop the shard actors (a later search starts them again)."""
        self.group.close()

    def __enter__(self: _S) -> _S:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class _Sharded(ShardedBase):
    """Shared parts of the sharded vector indexes: manifest, actors, batching, merge."""

    _kind = ""
    _format = ""

    def __init__(self, path: str, manifest: dict[str, Any], cpus_per_shard: Optional[float] = None,
                 local: bool = False, replicas: int = 1) -> None:
        self.path, self.manifest = path, manifest
        self.group = ShardGroup(self._kind, path, manifest["shards"], self._stats(), cpus_per_shard, local, replicas)

    def _stats(self) -> Optional[dict[str, Any]]:
        return None

    def _run(self, payloads: list[Any], k: int) -> tuple[np.ndarray, np.ndarray]:
        k = check_positive_int(k, "k")
        results = self.group.search(payloads, k)
        idx, sc, _ = ShardGroup.merge(results, k, self.n_docs)
        return idx, sc

    @classmethod
    def load(cls, path: Union[str, os.PathLike], *, cpus_per_shard: Optional[float] = None,
             local: bool = False, replicas: int = 1) -> Any:
        """Open a sharded index saved by ``build``: `replicas` Ray actors per shard (started on the
        first search; replicas share the query batches), or with ``local=True`` every shard
        served in this process (no cluster). A missing shard raises CorruptFileError naming it."""
        path = os.fspath(path)
        m = _ray.read_manifest(path, cls._format, _VERSION)
        for i, s in enumerate(m["shards"]):
            if not os.path.exists(os.path.join(path, s["name"])):
                raise CorruptFileError(f"shard {i} ({s['name']} in {path}): shard file missing")
        return cls(path, m, cpus_per_shard, local, replicas)


def _build_dense_shard(vectors: np.ndarray, dim: int, metric: str, dtype: str, out: str) -> int:
    from rank.rerank import DenseIndex

    index = DenseIndex(dim, metric=metric, dtype=dtype)
    index.add(vectors)
    index.save(out)
    return len(index)


class ShardedDenseIndex(_Sharded):
    """A :class:`rank.rerank.DenseIndex` split into contiguous shards served by Ray actors.

    :meth:`search` returns exactly what one DenseIndex over all the vectors returns (each score
    is one float32 FMA chain per row, the same in any shard; ties by the smaller global row).

    >>> import numpy as np, tempfile, os
    >>> idx = ShardedDenseIndex.build(np.eye(4, dtype=np.float32), os.path.join(tempfile.mkdtemp(), "d"), 2)  # doctest: +SKIP
    >>> idx.search([[0, 0, 1, 0]], k=1)  # doctest: +SKIP
    (array([[2]]), array([[1.]], dtype=float32))
    """

    _kind = "dense"
    _format = _DENSE_FORMAT

    @classmethod
    def build(cls, vectors: Any, path: Union[str, os.PathLike], n_shards: int, *, metric: str = "dot",
              dtype: str = "float32", address: Optional[str] = None,
              cpus_per_shard: Optional[float] = None) -> "ShardedDenseIndex":
        """Split `vectors` (n, dim) into `n_shards` contiguous shards built in parallel Ray tasks,
        saved under directory `path` (DenseIndex files + manifest.json), atomically.

        Complexity: O(n * dim) over the tasks. Raises InvalidValueError (n_shards < 1),
        ShapeError (no vectors, more shards than vectors), and DenseIndex's errors.
        """
        from rank.rerank import DenseIndex

        ray = _ray.init(address)
        n_shards = _ray.check_n_shards(n_shards)
        v = as_float_array(vectors, "vectors", 2)
        n_shards = _ray.check_n_shards(n_shards, v.shape[0])
        DenseIndex(v.shape[1], metric=metric, dtype=dtype)  # validates metric / dtype names
        b = _ray.bounds(v.shape[0], n_shards)
        task = ray.remote(_build_dense_shard)

        def build(tmp: str) -> dict[str, Any]:
            refs = [task.remote(v[b[i]:b[i + 1]], v.shape[1], metric, dtype, os.path.join(tmp, _ray.shard_name(i)))
                    for i in range(n_shards)]
            _ray.get(ray, refs)
            return {"format": _DENSE_FORMAT, "format_version": _VERSION, "n_docs": int(v.shape[0]),
                    "dim": int(v.shape[1]), "metric": metric, "dtype": str(np.dtype(dtype).name),
                    "shards": [{"name": _ray.shard_name(i), "start": b[i], "n_docs": b[i + 1] - b[i]}
                               for i in range(n_shards)]}

        _ray.atomic_build(path, build)
        return cls.load(path, cpus_per_shard=cpus_per_shard)

    def search(self, queries: Any, k: int = 10, *, batch_size: int = 1000) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k of every query: (indices int64 (nq, min(k, n)), scores float32), score
        descending, ties by the smaller global row. `queries` (nq, dim) or (dim,).

        Cost: each shard scans its rows once per batch of `batch_size` queries; the merge is
        O(nq * n_shards * k log(n_shards * k)) on the caller.
        """
        q = as_float_array(queries, "queries", (1, 2))
        single = q.ndim == 1
        q2 = q.reshape(1, -1) if single else q
        if q2.shape[1] != self.manifest["dim"]:
            raise ShapeError(f"queries: expected dimension {self.manifest['dim']}, got shape {q.shape}")
        bs = check_positive_int(batch_size, "batch_size")
        parts = [np.ascontiguousarray(q2[s:e]) for s, e in _ray.batches(q2.shape[0], self.group.batch_size(bs, q2.shape[0]))]
        idx, sc = self._run(parts, k)
        return (idx[0], sc[0]) if single else (idx, sc)


def _build_sparse_shard(rows: Any, top: dict, out: str) -> int:
    from rank.retrieve import SparseIndex

    index = SparseIndex()
    if hasattr(rows, "tocsr"):
        index.add(rows)
    else:
        index.add(list(rows))
    index.add([top])  # the phantom row: every term's largest weight over the whole collection
    index.save(out)
    return index.n_docs - 1


def _term_max_of(rows: Any) -> dict:
    """{term id: largest weight} over some rows (dicts or CSR); repeated CSR entries summed first."""
    top: dict = {}
    if hasattr(rows, "tocsr"):
        m = rows.tocsr(copy=True)
        m.sum_duplicates()
        items: Any = zip(np.asarray(m.indices).tolist(), np.asarray(m.data, np.float32).tolist())
    else:
        items = ((int(t), float(np.float32(w))) for row in rows for t, w in row.items())
    try:
        for t, w in items:
            if t not in top or w > top[t]:
                top[t] = w
    except (TypeError, ValueError, AttributeError):
        from rank.errors import DTypeError

        raise DTypeError("vectors: expected {term_id: weight} dicts with integer ids and numeric weights, "
                         "or a scipy CSR matrix") from None
    return top


class ShardedSparseIndex(_Sharded):
    """A :class:`rank.retrieve.SparseIndex` split into contiguous shards served by Ray actors,
    with exactly the results of one SparseIndex over all the vectors.

    A query's float32 score sums its terms in the order of each term's largest weight in the
    index; so that every shard sums in the collection's order, each shard's SparseIndex holds
    one extra last row (masked out of every search) carrying every term's largest weight over
    the whole collection: 8 bytes per term and shard.
    """

    _kind = "sparse"
    _format = _SPARSE_FORMAT

    @classmethod
    def build(cls, vectors: Any, path: Union[str, os.PathLike], n_shards: int, *,
              address: Optional[str] = None, cpus_per_shard: Optional[float] = None) -> "ShardedSparseIndex":
        """Split `vectors` (``{term_id: weight}`` dicts or a scipy CSR matrix, one row per
        document) into `n_shards` contiguous shards built in parallel Ray tasks, saved under
        `path` (SparseIndex directories + manifest.json), atomically. O(non-zeros)."""
        ray = _ray.init(address)
        n_shards = _ray.check_n_shards(n_shards)
        csr = hasattr(vectors, "tocsr")
        rows: Any = vectors.tocsr() if csr else ([vectors] if isinstance(vectors, dict) else list(vectors))
        n = int(rows.shape[0]) if csr else len(rows)
        n_shards = _ray.check_n_shards(n_shards, n)
        b = _ray.bounds(n, n_shards)
        parts = [ray.put(rows[b[i]:b[i + 1]]) for i in range(n_shards)]
        maxima = _ray.get(ray, [ray.remote(_term_max_of).remote(p) for p in parts])
        top: dict = {}
        for m in maxima:
            for t, w in m.items():
                if t not in top or w > top[t]:
                    top[t] = w
        task = ray.remote(_build_sparse_shard)

        def build(tmp: str) -> dict[str, Any]:
            _ray.get(ray, [task.remote(parts[i], top, os.path.join(tmp, _ray.shard_name(i))) for i in range(n_shards)])
            return {"format": _SPARSE_FORMAT, "format_version": _VERSION, "n_docs": n, "phantom_row": True,
                    "shards": [{"name": _ray.shard_name(i), "start": b[i], "n_docs": b[i + 1] - b[i]}
                               for i in range(n_shards)]}

        _ray.atomic_build(path, build)
        return cls.load(path, cpus_per_shard=cpus_per_shard)

    def search(self, queries: Any, k: int = 10, *, batch_size: int = 1000) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k by dot product: (indices int64 (nq, min(k, n)), scores float32); queries
        as for SparseIndex.search (dict, list of dicts, CSR rows)."""
        if isinstance(queries, dict):
            queries = [queries]
        bs = check_positive_int(batch_size, "batch_size")
        if hasattr(queries, "tocsr"):
            q = queries.tocsr()
            n = q.shape[0]
        else:
            q = list(queries)
            n = len(q)
        if n == 0:
            raise InvalidValueError("queries: expected at least one query")
        return self._run([q[s:e] for s, e in _ray.batches(n, self.group.batch_size(bs, n))], k)
