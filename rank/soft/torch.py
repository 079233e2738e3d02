"""PyTorch adapter: soft ranks, soft sorts, the top-k mask and the Spearman loss as autograd functions.

Tensors of shape (n,) or (batch, n), float16, bfloat16, float32 or float64, on any device: the
compiled kernel runs on the CPU, so other devices are copied there and the result (and the
gradient) copied back; float16/bfloat16 are computed in float32 and returned in their own
dtype (the one policy of :mod:`rank.soft._torch_io`). The kernel runs the forward pass
(O(n log n) per row) and saves the sorting permutation and the blocks, so the backward pass is an O(n) vector-Jacobian product per row. First-order gradients only.
Requires the ``torch`` extra (``pip install rank-kernels[torch]``).

>>> import torch
>>> from rank.soft.torch import soft_rank
>>> x = torch.tensor([[3.0, 1.0, 2.0]], dtype=torch.float64, requires_grad=True)
>>> r = soft_rank(x, regularization_strength=0.1)
>>> r
tensor([[3., 1., 2.]], dtype=torch.float64, grad_fn=<KernelFunctionBackward>)
>>> r.sum().backward()
>>> x.grad
tensor([[0., 0., 0.]], dtype=torch.float64)
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Tuple

import numpy as np

from rank._validate import check_choice
from rank.errors import DTypeError, MissingDependencyError, ShapeError
from rank.soft import projection as _proj

try:
    import torch
except ImportError as e:  # pragma: no cover - exercised only without torch
    raise MissingDependencyError("rank.soft.torch needs PyTorch: install rank-kernels[torch]") from e

__all__ = ["soft_rank", "soft_sort", "soft_topk_mask", "spearman_loss"]

from rank.soft import _torch_io


def _projection(values: "torch.Tensor", with_vjp: Callable[..., Tuple[np.ndarray, Callable]],
                kwargs: dict) -> "torch.Tensor":
    """A `*_with_vjp` of rank.soft.projection as a differentiable function of `values`."""
    return _torch_io.apply(values, lambda x: with_vjp(x, **kwargs))


def soft_rank(values: "torch.Tensor", *, direction: str = "ascending", regularization_strength: float = 1.0,
              regularization: str = "l2", n_threads: Optional[int] = None) -> "torch.Tensor":
    """Differentiable :func:`rank.soft.soft_rank` of a tensor, shape (n,) or (batch, n).

    Same dtype as `values` (float32 or float64). Backward: O(n) per row.

    >>> soft_rank(torch.tensor([0.5, 0.1]), regularization_strength=0.01)
    tensor([2., 1.])
    """
    return _projection(values, _proj.soft_rank_with_vjp, dict(
        direction=direction, regularization_strength=regularization_strength, regularization=regularization,
        n_threads=n_threads))


def soft_sort(values: "torch.Tensor", *, direction: str = "ascending", regularization_strength: float = 1.0,
              regularization: str = "l2", n_threads: Optional[int] = None) -> "torch.Tensor":
    """Differentiable :func:`rank.soft.soft_sort` of a tensor, shape (n,) or (batch, n).

    >>> soft_sort(torch.tensor([0.5, 0.1]), regularization_strength=0.01)
    tensor([0.1000, 0.5000])
    """
    return _projection(values, _proj.soft_sort_with_vjp, dict(
        direction=direction, regularization_strength=regularization_strength, regularization=regularization,
        n_threads=n_threads))


def soft_topk_mask(values: "torch.Tensor", k: int, *, regularization_strength: float = 1.0,
                   n_threads: Optional[int] = None) -> "torch.Tensor":
    """Differentiable :func:`rank.soft.soft_topk_mask` of a tensor, shape (n,) or (batch, n).

    >>> soft_topk_mask(torch.tensor([0.5, 0.1, 0.9]), 2, regularization_strength=0.01)
    tensor([1., 0., 1.])
    """
    def with_vjp(x: np.ndarray, **kw: Any) -> Tuple[np.ndarray, Callable]:
        return _proj.soft_topk_mask_with_vjp(x, k, **kw)

    return _projection(values, with_vjp, dict(regularization_strength=regularization_strength,
                                                      n_threads=n_threads))


def spearman_loss(pred: "torch.Tensor", target: "torch.Tensor", *, regularization_strength: float = 1.0,
                  regularization: str = "l2", reduction: str = "mean",
                  n_threads: Optional[int] = None) -> "torch.Tensor":
    """1 - soft Spearman correlation of `pred` (soft ranks) with `target` (hard ranks), row by row.

    pred, target : CPU tensors of the same shape (n,) or (batch, n). reduction: "mean", "sum"
    or "none". Differentiable in `pred`; same values as :func:`rank.soft.spearman_loss`.

    >>> p = torch.tensor([[0.1, 0.2, 0.3]], dtype=torch.float64)
    >>> abs(float(spearman_loss(p, torch.tensor([[1.0, 2.0, 3.0]]), regularization_strength=0.01))) < 1e-6
    True
    """
    check_choice("reduction", reduction, _proj.REDUCTIONS)
    if tuple(target.shape) != tuple(pred.shape):
        raise ShapeError(f"target: expected the shape of pred {tuple(pred.shape)}, got {tuple(target.shape)}")
    r = soft_rank(pred, regularization_strength=regularization_strength, regularization=regularization,
                  n_threads=n_threads)
    t_np, tn_np = _proj.centered_target_ranks(_torch_io.to_numpy(target, "target", integers=True))
    t = torch.from_numpy(t_np).to(device=r.device, dtype=r.dtype)
    tn = torch.from_numpy(tn_np).to(device=r.device, dtype=r.dtype)
    rc = r - r.mean(dim=-1, keepdim=True)
    rn = rc.norm(dim=-1)
    ok = rn > 0
    corr = torch.where(ok, (rc * t).sum(dim=-1) / (torch.where(ok, rn, torch.ones_like(rn)) * tn),
                       torch.zeros_like(rn))
    return _proj.reduce_loss(1.0 - corr, reduction)
