"""The packed ``(flat, offsets)`` form of ragged inputs, shared by the public modules."""
from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, TypeGuard

import numpy as np

from rank._validate import KERNEL_FLOATS, as_float_array
from rank.errors import DTypeError, InvalidValueError, ShapeError

if TYPE_CHECKING:
    import numpy.typing as npt


def ndim_or_ragged(x: Any) -> int:
    """np.ndim(x), or -1 when x is ragged or otherwise not array-like."""
    try:
        return np.ndim(x)
    except (ValueError, TypeError):
        return -1


def is_packed(x: object) -> TypeGuard[tuple[Any, Any]]:
    """True for a ``(flat, offsets)`` tuple: a 2-D array and a 1-D array of offsets."""
    return isinstance(x, tuple) and len(x) == 2 and ndim_or_ragged(x[1]) == 1 and ndim_or_ragged(x[0]) == 2


def unpack(x: tuple[npt.ArrayLike, npt.ArrayLike], name: str, *, dtypes: Iterable[np.dtype[Any]] = KERNEL_FLOATS,
           allow_empty_items: bool = False) -> tuple[np.ndarray[Any, np.dtype[Any]], npt.NDArray[np.int64]]:
    """Validate a packed pair; returns (flat C-contiguous 2-D array, offsets int64 (n + 1,)).

    Entry i is ``flat[offsets[i]:offsets[i + 1]]``. Offsets must lie in [0, len(flat)] and be
    strictly increasing (non-decreasing with `allow_empty_items`). NaN/inf are not checked.
    """
    flat = as_float_array(x[0], f"{name}[0] (flat)", 2, dtypes=dtypes, check_finite=False,
                          allow_empty=True)
    offsets = np.asarray(x[1])
    if offsets.dtype.kind not in "iu":
        raise DTypeError(f"{name}[1] (offsets): expected integers, got dtype {offsets.dtype}")
    if offsets.dtype.kind == "u" and offsets.size and offsets.max() > flat.shape[0]:  # before int64 wraps it
        raise InvalidValueError(f"{name}[1] (offsets): must lie in [0, {flat.shape[0]}] (rows of flat), "
                                f"got {offsets.max()}")
    offsets = offsets.astype(np.int64)
    if offsets.shape[0] < 1:
        raise ShapeError(f"{name}[1] (offsets): expected n + 1 >= 1 entries, got none")
    if offsets[0] < 0 or offsets[-1] > flat.shape[0]:
        raise InvalidValueError(
            f"{name}[1] (offsets): must lie in [0, {flat.shape[0]}] (rows of flat), "
            f"got first {offsets[0]} and last {offsets[-1]}")
    steps = np.diff(offsets)
    least = 0 if allow_empty_items else 1
    if steps.size and steps.min() < least:
        i = int(np.argmin(steps))
        what = "not increasing" if steps[i] < 0 else "an entry with zero tokens"
        rule = "non-decreasing" if allow_empty_items else "strictly increasing"
        raise InvalidValueError(
            f"{name}[1] (offsets): must be {rule}, {what} at position {i} "
            f"({offsets[i]} -> {offsets[i + 1]})")
    return flat, offsets
