"""Rank fusion kernels (the "fusion" kernel family).

Several runs are encoded once as flat columns grouped by (query, run): segment
``s = q * n_runs + r`` holds run r's documents for query q in ``seg_off[s]:seg_off[s+1]`` of
`docs` (int64 document ids, interned per query: each query's ids are one contiguous range)
and `scores` (float64). `encode_runs` builds the columns from ``{qid: {docid: score}}`` dicts
in one pass over their items.

The Python layer turns every entry into a contribution (its normalised score, or a function
of its rank: the per-method formulas live in ``rank.fusion``); the kernels here merge the
contributions of the runs document by document, for each query in one OpenMP iteration
without the GIL, through a per-thread table indexed by document id (no hashing):

- `combine` applies one of the COMBINE rules (a weighted sum, a sum times a function of the
  number of runs that retrieved the document, max, min, mean, median);
- `condorcet` orders each query's candidates by pairwise (weighted) majority votes;
- `order_segments` sorts each segment by value descending (ties by position).

Codes are named in ONE place: the `cdef enum` below, and the `COMBINE` table that maps the
names the Python layer uses to those enum values. No validation here: `rank.fusion` checks
its inputs. Allocation failure is recorded per thread and raised as MemoryError.
"""
from cpython.dict cimport PyDict_GetItem, PyDict_Next, PyDict_SetItem, PyDict_Size
from cpython.object cimport PyObject
from cython.parallel cimport parallel, prange
from libc.math cimport NAN, isnan, log, pow, sqrt
from libc.stdint cimport int64_t
from libc.stdlib cimport free, qsort

from rank_kernels._mem cimport (check_status, new_status, rk_malloc, rk_mem_init, rk_set_fail_alloc, rk_status,
                               rk_status_fail, rk_status_mine)
from rank_kernels._number cimport as_number
from rank_kernels._segments cimport max_segment

import numpy as np


cdef enum CombineRule:
    SUM = 0       # sum_r w_r x_r
    POW_N = 1     # (sum_r w_r x_r) * n ** p             (CombMNZ p=1, CombGMNZ p=gamma, mixed p=1/2)
    LOG_N = 2     # (sum_r w_r x_r) * log(n + p)         (log_ISR p=0, logn_ISR p=sigma)
    W_MNZ = 3     # (sum_r x_r) * (sum_r w_r)            (weighted MNZ)
    MAX = 4       # max_r x_r
    MIN = 5       # min_r x_r
    MEAN = 6      # (sum_r x_r) / n                      (CombANZ)
    MEDIAN = 7    # median_r x_r                         (CombMED)

#: Combination rules by name (the sums and maxima run over the runs that retrieved the
#: document, or that were given a fill value for it; n is their number).
COMBINE = {"sum": SUM, "pow_n": POW_N, "log_n": LOG_N, "w_mnz": W_MNZ, "max": MAX, "min": MIN,
           "mean": MEAN, "median": MEDIAN}

rk_mem_init()  # work buffers fail under the RANK_KERNELS_FAIL_ALLOC=1 test hook (see mem.h)


def _fail_allocations(bint on):
    """Test hook: while on, every allocation of these kernels fails (MemoryError is expected)."""
    rk_set_fail_alloc(on)


cdef double _score(object value, object qid, object doc, Py_ssize_t r) except? -1.0:
    cdef double x
    if not as_number(value, &x):
        raise TypeError(f"runs[{r}][{qid!r}][{doc!r}]: score is not a number: {value!r}")
    return x


def encode_runs(list runs):
    """(qids, names list, seg_off int64 (nq*nr+1,), docs int64, scores float64, name_off int64 (nq+1,)).

    Queries are taken in order of first appearance over the runs. Document ids are interned
    per query (a small dictionary that stays in cache), in order of first appearance, and
    numbered consecutively over the queries: docs[i] indexes `names`, and the ids of query q
    form the range name_off[q]:name_off[q+1].
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
    name_off = np.zeros(nq + 1, np.int64)
    docs = np.empty(total, np.int64)
    scores = np.empty(total, np.float64)
    cdef int64_t[::1] so = seg_off
    cdef int64_t[::1] no = name_off
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
        no[q + 1] = len(names)
    return qids, names, seg_off, docs, scores, name_off


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


cdef Py_ssize_t _max_query(const int64_t[::1] seg_off, Py_ssize_t nq, Py_ssize_t nr) noexcept nogil:
    cdef Py_ssize_t q, maxq = 0
    for q in range(nq):
        if seg_off[(q + 1) * nr] - seg_off[q * nr] > maxq:
            maxq = seg_off[(q + 1) * nr] - seg_off[q * nr]
    return maxq


ctypedef fused cell_t:
    double
    int64_t


cdef inline Py_ssize_t _gather(const int64_t *seg_off, const int64_t *docs, const int64_t *perm,
                               const cell_t *source, cell_t fill, Py_ssize_t q, Py_ssize_t nr, int64_t *slot,
                               int64_t *local, cell_t *cells) noexcept nogil:
    """The candidates of query q: local[j] = the j-th distinct document over its nr run segments
    (slot[doc] = j, slot all -1 on entry), cells[j * nr + r] = source[entry] of run r, or fill
    where run r lacks the document. Returns the number of candidates."""
    cdef Py_ssize_t m = 0, r, i, a, n, j, o
    cdef int64_t e, d
    for r in range(nr):
        a = seg_off[q * nr + r]
        n = seg_off[q * nr + r + 1] - a
        for i in range(n):
            e = perm[a + i]
            d = docs[e]
            j = slot[d]
            if j < 0:
                j = m
                slot[d] = m
                local[m] = d
                for o in range(nr):
                    cells[m * nr + o] = fill
                m = m + 1
            cells[j * nr + r] = source[e]
    return m


cdef int64_t *_thread_work(Py_ssize_t n_vocab, Py_ssize_t maxq, Py_ssize_t extra, rk_status *st) noexcept nogil:
    """One thread's work area for `_gather`, in one allocation of 8-byte words: slot (n_vocab + 1,
    all -1), then local (maxq + 1,), then `extra` words for the caller (at slot + n_vocab + maxq + 2).
    NULL after marking the thread's status slot when it cannot be allocated."""
    cdef int64_t *slot = <int64_t *>rk_malloc((n_vocab + maxq + 2 + extra) * sizeof(int64_t))
    cdef Py_ssize_t i
    if slot == NULL:
        rk_status_fail(st)
        return NULL
    for i in range(n_vocab):
        slot[i] = -1
    return slot


def combine(const int64_t[::1] seg_off, const int64_t[::1] docs, const double[::1] values,
            const double[::1] fill, const int64_t[::1] perm, Py_ssize_t n_runs, Py_ssize_t n_vocab,
            int rule, double p, const double[::1] weights, int64_t[::1] out_docs,
            double[::1] out_scores, int64_t[::1] out_count, int n_threads):
    """Merge every query; query q's results go to out_*[seg_off[q*n_runs] : + out_count[q]].

    values[e] is entry e's contribution; fill[s] (NaN: none) is what segment s contributes
    for a candidate of its query it did not retrieve (Borda's and BayesFuse's missing value).
    perm gives, per segment, the order in which its entries are visited, which fixes the
    output order of each query's documents (order of first appearance).
    """
    cdef Py_ssize_t nr = n_runs, nq = (seg_off.shape[0] - 1) // nr
    cdef Py_ssize_t q, r, i, j, a, n, m, base, maxq, cnt
    cdef int64_t e, d
    cdef int64_t *slot
    cdef int64_t *local
    cdef double *vals
    cdef double *tmp
    cdef double x, acc, plain, wsum, mx, mn
    cdef rk_status *st = new_status(n_threads, b"fusion")
    maxq = _max_query(seg_off, nq, nr)
    with nogil, parallel(num_threads=n_threads):
        # per thread: slot, local, then vals (maxq * nr + 1) and tmp (nr + 1) doubles
        slot = _thread_work(n_vocab, maxq, maxq * nr + nr + 2, st)
        for q in prange(nq, schedule="dynamic", chunksize=32):
            if slot == NULL:
                continue
            local = slot + n_vocab + 1
            vals = <double *>(local + maxq + 1)
            tmp = vals + maxq * nr + 1
            m = _gather(&seg_off[0], &docs[0], &perm[0], &values[0], NAN, q, nr, slot, local, vals)
            base = seg_off[q * nr]
            for j in range(m):
                acc = 0.0
                plain = 0.0
                wsum = 0.0
                cnt = 0
                mx = 0.0
                mn = 0.0
                for r in range(nr):
                    x = vals[j * nr + r]
                    if isnan(x):
                        x = fill[q * nr + r]
                        if isnan(x):
                            continue
                    if cnt == 0 or x > mx:
                        mx = x
                    if cnt == 0 or x < mn:
                        mn = x
                    tmp[cnt] = x
                    cnt = cnt + 1
                    acc = acc + weights[r] * x
                    plain = plain + x
                    wsum = wsum + weights[r]
                if rule == POW_N:
                    acc = acc * pow(<double>cnt, p)
                elif rule == LOG_N:
                    acc = acc * log(cnt + p)
                elif rule == W_MNZ:
                    acc = plain * wsum
                elif rule == MAX:
                    acc = mx
                elif rule == MIN:
                    acc = mn
                elif rule == MEAN:
                    acc = plain / cnt
                elif rule == MEDIAN:
                    acc = _median(tmp, cnt)
                out_docs[base + j] = local[j]
                out_scores[base + j] = acc
                slot[local[j]] = -1
            out_count[q] = m
        free(slot)
    check_status(st, b"fusion")


cdef inline bint _before(Py_ssize_t x, Py_ssize_t y, const int64_t *pos, Py_ssize_t nr,
                         const double *weights, double total) noexcept nogil:
    """Candidate x goes before y: x's votes (runs ranking x above y) >= y's (all the others)."""
    cdef double votes = 0.0
    cdef Py_ssize_t r
    for r in range(nr):
        if pos[x * nr + r] < pos[y * nr + r]:
            votes = votes + weights[r]
    return votes >= total - votes


def condorcet(const int64_t[::1] seg_off, const int64_t[::1] docs, const int64_t[::1] rank,
              const int64_t[::1] perm, Py_ssize_t n_runs, Py_ssize_t n_vocab, const double[::1] weights,
              int64_t[::1] out_docs, double[::1] out_scores, int64_t[::1] out_count, int n_threads):
    """Condorcet fusion of every query; output as for `combine` (score c - i for place i).

    Candidates (in order of first appearance, visiting segments in `perm` order) are merge
    sorted (stable) with "x before y when the runs ranking x above y weigh at least half";
    a run that did not retrieve a document ranks it below every document it retrieved.
    """
    cdef Py_ssize_t nr = n_runs, nq = (seg_off.shape[0] - 1) // nr
    cdef Py_ssize_t q, r, i, j, a, n, m, base, maxq, width, lo, mid, hi, li, ri, o
    cdef int64_t e, d
    cdef int64_t *slot
    cdef int64_t *local
    cdef int64_t *pos
    cdef int64_t *order
    cdef int64_t *buf
    cdef int64_t *swap
    cdef int64_t *src
    cdef int64_t *dst
    cdef int64_t big = (<int64_t>1) << 62
    cdef double total = 0.0
    cdef const double *w = &weights[0]
    cdef rk_status *st = new_status(n_threads, b"fusion")
    for r in range(nr):
        total += weights[r]
    maxq = _max_query(seg_off, nq, nr)
    with nogil, parallel(num_threads=n_threads):
        # per thread: slot, local, then pos (maxq * nr + 1), order and buf (maxq + 1 each)
        slot = _thread_work(n_vocab, maxq, maxq * nr + 2 * maxq + 3, st)
        for q in prange(nq, schedule="dynamic", chunksize=16):
            if slot == NULL:
                continue
            local = slot + n_vocab + 1
            pos = local + maxq + 1
            order = pos + maxq * nr + 1
            buf = order + maxq + 1
            m = _gather(&seg_off[0], &docs[0], &perm[0], &rank[0], big, q, nr, slot, local, pos)
            src = order
            dst = buf
            for j in range(m):
                src[j] = j
            # Bottom-up stable merge sort of order[0:m] with the majority comparator.
            width = 1
            while width < m:
                lo = 0
                while lo < m:
                    mid = lo + width if lo + width < m else m
                    hi = lo + 2 * width if lo + 2 * width < m else m
                    li = lo
                    ri = mid
                    o = lo
                    while li < mid and ri < hi:
                        if _before(src[ri], src[li], pos, nr, w, total) and not \
                                _before(src[li], src[ri], pos, nr, w, total):
                            dst[o] = src[ri]
                            ri = ri + 1
                        else:
                            dst[o] = src[li]
                            li = li + 1
                        o = o + 1
                    while li < mid:
                        dst[o] = src[li]
                        li = li + 1
                        o = o + 1
                    while ri < hi:
                        dst[o] = src[ri]
                        ri = ri + 1
                        o = o + 1
                    lo = hi
                swap = src
                src = dst
                dst = swap
                width = width * 2
            base = seg_off[q * nr]
            for j in range(m):
                out_docs[base + j] = local[src[j]]
                out_scores[base + j] = <double>(m - j)
            for j in range(m):
                slot[local[j]] = -1
            out_count[q] = m
        free(slot)
    check_status(st, b"fusion")


ctypedef struct _Keyed:
    double value
    int64_t index


cdef int _cmp_desc(const void *a, const void *b) noexcept nogil:
    cdef const _Keyed *x = <const _Keyed *>a
    cdef const _Keyed *y = <const _Keyed *>b
    if x.value > y.value:
        return -1
    if x.value < y.value:
        return 1
    return -1 if x.index < y.index else (1 if x.index > y.index else 0)


def order_segments(const int64_t[::1] offsets, const double[::1] values, int64_t[::1] out, int n_threads):
    """out[offsets[s]:offsets[s+1]] = positions of segment s by value descending, ties by position."""
    cdef Py_ssize_t ns = offsets.shape[0] - 1, s, i, a, n, maxn = 0
    cdef _Keyed *buf
    cdef rk_status *st = new_status(n_threads, b"fusion")
    maxn = max_segment(offsets)
    with nogil, parallel(num_threads=n_threads):
        buf = <_Keyed *>rk_malloc((maxn + 1) * sizeof(_Keyed))
        if buf == NULL:
            rk_status_fail(st)
        for s in prange(ns, schedule="dynamic", chunksize=64):
            if rk_status_mine(st):
                continue
            a = offsets[s]
            n = offsets[s + 1] - a
            for i in range(n):
                buf[i].value = values[a + i]
                buf[i].index = a + i
            qsort(buf, n, sizeof(_Keyed), _cmp_desc)
            for i in range(n):
                out[a + i] = buf[i].index
        free(buf)
    check_status(st, b"fusion")
