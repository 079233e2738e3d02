"""MaxSim throughput, side by side with maxsim-cpu and a NumPy per-document matmul loop.

Workload (the foundation issue): one 32 x 128 float32 query against 2,000 L2-normalised
documents of 128-512 tokens. Effective GFLOP/s = 2 * Lq * d * sum(Ld) / time is stored in
each benchmark's extra_info; `python bench/summary.py results.json` prints the ratios.
"""
import threading

import numpy as np
import pytest

import rank
from _bench import label

try:
    import maxsim_cpu
except ImportError:  # only published for some platforms
    maxsim_cpu = None


@pytest.fixture(scope="module")
def workload(smoke):
    rng = np.random.default_rng(0)
    n_docs, lq, dim = (20, 32, 128) if smoke else (2000, 32, 128)
    lengths = rng.integers(128, 513, size=n_docs)
    docs = []
    for n in lengths:
        x = rng.standard_normal((n, dim), dtype=np.float32)
        docs.append(x / np.linalg.norm(x, axis=1, keepdims=True))
    q = rng.standard_normal((lq, dim), dtype=np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    flops = 2.0 * lq * dim * lengths.sum()
    return q, docs, flops


def numpy_loop(q, docs):
    return np.array([(q @ d.T).max(axis=1).sum() for d in docs], dtype=np.float32)


def test_rank_maxsim_batch(benchmark, workload, threads):
    q, docs, flops = workload
    label(benchmark, "maxsim-2000x128-512", threads, items=len(docs), flops=flops)
    out = benchmark(rank.maxsim_batch, q, docs, n_threads=threads)
    np.testing.assert_allclose(out, numpy_loop(q, docs), rtol=1e-4)


def test_maxsim_cpu(benchmark, workload, threads):
    if maxsim_cpu is None:
        pytest.skip("maxsim-cpu is not installed (install rank-kernels[bench])")
    q, docs, flops = workload
    label(benchmark, "maxsim-2000x128-512", threads, items=len(docs), flops=flops)
    out = benchmark(maxsim_cpu.maxsim_scores_variable, q, docs)
    np.testing.assert_allclose(out, numpy_loop(q, docs), rtol=1e-4)


def test_numpy_matmul_loop(benchmark, workload, threads):
    q, docs, flops = workload
    label(benchmark, "maxsim-2000x128-512", threads, items=len(docs), flops=flops)
    benchmark(numpy_loop, q, docs)


def _concurrent(q, docs, callers):
    """`callers` Python threads each score the whole workload with n_threads=1."""
    ts = [threading.Thread(target=rank.maxsim_batch, args=(q, docs), kwargs={"n_threads": 1})
          for _ in range(callers)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


@pytest.mark.parametrize("callers", [1, 2])
def test_rank_python_thread_callers(benchmark, workload, callers):
    """Throughput of `callers` concurrent maxsim_batch(n_threads=1) calls (work scales with callers)."""
    q, docs, flops = workload
    label(benchmark, "maxsim-python-threads", items=len(docs) * callers, flops=flops * callers, callers=callers)
    benchmark(_concurrent, q, docs, callers)
