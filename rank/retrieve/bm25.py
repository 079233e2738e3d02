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

from rank import _deprecate
from rank._validate import check_choice, check_real
from rank.errors import CorruptFileError, DTypeError, InvalidValueError, ShapeError, UnknownMethodError
from rank.retrieve import _index
from rank.retrieve.tokenizer import Tokenizer, progress_bar
from rank.retrieve._shareable import HubShareable
from rank_kernels import sparse as _kernel

__all__ = ["BM25", "METHODS"]

METHODS = tuple(_kernel.BM25_METHODS)  # the variants by name; their kernel codes are the dict's values
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
    """An immutable snapshot of the whole index: postings, statistics, the tokenizer whose
    vocabulary the postings use, the kind of documents and the external ids.

    `index` and `add` build a new one and swap the single reference ``BM25._state``; every
    reader takes that reference once per call, so it sees the old or the new index, never a mix
    (nothing in a published state is mutated afterwards; the tokenizer only fills its word
    cache, which never changes an answer).
    """

    __slots__ = ("postings", "doc_len", "avgdl", "idf", "shift", "exc_pos", "exc_tf", "tokenizer", "kind", "ids",
                 "collection")

    def __init__(self, postings: _index.Postings, doc_len: np.ndarray, avgdl: float, idf: np.ndarray,
                 shift: np.ndarray, exc_pos: np.ndarray, exc_tf: np.ndarray, tokenizer: Optional[Tokenizer] = None,
                 kind: Optional[str] = None, ids: Optional[list] = None,
                 collection: bool = False) -> None:
        self.postings, self.doc_len, self.avgdl = postings, doc_len, avgdl
        self.idf, self.shift, self.exc_pos, self.exc_tf = idf, shift, exc_pos, exc_tf
        self.tokenizer, self.kind, self.ids = tokenizer, kind, ids
        # True when avgdl and the impacts come from a larger collection (use_collection_stats)
        self.collection = collection

    def replace(self, **changes: Any) -> "_State":
        """A copy with some fields replaced (the snapshot itself never changes)."""
        fields = {name: getattr(self, name) for name in self.__slots__}
        fields.update(changes)
        return _State(**fields)


def _snapshot_field(name: str) -> Any:
    """A property reading field `name` of the index's current snapshot (None before indexing);
    setting it publishes a new snapshot with that field replaced."""
    def get(self: "BM25") -> Any:
        st = self._state
        return None if st is None else getattr(st, name)

    def set_(self: "BM25", value: Any) -> None:
        if self._state is not None:
            self._state = self._state.replace(**{name: value})

    return property(get, set_)


