"""Soft ranking relaxations: forward + VJP, side by side with direct array implementations.

Workload (the relaxations issue): a (64, 1000) float64 batch of scores and a cotangent, one
thread (BENCH_THREADS). Anchors:

- "sigmoid": a vectorised NumPy transcription of r_i = 1 + sum_j sigmoid((x_i - x_j) / tau) and
  of its gradient, one n x n block per row (the anchor shares the sigmoid matrix between the
  forward and the gradient; ours runs two independent calls). Target: ours >= 5x faster.
- "neuralsort": a torch CPU transcription of the NeuralSort matrix and expected ranks,
  differentiated by autograd. Target: ours >= 3x faster.

The other relaxations are timed alone (no anchor). `python bench/summary.py results.json`
prints the ratios.
"""
import numpy as np
import pytest

from _bench import label
from rank.soft.relaxations import RELAXATIONS, soft_topk, soft_topk_vjp

TAU = 1.0


@pytest.fixture(scope="module")
def workload(smoke):
    m, n = (4, 50) if smoke else (64, 1000)
    rng = np.random.default_rng(0)
    return rng.standard_normal((m, n)), rng.standard_normal((m, n))


def ours(method, x, c, threads):
    fwd, vjp = RELAXATIONS[method]
    return fwd(x, temperature=TAU, n_threads=threads), vjp(x, c, temperature=TAU, n_threads=threads)


def numpy_sigmoid(x, c, tau=TAU):
    ranks = np.empty_like(x)
    grad = np.empty_like(x)
    for r in range(x.shape[0]):
        z = (x[r][:, None] - x[r][None, :]) / tau
        s = 0.5 + 0.5 * np.tanh(0.5 * z)           # sigmoid without overflow
        ranks[r] = 0.5 + s.sum(axis=1)             # the diagonal contributes sigmoid(0) = 1/2
        ds = s * (1.0 - s)
        grad[r] = ((c[r][:, None] - c[r][None, :]) * ds).sum(axis=1) / tau
    return ranks, grad


def torch_neuralsort(torch, x, c, tau=TAU):
    xt = torch.tensor(x, requires_grad=True)
    n = xt.shape[1]
    a = (xt[:, :, None] - xt[:, None, :]).abs().sum(dim=2)                 # (m, n)
    scale = (n + 1 - 2 * torch.arange(1, n + 1, dtype=xt.dtype))           # (n,)
    logits = (scale[None, :, None] * xt[:, None, :] - a[:, None, :]) / tau  # (m, n, n)
    p = torch.softmax(logits, dim=2)
    ranks = (torch.arange(1, n + 1, dtype=xt.dtype)[None, :, None] * p).sum(dim=1)
    ranks.backward(torch.tensor(c))
    return ranks.detach().numpy(), xt.grad.numpy()


def test_rank_sigmoid(benchmark, workload, threads):
    x, c = workload
    label(benchmark, f"sigmoid-fwd+vjp-{x.shape[0]}x{x.shape[1]}", threads, items=x.size, unit="elements")
    r, g = benchmark(ours, "sigmoid", x, c, threads)
    rr, gg = numpy_sigmoid(x[:2], c[:2])
    np.testing.assert_allclose(r[:2], rr, atol=1e-9)
    np.testing.assert_allclose(g[:2], gg, atol=1e-9)


def test_numpy_sigmoid(benchmark, workload, threads):
    x, c = workload
    label(benchmark, f"sigmoid-fwd+vjp-{x.shape[0]}x{x.shape[1]}", threads, items=x.size, unit="elements")
    benchmark(numpy_sigmoid, x, c)


def test_rank_neuralsort(benchmark, workload, threads):
    x, c = workload
    label(benchmark, f"neuralsort-fwd+vjp-{x.shape[0]}x{x.shape[1]}", threads, items=x.size, unit="elements")
    r, g = benchmark(ours, "neuralsort", x, c, threads)
    torch = pytest.importorskip("torch")
    rr, gg = torch_neuralsort(torch, -x[:2], c[:2])    # ours ranks ascending: NeuralSort on -x
    np.testing.assert_allclose(r[:2], rr, atol=1e-8)
    np.testing.assert_allclose(g[:2], -gg, atol=1e-8)


def test_torch_neuralsort(benchmark, workload, threads):
    torch = pytest.importorskip("torch")
    torch.set_num_threads(threads)
    x, c = workload
    label(benchmark, f"neuralsort-fwd+vjp-{x.shape[0]}x{x.shape[1]}", threads, items=x.size, unit="elements")
    benchmark(torch_neuralsort, torch, x, c)


@pytest.mark.parametrize("method", ["softrank", "smoothi"])
def test_rank_other(benchmark, workload, threads, method):
    x, c = workload
    x, c = x[:8], c[:8]
    label(benchmark, f"{method}-fwd+vjp-{x.shape[0]}x{x.shape[1]}", threads, items=x.size, unit="elements")
    r, g = benchmark(ours, method, x, c, threads)
    assert np.isfinite(r).all() and np.isfinite(g).all()


@pytest.mark.parametrize("method", ["gumbel", "projection"])
def test_rank_topk(benchmark, workload, threads, method):
    x, c = workload

    def run():
        return (soft_topk(x, 10, method=method, seed=0, n_threads=threads),
                soft_topk_vjp(x, c, 10, method=method, seed=0, n_threads=threads))

    label(benchmark, f"topk10-{method}-fwd+vjp-{x.shape[0]}x{x.shape[1]}", threads, items=x.size, unit="elements")
    m, g = benchmark(run)
    np.testing.assert_allclose(m.sum(axis=1), 10.0)
