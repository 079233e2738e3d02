"""Text to term ids: lowercasing, a Unicode word scanner, stopwords, stemming, a vocabulary.

The default path scans each ``str`` in compiled code (no regex engine in the loop) and looks
every word up in a per-word cache, so stopword filtering and stemming (PyStemmer's Snowball
stemmers) run once per distinct word, not once per occurrence.

Languages: every Snowball language of PyStemmer (``Stemmer.algorithms()``), the languages of
the ``stop-words`` package, Chinese, Japanese, Korean and Thai, and "auto" (each word by its
script); see :func:`languages`. The scanner keeps combining marks inside words and splits CJK
and Thai text into overlapping character bigrams, whatever the language.
"""
from __future__ import annotations

import copy
import functools
import re
import unicodedata
import warnings
from typing import Any, Callable, Iterable, Optional, Union

import numpy as np

from rank.errors import (CorruptFileError, DTypeError, InvalidValueError, LanguageWarning, MissingDependencyError,
                         UnknownMethodError)
from rank_kernels import tokenize as _kernel

__all__ = ["Tokenizer", "STOPWORDS_EN", "PATTERNS", "LanguageWarning", "languages"]

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


class _Default:
    """The default of `stemmer` and `stopwords`: those of the tokenizer's language."""

    def __repr__(self) -> str:
        return "<the language's>"


_DEFAULT: Any = _Default()

#: Languages that split into character bigrams: no stemmer, no stopwords (the bigrams are not
#: words; Lucene's CJK analyzer, too, drops only English stopwords).
_BIGRAM_LANGUAGES = ("chinese", "japanese", "korean", "thai")
#: Snowball variants whose stopwords are those of another language.
_STOPWORDS_OF = {"porter": "english", "dutch_porter": "dutch"}
#: With language="auto": the language of a word, by the script of its first letter.
_SCRIPT_LANGUAGE = {"LATIN": "english", "CYRILLIC": "russian", "GREEK": "greek", "ARABIC": "arabic",
                    "HEBREW": "hebrew", "DEVANAGARI": "hindi", "ARMENIAN": "armenian", "TAMIL": "tamil",
                    "GUJARATI": "gujarati"}


def _snowball() -> tuple[str, ...]:
    try:
        import Stemmer  # type: ignore[import-untyped,import-not-found,unused-ignore]
    except ImportError:
        raise MissingDependencyError(
            "stemmer: PyStemmer is needed for Snowball stemming; install it with pip install PyStemmer "
            "(a dependency of rank-kernels)") from None
    return tuple(Stemmer.algorithms())


@functools.lru_cache(maxsize=None)
def _stopword_package() -> tuple[dict[str, str], frozenset[str]]:
    """(code -> language, languages) of the stop-words package (empty if it is missing)."""
    try:
        import stop_words  # type: ignore[import-untyped,import-not-found,unused-ignore]
    except ImportError:
        return {}, frozenset()
    mapping = dict(stop_words.LANGUAGE_MAPPING)
    return mapping, frozenset(mapping.values())


@functools.lru_cache(maxsize=None)
def _package_stopwords(language: str) -> frozenset[str]:
    import stop_words  # type: ignore[import-untyped,import-not-found,unused-ignore]

    # entries are trimmed of blanks, a byte-order mark and stray quotes or commas (the package's
    # Hebrew list is written as JSON fragments, '"אבל",'); multi-word entries never match a token
    words = (w.strip().lstrip("\ufeff").strip('",\'').strip().lower() for w in stop_words.get_stop_words(language))
    return frozenset(w for w in words if w)


def languages() -> dict[str, dict[str, Any]]:
    """The languages `Tokenizer(language=...)` accepts, with what each brings.

    Returns a dict: language name -> ``{"stemmer": Snowball name or None, "stopwords": source}``
    where the source is ``"lucene"`` (English: the 33 words of Lucene's classic stop set),
    ``"stop-words"`` (the list of the stop-words package) or None (no list). Plus "auto".

    >>> languages()["french"]
    {'stemmer': 'french', 'stopwords': 'stop-words'}
    >>> languages()["japanese"]
    {'stemmer': None, 'stopwords': None}
    """
    return {name: dict(info) for name, info in _languages().items()}  # a copy: the table is shared


