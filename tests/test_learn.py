"""rank.learn losses: slow references, finite differences, threads, grouping, bad input, LinearRanker."""
import numpy as np
import pytest

from _helpers import group_slices as groups
from _helpers import ltr_data as data
from rank import errors
from rank.learn import (LinearRanker, approx_ndcg, group_offsets, lambdarank, listmle, listnet,
                        pairwise_hinge, ranknet)


def ref_lambdarank(s, y, sizes, t=30, sigma=1.0, gains=None, norm=True, rho_fn=None, with_loss=False):
    """LightGBM's lambdarank written out pair by pair with the exact logistic function
    (or rho_fn(s_hi - s_lo) for rho); with_loss: also the loss, the weights held constant."""
    gains = 2.0 ** np.arange(32) - 1 if gains is None else np.asarray(gains, float)
    grad, hess = np.zeros_like(s), np.zeros_like(s)
    loss = 0.0
    for sl in groups(sizes):
        ss, yy = s[sl], y[sl]
        n = len(ss)
        order = sorted(range(n), key=lambda i: (-ss[i], i))
        disc = 1 / np.log2(2 + np.arange(n))
        ideal = np.sort(gains[yy])[::-1][:t] @ disc[:min(t, n)]
        inv = 1 / ideal if ideal > 0 else 0.0
        g, h, total, group_loss = np.zeros(n), np.zeros(n), 0.0, 0.0
        for i in range(min(n - 1, t)):
            for j in range(i + 1, n):
                a, b = order[i], order[j]
                if yy[a] == yy[b]:
                    continue
                (hi, rh), (lo, rl) = ((a, i), (b, j)) if yy[a] > yy[b] else ((b, j), (a, i))
                w = (gains[yy[hi]] - gains[yy[lo]]) * abs(disc[rh] - disc[rl]) * inv
                if norm and ss[order[0]] != ss[order[-1]]:
                    w /= np.float32(0.01) + abs(ss[hi] - ss[lo])
                rho = 1 / (1 + np.exp(sigma * (ss[hi] - ss[lo]))) if rho_fn is None else rho_fn(ss[hi] - ss[lo])
                g[hi] -= sigma * w * rho
                g[lo] += sigma * w * rho
                h[hi] += sigma ** 2 * w * rho * (1 - rho)
                h[lo] += sigma ** 2 * w * rho * (1 - rho)
                total += 2 * sigma * w * rho
                group_loss += w * np.logaddexp(0, -sigma * (ss[hi] - ss[lo]))
        f = np.log2(1 + total) / total if norm and total > 0 else 1.0
        grad[sl], hess[sl] = g * f, h * f
        loss += group_loss * f
    return (grad, hess, loss) if with_loss else (grad, hess)


@pytest.mark.parametrize("kw", [{}, {"truncation_level": 3, "sigma": 2.5}, {"norm": False},
                                {"label_gain": [0, 1, 2, 7, 9]}])
def test_lambdarank_matches_pairwise_reference(kw):
    s, y, sizes = data(seed=1)
    s[5] = s[6]  # a tie
    res = lambdarank(s, y, group=sizes, exact_sigmoid=True, **kw)
    g, h = ref_lambdarank(s, y, sizes, t=kw.get("truncation_level", 30), sigma=kw.get("sigma", 1.0),
                          gains=kw.get("label_gain"), norm=kw.get("norm", True))
    np.testing.assert_allclose(res.grad, g, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(res.hess, h, rtol=1e-10, atol=1e-12)
    # LightGBM's tabulated sigmoid differs from the exact one by at most one grid step
    grid = lambdarank(s, y, group=sizes, **kw)
    np.testing.assert_allclose(grid.grad, g, rtol=1e-3, atol=1e-5)


def lightgbm_grid_rho(sigma):
    """LightGBM's tabulated sigmoid: its 2^20-entry table, indexed as LightGBM does."""
    from rank_kernels import ltr

    table = np.empty(1 << 20)
    ltr.sigmoid_table(sigma, 1, table)
    lo = -50.0 / sigma / 2.0
    factor = (1 << 20) / (-lo - lo)

    def rho(x):
        if x <= lo:
            return table[0]
        if x >= -lo:
            return table[-1]
        return table[int((x - lo) * factor)]

    return rho


def _lambdarank_kernel(s, y, sizes, simd, t=30, sigma=1.0, gains=None, norm=True, exact=False, loss=False):
    from rank_kernels import ltr

    off = np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)
    gains = 2.0 ** np.arange(y.max() + 1) - 1 if gains is None else np.asarray(gains, float)
    grad, hess, gl = np.empty(len(s)), np.empty(len(s)), np.empty(len(sizes))
    ltr.lambdarank(s, y.astype(np.int32), off, gains, sigma, t, norm, exact, loss, 2, grad, hess, gl, simd)
    return (grad, hess, gl.sum()) if loss else (grad, hess)


