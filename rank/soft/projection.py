"""Differentiable sorting and ranking by projection onto the permutahedron.

Blondel, Teboul, Berthet and Djolonga (2020), "Fast Differentiable Sorting and Ranking".
The soft ranks of ``x`` are the projection of ``x / strength`` onto the permutahedron of
``(n, n-1, ..., 1)`` (the convex hull of all rank vectors); the soft sort is the projection of
``(n, ..., 1) / strength`` onto the permutahedron of ``x``. Both reduce to an isotonic
regression solved exactly by pool-adjacent-violators in a compiled kernel: O(n log n) per row
for the forward pass (one sort), O(n) for a vector-Jacobian product.

- ``regularization="l2"`` (quadratic): piecewise linear in ``x``; the ranks keep their sum
  ``n (n + 1) / 2`` and their mean ``(n + 1) / 2``.
- ``regularization="kl"`` (entropic): smooth within blocks, ranks are positive.

As ``regularization_strength`` tends to 0 the outputs become the hard ranks (ties get the
average of their ranks) and the sorted values; as it grows they flatten towards the mean.

>>> import numpy as np
>>> soft_rank([3.0, 1.0, 2.0], regularization_strength=0.1)
array([3., 1., 2.])
>>> soft_rank([3.0, 1.0, 2.0], regularization_strength=2.0)
array([2.5, 1.5, 2. ])
"""
from __future__ import annotations

import math
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np
import numpy.typing as npt

from rank._validate import as_float_array, resolve_threads, check_choice, check_real
from rank.errors import InvalidValueError, NonFiniteError, ShapeError
from rank_kernels import isotonic as _kernel

__all__ = [
    "soft_rank",
    "soft_sort",
    "soft_rank_vjp",
    "soft_sort_vjp",
    "soft_rank_with_vjp",
    "soft_sort_with_vjp",
    "soft_topk_mask",
    "soft_topk_mask_with_vjp",
    "jacobian",
    "spearman_loss",
    "spearman_loss_and_grad",
    "register_relaxation",
    "available_methods",
    "DIRECTIONS",
    "REGULARIZATIONS",
]

DIRECTIONS = ("ascending", "descending")
REGULARIZATIONS = ("l2", "kl")
KINDS = ("rank", "sort")
REDUCTIONS = ("mean", "sum", "none")

#: Soft-rank methods other than "projection", by name. Each is called as
#: ``fn(values, direction=..., temperature=..., n_threads=..., check_finite=..., **method_params)``
#: and returns an array shaped like `values`. Filled by :func:`register_relaxation`.
_RELAXATIONS: Dict[str, Callable[..., np.ndarray]] = {}

_MODE_RANK, _MODE_SORT = 0, 1
_MAX_N = 2**31 - 1

VjpFn = Callable[[npt.ArrayLike], np.ndarray]


def available_methods() -> Tuple[str, ...]:
    """The valid ``method=`` names of :func:`soft_rank`: "projection" and every registered relaxation."""
    return ("projection",) + tuple(sorted(_RELAXATIONS))


def register_relaxation(name: str, fn: Callable[..., np.ndarray]) -> None:
    """Make ``soft_rank(values, method=name, ...)`` call ``fn`` (see `_RELAXATIONS` for the call)."""
    if not isinstance(name, str) or not name or name == "projection":
        raise InvalidValueError(f"name: expected a new method name, got {name!r}")
    if not callable(fn):
        raise InvalidValueError(f"fn: expected a callable, got {type(fn).__name__}")
    _RELAXATIONS[name] = fn


# --- validation ----------------------------------------------------------------------------------

def _strength(value: Any) -> float:
    return check_real("regularization_strength", value, lo=0.0, inclusive="neither")


