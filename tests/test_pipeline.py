"""Pipeline: retrieval equals the retriever's own top-k, fusion equals reciprocal rank fusion
computed here, reranking equals sorting by scores computed here (cross-encoder, MaxSim over
token matrices, plain functions), rerank_run, threads, and errors."""
import zlib

import numpy as np
import pytest

from rank.errors import InvalidValueError, RankError, ShapeError
from rank.pipeline import Hit, Pipeline, progress, rerank_run

BM25 = pytest.importorskip("rank.retrieve").BM25

DOCS = [
    "parse a date from a string with a format",
    "sort a list of numbers in place",
    "the date and time of the current day",
    "compress bytes with the gzip format",
    "read a csv file row by row",
    "format a date as an ISO string",
    "copy a directory tree recursively",
    "a list of the files in a directory",
]
IDS = [f"d{i}" for i in range(len(DOCS))]
QUERIES = ["date string", "directory files", "gzip", "list sort numbers", "zebra"]


@pytest.fixture(scope="module")
def bm25():
    return BM25().index(DOCS, ids=IDS, show_progress=False)


@pytest.fixture(scope="module")
def bm25_alt():
    return BM25(method="robertson", k1=0.9, b=0.4).index(DOCS, ids=IDS, show_progress=False)


def reference_hits(retriever, queries, k):
    idx, scores = retriever.search(queries, k=k)
    return [[(IDS[i], float(s)) for i, s in zip(row_i, row_s) if i >= 0] for row_i, row_s in zip(idx, scores)]


def test_search_equals_retriever_topk(bm25):
    hits = Pipeline(bm25).search(QUERIES, k=4)
    assert len(hits) == len(QUERIES)
    assert [[(h.id, h.score) for h in row] for row in hits] == reference_hits(bm25, QUERIES, 4)
    assert all(isinstance(h, Hit) for row in hits for h in row)
    assert hits[0][0].id in ("d0", "d5") and hits[2][0].id == "d3"
    for row in hits:
        assert [h.score for h in row] == sorted((h.score for h in row), reverse=True)


def test_single_string_and_empty_queries(bm25):
    pipe = Pipeline(bm25)
    assert pipe.search("gzip", k=2) == pipe.search(["gzip"], k=2)
    assert pipe.search([], k=3) == []


def test_run_dict_in_rank_order(bm25):
    run = Pipeline(bm25).run({"q1": "date string", "q2": "gzip"}, k=3)
    assert list(run) == ["q1", "q2"]
    ref = reference_hits(bm25, ["date string", "gzip"], 3)
    for qid, expected in zip(run, ref):
        assert list(run[qid].items()) == expected


def rrf_reference(rankings, k):
    """Reciprocal rank fusion; each ranking ranked as trec_eval orders it (score descending,
    equal scores by document id descending), the convention of rank.fusion.fuse."""
    fused = {}
    for ranking in rankings:
        ranking = sorted(sorted(ranking, reverse=True), key=lambda p: -p[1])
        for r, (doc, _) in enumerate(ranking, 1):
            fused[doc] = fused.get(doc, 0.0) + 1.0 / (k + r)
    return fused


def test_fusion_is_reciprocal_rank_fusion(bm25, bm25_alt):
    pytest.importorskip("rank.fusion")
    depth = 6
    pipe = Pipeline([bm25, bm25_alt], depth=depth)
    assert pipe.fusion == "rrf"
    hits = pipe.search(QUERIES[:4], k=5)
    a, b = reference_hits(bm25, QUERIES[:4], depth), reference_hits(bm25_alt, QUERIES[:4], depth)
    for row, ra, rb in zip(hits, a, b):
        ref = rrf_reference([ra, rb], 60)
        first_met = {d: i for i, d in enumerate(dict.fromkeys([d for d, _ in ra + rb]))}
        assert [h.id for h in row] == sorted(ref, key=lambda d: (-ref[d], first_met[d]))[:5]
        for h in row:
            assert h.score == pytest.approx(ref[h.id], rel=1e-9)


def test_fusion_function_and_errors(bm25, bm25_alt):
    def keep_first(runs):
        return runs[0]

    hits = Pipeline([bm25, bm25_alt], fusion=keep_first, depth=4).search(QUERIES[:2], k=4)
    assert [[(h.id, h.score) for h in row] for row in hits] == reference_hits(bm25, QUERIES[:2], 4)
    with pytest.raises(InvalidValueError, match="fusion"):
        Pipeline(bm25, fusion="rrf")
    with pytest.raises(InvalidValueError, match="retriever"):
        Pipeline([])
    with pytest.raises(InvalidValueError, match=r"retriever\[1\]"):
        Pipeline([bm25, object()])


def overlap(query, texts):
    q = set(query.split())
    return [float(len(q & set(t.split()))) for t in texts]


class PairScorer:
    """A cross-encoder stand-in: predict(pairs) scores each (query, text) by word overlap."""

    def __init__(self):
        self.calls = 0

    def predict(self, pairs):
        self.calls += 1
        return np.array([overlap(q, [t])[0] for q, t in pairs], dtype=np.float32)


def expected_rerank(first_stage, scores_of):
    """Candidates sorted by the reranker's score, ties in first-stage order."""
    scores = scores_of([d for d, _ in first_stage])
    order = sorted(range(len(first_stage)), key=lambda i: (-scores[i], i))
    return [(first_stage[i][0], scores[i]) for i in order]


