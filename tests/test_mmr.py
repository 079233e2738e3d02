"""MMR selection: against a slow float64 NumPy reference, ties, lambda extremes, dtypes, errors."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import rank
from rank._topk import top_k
from rank.errors import DTypeError, InvalidValueError, NonFiniteError, RankError, ShapeError, UnknownMethodError


def sims(q, c, metric):
    """Float64 relevance (n,) and candidate-candidate similarity (n, n), loop by loop."""
    q = np.asarray(q, np.float64)
    c = np.asarray(c, np.float64)
    if metric == "cosine":
        def unit(v):
            n = np.sqrt(np.dot(v, v))
            return v / n if n > 0 else np.zeros_like(v)
        q = unit(q)
        c = np.array([unit(v) for v in c]).reshape(c.shape)
    n = c.shape[0]
    rel = np.array([np.dot(q, c[i]) for i in range(n)])
    cc = np.array([[np.dot(c[i], c[j]) for j in range(n)] for i in range(n)]).reshape(n, n)
    return rel, cc


def ref_mmr(q, c, k, lam, metric="cosine"):
    """Slow, obviously correct MMR: recompute the objective of every candidate every step."""
    rel, cc = sims(q, c, metric)
    n = len(rel)
    chosen, scores = [], []
    for _ in range(min(k, n)):
        best, best_obj = None, None
        for i in range(n):
            if i in chosen:
                continue
            if chosen:
                obj = lam * rel[i] - (1 - lam) * max(cc[i, s] for s in chosen)
            else:
                obj = rel[i]  # the first pick is the most relevant one
            if best is None or obj > best_obj:
                best, best_obj = i, obj
        scores.append(lam * rel[best] if not chosen else best_obj)
        chosen.append(best)
    return np.array(chosen), np.array(scores)


def check_against_reference(q, c, k, lam, metric, tol=1e-9):
    """Follow our picks and check each is (up to `tol`) the reference's best, ties by index."""
    idx, scores = rank.mmr(q, c, k, lam, metric=metric)
    rel, cc = sims(q, c, metric)
    n = len(rel)
    assert idx.dtype == np.int64 and scores.dtype == np.float32
    assert idx.shape == scores.shape == (min(k, n),)
    assert len(set(idx.tolist())) == len(idx)
    chosen = []
    for t, i in enumerate(idx):
        rest = [j for j in range(n) if j not in chosen]
        if chosen:
            obj = {j: lam * rel[j] - (1 - lam) * max(cc[j, s] for s in chosen) for j in rest}
            score = obj[i]
        else:
            obj = {j: rel[j] for j in rest}
            score = lam * rel[i]
        top = max(obj.values())
        scale = 1.0 + abs(top)
        assert obj[i] >= top - tol * scale  # our pick is the best, up to rounding
        np.testing.assert_allclose(scores[t], score, rtol=1e-5, atol=1e-6 * scale)
        chosen.append(int(i))


@pytest.mark.parametrize("metric", ["cosine", "dot"])
@pytest.mark.parametrize("lam", [0.0, 0.3, 0.5, 0.7, 1.0])
@pytest.mark.parametrize("n,d,k", [(1, 1, 1), (1, 5, 3), (2, 3, 2), (10, 4, 5), (50, 16, 50), (64, 33, 10),
                                   (200, 8, 20), (30, 2, 40)])
def test_mmr_matches_reference(n, d, k, lam, metric):
    for seed in range(3):
        rng = np.random.default_rng(seed * 100 + n + d)
        q = rng.standard_normal(d).astype(np.float32)
        c = rng.standard_normal((n, d)).astype(np.float32)
        idx, scores = rank.mmr(q, c, k, lam, metric=metric)
        ref_idx, ref_scores = ref_mmr(q, c, k, lam, metric)
        np.testing.assert_array_equal(idx, ref_idx)
        np.testing.assert_allclose(scores, ref_scores, rtol=1e-5, atol=1e-6)


