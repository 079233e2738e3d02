"""Exact dense search and dense scoring, side by side with NumPy's `queries @ matrix.T` (sgemm).

Workload (the foundation issue): 1,000,000 x 384 float32 L2-normalised vectors and a batch of
64 queries. `DenseIndex.search(k=10)` (fused blocked products + per-thread heaps, no score
matrix) against the bare sgemm that only computes the (64, 1M) score matrix, and against
sgemm followed by NumPy's top-k selection; `dot_scores` against the same sgemm; and one query
(`dot_scores`, `search`) against NumPy's `matrix @ query` (sgemv).

Both sides use the same thread count: ours through `n_threads`, OpenBLAS through
threadpoolctl in conftest.py (BENCH_THREADS). The goal is a search time <= sgemm time / 0.7.
Effective GFLOP/s = 2 * n_queries * n * d / time is stored in each benchmark's extra_info;
`python bench/summary.py results.json` prints the ratios.
"""
import numpy as np
import pytest

from _bench import label
from rank.retrieve.dense import DenseIndex, dot_scores

K = 10


@pytest.fixture
def n_threads(threads):
    """BENCH_THREADS (see conftest.py): ours and OpenBLAS alike."""
    return threads


@pytest.fixture(scope="module")
def workload(smoke):
    """(index, matrix, queries, flops), generated once from a fixed seed."""
    n, dim, nq = (2_000, 48, 7) if smoke else (1_000_000, 384, 64)
    rng = np.random.default_rng(0)
    matrix = rng.standard_normal((n, dim), dtype=np.float32)
    for i in range(0, n, 1 << 16):  # normalise in place, chunk by chunk
        part = matrix[i:i + (1 << 16)]
        part /= np.linalg.norm(part, axis=1, keepdims=True)
    queries = rng.standard_normal((nq, dim), dtype=np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    index = DenseIndex(dim, metric="cosine")
    index.add(matrix)
    return index, matrix, queries, 2.0 * nq * n * dim


def sgemm(queries, matrix):
    return queries @ matrix.T


def sgemm_topk(queries, matrix, k=K):
    scores = queries @ matrix.T
    part = np.argpartition(-scores, k, axis=1)[:, :k]
    top = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-top, axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def check_top(ids, scores, matrix, queries):
    """Up to two queries: right scores, sorted, and no better row missed (float32 sgemv reference)."""
    for i in range(min(2, len(ids))):
        exact = matrix[ids[i]].astype(np.float64) @ queries[i].astype(np.float64)
        np.testing.assert_allclose(scores[i], exact, rtol=1e-5, atol=1e-6)
        assert (np.diff(scores[i]) <= 0).all()
        kth = np.partition(matrix @ queries[i], -K)[-K]
        assert scores[i][-1] >= kth - 1e-5


def test_rank_dense_search(benchmark, workload, n_threads):
    index, matrix, queries, flops = workload
    label(benchmark, f"dense-top{K}-64x1Mx384", n_threads, flops=flops)
    ids, scores = benchmark(index.search, queries, k=K, n_threads=n_threads)
    check_top(ids, scores, matrix, queries)


def test_numpy_sgemm_for_search(benchmark, workload, n_threads):
    _, matrix, queries, flops = workload
    label(benchmark, f"dense-top{K}-64x1Mx384", n_threads, flops=flops)
    benchmark(sgemm, queries, matrix)


def test_numpy_sgemm_argpartition(benchmark, workload, n_threads):
    _, matrix, queries, flops = workload
    label(benchmark, f"dense-top{K}-64x1Mx384", n_threads, flops=flops)
    benchmark(sgemm_topk, queries, matrix)


def test_rank_dot_scores(benchmark, workload, n_threads):
    _, matrix, queries, flops = workload
    label(benchmark, "dense-scores-64x1Mx384", n_threads, flops=flops)
    out = benchmark(dot_scores, queries, matrix, n_threads=n_threads)
    np.testing.assert_allclose(out[:, :1000], sgemm(queries, matrix[:1000]), rtol=1e-5, atol=1e-6)


def test_numpy_sgemm_for_scores(benchmark, workload, n_threads):
    _, matrix, queries, flops = workload
    label(benchmark, "dense-scores-64x1Mx384", n_threads, flops=flops)
    benchmark(sgemm, queries, matrix)


def test_rank_dot_scores_one_query(benchmark, workload, n_threads):
    _, matrix, queries, flops = workload
    label(benchmark, "dense-scores-1x1Mx384", n_threads, flops=flops / queries.shape[0])
    benchmark(dot_scores, queries[0], matrix, n_threads=n_threads)


def test_rank_dense_search_one_query(benchmark, workload, n_threads):
    index, matrix, queries, flops = workload
    label(benchmark, "dense-scores-1x1Mx384", n_threads, flops=flops / queries.shape[0])
    ids, scores = benchmark(index.search, queries[0], k=K, n_threads=n_threads)
    check_top(ids[None], scores[None], matrix, queries[:1])


def test_numpy_sgemv_one_query(benchmark, workload, n_threads):
    _, matrix, queries, flops = workload
    label(benchmark, "dense-scores-1x1Mx384", n_threads, flops=flops / queries.shape[0])
    benchmark(np.dot, matrix, queries[0])
