"""The one custom-VJP wrapper, and its dtype policy, of the JAX adapters of the compiled kernels.

Every kernel-backed JAX function (:mod:`rank.soft.jax`, :mod:`rank.soft.relaxations_jax`) is
:func:`kernel_function` of two host functions on NumPy arrays, run through
``jax.pure_callback`` (so they work under ``jit`` and ``vmap``, on CPU arrays). The policy is
the torch adapters' (:mod:`rank.soft._torch_io`):

- integer and bool inputs are computed in JAX's default float (float32, or float64 with
  ``jax_enable_x64``);
- float16 and bfloat16 are computed in float32 and returned (values and gradients) in the
  input dtype; float32 and float64 are computed as they are.

First-order gradients only (the backward pass is a host callback). Needs the ``jax`` extra.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from rank.errors import MissingDependencyError

try:
    import jax
    import jax.numpy as jnp
except ImportError as e:  # pragma: no cover - exercised only without jax
    raise MissingDependencyError("the JAX adapters need JAX: install rank-kernels[jax]") from e

#: Float dtypes computed in float32 and returned in their own dtype.
LOW_PRECISION = (jnp.dtype(jnp.float16), jnp.dtype(jnp.bfloat16))


def floating(values: Any) -> Any:
    """`values` as a JAX array of a floating dtype (integers and bools: the default float)."""
    x = jnp.asarray(values)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.asarray(0.0).dtype)
    return x


def compute_dtype(dtype: Any) -> Any:
    """The dtype a kernel computes an input of `dtype` in (float16/bfloat16: float32)."""
    return jnp.dtype(jnp.float32) if jnp.dtype(dtype) in LOW_PRECISION else jnp.dtype(dtype)


def kernel_function(values: Any, forward: Callable[..., Sequence[np.ndarray]], backward: Callable[..., np.ndarray], *,
                    out_shape: Callable[[tuple], tuple] = lambda s: s, aux: Sequence[Any] = (),
                    vmap_method: str = "sequential") -> Any:
    """``forward`` applied to `values` as a differentiable JAX function, under the policy above.

    ``forward(x) -> (out, *aux_arrays)`` and ``backward(x, out, *aux_arrays, g) -> grad`` run on
    the host on NumPy arrays in the compute dtype. `out` has shape ``out_shape(x.shape)``;
    each auxiliary array (saved for the backward pass, e.g. a sorting permutation) has the
    shape of `x` and the dtype given in `aux`. `vmap_method` is passed to ``pure_callback``
    ("sequential": one call per example; "broadcast_all": one call on the batched arrays).
    """
    x = floating(values)
    dtype = x.dtype
    compute = compute_dtype(dtype)
    xc = x.astype(compute)
    shape = tuple(xc.shape)
    structs = (jax.ShapeDtypeStruct(out_shape(shape), compute),) + tuple(
        jax.ShapeDtypeStruct(shape, jnp.dtype(a)) for a in aux)

    def host_forward(v: Any) -> tuple:
        res = forward(np.asarray(v))
        return tuple(np.asarray(r, dtype=s.dtype) for r, s in zip(res, structs))

    def host_backward(v: Any, *rest: Any) -> np.ndarray:
        return np.asarray(backward(np.asarray(v), *(np.asarray(r) for r in rest)), dtype=compute)

    def run(v: Any) -> Any:
        return jax.pure_callback(host_forward, structs, v, vmap_method=vmap_method)

    @jax.custom_vjp
    def f(v: Any) -> Any:
        return run(v)[0]

    def f_fwd(v: Any) -> Any:
        res = run(v)
        return res[0], (v, *res)

    def f_bwd(res: Any, g: Any) -> Any:
        v = res[0]
        return (jax.pure_callback(host_backward, jax.ShapeDtypeStruct(v.shape, v.dtype), *res, g,
                                  vmap_method=vmap_method),)

    f.defvjp(f_fwd, f_bwd)
    out = f(xc)
    return out if compute == dtype else out.astype(dtype)
