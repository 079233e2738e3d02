"""Differentiable ranking relaxations beyond the permutahedron projection.

Each method turns a vector of scores into smooth ranks whose temperature ``tau`` controls how
close they are to the hard ranks (tau -> 0) and how spread out the gradient is:

- ``"sigmoid"``: r_i = 1 + sum_{j != i} sigmoid((x_i - x_j) / tau) (ascending), O(n^2).
- ``"neuralsort"`` (Grover et al., 2019): expected ranks under the relaxed permutation matrix
  P = softmax(((n + 1 - 2i) x - A_x 1) / tau) (row-wise), O(n^2) time, O(n) memory;
  :func:`soft_permutation` returns P itself.
- ``"softrank"`` (Taylor et al., 2008): scores are Gaussians N(x_j, tau^2); expected ranks
  1 + sum_{i != j} P(s_i beats s_j), O(n^2); :func:`softrank_ndcg` uses the full rank
  distributions from the recursive algorithm, O(n^3).
- ``"smoothi"`` (Thonet et al., 2022): smooth rank indicators I^r_j built by a recursion of
  softmaxes, ranks sum_r r I^r_j, O(n^2); :func:`smoothi_ndcg` is NDCG@k built on them, O(k n).
- :func:`soft_topk`: a differentiable top-k mask, by Gumbel-softmax relaxed subset sampling or
  by the Euclidean projection onto the capped simplex.

Every function takes a 1-D array or a 2-D array of rows (float32 or float64; the output
follows the input dtype, the arithmetic runs in float64), has a vector-Jacobian product
``*_vjp(values, cotangent, ...)`` computed analytically in a compiled kernel (no n x n
Jacobian), and runs rows on ``n_threads`` threads with the GIL released.

:data:`RELAXATIONS` maps each rank method name to its ``(forward, vjp)`` pair, with the
signatures ``forward(values, *, direction, temperature, n_threads, **params)`` and
``vjp(values, cotangent, *, direction, temperature, n_threads, **params)``.

>>> import numpy as np
>>> np.round(sigmoid_rank([3.0, 1.0, 2.0], temperature=0.01), 6)
array([3., 1., 2.])
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Tuple, Union

import numpy as np
from numpy.typing import ArrayLike

from rank._validate import as_float_array, check_positive_int, resolve_threads, check_choice, check_real
from rank.errors import InvalidValueError, ShapeError
from rank_kernels import relax as _k

__all__ = [
    "sigmoid_rank", "sigmoid_rank_vjp",
    "neuralsort_rank", "neuralsort_rank_vjp", "soft_permutation", "soft_permutation_vjp",
    "softrank_rank", "softrank_rank_vjp", "softrank_ndcg", "softrank_ndcg_vjp",
    "smoothi_rank", "smoothi_rank_vjp", "smoothi_ndcg", "smoothi_ndcg_vjp",
    "soft_topk", "soft_topk_vjp",
    "RELAXATIONS", "DIRECTIONS", "TOPK_METHODS",
]

DIRECTIONS = ("ascending", "descending")
TOPK_METHODS = ("gumbel", "projection")
_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


# ---------------------------------------------------------------------------------------------
# input validation

def _rows(values: ArrayLike, name: str = "values", check_finite: bool = True) -> tuple[np.ndarray, bool]:
    """`values` as a C-contiguous float32/float64 (m, n) array, and whether it was 1-D."""
    x = as_float_array(values, name, (1, 2), dtypes=_FLOATS, default=np.float64,
                       check_finite=check_finite)
    if x.shape[-1] == 0:
        raise ShapeError(f"{name}: expected non-empty rows, got shape {x.shape}")
    single = x.ndim == 1
    return (x.reshape(1, -1) if single else x), single


def _like(cotangent: ArrayLike, x: np.ndarray, single: bool, name: str = "cotangent") -> np.ndarray:
    c = as_float_array(cotangent, name, (1, 2), dtypes=_FLOATS, default=np.float64)
    want = x.shape[1:] if single else x.shape
    if c.shape != want:
        raise ShapeError(f"{name}: expected shape {want} to match values, got shape {c.shape}")
    return np.ascontiguousarray(c.reshape(x.shape), dtype=x.dtype)


def _temperature(value: Any, name: str = "temperature") -> float:
    return check_real(name, value, lo=0.0, inclusive="neither")


#: Largest |value| / temperature (times the method's growth factor) the kernels evaluate:
#: beyond it their float64 intermediates (pair sums, logits) could overflow to inf or NaN.
_MAX_RATIO = 1e300


def _check_ratio(x: np.ndarray, temperature: float, factor: float, name: str = "temperature") -> None:
    """InvalidValueError unless factor * max|x| / temperature stays well inside float64."""
    amax = float(np.max(np.abs(x))) if x.size else 0.0
    with np.errstate(over="ignore"):
        ratio = factor * amax / temperature if amax else 0.0
    if not (ratio <= _MAX_RATIO):
        raise InvalidValueError(
            f"{name}: {temperature!r} is too small for values up to {amax:.3g} (values / {name} overflow "
            f"float64 in this method); use a larger {name} or rescale the values")


def _check_smoothi(x: np.ndarray, temperature: float) -> None:
    """SmoothI works on s = shifted values in [1, 1 + spread]: alpha * s must stay finite."""
    hi, lo = float(np.max(x)), float(np.min(x))
    spread = 2.0 * (hi / 2.0 - lo / 2.0)  # no overflow in the subtraction
    with np.errstate(over="ignore"):
        ratio = (spread + 1.0) / temperature
    if not (ratio <= _MAX_RATIO):
        raise InvalidValueError(
            f"temperature: {temperature!r} is too small for values from {lo:.3g} to {hi:.3g} ((spread + 1) / "
            "temperature overflows float64 in SmoothI); use a larger temperature or rescale the values")


def _sign(direction: str) -> float:
    check_choice("direction", direction, DIRECTIONS)
    return 1.0 if direction == "ascending" else -1.0


def _threads(n_threads: Optional[int]) -> int:
    return resolve_threads(n_threads)


def _out(result: np.ndarray, single: bool) -> np.ndarray:
    return result[0] if single else result


# ---------------------------------------------------------------------------------------------
# sigmoid

def sigmoid_rank(values: ArrayLike, *, direction: str = "ascending", temperature: float = 1.0,
                 n_threads: Optional[int] = None) -> np.ndarray:
    """Pairwise-sigmoid soft ranks: r_i = 1 + sum_{j != i} sigmoid((x_i - x_j) / temperature).

    Parameters
    ----------
    values : array-like, shape (n,) or (m, n), float32 or float64 (others become float64)
        Scores, ranked row by row.
    direction : {"ascending", "descending"}, default "ascending"
        "ascending": the smallest value gets rank ~1; "descending": the largest does
        (the formula applied to -values).
    temperature : float > 0, default 1.0
        As it goes to 0 the ranks tend to the hard ranks (ties get the mean rank).
    n_threads : int, optional
        Threads over rows (default: every core; 1 = serial).

    Returns
    -------
    numpy.ndarray, same shape and dtype as `values`.

    Each unordered pair is evaluated once; O(n^2) time per row, O(n) memory.

    >>> sigmoid_rank([0.0, 10.0, 5.0], temperature=0.1)
    array([1., 3., 2.])
    """
    x, single = _rows(values)
    out = np.empty_like(x)
    _k.sigmoid_rank(x, _temperature(temperature), _sign(direction), out, _threads(n_threads))
    return _out(out, single)


def sigmoid_rank_vjp(values: ArrayLike, cotangent: ArrayLike, *, direction: str = "ascending",
                     temperature: float = 1.0, n_threads: Optional[int] = None) -> np.ndarray:
    """Vector-Jacobian product of :func:`sigmoid_rank`: the gradient of sum(cotangent * ranks).

    grad_i = sum_j (c_i - c_j) sigmoid'((x_i - x_j) / tau) / tau (sign flipped for
    "descending"), O(n^2) per row without any n x n array. Shapes and dtypes as
    :func:`sigmoid_rank`; `cotangent` has the shape of `values`.

    >>> sigmoid_rank_vjp([0.0, 0.0], [1.0, 0.0])
    array([ 0.25, -0.25])
    """
    x, single = _rows(values)
    c = _like(cotangent, x, single)
    out = np.empty_like(x)
    _k.sigmoid_vjp(x, c, _temperature(temperature), _sign(direction), out, _threads(n_threads))
    return _out(out, single)


# ---------------------------------------------------------------------------------------------
# neuralsort

def neuralsort_rank(values: ArrayLike, *, direction: str = "ascending", temperature: float = 1.0,
                    n_threads: Optional[int] = None) -> np.ndarray:
    """NeuralSort soft ranks (Grover et al., 2019): r_j = sum_i i P[i, j].

    P = softmax(((n + 1 - 2i) x - A_x 1) / temperature) row-wise (i = 1..n, (A_x 1)_j =
    sum_k |x_j - x_k|) is the relaxed permutation matrix that sorts x in decreasing order,
    so the natural direction is "descending"; "ascending" applies it to -values.

    Parameters and return value as :func:`sigmoid_rank`. O(n^2) time per row and O(n)
    memory: P is never stored (consecutive rows of P differ by a fixed elementwise factor).

    >>> neuralsort_rank([0.0, 10.0, 5.0], temperature=0.1)
    array([1., 3., 2.])
    """
    x, single = _rows(values)
    out = np.empty_like(x)
    _check_ratio(x, _temperature(temperature), 2.0 * x.shape[1] + 2.0)
    _k.neuralsort_rank(x, _temperature(temperature), -_sign(direction), out, _threads(n_threads))
    return _out(out, single)


def neuralsort_rank_vjp(values: ArrayLike, cotangent: ArrayLike, *, direction: str = "ascending",
                        temperature: float = 1.0, n_threads: Optional[int] = None) -> np.ndarray:
    """Vector-Jacobian product of :func:`neuralsort_rank`, O(n^2) per row, O(n) memory.

    P is recomputed row by row; the A_x 1 term is differentiated through one sort.

    >>> np.round(neuralsort_rank_vjp([0.0, 1.0], [1.0, 0.0]), 4)
    array([ 0.1966, -0.1966])
    """
    x, single = _rows(values)
    c = _like(cotangent, x, single)
    out = np.empty_like(x)
    _check_ratio(x, _temperature(temperature), 2.0 * x.shape[1] + 2.0)
    _k.neuralsort_vjp(x, c, _temperature(temperature), -_sign(direction), out, _threads(n_threads))
    return _out(out, single)


def soft_permutation(values: ArrayLike, temperature: float = 1.0, *, direction: str = "descending",
                     n_threads: Optional[int] = None) -> np.ndarray:
    """The NeuralSort relaxed permutation matrix P (Grover et al., 2019).

    P[i, :] = softmax(((n + 1 - 2i) x - A_x 1) / temperature), i = 1..n: row i is a
    probability vector over which element is the i-th largest ("descending", the paper's
    convention) or the i-th smallest ("ascending"). Every row sums to 1; as temperature -> 0,
    P tends to the sorting permutation matrix.

    Returns
    -------
    numpy.ndarray, shape (n, n) or (m, n, n), dtype of `values`. O(n^2) time and memory per row.

    >>> soft_permutation([1.0, 3.0, 2.0], 0.01).round(6)
    array([[0., 1., 0.],
           [0., 0., 1.],
           [1., 0., 0.]])
    """
    x, single = _rows(values)
    out = np.empty((x.shape[0], x.shape[1], x.shape[1]), x.dtype)
    _check_ratio(x, _temperature(temperature), 2.0 * x.shape[1] + 2.0)
    _k.neuralsort_perm(x, _temperature(temperature), -_sign(direction), out, _threads(n_threads))
    return _out(out, single)


def soft_permutation_vjp(values: ArrayLike, cotangent: ArrayLike, temperature: float = 1.0, *,
                         direction: str = "descending", n_threads: Optional[int] = None) -> np.ndarray:
    """Vector-Jacobian product of :func:`soft_permutation`: gradient of sum(cotangent * P).

    `cotangent` has shape (n, n) or (m, n, n); the result has the shape of `values`.
    O(n^2) per row.

    >>> soft_permutation_vjp([1.0, 2.0], np.eye(2)).round(4)
    array([ 0.3932, -0.3932])
    """
    x, single = _rows(values)
    n = x.shape[1]
    c = as_float_array(cotangent, "cotangent", (2, 3), dtypes=_FLOATS, default=np.float64)
    want = (n, n) if single else (x.shape[0], n, n)
    if c.shape != want:
        raise ShapeError(f"cotangent: expected shape {want} to match values, got shape {c.shape}")
    c = np.ascontiguousarray(c.reshape(x.shape[0], n, n), dtype=x.dtype)
    out = np.empty_like(x)
    _check_ratio(x, _temperature(temperature), 2.0 * x.shape[1] + 2.0)
    _k.neuralsort_perm_vjp(x, c, _temperature(temperature), -_sign(direction), out, _threads(n_threads))
    return _out(out, single)


# ---------------------------------------------------------------------------------------------
# softrank

def softrank_rank(values: ArrayLike, *, direction: str = "ascending", temperature: float = 1.0,
                  n_threads: Optional[int] = None) -> np.ndarray:
    """SoftRank expected ranks (Taylor et al., 2008).

    Each score is a Gaussian N(x_j, sigma^2) with sigma = `temperature`; the probability that
    document i beats j is pi_ij = Phi((x_i - x_j) / (sigma sqrt 2)) and the expected rank is
    1 + sum_{i != j} pi_ij (the mean of the rank distribution of :func:`softrank_ndcg`).
    The paper's natural direction is "descending" (largest -> rank ~1); "ascending" ranks
    -values. Parameters and return value as :func:`sigmoid_rank`; O(n^2) per row.

    >>> softrank_rank([0.0, 10.0, 5.0], temperature=0.1)
    array([1., 3., 2.])
    """
    x, single = _rows(values)
    out = np.empty_like(x)
    _k.softrank_rank(x, _temperature(temperature), -_sign(direction), out, _threads(n_threads))
    return _out(out, single)


def softrank_rank_vjp(values: ArrayLike, cotangent: ArrayLike, *, direction: str = "ascending",
                      temperature: float = 1.0, n_threads: Optional[int] = None) -> np.ndarray:
    """Vector-Jacobian product of :func:`softrank_rank`, O(n^2) per row.

    >>> np.round(softrank_rank_vjp([0.0, 0.0], [1.0, 0.0]), 4)
    array([ 0.2821, -0.2821])
    """
    x, single = _rows(values)
    c = _like(cotangent, x, single)
    out = np.empty_like(x)
    _k.softrank_vjp(x, c, _temperature(temperature), -_sign(direction), out, _threads(n_threads))
    return _out(out, single)


def _gains(labels: ArrayLike, x: np.ndarray, single: bool, k: Optional[int]) -> Any:
    """Gains (2^y - 1) / IDCG@k per row (rows without relevant documents: all zeros), and k."""
    y = as_float_array(labels, "labels", (1, 2), dtypes=(np.dtype(np.float64),), default=np.float64)
    want = x.shape[1:] if single else x.shape
    if y.shape != want:
        raise ShapeError(f"labels: expected shape {want} to match scores, got shape {y.shape}")
    if (y < 0).any():
        raise InvalidValueError("labels: expected non-negative relevance grades")
    n = x.shape[1]
    k = n if k is None else check_positive_int(k, "k")
    if k > n:
        raise InvalidValueError(f"k: expected 1 <= k <= n = {n}, got {k}")
    gain = np.exp2(y.reshape(x.shape)) - 1.0
    disc = 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))
    ideal = -np.sort(-gain, axis=1)[:, :k] @ disc
    with np.errstate(divide="ignore", invalid="ignore"):
        scaled = np.where(ideal[:, None] > 0, gain / ideal[:, None], 0.0)
    return np.ascontiguousarray(scaled), k


def _scalar_out(result: np.ndarray, single: bool) -> Any:
    return result[0] if single else result


def softrank_ndcg(scores: ArrayLike, labels: ArrayLike, sigma: float = 1.0, *, k: Optional[int] = None,
                  n_threads: Optional[int] = None) -> Union[float, np.ndarray]:
    """SoftNDCG (Taylor et al., 2008): expected NDCG@k under Gaussian score noise.

    Each document's rank distribution is built by the recursive algorithm (adding the other
    documents one at a time, each beating it with probability pi_ij = Phi((x_i - x_j) /
    (sigma sqrt 2))); SoftNDCG = sum_j g_j sum_r D(r) P(rank_j = r) / IDCG@k with gains
    g_j = 2^y_j - 1 and discounts D(r) = 1 / log2(r + 2) for 0-based ranks r < k (0 beyond).

    Parameters
    ----------
    scores : array-like, shape (n,) or (m, n), float32/float64
    labels : array-like, same shape, relevance grades >= 0
    sigma : float > 0, default 1.0
        Standard deviation of the score noise.
    k : int, optional
        Cut-off (default n).

    Returns
    -------
    float64 scalar for 1-D input, else a (m,) float64 array (0 for rows without relevant
    documents). O(n^2) per document with a non-zero gain: O(n^3) per row at worst.

    >>> round(float(softrank_ndcg([2.0, 1.0, 0.0], [2, 1, 0], sigma=1e-3)), 6)
    1.0
    """
    x, single = _rows(scores, "scores")
    gain, k = _gains(labels, x, single, k)
    out = np.empty(x.shape[0], np.float64)
    _k.softrank_ndcg(x, gain, k, _temperature(sigma, "sigma"), out, _threads(n_threads))
    return _scalar_out(out, single)


def _ndcg_vjp_args(scores: ArrayLike, labels: ArrayLike, k: Optional[int], cotangent: ArrayLike) -> Any:
    """``(x, single, gain, k, c)``: the checked arguments of an NDCG VJP (one cotangent per row)."""
    x, single = _rows(scores, "scores")
    gain, k = _gains(labels, x, single, k)
    c = np.ascontiguousarray(np.broadcast_to(np.asarray(cotangent, np.float64), (x.shape[0],)))
    if not np.isfinite(c).all():
        raise InvalidValueError("cotangent: contains NaN or infinity")
    return x, single, gain, k, c


def softrank_ndcg_vjp(scores: ArrayLike, labels: ArrayLike, cotangent: ArrayLike = 1.0,
                      sigma: float = 1.0, *, k: Optional[int] = None,
                      n_threads: Optional[int] = None) -> np.ndarray:
    """Gradient of cotangent * :func:`softrank_ndcg` with respect to the scores.

    `cotangent`: a scalar (1-D scores) or shape (m,) (one per row). The recursion is run
    backwards (its intermediate distributions kept, O(n^2) memory per thread); O(n^3) per row.

    >>> softrank_ndcg_vjp([0.0, 1.0], [1, 0]).round(4)
    array([ 0.0811, -0.0811])
    """
    x, single, gain, k, c = _ndcg_vjp_args(scores, labels, k, cotangent)
    out = np.empty_like(x)
    _k.softrank_ndcg_vjp(x, gain, k, _temperature(sigma, "sigma"), c, out, _threads(n_threads))
    return _out(out, single)


# ---------------------------------------------------------------------------------------------
# smoothi

def _smoothi_scores(x: np.ndarray, sign: float) -> Tuple[np.ndarray, np.ndarray]:
    """Positive scores s = sign * x - min(sign * x) + 1 per row, and each row's argmin."""
    y = x.astype(np.float64) * sign
    arg = np.argmin(y, axis=1)
    s = y - y[np.arange(len(y)), arg][:, None] + 1.0
    return np.ascontiguousarray(s), arg


def _smoothi_grad(gs: np.ndarray, arg: np.ndarray, sign: float, dtype: Any) -> np.ndarray:
    """Chain rule through the shift: dL/dx = sign * (g_s - e_argmin * sum(g_s))."""
    g = gs.copy()
    g[np.arange(len(g)), arg] -= gs.sum(axis=1)
    return (sign * g).astype(dtype, copy=False)


def _delta(delta: Any) -> float:
    try:
        d = float(delta)
    except (TypeError, ValueError):
        raise InvalidValueError(f"delta: expected a number in [0, 1), got {delta!r}") from None
    if not (0.0 <= d < 1.0):
        raise InvalidValueError(f"delta: expected a number in [0, 1), got {delta!r}")
    return d


def smoothi_rank(values: ArrayLike, *, direction: str = "ascending", temperature: float = 1.0,
                 delta: float = 0.1, n_threads: Optional[int] = None) -> np.ndarray:
    """SmoothI soft ranks (Thonet et al., 2022): r_j = sum_{r=1..n} r I^r_j.

    The smooth rank indicators are I^1 = softmax(alpha s) and I^r = softmax(alpha s *
    prod_{l<r} (1 - I^l - delta)) with alpha = 1 / temperature. The recursion assumes positive
    scores (the paper's setting), so each row is shifted: s = v - min(v) + 1 with v = values
    for "descending" (largest -> rank ~1, the paper's order) and v = -values for "ascending";
    the gradient includes the shift. At a finite temperature the indicators of deep ranks
    blur (the factor (1 - delta)^r shrinks the scores), so ranks are biased towards the middle
    for long lists. O(n^2) time per row, O(n) memory (the VJP keeps the n x n indicators per
    thread).

    >>> smoothi_rank([0.0, 10.0, 5.0], temperature=0.01)
    array([1., 3., 2.])
    """
    x, single = _rows(values)
    sign = -_sign(direction)
    _check_smoothi(x, _temperature(temperature))
    s, _ = _smoothi_scores(x, sign)
    n = x.shape[1]
    out = np.empty_like(s)
    _k.smoothi(s, 1.0 / _temperature(temperature), _delta(delta), np.arange(1.0, n + 1.0), out,
               _threads(n_threads))
    return _out(out.astype(x.dtype, copy=False), single)


