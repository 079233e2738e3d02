"""Soft ranking relaxations: values against direct transcriptions of each paper's formula (written
here, plainly), hard limits, extreme inputs, VJPs against finite differences, torch gradcheck,
JAX against torch, threads, dtypes and errors."""
import math

import numpy as np
import pytest

from rank.errors import InvalidValueError, NonFiniteError, ShapeError, UnknownMethodError
from rank.soft import relaxations as R

METHODS = ["sigmoid", "neuralsort", "softrank", "smoothi"]


# --- references: the formulas as the papers write them -------------------------------------------

def ref_sigmoid(x, tau):
    """r_i = 1 + sum_{j != i} sigmoid((x_i - x_j) / tau), ascending."""
    n = len(x)
    r = np.ones(n)
    for i in range(n):
        for j in range(n):
            if j != i:
                z = (x[i] - x[j]) / tau
                r[i] += math.exp(-math.log1p(math.exp(-z))) if z > -30 else math.exp(z)
    return r


def ref_neuralsort_P(x, tau):
    """Grover et al. (2019), eq. for P_hat: row i = softmax(((n + 1 - 2i) x - A_x 1) / tau)."""
    n = len(x)
    A = np.abs(x[:, None] - x[None, :])
    B = A @ np.ones(n)
    P = np.empty((n, n))
    for i in range(1, n + 1):
        logits = ((n + 1 - 2 * i) * x - B) / tau
        e = np.exp(logits - logits.max())
        P[i - 1] = e / e.sum()
    return P


def ref_neuralsort_rank(x, tau):
    """Expected (descending) ranks sum_i i P[i, j]."""
    P = ref_neuralsort_P(x, tau)
    return np.arange(1, len(x) + 1) @ P


def _phi(t):
    return 0.5 * math.erfc(-t / math.sqrt(2.0))


def ref_softrank_dists(x, sigma):
    """Taylor et al. (2008): pi_ij = Phi((x_i - x_j) / (sigma sqrt 2)); rank distribution of j
    by adding the other documents one at a time: p(r) <- p(r) (1 - pi_ij) + p(r - 1) pi_ij."""
    n = len(x)
    dists = []
    for j in range(n):
        p = [1.0]
        for i in range(n):
            if i == j:
                continue
            pij = _phi((x[i] - x[j]) / (sigma * math.sqrt(2.0)))
            new = [0.0] * (len(p) + 1)
            for r, v in enumerate(p):
                new[r] += v * (1.0 - pij)
                new[r + 1] += v * pij
            p = new
        dists.append(p)
    return np.array(dists)                       # (n documents, n ranks), 0-based ranks


def ref_softrank_rank(x, sigma):
    d = ref_softrank_dists(x, sigma)
    return 1.0 + d @ np.arange(len(x))


def ref_ndcg_parts(labels, k):
    gain = 2.0 ** np.asarray(labels, float) - 1.0
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    ideal = np.sort(gain)[::-1][:k] @ disc
    return gain, ideal


def ref_softrank_ndcg(x, labels, sigma, k=None):
    n = len(x)
    k = n if k is None else k
    gain, ideal = ref_ndcg_parts(labels, k)
    d = ref_softrank_dists(x, sigma)
    D = np.array([1.0 / math.log2(r + 2) if r < k else 0.0 for r in range(n)])
    return float(gain @ (d @ D) / ideal)


def ref_smoothi_indicators(s, alpha, delta, K):
    """Thonet et al. (2022): I^1_j = softmax(alpha s)_j,
    I^r_j = exp(alpha s_j prod_{l<r}(1 - I^l_j - delta)) / sum_j' (same for j')."""
    n = len(s)
    I = np.zeros((K, n))
    for r in range(K):
        prod = np.ones(n)
        for l in range(r):
            prod *= 1.0 - I[l] - delta
        z = alpha * s * prod
        e = np.exp(z - z.max())
        I[r] = e / e.sum()
    return I


