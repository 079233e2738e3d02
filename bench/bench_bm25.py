"""BM25 retrieval and indexing, side by side with bm25s (numba and numpy backends) and rank_bm25.

Workloads
- SciFact (BEIR, 5,183 abstracts, 300 test queries): lucene, k1=1.2, b=0.75, English
  stopwords, Snowball English stemming, k=100. Build = tokenize + index from the raw texts.
- Synthetic: 1,000,000 documents of Poisson(60) term ids drawn from a Zipf(s=1) law over a
  200,000-term vocabulary, and 1,000 queries of 2-8 terms from the same law (seeded). Both
  libraries index the same token-id lists (bm25s gets them as Python lists, its input form).
- rank_bm25 (pure Python, slow) only on SciFact with 20 queries, in its own group.

Each library runs with BENCH_THREADS threads (ours `n_threads`, bm25s `n_threads`); ours also
runs at 2 threads in the same groups, so one BENCH_THREADS=1 run gives the thread scaling. Queries
are tokenized before timing (ours: packed ids from our tokenizer; bm25s: its own token ids).
Memory and disk sizes and load times are recorded in `extra_info` of the 1M benchmarks.
`python bench/summary.py results.json` prints the ratios.
"""
import gc
import json
import os
import shutil
import sys
import tempfile
import time

import numpy as np
import pytest

from _bench import label
from _helpers import zipf_corpus
from rank.retrieve import BM25, Tokenizer

K = 100
METHOD = dict(k1=1.2, b=0.75)



def _bm25s():
    return pytest.importorskip("bm25s")


# --- SciFact ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def scifact(shared_data, smoke):
    path = shared_data("scifact")
    corpus = [json.loads(line) for line in open(path / "corpus.jsonl", encoding="utf-8")]
    qids = {line.split()[0] for line in open(path / "qrels.tsv", encoding="utf-8")}
    queries = [json.loads(line) for line in open(path / "queries.jsonl", encoding="utf-8")]
    texts = [(c.get("title") or "") + " " + c["text"] for c in corpus]
    q_texts = [q["text"] for q in queries if q["_id"] in qids]
    if smoke:
        texts, q_texts = texts[:200], q_texts[:10]
    return texts, q_texts


def _stemmer():
    Stemmer = pytest.importorskip("Stemmer")
    return Stemmer.Stemmer("english")


def build_ours(texts):
    return BM25("lucene", **METHOD, tokenizer=Tokenizer(stopwords="en", stemmer="english")).index(
        texts, show_progress=False)


def build_bm25s(texts, backend="numba"):
    bm25s = _bm25s()
    tokens = bm25s.tokenize(texts, stopwords="en", stemmer=_stemmer(), show_progress=False)
    ref = bm25s.BM25(method="lucene", **METHOD, backend=backend)
    ref.index(tokens, show_progress=False)
    return ref


def _backend(backend, smoke):
    """bm25s's backend; the smoke run (CI) skips numba's compilation, which takes a minute."""
    return "numpy" if smoke else backend


@pytest.fixture(scope="module")
def scifact_indexes(scifact, smoke):
    bm25s = _bm25s()
    texts, q_texts = scifact
    ours = build_ours(texts)
    q_ours = ours.tokenizer.tokenize_packed(q_texts, update_vocabulary=False)
    refs = {b: build_bm25s(texts, _backend(b, smoke)) for b in ("numba", "numpy")}
    q_tok = bm25s.tokenize(q_texts, stopwords="en", stemmer=_stemmer(), show_progress=False, return_ids=False)
    vocab = refs["numba"].vocab_dict
    q_ref = [[vocab[t] for t in q if t in vocab] or [vocab[""]] for q in q_tok]
    return ours, q_ours, refs, q_ref, len(q_texts), q_tok


def test_rank_bm25_scifact_query(benchmark, scifact_indexes, threads):
    ours, q_ours, _, _, nq, _ = scifact_indexes
    label(benchmark, f"bm25-scifact-query-k{K}", threads, items=nq, unit="queries")
    idx, scores = benchmark(ours.retrieve, q_ours, k=K, n_threads=threads)
    assert idx.shape[0] == nq and (np.diff(scores, axis=1) <= 0).all()