@pytest.mark.parametrize("exact", [False, True])
@pytest.mark.parametrize("simd", [0, 1, 2])
@pytest.mark.parametrize("kw", [{}, {"t": 3, "sigma": 2.5}, {"norm": False, "sigma": 0.3},
                                {"gains": np.linspace(0, 40, 300)}])
def test_lambdarank_kernel_paths_match_reference(simd, kw, exact):
    """Every pair-loop path (portable C, AVX2, AVX-512) against the pair-by-pair reference,
    reading LightGBM's own 2^20-entry table (or, exact, the logistic function itself): equal to
    rounding. Score differences reach about +-250 (exp(-sigma x) far beyond the grid's ends,
    rho underflowing to tiny values). Groups of 1 to 199 rows cover
    both orderings (counting below 129 rows, merge sort above), ties, masked loop tails, and
    with 300 gains the ideal DCG by sorting instead of counting."""
    from rank_kernels import ltr

    if simd > ltr.simd_level():
        pytest.skip("this CPU lacks the instruction set")
    rng = np.random.default_rng(11)
    sizes = np.array([1, 2, 5, 9, 17, 31, 64, 129, 199])
    n = int(sizes.sum())
    s = rng.standard_normal(n) * 3
    s[rng.integers(0, n, 40)] = 0.5  # ties, within and across groups
    s[:30] = 40 * rng.standard_normal(30)  # differences beyond the grid's ends
    y = rng.integers(0, 5 if "gains" not in kw else 300, n)
    sigma = kw.get("sigma", 1.0)
    grad, hess = _lambdarank_kernel(s, y, sizes, simd, exact=exact, **kw)
    g, h = ref_lambdarank(s, y, sizes, rho_fn=None if exact else lightgbm_grid_rho(sigma), **kw)
    np.testing.assert_allclose(grad, g, rtol=1e-11, atol=1e-14 * np.abs(g).max())
    np.testing.assert_allclose(hess, h, rtol=1e-11, atol=1e-14 * np.abs(h).max())


@pytest.mark.parametrize("exact", [False, True])
@pytest.mark.parametrize("simd", [0, 1, 2])
def test_lambdarank_loss_paths_match_reference(simd, exact):
    """The loss of every pair-loop path (the vectorised ones use their own exp and log1p)."""
    from rank_kernels import ltr

    if simd > ltr.simd_level():
        pytest.skip("this CPU lacks the instruction set")
    s, y, sizes = data(seed=8, hi=70)
    s[:20] *= 30  # softplus far into both tails
    for kw in ({}, {"norm": False, "sigma": 2.5, "t": 4}):
        grad, _, loss = _lambdarank_kernel(s, y, sizes, simd, exact=exact, loss=True, **kw)
        g, _, ref = ref_lambdarank(s, y, sizes, rho_fn=None if exact else lightgbm_grid_rho(kw.get("sigma", 1.0)),
                                   with_loss=True, **kw)
        assert loss == pytest.approx(ref, rel=1e-13)
        np.testing.assert_allclose(grad, g, rtol=1e-11, atol=1e-14 * np.abs(g).max())


def test_grid_sigmoid_factor_tables_match_lightgbm_table():
    from rank_kernels import ltr

    for sigma in (0.3, 1.0, 2.5):
        table = np.empty(1 << 20)
        ltr.sigmoid_table(sigma, 2, table)
        lo = -25.0 / sigma
        x = np.concatenate([np.linspace(2 * lo, -2 * lo, 100_001), [lo, -lo, 0.0]])
        got = np.empty_like(x)
        ltr.grid_sigmoid(sigma, x, got)
        idx = np.clip(((np.clip(x, lo, -lo) - lo) * ((1 << 20) / (-2 * lo))).astype(np.int64), 0, (1 << 20) - 1)
        np.testing.assert_allclose(got, table[idx], rtol=1e-14, atol=0)


def test_lambdarank_without_loss():
    s, y, sizes = data(seed=4)
    full = lambdarank(s, y, group=sizes)
    fast = lambdarank(s, y, group=sizes, compute_loss=False)
    assert np.isnan(fast.loss) and np.isfinite(full.loss) and full.loss > 0
    np.testing.assert_array_equal(fast.grad, full.grad)
    np.testing.assert_array_equal(fast.hess, full.hess)


def test_lambdarank_loss_gradient_with_weights_frozen():
    s, y, sizes = data(seed=2)
    res = lambdarank(s, y, group=sizes, exact_sigmoid=True, norm=False)
    # without norm the weights depend only on the ranking: locally constant, so FD applies
    eps = 1e-6
    for i in range(0, len(s), 7):
        d = np.zeros_like(s)
        d[i] = eps
        fd = (lambdarank(s + d, y, group=sizes, exact_sigmoid=True, norm=False).loss
              - lambdarank(s - d, y, group=sizes, exact_sigmoid=True, norm=False).loss) / (2 * eps)
        assert fd == pytest.approx(res.grad[i], rel=1e-5, abs=1e-7)


def ref_ranknet(s, y, sizes, sigma=1.0):
    loss = 0.0
    for sl in groups(sizes):
        ss, yy = s[sl], y[sl]
        for i in range(len(ss)):
            for j in range(len(ss)):
                if yy[i] > yy[j]:
                    loss += np.logaddexp(0, -sigma * (ss[i] - ss[j]))
    return loss


def ref_listmle(s, y, sizes):
    loss = 0.0
    for sl in groups(sizes):
        ss, yy = s[sl], y[sl]
        order = sorted(range(len(ss)), key=lambda i: (-yy[i], i))
        p = ss[order]
        loss += sum(np.logaddexp.reduce(p[k:]) - p[k] for k in range(len(p)))
    return loss


def ref_listnet(s, y, sizes):
    loss = 0.0
    for sl in groups(sizes):
        t = np.exp(y[sl] - y[sl].max())
        t /= t.sum()
        loss -= t @ (s[sl] - np.logaddexp.reduce(s[sl]))
    return loss


def ref_approx_ndcg(s, y, sizes, alpha=10.0):
    loss = 0.0
    for sl in groups(sizes):
        ss, g = s[sl], 2.0 ** y[sl] - 1
        ideal = np.sort(g)[::-1] @ (1 / np.log2(2 + np.arange(len(g))))
        if ideal == 0:
            continue
        r = 1 + np.array([sum(1 / (1 + np.exp(-alpha * (ss[j] - ss[i]))) for j in range(len(ss)) if j != i)
                          for i in range(len(ss))])
        loss += 1 - (g / np.log2(1 + r)).sum() / ideal
    return loss


def ref_hinge(s, y, sizes, margin=1.0):
    loss = 0.0
    for sl in groups(sizes):
        ss, yy = s[sl], y[sl]
        loss += sum(max(0.0, margin - (ss[i] - ss[j])) for i in range(len(ss)) for j in range(len(ss)) if yy[i] > yy[j])
    return loss


