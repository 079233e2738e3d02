"""Soft ranks and sorts (projection onto the permutahedron): values against a plain-Python PAV and
an optimality certificate over every vertex, hard limits, ties, VJPs against finite differences
and the explicit Jacobian, the Spearman loss, threads, the sort paths and bad input."""
import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rank
from rank import errors
from rank.soft import projection as proj
from rank.soft import (jacobian, soft_rank, soft_rank_vjp, soft_rank_with_vjp, soft_sort, soft_sort_vjp,
                       soft_sort_with_vjp, soft_topk_mask, soft_topk_mask_with_vjp, spearman_loss,
                       spearman_loss_and_grad)
from rank_kernels import isotonic as kernel

REGS = ["l2", "kl"]
DIRS = ["ascending", "descending"]


# --- references ----------------------------------------------------------------------------------

def lse(v):
    v = list(v)
    m = max(v)
    return m + math.log(sum(math.exp(t - m) for t in v))


def ref_pav(s, w, reg):
    """Decreasing isotonic regression of the paper, block by block: each block of pooled positions
    takes mean(s) - mean(w) (l2) or lse(s) - lse(w) (kl), pooled while a block exceeds the one before."""
    def value(lo, hi):
        if reg == "l2":
            return sum(s[lo:hi]) / (hi - lo) - sum(w[lo:hi]) / (hi - lo)
        return lse(s[lo:hi]) - lse(w[lo:hi])

    blocks = []  # [lo, hi)
    for j in range(len(s)):
        blocks.append([j, j + 1])
        while len(blocks) > 1 and value(*blocks[-2]) < value(*blocks[-1]):
            hi = blocks.pop()[1]
            blocks[-1][1] = hi
    v = []
    for lo, hi in blocks:
        v += [value(lo, hi)] * (hi - lo)
    return v


def ref_rank(x, strength=1.0, direction="ascending", reg="l2"):
    x = [float(t) for t in x]
    n = len(x)
    sign = 1.0 if direction == "ascending" else -1.0
    z = [sign * t / strength for t in x]
    order = sorted(range(n), key=lambda i: -z[i])
    s = [z[i] for i in order]
    w = [float(n - j) for j in range(n)]
    if reg == "kl":
        w = [math.log(t) for t in w]
    v = ref_pav(s, w, reg)
    out = [0.0] * n
    for j, i in enumerate(order):
        out[i] = s[j] - v[j] if reg == "l2" else math.exp(s[j] - v[j])
    return np.array(out)


def ref_sort(x, strength=1.0, direction="ascending", reg="l2"):
    n = len(x)
    sign = 1.0 if direction == "descending" else -1.0
    w = sorted((sign * float(t) for t in x), reverse=True)
    s = [float(n - j) / strength for j in range(n)]
    v = ref_pav(s, w, reg)
    return np.array([sign * (s[j] - v[j]) for j in range(n)])


def ref_topk(x, k, strength):
    n = len(x)
    z = [float(t) / strength for t in x]
    order = sorted(range(n), key=lambda i: -z[i])
    s = [z[i] for i in order]
    w = [1.0] * k + [0.0] * (n - k)
    v = ref_pav(s, w, "l2")
    out = [0.0] * n
    for j, i in enumerate(order):
        out[i] = s[j] - v[j]
    return np.array(out)


def hard_ranks(x, direction="ascending"):
    """Average ranks of ties, by brute force."""
    x = np.asarray(x, np.float64)
    if direction == "descending":
        x = -x
    return np.array([(x < t).sum() + ((x == t).sum() + 1) / 2.0 for t in x])