class BM25(_index.WriteLocked, HubShareable):
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
        English stopwords, English Snowball stemming; ``Tokenizer(stemmer=None)`` for none,
        ``Tokenizer(language=...)`` for another language). A saved index keeps its tokenizer's
        settings: an index saved before stemming was the default loads without stemming.

    Documents may be strings (tokenized), lists of token strings (each string a term), lists
    of int token ids, or a packed ``(ids, offsets)`` pair of int arrays. Queries take the same
    forms (a str query is tokenized with the index's tokenizer, without growing its vocabulary).

    Memory: per posting (distinct term of a document) 8 bytes (int32 doc id, float32 impact);
    per document 1-4 bytes (its length, in the smallest dtype that fits); per term 24 bytes. The raw term frequencies are not kept:
    :meth:`add` recovers them exactly from the impacts (the rare postings where float32
    rounding would lose them are stored aside).

    Thread safety: :meth:`retrieve` and :meth:`get_scores` may run concurrently from several
    threads. :meth:`index` and :meth:`add` mutate the object: they build a new immutable
    snapshot (postings, statistics, tokenizer, ids) and swap it in whole, so readers running
    meanwhile see either the old or the new index, never a mix; concurrent writers are
    serialised by a lock. :meth:`save` writes one snapshot.

    >>> bm25 = BM25().index(["a cat sat on the mat", "a dog sat", "cats and dogs"])
    >>> idx, scores = bm25.search(["cat on a mat"], k=2)
    >>> idx.tolist()  # "cats" is stemmed to "cat" (English by default)
    [[0, 2]]
    >>> [round(float(s), 4) for s in scores[0]]
    [0.5905, 0.2269]
    """

    def __init__(self, method: str = "lucene", k1: float = 1.2, b: float = 0.75, delta: float = 0.5, *,
                 tokenizer: Optional[Tokenizer] = None) -> None:
        self.method = check_choice("method", method, METHODS)
        self.k1 = self._param(k1, "k1", 0.0, math.inf)
        self.b = self._param(b, "b", 0.0, 1.0)
        self.delta = self._param(delta, "delta", 0.0, math.inf)
        if tokenizer is not None and not isinstance(tokenizer, Tokenizer):
            raise DTypeError(f"tokenizer: expected a rank.retrieve.Tokenizer, got {type(tokenizer).__name__}")
        self._tokenizer = tokenizer if tokenizer is not None else Tokenizer()
        self._state: Optional[_State] = None
        _index.WriteLocked.__init__(self)

    @property
    def tokenizer(self) -> Tokenizer:
        """The tokenizer (with the vocabulary of the current index, once there is one).

        It may be replaced before the first :meth:`index` only: an index's term ids belong to
        its tokenizer's vocabulary."""
        st = self._state
        return st.tokenizer if st is not None and st.tokenizer is not None else self._tokenizer

    @tokenizer.setter
    def tokenizer(self, tok: Tokenizer) -> None:
        if not isinstance(tok, Tokenizer):
            raise DTypeError(f"tokenizer: expected a rank.retrieve.Tokenizer, got {type(tok).__name__}")
        if self._state is not None:
            raise InvalidValueError("tokenizer: cannot replace the tokenizer of a built index "
                                    "(its term ids belong to the vocabulary); build a new BM25")
        self._tokenizer = tok

    # the kind of documents and the external ids live in the snapshot; these keep the old
    # attribute names working (a write publishes a new snapshot)
    _kind = _snapshot_field("kind")
    _ids = _snapshot_field("ids")

    @staticmethod
    def _param(value: Any, name: str, lo: float, hi: float) -> float:
        return check_real(name, value, lo, None if hi == math.inf else hi, type_error=DTypeError)

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

    def _encode_docs(self, corpus: Any, show_progress: bool, tok: Tokenizer,
                     current_kind: Optional[str]) -> tuple[np.ndarray, np.ndarray, str]:
        """Packed term ids of a corpus, and its kind; grows the vocabulary of `tok`."""
        if _is_packed(corpus):
            ids, offsets = _index.check_packed(corpus, "corpus")
            return ids, offsets, "ids"
        if isinstance(corpus, (str, bytes)) or not isinstance(corpus, Iterable):
            raise DTypeError("corpus: expected an iterable of documents (str, token lists or id lists)")
        try:
            it = iter(corpus)
        except TypeError:
            raise DTypeError(f"corpus: expected an iterable of documents, got {type(corpus).__name__}") from None
        first = next(it, None)
        if first is None:
            return np.zeros(0, np.int32), np.zeros(1, np.int64), "empty"
        rest = itertools.chain([first], it)
        if isinstance(first, str):
            try:
                ids, offsets = tok.tokenize_packed(rest, show_progress=show_progress)
            except DTypeError as e:
                raise DTypeError(f"corpus: every document must be a str ({e})") from None
            return ids, offsets, "text"
        if not isinstance(first, (list, tuple, np.ndarray)):
            raise DTypeError(f"corpus: expected str documents, token lists or token-id lists, got {type(first).__name__}")
        docs = list(rest)
        sample = next((d for d in docs if len(d)), None)
        kind = current_kind if sample is None and current_kind in ("tokens", "ids") else (
            "tokens" if sample is not None and isinstance(sample[0], str) else "ids")
        if kind == "tokens":
            ids, offsets = tok.lookup_packed(docs)
            return ids, offsets, kind
        ids, offsets = _index.flatten_int_lists(docs, "corpus")
        return ids, offsets, kind

    def _check_ids(self, ids: Any, n: int) -> Optional[list]:
        if ids is None:
            return None
        if isinstance(ids, (str, bytes)):
            raise DTypeError("ids: expected a sequence of ids (one per document), got a single str")
        try:
            ids = list(ids)
        except TypeError:
            raise DTypeError(f"ids: expected a sequence of ids (one per document), got {type(ids).__name__}") from None
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
        code = _kernel.BM25_METHODS[self.method]
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
        O(postings) memory. Mutates the object: the new index (and a fresh vocabulary) replaces
        the old one in one step once built; concurrent readers see the old or the new one.

        Raises ShapeError (empty corpus, wrong number of ids), DTypeError (documents of another type).
        """
        with self._write_lock:
            return self._index_locked(corpus, ids, show_progress)

    def _index_locked(self, corpus: Any, ids: Optional[Sequence[Any]], show_progress: bool) -> "BM25":
        tok = self.tokenizer.empty_copy()
        tok_ids, offsets, kind = self._encode_docs(corpus, show_progress, tok, None)
        n = offsets.shape[0] - 1
        if n == 0:
            raise ShapeError("corpus: expected at least one document, got none")
        if n >= _index.MAX_ID:
            raise ShapeError(f"corpus: at most {_index.MAX_ID - 1} documents are supported")
        ext = self._check_ids(ids, n)
        n_terms = max(len(tok), int(tok_ids.max()) + 1 if tok_ids.size else 0)
        indptr, docs, tf = self._raw_postings(tok_ids, offsets, n_terms)
        st = self._finish(indptr, docs, tf, np.diff(offsets))
        st.tokenizer, st.kind, st.ids = tok, kind, ext
        self._state = st  # the one publishing step
        return self

    def _recover_tf(self, st: _State) -> np.ndarray:
        p = st.postings
        tf = np.empty(p.docs.shape[0], np.int32)
        _kernel.bm25_recover_tf(_kernel.BM25_METHODS[self.method], p.indptr, p.docs, p.values,
                                self._norm(st.doc_len, st.avgdl), st.idf, st.shift, self.k1, self.delta, tf)
        tf[st.exc_pos] = st.exc_tf
        return tf

    def add(self, new_docs: Any, ids: Optional[Sequence[Any]] = None, *, show_progress: bool = True) -> "BM25":
        """Append documents; afterwards every score equals that of a fresh index of all documents.

        The new documents get the next indices (n_docs, n_docs + 1, ...). Since N, df and avgdl
        change, every impact is recomputed (from term frequencies recovered exactly from the
        stored impacts). `new_docs` and `ids` take the forms of :meth:`index`; if the index has
        external ids, `ids` must be given for the new documents too. Returns self.

        Complexity: O(postings of the whole index + new tokens). Mutates the object (it is not
        a copy-on-write API): the merged index replaces the old one in one step once built, so
        concurrent readers see the old or the new index, never a mix; concurrent writers are
        serialised.
        """
        with self._write_lock:
            if self._state is None:
                return self._index_locked(new_docs, ids, show_progress)
            return self._add_locked(new_docs, ids, show_progress)

    def _add_locked(self, new_docs: Any, ids: Optional[Sequence[Any]], show_progress: bool) -> "BM25":
        st = self._state
        assert st is not None and st.tokenizer is not None
        tok = st.tokenizer.copy()  # the published tokenizer never changes: grow a copy
        tok_ids, offsets, kind = self._encode_docs(new_docs, show_progress, tok, st.kind)
        n_new = offsets.shape[0] - 1
        if n_new == 0:
            return self
        if kind != st.kind and not (kind == "empty"):
            raise DTypeError(f"new_docs: the index holds {st.kind} documents, got {kind} documents")
        if st.ids is not None and ids is None:
            raise ShapeError("ids: the index has external ids, so the new documents need ids too")
        if st.ids is None and ids is not None:
            raise ShapeError("ids: the index was built without external ids")
        ext = self._check_ids(ids, n_new)
        if st.postings.n_docs + n_new >= _index.MAX_ID:
            raise ShapeError(f"at most {_index.MAX_ID - 1} documents are supported")
        old = st.postings
        n_terms = max(old.n_terms, len(tok) if kind in ("text", "tokens") else 0,
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
        new_state.tokenizer, new_state.kind = tok, st.kind
        new_state.ids = None if ext is None else (st.ids or []) + ext
        self._state = new_state  # the one publishing step
        return self

    # --- querying ------------------------------------------------------------------------------

    def _encode_queries(self, queries: Any, st: _State) -> tuple[np.ndarray, np.ndarray]:
        """(offsets (nq + 1,), term id per token) for a batch of queries, with the vocabulary of `st`."""
        tok = st.tokenizer
        assert tok is not None
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
                self._check_vocabulary(st)
                ids, offsets = tok.tokenize_packed(queries, update_vocabulary=False)
            elif all(isinstance(q, (list, tuple, np.ndarray)) for q in queries):
                sample = next((q for q in queries if len(q)), None)
                if sample is not None and isinstance(sample[0], str):
                    self._check_vocabulary(st)
                    ids, offsets = tok.lookup_packed(queries, update_vocabulary=False)
                else:
                    ids, offsets = _index.flatten_int_lists(queries, "queries")
            else:
                raise DTypeError("queries: expected every query to be a str, or every query a list of tokens or ids")
        return offsets, ids

    @staticmethod
    def _check_vocabulary(st: _State) -> None:
        if st.kind == "ids":
            raise InvalidValueError("queries: this index was built from token ids (no vocabulary), "
                                    "so queries must be token ids too")

    def _batch(self, queries: Any, st: _State) -> _index.QueryBatch:
        offsets, terms = self._encode_queries(queries, st)
        shift = st.shift if self.method in _SHIFTED else None
        return _index.make_batch(offsets, terms, np.ones(terms.shape[0]), st.postings, shift)

    def search(self, queries: Any, k: int = 10, *, n_threads: Optional[int] = None,
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
        st = self._require()  # one snapshot for the whole call
        batch = self._batch(queries, st)
        return _index.search(st.postings, batch, k, n_threads, mask)

    retrieve = _deprecate.alias(search, "retrieve")

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
        st = self._require()
        batch = self._batch(query, st)
        return _index.scores(st.postings, batch)

    # --- persistence -----------------------------------------------------------------------------

    _ARRAYS = ("indptr", "docs", "impacts", "max_impact", "doc_len", "exc_pos", "exc_tf")

    def save(self, path: Union[str, os.PathLike]) -> None:
        """Save to directory `path` (.npy arrays + meta.json with a format version and a CRC-32
        per file), atomically: everything is written to a temporary directory beside it, then
        renamed into place (see :mod:`rank._atomic`); an existing index there is replaced, any
        other file or non-empty directory is refused. New files get mode ``0o666 & ~umask``.

        Raises InvalidValueError for an empty index, a tokenizer with a callable stemmer, or a
        `path` holding something other than a saved index.
        """
        st = self._require()
        p = st.postings
        assert st.tokenizer is not None
        meta = {"method": self.method, "k1": self.k1, "b": self.b, "delta": self.delta, "n_docs": p.n_docs,
                "n_terms": p.n_terms, "avgdl": st.avgdl, "kind": st.kind, "nonneg": p.nonneg,
                **({"collection_stats": True} if st.collection else {}),
                "tokenizer": st.tokenizer.config()}
        arrays = {"indptr": p.indptr, "docs": p.docs, "impacts": p.values, "max_impact": p.max_value,
                  "doc_len": st.doc_len, "exc_pos": st.exc_pos, "exc_tf": st.exc_tf}
        extra: dict[str, Any] = {"vocabulary": st.tokenizer.terms}
        if st.ids is not None:
            extra["ids"] = st.ids
        _index.save_dir(path, _FORMAT, meta, arrays, extra)

    @classmethod
    def load(cls, path: Union[str, os.PathLike], mmap: bool = True, *, verify: bool = False,
             tokenizer: Optional[Tokenizer] = None) -> "BM25":
        """Load an index saved by :meth:`save`.

        Parameters
        ----------
        mmap : bool, default True
            Memory-map the arrays read-only: pages come in as queries touch them. Loading still
            validates everything the kernels trust, exactly as without mmap (one sequential pass
            over the postings: offsets, doc-id bounds, finite impacts, per-term maxima).
        verify : bool, default False
            Also compare every file's CRC-32 with the manifest in meta.json (reads every byte;
            detects byte flips that keep the index structurally valid).
        tokenizer : Tokenizer, optional
            Needed only for an index saved with a custom regular-expression tokenizer pattern:
            stored patterns are never compiled from the file unless they are one of
            :data:`rank.retrieve.tokenizer.PATTERNS`; pass a ``Tokenizer`` with the same settings
            (its vocabulary is replaced by the stored one).

        Raises CorruptFileError for a missing, truncated, corrupt, inconsistent or foreign
        directory (and for a checksum mismatch with `verify`).
        """
        meta, a, objs = _index.load_dir(path, _FORMAT, mmap, cls._ARRAYS, ("vocabulary", "ids"), verify)
        try:
            method = meta["method"]
            if method not in METHODS:
                raise InvalidValueError(f"unknown method {method!r}")
            bm = cls(method, meta["k1"], meta["b"], meta["delta"])
            vocab = objs.get("vocabulary")
            if not isinstance(vocab, list) or not all(isinstance(t, str) for t in vocab):
                raise InvalidValueError("vocabulary.json must be a list of str terms")
            config = meta.get("tokenizer", {})  # no settings recorded: those of the first format
            if tokenizer is not None:
                if not isinstance(tokenizer, Tokenizer):
                    raise DTypeError(f"tokenizer: expected a rank.retrieve.Tokenizer, got {type(tokenizer).__name__}")
                if not isinstance(config, dict) or not Tokenizer.same_settings(tokenizer.config(), config):
                    raise InvalidValueError(f"tokenizer: its settings {tokenizer.config()} differ from the "
                                            f"saved ones {config}")
                tok = tokenizer.empty_copy()
                tok._segment = bool(config.get("scripts", False))
                tok._set_terms(vocab)
            else:
                tok = Tokenizer.from_config(config, vocab)
            kind = meta["kind"]
            if kind not in ("text", "tokens", "ids"):
                raise InvalidValueError(f"kind {kind!r}")
        except (DTypeError, UnknownMethodError) as e:
            raise CorruptFileError(f"{path}: corrupt metadata ({e})") from None
        except InvalidValueError as e:
            if tokenizer is not None and str(e).startswith("tokenizer:"):
                raise
            raise CorruptFileError(f"{path}: corrupt metadata ({e})") from None
        except CorruptFileError as e:
            raise CorruptFileError(f"{path}: {e}") from None
        except Exception as e:  # any malformed field of a hand-edited or foreign meta.json
            raise CorruptFileError(f"{path}: corrupt metadata ({type(e).__name__}: {e})") from None
        n_docs = _index.meta_number(path, meta, "n_docs", int, 1, _index.MAX_ID - 1)
        n_terms = _index.meta_number(path, meta, "n_terms", int, 0, _index.MAX_ID)
        avgdl = _index.meta_number(path, meta, "avgdl", float, 0.0, math.inf)
        nonneg = _index.check_postings(path, a["indptr"], a["docs"], a["impacts"], n_docs, a["max_impact"])
        doc_len, exc_pos, exc_tf = a["doc_len"], a["exc_pos"], a["exc_tf"]
        n_post = a["docs"].shape[0]
        if (a["indptr"].shape[0] != n_terms + 1 or doc_len.shape != (n_docs,) or doc_len.dtype.kind not in "ui"
                or exc_pos.ndim != 1 or exc_pos.shape != exc_tf.shape or exc_pos.dtype != np.int64
                or exc_tf.dtype != np.int32):
            raise CorruptFileError(f"{path}: array sizes disagree with meta.json (corrupt index)")
        if exc_pos.size and (int(exc_pos.min()) < 0 or int(exc_pos.max()) >= n_post or int(exc_tf.min()) < 1
                             or bool((np.diff(exc_pos) <= 0).any())):
            raise CorruptFileError(f"{path}: exc_pos/exc_tf out of range (corrupt index)")
        if int(doc_len.min()) < 0:
            raise CorruptFileError(f"{path}: negative document length (corrupt index)")
        collection = meta.get("collection_stats", False)
        if not isinstance(collection, bool):
            raise CorruptFileError(f"{path}: collection_stats in meta.json must be true or false (corrupt index)")
        mean = float(np.asarray(doc_len, np.float64).mean())
        # a shard of a larger collection (use_collection_stats) keeps the collection's avgdl
        if not (avgdl > 0.0 or mean == 0.0) or (not collection and abs(mean - avgdl) > 1e-6 * max(1.0, mean)):
            raise CorruptFileError(f"{path}: avgdl {avgdl!r} disagrees with the document lengths "
                                   f"(mean {mean!r}; corrupt index)")
        if kind in ("text", "tokens") and len(tok) > n_terms:
            raise CorruptFileError(f"{path}: vocabulary larger than the index (corrupt index)")
        if kind == "ids" and len(tok):
            raise CorruptFileError(f"{path}: an index of token ids with a vocabulary (corrupt index)")
        ids = objs.get("ids")
        if ids is not None and (not isinstance(ids, list) or len(ids) != n_docs or not all(
                isinstance(i, (str, int)) and not isinstance(i, bool) for i in ids)):
            raise CorruptFileError(f"{path}: ids.json does not list one str or int id per document")
        postings = _index.Postings(a["indptr"], a["docs"], a["impacts"], n_docs, a["max_impact"], nonneg)
        idf, shift = bm._term_stats(np.asarray(a["indptr"]), n_docs)  # O(n_terms): not stored
        bm._state = _State(postings, doc_len, avgdl, idf, shift, exc_pos, exc_tf, tok, kind, ids, collection)
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
        with self._write_lock:
            return self._use_collection_stats_locked(n_docs, avgdl, df, max_impact, recompute)

    def _use_collection_stats_locked(self, n_docs: int, avgdl: float, df: Any, max_impact: Any,
                                     recompute: bool) -> "BM25":
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
            code = _kernel.BM25_METHODS[self.method]
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
        # the one publishing step; the tokenizer, kind of documents and ids stay those of `st`
        self._state = st.replace(postings=postings, avgdl=avg, idf=idf, shift=shift, exc_pos=exc_pos, exc_tf=exc_tf,
                                 collection=True)
        return self