@settings(max_examples=150, deadline=None)
@given(
    data=st.data(),
    n=st.integers(1, 12),
    d=st.integers(1, 6),
    k=st.integers(1, 15),
    lam=st.floats(0.0, 1.0),
    metric=st.sampled_from(["cosine", "dot"]),
)
def test_mmr_property(data, n, d, k, lam, metric):
    elems = st.floats(-10, 10, allow_nan=False, allow_infinity=False, width=32)
    q = data.draw(hnp.arrays(np.float32, d, elements=elems))
    c = data.draw(hnp.arrays(np.float32, (n, d), elements=elems))
    check_against_reference(q, c, k, lam, metric)


@settings(max_examples=60, deadline=None)
@given(
    data=st.data(),
    n=st.integers(1, 10),
    d=st.integers(1, 4),
    k=st.integers(1, 10),
    lam=st.sampled_from([0.0, 0.25, 0.5, 1.0]),
    metric=st.sampled_from(["cosine", "dot"]),
)
def test_mmr_property_small_integers(data, n, d, k, lam, metric):
    """Small integer vectors give many exact ties: they must go to the smaller index."""
    q = data.draw(hnp.arrays(np.float64, d, elements=st.integers(-2, 2)))
    c = data.draw(hnp.arrays(np.float64, (n, d), elements=st.integers(-2, 2)))
    if metric == "dot":  # every quantity is exact in float64: the picks must be identical
        idx, scores = rank.mmr(q, c, k, lam, metric="dot")
        ref_idx, ref_scores = ref_mmr(q, c, k, lam, "dot")
        np.testing.assert_array_equal(idx, ref_idx)
        np.testing.assert_array_equal(scores, ref_scores.astype(np.float32))
    else:
        check_against_reference(q, c, k, lam, metric)


def test_lambda_one_is_top_k_by_relevance():
    rng = np.random.default_rng(7)
    q = rng.standard_normal(12)
    c = rng.standard_normal((300, 12))
    c[10] = c[3]  # exact relevance ties
    c[200] = c[3]
    for metric in ("cosine", "dot"):
        rel, _ = sims(q, c, metric)
        for k in (1, 5, 50, 300, 400):
            idx, scores = rank.mmr(q, c, k, 1.0, metric=metric)
            ref_idx, ref_scores = top_k(rel, k)
            np.testing.assert_array_equal(idx, ref_idx)
            np.testing.assert_allclose(scores, ref_scores, rtol=1e-6)
            assert np.all(np.diff(scores) <= 0)


def test_lambda_zero_is_pure_diversity():
    rng = np.random.default_rng(3)
    q = rng.standard_normal(6)
    c = rng.standard_normal((40, 6))
    idx, scores = rank.mmr(q, c, 10, 0.0)
    rel, cc = sims(q, c, "cosine")
    assert idx[0] == np.argmax(rel)  # first pick: most relevant
    assert scores[0] == 0.0
    for t in range(1, 10):
        rest = [j for j in range(40) if j not in idx[:t]]
        maxsim = {j: cc[j, idx[:t]].max() for j in rest}
        assert idx[t] == min(rest, key=lambda j: maxsim[j])  # least similar to the selected
        np.testing.assert_allclose(scores[t], -maxsim[idx[t]], rtol=1e-5, atol=1e-6)


def test_lambda_zero_does_not_depend_on_relevance_after_first_pick():
    c = np.array([[1.0, 0.0], [0.0, 1.0], [0.7, 0.7], [-1.0, 0.0]])
    for q in ([1.0, 0.0], [1.0, 0.1]):
        idx, _ = rank.mmr(q, c, 4, 0.0)
        assert idx.tolist() == [0, 3, 1, 2]


def test_near_duplicates_are_skipped():
    q = [1.0, 0.3]
    c = np.array([[1.0, 0.0], [0.999, 0.04], [0.0, 1.0], [0.998, 0.06]])
    rel, _ = sims(q, c, "cosine")
    idx, _ = rank.mmr(q, c, 2, 0.5)
    assert idx.tolist() == [np.argmax(rel), 2]  # the orthogonal one beats the near-duplicates
    idx, _ = rank.mmr(q, c, 2, 1.0)
    assert idx.tolist() == np.argsort(-rel)[:2].tolist()