def certificate_gap(point, z, w, reg):
    """max over the vertices v of the permutahedron P(w) of <d, v - point>, where d is the descent
    direction of the objective (z - point for l2, z - log point for kl): <= 0 iff `point`
    minimizes the objective over P(w) (w is exp(log w) for kl). Also checks point in P(w)."""
    point = np.asarray(point, np.float64)
    verts = np.array(list(itertools.permutations(w)))
    # membership: point is a convex combination of vertices (majorization by w)
    ps, ws = np.sort(point)[::-1], np.sort(w)[::-1]
    assert abs(ps.sum() - ws.sum()) <= 1e-9 * max(1.0, abs(ws).sum())
    assert (np.cumsum(ps) <= np.cumsum(ws) + 1e-9 * max(1.0, abs(ws).sum())).all()
    d = z - point if reg == "l2" else z - np.log(point)
    return float((verts @ d).max() - d @ point)


# --- values ----------------------------------------------------------------------------------------

def test_hand_examples():
    np.testing.assert_allclose(soft_rank([3.0, 1.0, 2.0], regularization_strength=0.01), [3, 1, 2])
    np.testing.assert_allclose(soft_rank([3.0, 1.0, 2.0], direction="descending",
                                         regularization_strength=0.01), [1, 3, 2])
    np.testing.assert_allclose(soft_sort([3.0, 1.0, 2.0], regularization_strength=0.01), [1, 2, 3])
    np.testing.assert_allclose(soft_sort([3.0, 1.0, 2.0], direction="descending",
                                         regularization_strength=0.01), [3, 2, 1])
    # everything pooled: the mean rank (value) plus the centred scaled values (ranks)
    np.testing.assert_allclose(soft_rank([3.0, 1.0, 2.0], regularization_strength=100.0), [2.01, 1.99, 2])
    np.testing.assert_allclose(soft_sort([3.0, 1.0, 2.0], regularization_strength=100.0), [1.99, 2, 2.01])


@pytest.mark.parametrize("reg", REGS)
@pytest.mark.parametrize("direction", DIRS)
@pytest.mark.parametrize("strength", [1e-3, 0.1, 0.5, 1.0, 3.0, 1e3, 1e9])
def test_equals_plain_python_pav(reg, direction, strength):
    rng = np.random.default_rng(int(strength * 1000) % 1000 + len(reg) + len(direction))
    for n in [1, 2, 3, 7, 40]:
        for trial in range(3):
            x = rng.standard_normal(n) * [1.0, 3.0, 0.2][trial]
            if n > 3 and trial == 2:
                x[: n // 2] = x[0]  # ties
            got = soft_rank(x, direction=direction, regularization_strength=strength, regularization=reg)
            np.testing.assert_allclose(got, ref_rank(x, strength, direction, reg), rtol=1e-9, atol=1e-9)
            got = soft_sort(x, direction=direction, regularization_strength=strength, regularization=reg)
            np.testing.assert_allclose(got, ref_sort(x, strength, direction, reg), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("reg", REGS)
def test_rows_equal_vectors(reg):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((9, 13))
    x[3] = 0.5  # a row of ties
    x[4, :6] = x[4, 7]
    for fn in (soft_rank, soft_sort):
        batch = fn(x, regularization_strength=0.3, regularization=reg)
        rows = np.stack([fn(r, regularization_strength=0.3, regularization=reg) for r in x])
        np.testing.assert_array_equal(batch, rows)
        for i in (0, 3, 4):
            ref = (ref_rank if fn is soft_rank else ref_sort)(x[i], 0.3, "ascending", reg)
            np.testing.assert_allclose(batch[i], ref, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("reg", REGS)
@pytest.mark.parametrize("n", [2, 3, 4, 5])
def test_projection_optimal_over_every_vertex(reg, n):
    """The reduction to isotonic regression is right: the output minimises the projection
    objective over the permutahedron (first-order condition checked against all n! vertices)."""
    rng = np.random.default_rng(n)
    for strength in (0.2, 1.0, 5.0):
        for _ in range(4):
            x = np.round(rng.standard_normal(n), 1)  # some ties
            z = x / strength
            rho = np.arange(n, 0, -1.0)
            r = soft_rank(x, regularization_strength=strength, regularization=reg)
            # l2: argmin |mu - z|^2 over P(rho); kl: argmin <mu, log mu - 1> - <mu, z> over P(rho)
            assert certificate_gap(r, z, rho, reg) <= 1e-9
            # soft sort: l2 projects rho / strength onto P(x); kl works on exp(.) of the same
            s = soft_sort(x, direction="descending", regularization_strength=strength, regularization=reg)
            if reg == "l2":
                assert certificate_gap(s, rho / strength, x, "l2") <= 1e-9
            else:
                assert certificate_gap(np.exp(s), rho / strength, np.exp(x), "kl") <= 1e-9


@pytest.mark.parametrize("reg", REGS)
@pytest.mark.parametrize("direction", DIRS)
def test_tiny_strength_is_hard_rank_and_sort(reg, direction):
    rng = np.random.default_rng(2)
    for n in [1, 2, 5, 50, 300]:
        x = rng.integers(-5, 6, n).astype(np.float64) + rng.random(n) * 1e-3 * (n % 2)  # ties when n even
        for strength in (1e-6, 1e-12, 1e-200):
            np.testing.assert_allclose(
                soft_rank(x, direction=direction, regularization_strength=strength, regularization=reg),
                hard_ranks(x, direction), rtol=1e-12, atol=1e-9)
            want = np.sort(x) if direction == "ascending" else np.sort(x)[::-1]
            np.testing.assert_allclose(
                soft_sort(x, direction=direction, regularization_strength=strength, regularization=reg),
                want, rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("reg", REGS)
def test_huge_strength_flattens(reg):
    x = np.random.default_rng(3).standard_normal(20)
    r = soft_rank(x, regularization_strength=1e12, regularization=reg)
    np.testing.assert_allclose(r, 10.5, rtol=1e-9)
    s = soft_sort(x, direction="descending", regularization_strength=1e12, regularization=reg)
    want = x.mean() if reg == "l2" else np.log(np.exp(x).mean())
    np.testing.assert_allclose(s, want, rtol=1e-9, atol=1e-9)


def test_n_equals_one():
    for reg in REGS:
        assert soft_rank([4.2], regularization=reg).tolist() == [1.0]
        assert soft_sort([4.2], regularization=reg).tolist() == [4.2]
        assert soft_rank([[4.2], [-1.0]], regularization=reg).tolist() == [[1.0], [1.0]]
        assert jacobian([4.2], regularization=reg).tolist() == [[0.0]] or reg == "kl"


@given(st.lists(st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False), min_size=1, max_size=30),
       st.sampled_from([1e-2, 1.0, 10.0]), st.sampled_from(REGS), st.sampled_from(DIRS))
@settings(max_examples=150, deadline=None)
def test_hypothesis_against_reference(xs, strength, reg, direction):
    x = np.array(xs)
    np.testing.assert_allclose(soft_rank(x, direction=direction, regularization_strength=strength,
                                         regularization=reg),
                               ref_rank(x, strength, direction, reg), rtol=1e-9, atol=1e-8)
    np.testing.assert_allclose(soft_sort(x, direction=direction, regularization_strength=strength,
                                         regularization=reg),
                               ref_sort(x, strength, direction, reg), rtol=1e-9, atol=1e-8)


def test_properties():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((5, 30))
    r = soft_rank(x, regularization_strength=0.5)
    np.testing.assert_allclose(r.sum(axis=1), 30 * 31 / 2)
    assert ((r >= 1 - 1e-12) & (r <= 30 + 1e-12)).all()
    # descending ranks mirror ascending ones; sorts are monotone and keep the sum (l2)
    np.testing.assert_allclose(soft_rank(x, direction="descending", regularization_strength=0.5), 31 - r)
    s = soft_sort(x, regularization_strength=0.5)
    assert (np.diff(s, axis=1) >= -1e-12).all()
    np.testing.assert_allclose(s.sum(axis=1), x.sum(axis=1))
    # soft ranks order like the values
    for row, rr in zip(x, r):
        assert (np.diff(rr[np.argsort(row)]) >= -1e-12).all()
    rk = soft_rank(x, regularization_strength=0.5, regularization="kl")
    assert (rk > 0).all()
    np.testing.assert_allclose(rk.sum(axis=1), 30 * 31 / 2)


def test_dtypes():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 25))
    for reg in REGS:
        for fn in (soft_rank, soft_sort):
            r64 = fn(x, regularization=reg)
            r32 = fn(x.astype(np.float32), regularization=reg)
            assert r64.dtype == np.float64 and r32.dtype == np.float32
            np.testing.assert_allclose(r32, fn(x.astype(np.float32).astype(np.float64), regularization=reg),
                                       rtol=1e-6, atol=1e-5)
            assert fn(np.arange(5), regularization=reg).dtype == np.float64
            assert fn([1, 3, 2], regularization=reg).dtype == np.float64
    # non-contiguous and 1-D/2-D views
    np.testing.assert_array_equal(soft_rank(x[:, ::2]), soft_rank(np.ascontiguousarray(x[:, ::2])))


def test_topk_mask():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((6, 12))
    for k in (1, 3, 12):
        for strength in (0.05, 0.7, 20.0):
            m = soft_topk_mask(x, k, regularization_strength=strength)
            for row, mr in zip(x, m):
                np.testing.assert_allclose(mr, ref_topk(row, k, strength), rtol=1e-9, atol=1e-12)
            np.testing.assert_allclose(m.sum(axis=1), k)
            assert ((m > -1e-12) & (m < 1 + 1e-12)).all()
        hard = soft_topk_mask(x, k, regularization_strength=1e-9)
        want = (x >= np.sort(x, axis=1)[:, -k][:, None]).astype(float)
        np.testing.assert_array_equal(hard, want)
    with pytest.raises(errors.InvalidValueError, match="k"):
        soft_topk_mask(x, 13)
    with pytest.raises(errors.InvalidValueError, match="k"):
        soft_topk_mask(x, 0)


# --- gradients ------------------------------------------------------------------------------------

def finite_difference_jacobian(fn, x, h=1e-6):
    x = np.asarray(x, np.float64)
    n = x.shape[-1]
    cols = []
    for j in range(n):
        e = np.zeros(n)
        e[j] = h
        cols.append((fn(x + e) - fn(x - e)) / (2 * h))
    return np.stack(cols, axis=-1)


CASES = [(kind, reg, direction, strength) for kind in ("rank", "sort") for reg in REGS for direction in DIRS
         for strength in (0.3, 2.0)]


@pytest.mark.parametrize("kind,reg,direction,strength", CASES)
def test_jacobian_and_vjp_match_finite_differences(kind, reg, direction, strength):
    rng = np.random.default_rng(len(kind) * 7 + len(reg) + int(strength * 10))
    fn, vjp_fn = (soft_rank, soft_rank_vjp) if kind == "rank" else (soft_sort, soft_sort_vjp)
    kw = dict(direction=direction, regularization_strength=strength, regularization=reg)
    for n in (1, 2, 6, 17):
        x = rng.standard_normal(n)
        jac = jacobian(x, kind=kind, **kw)
        fd = finite_difference_jacobian(lambda v: fn(v, **kw), x)
        np.testing.assert_allclose(jac, fd, rtol=1e-5, atol=1e-6)
        g = rng.standard_normal(n)
        np.testing.assert_allclose(vjp_fn(x, g, **kw), g @ jac, rtol=1e-10, atol=1e-12)
        # the explicit Jacobian, column by column of the VJP
        rows = np.stack([vjp_fn(x, e, **kw) for e in np.eye(n)])
        np.testing.assert_allclose(rows, jac, rtol=1e-10, atol=1e-12)


def test_batched_vjp_and_with_vjp():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((7, 11))
    g = rng.standard_normal((7, 11))
    for reg in REGS:
        for fn, with_vjp, vjp_fn, kind in ((soft_rank, soft_rank_with_vjp, soft_rank_vjp, "rank"),
                                           (soft_sort, soft_sort_with_vjp, soft_sort_vjp, "sort")):
            out, vjp = with_vjp(x, regularization=reg, regularization_strength=0.4)
            np.testing.assert_array_equal(out, fn(x, regularization=reg, regularization_strength=0.4))
            got = vjp(g)
            np.testing.assert_array_equal(got, vjp_fn(x, g, regularization=reg, regularization_strength=0.4))
            jac = jacobian(x, kind=kind, regularization=reg, regularization_strength=0.4)
            np.testing.assert_allclose(got, np.einsum("bi,bij->bj", g, jac), rtol=1e-10, atol=1e-12)
            np.testing.assert_array_equal(vjp(g), got)  # reusable
            assert vjp(g.astype(np.float32)).dtype == np.float64
            with pytest.raises(errors.ShapeError, match="cotangent"):
                vjp(g[:, :5])
    m, vjp = soft_topk_mask_with_vjp(x, 3, regularization_strength=0.5)
    fd = np.stack([finite_difference_jacobian(lambda v: soft_topk_mask(v, 3, regularization_strength=0.5), r)
                   for r in x])
    np.testing.assert_allclose(vjp(g), np.einsum("bi,bij->bj", g, fd), rtol=1e-5, atol=1e-6)


def test_vjp_float32():
    rng = np.random.default_rng(9)
    x = rng.standard_normal((3, 20))
    g = rng.standard_normal((3, 20))
    for reg in REGS:
        got = soft_rank_vjp(x.astype(np.float32), g.astype(np.float32), regularization=reg)
        assert got.dtype == np.float32
        want = soft_rank_vjp(x.astype(np.float32).astype(np.float64), g.astype(np.float32), regularization=reg)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


# --- Spearman --------------------------------------------------------------------------------------

def ref_spearman(pred, target, strength, reg):
    r = ref_rank(pred, strength, "ascending", reg)
    t = hard_ranks(target)
    r, t = r - r.mean(), t - t.mean()
    return 1.0 - (r @ t) / np.sqrt((r @ r) * (t @ t))


def test_spearman_values_and_gradient():
    rng = np.random.default_rng(10)
    pred = rng.standard_normal((5, 12))
    target = rng.integers(0, 4, (5, 12)).astype(float)  # graded labels with ties
    for reg in REGS:
        per_row = spearman_loss(pred, target, regularization_strength=0.3, regularization=reg, reduction="none")
        want = [ref_spearman(p, t, 0.3, reg) for p, t in zip(pred, target)]
        np.testing.assert_allclose(per_row, want, rtol=1e-9, atol=1e-12)
        assert spearman_loss(pred, target, regularization_strength=0.3, regularization=reg) == pytest.approx(
            np.mean(want), rel=1e-12)
        assert spearman_loss(pred, target, regularization_strength=0.3, regularization=reg,
                             reduction="sum") == pytest.approx(np.sum(want), rel=1e-12)
        loss, grad = spearman_loss_and_grad(pred, target, regularization_strength=0.3, regularization=reg)
        assert loss == pytest.approx(np.mean(want), rel=1e-12)
        h = 1e-6
        fd = np.zeros_like(pred)
        for i in range(pred.shape[0]):
            for j in range(pred.shape[1]):
                e = np.zeros_like(pred)
                e[i, j] = h
                fd[i, j] = (spearman_loss(pred + e, target, regularization_strength=0.3, regularization=reg)
                            - spearman_loss(pred - e, target, regularization_strength=0.3, regularization=reg)) / (2 * h)
        np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-7)


def test_spearman_hard_limit_and_1d():
    rng = np.random.default_rng(11)
    p, t = rng.standard_normal(30), rng.standard_normal(30)
    rho = np.corrcoef(hard_ranks(p), hard_ranks(t))[0, 1]
    assert spearman_loss(p, t, regularization_strength=1e-9) == pytest.approx(1 - rho, abs=1e-12)
    assert spearman_loss(p, p, regularization_strength=1e-9) == pytest.approx(0.0, abs=1e-12)
    loss, g = spearman_loss_and_grad(p, t)
    assert isinstance(loss, float) and g.shape == p.shape
    assert np.shape(spearman_loss(p, t, reduction="none")) == ()
    # a huge strength pools everything: l2 soft ranks are then affine in the scores
    rho = np.corrcoef(p, hard_ranks(t))[0, 1]
    assert spearman_loss(p, t, regularization_strength=1e4) == pytest.approx(1 - rho, abs=1e-9)
    # constant scores: correlation 0, zero gradient
    loss, g = spearman_loss_and_grad(np.ones(30), t)
    assert loss == 1.0 and not g.any()
    with pytest.raises(errors.InvalidValueError, match="target"):
        spearman_loss(p, np.ones(30))
    with pytest.raises(errors.ShapeError, match="target"):
        spearman_loss(p, t[:5])
    with pytest.raises(errors.UnknownMethodError, match="reduction"):
        spearman_loss(p, t, reduction="avg")


# --- kernels, threads, sort paths ------------------------------------------------------------------

def test_threads_give_identical_results(run_threads):
    rng = np.random.default_rng(12)
    x = rng.standard_normal((64, 300))
    g = rng.standard_normal((64, 300))
    for reg in REGS:
        one = soft_rank(x, regularization=reg, n_threads=1)
        np.testing.assert_array_equal(soft_rank(x, regularization=reg, n_threads=2), one)
        np.testing.assert_array_equal(soft_rank(x, regularization=reg, n_threads=7), one)
        np.testing.assert_array_equal(soft_sort_vjp(x, g, regularization=reg, n_threads=2),
                                      soft_sort_vjp(x, g, regularization=reg, n_threads=1))
        results = run_threads(lambda i: soft_rank(x, regularization=reg, n_threads=1))
        for r in results:
            np.testing.assert_array_equal(r, one)


@pytest.mark.parametrize("numpy_sort", [True, False])
def test_near_ties_resorted_exactly(numpy_sort):
    """Values equal in all but their lowest mantissa bits take the exact re-sort path."""
    kernel._set_numpy_sort(numpy_sort)
    try:
        _near_ties()
    finally:
        kernel._set_numpy_sort(True)


def _near_ties():
    rng = np.random.default_rng(13)
    for n in (50, 3000):
        base = 1.0 + rng.integers(0, 4, n) * 1e-3
        x = base + rng.integers(-40, 40, n) * np.spacing(1.0)  # same high bits, different low bits
        for strength in (1e-18, 1e-20):
            r = soft_rank(x, regularization_strength=strength)
            np.testing.assert_allclose(r, hard_ranks(x), atol=1e-6)
        s = soft_sort(x, regularization_strength=1e-9)
        np.testing.assert_array_equal(s, np.sort(x))
        _, vjp = soft_sort_with_vjp(x, regularization_strength=1e-9)
        g = np.arange(n, dtype=float)
        # hard limit: the sort's VJP routes g[j] to the position of the j-th smallest value
        got = vjp(g)
        want = np.empty(n)
        want[np.argsort(x, kind="stable")] = g
        np.testing.assert_array_equal(got, want)