def _values(values: npt.ArrayLike, name: str, check_finite: bool) -> Tuple[np.ndarray, bool, float]:
    """`values` as a C-contiguous float32/float64 (m, n) array, whether it was 1-D, and max |value|.

    NaN and infinity are always rejected (NonFiniteError when `check_finite`, else
    InvalidValueError): one max and one min reduction find them, without temporaries."""
    x = as_float_array(values, name, (1, 2), dtypes=(np.dtype(np.float32), np.dtype(np.float64)),
                       default=np.float64, check_finite=False)
    if x.shape[-1] > _MAX_N:
        raise ShapeError(f"{name}: rows longer than {_MAX_N} are not supported, got shape {x.shape}")
    hi, lo = float(x.max()), float(x.min())
    if not (math.isfinite(hi) and math.isfinite(lo)):
        if check_finite:
            raise NonFiniteError(f"{name}: contains NaN or infinity (pass check_finite=False to skip this check)")
        raise InvalidValueError(f"{name}: contains NaN or infinity; soft ranks and sorts need finite values")
    single = x.ndim == 1
    return (x.reshape(1, -1) if single else x), single, max(abs(hi), abs(lo))


def _check_scale(amax: float, a: float) -> None:
    """The scaled values a * x must stay finite (a tiny strength can overflow them)."""
    big = amax * abs(a)
    if not math.isfinite(big) or big > 1e300:
        raise InvalidValueError(
            f"regularization_strength: values / strength overflow float64 (max |value| "
            f"{amax:.3g}, scale {abs(a):.3g}); use a larger strength")


# --- the projection and its VJP ------------------------------------------------------------------

class _Projection:
    """One forward pass with the state its VJPs need (permutation and blocks of every row)."""

    def __init__(self, x: np.ndarray, mode: int, kl: bool, a: float, table: np.ndarray, etab: np.ndarray,
                 n_threads: int, single: bool, save: bool = True) -> None:
        self.x, self.mode, self.kl, self.a, self.single = x, mode, kl, a, single
        self.n_threads, self.saved = n_threads, save
        if save:  # one allocation for the output and the permutation (fewer fresh pages to fault in)
            size = x.size * x.itemsize
            buf = np.empty(size + 4 * x.size, np.uint8)
            self.out = buf[:size].view(x.dtype).reshape(x.shape)
            self.perm = buf[size:].view(np.int32).reshape(x.shape)  # sign bit: last of a block
        else:
            self.out = np.empty_like(x)
            self.perm = np.empty((1, 1), np.int32)
        _kernel.project(x, self.out, mode, kl, a, table, etab, self.perm, save, n_threads)

    @classmethod
    def restore(cls, x: np.ndarray, out: np.ndarray, perm: np.ndarray, like: "_Projection") -> "_Projection":
        """A projection of (m, n) arrays rebuilt from its saved state, with the settings of `like`."""
        self = cls.__new__(cls)
        self.x, self.out, self.perm = x, out, perm
        self.mode, self.kl, self.a, self.n_threads, self.single = like.mode, like.kl, like.a, like.n_threads, False
        self.saved = True
        return self

    def result(self) -> np.ndarray:
        return self.out[0] if self.single else self.out

    def vjp(self, cotangent: npt.ArrayLike) -> np.ndarray:
        assert self.saved, "forward pass ran without saving its state"
        g = np.asarray(cotangent)
        shape = self.out.shape[1:] if self.single else self.out.shape
        if g.shape != shape:
            raise ShapeError(f"cotangent: expected shape {shape} (the shape of the output), got {g.shape}")
        if g.dtype.kind not in "biuf":
            raise ShapeError(f"cotangent: expected a numeric array, got dtype {g.dtype}")
        g = np.ascontiguousarray(g.reshape(self.out.shape), dtype=self.x.dtype)
        grad = np.empty_like(self.x)
        y = self.out if self.mode == _MODE_RANK else self.x
        _kernel.vjp(g, y, grad, self.mode, self.kl, self.a, self.perm, self.n_threads)
        return grad[0] if self.single else grad

    def blocks(self, row: int) -> Tuple[np.ndarray, np.ndarray]:
        """The sorting permutation of `row` and the (exclusive) end of each of its blocks."""
        flagged = self.perm[row]
        return flagged & 0x7FFFFFFF, np.flatnonzero(flagged < 0) + 1


