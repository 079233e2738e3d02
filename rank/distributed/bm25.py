"""Sharded BM25 on Ray, with the scores of one :class:`rank.BM25` over the whole corpus.

Building (:meth:`ShardedBM25.build`) runs in three steps:

1. one Ray task per contiguous corpus split tokenizes it with an empty copy of the tokenizer
   and returns its vocabulary (in order of first appearance), document frequencies and length;
2. the caller merges the vocabularies in shard order, which gives every term the id one
   BM25 over the whole corpus gives it (ids follow first appearance), and sums the
   statistics: N, the total length (so avgdl = total / N exactly as one index computes it),
   and the document frequency of every term;
3. one task per shard maps its token ids to the global ids, indexes them with
   ``BM25.index`` and applies the collection statistics with
   :meth:`rank.retrieve.BM25.use_collection_stats`, so its impacts equal the global index's
   bit for bit; each shard is saved as an ordinary BM25 directory (token-id documents: the
   vocabulary is kept once, at the root). The largest impact of every term over all shards is
   saved at the root as well: queries sum their terms in the order of those maxima, so the
   float32 sums equal one index's too.

The directory (``manifest.json``, ``vocabulary.json``, ``df.npy``, ``max_impact.npy`` and
``shard-NNNNN/``) is built beside the target and renamed into place only when complete.

Serving: one actor per shard (``BM25.load(mmap=True)`` + the root statistics); queries are
tokenized once by the caller, scattered in batches, and the shards' top-k are merged by score,
then smaller global index, as one index breaks ties. Shard i holds the documents
``start_i .. start_i + n_i - 1`` of the global order.

Adding documents (:meth:`ShardedBM25.add`) changes N, avgdl and some document frequencies,
hence every impact of every shard: the new documents go to the last shard (or a new one), and
every shard is rewritten with the new statistics in parallel tasks (term frequencies recovered
exactly from the impacts, as ``BM25.add`` does), into a new directory swapped in at the end.
"""
from __future__ import annotations

import json
import os
from typing import Any, Iterable, Optional, Sequence, Union

import numpy as np

from rank._validate import check_positive_int
from rank.distributed import _ray
from rank.distributed.serving import ShardedBase, ShardGroup
from rank.errors import CorruptFileError, DTypeError, InvalidValueError, ShapeError

__all__ = ["ShardedBM25"]

_FORMAT, _VERSION = "rank-kernels.sharded-bm25", 1
_SETTINGS = ("method", "k1", "b", "delta")


# --- tasks ------------------------------------------------------------------------------------

def _rows_of_dataset(ds: Any, text_column: str, id_column: Optional[str]) -> tuple[list, Optional[list]]:
    texts: list = []
    ids: Optional[list] = [] if id_column else None
    for batch in ds.iter_batches(batch_format="numpy"):
        if text_column not in batch:
            raise InvalidValueError(f"corpus: the dataset has no column {text_column!r} (columns: {sorted(batch)})")
        col = batch[text_column].tolist()
        if "title" in batch:
            col = [f"{t} {x}" if t and x else (t or x or "") for t, x in zip(batch["title"].tolist(), col)]
        texts.extend(col)
        if ids is not None:
            if id_column not in batch:
                raise InvalidValueError(f"corpus: the dataset has no column {id_column!r} (columns: {sorted(batch)})")
            ids.extend(str(i) if not isinstance(i, (int, np.integer)) else int(i) for i in batch[id_column].tolist())
    return texts, ids