def smoothi_rank_vjp(values: ArrayLike, cotangent: ArrayLike, *, direction: str = "ascending",
                     temperature: float = 1.0, delta: float = 0.1,
                     n_threads: Optional[int] = None) -> np.ndarray:
    """Vector-Jacobian product of :func:`smoothi_rank` (the recursion run backwards), O(n^2).

    >>> smoothi_rank_vjp([0.0, 1.0], [1.0, 0.0]).round(4)
    array([ 0.0094, -0.0094])
    """
    x, single = _rows(values)
    c = _like(cotangent, x, single).astype(np.float64)
    sign = -_sign(direction)
    _check_smoothi(x, _temperature(temperature))
    s, arg = _smoothi_scores(x, sign)
    n = x.shape[1]
    gs = np.empty_like(s)
    _k.smoothi_vjp(s, c, 1.0 / _temperature(temperature), _delta(delta), np.arange(1.0, n + 1.0), gs,
                   _threads(n_threads))
    return _out(_smoothi_grad(gs, arg, sign, x.dtype), single)


def smoothi_ndcg(scores: ArrayLike, labels: ArrayLike, *, k: Optional[int] = None,
                 temperature: float = 1.0, delta: float = 0.1, n_threads: Optional[int] = None) -> Union[float, np.ndarray]:
    """SmoothI NDCG@k (Thonet et al., 2022): sum_{r<=k} sum_j I^r_j g_j / log2(1 + r) / IDCG@k.

    Gains g_j = 2^y_j - 1; scores are shifted to be positive as in :func:`smoothi_rank`
    (largest score = best). Only the first k indicators are computed: O(k n) per row.

    Returns a float64 scalar for 1-D input, else a (m,) float64 array (0 for rows without
    relevant documents).

    >>> round(float(smoothi_ndcg([2.0, 1.0, 0.0], [2, 1, 0], temperature=0.01)), 6)
    1.0
    """
    x, single = _rows(scores, "scores")
    gain, k = _gains(labels, x, single, k)
    _check_smoothi(x, _temperature(temperature))
    s, _ = _smoothi_scores(x, 1.0)
    y = np.empty_like(s)
    w = 1.0 / np.log2(np.arange(2.0, k + 2.0))
    _k.smoothi(s, 1.0 / _temperature(temperature), _delta(delta), w, y, _threads(n_threads))
    return _scalar_out(np.einsum("ij,ij->i", y, gain), single)