@functools.lru_cache(maxsize=None)
def _languages() -> dict[str, dict[str, Any]]:
    _, with_list = _stopword_package()
    out: dict[str, dict[str, Any]] = {}
    for name in sorted(set(_snowball()) | with_list | set(_BIGRAM_LANGUAGES)):
        stem = name if name in _snowball() else None
        source: Optional[str] = None
        if name in _BIGRAM_LANGUAGES:
            source = None
        elif _STOPWORDS_OF.get(name, name) == "english":
            source = "lucene"
        elif _STOPWORDS_OF.get(name, name) in with_list:
            source = "stop-words"
        out[name] = {"stemmer": stem, "stopwords": source}
    out["auto"] = {"stemmer": "auto", "stopwords": "by script"}
    return out


def _resolve_language(language: Any) -> str:
    if not isinstance(language, str):
        raise DTypeError(f"language: expected a str, got {type(language).__name__}")
    name = language.strip().lower()
    known = _languages()
    if name not in known:
        name = _stopword_package()[0].get(name, {"th": "thai"}.get(name, name))
    if name not in known:
        raise UnknownMethodError(f"language: unknown language {language!r}; valid: {', '.join(known)}")
    return name


def _script(word: str) -> Optional[str]:
    """The script of the first letter of `word` (the first word of its Unicode name), or None."""
    for ch in word:
        if ch.isalpha():
            return unicodedata.name(ch, "").split(" ", 1)[0] or None
    return None


def _language_stopwords(name: str) -> frozenset[str]:
    """The stopword set of a language (empty if it has none)."""
    if name == "auto":
        words: set[str] = set()
        for script, lang in _SCRIPT_LANGUAGE.items():  # each list restricted to its own script
            words.update(w for w in _language_stopwords(lang) if _script(w) == script)
        return frozenset(words)
    source = _languages()[name]["stopwords"]
    if source == "lucene":
        return STOPWORDS_EN
    if source == "stop-words":
        return _package_stopwords(_STOPWORDS_OF.get(name, name))
    return frozenset()


@functools.lru_cache(maxsize=None)
def _snowball_stemmer(name: str) -> Callable[[str], str]:
    import Stemmer  # type: ignore[import-untyped,import-not-found,unused-ignore]

    return Stemmer.Stemmer(name).stemWord


def _auto_stemmer(word: str) -> str:
    """Stem `word` with the Snowball stemmer of its script's language (unchanged if none)."""
    lang = _SCRIPT_LANGUAGE.get(_script(word) or "")
    if lang is None or lang not in _snowball():
        return word
    return _snowball_stemmer(lang)(word)