def test_ties_go_to_smaller_index():
    c = np.ones((5, 3), np.float32)
    for lam in (0.0, 0.5, 1.0):
        for metric in ("cosine", "dot"):
            idx, scores = rank.mmr(np.ones(3), c, 5, lam, metric=metric)
            assert idx.tolist() == [0, 1, 2, 3, 4]
    # Duplicates of the best candidate: relevance ties, then identical redundancy.
    c = np.array([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.6, 0.8]])
    idx, _ = rank.mmr([1.0, 0.0], c, 5, 1.0)
    assert idx.tolist() == [1, 3, 4, 0, 2]
    idx, _ = rank.mmr([1.0, 0.0], c, 5, 0.5)
    assert idx[0] == 1 and idx[1] == 0


def test_zero_vectors_cosine():
    c = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 0.0]])
    idx, scores = rank.mmr([0.0, 0.0], c, 3, 0.5)  # zero query: every relevance is 0
    assert idx.tolist() == [0, 1, 2]
    np.testing.assert_array_equal(scores, [0.0, 0.0, 0.0])
    idx, scores = rank.mmr([1.0, 0.0], c, 3, 0.5)
    assert idx.tolist() == [1, 0, 2]
    np.testing.assert_array_equal(scores, [0.5, 0.0, 0.0])


def test_k_larger_than_n_returns_all():
    rng = np.random.default_rng(0)
    c = rng.standard_normal((7, 3))
    idx, scores = rank.mmr(rng.standard_normal(3), c, 100)
    assert sorted(idx.tolist()) == list(range(7))
    assert scores.shape == (7,)


def test_dot_metric_uses_magnitude():
    c = np.array([[1.0, 0.0], [3.0, 0.0]])
    assert rank.mmr([1.0, 0.0], c, 1, metric="dot")[0].tolist() == [1]
    assert rank.mmr([1.0, 0.0], c, 1, metric="cosine")[0].tolist() == [0]  # tie, smaller index


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, np.int32, np.int64])
def test_dtypes(dtype):
    rng = np.random.default_rng(1)
    q = (rng.standard_normal(8) * 4).astype(dtype)
    c = (rng.standard_normal((30, 8)) * 4).astype(dtype)
    idx, scores = rank.mmr(q, c, 10, 0.6)
    ref_idx, ref_scores = ref_mmr(q.astype(np.float64), c.astype(np.float64), 10, 0.6)
    assert idx.dtype == np.int64 and scores.dtype == np.float32
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-4, atol=1e-5)


def test_mixed_dtypes_and_lists_and_views():
    rng = np.random.default_rng(2)
    q = rng.standard_normal(5)
    c = rng.standard_normal((20, 10))[:, ::2]  # non-contiguous view
    for qq, cc in [(q, c), (q.astype(np.float32), c), (q, c.astype(np.float16)), (q.tolist(), c.tolist())]:
        idx, scores = rank.mmr(qq, cc, 6, 0.5)
        ref_idx, ref_scores = ref_mmr(np.asarray(qq, np.float64), np.asarray(cc, np.float64), 6, 0.5)
        np.testing.assert_array_equal(idx, ref_idx)
        np.testing.assert_allclose(scores, ref_scores, rtol=1e-4, atol=1e-5)


def test_float64_keeps_precision():
    # Candidates that differ only below float32 resolution still rank by their float64 values.
    c = np.array([[1.0, 0.0], [1.0, 1e-9]])
    assert rank.mmr([1.0, 1.0], c, 1, metric="dot")[0].tolist() == [1]


def test_numpy_scalar_arguments():
    c = np.eye(3)
    idx, _ = rank.mmr(np.ones(3), c, np.int64(2), np.float32(0.5))
    assert idx.tolist() == [0, 1]
    idx, _ = rank.mmr(np.ones(3), c, 2, 1)
    assert idx.tolist() == [0, 1]


