"""BM25 retrieval over an impact-ordered inverted index: index, retrieve, save/load, incremental add.

Five variants, with the idf and term-frequency components of Kamphuis et al. (ECIR 2020) as
bm25s computes them, so scores match bm25s for the same token lists. With N documents, df the
document frequency of a term, tf its count in a document of length dl, avgdl the mean length
and ``norm = (1 - b) + b * dl / avgdl``:

============  ================================  =============================================
method        idf                               tf component
============  ================================  =============================================
robertson     ln(max(1, (N-df+.5)/(df+.5)))     tf / (k1 norm + tf)
lucene        ln(1 + (N-df+.5)/(df+.5))         tf / (k1 norm + tf)
atire         ln(N / df)                        tf (k1+1) / (tf + k1 norm)
bm25l         ln((N+1) / (df+.5))               (k1+1)(c+delta) / (k1+c+delta), c = tf / norm
bm25+         ln((N+1) / df)                    (k1+1) tf / (k1 norm + tf) + delta
============  ================================  =============================================

For bm25l and bm25+ the component is positive even when tf = 0; as in bm25s, each query term
then adds ``idf * component(tf=0, dl=avgdl)`` to every document, and the index stores
``impact - that`` per posting, so a query's scores are its postings' impacts plus a constant.

Every score is precomputed per posting (a float32 impact), so a query only sums impacts; the
top k come from a term-at-a-time kernel with exact pruning (see `rank_kernels.sparse`).
"""
from __future__ import annotations

import itertools
import math
import os
from typing import Any, Iterable, Optional, Sequence, Union

import numpy as np

from rank.errors import CorruptFileError, DTypeError, InvalidValueError, ShapeError, UnknownMethodError
from rank.retrieve import _index
from rank.retrieve.tokenizer import Tokenizer, _progress_bar
from rank_kernels import sparse as _kernel

__all__ = ["BM25", "METHODS"]

METHODS = ("robertson", "lucene", "atire", "bm25l", "bm25+")
_SHIFTED = ("bm25l", "bm25+")
_FORMAT = "rank-kernels.bm25"


def _idf(method: str, df: np.ndarray, n: int) -> np.ndarray:
    """float64 idf of every document frequency (df > 0)."""
    df = df.astype(np.float64)
    if method == "robertson":
        return np.log(np.maximum((n - df + 0.5) / (df + 0.5), 1.0))
    if method == "lucene":
        return np.log(1.0 + (n - df + 0.5) / (df + 0.5))
    if method == "atire":
        return np.log(n / df)
    if method == "bm25l":
        return np.log((n + 1) / (df + 0.5))
    return np.log((n + 1) / df)


def _is_packed(x: Any) -> bool:
    return isinstance(x, tuple) and len(x) == 2 and all(isinstance(a, np.ndarray) for a in x)


def _compact(lengths: np.ndarray) -> np.ndarray:
    """Document lengths in the smallest unsigned dtype that holds them (uint8/16/32)."""
    top = int(lengths.max()) if lengths.size else 0
    for dt in (np.uint8, np.uint16, np.uint32):
        if top <= np.iinfo(dt).max:
            return lengths.astype(dt)
    return lengths.astype(np.int64)


class _State:
    """An immutable snapshot of the index (swapped whole by `add`, so readers never see a mix)."""

    __slots__ = ("postings", "doc_len", "avgdl", "idf", "shift", "exc_pos", "exc_tf")

    def __init__(self, postings: _index.Postings, doc_len: np.ndarray, avgdl: float, idf: np.ndarray,
                 shift: np.ndarray, exc_pos: np.ndarray, exc_tf: np.ndarray) -> None:
        self.postings, self.doc_len, self.avgdl = postings, doc_len, avgdl
        self.idf, self.shift, self.exc_pos, self.exc_tf = idf, shift, exc_pos, exc_tf