def smoothi_ndcg_vjp(scores: ArrayLike, labels: ArrayLike, cotangent: ArrayLike = 1.0, *,
                     k: Optional[int] = None, temperature: float = 1.0, delta: float = 0.1,
                     n_threads: Optional[int] = None) -> np.ndarray:
    """Gradient of cotangent * :func:`smoothi_ndcg` with respect to the scores, O(k n) per row.

    >>> smoothi_ndcg_vjp([0.0, 1.0], [1, 0]).round(4)
    array([ 0.1316, -0.1316])
    """
    x, single, gain, k, c = _ndcg_vjp_args(scores, labels, k, cotangent)
    _check_smoothi(x, _temperature(temperature))
    s, arg = _smoothi_scores(x, 1.0)
    gs = np.empty_like(s)
    w = 1.0 / np.log2(np.arange(2.0, k + 2.0))
    _k.smoothi_vjp(s, np.ascontiguousarray(gain * c[:, None]), 1.0 / _temperature(temperature),
                   _delta(delta), w, gs, _threads(n_threads))
    return _out(_smoothi_grad(gs, arg, 1.0, x.dtype), single)


# ---------------------------------------------------------------------------------------------
# top-k

def _topk_args(values, k, method, temperature):
    x, single = _rows(values)
    check_choice("method", method, TOPK_METHODS)
    n = x.shape[1]
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)) or not 1 <= k <= n:
        raise InvalidValueError(f"k: expected an integer with 1 <= k <= n = {n}, got {k!r}")
    return x, single, int(k), _temperature(temperature)


