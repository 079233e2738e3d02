"""Approximate dense search (DenseIndex index="hnsw" | "ivf" | "ivfpq", on FAISS) against the
exact index, single-query throughput, recall@10 and memory per vector.

Workload: a Gaussian mixture (1,000 clusters, cosine metric; uniform noise would defeat every
ANN index) of N x 384 float32 vectors, 200 queries drawn near the cluster centres, each searched
alone (one query per call, the latency-bound case where exact search is O(n) per query).
The issue's goal is at N = 1M: recall@10 >= 0.95 at >= 10x the exact index's single-query
throughput; ivfpq <= 1/8 of float32 per vector. N defaults to 30,000 (BENCH_ANN_N overrides;
build time grows like N log N for HNSW and N * nlist for IVF training). extra_info holds the
recall, bytes per vector and build seconds; `python bench/summary.py results.json` prints them.
"""
import functools
import os
import time

import numpy as np
import pytest

pytest.importorskip("faiss")

from _bench import label  # noqa: E402
from rank.retrieve.dense import DenseIndex  # noqa: E402

K = 10
N = int(os.environ.get("BENCH_ANN_N", "30000"))
KINDS = {
    "hnsw": {"hnsw_m": 32, "ef_construction": 100, "ef_search": 64},  # the class defaults
    "ivf": {"nprobe": 16},
    "ivfpq": {"nprobe": 16},
}
#: Searches timed: (built index, per-search knobs). "hnsw-ef128" searches the same graph with a
#: longer candidate list (the recall / speed knob of a built HNSW index).
SEARCHES = {"flat": ("flat", {}), "hnsw": ("hnsw", {}), "hnsw-ef128": ("hnsw", {"ef_search": 128}),
            "ivf": ("ivf", {}), "ivfpq": ("ivfpq", {})}


@pytest.fixture(scope="module")
def workload(smoke):
    n, dim, nq, clusters = (3_000, 32, 8, 30) if smoke else (N, 384, 200, 1_000)
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    x = np.empty((n, dim), np.float32)
    for i in range(0, n, 1 << 16):
        m = min(1 << 16, n - i)
        x[i:i + m] = centres[rng.integers(0, clusters, m)] + 0.5 * rng.standard_normal((m, dim), dtype=np.float32)
    q = centres[rng.integers(0, clusters, nq)] + 0.5 * rng.standard_normal((nq, dim), dtype=np.float32)
    exact = DenseIndex(dim, metric="cosine")
    exact.add(x)
    truth, _ = exact.search(q, k=K)
    return x, q, exact, truth


@pytest.fixture(scope="module")
def indexes(workload, threads):
    """kind -> (index, build seconds), each built on first use (``-k`` selects what is built)."""
    x, _, exact, _ = workload

    @functools.cache
    def get(kind):
        if kind == "flat":
            return exact, 0.0
        t0 = time.perf_counter()
        index = DenseIndex(x.shape[1], metric="cosine", index=kind, **KINDS[kind])
        index.add(x, show_progress=False)
        return index, time.perf_counter() - t0
    return get


def recall(ids, truth):
    return float(np.mean([len(set(a.tolist()) & set(t.tolist())) / K for a, t in zip(ids, truth)]))


def one_by_one(index, q, n_threads, knobs):
    return [index.search(row, k=K, n_threads=n_threads, **knobs)[0] for row in q]


@pytest.mark.parametrize("search", list(SEARCHES))
def test_single_query_search(benchmark, workload, indexes, search, threads):
    x, q, _, truth = workload
    kind, knobs = SEARCHES[search]
    index, build = indexes(kind)
    label(benchmark, f"ann-top{K}-{x.shape[0]}x{x.shape[1]}-single", threads, items=q.shape[0], unit="queries")
    ids = benchmark.pedantic(one_by_one, args=(index, q, threads, knobs), rounds=3, iterations=1)
    benchmark.extra_info.update(
        recall_at_10=recall(np.array(ids), truth), bytes_per_vector=index.nbytes / len(index),
        float32_bytes_per_vector=4 * x.shape[1], build_seconds=build, n=x.shape[0])
    if kind in ("flat", "hnsw", "ivf"):
        assert recall(np.array(ids), truth) >= (0.999 if kind == "flat" else 0.8)