def test_threads_share_inputs(run_threads):
    rng = np.random.default_rng(5)
    q = rng.standard_normal(32)
    c = rng.standard_normal((500, 32))
    expected = rank.mmr(q, c, 30, 0.5)
    for r in run_threads(lambda i: rank.mmr(q, c, 30, 0.5)):
        np.testing.assert_array_equal(r[0], expected[0])
        np.testing.assert_array_equal(r[1], expected[1])


# ---------------------------------------------------------------------------- errors

def err(exc, match, *args, **kwargs):
    with pytest.raises(exc, match=match) as info:
        rank.mmr(*args, **kwargs)
    assert isinstance(info.value, RankError)


def test_errors_shapes():
    c = np.ones((4, 3))
    err(ShapeError, "query.*1-D", np.ones((1, 3)), c, 2)
    err(ShapeError, "query.*1-D", 1.0, c, 2)
    err(ShapeError, "candidates.*2-D", np.ones(3), np.ones(3), 2)
    err(ShapeError, "candidates.*2-D", np.ones(3), np.ones((2, 4, 3)), 2)
    err(ShapeError, r"query.*\(3,\).*dimension 3", np.ones(4), c, 2)
    err(ShapeError, "candidates.*non-empty", np.ones(3), np.ones((0, 3)), 2)
    err(ShapeError, "non-empty", np.ones(0), np.ones((4, 0)), 2)
    err(ShapeError, "query.*non-empty", [], c, 2)
    err(DTypeError, "candidates", np.ones(3), [[1.0, 2.0, 3.0], [1.0]], 2)
    err(DTypeError, "query", np.array(["a", "b", "c"]), c, 2)


def test_errors_non_finite():
    c = np.ones((4, 3))
    bad = c.copy()
    bad[2, 1] = np.nan
    err(NonFiniteError, "candidates.*NaN", np.ones(3), bad, 2)
    err(NonFiniteError, "query.*NaN", np.array([1.0, np.inf, 0.0]), c, 2)
    err(NonFiniteError, "candidates", np.ones(3), bad, 2, check_finite=False)  # caught in the kernel
    # finite float64 values whose similarities overflow
    err(NonFiniteError, "overflow", np.full(3, 1e200), c * 1e200, 2, metric="dot")
    idx, _ = rank.mmr(np.full(3, 1e200), c * 1e-200, 2, metric="dot")  # no overflow: fine
    assert idx.tolist() == [0, 1]


def test_cosine_of_extreme_float64_magnitudes():
    rng = np.random.default_rng(11)
    q = rng.standard_normal(6)
    c = rng.standard_normal((25, 6))
    expected = rank.mmr(q, c, 10, 0.5)
    scale = np.where(np.arange(25) % 3 == 0, 1e250, np.where(np.arange(25) % 3 == 1, 1e-250, 1.0))[:, None]
    for qs in (1e-300, 1.0, 1e300):
        idx, scores = rank.mmr(q * qs, c * scale, 10, 0.5)
        np.testing.assert_array_equal(idx, expected[0])
        np.testing.assert_allclose(scores, expected[1], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("k", [0, -1, 1.5, "2", None, True])
def test_errors_k(k):
    err(InvalidValueError, "k must be an integer >= 1; got ", np.ones(3), np.ones((4, 3)), k)


@pytest.mark.parametrize("lam", [-0.1, 1.0000001, 2, float("nan"), float("inf"), "0.5", None, True])
def test_errors_lambda(lam):
    err(InvalidValueError, r"lambda_ must be a finite number in \[0, 1\]; got ", np.ones(3), np.ones((4, 3)), 2, lam)


@pytest.mark.parametrize("metric", ["l2", "Cosine", "", None, 1])
def test_errors_metric(metric):
    err(UnknownMethodError, "metric.*'cosine', 'dot'", np.ones(3), np.ones((4, 3)), 2, metric=metric)


def test_errors_are_value_errors():
    with pytest.raises(ValueError):
        rank.mmr(np.ones(3), np.ones((4, 3)), 0)
    with pytest.raises(ValueError):
        rank.mmr(np.ones(3), np.ones((4, 3)), 1, metric="x")
