"""Tokenizer: the compiled scanner against a slow pure-Python reference (and, for indexes saved
before scripts were handled, against the regular expression of that scanner), stopwords,
stemming (PyStemmer and callables, cached per word), vocabulary handling, input forms and errors."""
import re
import unicodedata

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rank.errors import DTypeError, InvalidValueError, UnknownMethodError
from rank.retrieve import Tokenizer
from rank.retrieve.tokenizer import STOPWORDS_EN

WORD = re.compile(r"[^\W_]+")  # runs of characters with str.isalnum(), as the scanner reads them


def ref_words_legacy(text, lowercase=True, stop=STOPWORDS_EN, min_length=2, stem=None):
    """The scanner of indexes saved before scripts: maximal runs of isalnum characters."""
    if lowercase:
        text = text.lower()
    out = []
    for w in WORD.findall(text):
        if len(w) < min_length or w in stop:
            continue
        out.append(stem(w) if stem else w)
    return out


def _kind(ch):
    """'w' word character, 'm' combining mark, 'cjk' / 'thai' bigram scripts, None separator."""
    if ch.isalnum():
        name = unicodedata.name(ch, "")
        if name.startswith(("CJK ", "HIRAGANA", "KATAKANA", "HENTAIGANA", "HANGUL", "HALFWIDTH KATAKANA",
                            "HALFWIDTH HANGUL")):
            return "cjk"
        if name.startswith("THAI"):
            return "thai"
        return "w"
    if unicodedata.category(ch).startswith("M"):
        return "m"
    return None


def ref_split(text):
    """Slow reference of the scanner: words (with their marks) and bigrams of CJK/Thai units."""
    out, i, n = [], 0, len(text)
    while i < n:
        k = _kind(text[i])
        if k in (None, "m"):
            i += 1
            continue
        if k == "w":
            j = i + 1
            while j < n and _kind(text[j]) in ("w", "m"):
                j += 1
            out.append(("w", text[i:j]))
            i = j
            continue
        units = []
        while i < n and _kind(text[i]) == k:
            j = i + 1
            while j < n and _kind(text[j]) == "m":
                j += 1
            units.append(text[i:j])
            i = j
        grams = [a + b for a, b in zip(units, units[1:])] or units
        out.extend(("b", g) for g in grams)
    return out


def ref_words(text, lowercase=True, stop=STOPWORDS_EN, min_length=2, stem=None):
    if lowercase:
        text = text.lower()
    out = []
    for kind, w in ref_split(text):
        if (kind == "w" and len(w) < min_length) or w in stop:
            continue
        out.append(stem(w) if stem else w)
    return out


def decode(tok, ids):
    terms = tok.terms
    return [[terms[i] for i in doc] for doc in ids]


TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Ünïcödé wörds, ÇA VA? naïve café — 東京 タワー 2024年",
    "",
    "a b c d",  # all shorter than 2
    "snake_case and e-mail x1y2 42 3.14 ½ ² ⅷ",
    "Ⅻ İstanbul ß straße ǅ",
    "\t\n  multiple   spaces\u00a0nbsp\u2003em ",
]


def legacy_tokenizer(**config):
    """A tokenizer as loaded from an index saved before scripts were handled."""
    return Tokenizer.from_config({"lowercase": True, "stopwords": "en", "stemmer": None, "pattern": None,
                                  "min_length": 2, **config}, [])


@pytest.mark.parametrize("lowercase", [True, False])
def test_matches_reference(lowercase):
    tok = Tokenizer(lowercase=lowercase, stemmer=None)
    ids = tok.tokenize(TEXTS)
    assert decode(tok, ids) == [ref_words(t, lowercase) for t in TEXTS]
    legacy = legacy_tokenizer(lowercase=lowercase)
    assert decode(legacy, legacy.tokenize(TEXTS)) == [ref_words_legacy(t, lowercase) for t in TEXTS]


def test_known_tokens_of_the_mixed_text():
    tok = Tokenizer(stemmer=None)
    assert decode(tok, tok.tokenize([TEXTS[1]])) == [
        ["ünïcödé", "wörds", "ça", "va", "naïve", "café", "東京", "タワ", "ワー", "2024", "年"]]


def test_every_letter_or_digit_is_classed_as_the_reference_says():
    """Every alphanumeric code point after a digit: a bigram script (CJK, Hangul, kana, Thai)
    splits from it, any other letter joins it. Random text found Hangul Jamo Extended-B
    (U+D7B0) joining; this covers every code point, not a sample."""
    tok = Tokenizer(stopwords=None, stemmer=None, min_length=1)
    texts = ["0" + chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF and chr(c).isalnum()]
    got = decode(tok, tok.tokenize(texts))
    want = [ref_words(t, True, frozenset(), 1) for t in texts]
    bad = [(hex(ord(t[1])), g, w) for t, g, w in zip(texts, got, want) if g != w]
    assert not bad, bad[:10]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(max_size=60), max_size=6), st.integers(1, 3))
def test_matches_reference_random_unicode(texts, min_length):
    tok = Tokenizer(stopwords=None, stemmer=None, min_length=min_length)
    ids = tok.tokenize(texts)
    assert decode(tok, ids) == [ref_words(t, True, frozenset(), min_length) for t in texts]
    legacy = legacy_tokenizer(stopwords=None, min_length=min_length)
    assert decode(legacy, legacy.tokenize(texts)) == [ref_words_legacy(t, True, frozenset(), min_length)
                                                      for t in texts]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(st.sampled_from("ab 東京タワー한국ภาษาไทยि\u0e34\u0301 .x"), max_size=30), max_size=4))
