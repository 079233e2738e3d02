"""JAX adapters for the soft ranking relaxations of :mod:`rank.soft.relaxations`.

Each function is a ``jax.custom_vjp`` whose forward pass and vector-Jacobian product call the
compiled NumPy kernels through ``jax.pure_callback`` (so they work under ``jit``, on the host;
``vmap`` runs the callback once per mapped element). Non-array parameters (temperature,
method, k, labels, seed) must be concrete Python/NumPy values. float16/bfloat16 are computed in
float32 and returned in their dtype, integers in the default float (the one policy of
:mod:`rank.soft._jax_io`). Needs the ``jax`` extra.

>>> import jax.numpy as jnp
>>> relaxed_rank(jnp.array([0.0, 10.0, 5.0]), method="sigmoid", temperature=0.1)
Array([1., 3., 2.], dtype=float32)
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional

import numpy as np
from numpy.typing import ArrayLike

from rank._validate import check_choice
from rank.errors import MissingDependencyError
from rank.soft import _jax_io
from rank.soft import relaxations as _r

try:
    import jax
    import jax.numpy as jnp
except ImportError as e:  # pragma: no cover - exercised only without jax
    raise MissingDependencyError("rank.soft.relaxations_jax needs JAX: install rank-kernels[jax]") from e

__all__ = ["relaxed_rank", "soft_permutation", "softrank_ndcg", "smoothi_ndcg", "soft_topk"]


def _apply(values: Any, forward: Callable, vjp: Callable, out_shape: Callable = lambda s: s) -> Any:
    """forward(x) with gradient vjp(x, g) through the one JAX wrapper (:mod:`rank.soft._jax_io`);
    `out_shape` maps the input shape to the output's."""
    return _jax_io.kernel_function(values, lambda x: (forward(x),), lambda x, out, g: vjp(x, g),
                                   out_shape=out_shape)


def relaxed_rank(values: Any, *, method: str = "sigmoid", direction: str = "ascending", temperature: float = 1.0,
                 n_threads: Optional[int] = None, **params: Any) -> Any:
    """Differentiable soft ranks by one of :data:`rank.soft.relaxations.RELAXATIONS`; shape and
    dtype of `values` ((n,) or (m, n)).

    >>> relaxed_rank(jnp.array([2.0, 1.0]), method="softrank", temperature=0.01)
    Array([2., 1.], dtype=float32)
    """
    check_choice("method", method, _r.RELAXATIONS)
    fwd, vjp = _r.RELAXATIONS[method]
    kw: Dict[str, Any] = dict(direction=direction, temperature=temperature, n_threads=n_threads, **params)
    return _apply(values, lambda x: fwd(x, **kw), lambda x, c: vjp(x, c, **kw))


def soft_permutation(values: Any, temperature: float = 1.0, *, direction: str = "descending",
                     n_threads: Optional[int] = None) -> Any:
    """The NeuralSort relaxed permutation matrix, shape (n, n) or (m, n, n).

    >>> soft_permutation(jnp.array([1.0, 2.0]), 0.01).round(6)
    Array([[0., 1.],
           [1., 0.]], dtype=float32)
    """
    kw: Dict[str, Any] = dict(direction=direction, n_threads=n_threads)
    return _apply(values, lambda x: _r.soft_permutation(x, temperature, **kw),
                  lambda x, c: _r.soft_permutation_vjp(x, c, temperature, **kw),
                  lambda s: s + (s[-1],))


def softrank_ndcg(scores: Any, labels: ArrayLike, sigma: float = 1.0, *, k: Optional[int] = None,
                  n_threads: Optional[int] = None) -> Any:
    """SoftNDCG@k per row (0-d for 1-D scores); `labels` must be concrete.

    >>> round(float(softrank_ndcg(jnp.array([2.0, 1.0]), [1, 0], 1e-3)), 6)
    1.0
    """
    y = np.asarray(labels)
    kw: Dict[str, Any] = dict(sigma=sigma, k=k, n_threads=n_threads)
    return _apply(scores, lambda x: _r.softrank_ndcg(x, y, **kw),
                  lambda x, c: _r.softrank_ndcg_vjp(x, y, c, **kw), lambda s: s[:-1])


def smoothi_ndcg(scores: Any, labels: ArrayLike, *, k: Optional[int] = None, temperature: float = 1.0,
                 delta: float = 0.1, n_threads: Optional[int] = None) -> Any:
    """SmoothI NDCG@k per row (0-d for 1-D scores); `labels` must be concrete.

    >>> round(float(smoothi_ndcg(jnp.array([2.0, 1.0]), [1, 0], temperature=0.01)), 6)
    1.0
    """
    y = np.asarray(labels)
    kw: Dict[str, Any] = dict(k=k, temperature=temperature, delta=delta, n_threads=n_threads)
    return _apply(scores, lambda x: _r.smoothi_ndcg(x, y, **kw),
                  lambda x, c: _r.smoothi_ndcg_vjp(x, y, c, **kw), lambda s: s[:-1])


def soft_topk(values: Any, k: int, *, method: str = "gumbel", temperature: float = 1.0, hard: bool = False,
              seed: Any = None, n_threads: Optional[int] = None) -> Any:
    """Differentiable top-k mask (straight-through when ``hard=True``); a seed of None draws a
    fresh one, shared by the forward and backward passes.

    >>> soft_topk(jnp.array([0.0, 3.0, 1.0]), 1, method="projection", temperature=0.1)
    Array([0., 1., 0.], dtype=float32)
    """
    if seed is None and method == "gumbel":
        seed = np.random.SeedSequence().entropy
    kw: Dict[str, Any] = dict(method=method, temperature=temperature, seed=seed, n_threads=n_threads)
    return _apply(values, lambda x: _r.soft_topk(x, k, hard=hard, **kw),
                  lambda x, c: _r.soft_topk_vjp(x, c, k, **kw))