def _perturbed(x: np.ndarray, seed: Any) -> np.ndarray:
    """x + Gumbel(0, 1) noise from `seed` (float64); the same seed gives the same noise."""
    noise = np.random.default_rng(seed).gumbel(size=x.shape)
    return np.ascontiguousarray(x.astype(np.float64) + noise)


def _hard(z: np.ndarray, k: int) -> np.ndarray:
    """0/1 mask of the k largest entries per row (ties: the smaller index)."""
    idx = np.argsort(-z, axis=1, kind="stable")[:, :k]
    mask = np.zeros_like(z)
    np.put_along_axis(mask, idx, 1.0, axis=1)
    return mask


def soft_topk(values: ArrayLike, k: int, *, method: str = "gumbel", temperature: float = 1.0,
              hard: bool = False, seed: Any = None, n_threads: Optional[int] = None) -> np.ndarray:
    """A differentiable top-k mask: non-negative entries, each row summing to k.

    Methods
    -------
    "gumbel"
        Relaxed subset sampling: Gumbel(0, 1) noise g (from `seed`) is added, then k
        successive softmaxes: a^1 = x + g, p^t = softmax(a^t / temperature),
        a^{t+1} = a^t + log(1 - p^t), mask = sum_t p^t. A random relaxed sample of the top-k
        set under the Plackett-Luce model; deterministic for a given `seed`. An entry can
        exceed 1 at a large temperature (it tends to a 0/1 mask as temperature -> 0).
        O(k n) per row.
    "projection"
        The Euclidean projection of x / temperature onto {m in [0, 1]^n, sum m = k} (the
        permutahedron of (1, ..., 1, 0, ..., 0)); deterministic, sparse (exact 0s and 1s away
        from the boundary). O(n log(1/eps)) per row.

    Parameters
    ----------
    values : array-like, shape (n,) or (m, n), float32/float64
    k : int, 1 <= k <= n
    temperature : float > 0, default 1.0
    hard : bool, default False
        Return the exact 0/1 top-k mask of the (perturbed) values; :func:`soft_topk_vjp`
        then gives the gradient of the soft mask (straight-through estimator).
    seed : None, int or numpy SeedSequence/Generator seed, optional
        Noise seed for "gumbel" (ignored by "projection"); pass the same seed to the VJP.

    Returns
    -------
    numpy.ndarray, shape and dtype of `values`.

    >>> soft_topk([0.1, 3.0, 2.0, -1.0], 2, method="projection", temperature=0.1)
    array([0., 1., 1., 0.])
    """
    x, single, k, tau = _topk_args(values, k, method, temperature)
    nt = _threads(n_threads)
    if method == "gumbel":
        z = _perturbed(x, seed)
        if hard:
            out = _hard(z, k)
        else:
            out = np.empty_like(z)
            _k.gumbel_topk(z, k, tau, out, nt)
    else:
        z = np.ascontiguousarray(x.astype(np.float64) / tau)
        if hard:
            out = _hard(z, k)
        else:
            out = np.empty_like(z)
            _k.capped_topk(z, float(k), out, nt)
    return _out(out.astype(x.dtype, copy=False), single)