@pytest.mark.parametrize("as_mapping", [False, True])
def test_rerank_with_cross_encoder(bm25, as_mapping):
    documents = dict(zip(IDS, DOCS)) if as_mapping else DOCS
    scorer = PairScorer()
    query = "a date in a string format"
    pipe = Pipeline(bm25, reranker=scorer, documents=documents, depth=5)
    assert pipe.reranker_kind == "cross-encoder"
    got = [(h.id, h.score) for h in pipe.search([query], k=3)[0]]
    first = reference_hits(bm25, [query], 5)[0]
    text = dict(zip(IDS, DOCS))
    ref = expected_rerank(first, lambda ids: overlap(query, [text[d] for d in ids]))[:3]
    assert got == ref


def test_rerank_with_function_keeps_first_stage_order_on_ties(bm25):
    pipe = Pipeline(bm25, reranker=lambda q, texts: np.zeros(len(texts)), documents=DOCS, depth=4)
    assert pipe.reranker_kind == "function"
    got = pipe.search(["date string"], k=4)[0]
    assert [h.id for h in got] == [d for d, _ in reference_hits(bm25, ["date string"], 4)[0]]
    assert all(h.score == 0.0 for h in got)


class HashEncoder:
    """A late-interaction stand-in: each word maps to a fixed random unit vector (seeded by its
    CRC32), a text to the matrix of its words' vectors."""

    dim = 16

    def vec(self, word):
        v = np.random.default_rng(zlib.crc32(word.encode())).standard_normal(self.dim).astype(np.float32)
        return v / np.linalg.norm(v)

    def matrix(self, text):
        return np.stack([self.vec(w) for w in text.split()] or [np.zeros(self.dim, np.float32)])

    def encode_queries(self, texts):
        return [self.matrix(t) for t in texts]

    def encode_documents(self, texts):
        return [self.matrix(t) for t in texts]


class HoldsEncoder:
    def __init__(self, encoder):
        self.encoder = encoder


def maxsim_reference(q, d):
    return float((q.astype(np.float64) @ d.astype(np.float64).T).max(axis=1).sum())


@pytest.mark.parametrize("wrap", [False, True])
def test_rerank_with_late_interaction_is_maxsim(bm25, wrap):
    enc = HashEncoder()
    query = "list of files in a directory"
    pipe = Pipeline(bm25, reranker=HoldsEncoder(enc) if wrap else enc, documents=DOCS, depth=6)
    assert pipe.reranker_kind == "late-interaction"
    got = pipe.search([query], k=6)[0]
    first = reference_hits(bm25, [query], 6)[0]
    text = dict(zip(IDS, DOCS))
    ref_scores = {d: maxsim_reference(enc.matrix(query), enc.matrix(text[d])) for d, _ in first}
    assert [h.id for h in got] == sorted(ref_scores, key=lambda d: -ref_scores[d])
    for h in got:
        assert h.score == pytest.approx(ref_scores[h.id], rel=1e-5)


def test_rerank_errors(bm25):
    with pytest.raises(InvalidValueError, match="documents"):
        Pipeline(bm25, reranker=PairScorer())
    with pytest.raises(InvalidValueError, match="reranker"):
        Pipeline(bm25, reranker=object(), documents=DOCS)
    bad = Pipeline(bm25, reranker=lambda q, texts: [1.0], documents=DOCS, depth=3)
    with pytest.raises(ShapeError, match="1 scores for 3 documents"):
        bad.search(["date string"], k=3)
    missing = Pipeline(bm25, reranker=PairScorer(), documents={"d0": DOCS[0]}, depth=3)
    with pytest.raises(InvalidValueError, match="no text for document id"):
        missing.search(["date string"], k=3)


def test_search_argument_errors(bm25):
    pipe = Pipeline(bm25)
    with pytest.raises(InvalidValueError, match="k"):
        pipe.search(["gzip"], k=0)
    with pytest.raises(InvalidValueError, match=r"queries\[1\]"):
        pipe.search(["gzip", 3], k=2)
    with pytest.raises(InvalidValueError, match="depth"):
        Pipeline(bm25, depth=0)
    with pytest.raises(RankError):
        Pipeline(bm25).search(["gzip"], k=2, n_threads=0)


def test_rerank_run_depth_and_k():
    run = {"q1": {"a": 3.0, "b": 2.0, "c": 1.0, "d": 0.5}, "q2": {}}
    docs = {"a": "sort lists", "b": "parse dates", "c": "dates and times", "d": "parse dates now"}
    out = rerank_run(overlap, {"q1": "parse dates", "q2": "x"}, run, docs, depth=3, k=2)
    assert out == {"q1": {"b": 2.0, "c": 1.0}, "q2": {}}  # d is past the depth, a scores 0
    assert list(out["q1"]) == ["b", "c"]
    out = rerank_run(PairScorer(), {"q1": "parse dates"}, {"q1": run["q1"]}, docs)
    assert list(out["q1"]) == ["b", "d", "c", "a"]
    with pytest.raises(InvalidValueError, match="query id 'q2'"):
        rerank_run(overlap, {"q1": "parse dates"}, run, docs)
    with pytest.raises(InvalidValueError, match="document id 'c'"):
        rerank_run(overlap, {"q1": "parse dates"}, {"q1": run["q1"]}, {"a": "x", "b": "y"})


def test_shared_between_threads(bm25, run_threads):
    pipe = Pipeline(bm25, reranker=HashEncoder(), documents=DOCS, depth=5)
    expected = pipe.search(QUERIES, k=3, n_threads=1)
    results = run_threads(lambda i: pipe.search(QUERIES, k=3, n_threads=1), n=4)
    assert all(r == expected for r in results)


def test_progress_passes_items_through():
    assert list(progress(range(5), total=5, desc="x")) == list(range(5))
    assert list(progress(iter("abc"), enabled=False)) == ["a", "b", "c"]
