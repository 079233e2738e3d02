"""Soft-rank NDCG loss over grouped data, built on the projection soft ranks of :mod:`rank.soft`.

Within each group the hard ranks of NDCG are replaced by the soft ranks of
:func:`rank.soft.soft_rank` (Blondel et al. 2020, descending: rank 1 is the highest score), so
the loss is differentiable almost everywhere in the scores; its gradient is one soft-rank
vector-Jacobian product. Groups of equal size are ranked together as the rows of one matrix,
so the compiled kernel runs them on ``n_threads`` threads without the GIL; the Python loop
is over the distinct group sizes only.

>>> res = soft_ndcg([2.0, 1.0, 0.0], [2, 1, 0], group=[3], regularization_strength=0.1)
>>> res.loss, res.grad.tolist(), res.hess is None
(0.0, [0.0, 0.0, 0.0], True)
"""
from __future__ import annotations

import math
from typing import Iterator, Optional, Sequence, Tuple

import numpy as np
from numpy.typing import ArrayLike

from rank._validate import resolve_threads, check_choice, check_int, check_real
from rank.learn.losses import LossResult, gain_labels, prepare_groups
from rank.soft.projection import REGULARIZATIONS, soft_rank_with_vjp

__all__ = ["soft_ndcg"]

_LN2 = math.log(2.0)
#: Matrix entries per thread below which a size bucket is ranked serially: many small buckets
#: would otherwise pay a thread start-up and barrier per kernel call for little work.
_MIN_PER_THREAD = 1 << 16


def _buckets(offsets: np.ndarray) -> Iterator[Tuple[int, Optional[np.ndarray]]]:
    """(size, row index (m, size) or None for "every row, in order") per distinct group size."""
    sizes = np.diff(offsets)
    uniq, inverse = np.unique(sizes, return_inverse=True)
    if uniq.size == 1:
        yield int(uniq[0]), None
        return
    order = np.argsort(inverse, kind="stable")
    ends = np.cumsum(np.bincount(inverse, minlength=uniq.size))
    start = 0
    for v, end in zip(uniq, ends):
        groups = order[start:end]
        start = int(end)
        yield int(v), offsets[groups][:, None] + np.arange(int(v))


def soft_ndcg(scores: ArrayLike, labels: ArrayLike, group: Optional[ArrayLike] = None, *,
              qid: Optional[ArrayLike] = None, regularization_strength: float = 1.0,
              regularization: str = "l2", truncation_level: Optional[int] = None, gain: str = "exp",
              label_gain: Optional[Sequence[float]] = None, n_threads: Optional[int] = None,
              check_finite: bool = True) -> LossResult:
    """Soft-rank NDCG loss: per group, 1 - NDCG with the soft ranks of the scores as ranks.

    With r the descending soft ranks of a group's scores (:func:`rank.soft.soft_rank`, values
    in [1, n_g]) and G(label) the gain, the group's soft DCG is
    ``sum_i G(label_i) * D(r_i)`` with ``D(r) = 1 / log2(1 + r)``, and its loss is
    ``1 - softDCG / IDCG``, IDCG being the hard ideal DCG. The result sums the group losses;
    groups whose ideal DCG is 0 (no positive gain) contribute 0 and a zero gradient. As
    `regularization_strength` tends to 0 the soft ranks become the hard ranks (ties averaged)
    and the loss tends to the number of groups minus the sum of their NDCG.

    With `truncation_level` k, only ranks up to k count (NDCG@k): D is multiplied by
    ``clip(k + 1 - r, 0, 1)``, a ramp between soft ranks k and k + 1 that keeps the loss
    continuous and equals the hard cut-off at integer ranks; the ideal DCG is the hard IDCG@k.

    Parameters
    ----------
    scores : array-like (n,), float (converted to float64)
    labels : array-like (n,), integer grades >= 0
    group, qid : group sizes (n_groups,) summing to n, or a query id per row (n,); one of them.
    regularization_strength : float > 0, default 1.0
        Of the soft ranks (epsilon of the projection); scores closer than about this value
        share their rank. Smaller is closer to hard NDCG, with a sparser gradient (a row whose
        soft rank is not pooled with any other gets no gradient).
    regularization : 'l2' (default) or 'kl', as in :func:`rank.soft.soft_rank`.
    truncation_level : int > 0, optional (default: no cut-off)
    gain : 'exp' (2**label - 1, labels <= 30) or 'linear' (label), default 'exp'
    label_gain : sequence of float, optional; gain of each label value (overrides `gain`)
    n_threads : int, optional (default: every core); results do not depend on it.
    check_finite : bool, default True

    Returns
    -------
    LossResult(loss, grad, None): loss a float, grad float64 (n,). No hessian: the loss is
    concave in the soft ranks, so it has no useful positive diagonal and is not a gradient
    boosting objective (use it with :class:`rank.learn.LinearRanker` or any gradient method).

    Complexity: O(n_g log n_g) per group of n_g rows (one soft-rank projection and its O(n_g)
    vector-Jacobian product, and one sort for the ideal DCG), plus a Python step per distinct
    group size. Memory: a few float64 arrays of n.

    >>> res = soft_ndcg([0.0, 1.0, 3.0], [1, 0, 0], group=[3], regularization_strength=2.0)
    >>> round(res.loss, 6), res.grad.round(6).tolist()
    (0.466516, [-0.037327, 0.018664, 0.018664])
    """
    s, lab, off = prepare_groups(scores, labels, group, qid, check_finite)
    lab, gains = gain_labels(lab, gain, label_gain)
    k = None if truncation_level is None else check_int("truncation_level", truncation_level, lo=1)
    strength = check_real("regularization_strength", regularization_strength, lo=0.0, inclusive="neither")
    regularization = check_choice("regularization", regularization, REGULARIZATIONS)
    threads = resolve_threads(n_threads)

    grad = np.empty(s.size, np.float64)
    loss = 0.0
    for v, rows in _buckets(off):
        x = s.reshape(-1, v) if rows is None else s[rows]
        g = gains[lab.reshape(-1, v) if rows is None else lab[rows]]
        kk = v if k is None else min(k, v)
        disc = 1.0 / np.log2(np.arange(2.0, kk + 2.0))
        ideal = -np.sort(-g, axis=1)[:, :kk] @ disc
        ok = ideal > 0
        inv = np.divide(1.0, ideal, out=np.zeros_like(ideal), where=ok)

        r, vjp = soft_rank_with_vjp(x, direction="descending", regularization_strength=strength,
                                    regularization=regularization, check_finite=False,
                                    n_threads=max(1, min(threads, x.size // _MIN_PER_THREAD)))
        r1 = r + 1.0  # r itself is kept by the VJP
        d = np.log2(r1)
        np.reciprocal(d, out=d)  # D(r) = 1 / log2(1 + r)
        dd = d * d
        dd /= r1
        dd *= -1.0 / _LN2  # dD/dr
        if k is not None and k < v:
            ramp = np.clip(k + 1.0 - r, 0.0, 1.0)
            dd *= ramp
            dd -= np.where((r > k) & (r < k + 1.0), d, 0.0)
            d *= ramp
        ndcg = np.einsum("ij,ij->i", g, d) * inv
        loss += float(np.sum(1.0 - ndcg, where=ok))
        cot = np.multiply(g, dd, out=dd)
        cot *= -inv[:, None]
        gr = vjp(cot)
        if rows is None:
            grad[:] = gr.reshape(-1)
        else:
            grad[rows] = gr
    grad += 0.0  # no negative zeros
    return LossResult(loss, grad, None)