def soft_topk_vjp(values: ArrayLike, cotangent: ArrayLike, k: int, *, method: str = "gumbel",
                  temperature: float = 1.0, seed: Any = None,
                  n_threads: Optional[int] = None) -> np.ndarray:
    """Vector-Jacobian product of the soft mask of :func:`soft_topk` (also used for hard=True).

    For "gumbel" `seed` must be the one given to the forward pass (a seed of None cannot be
    reproduced and raises InvalidValueError). O(k n) per row ("gumbel"), O(n) ("projection").

    >>> soft_topk_vjp([0.0, 0.5, 1.0], [0.0, 1.0, 0.0], 1, method="projection")
    array([ 0. ,  0.5, -0.5])
    """
    x, single, k, tau = _topk_args(values, k, method, temperature)
    c = np.ascontiguousarray(_like(cotangent, x, single), dtype=np.float64)
    nt = _threads(n_threads)
    out = np.empty(x.shape, np.float64)
    if method == "gumbel":
        if seed is None:
            raise InvalidValueError("seed: the Gumbel VJP needs the seed of the forward pass, got None")
        _k.gumbel_topk_vjp(_perturbed(x, seed), c, k, tau, out, nt)
    else:
        z = np.ascontiguousarray(x.astype(np.float64) / tau)
        mask = np.empty_like(z)
        _k.capped_topk(z, float(k), mask, nt)
        _k.capped_topk_vjp(mask, c, out, nt)
        out /= tau
    return _out(out.astype(x.dtype, copy=False), single)


# ---------------------------------------------------------------------------------------------
# registry

Forward = Callable[..., np.ndarray]
RELAXATIONS: Dict[str, Tuple[Forward, Forward]] = {
    "sigmoid": (sigmoid_rank, sigmoid_rank_vjp),
    "neuralsort": (neuralsort_rank, neuralsort_rank_vjp),
    "softrank": (softrank_rank, softrank_rank_vjp),
    "smoothi": (smoothi_rank, smoothi_rank_vjp),
}
