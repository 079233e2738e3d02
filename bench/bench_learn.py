"""LambdaRank gradients and hessians, side by side with a vectorised NumPy and a dense torch version.

Workload (issue 8): 1,000,000 rows in 10,000 groups of 100, labels 0-4, truncation level 30.

- ``test_rank_lambdarank_grad_1thread``: :func:`rank.learn.lambdarank` with
  ``compute_loss=False`` (gradient and hessian, the path the boosting objectives take) at one
  thread: the fair comparison with NumPy, which runs on one core. ``test_rank_lambdarank_grad``
  is the same at BENCH_THREADS threads, so one run gives the thread scaling.
  ``test_rank_lambdarank_exact_1thread`` uses the exact logistic function instead of
  LightGBM's grid sigmoid: exactly NumPy's math, at one thread.
- ``test_rank_lambdarank``: the default public call (loss, gradient and hessian) at
  BENCH_THREADS threads; the loss adds a log(1 + exp(.)) per pair.
- ``test_numpy_lambdarank``: the same math vectorised with NumPy, over blocks of groups: a
  stable argsort per group, then (groups, 30, 100) pair arrays (only the pairs whose better
  ranked member is in the top 30, as in the kernel), the weights, the exact logistic function
  and scatter-adds back to rows. Checked against ours (``exact_sigmoid=True``). Gradient and
  hessian, no loss; single-threaded.
- ``test_torch_lambdarank``: the dense pairwise (B, L, L) formulation (as in allRank) from
  :mod:`rank.learn.torch`, forward + backward in float64 on CPU, 1,000 lists per batch, with
  torch's intra-op threads set to BENCH_THREADS; it produces the gradient only.

``python bench/summary.py results.json`` prints each entry against the first one (ours, one thread).
"""
import numpy as np
import pytest

from _bench import label
from rank.learn import lambdarank

T = 30
SIZE = 100


@pytest.fixture(scope="module")
def workload(smoke):
    n_groups = 20 if smoke else 10_000
    rng = np.random.default_rng(0)
    scores = rng.standard_normal(n_groups * SIZE)
    labels = rng.choice(5, size=n_groups * SIZE, p=[0.5, 0.25, 0.15, 0.07, 0.03]).astype(np.int32)
    return scores, labels, np.full(n_groups, SIZE)


def numpy_lambdarank(scores, labels, sizes, t=T, sigma=1.0, block=500):
    """Vectorised NumPy LambdaRank (equal-size groups), LightGBM's math with the exact sigmoid."""
    n = int(sizes[0])
    s_all, y_all = scores.reshape(-1, n), labels.reshape(-1, n)
    grad, hess = np.zeros_like(s_all), np.zeros_like(s_all)
    gains = 2.0 ** np.arange(32) - 1
    disc = 1.0 / np.log2(2.0 + np.arange(n))
    k = min(t, n - 1)
    rows_i = np.arange(k)[:, None]
    upper = np.arange(n)[None, :] > rows_i  # j > i
    for b in range(0, s_all.shape[0], block):
        s, y = s_all[b:b + block], y_all[b:b + block]
        order = np.argsort(-s, axis=1, kind="stable")
        ss = np.take_along_axis(s, order, 1)
        gs = gains[np.take_along_axis(y, order, 1)]
        ideal = (-np.sort(-gains[y], axis=1)[:, :t] * disc[:t]).sum(1)
        inv = np.where(ideal > 0, 1.0 / np.where(ideal > 0, ideal, 1.0), 0.0)
        gi, gj = gs[:, :k, None], gs[:, None, :]
        delta = ss[:, :k, None] - ss[:, None, :]  # s_i - s_j for i in the top k
        sign = np.sign(gi - gj)  # +1 when i is the better labelled member
        valid = upper & (sign != 0)
        w = np.abs(gi - gj) * np.abs(disc[:k, None] - disc[None, :]) * inv[:, None, None]
        spread = (ss[:, 0] != ss[:, -1])[:, None, None]
        w = np.where(spread, w / (np.float32(0.01) + np.abs(delta)), w)
        w = np.where(valid, w, 0.0)
        rho = 1.0 / (1.0 + np.exp(sigma * sign * delta))  # 1 / (1 + exp(sigma (s_hi - s_lo)))
        lam = sigma * w * rho
        h = sigma * sigma * w * rho * (1 - rho)
        g_sorted = np.zeros_like(ss)
        h_sorted = np.zeros_like(ss)
        g_sorted[:, :k] -= (sign * lam).sum(2)
        g_sorted += (sign * lam).sum(1)
        h_sorted[:, :k] += h.sum(2)
        h_sorted += h.sum(1)
        total = 2.0 * lam.sum((1, 2))
        f = np.where(total > 0, np.log2(1 + total) / np.where(total > 0, total, 1.0), 1.0)[:, None]
        np.put_along_axis(grad[b:b + block], order, g_sorted * f, 1)
        np.put_along_axis(hess[b:b + block], order, h_sorted * f, 1)
    return grad.ravel(), hess.ravel()


