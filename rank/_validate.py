"""Input conversion and validation shared by the public API (never imported by kernels)."""
from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Literal, overload

import numpy as np

from rank.errors import DTypeError, InvalidValueError, NonFiniteError, ShapeError

if TYPE_CHECKING:
    import numpy.typing as npt

#: Float dtypes kernels accept directly; anything else numeric is converted to float32.
KERNEL_FLOATS = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))


def as_float_array(x: npt.ArrayLike, name: str, ndim: int | Iterable[int], *,
                   dtypes: Iterable[np.dtype[Any]] = KERNEL_FLOATS, default: npt.DTypeLike = np.float32,
                   check_finite: bool = True, allow_empty: bool = False) -> np.ndarray[Any, np.dtype[Any]]:
    """Return `x` as a C-contiguous array with ``x.ndim in ndim`` and a dtype from `dtypes`.

    No copy is made when `x` already qualifies. Integer and bool inputs become `default`;
    other dtypes in `dtypes` are kept. Raises DTypeError for non-numeric data, ShapeError for a
    wrong ndim or an empty array, NonFiniteError for NaN/inf when `check_finite`.
    """
    ndims = (ndim,) if isinstance(ndim, int) else tuple(ndim)
    if not isinstance(x, np.ndarray):
        try:
            x = np.asarray(x)
        except (ValueError, TypeError) as e:  # ragged nested lists, unconvertible objects
            raise DTypeError(f"{name}: expected a numeric array, could not convert ({e})") from None
    if x.dtype not in dtypes:
        if x.dtype.kind not in "biuf":
            raise DTypeError(f"{name}: expected a numeric array, got dtype {x.dtype}")
        x = x.astype(default)
    if x.ndim not in ndims:
        want = " or ".join(f"{d}-D" for d in ndims)
        raise ShapeError(f"{name}: expected a {want} array, got shape {x.shape} ({x.ndim}-D)")
    if not allow_empty and x.size == 0:
        raise ShapeError(f"{name}: expected a non-empty array, got shape {x.shape}")
    x = np.ascontiguousarray(x)
    if check_finite and x.dtype.kind == "f" and x.size and not np.isfinite(x).all():
        raise NonFiniteError(f"{name}: contains NaN or infinity (pass check_finite=False to skip this check)")
    return x


@overload
def check_positive_int(value: object, name: str, *, allow_none: Literal[False] = ...) -> int: ...
@overload
def check_positive_int(value: object, name: str, *, allow_none: bool) -> int | None: ...
def check_positive_int(value: object, name: str, *, allow_none: bool = False) -> int | None:
    """Return `value` as an int > 0 (or None when allowed); raise InvalidValueError otherwise."""
    if value is None and allow_none:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise InvalidValueError(f"{name}: expected a positive integer, got {value!r}")
    if value <= 0:
        raise InvalidValueError(f"{name}: expected a positive integer, got {value}")
    return int(value)


#: Thread counts above this are refused: no machine runs that many threads in one process,
#: and OpenMP runtimes abort the process (not raise) when they cannot create them.
MAX_THREADS_HARD = 4096


def available_cores() -> int:
    """The number of cores this process may use (its CPU affinity where the OS tells it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def resolve_threads(n_threads: int | None) -> int:
    """`n_threads` as a thread count for a kernel: the one thread-count policy of the package.

    None means every core this process may use. A positive count is honoured up to four times
    the usable cores and clamped there (more threads than that only add scheduling cost, and
    a runaway value must not exhaust the OpenMP runtime); a count above `MAX_THREADS_HARD`
    (4096) is a mistake and raises InvalidValueError, as do zero, negatives and non-integers.

    >>> resolve_threads(1)
    1
    >>> resolve_threads(10**9)
    Traceback (most recent call last):
      ...
    rank.errors.InvalidValueError: n_threads: expected a positive integer <= 4096, got 1000000000
    """
    cores = available_cores()
    if n_threads is None:
        return cores
    n = check_positive_int(n_threads, "n_threads")
    if n > MAX_THREADS_HARD:
        raise InvalidValueError(f"n_threads: expected a positive integer <= {MAX_THREADS_HARD}, got {n}")
    return min(n, 4 * cores)