def ref_smoothi_rank(x, tau, delta=0.1):
    """Descending ranks sum_r r I^r_j of the scores shifted to be positive (min -> 1)."""
    s = x - x.min() + 1.0
    I = ref_smoothi_indicators(s, 1.0 / tau, delta, len(x))
    return np.arange(1, len(x) + 1) @ I


def ref_smoothi_ndcg(x, labels, tau, k=None, delta=0.1):
    n = len(x)
    k = n if k is None else k
    gain, ideal = ref_ndcg_parts(labels, k)
    I = ref_smoothi_indicators(x - x.min() + 1.0, 1.0 / tau, delta, k)
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    return float(disc @ I @ gain / ideal)


def ref_gumbel_topk(x, noise, k, tau):
    """Relaxed subset sampling: successive softmaxes, removing the mass already taken."""
    a = x + noise
    mask = np.zeros_like(a)
    for _ in range(k):
        e = np.exp((a - a.max()) / tau)
        p = e / e.sum()
        mask += p
        a = a + np.log(np.maximum(1.0 - p, 1e-300))
    return mask


def ref_capped(z, k):
    """Projection onto {m in [0,1]^n, sum m = k}: m = clip(z - theta, 0, 1), theta by root finding."""
    from scipy.optimize import brentq
    f = lambda t: np.clip(z - t, 0.0, 1.0).sum() - k
    theta = brentq(f, z.min() - 1.0, z.max(), xtol=1e-15, rtol=4 * np.finfo(float).eps, maxiter=500)
    return np.clip(z - theta, 0.0, 1.0)


REFS = {
    "sigmoid": lambda x, t: ref_sigmoid(x, t),
    "neuralsort": lambda x, t: ref_neuralsort_rank(-x, t),      # ascending = NeuralSort of -x
    "softrank": lambda x, t: ref_softrank_rank(-x, t),
    "smoothi": lambda x, t: ref_smoothi_rank(-x, t),
}


def fd_vjp(f, x, c, h=1e-6):
    """Central finite differences of sum(c * f(x)) (c may be a scalar)."""
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[i] = h
        g[i] = (np.sum(c * f(x + e)) - np.sum(c * f(x - e))) / (2 * h)
    return g


def hard_ranks(x):
    """Ascending ranks, ties -> mean rank."""
    from scipy.stats import rankdata
    return rankdata(x)


# --- values ------------------------------------------------------------------------------------

@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("tau", [0.05, 0.7, 5.0])
def test_ranks_match_paper_formula(method, tau):
    rng = np.random.default_rng(1)
    fwd, _ = R.RELAXATIONS[method]
    for n in (1, 2, 9, 40):
        x = rng.standard_normal(n)
        np.testing.assert_allclose(fwd(x, temperature=tau), REFS[method](x, tau), rtol=0, atol=1e-10)
        # descending = the ascending formula on -x
        np.testing.assert_allclose(fwd(x, direction="descending", temperature=tau), REFS[method](-x, tau),
                                   rtol=0, atol=1e-10)


@pytest.mark.parametrize("method", METHODS)
def test_ties_and_batches(method):
    fwd, vjp = R.RELAXATIONS[method]
    x = np.array([[1.0, 1.0, 0.0, 2.0, 1.0], [3.0, -1.0, 3.0, 3.0, 0.5], [0.0] * 5])
    out = fwd(x, temperature=0.3)
    assert out.shape == x.shape and out.dtype == np.float64
    for row, got in zip(x, out):
        np.testing.assert_allclose(got, REFS[method](row, 0.3), atol=1e-10)
        np.testing.assert_allclose(got, fwd(row, temperature=0.3), atol=0)


