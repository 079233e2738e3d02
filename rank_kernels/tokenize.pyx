"""Text scanning for the tokenizer (the "tokenize" kernel family).

`scan` reads each str through its own code-unit buffer (1, 2 or 4 bytes per character), with
no regex engine and no intermediate list of token strings: a token is a maximal run of
Unicode letters and digits (``str.isalnum`` per character, with an ASCII table as the fast
path). Each token of at least `min_len` characters is looked up in a dict `cache` (word ->
term id, or -1 for a dropped word); on a miss a Python callable `resolve(word)` decides (and
fills the cache when it wants to). Ids are appended to a growing C buffer, so the result is the
packed form directly: ``ids`` (int32) and ``offsets`` (int64, n_docs + 1).

With ``segment=True`` (the scanner of tokenizers made since scripts were handled), a word
also keeps the combining marks (Unicode categories Mn, Mc, Me) that follow its letters, so
Devanagari, Thai, Arabic or Hebrew words with vowel signs stay whole; and runs of CJK
characters (Han, Hiragana, Katakana, Hangul) or of Thai become overlapping bigrams of
characters (a character with its following marks), as Lucene's CJK analyzer does: a run of
one character is a unigram. Bigrams are kept whatever `min_len`. A run of CJK characters
after Latin letters starts a new token ("iphone手机" is "iphone", "手机").
"""
from cpython.unicode cimport PyUnicode_Check
from libc.stdint cimport int32_t, int64_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcpy

import numpy as np

cdef extern from "Python.h":
    int PyUnicode_KIND(object u)
    void *PyUnicode_DATA(object u)
    Py_ssize_t PyUnicode_GET_LENGTH(object u)
    Py_UCS4 PyUnicode_READ(int kind, void *data, Py_ssize_t index) nogil
    bint Py_UNICODE_ISALNUM(Py_UCS4 ch) nogil
    object PyUnicode_Substring(object u, Py_ssize_t start, Py_ssize_t end)


cdef unsigned char ASCII_ALNUM[128]
for _c in range(128):
    ASCII_ALNUM[_c] = chr(_c).isalnum()


cdef inline bint _alnum(Py_UCS4 ch) noexcept nogil:
    if ch < 128:
        return ASCII_ALNUM[ch]
    return Py_UNICODE_ISALNUM(ch)


# Character classes of the segmenting scanner.
DEF C_OTHER = 0   # separator: ends a token
DEF C_WORD = 1    # letter or digit of a word
DEF C_MARK = 2    # combining mark: continues the token it follows, else ignored
DEF C_CJK = 3     # Han, Hiragana, Katakana, Hangul: bigrams
DEF C_THAI = 4    # Thai: bigrams

cdef const unsigned char *_CLASS = NULL  # classes of the Basic Multilingual Plane, built on first use
_class_table = None


cdef inline bint _is_cjk(Py_UCS4 ch) noexcept nogil:
    return ((0x3040 <= ch <= 0x30FF)       # Hiragana, Katakana
            or (0x3400 <= ch <= 0x4DBF)    # CJK Extension A
            or (0x4E00 <= ch <= 0x9FFF)    # CJK Unified Ideographs
            or (0xAC00 <= ch <= 0xD7AF)    # Hangul syllables
            or (0x1100 <= ch <= 0x11FF)    # Hangul Jamo
            or (0x3130 <= ch <= 0x318F)    # Hangul compatibility Jamo
            or (0xA960 <= ch <= 0xA97F)    # Hangul Jamo Extended-A
            or (0xD7B0 <= ch <= 0xD7FF)    # Hangul Jamo Extended-B
            or (0x31F0 <= ch <= 0x31FF)    # Katakana phonetic extensions
            or (0xF900 <= ch <= 0xFAFF)    # CJK compatibility ideographs
            or (0xFF66 <= ch <= 0xFF9F)    # halfwidth Katakana
            or (0xFFA0 <= ch <= 0xFFDC)    # halfwidth Hangul
            or (0x1AFF0 <= ch <= 0x1AFFF)  # Kana Extended-B
            or (0x1B000 <= ch <= 0x1B16F)  # Kana supplement and extended (Hentaigana included)
            or (0x20000 <= ch <= 0x3FFFF)) # CJK Extensions B and later


def _build_class_table():
    """The class of every BMP code point (65,536 bytes), from the interpreter's Unicode data."""
    global _CLASS, _class_table
    import unicodedata
    cdef bytearray t = bytearray(65536)
    cdef Py_UCS4 ch
    cdef Py_ssize_t code
    for code in range(65536):
        ch = <Py_UCS4>code
        if Py_UNICODE_ISALNUM(ch):
            t[code] = C_CJK if _is_cjk(ch) else (C_THAI if 0x0E00 <= ch <= 0x0E7F else C_WORD)
        elif unicodedata.category(chr(code))[0] == "M":
            t[code] = C_MARK
    if _class_table is None:  # the first table built stays (threads building at once agree on it)
        _class_table = bytes(t)
    _CLASS = <const unsigned char *>_class_table  # _class_table keeps the buffer alive


cdef inline int _cls(Py_UCS4 ch) noexcept nogil:
    if ch < 128:
        return ASCII_ALNUM[ch]
    if ch < 65536:
        return _CLASS[ch]
    if Py_UNICODE_ISALNUM(ch):
        return C_CJK if _is_cjk(ch) else C_WORD
    return C_OTHER


cdef inline int _emit(_Buffer buf, str text, Py_ssize_t start, Py_ssize_t end, dict cache, resolve) except -1:
    cdef str word = PyUnicode_Substring(text, start, end)
    cdef object hit = cache.get(word)
    cdef long v
    if hit is None:
        hit = resolve(word)
    v = hit
    if v >= 0:
        buf.push_id(<int32_t>v)
    return 0


cdef int _grow(void **p, Py_ssize_t *cap, size_t size) except -1:
    """Double the capacity of the array *p of *cap items of `size` bytes, or MemoryError."""
    cdef void *q = realloc(p[0], 2 * cap[0] * size)
    if q == NULL:
        raise MemoryError()
    p[0] = q
    cap[0] *= 2
    return 0


cdef class _Buffer:
    """A growable int32 (ids) and int64 (offsets) pair of C arrays."""
    cdef int32_t *ids
    cdef int64_t *offsets
    cdef Py_ssize_t n_ids, cap_ids, n_off, cap_off

    def __cinit__(self):
        self.cap_ids = 1 << 16
        self.cap_off = 1 << 12
        self.ids = <int32_t *>malloc(self.cap_ids * sizeof(int32_t))
        self.offsets = <int64_t *>malloc(self.cap_off * sizeof(int64_t))
        if self.ids == NULL or self.offsets == NULL:
            raise MemoryError()
        self.offsets[0] = 0
        self.n_off = 1
        self.n_ids = 0

    def __dealloc__(self):
        free(self.ids)
        free(self.offsets)

    cdef int push_id(self, int32_t v) except -1:
        if self.n_ids == self.cap_ids:
            _grow(<void **>&self.ids, &self.cap_ids, sizeof(int32_t))
        self.ids[self.n_ids] = v
        self.n_ids += 1
        return 0

    cdef int end_doc(self) except -1:
        if self.n_off == self.cap_off:
            _grow(<void **>&self.offsets, &self.cap_off, sizeof(int64_t))
        self.offsets[self.n_off] = self.n_ids
        self.n_off += 1
        return 0

    cdef tuple result(self, Py_ssize_t bad):
        """(ids int32, offsets int64, bad): copies of what was pushed, and the scanner's `bad`."""
        ids = np.empty(self.n_ids, np.int32)
        offsets = np.empty(self.n_off, np.int64)
        cdef int32_t[::1] vi = ids
        cdef int64_t[::1] vo = offsets
        if self.n_ids:
            memcpy(&vi[0], self.ids, self.n_ids * sizeof(int32_t))
        memcpy(&vo[0], self.offsets, self.n_off * sizeof(int64_t))
        return ids, offsets, bad


