"""Learning-to-rank losses over grouped data, with gradients and diagonal hessians.

Every loss takes `scores` (n,), integer graded `labels` (n,) and the grouping, given either
as group sizes (``group=[3, 2]``: rows 0-2 then rows 3-4) or as a query id per row
(``qid=[7, 7, 7, 2, 2]``; each query's rows must be contiguous). It returns a
:class:`LossResult` ``(loss, grad, hess)``: the loss summed over groups, its gradient with
respect to the scores (float64, (n,)) and, for the losses gradient boosting uses, the diagonal
of the hessian (float64, (n,); None otherwise). The kernels run without the GIL, groups in
parallel (``n_threads``; default every core); results do not depend on the thread count.

>>> import numpy as np
>>> res = ranknet([0.0, 1.0], [1, 0], group=[2])
>>> round(res.loss, 6), res.grad.round(6).tolist()
(1.313262, [-0.731059, 0.731059])
"""
from typing import NamedTuple, Optional, Sequence

import numpy as np
from numpy.typing import ArrayLike

from rank._validate import as_float_array, resolve_threads, check_choice, check_int, check_real
from rank.errors import DTypeError, InvalidValueError, ShapeError
from rank_kernels import ltr as _kernel

__all__ = ["LossResult", "lambdarank", "ranknet", "pairwise_hinge", "listnet", "listmle",
           "approx_ndcg", "LOSSES", "group_offsets"]

#: Labels allowed with the default exponential gain (2**label - 1), as in LightGBM.
MAX_EXP_LABEL = 30


class LossResult(NamedTuple):
    """Loss summed over groups, gradient (n,) and diagonal hessian (n,) or None."""

    loss: float
    grad: np.ndarray
    hess: Optional[np.ndarray]


def group_offsets(n: int, group: Optional[ArrayLike] = None, qid: Optional[ArrayLike] = None) -> np.ndarray:
    """Group boundaries (n_groups + 1,) int64 from group sizes or a per-row query id.

    >>> group_offsets(5, group=[3, 2]).tolist()
    [0, 3, 5]
    >>> group_offsets(5, qid=[7, 7, 7, 2, 2]).tolist()
    [0, 3, 5]
    """
    if (group is None) == (qid is None):
        raise InvalidValueError("pass exactly one of group (group sizes) and qid (a query id per row)")
    if group is not None:
        sizes = _int_array(group, "group")
        if sizes.ndim != 1 or sizes.size == 0:
            raise ShapeError(f"group: expected a non-empty 1-D array of group sizes, got shape {sizes.shape}")
        if sizes.dtype.kind == "f" and np.all(np.isfinite(sizes)) and np.all(sizes == np.round(sizes)):
            sizes = sizes.astype(np.int64)
        if sizes.dtype.kind not in "iu":
            raise InvalidValueError(f"group: expected integer group sizes, got dtype {sizes.dtype}")
        if (sizes <= 0).any():
            bad = int(np.flatnonzero(sizes <= 0)[0])
            raise InvalidValueError(f"group: every group needs at least one row, group[{bad}] = {sizes[bad]}")
        # checked in the given dtype before the int64 sum, so sizes like 2**62 cannot wrap around
        if sizes.size > max(n, 1) or (sizes > n).any():
            raise ShapeError(f"group: group sizes sum to more than the number of rows {n} "
                             f"({sizes.size} groups, largest {sizes.max()})")
        offsets = np.zeros(sizes.size + 1, np.int64)
        np.cumsum(sizes.astype(np.int64), out=offsets[1:])
        if offsets[-1] != n:
            raise ShapeError(f"group: group sizes sum to {offsets[-1]}, expected the number of rows {n}")
        return offsets
    q = _int_array(qid, "qid")
    if q.ndim != 1 or q.shape[0] != n:
        raise ShapeError(f"qid: expected shape ({n},) (one query id per row), got shape {q.shape}")
    if n == 0:
        raise ShapeError("qid: expected a non-empty array")
    starts = np.flatnonzero(q[1:] != q[:-1]) + 1
    if np.unique(q).size != starts.size + 1:
        raise InvalidValueError("qid: the rows of each query must be contiguous (sort the rows by qid)")
    return np.concatenate(([0], starts, [n])).astype(np.int64)


def _int_array(x: Optional[ArrayLike], name: str) -> np.ndarray:
    """np.asarray(x), with DTypeError instead of NumPy's errors for ragged or odd inputs (the
    dtype is checked by the caller)."""
    try:
        return np.asarray(x)
    except (ValueError, TypeError, OverflowError) as e:
        raise DTypeError(f"{name}: expected a 1-D array of integers ({type(e).__name__}: {e})") from None


