"""BM25: scores against bm25s and rank_bm25, exact top-k (incl. the pruned path) against sorting
all scores, masks, SciFact quality, persistence and corrupt directories, incremental add,
threads and bad input."""
import json
import os

import numpy as np
import pytest

from _helpers import exhaustive_topk
from rank.errors import CorruptFileError, DTypeError, InvalidValueError, RankError, ShapeError, UnknownMethodError
from rank.retrieve import BM25, Tokenizer
from rank.retrieve.bm25 import METHODS


# --- references ----------------------------------------------------------------------------------

def random_corpus(seed, n_docs=300, vocab=60, max_len=30):
    """Token lists with empty documents and repeated terms (Zipf-distributed term ids)."""
    rng = np.random.default_rng(seed)
    docs = []
    for i in range(n_docs):
        ids = rng.zipf(1.3, size=rng.integers(0, max_len))
        docs.append([f"t{x}" for x in ids if x < vocab])
    docs[3] = []
    docs[7] = ["t1"] * 40  # a heavily repeated term
    return docs


def random_queries(seed, n=40, vocab=80):
    rng = np.random.default_rng(seed + 1)
    # ids past the corpus vocabulary are absent terms; repeats are allowed
    return [[f"t{x}" for x in rng.integers(1, vocab, size=rng.integers(1, 7))] for _ in range(n)]


def assert_exact_topk(bm, queries, k, mask=None, n_threads=None):
    idx, sc = bm.search(queries, k=k, mask=mask, n_threads=n_threads)
    kk = min(k, bm.n_docs)
    assert idx.shape == sc.shape == (len(queries), kk) and idx.dtype == np.int64 and sc.dtype == np.float32
    for i, q in enumerate(queries):
        allowed = None if mask is None else (mask if mask.ndim == 1 else mask[i])
        ei, es = exhaustive_topk(bm.get_scores(q), kk, allowed)
        np.testing.assert_array_equal(idx[i], ei)
        np.testing.assert_array_equal(sc[i], es)


# --- values ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("seed", [0, 1])
def test_scores_match_bm25s(method, seed):
    bm25s = pytest.importorskip("bm25s")
    corpus = random_corpus(seed)
    k1, b = (1.2, 0.75) if seed == 0 else (1.7, 0.3)
    ref = bm25s.BM25(method=method, k1=k1, b=b, delta=0.7)
    ref.index(corpus, show_progress=False)
    ours = BM25(method, k1=k1, b=b, delta=0.7).index(corpus, show_progress=False)
    for q in random_queries(seed):
        known = [t for t in q if t in ref.vocab_dict]
        if not known:
            continue
        want = ref.get_scores(known)
        got = ours.get_scores(q)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert_exact_topk(ours, random_queries(seed), k=25)


@pytest.mark.parametrize("method,cls", [("bm25+", "BM25Plus")])
def test_scores_match_rank_bm25(method, cls):
    # rank_bm25's BM25Plus uses the same formulas; its BM25L multiplies the component by tf
    # once more and its BM25Okapi floors negative idfs, so those two differ by design.
    rank_bm25 = pytest.importorskip("rank_bm25")
    corpus = [d for d in random_corpus(5) if d]  # rank_bm25 divides by zero on empty corpora only
    ref = getattr(rank_bm25, cls)(corpus, k1=1.5, b=0.75, delta=0.5)
    ours = BM25(method, k1=1.5, b=0.75, delta=0.5).index(corpus, show_progress=False)
    for q in random_queries(5):
        np.testing.assert_allclose(ours.get_scores(q), ref.get_scores(q), rtol=1e-5, atol=1e-6)


def test_token_ids_packed_and_strings_agree():
    corpus = random_corpus(2, n_docs=80)
    vocab = {}
    id_docs = [[vocab.setdefault(t, len(vocab)) for t in d] for d in corpus]
    by_tokens = BM25().index(corpus, show_progress=False)
    by_ids = BM25().index(id_docs, show_progress=False)
    flat = np.array([t for d in id_docs for t in d], np.int32)
    offsets = np.cumsum([0] + [len(d) for d in id_docs])
    by_packed = BM25().index((flat, offsets), show_progress=False)
    by_text = BM25(tokenizer=Tokenizer(stopwords=None)).index([" ".join(d) for d in corpus], show_progress=False)
    for q in random_queries(2, n=10, vocab=50):
        q_ids = [vocab[t] for t in q if t in vocab]
        ref = by_tokens.get_scores(q)
        np.testing.assert_array_equal(by_ids.get_scores(q_ids), ref)
        np.testing.assert_array_equal(by_packed.get_scores(q_ids), ref)
        np.testing.assert_array_equal(by_text.get_scores(" ".join(q)), ref)


def test_empty_query_scores_zero_and_returns_first_documents():
    bm = BM25().index(["alpha beta", "beta gamma", "delta"], show_progress=False)
    np.testing.assert_array_equal(bm.get_scores("zzz unknown"), np.zeros(3, np.float32))
    np.testing.assert_array_equal(bm.get_scores([]), np.zeros(3, np.float32))
    idx, sc = bm.search(["", "nothing known"], k=2)
    assert idx.tolist() == [[0, 1], [0, 1]] and sc.tolist() == [[0, 0], [0, 0]]
    shifted = BM25("bm25+").index(["alpha beta", "beta gamma", "delta"], show_progress=False)
    idx, sc = shifted.search(["delta"], k=3)
    assert idx.tolist() == [[2, 0, 1]] and sc[0, 1] == sc[0, 2] > 0  # the constant non-occurrence score


def test_k_clipped_and_zero_score_documents_in_order():
    bm = BM25().index(["a1 b1", "c1", "a1", "d1", "e1"], show_progress=False)
    idx, sc = bm.search(["a1"], k=50)
    assert idx.shape == (1, 5)
    assert idx[0].tolist() == [2, 0, 1, 3, 4] and (sc[0, 2:] == 0).all()


# --- exact top-k: every path of the kernel -----------------------------------------------------------

def zipf_id_corpus(seed, n_docs, mean_len, vocab):
    rng = np.random.default_rng(seed)
    lens = rng.poisson(mean_len, n_docs)
    ids = (rng.zipf(1.1, size=int(lens.sum())) - 1) % vocab
    offsets = np.concatenate([[0], np.cumsum(lens)])
    return ids.astype(np.int32), offsets


def zipf_queries(seed, n, vocab):
    rng = np.random.default_rng(seed)
    return [((rng.zipf(1.1, size=rng.integers(2, 9)) - 1) % vocab).tolist() for _ in range(n)]


@pytest.mark.slow
@pytest.mark.parametrize("method", ["lucene", "bm25+"])
def test_pruned_topk_is_exact_on_a_large_index(method):
    # > 65536 documents: queries mixing rare and common terms take the pruned path
    ids, offsets = zipf_id_corpus(0, 80_000, 6, 5000)
    bm = BM25(method).index((ids, offsets), show_progress=False)
    queries = zipf_queries(1, 30, 5000) + [[0, 1, 2, 3], [4000], [1, 4999, 3000]]
    for k in (1, 10, 100):
        assert_exact_topk(bm, queries, k, n_threads=2)
    mask = np.random.default_rng(2).random(bm.n_docs) < 0.3
    assert_exact_topk(bm, queries, 50, mask=mask)


@pytest.mark.parametrize("n_docs", [50, 3000])
def test_masks_shared_and_per_query(n_docs):
    ids, offsets = zipf_id_corpus(3, n_docs, 8, 300)
    bm = BM25().index((ids, offsets), show_progress=False)
    queries = zipf_queries(4, 12, 300)
    rng = np.random.default_rng(5)
    shared = rng.random(n_docs) < 0.5
    assert_exact_topk(bm, queries, 20, mask=shared)
    per_query = rng.random((len(queries), n_docs)) < 0.05
    per_query[0] = False  # nothing allowed: all padding
    per_query[1] = False
    per_query[1, [3, 7]] = True  # fewer than k allowed
    idx, sc = bm.search(queries, k=20, mask=per_query)
    assert (idx[0] == -1).all() and np.isneginf(sc[0]).all()
    assert set(idx[1, :2].tolist()) == {3, 7} and (idx[1, 2:] == -1).all()
    assert_exact_topk(bm, queries, 20, mask=per_query)
    for row, allowed in zip(idx, per_query):
        assert all(allowed[i] for i in row if i >= 0)


def test_mask_errors():
    bm = BM25().index(["a1 b1", "c1"], show_progress=False)
    with pytest.raises(ShapeError):
        bm.search(["a1"], mask=np.ones(3, bool))
    with pytest.raises(ShapeError):
        bm.search(["a1", "b1"], mask=np.ones((3, 2), bool))
    with pytest.raises(DTypeError):
        bm.search(["a1"], mask=np.ones(2))


def test_threads_agree_and_concurrent_callers(run_threads):
    ids, offsets = zipf_id_corpus(6, 20_000, 10, 2000)
    bm = BM25().index((ids, offsets), show_progress=False)
    queries = zipf_queries(7, 200, 2000)
    one = bm.search(queries, k=10, n_threads=1)
    two = bm.search(queries, k=10, n_threads=2)
    np.testing.assert_array_equal(one[0], two[0])
    np.testing.assert_array_equal(one[1], two[1])
    results = run_threads(lambda i: bm.search(queries, k=10, n_threads=1 + i % 2), n=4)
    for idx, sc in results:
        np.testing.assert_array_equal(idx, one[0])
        np.testing.assert_array_equal(sc, one[1])


# --- real data ------------------------------------------------------------------------------------

def ndcg_at_10(run, qrels):
    """Mean nDCG@10 (trec_eval style: gain = relevance grade, log2 discount)."""
    total = 0.0
    for qid, ranked in run.items():
        rel = qrels[qid]
        dcg = sum(rel.get(d, 0) / np.log2(r + 2) for r, d in enumerate(ranked[:10]))
        ideal = sorted(rel.values(), reverse=True)[:10]
        idcg = sum(g / np.log2(r + 2) for r, g in enumerate(ideal))
        total += dcg / idcg if idcg > 0 else 0.0
    return total / len(run)


def load_beir(path):
    corpus = [json.loads(line) for line in open(path / "corpus.jsonl", encoding="utf-8")]
    queries = [json.loads(line) for line in open(path / "queries.jsonl", encoding="utf-8")]
    qrels = {}
    with open(path / "qrels.tsv", encoding="utf-8") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and parts[-1].lstrip("-").isdigit():
                qrels.setdefault(parts[0], {})[parts[-2]] = int(parts[-1])
    queries = [q for q in queries if q["_id"] in qrels]
    return corpus, queries, qrels


@pytest.mark.slow
def test_scifact_ndcg_matches_bm25s(shared_data):
    bm25s = pytest.importorskip("bm25s")
    Stemmer = pytest.importorskip("Stemmer")
    corpus, queries, qrels = load_beir(shared_data("scifact"))
    texts = [(c.get("title") or "") + " " + c["text"] for c in corpus]
    doc_ids = [c["_id"] for c in corpus]
    q_texts = [q["text"] for q in queries]
    stemmer = Stemmer.Stemmer("english")
    ref = bm25s.BM25(method="lucene", k1=1.2, b=0.75)
    ref.index(bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False), show_progress=False)
    q_tok = bm25s.tokenize(q_texts, stopwords="en", stemmer=stemmer, show_progress=False, return_ids=False)
    ref_idx, _ = ref.retrieve(q_tok, k=10, show_progress=False, n_threads=1)
    ours = BM25("lucene", k1=1.2, b=0.75, tokenizer=Tokenizer(stopwords="en", stemmer="english"))
    ours.index(texts, ids=doc_ids, show_progress=False)
    idx, _ = ours.search(q_texts, k=10)
    ids = ours.ids
    run = {q["_id"]: [ids[i] for i in row] for q, row in zip(queries, idx)}
    ref_run = {q["_id"]: [doc_ids[i] for i in row] for q, row in zip(queries, ref_idx)}
    ours_ndcg, ref_ndcg = ndcg_at_10(run, qrels), ndcg_at_10(ref_run, qrels)
    assert abs(ours_ndcg - ref_ndcg) <= 0.003, (ours_ndcg, ref_ndcg)
    assert 0.6 < ours_ndcg < 0.75


# --- persistence ----------------------------------------------------------------------------------

def small_index(method="lucene", ids=None):
    texts = ["the quick brown fox", "jumps over the lazy dog", "quick quick dog", "", "a fox and a dog"]
    return BM25(method, tokenizer=Tokenizer(stemmer=None)).index(texts, ids=ids, show_progress=False), texts