def scan(texts, bint lower, Py_ssize_t min_len, dict cache, resolve, progress=None,
         Py_ssize_t every=1024, bint segment=False):
    """Token ids of every text of the iterable `texts` (see the module docstring).

    Returns (ids int32, offsets int64, bad) where bad is -1, or the position of the first
    item that is not a str (scanning stops there). `progress(n)` is called every `every`
    texts with the number of texts done since the last call.
    """
    cdef _Buffer buf = _Buffer()
    cdef Py_ssize_t n = 0, since = 0
    cdef str text
    if segment and _CLASS == NULL:
        _build_class_table()
    for obj in texts:
        if not PyUnicode_Check(obj):
            return buf.result(n)
        text = obj.lower() if lower else obj
        if segment:
            _scan_text_segment(buf, text, min_len, cache, resolve)
        else:
            _scan_text(buf, text, min_len, cache, resolve)
        buf.end_doc()
        n += 1
        if progress is not None:
            since += 1
            if since == every:
                progress(since)
                since = 0
    if progress is not None and since:
        progress(since)
    return buf.result(-1)


cdef int _scan_text(_Buffer buf, str text, Py_ssize_t min_len, dict cache, resolve) except -1:
    """The ids of one text's runs of letters and digits (of min_len or more) into buf."""
    cdef int kind = PyUnicode_KIND(text)
    cdef void *data = PyUnicode_DATA(text)
    cdef Py_ssize_t length = PyUnicode_GET_LENGTH(text), i = 0, start
    while i < length:
        if not _alnum(PyUnicode_READ(kind, data, i)):
            i += 1
            continue
        start = i
        i += 1
        while i < length and _alnum(PyUnicode_READ(kind, data, i)):
            i += 1
        if i - start >= min_len:
            _emit(buf, text, start, i, cache, resolve)
    return 0


cdef int _scan_text_segment(_Buffer buf, str text, Py_ssize_t min_len, dict cache, resolve) except -1:
    """The ids of one text's words (with their marks) and CJK / Thai bigrams into buf."""
    cdef int kind = PyUnicode_KIND(text)
    cdef void *data = PyUnicode_DATA(text)
    cdef Py_ssize_t length = PyUnicode_GET_LENGTH(text), i = 0, start, prev, unit
    cdef int c, run
    while i < length:
        c = _cls(PyUnicode_READ(kind, data, i))
        if c == C_OTHER or c == C_MARK:
            i += 1
            continue
        start = i
        i += 1
        if c == C_WORD:
            while i < length:
                c = _cls(PyUnicode_READ(kind, data, i))
                if c != C_WORD and c != C_MARK:
                    break
                i += 1
            if i - start >= min_len:
                _emit(buf, text, start, i, cache, resolve)
            continue
        # a bigram script: units are one character and its following marks
        run = c
        while i < length and _cls(PyUnicode_READ(kind, data, i)) == C_MARK:
            i += 1
        prev = start
        while i < length and _cls(PyUnicode_READ(kind, data, i)) == run:
            unit = i
            i += 1
            while i < length and _cls(PyUnicode_READ(kind, data, i)) == C_MARK:
                i += 1
            _emit(buf, text, prev, i, cache, resolve)
            prev = unit
        if prev == start:  # a lone character: a unigram
            _emit(buf, text, start, i, cache, resolve)
    return 0


def lookup(tokens_lists, dict vocab, bint add):
    """Packed ids of lists of token strings through `vocab` (token -> id).

    With `add`, unseen tokens get the next ids (vocab grows, `words` is not touched here);
    without, they are dropped. Returns (ids int32, offsets int64, bad) like `scan`, bad being
    the position of the first list holding a non-str token.
    """
    cdef _Buffer buf = _Buffer()
    cdef Py_ssize_t n = 0
    cdef object hit
    for tokens in tokens_lists:
        for tok in tokens:
            if not PyUnicode_Check(tok):
                return buf.result(n)
            hit = vocab.get(tok)
            if hit is None:
                if not add:
                    continue
                hit = len(vocab)
                vocab[tok] = hit
            buf.push_id(<int32_t>hit)
        buf.end_doc()
        n += 1
    return buf.result(-1)
