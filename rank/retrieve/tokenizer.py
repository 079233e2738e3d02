"""Text to term ids: lowercasing, a Unicode letter/digit scanner, stopwords, stemming, a vocabulary.

The default path scans each ``str`` in compiled code (no regex engine in the loop) and looks
every word up in a per-word cache, so stopword filtering and stemming (PyStemmer, extra
``stem``) run once per distinct word, not once per occurrence.
"""
from __future__ import annotations

import copy
import re
from typing import Any, Callable, Iterable, Optional, Union

import numpy as np

from rank.errors import CorruptFileError, DTypeError, InvalidValueError, MissingDependencyError, UnknownMethodError
from rank_kernels import tokenize as _kernel

__all__ = ["Tokenizer", "STOPWORDS_EN", "PATTERNS"]

#: Vetted regular expressions, by name: each matches in linear time (no nested quantifiers),
#: so a saved index may name one and loading it compiles nothing the file chose.
#: ``Tokenizer(pattern="sklearn")`` uses one; a saved index stores the name.
PATTERNS = {
    "sklearn": r"(?u)\b\w\w+\b",  # scikit-learn's CountVectorizer default: words of 2+ word characters
    "word": r"\w+",                  # every run of word characters
    "nonspace": r"\S+",              # whitespace-separated chunks
}

#: English stopwords: the classic stop set of Lucene's English analyzer (33 words).
STOPWORDS_EN = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their "
    "then there these they this to was will with".split())

Packed = tuple[np.ndarray, np.ndarray]


def _progress_bar(show: bool, desc: str, total: Optional[int]) -> Any:
    """A tqdm bar that only appears after a second (None if disabled or tqdm is missing)."""
    if not show:
        return None
    try:
        from tqdm.auto import tqdm  # type: ignore[import-untyped,import-not-found,unused-ignore]
    except ImportError:
        return None
    return tqdm(total=total, desc=desc, unit="doc", delay=1.0, leave=False)


def _total(x: Any) -> Optional[int]:
    try:
        return len(x)
    except TypeError:
        return None