def _gains(gain: str, label_gain: Optional[Sequence[float]], max_label: int) -> np.ndarray:
    check_choice("gain", gain, ("exp", "linear"))
    if label_gain is not None:
        g = as_float_array(label_gain, "label_gain", 1, dtypes=(np.dtype(np.float64),), default=np.float64)
        if max_label >= g.size:
            raise InvalidValueError(f"labels: label {max_label} has no entry in label_gain (length {g.size})")
        return g
    if gain == "exp":
        if max_label > MAX_EXP_LABEL:
            raise InvalidValueError(
                f"labels: the exponential gain 2**label - 1 supports labels up to {MAX_EXP_LABEL}, got {max_label}; "
                "pass label_gain=[...] (one gain per label value) or gain='linear'")
        return np.exp2(np.arange(max_label + 1, dtype=np.float64)) - 1.0
    return np.arange(max_label + 1, dtype=np.float64)


def gain_labels(lab: np.ndarray, gain: str, label_gain: Optional[Sequence[float]]) -> tuple[np.ndarray, np.ndarray]:
    """(labels, gains) for the gain-based losses. With the linear gain and large grades the
    gain table would be as long as the largest grade (16 GiB for grades near 2**31): the grades
    are then replaced by their order codes among the distinct grades, with the table of the
    distinct grades (same comparisons, same gains)."""
    top = int(lab.max())
    if label_gain is None and gain == "linear" and top >= max(1 << 16, 4 * lab.size):
        uniq, codes = np.unique(lab, return_inverse=True)
        return np.ascontiguousarray(codes.reshape(-1), np.int32), uniq.astype(np.float64)
    return lab, _gains(gain, label_gain, top)


def prepare_groups(scores, labels, group, qid, check_finite=True):
    s = as_float_array(scores, "scores", 1, dtypes=(np.dtype(np.float64),), default=np.float64,
                       check_finite=check_finite)
    lab = _int_array(labels, "labels")
    if lab.ndim != 1 or lab.shape[0] != s.shape[0]:
        raise ShapeError(f"labels: expected shape ({s.shape[0]},) to match scores, got shape {lab.shape}")
    if lab.dtype.kind == "f":
        if not np.isfinite(lab).all() or not (lab == np.round(lab)).all():
            raise InvalidValueError("labels: expected integer relevance grades, got non-integer values")
    elif lab.dtype.kind not in "iub":
        raise InvalidValueError(f"labels: expected integer relevance grades, got dtype {lab.dtype}")
    if lab.size and lab.min() < 0:
        raise InvalidValueError(f"labels: expected grades >= 0, got {lab.min()}")
    if lab.size and lab.max() > np.iinfo(np.int32).max:
        raise InvalidValueError(f"labels: grade {lab.max()} is too large")
    lab = np.ascontiguousarray(lab, dtype=np.int32)
    offsets = group_offsets(s.shape[0], group, qid)
    return s, lab, offsets


def _outputs(n, n_groups, hess=True):
    return np.empty(n, np.float64), (np.empty(n, np.float64) if hess else None), np.empty(n_groups, np.float64)