def test_rank_bm25_scifact_query_2threads(benchmark, scifact_indexes, threads):
    """Ours at 2 threads in the same group, so a BENCH_THREADS=1 run also gives the scaling."""
    if threads == 2:
        pytest.skip("the main test already runs at 2 threads")
    ours, q_ours, _, _, nq, _ = scifact_indexes
    label(benchmark, f"bm25-scifact-query-k{K}", threads, items=nq, unit="queries", n_threads=2)
    benchmark(ours.retrieve, q_ours, k=K, n_threads=2)


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_bm25s_scifact_query(benchmark, scifact_indexes, threads, backend, smoke):
    ours, q_ours, refs, q_ref, nq, _ = scifact_indexes
    ref = refs[backend]
    k = min(K, ref.scores["num_docs"])
    ref.retrieve(q_ref[:2], k=k, show_progress=False, n_threads=threads)  # numba compiles here
    label(benchmark, f"bm25-scifact-query-k{K}", threads, items=nq, unit="queries")
    res = benchmark(ref.retrieve, q_ref, k=k, show_progress=False, n_threads=threads)
    # Same ranking up to tokenization details (bm25s's words also join letters across "_").
    mine = ours.search(q_ours, k=k)[0]
    overlap = np.mean([len(set(a[:10]) & set(b[:10])) / 10 for a, b in zip(res.documents, mine)])
    assert overlap > 0.95


def test_rank_bm25_scifact_query_vs_rank_bm25(benchmark, scifact_indexes, threads):
    ours, q_ours, _, _, nq, _ = scifact_indexes
    n = min(nq, 20)
    few = (q_ours[0][:q_ours[1][n]], q_ours[1][:n + 1])
    label(benchmark, f"bm25-scifact-query20-k{K}", threads, items=min(nq, 20), unit="queries")
    benchmark(ours.retrieve, few, k=K, n_threads=threads)


def test_rank_bm25_okapi_scifact_query(benchmark, scifact, scifact_indexes, threads):
    rank_bm25 = pytest.importorskip("rank_bm25")
    bm25s = _bm25s()
    texts, _ = scifact
    *_, nq, q_tok = scifact_indexes
    doc_tok = bm25s.tokenize(texts, stopwords="en", stemmer=_stemmer(), show_progress=False, return_ids=False)
    ref = rank_bm25.BM25Okapi(doc_tok, k1=1.2, b=0.75)
    queries = q_tok[:20]
    label(benchmark, f"bm25-scifact-query20-k{K}", threads, items=len(queries), unit="queries")

    def run():
        return [np.argsort(-ref.get_scores(q))[:K] for q in queries]

    benchmark.pedantic(run, rounds=1 if not len(texts) < 1000 else 2, iterations=1)


def test_rank_bm25_scifact_build(benchmark, scifact, threads):
    texts, _ = scifact
    label(benchmark, "bm25-scifact-build", threads, items=len(texts))
    bm = benchmark.pedantic(build_ours, args=(texts,), rounds=3, iterations=1)
    assert bm.n_docs == len(texts)


def test_bm25s_scifact_build(benchmark, scifact, threads, smoke):
    texts, _ = scifact
    label(benchmark, "bm25-scifact-build", threads, items=len(texts))
    benchmark.pedantic(build_bm25s, args=(texts, _backend("numba", smoke)), rounds=3, iterations=1)


# --- synthetic 1M -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def synthetic(smoke):
    n_docs, vocab, nq = (2_000, 5_000, 20) if smoke else (1_000_000, 200_000, 1_000)
    docs, queries = zipf_corpus(n_docs, vocab, nq, seed=42)
    return docs, queries, vocab


def _as_lists(packed):
    ids, offsets = packed
    flat = ids.tolist()
    return [flat[offsets[i]:offsets[i + 1]] for i in range(offsets.shape[0] - 1)]


def build_bm25s_ids(doc_lists, vocab, backend):
    bm25s = _bm25s()
    ref = bm25s.BM25(method="lucene", **METHOD, backend=backend)
    # token ids 0..vocab-1 are their own vocabulary ids ("" is the empty-query token)
    words = {str(i): i for i in range(vocab)}
    words[""] = vocab
    ref.index((doc_lists, words), show_progress=False, create_empty_token=False)
    return ref


def _dir_size(path):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def _bm25s_ram(ref):
    arrays = sum(v.nbytes for v in ref.scores.values() if isinstance(v, np.ndarray))
    vocab = sys.getsizeof(ref.vocab_dict) + sum(sys.getsizeof(k) + sys.getsizeof(v) for k, v in ref.vocab_dict.items())
    return arrays + vocab + (ref.nonoccurrence_array.nbytes if ref.nonoccurrence_array is not None else 0)


def _ours_ram(bm):
    st = bm._state
    p = st.postings
    return sum(a.nbytes for a in (p.indptr, p.docs, p.values, p.max_value, st.doc_len, st.idf, st.shift,
                                  st.exc_pos, st.exc_tf))


