"""Evaluation kernels (the "evaluate" kernel family): columnar runs, per-query sorting, metrics.

A run is encoded once as flat columns: `offsets` (n_queries + 1, int64) delimits each query's
entries in `scores` (float64) and `grades` (int32, the qrels grade of each retrieved document,
or UNJUDGED). `encode_run` builds these columns from ``{qid: {docid: score}}`` dicts in one
pass over the dict items (C-API iteration, no per-entry Python call); everything after it
works on arrays without the GIL.

- `sort_segments` orders every segment by score descending, equal scores by position
  (stable), and flags the segments that hold equal scores so that the caller can break those
  ties by document id (trec_eval's rule needs string comparisons, done outside the kernel for
  the few flagged segments only).
- `metrics` computes every requested measure of every query from the sorted order, one query
  per iteration of an OpenMP loop.

No validation happens here: `rank.evaluate` checks its inputs first.
"""
from cpython.dict cimport PyDict_GetItem, PyDict_Next, PyDict_Size
from cpython.float cimport PyFloat_AS_DOUBLE, PyFloat_Check
from cpython.long cimport PyLong_AsLong, PyLong_CheckExact
from cpython.object cimport PyObject
from cython.parallel cimport parallel, prange
from libc.math cimport log2, pow
from libc.stdint cimport int32_t, int64_t
from libc.stdlib cimport free, malloc

import numpy as np

cdef int32_t UNJUDGED_GRADE = -2147483648
UNJUDGED = UNJUDGED_GRADE

# Metric codes (the Python layer maps names to these).
NDCG = 0
NDCG_EXP = 1
MAP = 2
RECIP_RANK = 3
PRECISION = 4
RECALL = 5
R_PRECISION = 6
HIT_RATE = 7
BPREF = 8


cdef int32_t _grade(object value) except? -1:
    """A qrels grade as int32; TypeError for anything that is not an integral number."""
    cdef double f
    if PyLong_CheckExact(value):
        return <int32_t>PyLong_AsLong(value)
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"relevance grade {value!r} is not an integer")
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"relevance grade {value!r} is not an integer") from None
    if f != <double><int64_t>f or f < -2147483647.0 or f > 2147483647.0:
        raise TypeError(f"relevance grade {value!r} is not an integer")
    return <int32_t><int64_t>f