def lambdarank(scores: ArrayLike, labels: ArrayLike, group: Optional[ArrayLike] = None, *,
               qid: Optional[ArrayLike] = None, truncation_level: int = 30, sigma: float = 1.0,
               gain: str = "exp", label_gain: Optional[Sequence[float]] = None, norm: bool = True,
               exact_sigmoid: bool = False, compute_loss: bool = True, n_threads: Optional[int] = None,
               check_finite: bool = True) -> LossResult:
    """LambdaRank (LambdaMART) gradients and hessians, the same as LightGBM's ``lambdarank``.

    Within each group the rows are ranked by score (ties by row order); every pair with
    different labels and at least one member among the top `truncation_level` positions gets
    the weight |delta NDCG| = |G_hi - G_lo| * |1/log2(2+r_hi) - 1/log2(2+r_lo)| / maxDCG@t,
    divided by (0.01 + |s_hi - s_lo|) when `norm`, and adds
    ``w * sigma * rho`` to the gradient of the lower-labelled row (minus to the higher one),
    ``w * sigma^2 * rho * (1 - rho)`` to both hessians, with rho = 1 / (1 + exp(sigma (s_hi - s_lo))).
    With `norm`, each group's gradients and hessians are then scaled by log2(1 + L) / L, L
    being the group's sum of |lambdas| (LightGBM's ``lambdarank_norm``).

    Parameters
    ----------
    scores : array-like (n,), float (converted to float64)
    labels : array-like (n,), integer grades >= 0
    group, qid : group sizes (n_groups,) summing to n, or a query id per row (n,); one of them.
    truncation_level : int, default 30 (LightGBM's ``lambdarank_truncation_level``)
    sigma : float > 0, default 1.0 (LightGBM's ``sigmoid``)
    gain : 'exp' (2**label - 1, labels <= 30) or 'linear' (label), default 'exp'
    label_gain : sequence of float, optional; gain of each label value (overrides `gain`)
    norm : bool, default True (LightGBM's ``lambdarank_norm``)
    exact_sigmoid : bool, default False; False evaluates rho as LightGBM does, at the score
        difference rounded down onto its grid of 2^20 points over [-25 / sigma, 25 / sigma]
        (the grid values agree with LightGBM's table to a few units in the last place, far
        below LightGBM's own float32 gradients); True uses the exact logistic function.
    compute_loss : bool, default True; False skips the loss (returned as NaN). The loss needs
        a log(1 + exp(.)) per pair, about a third of the call's time (and most of it on CPUs
        without AVX2, where that part runs scalar); gradient boosting, for one, never reads it.
    n_threads : int, optional (default: every core)

    Returns
    -------
    LossResult(loss, grad, hess): grad and hess float64 (n,). `loss` is the delta-NDCG weighted
    pairwise logistic loss with the weights (and norm factor) held constant, i.e. the function
    whose gradient this is at the current scores (NaN when `compute_loss` is False).

    Complexity: O(n_g log n_g + n_g * min(n_g, truncation_level)) per group of n_g rows; the
    pair loop is branch-free and vectorised (AVX-512 or AVX2 + FMA where the CPU has them,
    otherwise portable C the compiler vectorises), a few nanoseconds per pair. Results agree
    across these code paths to rounding (about 1e-15 relative), not bit for bit; they never
    depend on `n_threads`.

    >>> res = lambdarank([0.2, 0.1, 0.0], [0, 1, 2], group=[3])
    >>> res.grad.round(4).tolist(), res.hess.round(4).tolist()
    ([0.9304, -0.0837, -0.8467], [0.426, 0.2339, 0.3862])
    >>> lambdarank([0.2, 0.1, 0.0], [0, 1, 2], group=[3], compute_loss=False).loss
    nan
    """
    s, lab, off = prepare_groups(scores, labels, group, qid, check_finite)
    t = _positive_int(truncation_level, "truncation_level")
    sigma = _positive_float(sigma, "sigma")
    lab, gains = gain_labels(lab, gain, label_gain)
    grad, hess, gl = _outputs(s.size, off.size - 1)
    _kernel.lambdarank(s, lab, off, gains, sigma, t, bool(norm), bool(exact_sigmoid), bool(compute_loss),
                       resolve_threads(n_threads), grad, hess, gl)
    return LossResult(float(gl.sum()) if compute_loss else float("nan"), grad, hess)


def _lambdarank_grad_hess(s, lab, off, gains, sigma, t, norm, exact, n_threads):
    """Gradient and hessian only (no loss), for benchmarks; inputs already validated."""
    grad, hess, gl = _outputs(s.size, off.size - 1)
    _kernel.lambdarank(s, lab, off, gains, sigma, t, norm, exact, False, n_threads, grad, hess, gl)
    return grad, hess


def _positive_int(v, name):
    return check_int(name, v, lo=1)


def _positive_float(v, name):
    return check_real(name, v, lo=0.0, inclusive="neither")


def _pairwise(scores: ArrayLike, labels: ArrayLike, group: Optional[ArrayLike], qid: Optional[ArrayLike],
              check_finite: bool, hinge: bool, param: float, n_threads: Optional[int]) -> LossResult:
    """The pairwise kernel (logistic with scale `param`, or hinge with margin `param`) over the groups."""
    s, lab, off = prepare_groups(scores, labels, group, qid, check_finite)
    grad, hess, gl = _outputs(s.size, off.size - 1)
    _kernel.pairwise(s, lab, off, hinge, param, resolve_threads(n_threads), grad, hess, gl)
    return LossResult(float(gl.sum()), grad, hess)


def ranknet(scores: ArrayLike, labels: ArrayLike, group: Optional[ArrayLike] = None, *,
            qid: Optional[ArrayLike] = None, sigma: float = 1.0, n_threads: Optional[int] = None,
            check_finite: bool = True) -> LossResult:
    """RankNet: sum over pairs (i, j) of a group with labels[i] > labels[j] of
    ``log(1 + exp(-sigma * (s_i - s_j)))``.

    Arguments as in :func:`lambdarank`. Returns LossResult with grad and the exact hessian
    diagonal (float64, (n,)). Complexity O(n_g^2) per group of n_g rows.

    >>> res = ranknet([0.0, 0.0, 0.0], [2, 1, 0], group=[3])
    >>> round(res.loss, 6), res.grad.tolist(), res.hess.tolist()
    (2.079442, [-1.0, 0.0, 1.0], [0.5, 0.5, 0.5])
    """
    return _pairwise(scores, labels, group, qid, check_finite, False, _positive_float(sigma, "sigma"), n_threads)