def _projection(mode: int, values: npt.ArrayLike, direction: str, regularization_strength: Any,
                regularization: str, n_threads: Optional[int], check_finite: bool, save: bool = True) -> _Projection:
    """The rank (`mode` _MODE_RANK) or sort projection of `values`, arguments checked."""
    direction = check_choice("direction", direction, DIRECTIONS)
    kl = check_choice("regularization", regularization, REGULARIZATIONS) == "kl"
    strength = _strength(regularization_strength)
    x, single, amax = _values(values, "values", check_finite)
    n = x.shape[1]
    if mode == _MODE_RANK:
        a = (1.0 if direction == "ascending" else -1.0) / strength
        _check_scale(amax, a)
        etab = np.arange(n, 0, -1, dtype=np.float64)  # the ranks n..1 (exp of the kl table)
        table = np.log(etab) if kl else etab
    else:
        if not (amax * (n + 1) <= 1e307):  # block sums of the pooled values must stay finite
            raise InvalidValueError(f"values: magnitudes up to {amax:.3g} overflow the float64 block sums of "
                                    f"the sort projection over rows of {n}; rescale the values")
        table = np.arange(n, 0, -1, dtype=np.float64) / strength
        if not np.isfinite(table[0]):
            raise InvalidValueError(f"regularization_strength: n / strength overflows float64 (strength {strength:.3g})")
        a = 1.0 if direction == "descending" else -1.0
        etab = np.exp(-np.arange(n, dtype=np.float64) / strength) if kl else table  # exp(s[i + d] - s[i])
    return _Projection(x, mode, kl, a, table, etab, resolve_threads(n_threads), single, save)


def _rank_projection(values: npt.ArrayLike, direction: str, regularization_strength: Any, regularization: str,
                     n_threads: Optional[int], check_finite: bool, save: bool = True) -> _Projection:
    return _projection(_MODE_RANK, values, direction, regularization_strength, regularization, n_threads,
                       check_finite, save)


def _sort_projection(values: npt.ArrayLike, direction: str, regularization_strength: Any, regularization: str,
                     n_threads: Optional[int], check_finite: bool, save: bool = True) -> _Projection:
    return _projection(_MODE_SORT, values, direction, regularization_strength, regularization, n_threads,
                       check_finite, save)


_PARAMS_DOC = """
    direction : {"ascending", "descending"}, default "ascending"
        "ascending": rank 1 (or the first sorted value) is the smallest value; "descending":
        the largest.
    regularization_strength : float > 0, default 1.0
        epsilon in the paper. Smaller is closer to the hard operation (and less smooth); the
        values are effectively divided by it, so choose it relative to their spread.
    regularization : {"l2", "kl"}, default "l2"
        Quadratic or entropic regularization.
    n_threads : int, optional
        Threads over rows (default: every core available; 1 = serial). The GIL is released.
    check_finite : bool, default True
        Raise NonFiniteError for NaN or infinity (they are rejected either way)."""


def soft_rank(values: npt.ArrayLike, *, method: str = "projection", direction: str = "ascending",
              regularization_strength: float = 1.0, regularization: str = "l2", temperature: float = 1.0,
              n_threads: Optional[int] = None, check_finite: bool = True, **method_params: Any) -> np.ndarray:
    """Soft ranks of a vector, or of every row of a matrix.

    Parameters
    ----------
    values : array-like, shape (n,) or (m, n), float32 or float64
        Scores; a 2-D array is ranked row by row. Other numeric dtypes are computed as float64.
    method : str, default "projection"
        "projection" (this module: Blondel et al. 2020) or a registered relaxation, which
        receives `direction`, `temperature`, `n_threads`, `check_finite` and `method_params`.
    temperature : float, default 1.0
        For the relaxation methods only; "projection" uses `regularization_strength`.%PARAMS%

    Returns
    -------
    numpy.ndarray, same shape and dtype as `values` (float64 for non-float input)
        Soft ranks in [1, n] ("l2" keeps the sum n (n + 1) / 2); computed in float64.

    Complexity: O(n log n) per row (one sort, then pool-adjacent-violators in O(n)).

    >>> soft_rank([[0.0, 5.0, 1.0], [2.0, 2.0, 9.0]], regularization_strength=0.01)
    array([[1. , 3. , 2. ],
           [1.5, 1.5, 3. ]])
    >>> soft_rank([0.0, 5.0, 1.0], direction="descending", regularization_strength=0.01)
    array([3., 1., 2.])
    """
    if method != "projection":
        check_choice("method", method, available_methods())
        if regularization != "l2" or regularization_strength != 1.0:
            raise InvalidValueError(f"regularization and regularization_strength apply to method='projection' "
                                    f"only, not {method!r}; use temperature")
        return _RELAXATIONS[method](values, direction=direction, temperature=temperature, n_threads=n_threads,
                                    check_finite=check_finite, **method_params)
    if method_params:
        raise InvalidValueError(f"method='projection' takes no parameters {sorted(method_params)}")
    if temperature != 1.0:
        raise InvalidValueError("temperature applies to the relaxation methods; method='projection' uses "
                                "regularization_strength")
    return _rank_projection(values, direction, regularization_strength, regularization, n_threads,
                            check_finite, save=False).result()