cdef double _score(object value, object qid, object doc) except? -1.0:
    if PyFloat_Check(value):
        return PyFloat_AS_DOUBLE(value)
    if isinstance(value, (str, bytes)) or value is None:
        raise TypeError(f"score of document {doc!r} in query {qid!r} is not a number: {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(f"score of document {doc!r} in query {qid!r} is not a number: {value!r}") from None


def encode_run(dict run, dict qrels):
    """Encode the queries of `run` that `qrels` judges (non-empty), in the run's order.

    Returns (qids list, offsets int64 (nq+1,), scores float64 (total,), grades int32 (total,),
    qoffsets int64 (nq+1,), qgrades int32 (every grade of each query's qrels, in dict order)).
    TypeError names the first score or grade that is not a number.
    """
    cdef Py_ssize_t pos = 0, pos2, total = 0, n = 0, i = 0, nj = 0, j = 0
    cdef PyObject *qk
    cdef PyObject *qv
    cdef PyObject *dk
    cdef PyObject *dv
    cdef PyObject *judged
    cdef list qids = []
    cdef list judged_list = []
    cdef list run_list = []
    # Pass 1: which queries, how many entries.
    while PyDict_Next(run, &pos, &qk, &qv):
        judged = PyDict_GetItem(qrels, <object>qk)
        if judged == NULL:
            continue
        if not isinstance(<object>qv, dict):
            raise TypeError(f"run[{(<object>qk)!r}]: expected a dict {{docid: score}}, got {type(<object>qv).__name__}")
        if not isinstance(<object>judged, dict):
            raise TypeError(f"qrels[{(<object>qk)!r}]: expected a dict {{docid: grade}}, got {type(<object>judged).__name__}")
        if PyDict_Size(<object>judged) == 0:
            continue
        qids.append(<object>qk)
        run_list.append(<object>qv)
        judged_list.append(<object>judged)
        total += PyDict_Size(<object>qv)
        nj += PyDict_Size(<object>judged)
    n = len(qids)
    offsets = np.empty(n + 1, np.int64)
    scores = np.empty(total, np.float64)
    grades = np.empty(total, np.int32)
    qgrades = np.empty(nj, np.int32)
    qoffsets = np.empty(n + 1, np.int64)
    cdef int64_t[::1] off = offsets
    cdef double[::1] sc = scores
    cdef int32_t[::1] gr = grades
    cdef int64_t[::1] qoff = qoffsets
    cdef int32_t[::1] qgr = qgrades
    cdef dict docs, jd
    off[0] = 0
    qoff[0] = 0
    for i in range(n):
        docs = <dict>run_list[i]
        jd = <dict>judged_list[i]
        pos2 = 0
        while PyDict_Next(jd, &pos2, &dk, &dv):
            try:
                qgr[j] = _grade(<object>dv)
            except TypeError as e:
                raise TypeError(f"qrels[{qids[i]!r}][{(<object>dk)!r}]: {e}") from None
            j += 1
        qoff[i + 1] = j
        pos2 = 0
        total = off[i]
        while PyDict_Next(docs, &pos2, &dk, &dv):
            sc[total] = _score(<object>dv, qids[i], <object>dk)
            judged = PyDict_GetItem(jd, <object>dk)
            if judged == NULL:
                gr[total] = UNJUDGED_GRADE
            else:
                gr[total] = _grade(<object>judged)
            total += 1
        off[i + 1] = total
    return qids, offsets, scores, grades, qoffsets, qgrades


# ---------------------------------------------------------------------------------------------
# Sorting: indices by key descending, equal keys by index ascending (stable merge sort).

cdef inline bint _before(const double *s, int64_t a, int64_t b) noexcept nogil:
    return s[a] > s[b] or (s[a] == s[b] and a < b)


cdef void sort_desc(const double *s, int64_t *idx, int64_t *tmp, Py_ssize_t n) noexcept nogil:
    """Sort idx[0:n] so that s[idx] is descending (ties: smaller index first). tmp: n slots."""
    cdef Py_ssize_t i, j, width, lo, mid, hi, a, b, k
    cdef int64_t x
    cdef int64_t *src = idx
    cdef int64_t *dst = tmp
    cdef int64_t *sw
    # Insertion sort of runs of 16.
    for lo in range(0, n, 16):
        hi = lo + 16 if lo + 16 < n else n
        for i in range(lo + 1, hi):
            x = idx[i]
            j = i - 1
            while j >= lo and _before(s, x, idx[j]):
                idx[j + 1] = idx[j]
                j -= 1
            idx[j + 1] = x
    width = 16
    while width < n:
        lo = 0
        while lo < n:
            mid = lo + width if lo + width < n else n
            hi = lo + 2 * width if lo + 2 * width < n else n
            a = lo
            b = mid
            k = lo
            while a < mid and b < hi:
                if _before(s, src[b], src[a]):
                    dst[k] = src[b]
                    b += 1
                else:
                    dst[k] = src[a]
                    a += 1
                k += 1
            while a < mid:
                dst[k] = src[a]
                a += 1
                k += 1
            while b < hi:
                dst[k] = src[b]
                b += 1
                k += 1
            lo = hi
        sw = src
        src = dst
        dst = sw
        width *= 2
    if src != idx:
        for i in range(n):
            idx[i] = src[i]


def sort_segments(const int64_t[::1] offsets, const double[::1] scores, int64_t[::1] perm,
                  unsigned char[::1] tied, int n_threads):
    """perm[offsets[q]:offsets[q+1]] = positions of segment q by score descending (stable);
    tied[q] = 1 when two entries of segment q have equal scores."""
    cdef Py_ssize_t nq = offsets.shape[0] - 1, q, i, lo, n, maxn = 0
    cdef int64_t *tmp
    for q in range(nq):
        if offsets[q + 1] - offsets[q] > maxn:
            maxn = offsets[q + 1] - offsets[q]
    with nogil, parallel(num_threads=n_threads):
        tmp = <int64_t *>malloc((maxn + 1) * sizeof(int64_t))
        for q in prange(nq, schedule="dynamic", chunksize=64):
            lo = offsets[q]
            n = offsets[q + 1] - lo
            for i in range(n):
                perm[lo + i] = lo + i
            sort_desc(&scores[0] if scores.shape[0] else NULL, &perm[lo] if n else NULL, tmp, n)
            tied[q] = 0
            for i in range(1, n):
                if scores[perm[lo + i]] == scores[perm[lo + i - 1]]:
                    tied[q] = 1
                    break
        free(tmp)


cdef void _sort_grades_desc(int32_t *g, Py_ssize_t n) noexcept nogil:
    """Insertion/shell sort of a (usually short) grade list, descending."""
    cdef Py_ssize_t i, j, gap = 1
    cdef int32_t x
    while gap < n // 3:
        gap = 3 * gap + 1
    while gap >= 1:
        for i in range(gap, n):
            x = g[i]
            j = i
            while j >= gap and g[j - gap] < x:
                g[j] = g[j - gap]
                j -= gap
            g[j] = x
        gap //= 3


def metrics(const int64_t[::1] offsets, const int64_t[::1] perm, const int32_t[::1] grades,
            const int64_t[::1] qoffsets, int32_t[::1] qgrades, const int32_t[::1] codes,
            const int64_t[::1] ks, int level, double[:, ::1] out, int n_threads):
    """out[q, m] = measure codes[m] at cutoff ks[m] (0 = no cutoff) of query q.

    qgrades is sorted in place (descending per query). Grades >= level are relevant; grades in
    [0, level) are judged non-relevant; UNJUDGED entries are non-relevant and unjudged.
    """
    cdef Py_ssize_t nq = offsets.shape[0] - 1, nm = codes.shape[0], q, m, j, lo, n, cut
    cdef int64_t num_rel, num_nonrel, rel_ret, nonrel_so_far, k
    cdef int32_t g, code
    cdef double dcg, idcg, ap, rr, bp, gain, v, pmin
    with nogil:
        for q in prange(nq, schedule="dynamic", chunksize=64, num_threads=n_threads):
            lo = offsets[q]
            n = offsets[q + 1] - lo
            _sort_grades_desc(&qgrades[qoffsets[q]] if qoffsets[q + 1] > qoffsets[q] else NULL,
                              qoffsets[q + 1] - qoffsets[q])
            num_rel = 0
            num_nonrel = 0
            for j in range(qoffsets[q], qoffsets[q + 1]):
                if qgrades[j] >= level:
                    num_rel = num_rel + 1
                elif qgrades[j] >= 0:
                    num_nonrel = num_nonrel + 1
            for m in range(nm):
                code = codes[m]
                k = ks[m]
                cut = n if (k == 0 or k > n) else k
                v = 0.0
                if code == 0 or code == 1:  # nDCG (gain = grade) / nDCG with gain 2^grade - 1
                    dcg = 0.0
                    for j in range(cut):
                        g = grades[perm[lo + j]]
                        if g > 0:
                            gain = g if code == 0 else pow(2.0, g) - 1.0
                            dcg = dcg + gain / log2(j + 2.0)
                    idcg = 0.0
                    for j in range(qoffsets[q + 1] - qoffsets[q]):
                        if k != 0 and j >= k:
                            break
                        g = qgrades[qoffsets[q] + j]
                        if g <= 0:
                            break
                        gain = g if code == 0 else pow(2.0, g) - 1.0
                        idcg = idcg + gain / log2(j + 2.0)
                    v = dcg / idcg if idcg > 0 else 0.0
                elif code == 2:  # average precision
                    ap = 0.0
                    rel_ret = 0
                    for j in range(cut):
                        if grades[perm[lo + j]] >= level:
                            rel_ret = rel_ret + 1
                            ap = ap + rel_ret / (j + 1.0)
                    v = ap / num_rel if num_rel > 0 else 0.0
                elif code == 3:  # reciprocal rank
                    for j in range(cut):
                        if grades[perm[lo + j]] >= level:
                            v = 1.0 / (j + 1.0)
                            break
                elif code == 4 or code == 5 or code == 7:  # precision, recall, hit rate
                    rel_ret = 0
                    for j in range(cut):
                        if grades[perm[lo + j]] >= level:
                            rel_ret = rel_ret + 1
                    if code == 4:
                        v = rel_ret / <double>k
                    elif code == 5:
                        v = rel_ret / <double>num_rel if num_rel > 0 else 0.0
                    else:
                        v = 1.0 if rel_ret > 0 else 0.0
                elif code == 6:  # R-precision
                    rel_ret = 0
                    for j in range(num_rel if num_rel < n else n):
                        if grades[perm[lo + j]] >= level:
                            rel_ret = rel_ret + 1
                    v = rel_ret / <double>num_rel if num_rel > 0 else 0.0
                elif code == 8:  # bpref
                    bp = 0.0
                    nonrel_so_far = 0
                    pmin = <double>(num_nonrel if num_nonrel < num_rel else num_rel)
                    for j in range(n):
                        g = grades[perm[lo + j]]
                        if g == UNJUDGED_GRADE:
                            continue
                        if g >= level:
                            if nonrel_so_far > 0:
                                bp = bp + 1.0 - (nonrel_so_far if nonrel_so_far < num_rel else num_rel) / pmin
                            else:
                                bp = bp + 1.0
                        elif g >= 0:
                            nonrel_so_far = nonrel_so_far + 1
                    v = bp / num_rel if num_rel > 0 else 0.0
                out[q, m] = v