def test_matches_reference_on_script_boundaries(texts):
    tok = Tokenizer(stopwords=None, stemmer=None, min_length=1)
    assert decode(tok, tok.tokenize(texts)) == [ref_words(t, True, frozenset(), 1) for t in texts]


def test_vocabulary_in_first_appearance_order_and_query_mode():
    tok = Tokenizer(stopwords=None, stemmer=None, min_length=1)
    assert tok.tokenize(["b a b", "c a"]) == [[0, 1, 0], [2, 1]]
    assert tok.vocabulary == {"b": 0, "a": 1, "c": 2} and tok.terms == ["b", "a", "c"] and len(tok) == 3
    assert tok.tokenize(["zz c b zz"], update_vocabulary=False) == [[2, 0]]
    assert len(tok) == 3
    # a word unknown at query time becomes known after an update, then found by queries
    tok.tokenize(["zz"])
    assert tok.tokenize(["zz"], update_vocabulary=False) == [[3]]


def test_packed_form_and_generator_input():
    tok = Tokenizer()
    gen = (t for t in TEXTS)
    ids, offsets = tok.tokenize(gen, packed=True)
    assert ids.dtype == np.int32 and offsets.dtype == np.int64 and offsets.shape == (len(TEXTS) + 1,)
    lists = Tokenizer().tokenize(TEXTS)
    assert [ids[offsets[i]:offsets[i + 1]].tolist() for i in range(len(TEXTS))] == lists


def test_many_texts_grow_buffers():
    texts = [" ".join(f"w{(i * 7 + j) % 5000}" for j in range(30)) for i in range(3000)]
    tok = Tokenizer(stopwords=None, stemmer=None)
    ids, offsets = tok.tokenize_packed(texts)
    assert offsets[-1] == 90000 and len(tok) == 5000
    assert decode(tok, [ids[offsets[5]:offsets[6]]])[0] == texts[5].split()


def test_stopwords_options():
    text = "the cat and the hat"
    for stop, want in [("en", ["cat", "hat"]), (None, text.split()), (["cat", "hat"], ["the", "and", "the"])]:
        tok = Tokenizer(stopwords=stop, stemmer=None)
        assert decode(tok, tok.tokenize([text])) == [want]
    with pytest.raises(UnknownMethodError):
        Tokenizer(stopwords="klingon")
    with pytest.raises(DTypeError):
        Tokenizer(stopwords=[1, 2])


def test_snowball_stemming_matches_pystemmer():
    Stemmer = pytest.importorskip("Stemmer")
    stem = Stemmer.Stemmer("english").stemWord
    texts = ["Running runners ran quickly; generously generalized generations", "the connection connected"]
    tok = Tokenizer(stemmer="english")
    assert decode(tok, tok.tokenize(texts)) == [ref_words(t, stem=stem) for t in texts]
    fr = Tokenizer(stemmer="french", stopwords=None)
    assert decode(fr, fr.tokenize(["les chanteuses chantaient"])) == [
        [Stemmer.Stemmer("french").stemWord(w) for w in ["les", "chanteuses", "chantaient"]]]
    with pytest.raises(UnknownMethodError, match="english"):
        Tokenizer(stemmer="no-such-language")


def test_callable_stemmer_called_once_per_distinct_word():
    calls = []

    def stem(word):
        calls.append(word)
        return word[:3]

    tok = Tokenizer(stemmer=stem, stopwords=None)
    ids = tok.tokenize(["testing tested tester testing", "tested testing"])
    assert decode(tok, ids) == [["tes"] * 4, ["tes"] * 2]
    assert sorted(calls) == ["tested", "tester", "testing"]
    with pytest.raises(DTypeError):
        Tokenizer(stemmer=lambda w: 3, stopwords=None).tokenize(["word"])
    with pytest.raises(DTypeError):
        Tokenizer(stemmer=42)


def test_pattern_option():
    tok = Tokenizer(pattern=r"[a-z_]+", stopwords=None, stemmer=None)
    assert decode(tok, tok.tokenize(["snake_case x 42"])) == [["snake_case", "x"]]


def test_bad_inputs():
    tok = Tokenizer()
    with pytest.raises(DTypeError, match=r"texts\[1\]"):
        tok.tokenize(["fine", 3, "never read"])
    with pytest.raises(DTypeError, match=r"texts\[0\]"):
        Tokenizer(pattern=r"\w+").tokenize([None])
    with pytest.raises(DTypeError):
        tok.lookup_packed([["a"], [1]])
    with pytest.raises(InvalidValueError):
        Tokenizer(min_length=0)
    with pytest.raises(DTypeError):
        Tokenizer(pattern=5)


def test_same_tokens_as_bm25s_on_words_without_underscores():
    bm25s = pytest.importorskip("bm25s")
    rng = np.random.default_rng(0)
    vocab = ["Alpha", "beta", "the", "a", "GAMMA", "x", "42", "é", "naïve", "ok", "and", "of"]
    texts = [" ".join(rng.choice(vocab, size=rng.integers(0, 12))) + rng.choice([".", ", ", "!"]) for _ in range(50)]
    ref = bm25s.tokenize(texts, stopwords="en", return_ids=False, show_progress=False)
    tok = Tokenizer(stemmer=None)
    assert decode(tok, tok.tokenize(texts)) == ref
    stemmed = bm25s.tokenize(texts, stopwords="en", stemmer=pytest.importorskip("Stemmer").Stemmer("english"),
                             return_ids=False, show_progress=False)
    tok = Tokenizer()  # the default: English stopwords and stemming, as bm25s with its English stemmer
    assert decode(tok, tok.tokenize(texts)) == stemmed
