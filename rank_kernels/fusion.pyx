"""Rank fusion kernels (the "fusion" kernel family).

Several runs are encoded once as flat columns grouped by (query, run): segment
``s = q * n_runs + r`` holds run r's documents for query q in ``seg_off[s]:seg_off[s+1]`` of
`docs` (int64 document ids, interned per query: each query's ids are one contiguous range)
and `scores` (float64). `encode_runs` builds the columns from ``{qid: {docid: score}}`` dicts
in one pass over their items.

`fuse` then combines, for each query (one OpenMP iteration each, no GIL): every run's
documents are normalised (per query and run), turned into a contribution (score, or a
function of the rank), and merged by document through a per-thread table indexed by document
id (no hashing, no sort). Methods: CombSUM, CombMNZ, CombMAX, CombMIN, CombANZ, CombMED,
Borda count, ISR, weighted sum, RRF. No validation here: `rank.fusion` checks its inputs.
"""
from cpython.dict cimport PyDict_GetItem, PyDict_Next, PyDict_SetItem, PyDict_Size
from cpython.float cimport PyFloat_AS_DOUBLE, PyFloat_Check
from cpython.object cimport PyObject
from cython.parallel cimport parallel, prange
from libc.math cimport NAN, isnan, sqrt
from libc.stdint cimport int64_t
from libc.stdlib cimport free, malloc

import numpy as np

# Method and normalisation codes (the Python layer maps names to these).
COMBSUM, COMBMNZ, COMBMAX, COMBMIN, COMBANZ, COMBMED, BORDA, ISR, WSUM, RRF = range(10)
NORM_NONE, NORM_MINMAX, NORM_ZMUV, NORM_SUM, NORM_MAX, NORM_RANK = range(6)