def test_heapsort_fallback_matches():
    rng = np.random.default_rng(14)
    x = rng.standard_normal((20, 257))
    x[:, :40] = np.round(x[:, :40], 1)
    want = [soft_rank(x, regularization=reg) for reg in REGS] + [soft_sort(x)]
    assert kernel.sort_backend() in ("numpy", "heapsort")
    kernel._set_numpy_sort(False)
    try:
        assert kernel.sort_backend() == "heapsort"
        got = [soft_rank(x, regularization=reg) for reg in REGS] + [soft_sort(x)]
    finally:
        kernel._set_numpy_sort(True)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)


def test_negative_zero_and_extremes():
    x = np.array([0.0, -0.0, 1e-300, -1e-300, 5.0, -5.0])
    np.testing.assert_allclose(soft_rank(x, regularization_strength=1e-200), [3.5] * 4 + [6, 1], atol=1e-9)
    np.testing.assert_allclose(soft_rank(x[:4], regularization_strength=1e-303), [2.5, 2.5, 4, 1], atol=1e-9)
    big = np.array([1e300, -1e300, 0.0])
    # gaps far above 1 / strength: the sort is soft (mean value plus the centred steps of 1 / strength)
    np.testing.assert_allclose(soft_sort(big, regularization_strength=1.0), [-1.0, 0.0, 1.0])
    np.testing.assert_allclose(soft_sort(big, regularization_strength=1e-301), [-1e300, 0.0, 1e300])
    np.testing.assert_allclose(soft_rank(big, regularization_strength=1.0), [3.0, 1.0, 2.0])