def _tokenize_part(part: Any, kind: str, tok_config: dict, text_column: str, id_column: Optional[str]) -> tuple:
    """Step 1 on one split: (summary for the caller, packed local ids for step 3)."""
    from rank.retrieve import Tokenizer

    ext = None
    if kind == "dataset":
        docs, ext = _rows_of_dataset(part, text_column, id_column)
        kind = "text"
    else:
        docs, ext = part
    tok = Tokenizer(**tok_config)
    if kind == "text":
        if not all(isinstance(d, str) for d in docs):
            raise DTypeError("corpus: every document must be a str")
        ids, offsets = tok.tokenize_packed(docs, show_progress=False)
    elif kind == "tokens":
        ids, offsets = tok.lookup_packed(docs)
    else:
        ids, offsets = docs
    n_terms = len(tok) if kind in ("text", "tokens") else (int(ids.max()) + 1 if ids.size else 0)
    df = _count_df(ids, offsets, n_terms)
    summary = {"n_docs": int(offsets.shape[0] - 1), "total": int(offsets[-1]), "df": df,
               "terms": tok.terms if kind in ("text", "tokens") else None}
    return summary, (ids, offsets, ext)


def _count_df(ids: np.ndarray, offsets: np.ndarray, n_terms: int) -> np.ndarray:
    from rank_kernels import sparse as _kernel

    return np.asarray(_kernel.count_postings(np.ascontiguousarray(ids, np.int32),
                                             np.ascontiguousarray(offsets, np.int64), n_terms), np.int64)


def _build_shard(packed: tuple, mapping: Optional[np.ndarray], settings: dict, stats: dict, df: np.ndarray,
                 out: str) -> np.ndarray:
    """Step 3 on one shard: the BM25 directory, with the collection statistics; returns the
    shard's largest impact per term (float32 (n_terms,))."""
    from rank.retrieve import BM25, Tokenizer

    ids, offsets, ext = packed
    gids = (mapping[ids] if mapping is not None else ids).astype(np.int32)
    bm = BM25(settings["method"], settings["k1"], settings["b"], settings["delta"],
              tokenizer=Tokenizer(**settings["tokenizer"]))
    bm.index((gids, np.asarray(offsets, np.int64)), ids=ext, show_progress=False)
    bm.use_collection_stats(stats["n_docs"], stats["avgdl"], df)
    bm.save(out)
    return np.load(os.path.join(out, "max_impact.npy"), allow_pickle=False)


def _rebase_shard(src: str, out: str, settings: dict, old: dict, old_df_path: str, new: dict, df: np.ndarray,
                  new_docs: Optional[tuple] = None) -> np.ndarray:
    """`add`: rewrite one shard with the new collection statistics (appending `new_docs`, packed
    global ids + external ids, to it when given); returns its largest impact per term."""
    from rank.retrieve import BM25, Tokenizer

    if src:
        bm = BM25.load(src, mmap=False)
        old_df = np.load(old_df_path, allow_pickle=False)
        bm.use_collection_stats(old["n_docs"], old["avgdl"], old_df, recompute=False)  # impacts <-> stats agree
        if new_docs is not None:
            bm.add((new_docs[0], new_docs[1]), ids=new_docs[2], show_progress=False)
    else:  # a new shard
        bm = BM25(settings["method"], settings["k1"], settings["b"], settings["delta"],
                  tokenizer=Tokenizer(**settings["tokenizer"]))
        assert new_docs is not None
        bm.index((new_docs[0], new_docs[1]), ids=new_docs[2], show_progress=False)
    bm.use_collection_stats(new["n_docs"], new["avgdl"], df)
    bm.save(out)
    return np.load(os.path.join(out, "max_impact.npy"), allow_pickle=False)


# --- the index --------------------------------------------------------------------------------

def _corpus_kind(docs: Sequence[Any]) -> str:
    if all(isinstance(d, str) for d in docs):
        return "text"
    if not all(isinstance(d, (list, tuple, np.ndarray)) for d in docs):
        lists = isinstance(docs[0], (list, tuple, np.ndarray))
        bad = next(d for d in docs if isinstance(d, (list, tuple, np.ndarray)) != lists or not isinstance(d, (str, list, tuple, np.ndarray)))
        raise DTypeError(f"corpus: expected every document to be a str, or every one a list of tokens or ids; "
                         f"got a {type(bad).__name__} among them")
    first = next((d for d in docs if len(d)), None)
    if first is not None and isinstance(first[0], str):
        return "tokens"
    return "ids"