cdef double _score(object value, object qid, object doc, Py_ssize_t r) except? -1.0:
    if PyFloat_Check(value):
        return PyFloat_AS_DOUBLE(value)
    if isinstance(value, (str, bytes)) or value is None:
        raise TypeError(f"runs[{r}][{qid!r}][{doc!r}]: score is not a number: {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(f"runs[{r}][{qid!r}][{doc!r}]: score is not a number: {value!r}") from None


def encode_runs(list runs):
    """(qids, names list, seg_off int64 (nq*nr+1,), docs int64, scores float64).

    Queries are taken in order of first appearance over the runs. Document ids are interned
    per query (a small dictionary that stays in cache), in order of first appearance, and
    numbered consecutively over the queries: docs[i] indexes `names`, and the ids of one
    query form one contiguous range.
    """
    cdef Py_ssize_t nr = len(runs), r, q, nq, pos, pos2, e = 0, total = 0
    cdef PyObject *qk
    cdef PyObject *qv
    cdef PyObject *dk
    cdef PyObject *dv
    cdef PyObject *found
    cdef dict qindex = {}, local, run, d
    cdef list qids = [], names = []
    cdef object qid
    cdef int64_t base
    for r in range(nr):
        run = <dict>runs[r]
        pos = 0
        while PyDict_Next(run, &pos, &qk, &qv):
            if not isinstance(<object>qv, dict):
                raise TypeError(f"runs[{r}][{(<object>qk)!r}]: expected a dict {{docid: score}}, got {type(<object>qv).__name__}")
            if PyDict_GetItem(qindex, <object>qk) == NULL:
                qindex[<object>qk] = len(qids)
                qids.append(<object>qk)
            total += PyDict_Size(<object>qv)
    nq = len(qids)
    seg_off = np.zeros(nq * nr + 1, np.int64)
    docs = np.empty(total, np.int64)
    scores = np.empty(total, np.float64)
    cdef int64_t[::1] so = seg_off
    cdef int64_t[::1] dd = docs
    cdef double[::1] sc = scores
    for q in range(nq):
        qid = qids[q]
        local = {}
        base = len(names)
        for r in range(nr):
            found = PyDict_GetItem(<dict>runs[r], qid)
            if found != NULL:
                d = <dict>found
                pos2 = 0
                while PyDict_Next(d, &pos2, &dk, &dv):
                    found = PyDict_GetItem(local, <object>dk)
                    if found == NULL:
                        dd[e] = len(names)
                        PyDict_SetItem(local, <object>dk, len(names) - base)
                        names.append(<object>dk)
                    else:
                        dd[e] = base + <int64_t><object>found
                    sc[e] = _score(<object>dv, qid, <object>dk, r)
                    e += 1
            so[q * nr + r + 1] = e
    return qids, names, seg_off, docs, scores


cdef double _median(double *v, Py_ssize_t n) noexcept nogil:
    """Median of v[0:n] (n >= 1), sorting v in place; mean of the two middle values if n is even."""
    cdef Py_ssize_t i, j
    cdef double x
    for i in range(1, n):
        x = v[i]
        j = i - 1
        while j >= 0 and v[j] > x:
            v[j + 1] = v[j]
            j -= 1
        v[j + 1] = x
    if n % 2:
        return v[n // 2]
    return 0.5 * (v[n // 2 - 1] + v[n // 2])


def fuse(const int64_t[::1] seg_off, const int64_t[::1] docs, const double[::1] scores,
         const int64_t[::1] perm, Py_ssize_t n_runs, Py_ssize_t n_vocab, int method, int norm,
         const double[::1] weights, double k, int64_t[::1] out_docs, double[::1] out_scores,
         int64_t[::1] out_count, int n_threads):
    """Fuse every query; query q's results go to out_*[seg_off[q*n_runs] : + out_count[q]].

    perm gives, per segment, the positions of its entries in rank order (best first).
    """
    cdef Py_ssize_t nq = (seg_off.shape[0] - 1) // n_runs, nr = n_runs
    cdef Py_ssize_t q, r, i, j, a, n, m, base, maxq = 0, cnt, ii
    cdef int64_t e, d
    cdef int64_t *slot
    cdef int64_t *local
    cdef double *vals
    cdef double *tmp
    cdef double lo, hi, mean, sd, tot, x, den, acc, mx, mn
    for q in range(nq):
        if seg_off[(q + 1) * nr] - seg_off[q * nr] > maxq:
            maxq = seg_off[(q + 1) * nr] - seg_off[q * nr]
    with nogil, parallel(num_threads=n_threads):
        slot = <int64_t *>malloc((n_vocab + 1) * sizeof(int64_t))
        local = <int64_t *>malloc((maxq + 1) * sizeof(int64_t))
        vals = <double *>malloc((maxq * nr + 1) * sizeof(double))
        tmp = <double *>malloc((nr + 1) * sizeof(double))
        for ii in range(n_vocab):
            slot[ii] = -1
        for q in prange(nq, schedule="dynamic", chunksize=32):
            m = 0
            for r in range(nr):
                a = seg_off[q * nr + r]
                n = seg_off[q * nr + r + 1] - a
                if n == 0:
                    continue
                # Per-segment statistics for the normalisation.
                lo = scores[a]
                hi = scores[a]
                tot = 0.0
                for i in range(n):
                    x = scores[a + i]
                    if x < lo:
                        lo = x
                    if x > hi:
                        hi = x
                    tot = tot + x
                mean = tot / n
                sd = 0.0
                if norm == 2:
                    for i in range(n):
                        sd = sd + (scores[a + i] - mean) * (scores[a + i] - mean)
                    sd = sqrt(sd / n)
                for i in range(n):
                    e = perm[a + i]
                    d = docs[e]
                    j = slot[d]
                    if j < 0:
                        j = m
                        slot[d] = m
                        local[m] = d
                        for cnt in range(nr):
                            vals[m * nr + cnt] = NAN
                        m = m + 1
                    if method == 9:  # RRF
                        x = 1.0 / (k + i + 1.0)
                    elif method == 7:  # ISR
                        x = 1.0 / ((i + 1.0) * (i + 1.0))
                    elif method == 6:  # Borda: keep the 0-based rank, scored once m is known
                        x = <double>i
                    else:
                        x = scores[e]
                        if norm == 1:
                            den = hi - lo
                            x = (x - lo) / (den if den > 1e-9 else 1e-9)
                        elif norm == 2:
                            x = (x - mean) / (sd if sd > 1e-9 else 1e-9)
                        elif norm == 3:
                            den = tot - lo * n
                            x = (x - lo) / (den if den > 1e-9 else 1e-9)
                        elif norm == 4:
                            x = x / (hi if hi > 1e-9 else 1e-9)
                        elif norm == 5:
                            x = 1.0 - i / <double>n
                    vals[j * nr + r] = x
            base = seg_off[q * nr]
            for j in range(m):
                acc = 0.0
                cnt = 0
                mx = 0.0
                mn = 0.0
                for r in range(nr):
                    x = vals[j * nr + r]
                    if method == 6:
                        if isnan(x):
                            acc = acc + (m - (seg_off[q * nr + r + 1] - seg_off[q * nr + r]) + 1) / 2.0
                        else:
                            acc = acc + (m - x)
                        continue
                    if isnan(x):
                        continue
                    if cnt == 0 or x > mx:
                        mx = x
                    if cnt == 0 or x < mn:
                        mn = x
                    tmp[cnt] = x
                    cnt = cnt + 1
                    if method == 8:
                        acc = acc + weights[r] * x
                    else:
                        acc = acc + x
                if method == 1 or method == 7:  # CombMNZ, ISR
                    acc = acc * cnt
                elif method == 2:
                    acc = mx
                elif method == 3:
                    acc = mn
                elif method == 4:
                    acc = acc / cnt
                elif method == 5:
                    acc = _median(tmp, cnt)
                out_docs[base + j] = local[j]
                out_scores[base + j] = acc
                slot[local[j]] = -1
            out_count[q] = m
        free(slot)
        free(local)
        free(vals)
        free(tmp)