# --- errors and dispatch --------------------------------------------------------------------------

def test_bad_input():
    with pytest.raises(errors.NonFiniteError):
        soft_rank([1.0, np.nan])
    with pytest.raises(errors.NonFiniteError):
        soft_sort([[1.0, np.inf]])
    with pytest.raises(errors.InvalidValueError):
        soft_rank([1.0, np.nan], check_finite=False)
    with pytest.raises(errors.NonFiniteError):
        soft_rank_vjp([1.0, np.inf], [1.0, 1.0])
    for bad in (0.0, -1.0, np.nan, np.inf, "1", None, True):
        with pytest.raises(errors.InvalidValueError, match="regularization_strength"):
            soft_rank([1.0, 2.0], regularization_strength=bad)
    with pytest.raises(errors.InvalidValueError, match="overflow"):
        soft_rank([1e300, 2.0], regularization_strength=1e-10)
    with pytest.raises(errors.ShapeError, match="3-D"):
        soft_rank(np.zeros((2, 2, 2)))
    with pytest.raises(errors.ShapeError):
        soft_sort(np.zeros((3, 0)))
    with pytest.raises(errors.ShapeError):
        soft_rank([])
    with pytest.raises(errors.ShapeError):
        soft_rank(5.0)
    with pytest.raises(errors.DTypeError):
        soft_rank(["a", "b"])
    with pytest.raises(errors.UnknownMethodError, match="'l2', 'kl'"):
        soft_rank([1.0, 2.0], regularization="l1")
    with pytest.raises(errors.UnknownMethodError, match="'ascending', 'descending'"):
        soft_sort([1.0, 2.0], direction="up")
    with pytest.raises(errors.UnknownMethodError, match="kind"):
        jacobian([1.0, 2.0], kind="topk")
    with pytest.raises(errors.ShapeError, match="cotangent"):
        soft_rank_vjp([1.0, 2.0], [1.0, 2.0, 3.0])


def test_method_dispatch(monkeypatch):
    with pytest.raises(errors.UnknownMethodError, match="'projection'"):
        soft_rank([1.0, 2.0], method="sigmoid-does-not-exist")
    with pytest.raises(errors.InvalidValueError, match="temperature"):
        soft_rank([1.0, 2.0], temperature=0.5)
    with pytest.raises(errors.InvalidValueError, match="sigma"):
        soft_rank([1.0, 2.0], sigma=0.5)
    calls = []

    def fake(values, **kw):
        calls.append(kw)
        return np.asarray(values) * 0 + 7.0

    monkeypatch.setattr(proj, "_RELAXATIONS", {})
    proj.register_relaxation("fake", fake)
    assert "fake" in proj.available_methods()
    np.testing.assert_array_equal(soft_rank([1.0, 2.0], method="fake", temperature=0.1, sigma=2), [7.0, 7.0])
    assert calls == [dict(direction="ascending", temperature=0.1, n_threads=None, check_finite=True, sigma=2)]
    with pytest.raises(errors.InvalidValueError, match="projection"):
        soft_rank([1.0, 2.0], method="fake", regularization="kl")
    with pytest.raises(errors.InvalidValueError):
        proj.register_relaxation("projection", fake)


def test_reexported():
    import importlib

    assert rank.soft_rank is soft_rank and rank.soft_sort is soft_sort and rank.spearman_loss is spearman_loss
    soft = importlib.import_module("rank.soft")
    for name in soft.__all__:
        assert getattr(soft, name).__doc__ or name.isupper()