class Tokenizer:
    """Turns texts into lists of term ids and keeps the vocabulary (term -> id).

    Parameters
    ----------
    lowercase : bool, default True
        Lowercase each text first (``str.lower``).
    stopwords : "en", None or iterable of str, default "en"
        Words dropped before stemming: "en" is the 33-word English set of Lucene's classic
        analyzer (:data:`STOPWORDS_EN`); None keeps every word.
    stemmer : None, str or callable, default None
        None (no stemming), a Snowball language name for PyStemmer ("english", "french", ...;
        needs the ``stem`` extra), or any callable mapping a word to its stem. Each distinct
        word is stemmed once (per-word cache).
    pattern : str, optional
        A regular expression whose matches are the words (``re.findall``), instead of the
        built-in scanner (maximal runs of Unicode letters and digits, as ``str.isalnum``); or
        the name of a vetted one in :data:`PATTERNS` ("sklearn", "word", "nonspace"). An
        invalid expression raises InvalidValueError. A saved index keeps the pattern, but
        loading compiles only the vetted ones: an index saved with any other pattern must be
        loaded with ``BM25.load(path, tokenizer=Tokenizer(pattern=...))`` (a regular
        expression read from a file could backtrack for hours).
    min_length : int, default 2
        Words shorter than this are dropped (2 matches bm25s and scikit-learn, whose default
        pattern is ``\\w\\w+``); only for the built-in scanner.

    The vocabulary maps each distinct (stemmed) term to an id 0, 1, 2, ... in order of first
    appearance. `tokenize` adds new terms unless ``update_vocabulary=False`` (queries), where
    unknown words are dropped. Tokenizing with vocabulary updates is not thread-safe; with
    ``update_vocabulary=False`` it is.

    Complexity: O(total characters) plus one dict lookup per word occurrence; stopword checks
    and stemming once per distinct word.

    >>> tok = Tokenizer()
    >>> tok.tokenize(["The cat sat", "a cat, a hat!"])
    [[0, 1], [0, 2]]
    >>> tok.vocabulary
    {'cat': 0, 'sat': 1, 'hat': 2}
    >>> tok.tokenize(["hat dog cat"], update_vocabulary=False)
    [[2, 0]]
    """

    def __init__(self, lowercase: bool = True, stopwords: Union[str, Iterable[str], None] = "en",
                 stemmer: Union[str, Callable[[str], str], None] = None, pattern: Optional[str] = None,
                 min_length: int = 2) -> None:
        self.lowercase = bool(lowercase)
        if stopwords is None:
            self.stopwords: frozenset[str] = frozenset()
            self._stopwords_spec: Any = None
        elif isinstance(stopwords, str):
            if stopwords.lower() not in ("en", "english"):
                raise UnknownMethodError(f"stopwords: expected 'en', None or an iterable of words, got {stopwords!r}")
            self.stopwords = STOPWORDS_EN
            self._stopwords_spec = "en"
        else:
            try:
                words = list(stopwords)
            except TypeError:
                raise DTypeError(f"stopwords: expected 'en', None or an iterable of str, got "
                                 f"{type(stopwords).__name__}") from None
            if not all(isinstance(w, str) for w in words):
                raise DTypeError("stopwords: expected an iterable of str")
            self.stopwords = frozenset(words)
            self._stopwords_spec = sorted(self.stopwords)
        self.stemmer = stemmer
        self._stem = self._make_stemmer(stemmer)
        if pattern is not None and not isinstance(pattern, str):
            raise DTypeError(f"pattern: expected a str (regular expression) or None, got {type(pattern).__name__}")
        self.pattern = pattern
        regex = PATTERNS.get(pattern, pattern) if pattern is not None else None
        try:
            self._regex = re.compile(regex) if regex is not None else None
        except (re.error, RecursionError, OverflowError) as e:
            raise InvalidValueError(f"pattern: not a valid regular expression {pattern!r} ({e})") from None
        if isinstance(min_length, bool) or not isinstance(min_length, (int, np.integer)) or min_length < 1:
            raise InvalidValueError(f"min_length: expected an integer >= 1, got {min_length!r}")
        self.min_length = int(min_length)
        self._vocab: dict[str, int] = {}
        self._cache: dict[str, int] = {}  # word -> term id, or -1 for a stopword

    @staticmethod
    def _make_stemmer(stemmer: Any) -> Optional[Callable[[str], str]]:
        if stemmer is None:
            return None
        if isinstance(stemmer, str):
            try:
                import Stemmer  # type: ignore[import-untyped,import-not-found,unused-ignore]
            except ImportError:
                raise MissingDependencyError(
                    "stemmer: PyStemmer is needed for Snowball stemming; install rank-kernels[stem]") from None
            try:
                return Stemmer.Stemmer(stemmer).stemWord
            except KeyError:
                langs = ", ".join(Stemmer.algorithms())
                raise UnknownMethodError(f"stemmer: unknown Snowball language {stemmer!r}; valid: {langs}") from None
        if callable(stemmer):
            return stemmer
        raise DTypeError(f"stemmer: expected None, a Snowball language name or a callable, got {type(stemmer).__name__}")

    @property
    def vocabulary(self) -> dict[str, int]:
        """The vocabulary, term -> id (a copy)."""
        return dict(self._vocab)

    @property
    def terms(self) -> list[str]:
        """The terms by id: ``terms[i]`` has id i."""
        return list(self._vocab)

    def __len__(self) -> int:
        return len(self._vocab)

    def _resolver(self, update: bool) -> Callable[[str], int]:
        cache, vocab, stop, stem = self._cache, self._vocab, self.stopwords, self._stem

        def resolve(word: str) -> int:
            if word in stop:
                cache[word] = -1
                return -1
            term = stem(word) if stem is not None else word
            if not isinstance(term, str):
                raise DTypeError(f"stemmer: must return a str, returned {type(term).__name__} for {word!r}")
            tid = vocab.get(term)
            if tid is None:
                if not update:
                    return -1  # not cached: a later vocabulary update may add it
                tid = len(vocab)
                vocab[term] = tid
            cache[word] = tid
            return tid

        return resolve

    def _scan_regex(self, texts: Iterable[Any], resolve: Callable[[str], int], progress: Any) -> tuple:
        ids: list[int] = []
        offsets = [0]
        cache = self._cache
        assert self._regex is not None
        for n, text in enumerate(texts):
            if not isinstance(text, str):
                return np.asarray(ids, np.int32), np.asarray(offsets, np.int64), n
            if self.lowercase:
                text = text.lower()
            for word in self._regex.findall(text):
                if not isinstance(word, str):  # a pattern with groups yields tuples
                    word = "".join(word)
                tid = cache.get(word)
                if tid is None:
                    tid = resolve(word)
                if tid >= 0:
                    ids.append(tid)
            offsets.append(len(ids))
            if progress is not None:
                progress(1)
        return np.asarray(ids, np.int32), np.asarray(offsets, np.int64), -1

    def tokenize_packed(self, texts: Union[str, Iterable[str]], *, update_vocabulary: bool = True,
                        show_progress: bool = False) -> Packed:
        """Term ids of every text in packed form.

        Parameters
        ----------
        texts : str or iterable of str
            Any iterable (a generator over a file works; the texts are never held together).
        update_vocabulary : bool, default True
            Add unseen terms to the vocabulary (False: drop them, e.g. for queries).
        show_progress : bool, default False
            A tqdm progress bar (shown only if tokenizing takes over a second and tqdm is installed).

        Returns
        -------
        (ids, offsets) : int32 array (total tokens,), int64 array (n_texts + 1,)
            The ids of text i are ``ids[offsets[i]:offsets[i + 1]]``.

        Raises DTypeError if an item is not a str.

        >>> ids, offsets = Tokenizer().tokenize_packed(["one two", "", "two"])
        >>> ids.tolist(), offsets.tolist()
        ([0, 1, 1], [0, 2, 2, 3])
        """
        if isinstance(texts, str):
            texts = [texts]
        elif isinstance(texts, bytes) or not isinstance(texts, Iterable) or (
                isinstance(texts, np.ndarray) and texts.ndim == 0):
            raise DTypeError(f"texts: expected a str or an iterable of str, got {type(texts).__name__}")
        resolve = self._resolver(bool(update_vocabulary))
        bar = _progress_bar(show_progress, "tokenize", _total(texts))
        progress = bar.update if bar is not None else None
        try:
            if self._regex is None:
                ids, offsets, bad = _kernel.scan(texts, self.lowercase, self.min_length, self._cache,
                                                 resolve, progress)
            else:
                ids, offsets, bad = self._scan_regex(texts, resolve, progress)
        finally:
            if bar is not None:
                bar.close()
        if bad >= 0:
            raise DTypeError(f"texts[{bad}]: expected a str")
        return ids, offsets

    def tokenize(self, texts: Union[str, Iterable[str]], *, update_vocabulary: bool = True,
                 packed: bool = False, show_progress: bool = False) -> Union[list[list[int]], Packed]:
        """Term ids of every text: a list of lists of ints, or the packed pair with ``packed=True``.

        See :meth:`tokenize_packed` for the parameters; a single str is one text.

        >>> Tokenizer(stopwords=None).tokenize("To be or not to be")
        [[0, 1, 2, 3, 0, 1]]
        """
        ids, offsets = self.tokenize_packed(texts, update_vocabulary=update_vocabulary,
                                            show_progress=show_progress)
        if packed:
            return ids, offsets
        flat = ids.tolist()
        bounds = offsets.tolist()
        return [flat[bounds[i]:bounds[i + 1]] for i in range(len(bounds) - 1)]

    def lookup_packed(self, token_lists: Iterable[Iterable[str]], *, update_vocabulary: bool = True) -> Packed:
        """Packed ids of already tokenized documents (lists of term strings, used as they are).

        No lowercasing, stopwords or stemming: each string is a term. Unseen terms are added
        (or dropped with ``update_vocabulary=False``).

        >>> tok = Tokenizer()
        >>> ids, offsets = tok.lookup_packed([["x", "y"], ["y"]])
        >>> ids.tolist(), offsets.tolist()
        ([0, 1, 1], [0, 2, 3])
        """
        ids, offsets, bad = _kernel.lookup(token_lists, self._vocab, bool(update_vocabulary))
        if bad >= 0:
            raise DTypeError(f"documents[{bad}]: expected a list of str tokens")
        return ids, offsets

    def empty_copy(self) -> "Tokenizer":
        """A tokenizer with the same settings and an empty vocabulary."""
        new = copy.copy(self)
        new._vocab = {}
        new._cache = {}
        return new

    def copy(self) -> "Tokenizer":
        """A tokenizer with the same settings and a copy of the vocabulary (growing one never
        changes the other). O(vocabulary)."""
        new = copy.copy(self)
        new._vocab = dict(self._vocab)
        new._cache = dict(self._cache)
        return new

    def _set_terms(self, terms: list[str]) -> None:
        vocab = {t: i for i, t in enumerate(terms)}
        if len(vocab) != len(terms):
            raise InvalidValueError("terms: duplicate terms in the vocabulary")
        self._vocab = vocab
        self._cache = {}

    # --- persistence helpers (used by BM25.save / load) -------------------------------------

    def config(self) -> dict[str, Any]:
        """JSON-serialisable settings (raises InvalidValueError for a callable stemmer)."""
        if self.stemmer is not None and not isinstance(self.stemmer, str):
            raise InvalidValueError("a tokenizer with a callable stemmer cannot be saved; use a Snowball language name")
        return {"lowercase": self.lowercase, "stopwords": self._stopwords_spec, "stemmer": self.stemmer,
                "pattern": self.pattern, "min_length": self.min_length}

    @classmethod
    def from_config(cls, config: dict[str, Any], terms: list[str]) -> "Tokenizer":
        """A tokenizer with the settings of `config` (as read from a saved index) and the
        vocabulary `terms` (id order).

        Settings from a file are untrusted: every key and type is checked, and a `pattern` is
        accepted only if it is one of :data:`PATTERNS` (by name or by value); any other raises
        CorruptFileError (load such an index with ``BM25.load(path, tokenizer=...)``).
        """
        keys = {"lowercase", "stopwords", "stemmer", "pattern", "min_length"}
        if not isinstance(config, dict) or not set(config) <= keys:
            raise CorruptFileError(f"tokenizer settings: expected a dict with keys among {sorted(keys)}")
        if not isinstance(config.get("lowercase", True), bool) or not isinstance(config.get("min_length", 2), int):
            raise CorruptFileError("tokenizer settings: lowercase must be a bool and min_length an int")
        stop = config.get("stopwords", "en")
        if not (stop is None or stop == "en" or (isinstance(stop, list) and all(isinstance(w, str) for w in stop))):
            raise CorruptFileError("tokenizer settings: stopwords must be 'en', null or a list of str")
        if not (config.get("stemmer") is None or isinstance(config.get("stemmer"), str)):
            raise CorruptFileError("tokenizer settings: stemmer must be a language name or null")
        pattern = config.get("pattern")
        if pattern is not None and pattern not in PATTERNS and pattern not in PATTERNS.values():
            raise CorruptFileError(
                f"tokenizer settings: the saved pattern {str(pattern)[:80]!r} is not one of the vetted patterns "
                f"{sorted(PATTERNS)}; a regular expression read from a file is never compiled. If you trust "
                "this index, load it with BM25.load(path, tokenizer=Tokenizer(pattern=...)) and the same settings")
        tok = cls(**config)
        tok._set_terms(terms)
        return tok