def soft_sort(values: npt.ArrayLike, *, direction: str = "ascending", regularization_strength: float = 1.0,
              regularization: str = "l2", n_threads: Optional[int] = None,
              check_finite: bool = True) -> np.ndarray:
    """Soft sort of a vector, or of every row of a matrix.

    Parameters
    ----------
    values : array-like, shape (n,) or (m, n), float32 or float64
        A 2-D array is sorted row by row. Other numeric dtypes are computed as float64.%PARAMS%

    Returns
    -------
    numpy.ndarray, same shape and dtype as `values` (float64 for non-float input)
        Soft-sorted values, monotone in `direction`; "l2" keeps the sum of each row. With
        "kl" the output is the log of a point of the permutahedron of exp(values).

    Complexity: O(n log n) per row (one sort, then pool-adjacent-violators in O(n)).

    >>> soft_sort([2.0, 0.0, 1.0], regularization_strength=0.1)
    array([0., 1., 2.])
    >>> soft_sort([4.0, 0.0, 2.0], direction="descending", regularization_strength=1.0)
    array([3., 2., 1.])
    """
    return _sort_projection(values, direction, regularization_strength, regularization, n_threads,
                            check_finite, save=False).result()


soft_rank.__doc__ = (soft_rank.__doc__ or "").replace("%PARAMS%", _PARAMS_DOC)
soft_sort.__doc__ = (soft_sort.__doc__ or "").replace("%PARAMS%", _PARAMS_DOC)


def soft_rank_with_vjp(values: npt.ArrayLike, *, direction: str = "ascending",
                       regularization_strength: float = 1.0, regularization: str = "l2",
                       n_threads: Optional[int] = None, check_finite: bool = True) -> Tuple[np.ndarray, VjpFn]:
    """Soft ranks and a function computing vector-Jacobian products at `values`.

    Same parameters as :func:`soft_rank`. ``vjp(cotangent)`` takes an array shaped like the
    ranks and returns ``cotangent @ d ranks / d values`` (row by row) in O(n) per row, from the
    permutation and blocks saved by the forward pass; call it any number of times.

    >>> r, vjp = soft_rank_with_vjp([0.0, 1.0, 4.0], regularization_strength=2.0)
    >>> r
    array([1.25, 1.75, 3.  ])
    >>> vjp([1.0, 0.0, 0.0])
    array([ 0.25, -0.25,  0.  ])
    """
    p = _rank_projection(values, direction, regularization_strength, regularization, n_threads, check_finite)
    return p.result(), p.vjp


def soft_sort_with_vjp(values: npt.ArrayLike, *, direction: str = "ascending",
                       regularization_strength: float = 1.0, regularization: str = "l2",
                       n_threads: Optional[int] = None, check_finite: bool = True) -> Tuple[np.ndarray, VjpFn]:
    """Soft sort and a function computing vector-Jacobian products at `values` (O(n) per row).

    Same parameters as :func:`soft_sort`; see :func:`soft_rank_with_vjp`.

    >>> s, vjp = soft_sort_with_vjp([3.0, 0.0], regularization_strength=1.0)
    >>> s, vjp([1.0, 0.0])
    (array([1., 2.]), array([0.5, 0.5]))
    """
    p = _sort_projection(values, direction, regularization_strength, regularization, n_threads, check_finite)
    return p.result(), p.vjp


def soft_rank_vjp(values: npt.ArrayLike, cotangent: npt.ArrayLike, *, direction: str = "ascending",
                  regularization_strength: float = 1.0, regularization: str = "l2",
                  n_threads: Optional[int] = None, check_finite: bool = True) -> np.ndarray:
    """Vector-Jacobian product of :func:`soft_rank`: ``cotangent @ d soft_rank(values) / d values``.

    Parameters as :func:`soft_rank`; `cotangent` has the shape of `values`. Returns an array of
    that shape and the dtype of the ranks. Complexity: one forward pass, then O(n) per row
    (no n x n Jacobian). To reuse one forward pass, see :func:`soft_rank_with_vjp`.

    >>> soft_rank_vjp([0.0, 1.0, 4.0], [1.0, 0.0, 0.0], regularization_strength=2.0)
    array([ 0.25, -0.25,  0.  ])
    """
    return _rank_projection(values, direction, regularization_strength, regularization, n_threads,
                            check_finite).vjp(cotangent)


def soft_sort_vjp(values: npt.ArrayLike, cotangent: npt.ArrayLike, *, direction: str = "ascending",
                  regularization_strength: float = 1.0, regularization: str = "l2",
                  n_threads: Optional[int] = None, check_finite: bool = True) -> np.ndarray:
    """Vector-Jacobian product of :func:`soft_sort`: ``cotangent @ d soft_sort(values) / d values``.

    Parameters as :func:`soft_sort`; `cotangent` has the shape of `values`. Complexity: one
    forward pass, then O(n) per row. To reuse one forward pass, see :func:`soft_sort_with_vjp`.

    >>> soft_sort_vjp([2.0, 0.0], [0.0, 1.0], regularization_strength=0.1)
    array([1., 0.])
    """
    return _sort_projection(values, direction, regularization_strength, regularization, n_threads,
                            check_finite).vjp(cotangent)


def _topk_projection(values: npt.ArrayLike, k: Any, regularization_strength: Any, n_threads: Optional[int],
                     check_finite: bool, save: bool = True) -> _Projection:
    strength = _strength(regularization_strength)
    x, single, amax = _values(values, "values", check_finite)
    n = x.shape[1]
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)) or not 1 <= k <= n:
        raise InvalidValueError(f"k: expected an integer in [1, {n}], got {k!r}")
    a = 1.0 / strength
    _check_scale(amax, a)
    table = np.zeros(n)
    table[:int(k)] = 1.0
    return _Projection(x, _MODE_RANK, False, a, table, table, resolve_threads(n_threads), single, save)


def soft_topk_mask(values: npt.ArrayLike, k: int, *, regularization_strength: float = 1.0,
                   n_threads: Optional[int] = None, check_finite: bool = True) -> np.ndarray:
    """Differentiable top-k membership: the projection of ``values / strength`` onto the
    permutahedron of ``(1, ..., 1, 0, ..., 0)`` (k ones), quadratic regularization.

    values : array-like, shape (n,) or (m, n); k : int in [1, n]. Returns an array of the same
    shape and dtype, entries in [0, 1] summing to k per row; as the strength tends to 0 it is
    the 0/1 mask of the k largest values (ties share). O(n log n) per row; VJP in O(n) through
    :func:`soft_topk_mask_with_vjp`.

    >>> soft_topk_mask([0.0, 3.0, 1.0, 2.0], 2, regularization_strength=0.1)
    array([0., 1., 0., 1.])
    >>> soft_topk_mask([0.0, 3.0, 1.0, 2.0], 2, regularization_strength=2.0)
    array([0.  , 1.  , 0.25, 0.75])
    """
    return _topk_projection(values, k, regularization_strength, n_threads, check_finite, save=False).result()


def soft_topk_mask_with_vjp(values: npt.ArrayLike, k: int, *, regularization_strength: float = 1.0,
                            n_threads: Optional[int] = None,
                            check_finite: bool = True) -> Tuple[np.ndarray, VjpFn]:
    """:func:`soft_topk_mask` and a function computing its vector-Jacobian products (O(n) per row).

    >>> m, vjp = soft_topk_mask_with_vjp([0.0, 4.0, 1.0], 1, regularization_strength=4.0)
    >>> m, vjp([0.0, 1.0, 0.0])
    (array([0.   , 0.875, 0.125]), array([ 0.   ,  0.125, -0.125]))
    """
    p = _topk_projection(values, k, regularization_strength, n_threads, check_finite)
    return p.result(), p.vjp


def jacobian(values: npt.ArrayLike, *, kind: str = "rank", direction: str = "ascending",
             regularization_strength: float = 1.0, regularization: str = "l2",
             check_finite: bool = True) -> np.ndarray:
    """The explicit Jacobian of :func:`soft_rank` (``kind="rank"``) or :func:`soft_sort` (``"sort"``).

    For small n and tests: O(n^2) memory per row. ``J[..., i, j] = d out[..., i] / d values[..., j]``.
    Built from the block structure of the forward pass (block-diagonal up to the sorting
    permutation: averaging for "l2", softmax weights for "kl").

    values : array-like, shape (n,) or (m, n). Returns float64, shape (n, n) or (m, n, n).

    >>> jacobian([0.0, 4.0, 1.0], regularization_strength=2.0)
    array([[ 0.25,  0.  , -0.25],
           [ 0.  ,  0.  ,  0.  ],
           [-0.25,  0.  ,  0.25]])
    """
    kind = check_choice("kind", kind, KINDS)
    build = _rank_projection if kind == "rank" else _sort_projection
    p = build(values, direction, regularization_strength, regularization, 1, check_finite)
    m, n = p.x.shape
    jac = np.zeros((m, n, n))
    for r in range(m):
        perm, ends = p.blocks(r)
        start = 0
        for end in ends:
            idx = perm[start:end]
            if kind == "rank":
                if p.kl:
                    o = p.out[r, idx].astype(np.float64)
                    block = -np.outer(o, o) / o.sum() + np.diag(o)
                else:
                    block = np.eye(len(idx)) - 1.0 / len(idx)
                jac[r][np.ix_(idx, idx)] = p.a * block
            else:
                if p.kl:
                    w = p.a * p.x[r, idx].astype(np.float64)
                    q = np.exp(w - w.max())
                    q /= q.sum()
                    jac[r, start:end][:, idx] = q[None, :]
                else:
                    jac[r, start:end][:, idx] = 1.0 / len(idx)
            start = end
    return jac[0] if p.single else jac


# --- Spearman correlation loss -------------------------------------------------------------------

def _hard_ranks(t: np.ndarray) -> np.ndarray:
    """Ascending ranks 1..n of every row, ties sharing the average of their ranks."""
    m, n = t.shape
    order = np.argsort(t, axis=1, kind="stable")
    st = np.take_along_axis(t, order, axis=1)
    idx = np.broadcast_to(np.arange(n), (m, n))
    first = np.ones((m, n), bool)
    first[:, 1:] = st[:, 1:] != st[:, :-1]
    last = np.ones((m, n), bool)
    last[:, :-1] = first[:, 1:]
    start = np.maximum.accumulate(np.where(first, idx, 0), axis=1)
    end = np.minimum.accumulate(np.where(last, idx, n - 1)[:, ::-1], axis=1)[:, ::-1]
    out = np.empty((m, n))
    np.put_along_axis(out, order, (start + end) / 2.0 + 1.0, axis=1)
    return out


def _spearman(pred: npt.ArrayLike, target: npt.ArrayLike, regularization_strength: Any, regularization: str,
              reduction: str, n_threads: Optional[int], check_finite: bool, grad: bool) -> Any:
    reduction = check_choice("reduction", reduction, REDUCTIONS)
    p = _rank_projection(pred, "ascending", regularization_strength, regularization, n_threads, check_finite,
                         save=grad)
    t, _, _ = _values(target, "target", check_finite)
    if t.shape != p.x.shape:
        raise ShapeError(f"target: expected the shape of pred {p.result().shape}, got {np.shape(target)}")
    m, n = t.shape
    tc = _hard_ranks(t.astype(np.float64))
    tc -= tc.mean(axis=1, keepdims=True)
    tn = np.linalg.norm(tc, axis=1)
    if (tn == 0).any():
        row = int(np.flatnonzero(tn == 0)[0])
        raise InvalidValueError(f"target[{row}]: all values are equal (or n = 1); the Spearman correlation "
                                "is undefined")
    r = p.out.astype(np.float64)
    rc = r - r.mean(axis=1, keepdims=True)
    rn = np.linalg.norm(rc, axis=1)
    ok = rn > 0
    safe = np.where(ok, rn, 1.0)
    corr = np.where(ok, np.einsum("ij,ij->i", rc, tc) / (safe * tn), 0.0)
    loss = 1.0 - corr
    value: Any
    if reduction == "mean":
        value, scale = float(loss.mean()), 1.0 / m
    elif reduction == "sum":
        value, scale = float(loss.sum()), 1.0
    else:
        value, scale = (loss[0] if p.single else loss).astype(p.x.dtype), 1.0
    if not grad:
        return value
    # d loss / d r = -(tc / |tc| - corr * rc / |rc|) / |rc|   (zero where r is constant)
    g = -(tc / tn[:, None] - corr[:, None] * rc / safe[:, None]) / safe[:, None]
    g[~ok] = 0.0
    g *= scale
    return value, p.vjp(g[0] if p.single else g)