@pytest.mark.parametrize("mmap", [True, False])
@pytest.mark.parametrize("method", ["lucene", "bm25l"])
def test_save_load_round_trip(tmp_path, mmap, method):
    bm, _ = small_index(method, ids=["a", "b", "c", "d", 5])
    bm.save(tmp_path / "idx")
    loaded = BM25.load(tmp_path / "idx", mmap=mmap)
    assert loaded.method == method and loaded.n_docs == 5 and loaded.ids == ["a", "b", "c", "d", 5]
    assert loaded.tokenizer.vocabulary == bm.tokenizer.vocabulary
    queries = ["quick dog", "fox", "nothing"]
    for a, b in zip(bm.search(queries, k=3), loaded.search(queries, k=3)):
        np.testing.assert_array_equal(a, b)
    # a loaded (even memory-mapped) index can grow
    loaded.add(["brown dog"], ids=["z"])
    fresh = BM25(method, tokenizer=Tokenizer()).index(small_index()[1] + ["brown dog"], show_progress=False)
    np.testing.assert_array_equal(loaded.get_scores("brown dog"), fresh.get_scores("brown dog"))


def test_save_replaces_atomically_and_cleans_up_on_failure(tmp_path, monkeypatch):
    bm, _ = small_index()
    path = tmp_path / "idx"
    bm.save(path)
    bm.add(["more text about foxes"])
    bm.save(path)  # replace an existing index
    assert BM25.load(path).n_docs == 6
    import rank.retrieve._index as idx_mod

    def broken_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(idx_mod.np, "save", broken_save)
    with pytest.raises(OSError):
        small_index()[0].save(path)
    monkeypatch.undo()
    assert BM25.load(path).n_docs == 6  # the previous index is intact
    assert sorted(os.listdir(tmp_path)) == ["idx"]  # no temporary directory left behind