class BM25:
    """A BM25 index: build it with :meth:`index`, query it with :meth:`retrieve`.

    Parameters
    ----------
    method : {"lucene", "robertson", "atire", "bm25l", "bm25+"}, default "lucene"
        The variant (see the module docstring); the same formulas as bm25s.
    k1 : float >= 0, default 1.2
        Term-frequency saturation.
    b : float in [0, 1], default 0.75
        Length normalisation.
    delta : float >= 0, default 0.5
        The lower bound of the term-frequency component for "bm25l" and "bm25+".
    tokenizer : Tokenizer, optional
        Used when documents and queries are strings (default: ``Tokenizer()``, lowercase,
        English stopwords, no stemming).

    Documents may be strings (tokenized), lists of token strings (each string a term), lists
    of int token ids, or a packed ``(ids, offsets)`` pair of int arrays. Queries take the same
    forms (a str query is tokenized with the index's tokenizer, without growing its vocabulary).

    Memory: per posting (distinct term of a document) 8 bytes (int32 doc id, float32 impact);
    per document 1-4 bytes (its length, in the smallest dtype that fits); per term 24 bytes. The raw term frequencies are not kept:
    :meth:`add` recovers them exactly from the impacts (the rare postings where float32
    rounding would lose them are stored aside).

    Thread safety: :meth:`retrieve` and :meth:`get_scores` may run concurrently from several
    threads; :meth:`index` and :meth:`add` mutate the index (readers running meanwhile see
    either the old or the new index, never a mix).

    >>> bm25 = BM25().index(["a cat sat on the mat", "a dog sat", "cats and dogs"])
    >>> idx, scores = bm25.retrieve(["cat on a mat"], k=2)
    >>> idx.tolist()
    [[0, 1]]
    >>> [round(float(s), 4) for s in scores[0]]
    [0.7983, 0.0]
    """

    def __init__(self, method: str = "lucene", k1: float = 1.2, b: float = 0.75, delta: float = 0.5, *,
                 tokenizer: Optional[Tokenizer] = None) -> None:
        if method not in METHODS:
            raise UnknownMethodError(f"method: expected one of {', '.join(map(repr, METHODS))}, got {method!r}")
        self.method = method
        self.k1 = self._param(k1, "k1", 0.0, math.inf)
        self.b = self._param(b, "b", 0.0, 1.0)
        self.delta = self._param(delta, "delta", 0.0, math.inf)
        if tokenizer is not None and not isinstance(tokenizer, Tokenizer):
            raise DTypeError(f"tokenizer: expected a rank.retrieve.Tokenizer, got {type(tokenizer).__name__}")
        self.tokenizer = tokenizer if tokenizer is not None else Tokenizer()
        self._kind: Optional[str] = None  # "text", "tokens" or "ids" once indexed
        self._ids: Optional[list] = None
        self._state: Optional[_State] = None

    @staticmethod
    def _param(value: Any, name: str, lo: float, hi: float) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise DTypeError(f"{name}: expected a number, got {type(value).__name__}")
        v = float(value)
        if not (lo <= v <= hi) or math.isnan(v):
            rng = f"[{lo:g}, {hi:g}]" if hi != math.inf else f">= {lo:g}"
            raise InvalidValueError(f"{name}: expected a finite value {rng}, got {value!r}")
        return v

    # --- properties ----------------------------------------------------------------------------

    @property
    def n_docs(self) -> int:
        """Number of indexed documents."""
        return 0 if self._state is None else self._state.postings.n_docs

    @property
    def n_terms(self) -> int:
        """Size of the term id space (vocabulary size, or 1 + the largest token id)."""
        return 0 if self._state is None else self._state.postings.n_terms

    @property
    def ids(self) -> Optional[list]:
        """The external document ids given to :meth:`index` / :meth:`add` (None if none were)."""
        return None if self._ids is None else list(self._ids)

    def __len__(self) -> int:
        return self.n_docs

    def _require(self) -> _State:
        if self._state is None:
            raise InvalidValueError("the index is empty: call index() first")
        return self._state

    # --- building ------------------------------------------------------------------------------

    def _encode_docs(self, corpus: Any, show_progress: bool) -> tuple[np.ndarray, np.ndarray, str]:
        """Packed term ids of a corpus, and its kind; grows the vocabulary."""
        if _is_packed(corpus):
            ids, offsets = _index.check_packed(corpus, "corpus")
            return ids, offsets, "ids"
        if isinstance(corpus, (str, bytes)) or not isinstance(corpus, Iterable):
            raise DTypeError("corpus: expected an iterable of documents (str, token lists or id lists)")
        it = iter(corpus)
        first = next(it, None)
        if first is None:
            return np.zeros(0, np.int32), np.zeros(1, np.int64), "empty"
        rest = itertools.chain([first], it)
        if isinstance(first, str):
            try:
                ids, offsets = self.tokenizer.tokenize_packed(rest, show_progress=show_progress)
            except DTypeError as e:
                raise DTypeError(f"corpus: every document must be a str ({e})") from None
            return ids, offsets, "text"
        if not isinstance(first, (list, tuple, np.ndarray)):
            raise DTypeError(f"corpus: expected str documents, token lists or token-id lists, got {type(first).__name__}")
        docs = list(rest)
        sample = next((d for d in docs if len(d)), None)
        kind = self._kind if sample is None and self._kind in ("tokens", "ids") else (
            "tokens" if sample is not None and isinstance(sample[0], str) else "ids")
        if kind == "tokens":
            ids, offsets = self.tokenizer.lookup_packed(docs)
            return ids, offsets, kind
        ids, offsets = _index.flatten_int_lists(docs, "corpus")
        return ids, offsets, kind

    def _check_ids(self, ids: Any, n: int) -> Optional[list]:
        if ids is None:
            return None
        ids = list(ids)
        if len(ids) != n:
            raise ShapeError(f"ids: expected {n} ids (one per document), got {len(ids)}")
        for i in ids:
            if isinstance(i, bool) or not isinstance(i, (str, int, np.integer)):
                raise DTypeError(f"ids: expected str or int ids, got {type(i).__name__}")
        return [i if isinstance(i, str) else int(i) for i in ids]

    def _term_stats(self, indptr: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """float32 idf and non-occurrence shift of every term, from the document frequencies."""
        n_terms = indptr.shape[0] - 1
        df = np.diff(indptr)
        present = df > 0
        idf64 = np.zeros(n_terms)
        idf64[present] = _idf(self.method, df[present], n)
        idf = idf64.astype(np.float32)
        shift = np.zeros(n_terms, np.float32)
        if self.method == "bm25l":
            shift[present] = (idf64[present] * ((self.k1 + 1) * self.delta / (self.k1 + self.delta))).astype(np.float32)
        elif self.method == "bm25+":
            shift[present] = (idf64[present] * self.delta).astype(np.float32)
        return idf, shift

    def _finish(self, indptr: np.ndarray, docs: np.ndarray, tf: np.ndarray, doc_len: np.ndarray) -> _State:
        """Impacts and term statistics from raw postings (the one path for index and add)."""
        n = int(doc_len.shape[0])
        avgdl = float(doc_len.mean()) if n else 0.0
        idf, shift = self._term_stats(indptr, n)
        norm = self._norm(doc_len, avgdl)
        impacts = np.empty(docs.shape[0], np.float32)
        code = METHODS.index(self.method)
        _kernel.bm25_impacts(code, indptr, docs, tf, norm, idf, shift, self.k1, self.delta, impacts)
        est = np.empty(docs.shape[0], np.int32)
        _kernel.bm25_recover_tf(code, indptr, docs, impacts, norm, idf, shift, self.k1, self.delta, est)
        exc_pos = np.flatnonzero(est != tf).astype(np.int64)
        exc_tf = tf[exc_pos].astype(np.int32)
        postings = _index.Postings(indptr, docs, impacts, n)
        return _State(postings, _compact(doc_len), avgdl, idf, shift, exc_pos, exc_tf)

    def _norm(self, doc_len: np.ndarray, avgdl: float) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.ascontiguousarray((1.0 - self.b) + self.b * doc_len.astype(np.float64) / avgdl)

    @staticmethod
    def _raw_postings(ids: np.ndarray, offsets: np.ndarray, n_terms: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        df = _kernel.count_postings(ids, offsets, n_terms)
        indptr = _index.pointers(df)
        docs = np.empty(int(indptr[-1]), np.int32)
        tf = np.empty(int(indptr[-1]), np.int32)
        _kernel.fill_postings(ids, offsets, indptr, docs, tf)
        return indptr, docs, tf

    def index(self, corpus: Any, ids: Optional[Sequence[Any]] = None, *, show_progress: bool = True) -> "BM25":
        """Build the index from `corpus`, replacing any previous one. Returns self.

        Parameters
        ----------
        corpus : iterable of str, of lists of str tokens, of lists of int ids, or packed (ids, offsets)
            The documents (any iterable of str, e.g. a generator over a file). Empty documents
            are allowed; an empty corpus is not.
        ids : sequence of str or int, optional
            External ids, one per document (kept, see :attr:`ids`).
        show_progress : bool, default True
            A tqdm progress bar while tokenizing (shown after a second; silently absent without tqdm).

        Complexity: O(total tokens) time (a counting pass and a scatter pass over the token ids),
        O(postings) memory. Not thread-safe with concurrent :meth:`add`.

        Raises ShapeError (empty corpus, wrong number of ids), DTypeError (documents of another type).
        """
        self.tokenizer = self.tokenizer.empty_copy()
        tok_ids, offsets, kind = self._encode_docs(corpus, show_progress)
        n = offsets.shape[0] - 1
        if n == 0:
            raise ShapeError("corpus: expected at least one document, got none")
        if n >= _index.MAX_ID:
            raise ShapeError(f"corpus: at most {_index.MAX_ID - 1} documents are supported")
        ext = self._check_ids(ids, n)
        n_terms = max(len(self.tokenizer), int(tok_ids.max()) + 1 if tok_ids.size else 0)
        indptr, docs, tf = self._raw_postings(tok_ids, offsets, n_terms)
        self._state = self._finish(indptr, docs, tf, np.diff(offsets))
        self._kind = kind
        self._ids = ext
        return self

    def _recover_tf(self, st: _State) -> np.ndarray:
        p = st.postings
        tf = np.empty(p.docs.shape[0], np.int32)
        _kernel.bm25_recover_tf(METHODS.index(self.method), p.indptr, p.docs, p.values,
                                self._norm(st.doc_len, st.avgdl), st.idf, st.shift, self.k1, self.delta, tf)
        tf[st.exc_pos] = st.exc_tf
        return tf

    def add(self, new_docs: Any, ids: Optional[Sequence[Any]] = None, *, show_progress: bool = True) -> "BM25":
        """Append documents; afterwards every score equals that of a fresh index of all documents.

        The new documents get the next indices (n_docs, n_docs + 1, ...). Since N, df and avgdl
        change, every impact is recomputed (from term frequencies recovered exactly from the
        stored impacts). `new_docs` and `ids` take the forms of :meth:`index`; if the index has
        external ids, `ids` must be given for the new documents too. Returns self.

        Complexity: O(postings of the whole index + new tokens). Mutates the index: concurrent
        readers see the old or the new index, never a mix.
        """
        if self._state is None:
            return self.index(new_docs, ids, show_progress=show_progress)
        st = self._state
        tok_ids, offsets, kind = self._encode_docs(new_docs, show_progress)
        n_new = offsets.shape[0] - 1
        if n_new == 0:
            return self
        if kind != self._kind and not (kind == "empty"):
            raise DTypeError(f"new_docs: the index holds {self._kind} documents, got {kind} documents")
        if self._ids is not None and ids is None:
            raise ShapeError("ids: the index has external ids, so the new documents need ids too")
        if self._ids is None and ids is not None:
            raise ShapeError("ids: the index was built without external ids")
        ext = self._check_ids(ids, n_new)
        if st.postings.n_docs + n_new >= _index.MAX_ID:
            raise ShapeError(f"at most {_index.MAX_ID - 1} documents are supported")
        old = st.postings
        n_terms = max(old.n_terms, len(self.tokenizer) if kind in ("text", "tokens") else 0,
                      int(tok_ids.max()) + 1 if tok_ids.size else 0)
        tf_old = self._recover_tf(st)
        indptr_b, docs_b, tf_b = self._raw_postings(tok_ids, offsets, n_terms)
        df_old = np.zeros(n_terms, np.int64)
        df_old[:old.n_terms] = np.diff(old.indptr)
        indptr = _index.pointers(df_old + np.diff(indptr_b))
        docs = np.empty(int(indptr[-1]), np.int32)
        tf = np.empty(int(indptr[-1]), np.int32)
        _kernel.merge_postings(np.ascontiguousarray(old.indptr), np.ascontiguousarray(old.docs), tf_old,
                               indptr_b, docs_b, tf_b, old.n_docs, indptr, docs, tf)
        doc_len = np.concatenate([np.asarray(st.doc_len, np.int64), np.diff(offsets)])
        new_state = self._finish(indptr, docs, tf, doc_len)
        if ext is not None:
            self._ids = (self._ids or []) + ext
        self._state = new_state
        return self

    # --- querying ------------------------------------------------------------------------------

    def _encode_queries(self, queries: Any) -> tuple[np.ndarray, np.ndarray]:
        """(offsets (nq + 1,), term id per token) for a batch of queries."""
        if _is_packed(queries):
            ids, offsets = _index.check_packed(queries, "queries")
        else:
            if isinstance(queries, str):
                queries = [queries]
            if not isinstance(queries, Iterable):
                raise DTypeError("queries: expected a list of queries (str, token lists or id lists)")
            queries = list(queries)
            if not queries:
                ids, offsets = np.zeros(0, np.int32), np.zeros(1, np.int64)
            elif all(isinstance(q, str) for q in queries):
                self._check_vocabulary()
                ids, offsets = self.tokenizer.tokenize_packed(queries, update_vocabulary=False)
            elif all(isinstance(q, (list, tuple, np.ndarray)) for q in queries):
                sample = next((q for q in queries if len(q)), None)
                if sample is not None and isinstance(sample[0], str):
                    self._check_vocabulary()
                    ids, offsets = self.tokenizer.lookup_packed(queries, update_vocabulary=False)
                else:
                    ids, offsets = _index.flatten_int_lists(queries, "queries")
            else:
                raise DTypeError("queries: expected every query to be a str, or every query a list of tokens or ids")
        return offsets, ids

    def _check_vocabulary(self) -> None:
        if self._kind == "ids":
            raise InvalidValueError("queries: this index was built from token ids (no vocabulary), "
                                    "so queries must be token ids too")

    def _batch(self, queries: Any) -> _index.QueryBatch:
        st = self._require()
        offsets, terms = self._encode_queries(queries)
        shift = st.shift if self.method in _SHIFTED else None
        return _index.make_batch(offsets, terms, np.ones(terms.shape[0]), st.postings, shift)

    def retrieve(self, queries: Any, k: int = 10, *, n_threads: Optional[int] = None,
                 mask: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """The k best documents of every query, exactly (identical to sorting :meth:`get_scores`).

        Parameters
        ----------
        queries : list of str, of token lists, of id lists, or packed (ids, offsets); a single str
            is one query. Unknown terms are ignored; a query with none scores 0 everywhere
            (bm25l/bm25+ : the same constant everywhere), so it returns documents 0, 1, ...
        k : int > 0, default 10
            Clipped to the number of documents (the result then has n_docs columns).
        n_threads : int, optional
            Threads (default: every core; one query per thread at a time).
        mask : bool array (n_docs,) or (n_queries, n_docs), optional
            False excludes a document (for every query, or per query); an excluded document is
            never returned. Rows with fewer than k allowed documents are padded with index -1
            and score -inf.

        Returns
        -------
        indices : int64 (n_queries, min(k, n_docs)), scores : float32 (same shape)
            Sorted by score descending, equal scores by ascending index.

        Complexity: per query, the postings of its terms (less with pruning: once the k-th best
        partial score exceeds what the remaining terms can add, the long lists of common terms
        are only probed for the remaining candidates), O(k log k) selection. Runs without the GIL.

        Raises InvalidValueError (k <= 0, empty index), ShapeError / DTypeError (mask, queries).
        """
        batch = self._batch(queries)
        return _index.search(self._require().postings, batch, k, n_threads, mask)

    def get_scores(self, query: Any) -> np.ndarray:
        """BM25 score of every document for one query: float32 (n_docs,).

        `query` is a str, a list of tokens or of token ids. O(postings of its terms + n_docs).

        >>> scores = BM25().index(["red fox", "blue fox", "red red sky"]).get_scores("red")
        >>> tuple(round(float(s), 4) for s in scores)
        (0.2269, 0.0, 0.2719)
        """
        if isinstance(query, (list, tuple, np.ndarray)) and (len(query) == 0 or not isinstance(query[0], (list, tuple, np.ndarray))):
            query = [list(query)]
        elif isinstance(query, str):
            query = [query]
        else:
            raise DTypeError("query: expected one query (a str, or a list of tokens or token ids)")
        batch = self._batch(query)
        return _index.scores(self._require().postings, batch)

    # --- persistence -----------------------------------------------------------------------------

    def save(self, path: Union[str, os.PathLike]) -> None:
        """Save to directory `path` (.npy arrays + meta.json with a format version), atomically:
        everything is written to a temporary directory beside it, then renamed into place.

        Raises InvalidValueError for an empty index or a tokenizer with a callable stemmer.
        """
        st = self._require()
        p = st.postings
        meta = {"method": self.method, "k1": self.k1, "b": self.b, "delta": self.delta, "n_docs": p.n_docs,
                "n_terms": p.n_terms, "avgdl": st.avgdl, "kind": self._kind, "nonneg": p.nonneg,
                "tokenizer": self.tokenizer.config()}
        arrays = {"indptr": p.indptr, "docs": p.docs, "impacts": p.values, "max_impact": p.max_value,
                  "doc_len": st.doc_len, "exc_pos": st.exc_pos, "exc_tf": st.exc_tf}
        extra: dict[str, Any] = {"vocabulary": self.tokenizer.terms}
        if self._ids is not None:
            extra["ids"] = self._ids
        _index.save_dir(path, _FORMAT, meta, arrays, extra)

    @classmethod
    def load(cls, path: Union[str, os.PathLike], mmap: bool = True) -> "BM25":
        """Load an index saved by :meth:`save`.

        With ``mmap=True`` (default) the arrays are memory-mapped read-only: loading reads only
        the small per-term arrays and pages come in as queries touch them. Raises
        CorruptFileError for a missing, truncated, corrupt or foreign directory.
        """
        meta, arrays, objs = _index.load_dir(path, _FORMAT, mmap)
        try:
            bm = cls(meta["method"], meta["k1"], meta["b"], meta["delta"],
                     tokenizer=Tokenizer.from_config(meta["tokenizer"], objs["vocabulary"]))
            n_docs, n_terms = int(meta["n_docs"]), int(meta["n_terms"])
            kind, avgdl = meta["kind"], float(meta["avgdl"])
        except Exception as e:  # any malformed field of a hand-edited or foreign meta.json
            raise CorruptFileError(f"{path}: corrupt metadata ({type(e).__name__}: {e})") from None
        a = arrays
        _index.check_postings(path, a["indptr"], a["docs"], a["impacts"], n_docs, full=not mmap)
        if (a["indptr"].shape[0] != n_terms + 1 or a["doc_len"].shape[0] != n_docs
                or a["doc_len"].dtype.kind not in "ui"
                or a["max_impact"].shape[0] != n_terms or a["exc_pos"].shape != a["exc_tf"].shape):
            raise CorruptFileError(f"{path}: array sizes disagree with meta.json (corrupt index)")
        if kind in ("text", "tokens") and len(bm.tokenizer) > n_terms:
            raise CorruptFileError(f"{path}: vocabulary larger than the index (corrupt index)")
        postings = _index.Postings(a["indptr"], a["docs"], a["impacts"], n_docs, a["max_impact"],
                                   bool(meta.get("nonneg", False)))
        idf, shift = bm._term_stats(np.asarray(a["indptr"]), n_docs)  # O(n_terms): not stored
        bm._state = _State(postings, a["doc_len"], avgdl, idf, shift, a["exc_pos"], a["exc_tf"])
        bm._kind = kind
        ids = objs.get("ids")
        if ids is not None and (not isinstance(ids, list) or len(ids) != n_docs):
            raise CorruptFileError(f"{path}: ids.json does not list one id per document")
        bm._ids = ids
        return bm

    # --- shards of a larger collection (used by rank.distributed) --------------------------------

    def use_collection_stats(self, n_docs: int, avgdl: float, df: Any, *, max_impact: Any = None,
                             recompute: bool = True) -> "BM25":
        """Score this index as one shard of a larger collection: idf, the bm25l/bm25+ shift and
        length normalisation then come from the collection's statistics, so every score equals
        the score of one index over the whole collection (same term ids assumed). Returns self.

        Parameters
        ----------
        n_docs : int
            Documents in the whole collection (>= this index's).
        avgdl : float >= 0
            Mean document length over the whole collection (``total tokens / n_docs``).
        df : int array (n_terms_total,), n_terms_total >= self.n_terms
            Document frequency of every term id in the whole collection (>= this index's own).
        max_impact : float32 array (n_terms_total,), optional
            Largest impact of every term over the whole collection: the order in which a query's
            terms are summed follows it, so with the collection's maxima float32 scores are
            bit-identical to one index's. Default: this index's own maxima.
        recompute : bool, default True
            Recompute every impact (O(postings)) from the term frequencies, which are recovered
            with the statistics currently held. False only installs the statistics (O(n_terms)):
            for an index whose impacts were computed with exactly these statistics (a shard
            saved after ``use_collection_stats`` and loaded again; loading alone derives idf from
            the shard's own postings).

        Mutates the index (readers see the old or the new state, never a mix). Raises ShapeError
        / InvalidValueError for statistics that cannot describe a collection holding this index.

        >>> shard = BM25().index([[0, 1], [1]])             # documents 0-1 of a 3-document collection
        >>> full = BM25().index([[0, 1], [1], [2, 2, 0]])
        >>> _ = shard.use_collection_stats(3, 6 / 3, [2, 2, 1])
        >>> bool((shard.get_scores([0, 1]) == full.get_scores([0, 1])[:2]).all())
        True
        """
        st = self._require()
        p = st.postings
        if isinstance(n_docs, bool) or not isinstance(n_docs, (int, np.integer)) or not p.n_docs <= n_docs < _index.MAX_ID:
            raise InvalidValueError(f"n_docs: expected an integer in [{p.n_docs}, {_index.MAX_ID}) (at least this "
                                    f"index's documents), got {n_docs!r}")
        avg = self._param(avgdl, "avgdl", 0.0, math.inf)
        df_arr = np.asarray(df)
        if df_arr.ndim != 1 or df_arr.dtype.kind not in "iu" or df_arr.shape[0] < p.n_terms:
            raise ShapeError(f"df: expected a 1-D integer array of at least {p.n_terms} document frequencies, "
                             f"got {df_arr.dtype} {df_arr.shape}")
        df_arr = df_arr.astype(np.int64)
        n_terms = int(df_arr.shape[0])
        indptr = np.asarray(p.indptr)
        if n_terms > p.n_terms:
            indptr = np.concatenate([indptr, np.full(n_terms - p.n_terms, indptr[-1], np.int64)])
        local_df = np.diff(indptr)
        if (df_arr < local_df).any() or (df_arr > n_docs).any():
            raise InvalidValueError("df: every document frequency must lie between this index's own and n_docs")
        idf, shift = self._term_stats(_index.pointers(df_arr), int(n_docs))
        if recompute:
            tf = self._recover_tf(st)
            norm = self._norm(np.asarray(st.doc_len), avg)
            values = np.empty(p.docs.shape[0], np.float32)
            code = METHODS.index(self.method)
            docs = np.ascontiguousarray(p.docs)
            _kernel.bm25_impacts(code, indptr, docs, tf, norm, idf, shift, self.k1, self.delta, values)
            est = np.empty(values.shape[0], np.int32)
            _kernel.bm25_recover_tf(code, indptr, docs, values, norm, idf, shift, self.k1, self.delta, est)
            exc_pos = np.flatnonzero(est != tf).astype(np.int64)
            exc_tf, nonneg = tf[exc_pos].astype(np.int32), None
        else:
            docs, values, exc_pos, exc_tf, nonneg = p.docs, p.values, st.exc_pos, st.exc_tf, p.nonneg
        if max_impact is None:
            top = _kernel.term_max(indptr, values) if recompute else np.concatenate(
                [np.asarray(p.max_value, np.float32), np.zeros(n_terms - p.n_terms, np.float32)])
        else:
            top = np.ascontiguousarray(max_impact, np.float32)
            if top.shape != (n_terms,):
                raise ShapeError(f"max_impact: expected shape ({n_terms},) (one per term of df), got {top.shape}")
        postings = _index.Postings(indptr, docs, values, p.n_docs, top, nonneg)
        self._state = _State(postings, st.doc_len, avg, idf, shift, exc_pos, exc_tf)
        return self