def test_neuralsort_blocked_rows_match_exact_on_wide_spreads():
    """The multiplicative row updates re-anchor often (or always) when |x|/tau is large."""
    rng = np.random.default_rng(2)
    for scale, tau in [(1.0, 1.0), (20.0, 1.0), (50.0, 0.5), (1e3, 1e-2), (1e6, 1e-3)]:
        x = rng.standard_normal(60) * scale
        np.testing.assert_allclose(R.neuralsort_rank(x, temperature=tau), ref_neuralsort_rank(-x, tau),
                                   rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(R.soft_permutation(x, tau), ref_neuralsort_P(x, tau), atol=1e-12)


def test_sigmoid_separable_and_exact_paths_agree():
    rng = np.random.default_rng(3)
    for tau in (10.0, 0.02, 1e-4):         # spread/tau below and above the separable limit
        x = rng.standard_normal(700)       # > one tile
        np.testing.assert_allclose(R.sigmoid_rank(x[:50], temperature=tau), ref_sigmoid(x[:50], tau), atol=1e-10)
        full = R.sigmoid_rank(x, temperature=tau)
        z = (x[:, None] - x[None, :]) / tau
        ref = 0.5 + (0.5 + 0.5 * np.tanh(0.5 * z)).sum(axis=1)
        np.testing.assert_allclose(full, ref, atol=1e-9)


@pytest.mark.parametrize("method", METHODS)
def test_tiny_temperature_gives_hard_ranks(method):
    rng = np.random.default_rng(4)
    fwd, _ = R.RELAXATIONS[method]
    x = rng.permutation(12).astype(float) + rng.uniform(0, 0.5, 12)
    np.testing.assert_allclose(fwd(x, temperature=1e-4), hard_ranks(x), atol=1e-8)
    np.testing.assert_allclose(fwd(x, direction="descending", temperature=1e-4), hard_ranks(-x), atol=1e-8)


@pytest.mark.parametrize("method", METHODS)
def test_extreme_values_are_stable(method):
    fwd, vjp = R.RELAXATIONS[method]
    x = np.array([1e8, -3e8, 2.5e8, 0.0, 1e-3])
    r = fwd(x, temperature=1e-6)
    np.testing.assert_allclose(r, hard_ranks(x), atol=1e-8)
    g = vjp(x, np.ones_like(x), temperature=1e-6)
    assert np.isfinite(g).all()
    r = fwd(x * 1e-12, temperature=1e6)                 # everything tied: the middle rank
    assert np.isfinite(r).all()


def test_soft_permutation_is_row_stochastic_and_hard_in_the_limit():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 8))
    P = R.soft_permutation(x, 0.5)
    assert P.shape == (3, 8, 8)
    np.testing.assert_allclose(P.sum(axis=2), 1.0, atol=1e-12)
    for row, p in zip(x, R.soft_permutation(x, 1e-5)):
        np.testing.assert_allclose(p, np.eye(8)[np.argsort(-row)], atol=1e-12)
    asc = R.soft_permutation(x[0], 1e-5, direction="ascending")
    np.testing.assert_allclose(asc, np.eye(8)[np.argsort(x[0])], atol=1e-12)


def test_softrank_ndcg_matches_rank_distributions():
    rng = np.random.default_rng(6)
    for n, k in [(1, None), (5, None), (12, 4), (12, 12)]:
        x = rng.standard_normal(n)
        y = rng.integers(0, 4, n)
        y[0] = max(y[0], 1)
        for sigma in (0.1, 1.0):
            got = R.softrank_ndcg(x, y, sigma, k=k)
            assert isinstance(got, float) or np.ndim(got) == 0
            assert abs(got - ref_softrank_ndcg(x, y, sigma, k)) < 1e-10
    # the expected ranks are the means of the same distributions
    x = rng.standard_normal(9)
    np.testing.assert_allclose(R.softrank_rank(x, direction="descending", temperature=0.4),
                               ref_softrank_rank(x, 0.4), atol=1e-10)
    # batches, rows without relevant documents, tiny sigma -> hard NDCG
    X = rng.standard_normal((3, 7))
    Y = rng.integers(0, 3, (3, 7))
    Y[1] = 0
    got = R.softrank_ndcg(X, Y, 0.5, k=3)
    assert got.shape == (3,) and got[1] == 0.0
    assert abs(R.softrank_ndcg([3.0, 2.0, 1.0], [0, 1, 2], 1e-4) - ref_hard_ndcg([3.0, 2.0, 1.0], [0, 1, 2])) < 1e-10


def ref_hard_ndcg(x, y, k=None):
    order = np.argsort(-np.asarray(x))
    k = len(x) if k is None else k
    gain, ideal = ref_ndcg_parts(y, k)
    return float(gain[order][:k] @ (1.0 / np.log2(np.arange(2, k + 2))) / ideal)


