"""JAX adapter: soft ranks, soft sorts and the top-k mask as ``jax.custom_vjp`` functions.

The forward pass runs the compiled kernel on the host through ``jax.pure_callback`` (so the
functions work under ``jit`` and ``vmap``, on CPU arrays) and returns the sorting permutation
(the blocks flagged in it) as a residual; the backward pass is a second callback, an O(n)
vector-Jacobian product per row. Input: shape (..., n), float32 (or float64 with ``jax_enable_x64``); leading
axes are batch axes. Requires the ``jax`` extra (``pip install rank-kernels[jax]``).

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
from rank.soft import projection as _proj

try:
    import jax
    import jax.numpy as jnp
except ImportError as e:  # pragma: no cover - exercised only without jax
    raise MissingDependencyError("rank.soft.jax needs JAX: install rank-kernels[jax]") from e

__all__ = ["soft_rank", "soft_sort", "soft_topk_mask", "spearman_loss"]


def _wrap(build: Callable[[np.ndarray], "_proj._Projection"], n: int) -> Callable[[Any], Any]:
    """A custom_vjp function of one array argument from a projection builder (validated eagerly)."""
    like = build(np.zeros((1, n)))  # checks the settings now, and fixes mode / kl / scale

    def host_forward(x: np.ndarray) -> Any:
        x = np.asarray(x)
        x2 = np.ascontiguousarray(x.reshape(-1, x.shape[-1]))
        p = build(x2)
        return p.out.reshape(x.shape), p.perm.reshape(x.shape)

    def host_backward(x: np.ndarray, out: np.ndarray, perm: np.ndarray, g: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        n = x.shape[-1]

        def flat(a: np.ndarray, dtype: Any) -> np.ndarray:
            return np.ascontiguousarray(np.asarray(a).reshape(-1, n), dtype=dtype)

        p = _proj._Projection.restore(flat(x, x.dtype), flat(out, x.dtype), flat(perm, np.int32), like)
        return p.vjp(flat(g, x.dtype)).reshape(x.shape)

    def shapes(x: Any) -> Any:
        return jax.ShapeDtypeStruct(x.shape, x.dtype), jax.ShapeDtypeStruct(x.shape, jnp.int32)

    def run(x: Any) -> Any:
        return jax.pure_callback(host_forward, shapes(x), x, vmap_method="broadcast_all")

    @jax.custom_vjp
    def f(x: Any) -> Any:
        return run(x)[0]

    def fwd(x: Any) -> Any:
        out, perm = run(x)
        return out, (x, out, perm)

    def bwd(res: Any, g: Any) -> Any:
        x = res[0]
        grad = jax.pure_callback(host_backward, jax.ShapeDtypeStruct(x.shape, x.dtype), *res, g,
                                 vmap_method="broadcast_all")
        return (grad,)

    f.defvjp(fwd, bwd)
    return f


def _floating(values: Any) -> Any:
    x = jnp.asarray(values)
    if not jnp.issubdtype(x.dtype, jnp.floating) or x.dtype == jnp.float16 or x.dtype == jnp.bfloat16:
        x = x.astype(jnp.asarray(0.0).dtype)  # float64 when x64 is enabled
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

    x = _floating(values)
    return _wrap(build, x.shape[-1])(x)


def soft_sort(values: Any, *, direction: str = "ascending", regularization_strength: float = 1.0,
              regularization: str = "l2", n_threads: Optional[int] = None) -> Any:
    """Differentiable :func:`rank.soft.soft_sort` of a JAX array of shape (..., n).

    >>> soft_sort(jnp.array([2.0, 0.0, 1.0]), regularization_strength=0.1)
    Array([0., 1., 2.], dtype=float32)
    """
    def build(x: np.ndarray) -> "_proj._Projection":
        return _proj._sort_projection(x, direction, regularization_strength, regularization, n_threads, True)

    x = _floating(values)
    return _wrap(build, x.shape[-1])(x)


def soft_topk_mask(values: Any, k: int, *, regularization_strength: float = 1.0,
                   n_threads: Optional[int] = None) -> Any:
    """Differentiable :func:`rank.soft.soft_topk_mask` of a JAX array of shape (..., n).

    >>> soft_topk_mask(jnp.array([0.5, 0.1, 0.9]), 2, regularization_strength=0.01)
    Array([1., 0., 1.], dtype=float32)
    """
    def build(x: np.ndarray) -> "_proj._Projection":
        return _proj._topk_projection(x, k, regularization_strength, n_threads, True)

    x = _floating(values)
    return _wrap(build, x.shape[-1])(x)


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
    n = t_np.shape[-1]
    t = _proj._hard_ranks(t_np.reshape(-1, n)).reshape(t_np.shape)
    t = t - t.mean(axis=-1, keepdims=True)
    tn = np.linalg.norm(t, axis=-1)
    if (tn == 0).any():
        raise _proj.InvalidValueError("target: some row has all values equal (or n = 1); the Spearman "
                                      "correlation is undefined")
    r = soft_rank(pred, regularization_strength=regularization_strength, regularization=regularization,
                  n_threads=n_threads)
    rc = r - r.mean(axis=-1, keepdims=True)
    rn = jnp.sqrt((rc * rc).sum(axis=-1))
    ok = rn > 0
    tj = jnp.asarray(t, r.dtype)
    corr = jnp.where(ok, (rc * tj).sum(axis=-1) / (jnp.where(ok, rn, 1.0) * jnp.asarray(tn, r.dtype)), 0.0)
    loss = 1.0 - corr
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss
