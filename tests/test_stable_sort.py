"""The one stable sort (rank_kernels/sort.h) in the evaluate orders, against NumPy's stable sorts.

Segment sizes cross the insertion-run length (16) and several merge widths; scores have many
ties (few distinct values), so every tie rule is exercised.
"""
import numpy as np
import pytest

from rank_kernels import evaluate as ev

SIZES = [0, 1, 2, 15, 16, 17, 31, 33, 64, 65, 100, 257, 1000]


def _segments(seed, distinct):
    rng = np.random.default_rng(seed)
    offsets = np.concatenate([[0], np.cumsum(SIZES)]).astype(np.int64)
    scores = rng.integers(0, distinct, offsets[-1]).astype(np.float64)
    scores[rng.random(offsets[-1]) < 0.1] = -0.0  # -0.0 and 0.0 tie
    return offsets, scores, rng


@pytest.mark.parametrize("distinct", [1, 3, 50, 10**9])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_sort_segments_is_numpys_stable_descending_sort(distinct, n_threads):
    offsets, scores, _ = _segments(1, distinct)
    perm = np.empty(offsets[-1], np.int64)
    tied = np.empty(len(SIZES), np.uint8)
    ev.sort_segments(offsets, scores, perm, tied, n_threads)
    for q in range(len(SIZES)):
        a, b = offsets[q], offsets[q + 1]
        seg = scores[a:b]
        np.testing.assert_array_equal(perm[a:b], a + np.argsort(-seg, kind="stable"))
        assert tied[q] == (len(np.unique(seg)) < len(seg))


@pytest.mark.parametrize("distinct", [1, 3, 50])
def test_sort_segments_keyed_breaks_ties_by_key_descending(distinct):
    offsets, scores, rng = _segments(2, distinct)
    keys = rng.integers(0, 5, offsets[-1]).astype(np.int64)
    perm = np.empty(offsets[-1], np.int64)
    ev.sort_segments_keyed(offsets, scores, keys, perm, 2)
    for q in range(len(SIZES)):
        a, b = offsets[q], offsets[q + 1]
        pos = np.arange(a, b)
        # lexsort: last key is primary; position ascending last of all
        ref = np.lexsort((pos, -keys[a:b], -scores[a:b]))
        np.testing.assert_array_equal(perm[a:b], a + ref)