def pairwise_hinge(scores: ArrayLike, labels: ArrayLike, group: Optional[ArrayLike] = None, *,
                   qid: Optional[ArrayLike] = None, margin: float = 1.0, n_threads: Optional[int] = None,
                   check_finite: bool = True) -> LossResult:
    """Pairwise hinge loss of the Ranking SVM: sum over pairs with labels[i] > labels[j] of
    ``max(0, margin - (s_i - s_j))``.

    Returns LossResult(loss, grad, None); grad is a subgradient (0 at the kink).
    Complexity O(n_g^2) per group.

    >>> pairwise_hinge([0.0, 2.0], [0, 1], group=[2]).grad.tolist()
    [0.0, 0.0]
    >>> pairwise_hinge([0.0, 0.5], [0, 1], group=[2]).loss
    0.5
    """
    res = _pairwise(scores, labels, group, qid, check_finite, True, _positive_float(margin, "margin"), n_threads)
    return res._replace(hess=None)


def listnet(scores: ArrayLike, labels: ArrayLike, group: Optional[ArrayLike] = None, *,
            qid: Optional[ArrayLike] = None, n_threads: Optional[int] = None,
            check_finite: bool = True) -> LossResult:
    """Top-one ListNet: per group, the cross-entropy ``-sum_i softmax(labels)_i log softmax(scores)_i``.

    grad = softmax(scores) - softmax(labels) per group; hess = q (1 - q), q = softmax(scores).
    Complexity O(n).

    >>> res = listnet([0.0, 0.0], [1, 1], group=[2])
    >>> round(res.loss, 6), res.grad.tolist()
    (0.693147, [0.0, 0.0])
    """
    s, lab, off = prepare_groups(scores, labels, group, qid, check_finite)
    grad, hess, gl = _outputs(s.size, off.size - 1)
    _kernel.listnet(s, lab, off, resolve_threads(n_threads), grad, hess, gl)
    return LossResult(float(gl.sum()), grad, hess)


def listmle(scores: ArrayLike, labels: ArrayLike, group: Optional[ArrayLike] = None, *,
            qid: Optional[ArrayLike] = None, n_threads: Optional[int] = None,
            check_finite: bool = True) -> LossResult:
    """ListMLE: Plackett-Luce negative log-likelihood of the ranking by label.

    With pi the rows of a group sorted by label descending (equal labels in row order), the
    group loss is ``sum_k [log sum_{m >= k} exp(s_pi(m)) - s_pi(k)]``. Returns the exact
    gradient and hessian diagonal. Complexity O(n_g log n_g) per group.

    >>> round(listmle([0.0, 0.0], [1, 0], group=[2]).loss, 6)
    0.693147
    """
    s, lab, off = prepare_groups(scores, labels, group, qid, check_finite)
    grad, hess, gl = _outputs(s.size, off.size - 1)
    _kernel.listmle(s, lab, off, resolve_threads(n_threads), grad, hess, gl)
    return LossResult(float(gl.sum()), grad, hess)


def approx_ndcg(scores: ArrayLike, labels: ArrayLike, group: Optional[ArrayLike] = None, *,
                qid: Optional[ArrayLike] = None, alpha: float = 10.0, gain: str = "exp",
                label_gain: Optional[Sequence[float]] = None, n_threads: Optional[int] = None,
                check_finite: bool = True) -> LossResult:
    """ApproxNDCG loss: per group, 1 - NDCG computed with smooth ranks
    ``rank_i = 1 + sum_{j != i} sigmoid(alpha * (s_j - s_i))`` (Qin, Liu & Li, 2010).

    Groups whose labels are all 0 contribute 0. Returns LossResult(loss, grad, None).
    Complexity O(n_g^2) per group.

    >>> round(approx_ndcg([5.0, 0.0], [1, 0], group=[2]).loss, 6)
    0.0
    """
    s, lab, off = prepare_groups(scores, labels, group, qid, check_finite)
    alpha = _positive_float(alpha, "alpha")
    lab, gains = gain_labels(lab, gain, label_gain)
    grad, _, gl = _outputs(s.size, off.size - 1, hess=False)
    _kernel.approx_ndcg(s, lab, off, gains, alpha, resolve_threads(n_threads), grad, gl)
    return LossResult(float(gl.sum()), grad, None)


#: Loss functions by name.
LOSSES = {
    "lambdarank": lambdarank,
    "ranknet": ranknet,
    "hinge": pairwise_hinge,
    "listnet": listnet,
    "listmle": listmle,
    "approx_ndcg": approx_ndcg,
}
