"""Deterministic top-k selection: score descending, ties broken by the smaller index."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import numpy.typing as npt


def top_k(scores: np.ndarray[Any, np.dtype[Any]], k: int) -> tuple[npt.NDArray[np.int64], np.ndarray[Any, np.dtype[Any]]]:
    """(indices int64, scores) of the `k` best entries of a 1-D score array.

    Sorted by score descending, equal scores by ascending index, so the result is
    deterministic. k larger than len(scores) returns every entry. O(n + k log k).

    >>> top_k(np.array([0.5, 2.0, 0.5, 1.0]), 3)
    (array([1, 3, 0]), array([2. , 1. , 0.5]))
    """
    n = scores.shape[0]
    k = min(k, n)
    if k < n:
        # The k-th largest value; everything above it is in, and ties at it go by index.
        kth = np.partition(scores, n - k)[n - k]
        above = np.flatnonzero(scores > kth)
        ties = np.flatnonzero(scores == kth)[: k - above.shape[0]]
        idx = np.concatenate([above, ties])
    else:
        idx = np.arange(n)
    order = np.lexsort((idx, -scores[idx].astype(np.float64)))
    idx = idx[order].astype(np.int64, copy=False)
    return idx, scores[idx]