@pytest.fixture(scope="module")
def synthetic_indexes(synthetic, smoke):
    docs, queries, vocab = synthetic
    t = time.perf_counter()
    ours = BM25("lucene", **METHOD).index(docs, show_progress=False)
    ours_build = time.perf_counter() - t
    doc_lists = _as_lists(docs)
    t = time.perf_counter()
    ref = build_bm25s_ids(doc_lists, vocab, _backend("numba", smoke))
    ref_build = time.perf_counter() - t
    del doc_lists
    gc.collect()
    q_lists = _as_lists(queries)
    tmp = tempfile.mkdtemp(prefix="bench-bm25-")
    try:
        ours.save(os.path.join(tmp, "ours"))
        ref.save(os.path.join(tmp, "bm25s"))
        sizes = {"ours_disk": _dir_size(os.path.join(tmp, "ours")), "bm25s_disk": _dir_size(os.path.join(tmp, "bm25s")),
                 "ours_ram": _ours_ram(ours), "bm25s_ram": _bm25s_ram(ref),
                 "ours_build_s": ours_build, "bm25s_build_s": ref_build}
        loads = {}
        for mmap in (False, True):
            best = np.inf
            for _ in range(3):
                t = time.perf_counter()
                BM25.load(os.path.join(tmp, "ours"), mmap=mmap)
                best = min(best, time.perf_counter() - t)
            loads["ours_load_mmap_s" if mmap else "ours_load_s"] = best
        sizes.update(loads)
        yield ours, ref, queries, q_lists, sizes
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_rank_bm25_synthetic_query(benchmark, synthetic_indexes, threads):
    ours, _, queries, q_lists, sizes = synthetic_indexes
    label(benchmark, f"bm25-synthetic1M-query-k{K}", threads, items=len(q_lists), unit="queries", **sizes)
    idx, scores = benchmark.pedantic(ours.retrieve, args=(queries,), kwargs=dict(k=K, n_threads=threads),
                                     rounds=3, iterations=1, warmup_rounds=1)
    assert (np.diff(scores, axis=1) <= 0).all()


def test_rank_bm25_synthetic_query_2threads(benchmark, synthetic_indexes, threads):
    """Ours at 2 threads in the same group, so a BENCH_THREADS=1 run also gives the scaling."""
    if threads == 2:
        pytest.skip("the main test already runs at 2 threads")
    ours, _, queries, q_lists, _ = synthetic_indexes
    label(benchmark, f"bm25-synthetic1M-query-k{K}", threads, items=len(q_lists), unit="queries", n_threads=2)
    benchmark.pedantic(ours.retrieve, args=(queries,), kwargs=dict(k=K, n_threads=2),
                       rounds=3, iterations=1, warmup_rounds=1)


def test_bm25s_synthetic_query(benchmark, synthetic_indexes, threads):
    ours, ref, queries, q_lists, _ = synthetic_indexes
    ref.retrieve(q_lists[:2], k=K, show_progress=False, n_threads=threads)  # numba compiles here
    label(benchmark, f"bm25-synthetic1M-query-k{K}", threads, items=len(q_lists), unit="queries")
    res = benchmark.pedantic(ref.retrieve, args=(q_lists,), kwargs=dict(k=K, show_progress=False, n_threads=threads),
                             rounds=3, iterations=1)
    mine = ours.search(queries, k=K)[1]
    np.testing.assert_allclose(res.scores[:, :10], mine[:, :10], rtol=1e-4, atol=1e-5)


def test_bm25s_numpy_synthetic_query(benchmark, synthetic_indexes, threads, smoke):
    _, ref, _, q_lists, _ = synthetic_indexes
    few = q_lists[:100]  # the numpy backend is slow on 1M documents: 100 queries, scaled below
    backend, ref.backend = ref.backend, "numpy"
    try:
        label(benchmark, f"bm25-synthetic1M-query100-k{K}", threads, items=len(few), unit="queries")
        benchmark.pedantic(ref.retrieve, args=(few,), kwargs=dict(k=K, show_progress=False, n_threads=threads),
                           rounds=1, iterations=1)
    finally:
        ref.backend = backend


def test_rank_bm25_synthetic_query100(benchmark, synthetic_indexes, threads):
    ours, _, queries, _, _ = synthetic_indexes
    q_ids, q_off = queries
    n = min(100, q_off.shape[0] - 1)
    few = (q_ids[:q_off[n]], q_off[:n + 1])
    label(benchmark, f"bm25-synthetic1M-query100-k{K}", threads, items=n, unit="queries")
    benchmark.pedantic(ours.retrieve, args=(few,), kwargs=dict(k=K, n_threads=threads), rounds=3, iterations=1)


def test_rank_bm25_synthetic_build(benchmark, synthetic, threads):
    docs, _, _ = synthetic
    label(benchmark, "bm25-synthetic1M-build", threads, items=docs[1].shape[0] - 1)
    benchmark.pedantic(lambda: BM25("lucene", **METHOD).index(docs, show_progress=False), rounds=1, iterations=1)


def test_bm25s_synthetic_build(benchmark, synthetic, threads, smoke):
    docs, _, vocab = synthetic
    doc_lists = _as_lists(docs)  # bm25s's input form; the conversion is not timed
    label(benchmark, "bm25-synthetic1M-build", threads, items=docs[1].shape[0] - 1)
    benchmark.pedantic(build_bm25s_ids, args=(doc_lists, vocab, _backend("numba", smoke)), rounds=1, iterations=1)