def test_smoothi_ndcg_matches_formula():
    rng = np.random.default_rng(7)
    for n, k in [(1, None), (6, None), (15, 5)]:
        x = rng.standard_normal(n)
        y = rng.integers(0, 4, n)
        y[-1] = 2
        for tau in (0.1, 1.0):
            assert abs(R.smoothi_ndcg(x, y, k=k, temperature=tau) - ref_smoothi_ndcg(x, y, tau, k)) < 1e-10
    x = rng.standard_normal(8)
    y = rng.integers(0, 3, 8)
    y[0] = 1
    assert abs(R.smoothi_ndcg(x * 50, y, temperature=1e-3) - ref_hard_ndcg(x, y)) < 1e-8
    np.testing.assert_allclose(R.smoothi_ndcg(np.stack([x, -x]), np.stack([y, y]), k=3, delta=0.2),
                               [ref_smoothi_ndcg(x, y, 1.0, 3, 0.2), ref_smoothi_ndcg(-x, y, 1.0, 3, 0.2)],
                               atol=1e-10)


def test_soft_topk_gumbel_matches_formula_and_seed():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 10))
    noise = np.random.default_rng(123).gumbel(size=x.shape)
    for k, tau in [(1, 0.5), (3, 1.0), (10, 2.0)]:
        got = R.soft_topk(x, k, temperature=tau, seed=123)
        for row, nrow, g in zip(x, noise, got):
            np.testing.assert_allclose(g, ref_gumbel_topk(row, nrow, k, tau), atol=1e-12)
        np.testing.assert_allclose(got.sum(axis=1), k, atol=1e-12)
    a = R.soft_topk(x, 3, seed=5)
    np.testing.assert_array_equal(a, R.soft_topk(x, 3, seed=5))
    assert not np.allclose(a, R.soft_topk(x, 3, seed=6))
    hard = R.soft_topk(x, 3, seed=123, hard=True)
    for row, h in zip(x + noise, hard):
        assert set(np.flatnonzero(h)) == set(np.argsort(-row)[:3])
    np.testing.assert_allclose(R.soft_topk(x, 3, seed=123, temperature=1e-5), hard, atol=1e-9)


def test_soft_topk_projection_matches_capped_simplex():
    rng = np.random.default_rng(9)
    x = rng.standard_normal((4, 12))
    for k, tau in [(1, 0.3), (4, 1.0), (12, 0.5), (5, 50.0)]:
        got = R.soft_topk(x, k, method="projection", temperature=tau)
        for row, g in zip(x, got):
            np.testing.assert_allclose(g, ref_capped(row / tau, k), atol=1e-10)
        np.testing.assert_allclose(got.sum(axis=1), k, atol=1e-10)
    hard = R.soft_topk(x, 4, method="projection", hard=True)
    np.testing.assert_allclose(R.soft_topk(x, 4, method="projection", temperature=1e-4), hard, atol=1e-12)


# --- gradients ---------------------------------------------------------------------------------

@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("direction", ["ascending", "descending"])
def test_vjp_matches_finite_differences(method, direction):
    rng = np.random.default_rng(10)
    fwd, vjp = R.RELAXATIONS[method]
    x = rng.standard_normal((2, 7))
    c = rng.standard_normal((2, 7))
    for tau in (0.3, 2.0):
        f = lambda v: fwd(v, direction=direction, temperature=tau)
        got = vjp(x, c, direction=direction, temperature=tau)
        np.testing.assert_allclose(got, fd_vjp(f, x, c), rtol=1e-5, atol=1e-6)


