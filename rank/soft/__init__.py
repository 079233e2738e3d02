"""Differentiable sorting and ranking: soft ranks, soft sorts, their VJPs and a Spearman loss.

:func:`soft_rank` and :func:`soft_sort` project onto the permutahedron (Blondel et al. 2020)
with a compiled pool-adjacent-violators kernel: O(n log n) forward, O(n) vector-Jacobian
products, 1-D or row-wise 2-D float32/float64 input, threads over rows. Adapters for automatic
differentiation live in :mod:`rank.soft.torch` and :mod:`rank.soft.jax` (optional extras).

Other relaxations (:mod:`rank.soft.relaxations`: pairwise sigmoid, NeuralSort, SoftRank, SmoothI)
are reached through ``soft_rank(values, method=...)``; their torch and JAX adapters are
:mod:`rank.soft.relaxations_torch` and :mod:`rank.soft.relaxations_jax`.

>>> import rank
>>> rank.soft_rank([10.0, 30.0, 20.0], regularization_strength=0.1)
array([1., 3., 2.])
"""
from rank.soft import projection as _projection
from rank.soft.projection import *  # noqa: F403  (every name of rank.soft.projection.__all__)
from rank.soft import relaxations as _relaxations
from rank.soft.relaxations import (
    smoothi_ndcg,
    soft_permutation,
    soft_topk,
    softrank_ndcg,
)


def _register_relaxations() -> None:
    """Route ``soft_rank(method=name)`` to each relaxation's forward function.

    The relaxations always check that values are finite, so ``check_finite`` is not passed on.
    """
    for name, (forward, _vjp) in _relaxations.RELAXATIONS.items():
        def call(values, *, check_finite=True, _forward=forward, **params):
            return _forward(values, **params)

        register_relaxation(name, call)


_register_relaxations()

__all__ = [*_projection.__all__, "soft_topk", "soft_permutation", "softrank_ndcg", "smoothi_ndcg"]