def progress_bar(show: bool, desc: str, total: Optional[int]) -> Any:
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
    stopwords : language name, None or iterable of str, default: the language's
        Words dropped before stemming. By default the list of `language` (English: the
        33-word set of Lucene's classic analyzer, :data:`STOPWORDS_EN`; other languages: the
        list of the stop-words package; see :func:`languages`). A language name or code
        ("en", "french", "de") picks that language's list; None keeps every word.
    stemmer : None, str or callable, default: the language's
        By default the Snowball stemmer of `language` (PyStemmer), if it has one. None (no
        stemming), a Snowball language name ("english", "french", ...; ``Stemmer.algorithms()``),
        "auto" (each word with the stemmer of its script's language), or any callable mapping
        a word to its stem. Each distinct word is stemmed once (per-word cache).
    language : str, default "english"
        The language whose stemmer and stopwords are the defaults: a name of :func:`languages`
        or its ISO 639-1 code ("fr"); "auto" takes each word's language from its script (Latin:
        English, Cyrillic: Russian, Greek, Arabic, Hebrew, Devanagari: Hindi, Armenian, Tamil,
        Gujarati), word by word, so a document or query mixing scripts is handled token by
        token. A language with a stemmer but no stopword list warns (:class:`LanguageWarning`).
    scripts : bool, default True
        The scanner described below (combining marks kept in words, CJK and Thai bigrams).
        False gives the scanner of indexes saved before it (runs of ``str.isalnum``
        characters only); loading such an index sets it.
    pattern : str, optional
        A regular expression whose matches are the words (``re.findall``), instead of the
        built-in scanner (maximal runs of Unicode letters and digits, as ``str.isalnum``); or
        the name of a vetted one in :data:`PATTERNS` ("sklearn", "word", "nonspace"). An
        invalid expression raises InvalidValueError. A saved index keeps the pattern, but
        loading compiles only the vetted ones: an index saved with any other pattern must be
        loaded with ``BM25.load(path, tokenizer=Tokenizer(pattern=...))`` (a regular
        expression read from a file could backtrack for hours).
        The matches are the words as they are: no CJK or Thai bigrams.
    min_length : int, default 2
        Words shorter than this are dropped (2 matches bm25s and scikit-learn, whose default
        pattern is ``\\w\\w+``); only for the built-in scanner, and not for CJK or Thai bigrams.

    The built-in scanner takes maximal runs of Unicode letters and digits (``str.isalnum``)
    with the combining marks that follow them (so Devanagari, Thai, Arabic or Hebrew vowel
    signs stay inside their word). Runs of Han, Hiragana, Katakana, Hangul or Thai characters
    become overlapping bigrams of characters (a character with its marks), as Lucene's CJK
    analyzer does; a run of one character stays a unigram ("東京都" gives "東京", "京都").
    Thai is written without spaces and no dictionary segmenter is bundled: bigrams are the
    dictionary-free choice, matching any word of two or more characters. Text mixing scripts
    is split where the script changes ("iphone手机": "iphone", "手机").

    The vocabulary maps each distinct (stemmed) term to an id 0, 1, 2, ... in order of first
    appearance. `tokenize` adds new terms unless ``update_vocabulary=False`` (queries), where
    unknown words are dropped. Tokenizing with vocabulary updates is not thread-safe; with
    ``update_vocabulary=False`` it is.

    Complexity: O(total characters) plus one dict lookup per word occurrence; stopword checks
    and stemming once per distinct word.

    >>> tok = Tokenizer()
    >>> tok.tokenize(["The cats sat", "a cat, a hat!"])
    [[0, 1], [0, 2]]
    >>> tok.vocabulary
    {'cat': 0, 'sat': 1, 'hat': 2}
    >>> tok.tokenize(["hats dog cat"], update_vocabulary=False)
    [[2, 0]]
    >>> Tokenizer(language="auto").tokenize("東京の天気 weather Москвы")
    [[0, 1, 2, 3, 4, 5]]
    """

    def __init__(self, lowercase: bool = True, stopwords: Union[str, Iterable[str], None] = _DEFAULT,
                 stemmer: Union[str, Callable[[str], str], None] = _DEFAULT, pattern: Optional[str] = None,
                 min_length: int = 2, *, language: str = "english", scripts: bool = True) -> None:
        self.lowercase = bool(lowercase)
        self.language = _resolve_language(language)
        info = _languages()[self.language]
        if not isinstance(scripts, bool):
            raise DTypeError(f"scripts: expected a bool, got {type(scripts).__name__}")
        self._segment = scripts  # the scanner with marks and bigrams (False: indexes saved before it)
        if stemmer is _DEFAULT:
            stemmer = info["stemmer"]
        if stopwords is _DEFAULT:
            if stemmer is not None and info["stopwords"] is None and self.language not in _BIGRAM_LANGUAGES:
                warnings.warn(f"language {self.language!r} has a stemmer but no stopword list (none in the "
                              "stop-words package): every word is kept; pass stopwords=[...] to drop some",
                              LanguageWarning, stacklevel=2)
            self.stopwords: frozenset[str] = _language_stopwords(self.language)
            self._stopwords_spec: Any = ("en" if self.stopwords is STOPWORDS_EN else
                                         sorted(self.stopwords) if self.stopwords else None)
        elif stopwords is None:
            self.stopwords = frozenset()
            self._stopwords_spec = None
        elif isinstance(stopwords, str):
            if stopwords.strip().lower() in ("en", "english"):
                self.stopwords, self._stopwords_spec = STOPWORDS_EN, "en"
            else:
                try:
                    name = _resolve_language(stopwords)
                except UnknownMethodError:
                    raise UnknownMethodError(
                        f"stopwords: expected a language ({', '.join(l for l in languages() if _language_stopwords(l))}), "
                        f"None or an iterable of words, got {stopwords!r}") from None
                words_of = _language_stopwords(name)
                if not words_of:
                    raise UnknownMethodError(f"stopwords: the language {name!r} has no stopword list; valid: "
                                             f"{', '.join(l for l in languages() if _language_stopwords(l))}")
                self.stopwords = words_of
                self._stopwords_spec = "en" if words_of is STOPWORDS_EN else sorted(words_of)
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
            if stemmer == "auto":
                _snowball()
                return _auto_stemmer
            if stemmer not in _snowball():
                langs = ", ".join(_snowball())
                raise UnknownMethodError(f"stemmer: unknown Snowball language {stemmer!r}; valid: auto, {langs}")
            return _snowball_stemmer(stemmer)
        if callable(stemmer):
            return stemmer
        raise DTypeError(f"stemmer: expected None, a Snowball language name or a callable, got {type(stemmer).__name__}")

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        if isinstance(self.stemmer, str):  # a PyStemmer object does not pickle: rebuilt from its name
            state["_stem"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if isinstance(self.stemmer, str):
            self._stem = self._make_stemmer(self.stemmer)

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
        bar = progress_bar(show_progress, "tokenize", _total(texts))
        progress = bar.update if bar is not None else None
        try:
            if self._regex is None:
                ids, offsets, bad = _kernel.scan(texts, self.lowercase, self.min_length, self._cache,
                                                 resolve, progress, segment=self._segment)
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

        >>> Tokenizer(stopwords=None, stemmer=None).tokenize("To be or not to be")
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
        config: dict[str, Any] = {"lowercase": self.lowercase, "stopwords": self._stopwords_spec,
                                  "stemmer": self.stemmer, "pattern": self.pattern, "min_length": self.min_length}
        config["language"] = self.language
        config["scripts"] = self._segment  # settings saved before languages lack it: read as False
        return config

    @staticmethod
    def same_settings(a: dict[str, Any], b: dict[str, Any]) -> bool:
        """Whether two :meth:`config` dicts tokenize alike (missing keys read as the format had
        them before they existed; the language only names the defaults, so it is not compared;
        the scanner version does not matter under a regular-expression pattern)."""
        old = {"lowercase": True, "stopwords": "en", "stemmer": None, "pattern": None, "min_length": 2,
               "scripts": False}
        na, nb = {**old, **a}, {**old, **b}
        for n in (na, nb):
            n.pop("language", None)
            if n["pattern"] is not None:
                n.pop("scripts")
        return na == nb

    @classmethod
    def from_config(cls, config: dict[str, Any], terms: list[str]) -> "Tokenizer":
        """A tokenizer with the settings of `config` (as read from a saved index) and the
        vocabulary `terms` (id order).

        Settings from a file are untrusted: every key and type is checked, and a `pattern` is
        accepted only if it is one of :data:`PATTERNS` (by name or by value); any other raises
        CorruptFileError (load such an index with ``BM25.load(path, tokenizer=...)``).

        A missing key takes the value the format had before it existed, not today's default:
        settings saved before languages (no "scripts" key) give the scanner of that time (no
        marks inside words, no bigrams), no stemming unless "stemmer" is given, and the English
        stopwords unless "stopwords" is given; so an index loads and searches as it was built.
        """
        keys = {"lowercase", "stopwords", "stemmer", "pattern", "min_length", "language", "scripts"}
        if not isinstance(config, dict) or not set(config) <= keys:
            raise CorruptFileError(f"tokenizer settings: expected a dict with keys among {sorted(keys)}")
        if not isinstance(config.get("lowercase", True), bool) or not isinstance(config.get("min_length", 2), int):
            raise CorruptFileError("tokenizer settings: lowercase must be a bool and min_length an int")
        stop = config.get("stopwords", "en")
        if not (stop is None or stop == "en" or (isinstance(stop, list) and all(isinstance(w, str) for w in stop))):
            raise CorruptFileError("tokenizer settings: stopwords must be 'en', null or a list of str")
        if not (config.get("stemmer") is None or isinstance(config.get("stemmer"), str)):
            raise CorruptFileError("tokenizer settings: stemmer must be a language name or null")
        if not isinstance(config.get("language", "english"), str) or not isinstance(config.get("scripts", False), bool):
            raise CorruptFileError("tokenizer settings: language must be a str and scripts a bool")
        pattern = config.get("pattern")
        if pattern is not None and pattern not in PATTERNS and pattern not in PATTERNS.values():
            raise CorruptFileError(
                f"tokenizer settings: the saved pattern {str(pattern)[:80]!r} is not one of the vetted patterns "
                f"{sorted(PATTERNS)}; a regular expression read from a file is never compiled. If you trust "
                "this index, load it with BM25.load(path, tokenizer=Tokenizer(pattern=...)) and the same settings")
        args = dict(config)
        args.setdefault("scripts", False)
        args.setdefault("stopwords", "en")
        args.setdefault("stemmer", None)
        try:
            tok = cls(**args)
        except UnknownMethodError as e:
            raise CorruptFileError(f"tokenizer settings: {e}") from None
        tok._set_terms(terms)
        return tok
