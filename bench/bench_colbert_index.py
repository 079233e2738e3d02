"""ColBERTIndex (PLAID-style first stage) against exhaustive MaxSim over every passage.

Workload: a synthetic ColBERT-like token corpus of N passages (16-63 unit tokens of dim 128,
each passage mixing 4 of 2,000 topics, plus noise) and 20 queries of 32 tokens drawn from
passages. Exhaustive: `rank.maxsim_batch` over all passages stored as float16 (the
uncompressed baseline). ColBERTIndex with nbits 2, 4 and 8 (default knobs otherwise), each
query searched alone (nbits 4 and 8 reuse the centroids of nbits 2). extra_info: recall@10
against the exhaustive top 10, index bytes per token and their ratio to float16, build seconds
(nbits 2 includes k-means). The issue's goals (1M passages): recall@10
>= 0.95, >= 20x exhaustive throughput, <= 1/4 of float16 per token. N defaults to 5,000
(BENCH_COLBERT_N overrides); exhaustive cost grows linearly with N, ours about as sqrt(N).
"""
import os
import time

import numpy as np
import pytest

pytest.importorskip("faiss")

from _bench import label  # noqa: E402
from rank import maxsim_batch  # noqa: E402
from rank.retrieve import ColBERTIndex  # noqa: E402

K = 10
N = int(os.environ.get("BENCH_COLBERT_N", "5000"))


def unit(x):
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def workload(smoke, threads):
    n, dim, topics_n, nq, lq = (300, 32, 50, 3, 8) if smoke else (N, 128, 2_000, 20, 32)
    rng = np.random.default_rng(0)
    topics = unit(rng.standard_normal((topics_n, dim)))
    lengths = rng.integers(16, 64, n)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    flat = np.empty((int(offsets[-1]), dim), np.float32)
    for i in range(n):
        mine = rng.choice(topics_n, 4, replace=False)
        t = topics[mine[rng.integers(0, 4, lengths[i])]]
        flat[offsets[i]:offsets[i + 1]] = unit(t + 0.35 * rng.standard_normal(t.shape) / np.sqrt(dim))
    queries = []
    for i in rng.integers(0, n, nq):
        d = flat[offsets[i]:offsets[i + 1]]
        q = d[rng.integers(0, d.shape[0], lq)]
        queries.append(unit(q + 0.3 * rng.standard_normal(q.shape) / np.sqrt(dim)))
    flat16 = flat.astype(np.float16)
    truth = [np.argsort(-maxsim_batch(q, (flat16, offsets), n_threads=threads), kind="stable")[:K] for q in queries]
    return flat, flat16, offsets, queries, truth


@pytest.fixture(scope="module")
def built(workload, threads):
    flat, _, offsets, _, _ = workload
    cache = {}

    def get(nbits):
        # nbits=2 trains (k-means); the others reuse its centroids and fit only their buckets.
        if nbits not in cache:
            t0 = time.perf_counter()
            index = ColBERTIndex(flat.shape[1], nbits=nbits)
            if nbits != 2:
                index.train(flat, centroids=get(2)[0].centroids, n_threads=threads, show_progress=False)
            index.add((flat, offsets), n_threads=threads, show_progress=False)
            cache[nbits] = (index, time.perf_counter() - t0)
        return cache[nbits]
    return get


def exhaustive(flat16, offsets, queries, threads):
    out = []
    for q in queries:
        s = maxsim_batch(q, (flat16, offsets), n_threads=threads)
        out.append(np.argpartition(-s, K)[:K])
    return out


def test_exhaustive_maxsim_float16(benchmark, workload, threads):
    flat, flat16, offsets, queries, truth = workload
    label(benchmark, f"colbert-index-{len(offsets) - 1}", threads, items=len(queries), unit="queries",
          bytes_per_token=2 * flat.shape[1], tokens=flat.shape[0])
    benchmark.pedantic(exhaustive, args=(flat16, offsets, queries, threads), rounds=2, iterations=1)


@pytest.mark.parametrize("nbits", [2, 4, 8])
def test_rank_colbert_index(benchmark, workload, built, nbits, threads):
    flat, _, offsets, queries, truth = workload
    index, build = built(nbits)
    label(benchmark, f"colbert-index-{len(offsets) - 1}", threads, items=len(queries), unit="queries")

    def run():
        return [index.search(q, k=K, n_threads=threads)[0] for q in queries]
    ids = benchmark.pedantic(run, rounds=3, iterations=1)
    rec = float(np.mean([len(set(a.tolist()) & set(t.tolist())) / K for a, t in zip(ids, truth)]))
    per_token = index.nbytes / index.n_tokens
    benchmark.extra_info.update(recall_at_10=rec, bytes_per_token=per_token,
                                ratio_to_float16=per_token / (2 * flat.shape[1]), build_seconds=build,
                                n_centroids=index.n_centroids, tokens=index.n_tokens)
    assert rec >= 0.5
