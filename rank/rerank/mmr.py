"""Maximal Marginal Relevance (MMR): relevant *and* diverse selection of candidates."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from rank._validate import as_float_array, check_positive_int, check_choice, check_real
from rank.errors import NonFiniteError, ShapeError
from rank_kernels import mmr as _kernel

if TYPE_CHECKING:
    import numpy.typing as npt

__all__ = ["mmr"]

METRICS = ("cosine", "dot")
_KERNEL_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _check_lambda(lambda_: object) -> float:
    return check_real("lambda_", lambda_, 0.0, 1.0)


def _rescale_rows(x: np.ndarray[Any, np.dtype[Any]]) -> np.ndarray[Any, np.dtype[Any]]:
    """Rows of a float64 array scaled by powers of two (exact) if their magnitudes are so
    extreme that squared norms would overflow or underflow; cosines are unchanged."""
    mx = np.abs(x).max(axis=-1, keepdims=True)
    extreme = (mx > 1e100) | ((mx < 1e-100) & (mx > 0))
    if not extreme.any():
        return x
    exponent = np.where(extreme, np.frexp(mx)[1], 0)
    return np.ascontiguousarray(np.ldexp(x, -exponent))


def mmr(query: npt.ArrayLike, candidates: npt.ArrayLike, k: int, lambda_: float = 0.5, *,
        metric: str = "cosine", check_finite: bool = True) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """Select `k` candidates by Maximal Marginal Relevance (Carbonell & Goldstein, 1998).

    Starting from the most relevant candidate, each step picks the unselected candidate ``c``
    that maximises the MMR objective

        ``lambda_ * sim(query, c) - (1 - lambda_) * max_{s selected} sim(c, s)``

    so that results are relevant to the query but not redundant with each other.

    Parameters
    ----------
    query : array-like (d,)
        The query vector.
    candidates : array-like (n, d)
        Candidate vectors, n >= 1. float32 and float64 are read in place (similarities are
        accumulated in float64 either way); float16 and integer inputs become float32.
    k : int
        Number of candidates to select, k >= 1; k > n selects all n (in MMR order).
    lambda_ : float in [0, 1], default 0.5
        Trade-off: 1 is plain top-k by relevance, 0 is pure diversity (after the first
        pick, which is always the most relevant candidate).
    metric : {"cosine", "dot"}, default "cosine"
        Similarity used for both relevance and redundancy. With "cosine" a zero vector has
        similarity 0 with everything.
    check_finite : bool, default True
        Check the inputs for NaN/inf first (NonFiniteError). Independently, a similarity
        that comes out NaN/inf (NaN/inf let through, or a dot product of huge float64
        vectors overflowing) always raises NonFiniteError. float64 rows of extreme
        magnitude are rescaled exactly for "cosine", so cosines never overflow.

    Returns
    -------
    indices : int64 array (min(k, n),)
        Selected candidate indices, in selection order.
    scores : float32 array (min(k, n),)
        The MMR objective of each pick at the moment it was selected (the first pick's
        score is ``lambda_ * sim(query, c)``, the maximum over the empty selected set
        counting as 0). Scores are generally not monotone. Ties go to the smaller index.

    Cost: O(k * n * d) time, O(n) extra memory; the GIL is released throughout.

    >>> import numpy as np
    >>> q = np.array([1.0, 0.2])
    >>> c = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    >>> idx, scores = mmr(q, c, 2)
    >>> idx  # candidate 0 is nearly a duplicate of the first pick 1, so 2 comes next
    array([1, 2])
    >>> np.round(scores, 3)
    array([0.498, 0.043], dtype=float32)
    """
    check_choice("metric", metric, METRICS)
    lam = _check_lambda(lambda_)
    k = check_positive_int(k, "k")
    c = as_float_array(candidates, "candidates", 2, dtypes=_KERNEL_DTYPES, check_finite=check_finite)
    q = as_float_array(query, "query", 1, dtypes=_KERNEL_DTYPES, check_finite=check_finite)
    if q.shape[0] != c.shape[1]:
        raise ShapeError(
            f"query: expected shape ({c.shape[1]},) to match the candidate dimension {c.shape[1]}, "
            f"got shape {q.shape}")
    if q.dtype != c.dtype:  # one shared kernel dtype: float64 only if both are float64
        q, c = q.astype(np.float32), c.astype(np.float32)
    if metric == "cosine" and c.dtype == np.float64:
        q, c = _rescale_rows(q), _rescale_rows(c)
    k = min(k, c.shape[0])
    indices = np.empty(k, np.int64)
    scores = np.empty(k, np.float32)
    status = _kernel.mmr_select(q, c, lam, metric == "cosine", indices, scores)
    if status:  # NaN/inf that check_finite=False let through, or overflow of finite inputs
        raise NonFiniteError(
            "candidates: a similarity is NaN or infinite (non-finite inputs, or vector magnitudes "
            "so large that dot products overflow)")
    return indices, scores
