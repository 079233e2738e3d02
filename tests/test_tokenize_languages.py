"""Tokenizer languages: expected tokens written by hand for each script family, the stemmers and
stopword lists of every language, language="auto", the old scanner of indexes saved before
languages (a fixture written by that version), retrieval on a multilingual collection built
from translated strings of an installed package, and the CLI defaults on SciFact."""
import gettext
import glob
import json
import os
import re
import shutil
import warnings

import numpy as np
import pytest

from rank.errors import CorruptFileError, InvalidValueError, UnknownMethodError
from rank.retrieve import BM25, Tokenizer
from rank.retrieve.tokenizer import STOPWORDS_EN, LanguageWarning, languages

Stemmer = pytest.importorskip("Stemmer")
stop_words = pytest.importorskip("stop_words")

FIXTURE = os.path.join(os.path.dirname(__file__), "data", "bm25_before_languages")


def words(tok, text):
    ids = tok.tokenize(text)[0]
    terms = tok.terms
    return [terms[i] for i in ids]


def plain(**kw):
    """Segmentation only: no stemming, no stopwords."""
    return Tokenizer(stemmer=None, stopwords=None, **kw)


# --- one test per script family, tokens written by hand ------------------------------------------

def test_latin():
    assert words(plain(), "Ünïcödé wörds, ÇA VA? e\u0301te\u0301") == ["ünïcödé", "wörds", "ça", "va", "e\u0301te\u0301"]
    # a combining accent stays in its word (the old scanner cut "e\u0301te\u0301" into "e", "te")
    assert words(Tokenizer(), "The runners were running to the cats") == ["runner", "were", "run", "cat"]
    fr = Tokenizer(language="french")  # "les", "dans", "la" are French stopwords
    assert words(fr, "Les chanteuses chantaient dans la forêt") == [
        Stemmer.Stemmer("french").stemWord(w) for w in ("chanteuses", "chantaient", "forêt")]


def test_cyrillic():
    assert words(plain(language="russian"), "Москва — столица России.") == ["москва", "столица", "россии"]
    assert words(Tokenizer(language="russian"), "Москва — это столица России") == ["москв", "столиц", "росс"]


def test_greek():
    assert words(plain(language="greek"), "Η Αθήνα είναι η πρωτεύουσα της Ελλάδας") == [
        "αθήνα", "είναι", "πρωτεύουσα", "της", "ελλάδας"]
    tok = Tokenizer(language="greek")  # stop-words' Greek list is of Ancient Greek: γε, δέ, ἐν, ...
    assert {"γε", "δέ"} <= tok.stopwords
    assert words(tok, "Η Αθήνα δέ πρωτεύουσα γε") == [Stemmer.Stemmer("greek").stemWord(w) for w in ("αθήνα", "πρωτεύουσα")]


def test_arabic_keeps_vowel_marks_inside_words():
    assert words(plain(language="arabic"), "كَتَبَ الطالبُ الدرسَ، ثم نام.") == ["كَتَبَ", "الطالبُ", "الدرسَ", "ثم", "نام"]
    stem = Stemmer.Stemmer("arabic").stemWord
    assert words(Tokenizer(language="arabic"), "القاهرة هي عاصمة مصر") == [stem("القاهرة"), stem("عاصمة"), stem("مصر")]


def test_hebrew():
    assert words(plain(language="hebrew"), "שָׁלוֹם עולם, ירושלים") == ["שָׁלוֹם", "עולם", "ירושלים"]
    tok = Tokenizer(language="hebrew")  # no Snowball stemmer; stop-words' Hebrew list, unquoted
    assert tok.stemmer is None and "של" in tok.stopwords and not any('"' in w for w in tok.stopwords)
    assert words(tok, "הבית של דוד") == ["הבית", "דוד"]


def test_devanagari():
    assert words(plain(language="hindi"), "हिन्दी भाषा भारत में बोली जाती है।") == [
        "हिन्दी", "भाषा", "भारत", "में", "बोली", "जाती", "है"]
    tok = Tokenizer(language="hindi")  # "में" and "है" are in stop-words' Hindi list
    assert "है" in tok.stopwords and "में" in tok.stopwords
    stem = Stemmer.Stemmer("hindi").stemWord
    assert words(tok, "हिन्दी भाषा भारत में बोली जाती है") == [stem(w) for w in ("हिन्दी", "भाषा", "भारत", "बोली", "जाती")]