def test_metric_permutation_and_topk_vjps_match_finite_differences():
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 6))
    y = rng.integers(0, 3, (2, 6))
    y[:, 0] = 2
    c = np.array([0.7, -1.3])
    np.testing.assert_allclose(R.softrank_ndcg_vjp(x, y, c, 0.6, k=4),
                               fd_vjp(lambda v: R.softrank_ndcg(v, y, 0.6, k=4), x, c), atol=1e-7)
    np.testing.assert_allclose(R.smoothi_ndcg_vjp(x, y, c, k=3, temperature=0.5),
                               fd_vjp(lambda v: R.smoothi_ndcg(v, y, k=3, temperature=0.5), x, c), atol=1e-7)
    C = rng.standard_normal((2, 6, 6))
    np.testing.assert_allclose(R.soft_permutation_vjp(x, C, 0.8),
                               fd_vjp(lambda v: R.soft_permutation(v, 0.8), x, C), atol=1e-7)
    ct = rng.standard_normal((2, 6))
    for method in ("gumbel", "projection"):
        f = lambda v: R.soft_topk(v, 2, method=method, temperature=0.7, seed=3)
        np.testing.assert_allclose(R.soft_topk_vjp(x, ct, 2, method=method, temperature=0.7, seed=3),
                                   fd_vjp(f, x, ct), atol=1e-7)


def test_torch_gradcheck_and_transcription():
    torch = pytest.importorskip("torch")
    from rank.soft import relaxations_torch as T
    rng = np.random.default_rng(12)
    x = torch.tensor(rng.standard_normal((2, 6)), dtype=torch.float64, requires_grad=True)
    y = rng.integers(0, 3, (2, 6))
    y[:, 1] = 1
    for method in METHODS:
        for direction in ("ascending", "descending"):
            assert torch.autograd.gradcheck(
                lambda v: T.relaxed_rank(v, method=method, direction=direction, temperature=0.5), (x,))
    assert torch.autograd.gradcheck(lambda v: T.soft_permutation(v, 0.7), (x,))
    assert torch.autograd.gradcheck(lambda v: T.softrank_ndcg(v, y, 0.5, k=4), (x,))
    assert torch.autograd.gradcheck(lambda v: T.smoothi_ndcg(v, y, k=4, temperature=0.5), (x,))
    for method in ("gumbel", "projection"):
        assert torch.autograd.gradcheck(lambda v: T.soft_topk(v, 2, method=method, temperature=0.5, seed=1), (x,))
    # the sigmoid VJP equals torch autograd through a torch transcription of the formula
    v = x.detach().clone().requires_grad_(True)
    z = (v[:, :, None] - v[:, None, :]) / 0.5
    ref = 0.5 + torch.sigmoid(z).sum(dim=2)
    c = torch.tensor(rng.standard_normal((2, 6)))
    ref.backward(c)
    np.testing.assert_allclose(R.sigmoid_rank_vjp(x.detach().numpy(), c.numpy(), temperature=0.5),
                               v.grad.numpy(), atol=1e-12)
    # float32 tensors stay float32; straight-through top-k: hard forward, soft gradient
    x32 = torch.tensor(rng.standard_normal(8), dtype=torch.float32, requires_grad=True)
    out = T.relaxed_rank(x32, method="neuralsort")
    assert out.dtype == torch.float32
    out.sum().backward()
    assert x32.grad.dtype == torch.float32
    h = T.soft_topk(x, 3, seed=9, hard=True)
    assert set(np.unique(h.detach().numpy())) <= {0.0, 1.0}
    w = torch.tensor(rng.standard_normal((2, 6)))
    (g_hard,) = torch.autograd.grad((h * w).sum(), x)
    (g_soft,) = torch.autograd.grad((T.soft_topk(x, 3, seed=9) * w).sum(), x)
    np.testing.assert_allclose(g_hard.numpy(), g_soft.numpy(), atol=0)


