"""PyTorch adapters for the soft ranking relaxations of :mod:`rank.soft.relaxations`.

Each function is the one autograd wrapper of :mod:`rank.soft._torch_io` around the compiled
forward pass and its analytical vector-Jacobian product. Floating-point tensors on any device
(the kernels run on the CPU: other devices are copied there and the result and gradient copied
back), float16/bfloat16 (computed in float32, returned in their dtype), float32 or float64, 1-D
or batched 2-D (row-wise); other inputs are a DTypeError. Needs the ``torch`` extra.

>>> import torch
>>> x = torch.tensor([0.0, 10.0, 5.0], dtype=torch.float64, requires_grad=True)
>>> relaxed_rank(x, method="sigmoid", temperature=0.1)
tensor([1., 3., 2.], dtype=torch.float64, grad_fn=<KernelFunctionBackward>)
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional

import numpy as np
from numpy.typing import ArrayLike

from rank._validate import check_choice
from rank.errors import MissingDependencyError
from rank.soft import _torch_io
from rank.soft import relaxations as _r

try:
    import torch
except ImportError as e:  # pragma: no cover - exercised only without torch
    raise MissingDependencyError("rank.soft.relaxations_torch needs PyTorch: install rank-kernels[torch]") from e

__all__ = ["relaxed_rank", "soft_permutation", "softrank_ndcg", "smoothi_ndcg", "soft_topk"]


def _apply(values: "torch.Tensor", forward: Callable, vjp: Callable) -> "torch.Tensor":
    """forward(x) with gradient vjp(x, g), through the one torch wrapper of :mod:`rank.soft._torch_io`."""
    def run(x: np.ndarray) -> Any:
        x = np.array(x)  # a private copy of the input (later in-place edits of it do not count)
        return np.asarray(forward(x)), lambda g: vjp(x, g)

    return _torch_io.apply(values, run)


def relaxed_rank(values: "torch.Tensor", *, method: str = "sigmoid", direction: str = "ascending",
                 temperature: float = 1.0, n_threads: Optional[int] = None, **params: Any) -> "torch.Tensor":
    """Differentiable soft ranks by one of :data:`rank.soft.relaxations.RELAXATIONS`.

    `values`: tensor of shape (n,) or (m, n); `method`: "sigmoid", "neuralsort", "softrank"
    or "smoothi"; other parameters as the NumPy functions (e.g. ``delta`` for "smoothi").
    Returns a tensor of the same shape and dtype.

    >>> relaxed_rank(torch.tensor([2.0, 1.0]), method="neuralsort", temperature=0.01)
    tensor([2., 1.])
    """
    check_choice("method", method, _r.RELAXATIONS)
    fwd, vjp = _r.RELAXATIONS[method]
    kw: Dict[str, Any] = dict(direction=direction, temperature=temperature, n_threads=n_threads, **params)
    return _apply(values, lambda x: fwd(x, **kw), lambda x, c: vjp(x, c, **kw))


def soft_permutation(values: "torch.Tensor", temperature: float = 1.0, *, direction: str = "descending",
                     n_threads: Optional[int] = None) -> "torch.Tensor":
    """The NeuralSort relaxed permutation matrix, shape (n, n) or (m, n, n); see
    :func:`rank.soft.relaxations.soft_permutation`.

    >>> soft_permutation(torch.tensor([1.0, 2.0]), 0.01).round(decimals=6)
    tensor([[0., 1.],
            [1., 0.]])
    """
    kw: Dict[str, Any] = dict(direction=direction, n_threads=n_threads)
    return _apply(values, lambda x: _r.soft_permutation(x, temperature, **kw),
                  lambda x, c: _r.soft_permutation_vjp(x, c, temperature, **kw))


def softrank_ndcg(scores: "torch.Tensor", labels: ArrayLike, sigma: float = 1.0, *, k: Optional[int] = None,
                  n_threads: Optional[int] = None) -> "torch.Tensor":
    """SoftNDCG@k per row (a 0-d tensor for 1-D scores); `labels` are not differentiated.
    See :func:`rank.soft.relaxations.softrank_ndcg`.

    >>> round(float(softrank_ndcg(torch.tensor([2.0, 1.0]), [1, 0], 1e-3)), 6)
    1.0
    """
    y = np.asarray(labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else labels)
    kw: Dict[str, Any] = dict(sigma=sigma, k=k, n_threads=n_threads)
    return _apply(scores, lambda x: np.asarray(_r.softrank_ndcg(x, y, **kw)),
                  lambda x, c: _r.softrank_ndcg_vjp(x, y, c, **kw))


def smoothi_ndcg(scores: "torch.Tensor", labels: ArrayLike, *, k: Optional[int] = None, temperature: float = 1.0,
                 delta: float = 0.1, n_threads: Optional[int] = None) -> "torch.Tensor":
    """SmoothI NDCG@k per row (a 0-d tensor for 1-D scores); `labels` are not differentiated.
    See :func:`rank.soft.relaxations.smoothi_ndcg`.

    >>> round(float(smoothi_ndcg(torch.tensor([2.0, 1.0]), [1, 0], temperature=0.01)), 6)
    1.0
    """
    y = np.asarray(labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else labels)
    kw: Dict[str, Any] = dict(k=k, temperature=temperature, delta=delta, n_threads=n_threads)
    return _apply(scores, lambda x: np.asarray(_r.smoothi_ndcg(x, y, **kw)),
                  lambda x, c: _r.smoothi_ndcg_vjp(x, y, c, **kw))


def soft_topk(values: "torch.Tensor", k: int, *, method: str = "gumbel", temperature: float = 1.0,
              hard: bool = False, seed: Any = None, n_threads: Optional[int] = None) -> "torch.Tensor":
    """Differentiable top-k mask; see :func:`rank.soft.relaxations.soft_topk`. With
    ``hard=True`` the forward value is the exact 0/1 mask and the gradient is the soft mask's
    (straight-through). A seed of None draws a fresh one, shared by the forward and backward.

    >>> soft_topk(torch.tensor([0.0, 3.0, 1.0]), 1, method="projection", temperature=0.1)
    tensor([0., 1., 0.])
    """
    if seed is None and method == "gumbel":
        seed = np.random.SeedSequence().entropy
    kw: Dict[str, Any] = dict(method=method, temperature=temperature, seed=seed, n_threads=n_threads)
    return _apply(values, lambda x: _r.soft_topk(x, k, hard=hard, **kw),
                  lambda x, c: _r.soft_topk_vjp(x, c, k, **kw))