def test_corrupt_and_foreign_directories(tmp_path):
    bm, _ = small_index()
    good = tmp_path / "good"
    bm.save(good)

    def copy(name):
        import shutil
        dst = tmp_path / name
        shutil.copytree(good, dst)
        return dst

    with pytest.raises(CorruptFileError):
        BM25.load(tmp_path / "missing")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("hello")
    with pytest.raises(CorruptFileError):
        BM25.load(foreign)
    d = copy("garbage_meta")
    (d / "meta.json").write_text("{not json")
    with pytest.raises(CorruptFileError):
        BM25.load(d)
    d = copy("other_format")
    meta = json.loads((d / "meta.json").read_text())
    meta["format"] = "something-else"
    (d / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(CorruptFileError, match="not a saved"):
        BM25.load(d)
    d = copy("future_version")
    meta["format"], meta["format_version"] = "rank-kernels.bm25", 99
    (d / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(CorruptFileError, match="version"):
        BM25.load(d)
    for mmap in (True, False):
        d = copy(f"truncated{mmap}")
        data = (d / "docs.npy").read_bytes()
        (d / "docs.npy").write_bytes(data[: len(data) - 6])
        with pytest.raises(CorruptFileError):
            BM25.load(d, mmap=mmap)
        d = copy(f"missing_file{mmap}")
        (d / "impacts.npy").unlink()
        with pytest.raises(CorruptFileError):
            BM25.load(d, mmap=mmap)
    d = copy("bad_pointers")
    np.save(d / "indptr.npy", np.arange(np.load(good / "indptr.npy").shape[0], dtype=np.int64)[::-1].copy())
    with pytest.raises(CorruptFileError):
        BM25.load(d)
    d = copy("bad_doc_ids")
    docs = np.load(good / "docs.npy")
    docs[0] = 1000
    np.save(d / "docs.npy", docs)
    for mmap in (False, True):  # mmap loads validate doc ids too (a bad id made add() crash)
        with pytest.raises(CorruptFileError):
            BM25.load(d, mmap=mmap)


def test_callable_stemmer_cannot_be_saved(tmp_path):
    bm = BM25(tokenizer=Tokenizer(stemmer=lambda w: w[:4])).index(["some words here"], show_progress=False)
    with pytest.raises(InvalidValueError, match="callable"):
        bm.save(tmp_path / "x")


# --- incremental add ------------------------------------------------------------------------------

@pytest.mark.parametrize("method", METHODS)
def test_add_equals_fresh_index(method):
    corpus = random_corpus(11, n_docs=120)
    corpus[20] = ["t2"] * 5000  # a term frequency float32 impacts cannot carry exactly
    corpus[21] = ["t3"] * 70000
    first, second, third = corpus[:50], corpus[50:90], corpus[90:] + [["brand", "new", "new"]]
    inc = BM25(method).index(first, show_progress=False).add(second, show_progress=False)
    inc.add(third, show_progress=False)
    fresh = BM25(method).index(first + second + third, show_progress=False)
    assert inc.n_docs == fresh.n_docs and inc.tokenizer.vocabulary == fresh.tokenizer.vocabulary
    st_a, st_b = inc._state, fresh._state
    np.testing.assert_array_equal(st_a.postings.indptr, st_b.postings.indptr)
    np.testing.assert_array_equal(st_a.postings.docs, st_b.postings.docs)
    np.testing.assert_array_equal(st_a.postings.values, st_b.postings.values)
    for q in random_queries(11, n=10) + [["new", "t2", "t3"]]:
        np.testing.assert_array_equal(inc.get_scores(q), fresh.get_scores(q))


def test_add_text_with_stemming_and_ids():
    pytest.importorskip("Stemmer")
    docs = ["Running foxes jumped", "A jumping fox runs", "Lazy dogs sleep", "dogs and foxes"]
    inc = BM25(tokenizer=Tokenizer(stemmer="english")).index(docs[:2], ids=["a", "b"], show_progress=False)
    inc.add(docs[2:], ids=["c", "d"])
    fresh = BM25(tokenizer=Tokenizer(stemmer="english")).index(docs, show_progress=False)
    assert inc.ids == ["a", "b", "c", "d"]
    for q in ["fox running", "dog", "sleeping lazy foxes"]:
        np.testing.assert_array_equal(inc.get_scores(q), fresh.get_scores(q))
    with pytest.raises(ShapeError):
        inc.add(["no ids given"])
    with pytest.raises(DTypeError):
        inc.add([[1, 2]], ids=["e"])


def test_robertson_zero_idf_terms_survive_add():
    # "common" is in more than half of the documents: its Robertson idf is 0 (impacts 0) until
    # the added documents make it rarer again; its term frequencies must not be lost.
    docs = [["common"] * (i + 1) + [f"u{i}"] for i in range(6)]
    more = [[f"v{i}"] for i in range(10)]
    inc = BM25("robertson").index(docs, show_progress=False).add(more, show_progress=False)
    fresh = BM25("robertson").index(docs + more, show_progress=False)
    assert inc.get_scores(["common"]).max() > 0
    np.testing.assert_array_equal(inc.get_scores(["common"]), fresh.get_scores(["common"]))


# --- bad input ------------------------------------------------------------------------------------

def test_bad_parameters():
    with pytest.raises(UnknownMethodError, match="lucene"):
        BM25("bm26")
    for kw in ({"k1": -0.1}, {"b": 1.5}, {"b": -0.01}, {"delta": -1}, {"k1": float("nan")}):
        with pytest.raises(InvalidValueError):
            BM25(**kw)
    with pytest.raises(DTypeError):
        BM25(k1="1.2")
    with pytest.raises(DTypeError):
        BM25(tokenizer="english")


def test_bad_corpora_and_queries():
    with pytest.raises(ShapeError, match="at least one"):
        BM25().index([])
    with pytest.raises(ShapeError):
        BM25().index(iter(()))
    with pytest.raises(DTypeError):
        BM25().index(["fine", 3])
    with pytest.raises(DTypeError):
        BM25().index([1.5, 2.5])
    with pytest.raises(DTypeError):
        BM25().index("a single string is not a corpus")
    with pytest.raises(DTypeError):
        BM25().index([[1, 2], ["x"]])
    with pytest.raises(InvalidValueError):
        BM25().index([[1, -2]])
    with pytest.raises(ShapeError, match="ids"):
        BM25().index(["a b", "c d"], ids=["only one"])
    with pytest.raises(DTypeError):
        BM25().index(["a b"], ids=[1.5])
    bm = BM25().index(["alpha beta", "gamma"], show_progress=False)
    for k in (0, -1, 2.5, None):
        with pytest.raises(InvalidValueError):
            bm.search(["alpha"], k=k)
    with pytest.raises(DTypeError):
        bm.search([1.5, "x"])
    with pytest.raises(InvalidValueError):
        BM25().search(["alpha"])
    with pytest.raises(InvalidValueError):
        BM25().index([[0, 1]], show_progress=False).search(["text query without vocabulary"])
    assert issubclass(CorruptFileError, RankError)


def test_progress_bar_optional(capsys):
    pytest.importorskip("tqdm")
    texts = [f"document number {i}" for i in range(100)]
    BM25().index(texts, show_progress=True)  # the bar only appears after a second
    BM25().index(texts, show_progress=False)
    assert capsys.readouterr().err == ""


def test_save_never_replaces_foreign_data(tmp_path):
    bm = BM25().index([["a", "b"], ["b", "c"]], show_progress=False)
    target = tmp_path / "data"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    with pytest.raises(InvalidValueError, match="not a saved index"):
        bm.save(target)
    assert (target / "notes.txt").read_text() == "keep me"
    a_file = tmp_path / "file.txt"
    a_file.write_text("keep me too")
    with pytest.raises(InvalidValueError, match="not a directory"):
        bm.save(a_file)
    assert a_file.read_text() == "keep me too"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "file.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    bm.save(empty)                      # an empty directory may be used
    bm.save(empty)                      # and an index saved earlier replaced
    assert BM25.load(empty).get_scores(["b"]).shape == (2,)


def test_pickle_copy_and_the_snapshot_attributes():
    import copy
    import pickle

    bm = BM25().index(["red fox", "blue fox", "red sky"], ids=["a", "b", "c"], show_progress=False)
    for clone in (pickle.loads(pickle.dumps(bm)), copy.deepcopy(bm)):
        assert [x.tolist() for x in clone.search(["red fox"], k=3)] == [x.tolist() for x in bm.search(["red fox"], k=3)]
        clone.add(["green fox"], ids=["d"], show_progress=False)  # its own lock and snapshot
        assert clone.ids == ["a", "b", "c", "d"] and bm.ids == ["a", "b", "c"]
        assert "green" in clone.tokenizer.vocabulary and "green" not in bm.tokenizer.vocabulary
    with pytest.raises(InvalidValueError, match="tokenizer"):
        bm.tokenizer = Tokenizer()  # term ids belong to the built vocabulary
    fresh = BM25()
    fresh.tokenizer = Tokenizer(stopwords=None)
    assert fresh.index(["the end"], show_progress=False).tokenizer.vocabulary == {"the": 0, "end": 1}


def test_failed_index_or_add_leaves_the_index_unchanged():
    bm = BM25().index(["red fox", "blue fox", "red sky"], ids=["a", "b", "c"], show_progress=False)
    before = [x.tolist() for x in bm.search(["red fox", "sky"], k=3)]
    vocab = bm.tokenizer.vocabulary
    with pytest.raises(ShapeError):
        bm.index(["green frog", "yellow toad"], ids=["only one"], show_progress=False)
    with pytest.raises(ShapeError):
        bm.add(["purple newt"], show_progress=False)  # the index has ids: new documents need them
    with pytest.raises(DTypeError):
        bm.add(["grey owl", 7], ids=["d", "e"], show_progress=False)
    assert bm.tokenizer.vocabulary == vocab  # nothing tokenized by the failed calls was kept
    assert [x.tolist() for x in bm.search(["red fox", "sky"], k=3)] == before
    assert bm.ids == ["a", "b", "c"]


def test_retrieve_is_a_deprecated_alias_of_search_warning_once():
    import warnings

    from rank import _deprecate

    bm = BM25().index(["red fox", "blue fox", "red red sky"], show_progress=False)
    _deprecate._warned.discard("BM25.retrieve")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = bm.retrieve(["red fox"], k=2)
        second = bm.retrieve(["red fox"], k=2, n_threads=1)
    got = [w for w in caught if issubclass(w.category, DeprecationWarning)]
    assert len(got) == 1 and "BM25.search()" in str(got[0].message)
    assert got[0].filename == __file__  # points at the caller
    want = bm.search(["red fox"], k=2)
    for a in (first, second):
        np.testing.assert_array_equal(a[0], want[0])
        np.testing.assert_array_equal(a[1], want[1])
    assert BM25.retrieve.__name__ == "retrieve" and "search" in BM25.retrieve.__doc__