def test_thai_bigrams_with_marks_kept_on_their_letter():
    assert words(plain(language="thai"), "ภาษาไทย") == ["ภา", "าษ", "ษา", "าไ", "ไท", "ทย"]
    # ส ว ั ส ด ี : the vowel marks (Mn) stay with their consonant: units ส, วั, ส, ดี
    assert words(plain(language="thai"), "สวัสดี") == ["สวั", "วัส", "สดี"]
    assert words(plain(), "ก") == ["ก"]  # a lone character is a unigram, whatever min_length


def test_han_bigrams():
    assert words(plain(language="chinese"), "我爱北京天安门") == ["我爱", "爱北", "北京", "京天", "天安", "安门"]
    assert words(plain(language="chinese"), "中，国") == ["中", "国"]
    assert words(Tokenizer(language="chinese"), "北京") == ["北京"]


def test_japanese_kana_and_kanji():
    assert words(plain(language="japanese"), "ひらがなとカタカナ") == [
        "ひら", "らが", "がな", "なと", "とカ", "カタ", "タカ", "カナ"]
    assert words(plain(language="japanese"), "東京タワー・スカイツリー") == [
        "東京", "京タ", "タワ", "ワー", "スカ", "カイ", "イツ", "ツリ", "リー"]


def test_hangul():
    assert words(plain(language="korean"), "한국어 사전, 가") == ["한국", "국어", "사전", "가"]


def test_mixed_scripts_token_by_token():
    assert words(plain(), "iPhone手机 2024年 Москва東京") == ["iphone", "手机", "2024", "年", "москва", "東京"]


# --- languages, stemmers, stopwords ---------------------------------------------------------------

def test_every_snowball_language_is_a_language():
    known = languages()
    for name in Stemmer.algorithms():
        assert known[name]["stemmer"] == name
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", LanguageWarning)
            tok = Tokenizer(language=name)
        assert tok.stemmer == name
        stem = Stemmer.Stemmer(name).stemWord
        assert words(tok, "xyzwords") == [stem("xyzwords")]


def test_stopword_lists_come_from_the_stop_words_package():
    for name, info in languages().items():
        if info["stopwords"] != "stop-words":
            continue
        raw = stop_words.get_stop_words({"dutch_porter": "dutch"}.get(name, name))
        want = {w.strip().lstrip("\ufeff").strip('",\'').strip().lower() for w in raw}
        assert Tokenizer(language=name).stopwords == want - {""}
        assert len(want) > 40
    assert Tokenizer().stopwords == STOPWORDS_EN == Tokenizer(language="porter").stopwords
    assert words(Tokenizer(language="de"), "Die Katze und der Hund") == [
        Stemmer.Stemmer("german").stemWord(w) for w in ("katze", "hund")]
    # an explicit list of another language, and a language code
    tok = Tokenizer(language="english", stopwords="fr", stemmer=None)
    assert words(tok, "le chat and the dog") == ["chat", "and", "the", "dog"]


def test_a_stemmer_language_without_stopwords_warns():
    missing = [n for n, i in languages().items() if i["stemmer"] not in (None, "auto") and i["stopwords"] is None]
    assert "basque" in missing and "armenian" in missing
    for name in missing:
        with pytest.warns(LanguageWarning, match=name):
            tok = Tokenizer(language=name)
        assert tok.stopwords == frozenset()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Tokenizer(language="basque", stopwords=["eta"])  # a list given: no warning
        Tokenizer(language="basque", stemmer=None)  # no stemmer: no warning
        Tokenizer(language="japanese")  # bigram languages have neither, by design


def test_unknown_language_lists_the_supported_ones():
    with pytest.raises(UnknownMethodError, match="klingon.*valid: .*arabic.*english.*japanese.*thai"):
        Tokenizer(language="klingon")
    with pytest.raises(UnknownMethodError, match="stopwords.*klingon"):
        Tokenizer(stopwords="klingon")
    with pytest.raises(UnknownMethodError, match="no stopword list"):
        Tokenizer(stopwords="basque")
    with pytest.raises(UnknownMethodError, match="stemmer.*valid: auto, arabic"):
        Tokenizer(stemmer="hebrew")


