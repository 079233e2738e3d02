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

The corpus is generated and added in chunks of 20,000 passages and kept only as float16 (1M
passages: about 40M tokens, 10 GB), so the index is built by ``train`` on a 262,144-token
sample of the whole corpus and then ``add`` per chunk. Centroids: the index's default
(``2 ** floor(log2(4 sqrt(T)))``) capped at 4,096, to keep k-means and the nearest-centroid
assignment of 40M tokens within minutes on 2 cores. At N > 100,000, 10 queries instead of 20.
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


_CHUNK = 20_000  # passages generated (and added) per step: 1M passages never exist as float32 at once
_MAX_CENTROIDS = 4_096


def _passages(rng, topics, lengths, noise):
    """Unit tokens of passages with the given lengths, each mixing 4 random topics plus noise."""
    n, dim = lengths.shape[0], topics.shape[1]
    mine = np.argsort(rng.random((n, topics.shape[0])), axis=1)[:, :4] if topics.shape[0] <= 64 else \
        np.stack([rng.choice(topics.shape[0], 4, replace=False) for _ in range(n)])
    doc = np.repeat(np.arange(n), lengths)
    t = topics[mine[doc, rng.integers(0, 4, doc.shape[0])]]
    return unit(t + noise * rng.standard_normal(t.shape, dtype=np.float32) / np.sqrt(dim))


@pytest.fixture(scope="module")
def workload(smoke, threads):
    n, dim, topics_n, nq, lq = (300, 32, 50, 3, 8) if smoke else (N, 128, 2_000, 20 if N <= 100_000 else 10, 32)
    rng = np.random.default_rng(0)
    topics = unit(rng.standard_normal((topics_n, dim)))
    lengths = rng.integers(16, 64, n)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    flat16 = np.empty((int(offsets[-1]), dim), np.float16)
    for s in range(0, n, _CHUNK):
        e = min(n, s + _CHUNK)
        flat16[offsets[s]:offsets[e]] = _passages(rng, topics, lengths[s:e], 0.35)
    queries = []
    for i in rng.integers(0, n, nq):
        d = flat16[offsets[i]:offsets[i + 1]].astype(np.float32)
        q = d[rng.integers(0, d.shape[0], lq)]
        queries.append(unit(q + 0.3 * rng.standard_normal(q.shape) / np.sqrt(dim)))
    truth = [np.argsort(-maxsim_batch(q, (flat16, offsets), n_threads=threads), kind="stable")[:K] for q in queries]
    return flat16, offsets, queries, truth


@pytest.fixture(scope="module")
def built(workload, threads):
    flat16, offsets, _, _ = workload
    n, t = offsets.shape[0] - 1, flat16.shape[0]
    # The index's default centroid count (4 sqrt(T), a power of two), capped for k-means and
    # assignment cost on small machines; training samples tokens of the whole corpus.
    c = min(_MAX_CENTROIDS, 2 ** int(np.floor(np.log2(4 * np.sqrt(t)))), t // 32)
    sample = flat16[np.sort(np.random.default_rng(1).choice(t, min(t, 1 << 18), replace=False))].astype(np.float32)
    cache = {}

    def get(nbits):
        # nbits=2 trains (k-means); the others reuse its centroids and fit only their buckets.
        if nbits not in cache:
            t0 = time.perf_counter()
            index = ColBERTIndex(flat16.shape[1], nbits=nbits, n_centroids=c)
            given = None if nbits == 2 else get(2)[0].centroids
            index.train(sample, centroids=given, n_threads=threads, show_progress=False)
            for s in range(0, n, _CHUNK):  # add without retraining, one chunk of passages at a time
                e = min(n, s + _CHUNK)
                index.add((flat16[offsets[s]:offsets[e]], offsets[s:e + 1] - offsets[s]), n_threads=threads,
                          show_progress=False)
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
    flat16, offsets, queries, truth = workload
    label(benchmark, f"colbert-index-{len(offsets) - 1}", threads, items=len(queries), unit="queries",
          bytes_per_token=2 * flat16.shape[1], tokens=flat16.shape[0])
    benchmark.pedantic(exhaustive, args=(flat16, offsets, queries, threads), rounds=2, iterations=1)


@pytest.mark.parametrize("nbits", [2, 4, 8])
def test_rank_colbert_index(benchmark, workload, built, nbits, threads):
    flat16, offsets, queries, truth = workload
    index, build = built(nbits)
    label(benchmark, f"colbert-index-{len(offsets) - 1}", threads, items=len(queries), unit="queries")

    def run():
        return [index.search(q, k=K, n_threads=threads)[0] for q in queries]
    ids = benchmark.pedantic(run, rounds=3, iterations=1)
    rec = float(np.mean([len(set(a.tolist()) & set(t.tolist())) / K for a, t in zip(ids, truth)]))
    per_token = index.nbytes / index.n_tokens
    benchmark.extra_info.update(recall_at_10=rec, bytes_per_token=per_token,
                                ratio_to_float16=per_token / (2 * flat16.shape[1]), build_seconds=build,
                                n_centroids=index.n_centroids, tokens=index.n_tokens)
    assert rec >= 0.5