SMOOTH = [(ranknet, ref_ranknet, {}), (ranknet, lambda s, y, g: ref_ranknet(s, y, g, 2.0), {"sigma": 2.0}),
          (listnet, ref_listnet, {}), (listmle, ref_listmle, {}), (approx_ndcg, ref_approx_ndcg, {})]


@pytest.mark.parametrize("fn,ref,kw", SMOOTH)
def test_smooth_losses_match_reference_and_finite_differences(fn, ref, kw):
    s, y, sizes = data(n_groups=6, seed=3)
    res = fn(s, y, group=sizes, **kw)
    assert res.loss == pytest.approx(ref(s, y, sizes), rel=1e-10)
    eps = 1e-6
    for i in range(len(s)):
        d = np.zeros_like(s)
        d[i] = eps
        fd = (fn(s + d, y, group=sizes, **kw).loss - fn(s - d, y, group=sizes, **kw).loss) / (2 * eps)
        assert fd == pytest.approx(res.grad[i], rel=1e-5, abs=1e-7)
        if res.hess is not None:
            fdh = (fn(s + d, y, group=sizes, **kw).grad[i] - fn(s - d, y, group=sizes, **kw).grad[i]) / (2 * eps)
            assert fdh == pytest.approx(res.hess[i], rel=1e-5, abs=1e-7)


def test_hinge_matches_reference_and_subgradient():
    s, y, sizes = data(n_groups=6, seed=4)
    res = pairwise_hinge(s, y, group=sizes, margin=0.5)
    assert res.loss == pytest.approx(ref_hinge(s, y, sizes, 0.5), rel=1e-12)
    assert res.hess is None
    eps = 1e-7
    for i in range(len(s)):
        d = np.zeros_like(s)
        d[i] = eps
        fd = (pairwise_hinge(s + d, y, group=sizes, margin=0.5).loss
              - pairwise_hinge(s - d, y, group=sizes, margin=0.5).loss) / (2 * eps)
        assert fd == pytest.approx(res.grad[i], abs=1e-5)


def test_listmle_extreme_scores_stay_finite():
    res = listmle([800.0, -800.0, 0.0], [0, 1, 2], group=[3])
    assert np.isfinite(res.loss) and np.isfinite(res.grad).all() and np.isfinite(res.hess).all()
    assert res.loss == pytest.approx(ref_listmle(np.array([800.0, -800.0, 0.0]), np.array([0, 1, 2]), [3]))


@pytest.mark.parametrize("fn", [lambdarank, ranknet, pairwise_hinge, listnet, listmle, approx_ndcg])
def test_threads_qid_and_dtypes_do_not_change_results(fn):
    s, y, sizes = data(n_groups=40, seed=5)
    one = fn(s, y, group=sizes, n_threads=1)
    two = fn(s, y, group=sizes, n_threads=2)
    qid = np.repeat(np.arange(len(sizes))[::-1] * 3, sizes)
    by_qid = fn(s, y.astype(np.float32), qid=qid, n_threads=2)
    for other in (two, by_qid):
        assert other.loss == one.loss
        np.testing.assert_array_equal(other.grad, one.grad)
        if one.hess is not None:
            np.testing.assert_array_equal(other.hess, one.hess)
    # groups are independent: each equals the loss computed on its own
    sl = groups(sizes)[3]
    alone = fn(s[sl], y[sl], group=[sizes[3]])
    np.testing.assert_allclose(alone.grad, one.grad[sl], rtol=1e-12, atol=1e-15)


def test_single_row_groups_and_equal_labels_give_zero_gradient():
    res = lambdarank([1.0, 2.0, 3.0], [1, 2, 2], group=[1, 2])
    assert res.grad.tolist() == [0.0, 0.0, 0.0] and res.hess.tolist() == [0.0, 0.0, 0.0]