def test_auto_takes_each_word_by_its_script():
    tok = Tokenizer(language="auto")
    text = "The cats of Москвы и Петербурга — 東京の猫 κάτοικοι δέ"
    en, ru, el = (Stemmer.Stemmer(n).stemWord for n in ("english", "russian", "greek"))
    # English drops "the", "of"; Russian drops "и"; Greek drops "δέ"
    assert words(tok, text) == [en("cats"), ru("москвы"), ru("петербурга"), "東京", "京の", "の猫", el("κάτοικοι")]
    assert "the" in tok.stopwords and "и" in tok.stopwords and "δέ" in tok.stopwords
    assert "die" not in tok.stopwords  # German shares the Latin script: Latin words are English
    assert tok.config()["stemmer"] == "auto"


def test_config_round_trip_and_pickle(tmp_path):
    import pickle

    for tok in (Tokenizer(), Tokenizer(language="french"), Tokenizer(language="auto"), plain(language="thai")):
        docs = ["Les chats et les chiens", "東京の猫", "Москва"]
        tok.tokenize(docs)
        back = Tokenizer.from_config(json.loads(json.dumps(tok.config())), tok.terms)
        assert back.config() == tok.config()
        assert back.tokenize(docs, update_vocabulary=False) == tok.tokenize(docs, update_vocabulary=False)
        clone = pickle.loads(pickle.dumps(tok))
        assert clone.tokenize(docs, update_vocabulary=False) == tok.tokenize(docs, update_vocabulary=False)
    bm = BM25(tokenizer=Tokenizer(language="french")).index(["Les chanteuses chantaient", "le chien dort"])
    bm.save(tmp_path / "fr")
    loaded = BM25.load(tmp_path / "fr")
    assert loaded.tokenizer.config() == bm.tokenizer.config() and loaded.tokenizer.language == "french"
    np.testing.assert_array_equal(loaded.get_scores("chanteuse"), bm.get_scores("chanteuse"))
    assert loaded.get_scores("chanteuse")[0] > 0  # stemmed like the documents
    with pytest.raises(CorruptFileError):
        Tokenizer.from_config({"language": "klingon", "scripts": True}, [])
    with pytest.raises(CorruptFileError):
        Tokenizer.from_config({"scripts": "yes"}, [])


# --- indexes saved before languages -------------------------------------------------------------

def test_an_index_saved_before_languages_searches_as_it_was_built(tmp_path):
    with open(os.path.join(FIXTURE, "expected.json"), encoding="utf-8") as f:
        expected = json.load(f)
    bm = BM25.load(os.path.join(FIXTURE, "index"))
    tok = bm.tokenizer
    assert tok.stemmer is None and tok.stopwords == STOPWORDS_EN and not tok._segment
    for q in expected["queries"]:
        assert tok.tokenize(q["query"], update_vocabulary=False)[0] == q["term_ids"], q["query"]
        assert bm.get_scores(q["query"]).tolist() == q["scores"], q["query"]
        idx, _ = bm.search([q["query"]], k=3)
        assert idx[0].tolist() == q["top3"], q["query"]
    # today's defaults would answer differently: "runners" finds "runner", "東京" finds the bigram
    new = BM25().index(["Running runners run the marathon", "The runner ran a quick race", "東京タワーは東京にある"])
    assert new.get_scores("東京")[2] > 0 and bm.get_scores("東京")[2] == 0
    assert new.get_scores("runners")[1] > 0 and bm.get_scores("runners")[1] == 0
    # saved again, it keeps its settings (no scripts key: the old scanner)
    bm.add(["Running late"], ids=["late"])
    bm.save(tmp_path / "again")
    meta = json.load(open(tmp_path / "again" / "meta.json"))
    assert meta["tokenizer"] == {**expected["tokenizer"], "language": "english", "scripts": False}
    assert Tokenizer.same_settings(meta["tokenizer"], expected["tokenizer"])
    assert Tokenizer(**meta["tokenizer"]).config() == meta["tokenizer"]  # the settings rebuild it
    again = BM25.load(tmp_path / "again")
    assert not again.tokenizer._segment and again.tokenizer.stemmer is None
    assert np.count_nonzero(again.get_scores("running")) == 2  # documents 0 and 6, not "run"/"runner"
    # a tokenizer given at load must tokenize alike: today's scanner is refused for it
    with pytest.raises(InvalidValueError, match="differ"):
        BM25.load(os.path.join(FIXTURE, "index"), tokenizer=Tokenizer(stemmer=None))
    same = BM25.load(os.path.join(FIXTURE, "index"), tokenizer=Tokenizer(stemmer=None, scripts=False))
    assert same.get_scores("running").tolist() == expected["queries"][0]["scores"]


def test_an_index_without_tokenizer_settings_loads_with_the_first_defaults(tmp_path):
    from rank.retrieve._index import _meta_checksum

    shutil.copytree(os.path.join(FIXTURE, "index"), tmp_path / "idx")
    path = tmp_path / "idx" / "meta.json"
    meta = json.load(open(path))
    del meta["tokenizer"]
    meta.pop("meta_crc32")
    meta["meta_crc32"] = _meta_checksum(meta)
    path.write_text(json.dumps(meta))
    bm = BM25.load(tmp_path / "idx")
    assert bm.tokenizer.stemmer is None and bm.tokenizer.stopwords == STOPWORDS_EN and not bm.tokenizer._segment
    expected = json.load(open(os.path.join(FIXTURE, "expected.json"), encoding="utf-8"))
    for q in expected["queries"]:
        assert bm.get_scores(q["query"]).tolist() == q["scores"]


# --- retrieval on a multilingual collection -------------------------------------------------------

def _catalogs():
    """(locale, theme, msgid, translation) of every message of the .mo catalogs of the docs
    tool's themes (read with gettext; nothing is copied into the repository)."""
    mkdocs = pytest.importorskip("mkdocs")
    root = os.path.join(os.path.dirname(mkdocs.__file__), "themes")
    out = []
    for path in sorted(glob.glob(os.path.join(root, "*", "locales", "*", "LC_MESSAGES", "*.mo"))):
        parts = path.split(os.sep)
        with open(path, "rb") as f:
            catalog = gettext.GNUTranslations(f)._catalog  # type: ignore[attr-defined]
        for msgid, text in catalog.items():
            if isinstance(msgid, str) and msgid:
                out.append((parts[-3], parts[-5], msgid, re.sub(r"%\(\w+\)s", "", text).strip()))
    if len(out) < 300:
        pytest.skip("too few translated messages found")
    return out


CJK_LOCALES = ("ja", "zh_CN", "zh_TW")


def test_multilingual_retrieval_on_translated_messages():
    docs = _catalogs()
    texts = [d[3] for d in docs]
    new = BM25(tokenizer=Tokenizer(language="auto")).index(texts)
    old = BM25(tokenizer=Tokenizer.from_config({"stopwords": "en", "stemmer": None}, [])).index(texts)
    msgids = ("Search", "Next page", "Previous page", "Page not found", "Table of Contents", "No results found",
              "Keyboard Shortcuts", "Close")
    n_queries = missed_new = missed_old = 0
    for loc, theme, msgid, query in docs:
        if theme != "mkdocs" or msgid not in msgids:
            continue
        n_queries += 1
        if loc in CJK_LOCALES:  # relevant: every message holding the query as a substring
            rel = {j for j, t in enumerate(texts) if query.lower() in t.lower()}
        else:  # relevant: every message holding all the query's words
            qw = set(re.findall(r"\w+", query.lower()))
            rel = {j for j, t in enumerate(texts) if qw <= set(re.findall(r"\w+", t.lower()))}
        s = new.get_scores(query)
        assert int(np.argmax(s)) in rel, (loc, msgid, query)
        assert all(s[j] > 0 for j in rel), (loc, msgid, query)  # found wherever it is
        missed_new += sum(s[j] <= 0 for j in rel)
        if loc in CJK_LOCALES:
            missed_old += sum(old.get_scores(query)[j] <= 0 for j in rel)
    assert n_queries >= 100 and missed_new == 0
    assert missed_old > 0  # CJK text as one token per run: the old scanner misses phrases inside sentences


# --- CLI defaults --------------------------------------------------------------------------------

