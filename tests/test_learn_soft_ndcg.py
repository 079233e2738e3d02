"""rank.learn.soft_ndcg: slow reference, hard-NDCG limit, finite differences, grouping, bad input."""

import numpy as np
import pytest

from _helpers import group_slices as groups
from _helpers import ltr_data as data
from rank import errors
from rank.evaluate import evaluate
from rank.learn import LOSSES, LinearRanker, lightgbm_objective, soft_ndcg, xgboost_objective
from rank.soft import soft_rank


def ref_soft_ndcg(s, y, sizes, strength=1.0, reg="l2", k=None, gains=None):
    """Group by group, element by element: soft ranks of one group, then the NDCG formula."""
    gains = 2.0 ** np.arange(32) - 1 if gains is None else np.asarray(gains, float)
    total = 0.0
    for sl in groups(sizes):
        ss, yy = s[sl], y[sl]
        n = len(ss)
        r = soft_rank(ss, direction="descending", regularization_strength=strength, regularization=reg)
        ideal_gains = sorted((gains[v] for v in yy), reverse=True)
        cut = n if k is None else min(k, n)
        ideal = sum(ideal_gains[i] / np.log2(i + 2) for i in range(cut))
        if ideal == 0:
            continue
        dcg = 0.0
        for i in range(n):
            weight = 1.0 if k is None else min(1.0, max(0.0, k + 1 - r[i]))
            dcg += gains[yy[i]] * weight / np.log2(1 + r[i])
        total += 1.0 - dcg / ideal
    return total


def hard_ndcg(s, y, k=None):
    """NDCG of one group with exponential gains (distinct scores)."""
    g = 2.0 ** y - 1
    order = np.argsort(-s)
    cut = len(s) if k is None else min(k, len(s))
    disc = 1 / np.log2(np.arange(2, cut + 2))
    ideal = np.sort(g)[::-1][:cut] @ disc
    return g[order][:cut] @ disc / ideal


CASES = [{}, {"regularization_strength": 0.3}, {"regularization": "kl"},
         {"regularization": "kl", "regularization_strength": 0.2}, {"truncation_level": 5},
         {"truncation_level": 3, "regularization_strength": 2.0, "regularization": "kl"},
         {"label_gain": [0, 1, 2, 7, 9]}]


def _ref_kwargs(kw):
    return dict(strength=kw.get("regularization_strength", 1.0), reg=kw.get("regularization", "l2"),
                k=kw.get("truncation_level"), gains=kw.get("label_gain"))


@pytest.mark.parametrize("kw", CASES)
def test_matches_reference(kw):
    s, y, sizes = data(seed=1)
    y[:sizes[0]] = 0  # a group without relevant rows
    s[5] = s[6]  # a tie
    res = soft_ndcg(s, y, group=sizes, **kw)
    assert res.hess is None and res.grad.shape == s.shape and res.grad.dtype == np.float64
    assert res.loss == pytest.approx(ref_soft_ndcg(s, y, sizes, **_ref_kwargs(kw)), rel=1e-12, abs=1e-12)
    assert np.all(res.grad[:sizes[0]] == 0.0)


@pytest.mark.parametrize("kw", CASES)
def test_gradient_matches_central_differences(kw):
    s, y, sizes = data(n_groups=6, hi=15, seed=2)
    kw = dict(kw)
    kw.setdefault("regularization_strength", 1.0)
    kw["regularization_strength"] *= 3.0  # blocks of several rows, so most of the gradient is non-zero
    res = soft_ndcg(s, y, group=sizes, **kw)
    h = 1e-6
    fd = np.empty_like(s)
    for i in range(s.size):
        e = np.zeros_like(s)
        e[i] = h
        fd[i] = (ref_soft_ndcg(s + e, y, sizes, **_ref_kwargs(kw))
                 - ref_soft_ndcg(s - e, y, sizes, **_ref_kwargs(kw))) / (2 * h)
    assert np.abs(res.grad).max() > 1e-3
    np.testing.assert_allclose(res.grad, fd, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("k", [None, 1, 5])
def test_small_strength_tends_to_one_minus_hard_ndcg(k):
    s, y, sizes = data(n_groups=20, seed=3)
    qrels, run, expected = {}, {}, 0.0
    for q, sl in enumerate(groups(sizes)):
        if y[sl].max() == 0:
            continue
        qrels[f"q{q}"] = {f"d{i}": int(v) for i, v in enumerate(y[sl])}
        run[f"q{q}"] = {f"d{i}": float(v) for i, v in enumerate(s[sl])}
        expected += 1.0 - hard_ndcg(s[sl], y[sl], k)
    metric = "ndcg_exp" if k is None else f"ndcg_exp@{k}"
    per_query = evaluate(qrels, run, [metric], per_query=True)
    assert sum(1.0 - v[metric] for v in per_query.values()) == pytest.approx(expected, rel=1e-12)
    kw = {} if k is None else {"truncation_level": k}
    losses = [soft_ndcg(s, y, group=sizes, regularization_strength=eps, **kw).loss for eps in (1.0, 0.1, 1e-6)]
    assert losses[-1] == pytest.approx(expected, rel=1e-10)
    assert abs(losses[1] - expected) <= abs(losses[0] - expected)
    kl = soft_ndcg(s, y, group=sizes, regularization_strength=1e-4, regularization="kl", **kw).loss
    assert kl == pytest.approx(expected, rel=1e-6)


def test_perfect_and_reversed_order():
    y = np.array([3, 2, 1, 0])
    best = soft_ndcg([4.0, 3.0, 2.0, 1.0], y, group=[4], regularization_strength=0.01)
    worst = soft_ndcg([1.0, 2.0, 3.0, 4.0], y, group=[4], regularization_strength=0.01)
    assert best.loss == 0.0 and worst.loss == pytest.approx(1.0 - hard_ndcg(np.arange(4.0), y))
    # a gradient step lowers the loss
    s = np.array([1.0, 2.0, 3.0, 4.0])
    res = soft_ndcg(s, y, group=[4], regularization_strength=5.0)
    assert soft_ndcg(s - 0.5 * res.grad, y, group=[4], regularization_strength=5.0).loss < res.loss


@pytest.mark.parametrize("kw", [{}, {"regularization": "kl", "truncation_level": 4}])
def test_threads_qid_and_groups_are_independent(kw):
    s, y, sizes = data(n_groups=40, lo=1, hi=8, seed=5)  # many groups of each size
    one = soft_ndcg(s, y, group=sizes, n_threads=1, **kw)
    two = soft_ndcg(s, y, group=sizes, n_threads=2, **kw)
    qid = np.repeat(np.arange(len(sizes))[::-1] * 3, sizes)
    by_qid = soft_ndcg(s, y.astype(np.float32), qid=qid, n_threads=2, **kw)
    for other in (two, by_qid):
        assert other.loss == one.loss and other.hess is None
        np.testing.assert_array_equal(other.grad, one.grad)
    total = 0.0
    for i, sl in enumerate(groups(sizes)):
        alone = soft_ndcg(s[sl], y[sl], group=[sizes[i]], **kw)
        np.testing.assert_allclose(alone.grad, one.grad[sl], rtol=1e-12, atol=1e-15)
        total += alone.loss
    assert one.loss == pytest.approx(total, rel=1e-12)


def test_equal_sizes_single_rows_and_dtypes():
    s, y, _ = data(n_groups=1, lo=60, hi=61, seed=6)
    sizes = np.full(6, 10)
    res = soft_ndcg(s, y, group=sizes)
    assert res.loss == pytest.approx(ref_soft_ndcg(s, y, sizes), rel=1e-12)
    f32 = soft_ndcg(s.astype(np.float32), y, group=sizes)
    assert f32.grad.dtype == np.float64
    single = soft_ndcg([1.0, 2.0, 3.0], [1, 0, 2], group=[1, 1, 1])
    assert single.loss == 0.0 and single.grad.tolist() == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("kwargs,err,match", [
    ({"labels": [0, 31, 1]}, errors.InvalidValueError, "label_gain"),
    ({"group": [2, 2]}, errors.ShapeError, "sum to 4"),
    ({"group": [3, 0]}, errors.InvalidValueError, "at least one row"),
    ({"scores": [0.0, np.nan, 1.0]}, errors.NonFiniteError, "scores"),
    ({"scores": [0.0, np.inf, 1.0], "check_finite": False}, errors.InvalidValueError, "infinity"),
    ({"labels": [0, -1, 1]}, errors.InvalidValueError, ">= 0"),
    ({"labels": [0, 0.5, 1]}, errors.InvalidValueError, "integer"),
    ({"labels": [0, 1]}, errors.ShapeError, "labels"),
    ({"scores": [[0.0, 1.0, 2.0]]}, errors.ShapeError, "scores"),
    ({"group": None, "qid": [1, 2, 1]}, errors.InvalidValueError, "contiguous"),
    ({"group": None}, errors.InvalidValueError, "exactly one"),
    ({"gain": "cubic"}, errors.UnknownMethodError, "'exp', 'linear'"),
    ({"label_gain": [0, 1]}, errors.InvalidValueError, "label_gain"),
    ({"truncation_level": 0}, errors.InvalidValueError, "truncation_level"),
    ({"truncation_level": 2.5}, errors.InvalidValueError, "truncation_level"),
    ({"regularization_strength": 0.0}, errors.InvalidValueError, "regularization_strength"),
    ({"regularization_strength": 1e-320}, errors.InvalidValueError, "regularization_strength"),
    ({"regularization": "l1"}, errors.UnknownMethodError, "'l2', 'kl'"),
])
def test_bad_input(kwargs, err, match):
    args = {"scores": [0.0, 1.0, 2.0], "labels": [0, 1, 2], "group": [3]}
    args.update(kwargs)
    with pytest.raises(err, match=match):
        soft_ndcg(**args)


def test_linear_ranker_and_boosting():
    assert LOSSES["soft_ndcg"] is soft_ndcg
    rng = np.random.default_rng(0)
    sizes = np.full(60, 15)
    X = rng.standard_normal((sizes.sum(), 5))
    w = np.array([2.0, -1.0, 0.5, 0.0, 0.0])
    y = np.digitize(X @ w + 0.1 * rng.standard_normal(len(X)), [-1, 0, 1])
    model = LinearRanker("soft_ndcg", alpha=1e-4, regularization_strength=0.5).fit(X, y, group=sizes)
    cos = model.coef_ @ w / np.linalg.norm(model.coef_) / np.linalg.norm(w)
    assert cos > 0.9, cos
    # no hessian: not a boosting objective, and the boosting adapters say so
    for make in (lightgbm_objective, xgboost_objective):
        with pytest.raises(errors.UnknownMethodError, match="hessian"):
            make("soft_ndcg")


def test_large_equal_groups_use_threads_and_match_groups_alone():
    rng = np.random.default_rng(7)
    sizes = np.full(3000, 50)  # one bucket large enough to be split over threads
    s, y = rng.standard_normal(sizes.sum()), rng.integers(0, 3, sizes.sum())
    one = soft_ndcg(s, y, group=sizes, n_threads=1)
    two = soft_ndcg(s, y, group=sizes, n_threads=2)
    assert one.loss == two.loss
    np.testing.assert_array_equal(one.grad, two.grad)
    for i in (0, 1234, 2999):
        sl = slice(50 * i, 50 * i + 50)
        np.testing.assert_allclose(soft_ndcg(s[sl], y[sl], group=[50]).grad, one.grad[sl], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("kw", [{}, {"regularization": "kl", "regularization_strength": 0.5},
                                {"truncation_level": 3, "regularization_strength": 3.0}, {"gain": "linear"}])
def test_torch_equals_numpy(kw):
    torch = pytest.importorskip("torch")
    T = pytest.importorskip("rank.learn.torch")
    rng = np.random.default_rng(8)
    B, Lmax = 9, 10
    lengths = rng.integers(1, Lmax + 1, B)
    lengths[:3] = [Lmax, 4, 4]
    s = rng.standard_normal((B, Lmax))
    y = rng.integers(0, 4, (B, Lmax))
    y[5] = 0  # a list without relevant items
    mask = np.zeros((B, Lmax), bool)
    for b, n in enumerate(lengths):  # valid items anywhere in the row, not only first
        mask[b, rng.permutation(Lmax)[:n]] = True
    s[~mask], y[~mask] = 1e3, 9  # padding must not matter
    ref = soft_ndcg(s[mask], y[mask], group=lengths, **kw)
    st = torch.tensor(s, requires_grad=True)
    loss = T.soft_ndcg(st, torch.tensor(y), torch.tensor(mask), **kw)
    loss.backward()
    assert float(loss.detach()) == pytest.approx(ref.loss, rel=1e-12, abs=1e-12)
    np.testing.assert_allclose(st.grad.numpy()[mask], ref.grad, rtol=1e-10, atol=1e-14)
    assert (st.grad.numpy()[~mask] == 0).all() and np.abs(ref.grad).max() > 1e-3
    module = T.RankingLoss("soft_ndcg", reduction="mean", **kw)
    assert float(module(torch.tensor(s), torch.tensor(y), torch.tensor(mask))) == pytest.approx(ref.loss / B)
    with pytest.raises(errors.InvalidValueError, match="truncation_level"):
        T.soft_ndcg(st, torch.tensor(y), torch.tensor(mask), truncation_level=0)
