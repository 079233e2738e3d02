"""Sharded BM25 on Ray (rank.distributed) against the plain single-process BM25.

Workload: the synthetic Zipf corpus of bench_bm25 (Poisson(60) term ids from a Zipf(s=1) law
over the vocabulary, seeded), BENCH_DIST_DOCS documents (default 200,000: about a minute
for the file here; BENCH_DIST_DOCS=1000000 took 4 minutes, builds 10-18 s each) and 1,000 queries of 2-8 terms, k=100.
Token-id documents, lucene, k1=1.2, b=0.75.

Groups (one local Ray cluster of 2 CPUs for the module, started here):
- build: one ``BM25.index`` in this process, against ``ShardedBM25.build`` with 1 shard
  (one worker) and 2 shards (two workers in parallel). The sharded build includes its
  extra steps (statistics merge, applying the collection statistics, saving).
- query: a batch of 1,000 queries, ``BM25.search(n_threads=1)`` in this process against
  ``ShardedBM25.search`` over 1 shard (one actor, one thread: the overhead of the Ray path)
  and 2 shards (two actors, one thread each, in parallel), and 1 shard with 2 replicas (two
  actors over the same files, each taking half of the batch). The shards are loaded with
  ``cpus_per_shard=1``, so a worker is one core: by default a lone shard's actor would take
  every core of the cluster as threads, and 1 and 2 workers would both use 2 cores.

Sizes (bytes per document and per shard) are stored in ``extra_info``; docs/scale.md uses them.
"""
import os
import shutil
import tempfile

import numpy as np
import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")


from _bench import label  # noqa: E402
from _helpers import local_ray_cluster, zipf_corpus  # noqa: E402
from rank.retrieve import BM25  # noqa: E402

K = 100


def _dir_size(path):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


@pytest.fixture(scope="module")
def cluster():
    with local_ray_cluster() as distributed:
        yield distributed


@pytest.fixture(scope="module")
def corpus(smoke):
    n_docs = 2_000 if smoke else int(os.environ.get("BENCH_DIST_DOCS", "200000"))
    vocab = 5_000 if smoke else 200_000
    nq = 50 if smoke else 1_000
    return zipf_corpus(n_docs, vocab, nq, seed=42)


@pytest.fixture(scope="module")
def workdir():
    d = tempfile.mkdtemp(prefix="bench-dist-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def indexes(cluster, corpus, workdir):
    docs, _ = corpus
    single = BM25().index(docs, show_progress=False)
    sharded = {(n, 1): cluster.ShardedBM25.build(docs, os.path.join(workdir, f"q{n}"), n, cpus_per_shard=1)
               for n in (1, 2)}
    sharded[(1, 2)] = cluster.ShardedBM25.load(os.path.join(workdir, "q1"), cpus_per_shard=1, replicas=2)
    yield single, sharded
    for s in sharded.values():
        s.close()


def _sizes(benchmark, path, n_docs):
    total = _dir_size(path)
    shards = [_dir_size(os.path.join(path, f"shard-{i:05d}")) for i in range(len([p for p in os.listdir(path)
                                                                                   if p.startswith("shard-")]))]
    benchmark.extra_info.update({"bytes_total": total, "bytes_per_doc": total / n_docs,
                                 "bytes_per_shard": shards, "bytes_root": total - sum(shards)})


def test_single_build(benchmark, corpus):
    docs, _ = corpus
    label(benchmark, "distributed-build", items=int(docs[1].shape[0] - 1))
    benchmark.pedantic(lambda: BM25().index(docs, show_progress=False), rounds=3, iterations=1)


@pytest.mark.parametrize("workers", [1, 2])
def test_sharded_build(benchmark, cluster, corpus, workdir, workers):
    docs, _ = corpus
    label(benchmark, "distributed-build", items=int(docs[1].shape[0] - 1), workers=workers)
    path = os.path.join(workdir, f"b{workers}")
    benchmark.pedantic(lambda: cluster.ShardedBM25.build(docs, path, workers), rounds=3, iterations=1)
    _sizes(benchmark, path, int(docs[1].shape[0] - 1))


def test_single_query(benchmark, corpus, indexes):
    _, queries = corpus
    single, _ = indexes
    label(benchmark, "distributed-query", items=int(queries[1].shape[0] - 1), unit="queries")
    benchmark.pedantic(lambda: single.search(queries, k=K, n_threads=1), rounds=7, iterations=1, warmup_rounds=1)


@pytest.mark.parametrize("shards,replicas", [(1, 1), (2, 1), (1, 2)])
def test_sharded_query(benchmark, corpus, indexes, shards, replicas):
    _, queries = corpus
    single, sharded = indexes
    index = sharded[(shards, replicas)]
    workers = shards * replicas
    for other in sharded.values():  # each shard actor reserves a core: free the other index's
        if other is not index:
            other.close()
    label(benchmark, "distributed-query", items=int(queries[1].shape[0] - 1), unit="queries", workers=workers,
          shards=shards, replicas=replicas)
    got = index.search(queries, k=K)  # starts the actors (and checks the answer) before timing
    want = single.search(queries, k=K, n_threads=1)
    assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])
    benchmark.pedantic(lambda: index.search(queries, k=K), rounds=7, iterations=1, warmup_rounds=1)