def test_group_offsets():
    assert group_offsets(5, group=[2, 3]).tolist() == [0, 2, 5]
    assert group_offsets(4, qid=["b", "b", "a", "c"]).tolist() == [0, 2, 3, 4]


@pytest.mark.parametrize("kwargs,err,match", [
    ({"labels": [0, 31, 1]}, errors.InvalidValueError, "label_gain"),
    ({"group": [2, 2]}, errors.ShapeError, "sum to 4"),
    ({"group": [3, 0]}, errors.InvalidValueError, "at least one row"),
    ({"scores": [0.0, np.nan, 1.0]}, errors.NonFiniteError, "scores"),
    ({"labels": [0, -1, 1]}, errors.InvalidValueError, ">= 0"),
    ({"labels": [0, 0.5, 1]}, errors.InvalidValueError, "integer"),
    ({"labels": [0, 1]}, errors.ShapeError, "labels"),
    ({"group": None, "qid": [1, 2, 1]}, errors.InvalidValueError, "contiguous"),
    ({"group": None}, errors.InvalidValueError, "exactly one"),
    ({"gain": "cubic"}, errors.UnknownMethodError, "'exp', 'linear'"),
    ({"truncation_level": 0}, errors.InvalidValueError, "truncation_level"),
    ({"sigma": 0.0}, errors.InvalidValueError, "sigma"),
    ({"label_gain": [0, 1]}, errors.InvalidValueError, "label_gain"),
])
def test_bad_input(kwargs, err, match):
    args = {"scores": [0.0, 1.0, 2.0], "labels": [0, 1, 2], "group": [3]}
    args.update(kwargs)
    with pytest.raises(err, match=match):
        lambdarank(**args)


def test_large_labels_with_label_gain_or_linear_gain():
    y = [0, 31, 40]
    assert lambdarank([0.0, 1.0, 2.0], y, group=[3], label_gain=np.arange(41.0)).grad.shape == (3,)
    lin = lambdarank([0.0, 1.0, 2.0], y, group=[3], gain="linear")
    same = lambdarank([0.0, 1.0, 2.0], y, group=[3], label_gain=np.arange(41.0))
    np.testing.assert_array_equal(lin.grad, same.grad)


@pytest.mark.parametrize("loss", ["ranknet", "hinge", "listnet", "listmle", "lambdarank", "approx_ndcg"])
def test_linear_ranker_recovers_direction(loss):
    rng = np.random.default_rng(0)
    sizes = np.full(60, 15)
    X = rng.standard_normal((sizes.sum(), 5))
    w = np.array([2.0, -1.0, 0.5, 0.0, 0.0])
    y = np.digitize(X @ w + 0.1 * rng.standard_normal(len(X)), [-1, 0, 1])
    model = LinearRanker(loss, alpha=1e-4).fit(X, y, group=sizes)
    cos = model.coef_ @ w / np.linalg.norm(model.coef_) / np.linalg.norm(w)
    assert cos > 0.9, cos
    assert model.predict(X).shape == (len(X),)


def test_linear_ranker_bad_input():
    with pytest.raises(errors.UnknownMethodError):
        LinearRanker("nope")
    with pytest.raises(errors.InvalidValueError):
        LinearRanker().predict(np.ones((2, 2)))
    with pytest.raises(errors.ShapeError):
        LinearRanker().fit(np.ones((3, 2)), [0, 1], group=[3])


def test_releases_gil(run_threads):
    s, y, sizes = data(n_groups=50, seed=9)
    ref = lambdarank(s, y, group=sizes, n_threads=1)
    out = run_threads(lambda i: lambdarank(s, y, group=sizes, n_threads=1).grad)
    for g in out:
        np.testing.assert_array_equal(g, ref.grad)


def test_import_rank_does_not_import_optional_dependencies():
    import subprocess
    import sys

    code = ("import sys, rank, rank.learn; "
            "print(any(m in sys.modules for m in ('torch', 'lightgbm', 'xgboost')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr
