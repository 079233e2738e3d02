"""Soft ranks and sorts (projection onto the permutahedron), side by side with NumPy's argsort.

Sorting is the floor of the forward pass, so the anchor is ``np.argsort(x, axis=-1)`` on the
same float64 array (the issue's targets: forward <= 1.5x argsort, forward + backward <= 2x
argsort, single thread); a plain NumPy/Python pool-adjacent-violators implementation (argsort
plus a Python PAV per row) is a second, slower anchor. Shapes (256, 100), (1, 5000), (64, 1000).

Regimes: values drawn from N(0, 1) with ``regularization_strength=1.0`` (most of each row
pools into a few blocks) and ``0.01`` (many small blocks: the PAV branches are unpredictable).
Forward + backward is ``soft_rank_with_vjp`` followed by one ``vjp`` (the backward reuses the
saved permutation and blocks, as the torch adapter does).

Threads: BENCH_THREADS (see conftest.py) is passed as ``n_threads``; compare a run with
BENCH_THREADS=1 against one with BENCH_THREADS=2 for the scaling. On a busy host, single-thread
ratios are steadier with ``--benchmark-timer=time.process_time`` (CPU time: a descheduled
process is not charged); thread scaling needs wall time on an otherwise idle host.
`python bench/summary.py results.json` prints the ratios.
"""
import numpy as np
import pytest

from _bench import label
from rank.soft import soft_rank, soft_rank_with_vjp, soft_sort

SHAPES = [(256, 100), (1, 5000), (64, 1000)]


@pytest.fixture(scope="module", params=SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
def data(request, smoke):
    shape = (4, 30) if smoke else request.param
    rng = np.random.default_rng(0)
    return rng.standard_normal(shape), rng.standard_normal(shape), request.param


def _fwd_bwd(x, g, strength, reg, n_threads):
    out, vjp = soft_rank_with_vjp(x, regularization_strength=strength, regularization=reg, n_threads=n_threads)
    return out, vjp(g)


def numpy_pav_soft_rank(x, strength=1.0):
    """Reference: argsort per row, then a Python pool-adjacent-violators on (s - w)."""
    out = np.empty_like(x)
    n = x.shape[1]
    w = np.arange(n, 0, -1.0)
    for i, row in enumerate(x):
        z = row / strength
        order = np.argsort(-z, kind="stable")
        y = (z[order] - w).tolist()
        sums, counts = [], []
        for v in y:
            sums.append(v)
            counts.append(1)
            while len(sums) > 1 and sums[-2] * counts[-1] < sums[-1] * counts[-2]:
                s, c = sums.pop(), counts.pop()
                sums[-1] += s
                counts[-1] += c
        v = np.repeat(np.array(sums) / np.array(counts), counts)
        out[i, order] = z[order] - v
    return out


@pytest.mark.parametrize("strength", [1.0, 0.01])
def test_rank_soft_rank_forward(benchmark, data, threads, strength):
    x, _, shape = data
    label(benchmark, f"soft-forward-l2-s{strength}-{shape[0]}x{shape[1]}", threads,
          items=shape[0] * shape[1], unit="elements")
    out = benchmark(soft_rank, x, regularization_strength=strength, n_threads=threads)
    assert np.allclose(out.sum(axis=1), x.shape[1] * (x.shape[1] + 1) / 2)


@pytest.mark.parametrize("strength", [1.0, 0.01])
def test_numpy_argsort_forward(benchmark, data, threads, strength):
    x, _, shape = data
    label(benchmark, f"soft-forward-l2-s{strength}-{shape[0]}x{shape[1]}", threads,
          items=shape[0] * shape[1], unit="elements")
    benchmark(np.argsort, x, axis=-1)


@pytest.mark.parametrize("strength", [1.0, 0.01])
def test_rank_soft_rank_forward_backward(benchmark, data, threads, strength):
    x, g, shape = data
    label(benchmark, f"soft-fwd+bwd-l2-s{strength}-{shape[0]}x{shape[1]}", threads,
          items=shape[0] * shape[1], unit="elements")
    out, grad = benchmark(_fwd_bwd, x, g, strength, "l2", threads)
    assert grad.shape == x.shape


@pytest.mark.parametrize("strength", [1.0, 0.01])
def test_numpy_argsort_forward_backward(benchmark, data, threads, strength):
    x, _, shape = data
    label(benchmark, f"soft-fwd+bwd-l2-s{strength}-{shape[0]}x{shape[1]}", threads,
          items=shape[0] * shape[1], unit="elements")
    benchmark(np.argsort, x, axis=-1)


def test_rank_soft_rank_forward_kl(benchmark, data, threads):
    x, _, shape = data
    label(benchmark, f"soft-forward-kl-s1.0-{shape[0]}x{shape[1]}", threads,
          items=shape[0] * shape[1], unit="elements")
    benchmark(soft_rank, x, regularization="kl", n_threads=threads)


def test_rank_soft_rank_forward_backward_kl(benchmark, data, threads):
    x, g, shape = data
    label(benchmark, f"soft-forward-kl-s1.0-{shape[0]}x{shape[1]}", threads,
          items=shape[0] * shape[1], unit="elements")
    benchmark(_fwd_bwd, x, g, 1.0, "kl", threads)


def test_numpy_argsort_kl(benchmark, data, threads):
    x, _, shape = data
    label(benchmark, f"soft-forward-kl-s1.0-{shape[0]}x{shape[1]}", threads,
          items=shape[0] * shape[1], unit="elements")
    benchmark(np.argsort, x, axis=-1)


def test_rank_soft_sort_forward(benchmark, data, threads):
    x, _, shape = data
    label(benchmark, f"soft-sort-l2-s1.0-{shape[0]}x{shape[1]}", threads,
          items=shape[0] * shape[1], unit="elements")
    benchmark(soft_sort, x, n_threads=threads)


def test_numpy_argsort_sort(benchmark, data, threads):
    x, _, shape = data
    label(benchmark, f"soft-sort-l2-s1.0-{shape[0]}x{shape[1]}", threads,
          items=shape[0] * shape[1], unit="elements")
    benchmark(np.argsort, x, axis=-1)


def test_numpy_pav_reference(benchmark, data, threads):
    x, _, shape = data
    label(benchmark, f"soft-forward-l2-s0.01-{shape[0]}x{shape[1]}", threads,
          items=shape[0] * shape[1], unit="elements")
    out = benchmark.pedantic(numpy_pav_soft_rank, args=(x, 0.01), rounds=3, iterations=1)
    np.testing.assert_allclose(out, soft_rank(x, regularization_strength=0.01), rtol=1e-9, atol=1e-9)
