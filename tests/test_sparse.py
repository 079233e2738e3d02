"""SparseIndex: dot products against a float64 dense reference, exact top-k against sorting all
scores (negative weights, zero-score documents, masks, the pruned path), CSR input, add,
persistence, the kernel shared with BM25, and bad input."""
import numpy as np
import pytest

from _helpers import exhaustive_topk as exhaustive
from rank.errors import CorruptFileError, DTypeError, InvalidValueError, NonFiniteError, ShapeError
from rank.retrieve import BM25, SparseIndex


def random_vectors(rng, n, n_terms, nnz, negative=False):
    out = []
    for _ in range(n):
        terms = rng.choice(n_terms, size=rng.integers(0, nnz + 1), replace=False)
        w = rng.random(terms.shape[0]).astype(np.float32) + 0.01
        if negative:
            w = w - 0.5
        out.append({int(t): float(x) for t, x in zip(terms, w)})
    return out


def dense(vectors, n_terms):
    m = np.zeros((len(vectors), n_terms))
    for i, v in enumerate(vectors):
        for t, x in v.items():
            m[i, t] = np.float32(x)
    return m


@pytest.mark.parametrize("negative", [False, True])
@pytest.mark.parametrize("n_docs", [40, 2000])
def test_scores_and_exact_topk(negative, n_docs):
    rng = np.random.default_rng(n_docs + negative)
    docs = random_vectors(rng, n_docs, 300, 25, negative)
    queries = random_vectors(rng, 20, 320, 8, negative)  # some query terms exist in no document
    index = SparseIndex().add(docs)
    ref = dense(queries, 320) @ dense(docs, 320).T
    for i, q in enumerate(queries):
        got = index.get_scores(q)
        np.testing.assert_allclose(got, ref[i], rtol=1e-5, atol=1e-5)
    for k in (1, 7, 50):
        idx, sc = index.search(queries, k=k, n_threads=2)
        for i, q in enumerate(queries):
            ei, es = exhaustive(index.get_scores(q), min(k, n_docs))
            np.testing.assert_array_equal(idx[i], ei)
            np.testing.assert_array_equal(sc[i], es)


@pytest.mark.parametrize("n_docs", [60, 3001, 20_000])
def test_dense_selection_with_ties_and_masks(n_docs):
    """Queries touching most documents take the block-maximum selection: ties (small integer
    weights), a partial last block, shared and per-query masks, unknown terms."""
    rng = np.random.default_rng(n_docs)
    n_terms = 12
    docs = [{int(t): float(rng.integers(1, 4)) for t in rng.choice(n_terms, rng.integers(1, 5), replace=False)}
            for _ in range(n_docs)]
    index = SparseIndex().add(docs)
    # Term 99 is in no document.
    queries = [[(int(t), float(rng.integers(1, 3))) for t in rng.integers(0, n_terms, rng.integers(3, 9))] + [(99, 1.0)]
               for _ in range(12)]
    as_dicts = []
    for q in queries:
        d = {}
        for t, w in q:
            d[t] = d.get(t, 0.0) + w
        as_dicts.append(d)
    shared = rng.random(n_docs) < 0.7
    per_query = rng.random((len(queries), n_docs)) < 0.3
    for k in (1, 3, 64, 100, 257):
        kk = min(k, n_docs)
        for mask in (None, shared, per_query):
            idx, sc = index.search(as_dicts, k=k, mask=mask, n_threads=2)
            for i, q in enumerate(as_dicts):
                allowed = None if mask is None else (mask if mask.ndim == 1 else mask[i])
                ei, es = exhaustive(index.get_scores(q), kk, allowed)
                np.testing.assert_array_equal(idx[i], ei)
                np.testing.assert_array_equal(sc[i], es)


def test_reused_work_array_is_left_zero():
    """The work array kept between searches must leave its accumulator and marker parts (bytes
    [0, 4 (n + 1)) and [12 (n + 1), 13 (n + 1)) of each row) zero after every kind of search
    (exhaustive, touched-list, pruned with candidates, masked), so reuse changes nothing."""
    rng = np.random.default_rng(5)
    n_docs, n_terms = 30_000, 400
    lens = rng.integers(1, 9, n_docs)
    terms = (rng.zipf(1.3, size=int(lens.sum())) - 1) % n_terms
    sp = pytest.importorskip("scipy.sparse")
    rows = np.repeat(np.arange(n_docs), lens)
    m = sp.csr_matrix((rng.random(terms.shape[0]).astype(np.float32), (rows, terms)), shape=(n_docs, n_terms))
    index = SparseIndex().add(m)
    queries = [{int(t): float(rng.random()) for t in (rng.zipf(1.3, size=rng.integers(1, 7)) - 1) % n_terms}
               for _ in range(40)] + [{0: 1.0, 399: 2.0}, {}]
    mask = rng.random(n_docs) < 0.6
    first = [index.search(queries, k=k, mask=msk, n_threads=2) for k in (1, 10, 300) for msk in (None, mask)]
    def dirty(work):
        return work[:, :4 * (n_docs + 1)].any() or work[:, 12 * (n_docs + 1):13 * (n_docs + 1)].any()

    work = index._postings._spare
    assert work is not None and work.shape[0] == 2 and not dirty(work)
    for q in queries[:5]:  # one query per call reuses the array too
        index.search([q], k=10, n_threads=1)
    assert not dirty(index._postings._spare)
    again = [index.search(queries, k=k, mask=msk, n_threads=2) for k in (1, 10, 300) for msk in (None, mask)]
    for (i1, s1), (i2, s2) in zip(first, again):
        np.testing.assert_array_equal(i1, i2)
        np.testing.assert_array_equal(s1, s2)
    i, sc = index.search(queries, k=10)
    for row, q in enumerate(queries):
        ei, es = exhaustive(index.get_scores(q), 10)
        np.testing.assert_array_equal(i[row], ei)
        np.testing.assert_array_equal(sc[row], es)


@pytest.mark.slow
def test_pruned_path_large_index_with_masks():
    rng = np.random.default_rng(0)
    n_docs, n_terms = 70_000, 3000
    lens = rng.integers(1, 8, n_docs)
    terms = (rng.zipf(1.2, size=int(lens.sum())) - 1) % n_terms
    sp = pytest.importorskip("scipy.sparse")
    rows = np.repeat(np.arange(n_docs), lens)
    m = sp.csr_matrix((rng.random(terms.shape[0]).astype(np.float32), (rows, terms)), shape=(n_docs, n_terms))
    index = SparseIndex().add(m)
    queries = [{int(t): float(rng.random()) for t in (rng.zipf(1.2, size=rng.integers(2, 8)) - 1) % n_terms}
               for _ in range(30)]
    mask = rng.random(n_docs) < 0.5
    for k, msk in ((10, None), (100, None), (20, mask)):
        idx, sc = index.search(queries, k=k, mask=msk)
        for i, q in enumerate(queries):
            ei, es = exhaustive(index.get_scores(q), k, msk)
            np.testing.assert_array_equal(idx[i], ei)
            np.testing.assert_array_equal(sc[i], es)


def test_negative_scores_rank_below_untouched_documents():
    index = SparseIndex().add([{0: 1.0}, {1: 1.0}, {2: 1.0}, {}])
    idx, sc = index.search({0: 2.0, 1: -1.0}, k=4)
    assert idx.tolist() == [[0, 2, 3, 1]] and sc.tolist() == [[2.0, 0.0, 0.0, -1.0]]


def test_csr_input_equals_dicts_and_sums_duplicates():
    sp = pytest.importorskip("scipy.sparse")
    rng = np.random.default_rng(3)
    docs = random_vectors(rng, 100, 50, 10)
    m = sp.csr_matrix(dense(docs, 50).astype(np.float32))
    a, b = SparseIndex().add(docs), SparseIndex().add(m)
    q = {1: 0.5, 7: 2.0, 49: 1.0}
    np.testing.assert_array_equal(a.get_scores(q), b.get_scores(q))
    qm = sp.csr_matrix(([0.5, 2.0, 1.0], ([0, 0, 0], [1, 7, 49])), shape=(1, 50))
    np.testing.assert_array_equal(a.search(q, k=5)[0], b.search(qm, k=5)[0])
    dup = sp.csr_matrix((np.array([1.0, 2.0], np.float32), (np.array([0, 0]), np.array([3, 3]))), shape=(1, 5))
    assert SparseIndex().add(dup).get_scores({3: 1.0}).tolist() == [3.0]


def test_add_in_batches_equals_one_batch():
    rng = np.random.default_rng(4)
    docs = random_vectors(rng, 300, 80, 12)
    one = SparseIndex().add(docs)
    parts = SparseIndex().add(docs[:100]).add(docs[100:101]).add([]).add(docs[101:])
    assert parts.n_docs == 300 and parts.n_terms == one.n_terms
    for q in random_vectors(rng, 10, 90, 5):
        np.testing.assert_array_equal(one.get_scores(q), parts.get_scores(q))


def test_one_kernel_for_bm25_and_sparse_vectors():
    """A SparseIndex of BM25 impacts (computed here from the formulas) ranks like BM25."""
    docs = [["a", "b", "a"], ["b", "c"], ["c", "c", "c", "d"], ["a"], []]
    bm = BM25("lucene", k1=1.2, b=0.75).index(docs, show_progress=False)
    vocab = bm.tokenizer.vocabulary
    n = len(docs)
    avgdl = sum(map(len, docs)) / n
    df = {t: sum(t in d for d in docs) for t in vocab}
    vectors = []
    for d in docs:
        v = {}
        for t in set(d):
            idf = np.float32(np.log(1 + (n - df[t] + 0.5) / (df[t] + 0.5)))
            tf = d.count(t)
            v[vocab[t]] = float(np.float32(float(idf) * tf / (1.2 * (0.25 + 0.75 * len(d) / avgdl) + tf)))
        vectors.append(v)
    sparse = SparseIndex().add(vectors)
    for q in (["a"], ["a", "c"], ["b", "d", "c"]):
        np.testing.assert_allclose(sparse.get_scores({vocab[t]: 1.0 for t in q}), bm.get_scores(q), rtol=1e-6)
        np.testing.assert_array_equal(sparse.search({vocab[t]: 1.0 for t in q}, k=3)[0], bm.search([q], k=3)[0])


@pytest.mark.parametrize("mmap", [True, False])
def test_save_load(tmp_path, mmap):
    rng = np.random.default_rng(5)
    index = SparseIndex().add(random_vectors(rng, 50, 40, 6))
    index.save(tmp_path / "sp")
    loaded = SparseIndex.load(tmp_path / "sp", mmap=mmap)
    q = {0: 1.0, 5: 0.5, 39: 2.0}
    np.testing.assert_array_equal(loaded.get_scores(q), index.get_scores(q))
    loaded.add([{1: 1.0}])
    assert loaded.n_docs == 51
    with pytest.raises(CorruptFileError):
        BM25.load(tmp_path / "sp")  # a sparse index is not a BM25 index
    (tmp_path / "sp" / "values.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(CorruptFileError):
        SparseIndex.load(tmp_path / "sp", mmap=mmap)


def test_bad_input():
    with pytest.raises(InvalidValueError):
        SparseIndex().search({0: 1.0})
    with pytest.raises(DTypeError):
        SparseIndex().add(["not a dict"])
    with pytest.raises(DTypeError):
        SparseIndex().add([{"term": 1.0}])
    with pytest.raises(DTypeError):
        SparseIndex().add([{1.5: 1.0}])
    with pytest.raises(InvalidValueError):
        SparseIndex().add([{-1: 1.0}])
    with pytest.raises(NonFiniteError):
        SparseIndex().add([{0: float("nan")}])
    with pytest.raises(DTypeError):
        SparseIndex().add([{0: "heavy"}])
    index = SparseIndex().add([{0: 1.0}, {1: 1.0}])
    with pytest.raises(InvalidValueError):
        index.search({0: 1.0}, k=0)
    with pytest.raises(ShapeError):
        index.search({0: 1.0}, mask=np.ones(5, bool))
    with pytest.raises(ShapeError):
        index.get_scores([{0: 1.0}, {1: 1.0}])
    assert index.search({5: 1.0}, k=5)[0].tolist() == [[0, 1]]  # unknown term, k clipped