def test_cli_index_defaults_and_flags(tmp_path, capsys):
    from rank.cli import main

    corpus = tmp_path / "c.jsonl"
    corpus.write_text("\n".join(json.dumps({"_id": str(i), "text": t}) for i, t in enumerate(
        ["The runners were running", "東京タワー", "cats and dogs"])) + "\n", encoding="utf-8")
    assert main(["index", str(corpus), "-o", str(tmp_path / "a"), "-q"]) == 0
    cfg = BM25.load(tmp_path / "a").tokenizer.config()
    assert cfg["stemmer"] == "english" and cfg["stopwords"] == "en" and cfg["language"] == "english"
    assert main(["index", str(corpus), "-o", str(tmp_path / "b"), "-q", "--stemmer", "none", "--stopwords", "none"]) == 0
    cfg = BM25.load(tmp_path / "b").tokenizer.config()
    assert cfg["stemmer"] is None and cfg["stopwords"] is None
    assert main(["index", str(corpus), "-o", str(tmp_path / "c"), "-q", "--language", "auto"]) == 0
    assert BM25.load(tmp_path / "c").tokenizer.config()["stemmer"] == "auto"
    capsys.readouterr()
    assert main(["index", str(corpus), "-o", str(tmp_path / "d"), "-q", "--language", "klingon"]) == 2
    assert "klingon" in capsys.readouterr().err


def test_corpus_file_not_utf8_names_the_file_and_line(tmp_path):
    from rank._io_corpus import read_corpus

    lines = [json.dumps({"_id": str(i), "text": f"document number {i} " * 5}).encode() for i in range(3000)]
    lines[2500] = b'{"_id": "2500", "text": "caf\xe9 latin-1"}'
    for name, body in [("c.jsonl", b"\n".join(lines)),
                       ("c.tsv", b"id\ttext\n" + b"\n".join(b"%d\tword %d" % (i, i) for i in range(2999)) + b"\n9\t\xff"),
                       ("c.csv", b"id,text\n" + b"\n".join(b"%d,word %d" % (i, i) for i in range(1200)) + b"\n9,\xc3")]:
        (tmp_path / name).write_bytes(body)
        want = {"c.jsonl": 2501, "c.tsv": 3001, "c.csv": 1202}[name]
        with pytest.raises(InvalidValueError, match=rf"{name}, line {want}: not valid UTF-8"):
            read_corpus(tmp_path / name)


@pytest.mark.slow
def test_cli_on_scifact_with_no_flags_reaches_the_published_ndcg(shared_data, tmp_path, capsys):
    """rank index / search / eval with no tokenizer flags on SciFact (test split): nDCG@10 >= 0.679
    (bm25s with its English stemmer: 0.6791; Anserini's BM25 flat: 0.6789)."""
    from rank.cli import main

    d = shared_data("scifact")
    assert main(["index", str(d / "corpus.jsonl"), "-o", str(tmp_path / "idx"), "-q"]) == 0
    assert main(["search", str(tmp_path / "idx"), str(d / "queries.jsonl"), "-k", "100", "-o",
                 str(tmp_path / "run.trec"), "-q"]) == 0
    capsys.readouterr()
    assert main(["eval", str(d / "qrels.tsv"), str(tmp_path / "run.trec"), "-m", "ndcg@10", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ndcg@10"] >= 0.679


def test_the_languages_page_lists_every_language():
    page = os.path.join(os.path.dirname(__file__), os.pardir, "docs", "languages.md")
    if not os.path.exists(page):
        pytest.skip("docs not present (installed package)")
    rows = re.findall(r"^\| (\w+) \| (\S+) \|", open(page, encoding="utf-8").read(), re.M)
    listed = {name: stem for name, stem in rows if name != "language"}
    want = {name: info["stemmer"] or "—" for name, info in languages().items() if name != "auto"}
    assert listed == want


def test_threads_tokenizing_at_once_agree_from_the_first_call():
    """The scanner's character table is built on first use: threads racing to it, in a fresh
    interpreter, all get the same tokens (queries: update_vocabulary=False is thread-safe)."""
    import subprocess
    import sys

    code = (
        "import threading\n"
        "from rank.retrieve import Tokenizer\n"
        "tok = Tokenizer(language='auto')\n"
        "docs = ['東京タワー ภาษาไทย हिन्दी Москва running'] * 200\n"
        "tok.lookup_packed([['東京', 'タワ', 'ภา', 'ไท', 'москв', 'run']])  # a vocabulary, no scan yet\n"
        "out = [None] * 8\n"
        "def work(i):\n"
        "    out[i] = tok.tokenize(docs, update_vocabulary=False)\n"
        "ts = [threading.Thread(target=work, args=(i,)) for i in range(8)]\n"
        "[t.start() for t in ts]; [t.join() for t in ts]\n"
        "assert all(o == [[0, 1, 2, 3, 4, 5]] * 200 for o in out), out[0][:2]\n"
        "print(len(out))\n")
    root = os.path.join(os.path.dirname(__file__), os.pardir)
    res = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "8"
