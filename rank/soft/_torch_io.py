"""The one autograd wrapper, and its device and dtype policy, of the PyTorch adapters.

Every kernel-backed torch function (:mod:`rank.soft.torch`, :mod:`rank.soft.relaxations_torch`)
is :func:`apply` of a host function ``run(x) -> (out, vjp)`` on NumPy arrays. The policy:

- the input is a floating-point ``torch.Tensor`` (anything else, integer and complex tensors
  included, is a DTypeError: there is nothing to differentiate);
- the kernels are compiled CPU code, so a tensor on another device (CUDA, MPS, ...) is copied
  to the CPU for the kernel and the result (and, in the backward pass, the gradient) copied
  back to the input's device;
- float16 and bfloat16 are computed in float32 and returned (values and gradients) in the
  input dtype; float32 and float64 are computed as they are.

Autograd sees one differentiable function of the input tensor, wherever it lives; first-order
gradients only. The JAX adapters follow the same dtype policy (:mod:`rank.soft._jax_io`).
Needs the ``torch`` extra.
"""
from __future__ import annotations

from typing import Any, Callable, Tuple

import numpy as np

from rank.errors import DTypeError, MissingDependencyError

try:
    import torch
except ImportError as e:  # pragma: no cover - exercised only without torch
    raise MissingDependencyError("the PyTorch adapters need PyTorch: install rank-kernels[torch]") from e

#: Float dtypes computed in float32 and returned in their own dtype.
LOW_PRECISION = (torch.float16, torch.bfloat16)
KERNEL_DTYPES = (torch.float32, torch.float64)


def to_numpy(t: "torch.Tensor", name: str, *, integers: bool = False) -> np.ndarray:
    """A float32/float64 C-contiguous NumPy copy (or view, for a CPU tensor) of tensor `t`.

    Other devices are copied to the CPU; float16/bfloat16 become float32; integer and bool
    tensors become float64 when `integers`, else DTypeError (so do complex tensors)."""
    if not isinstance(t, torch.Tensor):
        raise DTypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    x = t.detach()
    if x.dtype in LOW_PRECISION:
        x = x.to(torch.float32)
    elif x.dtype not in KERNEL_DTYPES:
        if integers and not x.is_floating_point() and not x.is_complex():
            x = x.to(torch.float64)
        else:
            raise DTypeError(f"{name}: expected a floating-point tensor (float16, bfloat16, float32 or "
                             f"float64), got {x.dtype}")
    if x.device.type != "cpu":
        x = x.to("cpu")
    return x.contiguous().numpy()


def result_dtype(t: "torch.Tensor") -> "torch.dtype":
    """The dtype results are returned in for input `t` (its own dtype if floating, else float64)."""
    return t.dtype if t.is_floating_point() else torch.float64


def to_tensor(a: np.ndarray, like: "torch.Tensor") -> "torch.Tensor":
    """NumPy result `a` as a tensor on the device of `like`, in :func:`result_dtype` of `like`."""
    return place(a, like.device, result_dtype(like))


def place(a: np.ndarray, device: "torch.device", dtype: "torch.dtype") -> "torch.Tensor":
    """NumPy array `a` as a tensor of `dtype` on `device` (one copy at most per step)."""
    return torch.from_numpy(np.ascontiguousarray(a)).to(device=device, dtype=dtype)


#: What a kernel-backed function computes on the host: ``run(x) -> (out, vjp)`` with
#: ``vjp(g) -> grad``, all NumPy arrays in the kernel dtype of `x`.
HostRun = Callable[[np.ndarray], Tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]]


class KernelFunction(torch.autograd.Function):
    """The autograd function of every kernel-backed adapter: forward ``run(x)``, backward its vjp."""

    @staticmethod
    def forward(ctx: Any, values: "torch.Tensor", run: HostRun) -> "torch.Tensor":
        x = to_numpy(values, "values")
        out, vjp = run(x)
        ctx.vjp, ctx.kernel_dtype = vjp, x.dtype
        ctx.device, ctx.dtype = values.device, result_dtype(values)
        return place(np.asarray(out), ctx.device, ctx.dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad_out: "torch.Tensor") -> Tuple["torch.Tensor", None]:
        g = to_numpy(grad_out, "grad_output").astype(ctx.kernel_dtype, copy=False)
        return place(np.asarray(ctx.vjp(g)), ctx.device, ctx.dtype), None


def apply(values: "torch.Tensor", run: HostRun) -> "torch.Tensor":
    """``run`` as a differentiable function of tensor `values`, under the policy above."""
    return KernelFunction.apply(values, run)
