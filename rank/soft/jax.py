"""JAX adapter: soft ranks, soft sorts and the top-k mask as ``jax.custom_vjp`` functions.

The forward pass runs the compiled kernel on the host through ``jax.pure_callback`` (so the
functions work under ``jit`` and ``vmap``, on CPU arrays) and returns the sorting permutation
(the blocks flagged in it) as a residual; the backward pass is a second callback, an O(n)
vector-Jacobian product per row. Input: shape (..., n), float32 (or float64 with
``jax_enable_x64``); float16/bfloat16 are computed in float32 and returned in their dtype,
integers in the default float (the one policy of :mod:`rank.soft._jax_io`, the torch adapters'
too); leading axes are batch axes. Requires the ``jax`` extra (``pip install rank-kernels[jax]``).

>>> import jax.numpy as jnp
>>> from rank.soft.jax import soft_rank
>>> soft_rank(jnp.array([3.0, 1.0, 2.0]), regularization_strength=0.1)
Array([3., 1., 2.], dtype=float32)
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import numpy as np

from rank._validate import check_choice
from rank.errors import MissingDependencyError
from rank.soft import _jax_io
from rank.soft import projection as _proj

try:
    import jax
    import jax.numpy as jnp
except ImportError as e:  # pragma: no cover - exercised only without jax
    raise MissingDependencyError("rank.soft.jax needs JAX: install rank-kernels[jax]") from e

__all__ = ["soft_rank", "soft_sort", "soft_topk_mask", "spearman_loss"]


def _projected(values: Any, build: Callable[[np.ndarray], "_proj._Projection"]) -> Any:
    """A projection builder as a differentiable function of `values`, through the one JAX wrapper
    (:mod:`rank.soft._jax_io`); the settings are validated eagerly, and the forward pass saves
    the sorting permutation so the backward pass is O(n) per row."""
    x = _floating(values)
    n = x.shape[-1]
    like = build(np.zeros((1, n)))  # checks the settings now, and fixes mode / kl / scale

    def flat(a: np.ndarray, dtype: Any) -> np.ndarray:
        return np.ascontiguousarray(np.asarray(a).reshape(-1, n), dtype=dtype)

    def forward(v: np.ndarray) -> tuple:
        p = build(flat(v, v.dtype))
        return p.out.reshape(v.shape), p.perm.reshape(v.shape)

    def backward(v: np.ndarray, out: np.ndarray, perm: np.ndarray, g: np.ndarray) -> np.ndarray:
        p = _proj._Projection.restore(flat(v, v.dtype), flat(out, v.dtype), flat(perm, np.int32), like)
        return p.vjp(flat(g, v.dtype)).reshape(v.shape)

    return _jax_io.kernel_function(x, forward, backward, aux=(np.int32,), vmap_method="broadcast_all")


def _floating(values: Any) -> Any:
    x = _jax_io.floating(values)
    if x.ndim == 0:
        raise _proj.ShapeError(f"values: expected an array of shape (..., n), got shape {x.shape}")
    return x


def soft_rank(values: Any, *, direction: str = "ascending", regularization_strength: float = 1.0,
              regularization: str = "l2", n_threads: Optional[int] = None) -> Any:
    """Differentiable :func:`rank.soft.soft_rank` of a JAX array of shape (..., n) (rows = last axis).

    >>> float(jax.grad(lambda x: soft_rank(x, regularization_strength=2.0)[0])(jnp.array([0.0, 1.0, 4.0]))[1])
    -0.25
    """
    def build(x: np.ndarray) -> "_proj._Projection":
        return _proj._rank_projection(x, direction, regularization_strength, regularization, n_threads, True)

    return _projected(values, build)


def soft_sort(values: Any, *, direction: str = "ascending", regularization_strength: float = 1.0,
              regularization: str = "l2", n_threads: Optional[int] = None) -> Any:
    """Differentiable :func:`rank.soft.soft_sort` of a JAX array of shape (..., n).

    >>> soft_sort(jnp.array([2.0, 0.0, 1.0]), regularization_strength=0.1)
    Array([0., 1., 2.], dtype=float32)
    """
    def build(x: np.ndarray) -> "_proj._Projection":
        return _proj._sort_projection(x, direction, regularization_strength, regularization, n_threads, True)

    return _projected(values, build)


def soft_topk_mask(values: Any, k: int, *, regularization_strength: float = 1.0,
                   n_threads: Optional[int] = None) -> Any:
    """Differentiable :func:`rank.soft.soft_topk_mask` of a JAX array of shape (..., n).

    >>> soft_topk_mask(jnp.array([0.5, 0.1, 0.9]), 2, regularization_strength=0.01)
    Array([1., 0., 1.], dtype=float32)
    """
    def build(x: np.ndarray) -> "_proj._Projection":
        return _proj._topk_projection(x, k, regularization_strength, n_threads, True)

    return _projected(values, build)


def spearman_loss(pred: Any, target: Any, *, regularization_strength: float = 1.0, regularization: str = "l2",
                  reduction: str = "mean", n_threads: Optional[int] = None) -> Any:
    """1 - soft Spearman correlation of `pred` (soft ranks) with `target` (hard ranks), row by row.

    pred, target : arrays of the same shape (..., n); `target` must be concrete (not traced).
    reduction: "mean", "sum" or "none". Same values as :func:`rank.soft.spearman_loss`.

    >>> p = jnp.array([[0.1, 0.2, 0.3]])
    >>> abs(float(spearman_loss(p, jnp.array([[1.0, 2.0, 3.0]]), regularization_strength=0.01))) < 1e-6
    True
    """
    check_choice("reduction", reduction, _proj.REDUCTIONS)
    pred = _floating(pred)
    t_np = np.asarray(target, np.float64)
    if t_np.shape != tuple(pred.shape):
        raise _proj.ShapeError(f"target: expected the shape of pred {tuple(pred.shape)}, got {t_np.shape}")
    t, tn = _proj.centered_target_ranks(t_np)
    r = soft_rank(pred, regularization_strength=regularization_strength, regularization=regularization,
                  n_threads=n_threads)
    rc = r - r.mean(axis=-1, keepdims=True)
    rn = jnp.sqrt((rc * rc).sum(axis=-1))
    ok = rn > 0
    tj = jnp.asarray(t, r.dtype)
    corr = jnp.where(ok, (rc * tj).sum(axis=-1) / (jnp.where(ok, rn, 1.0) * jnp.asarray(tn, r.dtype)), 0.0)
    return _proj.reduce_loss(1.0 - corr, reduction)