def torch_lambdarank(scores, labels, sizes, threads, block=1000):
    import torch

    from rank.learn.torch import lambdarank as tl

    torch.set_num_threads(threads)
    n = int(sizes[0])
    s_all = torch.from_numpy(scores.reshape(-1, n))
    y_all = torch.from_numpy(labels.reshape(-1, n).astype(np.int64))
    grads = []
    for b in range(0, s_all.shape[0], block):
        s = s_all[b:b + block].clone().requires_grad_(True)
        tl(s, y_all[b:b + block], None, truncation_level=T).backward()
        grads.append(s.grad)
    return torch.cat(grads).numpy().ravel()


def test_rank_lambdarank_grad_1thread(benchmark, workload, threads):
    s, y, sizes = workload
    label(benchmark, f"lambdarank-1Mx100-t{T}", threads, items=len(s))
    res = benchmark(lambdarank, s, y, group=sizes, truncation_level=T, compute_loss=False, n_threads=1)
    assert np.isnan(res.loss) and np.isfinite(res.grad).all() and abs(res.grad.sum()) < 1e-6 * len(s)


def test_rank_lambdarank_exact_1thread(benchmark, workload, threads):
    s, y, sizes = workload
    label(benchmark, f"lambdarank-1Mx100-t{T}", threads, items=len(s))
    res = benchmark(lambdarank, s, y, group=sizes, truncation_level=T, exact_sigmoid=True, compute_loss=False,
                    n_threads=1)
    np.testing.assert_allclose(res.grad, numpy_lambdarank(s, y, sizes)[0], rtol=1e-9, atol=1e-12)


def test_rank_lambdarank_grad(benchmark, workload, threads):
    s, y, sizes = workload
    label(benchmark, f"lambdarank-1Mx100-t{T}", threads, items=len(s))
    res = benchmark(lambdarank, s, y, group=sizes, truncation_level=T, compute_loss=False, n_threads=threads)
    one = lambdarank(s, y, group=sizes, truncation_level=T, compute_loss=False, n_threads=1)
    np.testing.assert_array_equal(res.grad, one.grad)  # the thread count does not change the result
    np.testing.assert_array_equal(res.hess, one.hess)


def test_rank_lambdarank(benchmark, workload, threads):
    s, y, sizes = workload
    label(benchmark, f"lambdarank-1Mx100-t{T}", threads, items=len(s))
    res = benchmark(lambdarank, s, y, group=sizes, truncation_level=T, n_threads=threads)
    assert np.isfinite(res.loss) and res.loss > 0
    np.testing.assert_array_equal(res.grad, lambdarank(s, y, group=sizes, compute_loss=False).grad)


def test_numpy_lambdarank(benchmark, workload, threads):
    s, y, sizes = workload
    label(benchmark, f"lambdarank-1Mx100-t{T}", threads, items=len(s))
    grad, hess = benchmark(numpy_lambdarank, s, y, sizes)
    ours = lambdarank(s, y, group=sizes, truncation_level=T, exact_sigmoid=True)
    np.testing.assert_allclose(grad, ours.grad, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(hess, ours.hess, rtol=1e-9, atol=1e-12)


def test_torch_lambdarank(benchmark, workload, threads):
    pytest.importorskip("torch")
    s, y, sizes = workload
    label(benchmark, f"lambdarank-1Mx100-t{T}", threads, items=len(s))
    grad = benchmark(torch_lambdarank, s, y, sizes, threads)
    ours = lambdarank(s, y, group=sizes, truncation_level=T, exact_sigmoid=True)
    np.testing.assert_allclose(grad, ours.grad, rtol=1e-8, atol=1e-12)
