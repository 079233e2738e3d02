"""Sorting a run's segments in trec_eval order, shared by evaluation and fusion.

A neutral home: :mod:`rank.evaluate` (which re-exports :func:`sort_run`) and :mod:`rank.fusion`
both order their results with it, so neither reaches into the other.
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

from rank_kernels import evaluate as _kernel


def sort_run(offsets: np.ndarray, scores: np.ndarray, doc_lists: Any, n_threads: int,
             *, doc_keys: Optional[np.ndarray] = None) -> np.ndarray:
    """Positions of each segment's entries in trec_eval order (score desc, docid desc).

    Either `doc_keys` (int64 per entry: the rank of its document id in string order, e.g. from
    interned ids ranked once) or `doc_lists(q)` (the document ids of segment q, a list of str in
    position order; called only for segments holding equal scores). Ties are broken in the
    kernel either way.
    """
    n = scores.shape[0]
    perm = np.empty(n, np.int64)
    if doc_keys is not None:
        _kernel.sort_segments_keyed(offsets, scores, np.ascontiguousarray(doc_keys, np.int64), perm, n_threads)
        return perm
    tied = np.empty(offsets.shape[0] - 1, np.uint8)
    _kernel.sort_segments(offsets, scores, perm, tied, n_threads)
    flagged = np.flatnonzero(tied)
    if flagged.size == 0:
        return perm
    # Rank the document ids of the tied segments once, then sort those segments by (score, rank).
    docs: list = []
    spans = []
    for q in flagged.tolist():
        lo, hi = int(offsets[q]), int(offsets[q + 1])
        ids = doc_lists(q)
        docs.extend(ids)
        spans.append((lo, hi))
    uniq = sorted(set(docs))
    rank = {d: i for i, d in enumerate(uniq)}
    pos = 0
    sub_off = np.zeros(len(spans) + 1, np.int64)
    sub_idx = np.empty(len(docs), np.int64)
    for j, (lo, hi) in enumerate(spans):
        sub_idx[pos:pos + hi - lo] = np.arange(lo, hi)
        pos += hi - lo
        sub_off[j + 1] = pos
    keys_sub = np.fromiter((rank[d] for d in docs), np.int64, len(docs))
    sub_perm = np.empty(len(docs), np.int64)
    _kernel.sort_segments_keyed(sub_off, np.ascontiguousarray(scores[sub_idx]), keys_sub, sub_perm, n_threads)
    for j, (lo, hi) in enumerate(spans):
        a, b = int(sub_off[j]), int(sub_off[j + 1])
        perm[lo:hi] = sub_idx[sub_perm[a:b]]
    return perm