def test_jax_gradients_equal_torch():
    torch = pytest.importorskip("torch")
    jax = pytest.importorskip("jax")
    from rank.soft import relaxations_jax as J
    from rank.soft import relaxations_torch as T
    rng = np.random.default_rng(13)
    xn = rng.standard_normal((2, 7))
    yn = rng.integers(0, 3, (2, 7))
    yn[:, 2] = 2
    wn = rng.standard_normal((2, 7))
    cases = [(J.relaxed_rank, T.relaxed_rank, dict(method=m, temperature=0.6)) for m in METHODS]
    cases += [(J.soft_topk, T.soft_topk, dict(k=3, method=m, seed=4)) for m in ("gumbel", "projection")]
    with jax.enable_x64(True):
        import jax.numpy as jnp
        xj = jnp.asarray(xn)
        for jf, tf, kw in cases:
            gj = jax.grad(lambda v: jnp.sum(jf(v, **kw) * wn))(xj)
            xt = torch.tensor(xn, requires_grad=True)
            (tf(xt, **kw) * torch.tensor(wn)).sum().backward()
            np.testing.assert_allclose(np.asarray(gj), xt.grad.numpy(), atol=1e-12)
        for jf, tf, args in [(J.softrank_ndcg, T.softrank_ndcg, (yn, 0.5)), (J.smoothi_ndcg, T.smoothi_ndcg, (yn,))]:
            gj = jax.jit(jax.grad(lambda v: jnp.sum(jf(v, *args))))(xj)
            xt = torch.tensor(xn, requires_grad=True)
            tf(xt, *args).sum().backward()
            np.testing.assert_allclose(np.asarray(gj), xt.grad.numpy(), atol=1e-12)
        P = J.soft_permutation(xj, 0.5)
        assert P.shape == (2, 7, 7)
        gj = jax.grad(lambda v: jnp.sum(J.soft_permutation(v, 0.5) ** 2))(xj)
        xt = torch.tensor(xn, requires_grad=True)
        (T.soft_permutation(xt, 0.5) ** 2).sum().backward()
        np.testing.assert_allclose(np.asarray(gj), xt.grad.numpy(), atol=1e-12)


# --- dtypes, threads -----------------------------------------------------------------------------

@pytest.mark.parametrize("method", METHODS)
def test_float32_follows_input_and_threads_agree(method, run_threads):
    rng = np.random.default_rng(14)
    fwd, vjp = R.RELAXATIONS[method]
    x = rng.standard_normal((9, 30))
    c = rng.standard_normal((9, 30))
    r32 = fwd(x.astype(np.float32), temperature=0.5)
    assert r32.dtype == np.float32
    np.testing.assert_allclose(r32, fwd(x.astype(np.float32).astype(np.float64), temperature=0.5), rtol=1e-6)
    g32 = vjp(x.astype(np.float32), c.astype(np.float32), temperature=0.5)
    assert g32.dtype == np.float32
    r1 = fwd(x, temperature=0.5, n_threads=1)
    g1 = vjp(x, c, temperature=0.5, n_threads=1)
    np.testing.assert_array_equal(fwd(x, temperature=0.5, n_threads=2), r1)
    np.testing.assert_array_equal(vjp(x, c, temperature=0.5, n_threads=2), g1)
    for r, g in run_threads(lambda i: (fwd(x, temperature=0.5), vjp(x, c, temperature=0.5))):
        np.testing.assert_array_equal(r, r1)
        np.testing.assert_array_equal(g, g1)
    assert fwd([3, 1, 2], temperature=0.5).dtype == np.float64      # integers -> float64


# --- errors ------------------------------------------------------------------------------------

@pytest.mark.parametrize("method", METHODS)
def test_bad_inputs(method):
    fwd, vjp = R.RELAXATIONS[method]
    for tau in (0.0, -1.0, float("nan"), float("inf"), "warm"):
        with pytest.raises(InvalidValueError, match="temperature"):
            fwd([1.0, 2.0], temperature=tau)
    for bad in ([1.0, np.nan], [np.inf, 0.0]):
        with pytest.raises(NonFiniteError):
            fwd(bad)
    with pytest.raises(UnknownMethodError, match="'ascending', 'descending'"):
        fwd([1.0, 2.0], direction="up")
    with pytest.raises(ShapeError):
        fwd(np.zeros((2, 2, 2)))
    with pytest.raises(ShapeError):
        fwd(np.zeros((2, 0)))
    with pytest.raises(ShapeError, match="cotangent"):
        vjp([1.0, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(NonFiniteError):
        vjp([1.0, 2.0], [1.0, np.nan])


def test_bad_topk_metric_and_adapter_inputs():
    for k in (0, 4, -1, 1.5, True):
        with pytest.raises(InvalidValueError, match="k"):
            R.soft_topk([1.0, 2.0, 3.0], k)
    with pytest.raises(UnknownMethodError, match="'gumbel', 'projection'"):
        R.soft_topk([1.0, 2.0], 1, method="sparsemax")
    with pytest.raises(InvalidValueError, match="temperature"):
        R.soft_topk([1.0, 2.0], 1, temperature=0)
    with pytest.raises(InvalidValueError, match="seed"):
        R.soft_topk_vjp([1.0, 2.0], [1.0, 0.0], 1)
    with pytest.raises(NonFiniteError):
        R.soft_topk([1.0, np.nan], 1)
    with pytest.raises(ShapeError, match="labels"):
        R.softrank_ndcg([1.0, 2.0], [1, 0, 1])
    with pytest.raises(InvalidValueError, match="k"):
        R.smoothi_ndcg([1.0, 2.0], [1, 0], k=3)
    with pytest.raises(InvalidValueError, match="sigma"):
        R.softrank_ndcg([1.0, 2.0], [1, 0], sigma=0)
    with pytest.raises(InvalidValueError, match="delta"):
        R.smoothi_rank([1.0, 2.0], delta=1.5)
    with pytest.raises(InvalidValueError, match="labels"):
        R.smoothi_ndcg([1.0, 2.0], [-1, 0])
    with pytest.raises(ShapeError, match="cotangent"):
        R.soft_permutation_vjp([1.0, 2.0], np.ones((3, 3)))
    torch = pytest.importorskip("torch")
    from rank.soft import relaxations_torch as T
    with pytest.raises(UnknownMethodError, match="'sigmoid', 'neuralsort', 'softrank', 'smoothi'"):
        T.relaxed_rank(torch.ones(3), method="fast")


@pytest.mark.parametrize("method", sorted(R.RELAXATIONS))
def test_soft_rank_method_switch_reaches_each_relaxation(method):
    from rank.soft import available_methods, soft_rank
    x = np.random.default_rng(3).standard_normal((3, 7))
    forward, _ = R.RELAXATIONS[method]
    assert method in available_methods()
    for direction in ("ascending", "descending"):
        np.testing.assert_array_equal(soft_rank(x, method=method, direction=direction, temperature=0.3),
                                      forward(x, direction=direction, temperature=0.3))


def test_allocation_failures_raise_memory_error():
    """Every relax kernel checks its work buffers: with the test hook making them fail, each
    call raises MemoryError (before, rows were silently skipped, leaving np.empty garbage)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    code = """
import numpy as np
from rank.soft import relaxations as R
x = np.random.default_rng(0).random((5, 6)); c = np.ones_like(x); y = np.array([[2, 1, 0, 0, 1, 0]] * 5)
calls = [lambda: R.sigmoid_rank(x), lambda: R.sigmoid_rank_vjp(x, c), lambda: R.neuralsort_rank(x),
         lambda: R.neuralsort_rank_vjp(x, c), lambda: R.soft_permutation(x),
         lambda: R.soft_permutation_vjp(x, np.ones((5, 6, 6))), lambda: R.softrank_rank(x),
         lambda: R.softrank_rank_vjp(x, c), lambda: R.softrank_ndcg(x, y), lambda: R.softrank_ndcg_vjp(x, y),
         lambda: R.smoothi_rank(x), lambda: R.smoothi_rank_vjp(x, c), lambda: R.smoothi_ndcg(x, y),
         lambda: R.smoothi_ndcg_vjp(x, y), lambda: R.soft_topk(x, 2, seed=0), lambda: R.soft_topk_vjp(x, c, 2, seed=0)]
for i, f in enumerate(calls):
    try:
        f()
        print(i, "no error")
    except MemoryError:
        print(i, "MemoryError")
"""
    env = dict(os.environ, RANK_KERNELS_FAIL_ALLOC="1",
               PYTHONPATH=str(root) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=root,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.split("\n")[:-1]
    assert len(lines) == 16 and all(line.endswith("MemoryError") for line in lines), out.stdout