class ShardedBM25(ShardedBase):
    """A BM25 index split into shards, built by Ray tasks and served by one Ray actor per shard,
    with exactly the scores and top-k of one :class:`rank.BM25` over the whole corpus.

    Create with :meth:`build` (or open with :meth:`load`); query with :meth:`search`; grow with
    :meth:`add`. Actors start on the first search and stop with :meth:`close` (or ``with``).

    Memory per shard actor: the shard's postings (memory-mapped, 8 bytes per posting), 1-4
    bytes per document, and 24 bytes per term of the whole vocabulary (idf, shift, pointers,
    maxima); the caller holds the vocabulary (to tokenize queries) and the manifest.

    Thread safety: :meth:`search` may run from several threads at once (each shard actor
    answers one call at a time); :meth:`add` and :meth:`close` must not run during searches.

    >>> import tempfile, os
    >>> docs = ["a cat sat on the mat", "a dog sat", "cats and dogs", "the mat"]
    >>> index = ShardedBM25.build(docs, os.path.join(tempfile.mkdtemp(), "idx"), n_shards=2)  # doctest: +SKIP
    >>> index.search(["cat on a mat"], k=2)  # doctest: +SKIP
    (array([[0, 3]]), array([[1.0406..., 0.6246...]], dtype=float32))
    """

    def __init__(self, path: str, manifest: dict[str, Any], cpus_per_shard: Optional[float] = None,
                 local: bool = False, replicas: int = 1) -> None:
        from rank.retrieve import Tokenizer

        self.path, self.manifest = path, manifest
        terms: list = []
        if manifest["kind"] in ("text", "tokens"):
            try:
                with open(os.path.join(path, "vocabulary.json"), encoding="utf-8") as f:
                    terms = json.load(f)
            except (OSError, ValueError) as e:
                raise CorruptFileError(f"{path}/vocabulary.json: missing or unreadable ({e})") from None
            if not isinstance(terms, list) or len(terms) > manifest["n_terms"]:
                raise CorruptFileError(f"{path}/vocabulary.json: does not match the manifest")
        self.tokenizer = Tokenizer.from_config(manifest["tokenizer"], terms)
        stats = {"n_docs": manifest["n_docs"], "avgdl": manifest["avgdl"]}
        self.group = ShardGroup("bm25", path, manifest["shards"], stats, cpus_per_shard, local, replicas)

    # --- properties (n_docs, n_shards, len, close and ``with`` come from ShardedBase) ------

    @property
    def n_terms(self) -> int:
        return int(self.manifest["n_terms"])

    @property
    def method(self) -> str:
        return str(self.manifest["method"])

    def __repr__(self) -> str:
        return f"ShardedBM25({self.path!r}, n_docs={self.n_docs}, n_shards={self.n_shards}, method={self.method!r})"

    # --- building ---------------------------------------------------------------------------

    @classmethod
    def build(cls, corpus: Any, path: Union[str, os.PathLike], n_shards: int, *, ids: Optional[Sequence[Any]] = None,
              fmt: Optional[str] = None, method: str = "lucene", k1: float = 1.2, b: float = 0.75,
              delta: float = 0.5, tokenizer: Any = None, text_column: str = "text", id_column: Optional[str] = "_id",
              address: Optional[str] = None, cpus_per_shard: Optional[float] = None) -> "ShardedBM25":
        """Build `n_shards` shards in parallel Ray tasks and save them under directory `path`.

        Parameters
        ----------
        corpus : path, sequence of documents, packed (ids, offsets), or ray.data.Dataset
            A corpus file (BEIR jsonl, txt, tsv, csv: read with :func:`rank.read_corpus`, its
            ids kept), documents as for :meth:`rank.BM25.index` (str, token lists, token-id
            lists), or a Ray Dataset with a `text_column` (and optional `id_column`, `title`)
            whose rows are read by the tasks themselves (the way to index a corpus that does
            not fit the caller's memory). It is split into `n_shards` contiguous parts.
        path : directory
            Created, or replaced once the new index is complete (an existing non-index
            directory is refused).
        n_shards : int >= 1
        ids : sequence of str or int, optional
            External ids of in-memory documents (a file brings its own).
        method, k1, b, delta, tokenizer : as for :class:`rank.BM25`
            The tokenizer must be saveable (a Snowball stemmer name, not a callable).
        address : str, optional
            A Ray cluster to join (default: the running one, else a local cluster). On a cluster
            of several machines `path` must be on a file system every node sees.
        cpus_per_shard : float, optional
            CPUs each serving actor reserves in Ray's scheduler, and its kernel's threads
            (default: no reservation, so serving never blocks build tasks, and an equal share
            of the cluster's CPUs as threads).

        Complexity: O(total tokens / n_shards) per task, plus the vocabulary merge on the
        caller (O(sum of the shards' vocabulary sizes)). Raises InvalidValueError (n_shards < 1,
        an unusable path), ShapeError (an empty corpus or split), DTypeError, and the errors of
        :class:`rank.BM25`.
        """
        from rank.retrieve import BM25

        n_shards = _ray.check_n_shards(n_shards)
        proto = BM25(method, k1, b, delta, tokenizer=tokenizer)  # validates the parameters
        settings = {"method": proto.method, "k1": proto.k1, "b": proto.b, "delta": proto.delta,
                    "tokenizer": proto.tokenizer.config()}
        ray = _ray.init(address)
        parts, kind = cls._split(ray, corpus, n_shards, ids, fmt)
        tok_task = ray.remote(_tokenize_part).options(num_returns=2)
        step1 = [tok_task.remote(p, kind, settings["tokenizer"], text_column, id_column) for p in parts]
        summaries = _ray.get(ray, [s for s, _ in step1])
        packed_refs = [r for _, r in step1]
        for i, s in enumerate(summaries):
            if s["n_docs"] == 0:
                raise ShapeError(f"corpus: shard {i} got an empty corpus split (no documents); use fewer shards")
        kind = "text" if kind == "dataset" else kind
        n_docs = sum(s["n_docs"] for s in summaries)
        total = sum(s["total"] for s in summaries)
        mappings, terms, df = cls._merge_vocabularies(summaries, kind)
        avgdl = total / n_docs
        stats = {"n_docs": n_docs, "avgdl": avgdl}
        has_ids = cls._check_ids(ray, packed_refs)
        df_ref = ray.put(df)
        task = ray.remote(_build_shard)
        sizes = [s["n_docs"] for s in summaries]
        starts = np.concatenate([[0], np.cumsum(sizes)]).tolist()

        def build(tmp: str) -> dict[str, Any]:
            refs = [task.remote(packed_refs[i], mappings[i], settings, stats, df_ref, os.path.join(tmp, _ray.shard_name(i)))
                    for i in range(n_shards)]
            cls._write_root(tmp, terms, df, _ray.get(ray, refs), kind)
            return cls._manifest(settings, kind, n_docs, total, avgdl, df.shape[0], has_ids,
                                 [{"name": _ray.shard_name(i), "start": int(starts[i]), "n_docs": int(sizes[i])}
                                  for i in range(n_shards)])

        _ray.atomic_build(path, build)
        return cls.load(path, cpus_per_shard=cpus_per_shard)

    @staticmethod
    def _split(ray: Any, corpus: Any, n_shards: int, ids: Optional[Sequence[Any]], fmt: Optional[str]) -> tuple[list, str]:
        """Object refs (or Datasets) of the contiguous splits, and the corpus kind."""
        if hasattr(corpus, "split_at_indices") and hasattr(corpus, "iter_batches"):  # a Ray Dataset
            n = corpus.count()
            _ray.check_n_shards(n_shards, n)
            b = _ray.bounds(n, n_shards)
            return corpus.split_at_indices(b[1:-1]), "dataset"
        if isinstance(corpus, (str, os.PathLike)):
            from rank._io_corpus import read_corpus

            if ids is not None:
                raise InvalidValueError("ids: a corpus file brings its own ids; do not pass ids with a path")
            ids, docs = read_corpus(corpus, fmt)
            kind = "text"
        elif isinstance(corpus, tuple) and len(corpus) == 2 and all(isinstance(a, np.ndarray) for a in corpus):
            from rank.retrieve._index import check_packed

            flat, offsets = check_packed(corpus, "corpus")
            n = offsets.shape[0] - 1
            _ray.check_n_shards(n_shards, n)
            b = _ray.bounds(n, n_shards)
            ext = list(ids) if ids is not None else None
            if ext is not None and len(ext) != n:
                raise ShapeError(f"ids: expected {n} ids (one per document), got {len(ext)}")
            return [ray.put(((flat[offsets[b[i]]:offsets[b[i + 1]]], offsets[b[i]:b[i + 1] + 1] - offsets[b[i]]),
                             None if ext is None else ext[b[i]:b[i + 1]])) for i in range(n_shards)], "ids"
        else:
            if not isinstance(corpus, Iterable):
                raise DTypeError(f"corpus: expected a path, documents, a packed (ids, offsets) pair or a Ray Dataset, "
                                 f"got {type(corpus).__name__}")
            docs = list(corpus)
            kind = _corpus_kind(docs) if docs else "text"
        n = len(docs)
        _ray.check_n_shards(n_shards, n)
        if ids is not None:
            ids = list(ids)
            if len(ids) != n:
                raise ShapeError(f"ids: expected {n} ids (one per document), got {len(ids)}")
        b = _ray.bounds(n, n_shards)
        if kind == "ids":
            from rank.retrieve._index import flatten_int_lists

            parts = []
            for i in range(n_shards):
                flat, offsets = flatten_int_lists(docs[b[i]:b[i + 1]], "corpus")
                parts.append(ray.put(((flat, offsets), None if ids is None else ids[b[i]:b[i + 1]])))
            return parts, kind
        return [ray.put((docs[b[i]:b[i + 1]], None if ids is None else ids[b[i]:b[i + 1]])) for i in range(n_shards)], kind

    @staticmethod
    def _merge_vocabularies(summaries: list[dict], kind: str) -> tuple[list, list, np.ndarray]:
        """Per shard, local term id -> global id (None for token-id corpora); the global
        vocabulary in first-appearance order; the global document frequencies."""
        if kind == "ids":
            n_terms = max(s["df"].shape[0] for s in summaries)
            df = np.zeros(n_terms, np.int64)
            for s in summaries:
                df[:s["df"].shape[0]] += s["df"]
            return [None] * len(summaries), [], df
        vocab: dict[str, int] = {}
        mappings = []
        for s in summaries:
            mappings.append(np.fromiter((vocab.setdefault(t, len(vocab)) for t in s["terms"]), np.int64, len(s["terms"])))
        df = np.zeros(len(vocab), np.int64)
        for m, s in zip(mappings, summaries):
            df[m] += s["df"][:m.shape[0]]  # a shard's local ids are distinct: no repeated index
        return mappings, list(vocab), df

    @staticmethod
    def _check_ids(ray: Any, packed_refs: list) -> bool:
        """Whether the documents carry external ids; every shard or none, and no id twice."""
        exts = [p[2] for p in _ray.get(ray, packed_refs)]
        has = [e is not None for e in exts]
        if any(has) and not all(has):
            raise ShapeError("ids: some splits carry document ids and others do not")
        if all(has):
            seen: dict = {}
            for i, e in enumerate(exts):
                for j, x in enumerate(e):
                    if seen.setdefault(x, (i, j)) != (i, j):
                        raise InvalidValueError(f"ids: duplicate document id {x!r} (shards {seen[x][0]} and {i})")
        return all(has)

    @staticmethod
    def _write_root(tmp: str, terms: list, df: np.ndarray, maxima: list, kind: str) -> None:
        top = np.zeros(df.shape[0], np.float32)
        for m in maxima:
            np.maximum(top[:m.shape[0]], m, out=top[:m.shape[0]])
        np.save(os.path.join(tmp, "df.npy"), df, allow_pickle=False)
        np.save(os.path.join(tmp, "max_impact.npy"), top, allow_pickle=False)
        if kind in ("text", "tokens"):
            _ray.write_json(os.path.join(tmp, "vocabulary.json"), terms)

    @staticmethod
    def _manifest(settings: dict, kind: str, n_docs: int, total: int, avgdl: float, n_terms: int, has_ids: bool,
                  shards: list) -> dict[str, Any]:
        return {"format": _FORMAT, "format_version": _VERSION, **settings, "kind": kind, "n_docs": n_docs,
                "total_length": total, "avgdl": avgdl, "n_terms": n_terms, "has_ids": has_ids, "shards": shards}

    # --- loading ----------------------------------------------------------------------------

    @classmethod
    def load(cls, path: Union[str, os.PathLike], *, cpus_per_shard: Optional[float] = None,
             local: bool = False, replicas: int = 1) -> "ShardedBM25":
        """Open a sharded index saved by :meth:`build`: `replicas` Ray actors per shard (started
        on the first search), or with ``local=True`` every shard served in this process, one
        after the other (same answers, no cluster needed: for small indexes and debugging).

        Replicas serve the same shard files and share the batches of a search (batch b goes to
        replica ``b % replicas`` of every shard; batches shrink so that each replica gets one),
        so query throughput grows with them; shards split the documents (memory). With
        ``cpus_per_shard`` every actor, replicas included, reserves that many CPUs.

        Checks the manifest and every shard's meta.json: a missing shard raises
        CorruptFileError naming it; a shard built with other BM25 parameters or tokenizer
        settings raises InvalidValueError naming the setting and the shard. O(shards + vocabulary).
        """
        path = os.fspath(path)
        m = _ray.read_manifest(path, _FORMAT, _VERSION)
        try:
            total, n_docs = int(m["total_length"]), int(m["n_docs"])
            if m["avgdl"] != total / n_docs or m["kind"] not in ("text", "tokens", "ids"):
                raise ValueError("avgdl or kind")
            for key in (*_SETTINGS, "tokenizer", "n_terms"):
                m[key]
        except (KeyError, TypeError, ValueError, ZeroDivisionError) as e:
            raise CorruptFileError(f"{path}/{_ray.MANIFEST}: corrupt ({type(e).__name__}: {e})") from None
        for i, s in enumerate(m["shards"]):
            cls._check_shard(path, i, s, m)
        for name in ("df.npy", "max_impact.npy"):
            if not os.path.isfile(os.path.join(path, name)):
                raise CorruptFileError(f"{path}/{name}: missing (the collection statistics of the shards)")
        return cls(path, m, cpus_per_shard, local, replicas)

    @staticmethod
    def _check_shard(path: str, i: int, shard: dict, m: dict) -> None:
        where = f"shard {i} ({shard['name']} in {path})"
        try:
            with open(os.path.join(path, shard["name"], "meta.json"), encoding="utf-8") as f:
                meta = json.load(f)
        except FileNotFoundError:
            raise CorruptFileError(f"{where}: shard files missing") from None
        except (OSError, ValueError) as e:
            raise CorruptFileError(f"{where}: unreadable meta.json ({e})") from None
        if not isinstance(meta, dict):
            raise CorruptFileError(f"{where}: corrupt meta.json")
        for key in _SETTINGS:
            if meta.get(key) != m[key]:
                raise InvalidValueError(f"{where}: built with {key}={meta.get(key)!r}, the other shards with "
                                        f"{key}={m[key]!r}; shards with different BM25 parameters cannot be combined")
        tok = meta.get("tokenizer")
        if not isinstance(tok, dict):
            raise CorruptFileError(f"{where}: corrupt meta.json (no tokenizer settings)")
        for key in sorted(set(tok) | set(m["tokenizer"])):
            if tok.get(key) != m["tokenizer"].get(key):
                raise InvalidValueError(
                    f"{where}: built with tokenizer setting {key}={tok.get(key)!r}, the other shards with "
                    f"{key}={m['tokenizer'].get(key)!r}; shards with different tokenizer settings cannot be combined")
        if meta.get("n_docs") != shard["n_docs"]:
            raise CorruptFileError(f"{where}: holds {meta.get('n_docs')} documents, the manifest says {shard['n_docs']}")

    # --- querying ---------------------------------------------------------------------------

    def _encode(self, queries: Any) -> tuple[np.ndarray, np.ndarray]:
        """Packed global term ids (ids int32, offsets int64) of the queries."""
        from rank.retrieve._index import check_packed, flatten_int_lists

        if isinstance(queries, tuple) and len(queries) == 2 and all(isinstance(a, np.ndarray) for a in queries):
            return check_packed(queries, "queries")
        if isinstance(queries, str):
            queries = [queries]
        if not isinstance(queries, Iterable):
            raise DTypeError("queries: expected a list of queries (str, token lists or id lists)")
        queries = list(queries)
        kind = self.manifest["kind"]
        if not queries:
            return np.zeros(0, np.int32), np.zeros(1, np.int64)
        if all(isinstance(q, str) for q in queries):
            if kind == "ids":
                raise InvalidValueError("queries: this index was built from token ids (no vocabulary), so queries must be token ids too")
            return self.tokenizer.tokenize_packed(queries, update_vocabulary=False)
        if all(isinstance(q, (list, tuple, np.ndarray)) for q in queries):
            sample = next((q for q in queries if len(q)), None)
            if sample is not None and isinstance(sample[0], str):
                if kind == "ids":
                    raise InvalidValueError("queries: this index was built from token ids, so queries must be token ids too")
                return self.tokenizer.lookup_packed(queries, update_vocabulary=False)
            return flatten_int_lists(queries, "queries")
        raise DTypeError("queries: expected every query to be a str, or every query a list of tokens or ids")

    def search(self, queries: Any, k: int = 10, *, batch_size: int = 1000,
               return_ids: bool = False) -> tuple:
        """The k best documents of every query, exactly as :meth:`rank.BM25.retrieve` over the
        whole corpus returns them.

        Parameters
        ----------
        queries : list of str, of token lists, of id lists, or packed (ids, offsets); a str is one query
        k : int > 0, default 10 (clipped to the number of documents)
        batch_size : int > 0, default 1000
            Queries per call to a shard actor (each batch goes to every shard; with replicas,
            batches shrink so that every replica gets one).
        return_ids : bool, default False
            Also return the external ids of the results (list of lists), looked up by the
            shard actors (the index must have ids).

        Returns
        -------
        indices : int64 (n_queries, min(k, n_docs)) global document indices,
        scores : float32 (same shape), score descending, ties by the smaller index;
        plus ``ids`` (list of lists) with ``return_ids=True``.

        Complexity: each shard answers every batch (its postings of the query terms); the
        caller merges n_shards lists of k per query, O(n_shards k log(n_shards k)). Network:
        per query its term ids (4 bytes each) to every shard, 12 bytes per result back.
        """
        k = check_positive_int(k, "k")
        bs = check_positive_int(batch_size, "batch_size")
        if return_ids and not self.manifest["has_ids"]:
            raise InvalidValueError("return_ids: this index was built without document ids")
        flat, offsets = self._encode(queries)
        nq = offsets.shape[0] - 1
        payloads = [(flat[offsets[s]:offsets[e]], offsets[s:e + 1] - offsets[s])
                    for s, e in _ray.batches(nq, self.group.batch_size(bs, nq))]
        results = self.group.search(payloads, k, with_ids=return_ids)
        idx, sc, ext = ShardGroup.merge(results, k, self.n_docs)
        return (idx, sc, ext) if return_ids else (idx, sc)

    # --- growing ----------------------------------------------------------------------------

    def add(self, new_docs: Any, ids: Optional[Sequence[Any]] = None, *, new_shard: bool = False) -> "ShardedBM25":
        """Append documents (they get the next global indices n_docs, n_docs + 1, ...); afterwards
        every score equals that of one index over all documents. Returns self.

        The documents go to the last shard, or to a new last shard with ``new_shard=True``.
        Since N, avgdl and document frequencies change, every shard is rewritten (in parallel
        Ray tasks) into a new directory, swapped in only when complete; running actors are
        stopped and start again on the next search. Terms never seen before extend the
        vocabulary in order of first appearance, as :meth:`rank.BM25.add` does.

        Complexity: O(postings of the whole index + new tokens), over the tasks.
        """
        ray = _ray.init()
        if isinstance(new_docs, (str, bytes)) or not isinstance(new_docs, Iterable):
            raise DTypeError("new_docs: expected a list of documents")
        docs = list(new_docs)
        if not docs:
            return self
        kind = self.manifest["kind"]
        got = _corpus_kind(docs)
        if got != kind:
            raise DTypeError(f"new_docs: the index holds {kind} documents, got {got} documents")
        if self.manifest["has_ids"] != (ids is not None):
            raise ShapeError("ids: the index has external ids, so the new documents need ids too"
                             if self.manifest["has_ids"] else "ids: the index was built without external ids")
        ext = None if ids is None else list(ids)
        if ext is not None and len(ext) != len(docs):
            raise ShapeError(f"ids: expected {len(docs)} ids (one per document), got {len(ext)}")
        if ext is not None:
            known = set()
            for s in self.manifest["shards"]:
                with open(os.path.join(self.path, s["name"], "ids.json"), encoding="utf-8") as f:
                    known.update(json.load(f))
            dup = next((x for x in ext if x in known), None)
            if dup is not None or len(set(ext)) != len(ext):
                raise InvalidValueError(f"ids: duplicate document id {dup if dup is not None else ext!r}")
        from rank.retrieve import Tokenizer

        tok = Tokenizer.from_config(self.manifest["tokenizer"], self.tokenizer.terms)  # grown only on success
        if kind == "text":
            flat, offsets = tok.tokenize_packed(docs, show_progress=False)
        elif kind == "tokens":
            flat, offsets = tok.lookup_packed(docs)
        else:
            from rank.retrieve._index import flatten_int_lists

            flat, offsets = flatten_int_lists(docs, "new_docs")
        m = self.manifest
        n_terms = max(m["n_terms"], len(tok) if kind != "ids" else 0, int(flat.max()) + 1 if flat.size else 0)
        old_df = np.load(os.path.join(self.path, "df.npy"), allow_pickle=False)
        df = np.zeros(n_terms, np.int64)
        df[:old_df.shape[0]] = old_df
        df += _count_df(flat, offsets, n_terms)
        n_new = offsets.shape[0] - 1
        n_docs, total = m["n_docs"] + n_new, m["total_length"] + int(offsets[-1])
        old, new = {"n_docs": m["n_docs"], "avgdl": m["avgdl"]}, {"n_docs": n_docs, "avgdl": total / n_docs}
        settings = {k: m[k] for k in (*_SETTINGS, "tokenizer")}
        shards = [dict(s) for s in m["shards"]]
        if new_shard:
            shards.append({"name": _ray.shard_name(len(shards)), "start": m["n_docs"], "n_docs": n_new})
        else:
            shards[-1]["n_docs"] += n_new
        self.close()
        task = ray.remote(_rebase_shard)
        df_ref = ray.put(df)
        packed = (flat, offsets, ext)

        def build(tmp: str) -> dict[str, Any]:
            refs = []
            for i, s in enumerate(shards):
                last = i == len(shards) - 1
                src = "" if (new_shard and last) else os.path.join(self.path, s["name"])
                refs.append(task.remote(src, os.path.join(tmp, s["name"]), settings, old,
                                        os.path.join(self.path, "df.npy"), new, df_ref, packed if last else None))
            self._write_root(tmp, tok.terms, df, _ray.get(ray, refs), kind)
            return self._manifest(settings, kind, n_docs, total, new["avgdl"], n_terms, m["has_ids"], shards)

        _ray.atomic_build(self.path, build)
        fresh = type(self).load(self.path, cpus_per_shard=self.group.cpus_per_shard, local=self.group.local,
                                replicas=self.group.replicas)
        self.manifest, self.tokenizer, self.group = fresh.manifest, fresh.tokenizer, fresh.group
        return self