def centered_target_ranks(target: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Hard ranks of `target` (float64, shape (..., n), ties averaged) centred per row, and each
    row's norm: the fixed side of every soft Spearman loss (NumPy, torch and JAX adapters).

    InvalidValueError when a row has all values equal (or n = 1): the correlation is undefined.
    O(n log n) per row.
    """
    t_np = np.asarray(target, np.float64)
    n = t_np.shape[-1]
    t = _hard_ranks(t_np.reshape(-1, n)).reshape(t_np.shape)
    t = t - t.mean(axis=-1, keepdims=True)
    tn = np.linalg.norm(t, axis=-1)
    if (tn == 0).any():
        raise InvalidValueError("target: some row has all values equal (or n = 1); the Spearman "
                                "correlation is undefined")
    return t, tn


def reduce_loss(loss: Any, reduction: str) -> Any:
    """Per-row losses reduced as ``reduction`` says ("mean", "sum" or "none"); any array type."""
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def spearman_loss(pred: npt.ArrayLike, target: npt.ArrayLike, *, regularization_strength: float = 1.0,
                  regularization: str = "l2", reduction: str = "mean", n_threads: Optional[int] = None,
                  check_finite: bool = True) -> Any:
    """1 - soft Spearman correlation between predictions and targets, row by row.

    The Pearson correlation of ``soft_rank(pred)`` (ascending) with the hard ranks of `target`
    (ties averaged). A row whose soft ranks are all equal (a very large strength) has
    correlation 0 and zero gradient.

    Parameters
    ----------
    pred, target : array-like, shape (n,) or (m, n)
        Scores and the values they should rank like; every target row needs two distinct values.
    regularization_strength, regularization, n_threads, check_finite :
        As in :func:`soft_rank`.
    reduction : {"mean", "sum", "none"}, default "mean"
        Mean or sum over rows (a float), or the per-row losses (an array; a scalar array for 1-D).

    Complexity: O(n log n) per row. The gradient: :func:`spearman_loss_and_grad`.

    >>> spearman_loss([[0.0, 1.0, 2.0], [2.0, 1.0, 0.0]], [[1, 2, 3], [1, 2, 3]],
    ...               regularization_strength=0.01, reduction="none").round(12)
    array([0., 2.])
    """
    return _spearman(pred, target, regularization_strength, regularization, reduction, n_threads,
                     check_finite, grad=False)


def spearman_loss_and_grad(pred: npt.ArrayLike, target: npt.ArrayLike, *, regularization_strength: float = 1.0,
                           regularization: str = "l2", reduction: str = "mean", n_threads: Optional[int] = None,
                           check_finite: bool = True) -> Tuple[Any, np.ndarray]:
    """:func:`spearman_loss` and its gradient with respect to `pred` (same shape and dtype).

    With ``reduction="none"`` the gradient is that of the sum of the per-row losses.
    Complexity: O(n log n) per row, the backward pass O(n).

    >>> loss, g = spearman_loss_and_grad([0.0, 2.0, 1.0], [1.0, 2.0, 3.0], regularization_strength=10.0)
    >>> round(loss, 12), g
    (0.5, array([ 0.25,  0.25, -0.5 ]))
    """
    return _spearman(pred, target, regularization_strength, regularization, reduction, n_threads,
                     check_finite, grad=True)
