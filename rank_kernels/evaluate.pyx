"""Evaluation kernels (the "evaluate" kernel family): columnar runs, per-query sorting, metrics.

A run is encoded once as flat columns: `offsets` (n_queries + 1, int64) delimits each query's
entries in `scores` (float64), `rels` (int64: the qrels grade of each retrieved document when
it is >= 0, NONPOOL when the document is absent from the query's qrels, UNJUDGED when the qrels
list it with a negative grade) and the document ids as UTF-8 bytes (the first 8 as a
big-endian integer, the rest copied into one buffer). `encode_run` builds these columns from
``{qid: {docid: score}}`` dicts in one pass over the dict items (C-API iteration, no
per-entry Python call); everything after it works on arrays without the GIL.

- `sort_run_segments` orders every segment as trec_eval does: score descending, equal scores by
  document id descending in byte order (strcmp on UTF-8, which is also code point order), all
  inside the kernel, so ties cost an integer comparison (ids that share their first 8 bytes, a
  memcmp), not a Python call.
- `sort_segments` (score descending, ties by position) and `sort_segments_keyed` (ties by an
  integer key descending) serve callers that hold interned ids (fusion).
- `metrics` computes every requested measure of every query from the sorted order, one query
  per iteration of an OpenMP loop.

No validation happens here: `rank.evaluate` checks its inputs first.
"""
from cpython.dict cimport PyDict_GetItem, PyDict_Next, PyDict_Size
from cpython.float cimport PyFloat_AS_DOUBLE, PyFloat_Check
from cpython.long cimport PyLong_AsLongLongAndOverflow, PyLong_CheckExact
from cpython.object cimport PyObject
from cpython.unicode cimport PyUnicode_Check
from cython.parallel cimport parallel, prange
from libc.math cimport exp2, log, log2, lround
from libc.stdint cimport int32_t, int64_t, uint64_t, uintptr_t
from libc.stdlib cimport free
from libc.string cimport memcmp, memcpy

import numpy as np

from rank_kernels._mem cimport (check_status, new_status, rk_malloc, rk_mem_init, rk_realloc, rk_status,
                               rk_status_fail)
from rank_kernels._number cimport as_number
from rank_kernels._segments cimport max_segment

rk_mem_init()  # work buffers fail under the RANK_KERNELS_FAIL_ALLOC=1 test hook (see mem.h)


cdef extern from "Python.h":
    const char *PyUnicode_AsUTF8AndSize(object s, Py_ssize_t *size) except NULL
    bint PyUnicode_IS_COMPACT_ASCII(object s)
    Py_ssize_t PyUnicode_GET_LENGTH(object s)
    void *PyUnicode_DATA(object s)

cdef extern from *:
    """
    #include <string.h>
    #include <stdint.h>
    /* The first 8 bytes of s (zero-padded) as a big-endian integer: comparing two of these
       compares the prefixes in byte order. */
    static inline uint64_t rk_prefix8(const char *s, Py_ssize_t n) {
        unsigned char b[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        memcpy(b, s, (size_t)(n < 8 ? n : 8));
        return ((uint64_t)b[0] << 56) | ((uint64_t)b[1] << 48) | ((uint64_t)b[2] << 40) |
               ((uint64_t)b[3] << 32) | ((uint64_t)b[4] << 24) | ((uint64_t)b[5] << 16) |
               ((uint64_t)b[6] << 8) | (uint64_t)b[7];
    }
    """
    uint64_t rk_prefix8(const char *s, Py_ssize_t n) nogil


cdef int64_t NONPOOL_REL = -1
cdef int64_t UNJUDGED_REL = -2
NONPOOL = NONPOOL_REL
UNJUDGED = UNJUDGED_REL

# Measure codes: one enum, the kernel's switch and the Python layer's table (rank.evaluate.metrics
# reads the module constants below) use the same names.
cdef enum Measure:
    M_NDCG = 0  # k: cutoff (0 = none); gains table
    M_NDCG_EXP = 1  # k
    M_MAP = 2  # k
    M_RECIP_RANK = 3  # k
    M_PRECISION = 4  # k (required)
    M_RECALL = 5  # k
    M_R_PRECISION = 6
    M_SUCCESS = 7  # k (required)
    M_BPREF = 8
    M_GM_MAP = 9
    M_GM_BPREF = 10
    M_NUM_RET = 11
    M_NUM_REL = 12
    M_NUM_REL_RET = 13
    M_NUM_NONREL_JUDGED_RET = 14
    M_NUM_Q = 15
    M_IPREC_AT_RECALL = 16  # p[0]: recall level
    M_RPREC_MULT = 17  # p[0]: multiple of R
    M_INFAP = 18
    M_UTILITY = 19  # p[0..3]: coefficients
    M_BING = 20
    M_G = 21  # gains table
    M_NDCG_REL = 22  # gains table
    M_RNDCG = 23  # gains table
    M_RELATIVE_P = 24  # k (required)
    M_SET_P = 25
    M_SET_RELATIVE_P = 26
    M_SET_RECALL = 27
    M_SET_MAP = 28
    M_SET_F = 29  # p[0]: beta
    M_COUNT

NDCG = M_NDCG
NDCG_EXP = M_NDCG_EXP
MAP = M_MAP
RECIP_RANK = M_RECIP_RANK
PRECISION = M_PRECISION
RECALL = M_RECALL
R_PRECISION = M_R_PRECISION
SUCCESS = M_SUCCESS
BPREF = M_BPREF
GM_MAP = M_GM_MAP
GM_BPREF = M_GM_BPREF
NUM_RET = M_NUM_RET
NUM_REL = M_NUM_REL
NUM_REL_RET = M_NUM_REL_RET
NUM_NONREL_JUDGED_RET = M_NUM_NONREL_JUDGED_RET
NUM_Q = M_NUM_Q
IPREC_AT_RECALL = M_IPREC_AT_RECALL
RPREC_MULT = M_RPREC_MULT
INFAP = M_INFAP
UTILITY = M_UTILITY
BING = M_BING
G = M_G
NDCG_REL = M_NDCG_REL
RNDCG = M_RNDCG
RELATIVE_P = M_RELATIVE_P
SET_P = M_SET_P
SET_RELATIVE_P = M_SET_RELATIVE_P
SET_RECALL = M_SET_RECALL
SET_MAP = M_SET_MAP
SET_F = M_SET_F
N_CODES = M_COUNT

DEF MIN_GEO_MEAN = 0.00001
DEF INFAP_EPSILON = 0.00001


cdef int64_t _grade(object value) except? -1:
    """A qrels grade as int64; TypeError for anything that is not an integral number in range."""
    cdef double f
    cdef int overflow = 0
    cdef long long g
    if PyLong_CheckExact(value):
        g = PyLong_AsLongLongAndOverflow(value, &overflow)
        if overflow:
            raise TypeError(f"relevance grade {value!r} is out of the int64 range")
        return <int64_t>g
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"relevance grade {value!r} is not an integer")
    if isinstance(value, (int, np.integer)):
        try:
            g = int(value)
        except OverflowError:
            raise TypeError(f"relevance grade {value!r} is out of the int64 range") from None
        if g != int(value):
            raise TypeError(f"relevance grade {value!r} is out of the int64 range")
        return <int64_t>g
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"relevance grade {value!r} is not an integer") from None
    if f != f or f < -9.2e18 or f > 9.2e18 or f != <double><int64_t>f:
        raise TypeError(f"relevance grade {value!r} is not an integer")
    return <int64_t>f


cdef double _score(object value, object qid, object doc) except? -1.0:
    cdef double x
    if not as_number(value, &x):
        raise TypeError(f"score of document {doc!r} in query {qid!r} is not a number: {value!r}")
    return x


def encode_run(dict run, dict qrels, bint complete=False):
    """Encode the queries of `run` that `qrels` judges (non-empty), in the run's order; with
    `complete`, then every other query of `qrels` as an empty ranking (trec_eval's -c).

    Returns (qids list, offsets int64 (nq+1,), scores float64 (total,), rels int64 (total,),
    ids: (pfx uint64 (total,): the first 8 UTF-8 bytes of each document id, big-endian,
    zero-padded; lens int64 (total,): the byte length of each id; toff int64 (total,): where
    the bytes after the first 8 start in tails; tails uint8: those bytes, concatenated),
    qoffsets int64 (nq+1,), qgrades int64 (every grade of each query's qrels, in dict order)).
    The document ids are copied, so nothing the kernels read can be freed under them.
    TypeError names the first score or grade that is not a number, or a document id that is
    not a str.
    """
    cdef Py_ssize_t pos = 0, pos2, total = 0, n = 0, i = 0, nj = 0, j = 0, size = 0, b
    cdef Py_ssize_t tlen = 0, tcap = 0
    cdef PyObject *qk
    cdef PyObject *qv
    cdef PyObject *dk
    cdef PyObject *dv
    cdef PyObject *judged
    cdef list qids = []
    cdef list judged_list = []
    cdef list run_list = []
    cdef const char *p
    cdef int64_t g
    cdef unsigned char *tbuf = NULL
    cdef unsigned char *grown
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
    if complete:
        taken = set(qids)
        pos = 0
        while PyDict_Next(qrels, &pos, &qk, &qv):
            if (<object>qk) in taken:
                continue
            if not isinstance(<object>qv, dict):
                raise TypeError(f"qrels[{(<object>qk)!r}]: expected a dict {{docid: grade}}, got {type(<object>qv).__name__}")
            if PyDict_Size(<object>qv) == 0:
                continue
            qids.append(<object>qk)
            run_list.append({})
            judged_list.append(<object>qv)
            nj += PyDict_Size(<object>qv)
    n = len(qids)
    offsets = np.empty(n + 1, np.int64)
    scores = np.empty(total, np.float64)
    rels = np.empty(total, np.int64)
    toffs = np.empty(total, np.int64)
    lens = np.empty(total, np.int64)
    pfxs = np.empty(total, np.uint64)
    qgrades = np.empty(nj, np.int64)
    qoffsets = np.empty(n + 1, np.int64)
    cdef int64_t[::1] off = offsets
    cdef double[::1] sc = scores
    cdef int64_t[::1] rl = rels
    cdef int64_t[::1] to = toffs
    cdef int64_t[::1] ln = lens
    cdef uint64_t[::1] px = pfxs
    cdef int64_t[::1] qoff = qoffsets
    cdef int64_t[::1] qgr = qgrades
    cdef dict docs, jd
    off[0] = 0
    qoff[0] = 0
    try:
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
                if PyFloat_Check(<object>dv):
                    sc[total] = PyFloat_AS_DOUBLE(<object>dv)
                else:
                    sc[total] = _score(<object>dv, qids[i], <object>dk)
                if not PyUnicode_Check(<object>dk):
                    raise TypeError(f"run[{qids[i]!r}]: document id {(<object>dk)!r} is not a str")
                if PyUnicode_IS_COMPACT_ASCII(<object>dk):
                    p = <const char *>PyUnicode_DATA(<object>dk)
                    size = PyUnicode_GET_LENGTH(<object>dk)
                else:
                    p = PyUnicode_AsUTF8AndSize(<object>dk, &size)
                ln[total] = size
                px[total] = rk_prefix8(p, size)
                to[total] = tlen
                if size > 8:
                    if tlen + size - 8 > tcap:
                        tcap = 2 * tcap + size + 4096
                        grown = <unsigned char *>rk_realloc(tbuf, tcap)
                        if grown == NULL:
                            raise MemoryError()
                        tbuf = grown
                    memcpy(tbuf + tlen, p + 8, size - 8)
                    tlen += size - 8
                judged = PyDict_GetItem(jd, <object>dk)
                if judged == NULL:
                    rl[total] = NONPOOL_REL
                else:
                    g = _grade(<object>judged)
                    rl[total] = g if g >= 0 else UNJUDGED_REL
                total += 1
            off[i + 1] = total
        tails = np.empty(tlen + 1, np.uint8)
        if tlen:
            memcpy(<void *>(<uintptr_t>tails.ctypes.data), tbuf, tlen)
    finally:
        free(tbuf)
    return qids, offsets, scores, rels, (pfxs, lens, toffs, tails), qoffsets, qgrades


# ---------------------------------------------------------------------------------------------
# Sorting: the one stable sort (sort.h) in the orders of evaluate_sort.h.

cdef extern from "evaluate_sort.h" nogil:
    ctypedef struct SortCtx "ev_sort_ctx":
        const double *s
        const unsigned char *tails
        const int64_t *toff
        const int64_t *len
        const uint64_t *pfx
        const int64_t *key
        int mode
    ctypedef struct Item "ev_item":
        uint64_t skey
        uint64_t pfx
        int64_t pos
    void _msort "ev_msort"(const SortCtx *c, int64_t *idx, int64_t *tmp, Py_ssize_t n)
    void _isort "ev_isort"(const SortCtx *c, Item *x, Item *tmp, Py_ssize_t n)


cdef inline uint64_t _score_key(double x) noexcept nogil:
    """Unsigned key ordered as the double x (-0.0 and 0.0 equal, as trec_eval compares them)."""
    cdef double y = x + 0.0
    cdef uint64_t u
    memcpy(&u, &y, sizeof(u))  # the bits of y (a pointer cast would break strict aliasing)
    if u >> 63:
        return ~u
    return u | (<uint64_t>1 << 63)


cdef void _sort_segment(const SortCtx *ctx, Py_ssize_t lo, Py_ssize_t n, int64_t *perm, void *work,
                        Py_ssize_t maxn) noexcept nogil:
    """perm[lo:lo+n] = positions lo.. of one segment in the context's order. work: maxn + 1
    int64 (modes 0, 2: positions merge-sorted) or 2 * maxn + 2 items (mode 1: (score key, id
    prefix, position) items, so that most comparisons read no scattered column)."""
    cdef Py_ssize_t i
    cdef Item *buf = <Item *>work
    if ctx.mode != 1:
        for i in range(n):
            perm[lo + i] = lo + i
        if n > 1:
            _msort(ctx, &perm[lo], <int64_t *>work, n)
        return
    for i in range(n):
        buf[i].skey = _score_key(ctx.s[lo + i])
        buf[i].pfx = ctx.pfx[lo + i]
        buf[i].pos = lo + i
    if n > 1:
        _isort(ctx, buf, buf + maxn + 1, n)
    for i in range(n):
        perm[lo + i] = buf[i].pos


cdef int _sort_all(const SortCtx *ctx, const int64_t[::1] offsets, int64_t[::1] perm, unsigned char *tied,
                   int n_threads, const char *what) except -1:
    """Sort every segment (one per OpenMP iteration, `_sort_segment`); tied[q] = 1 when two
    entries of segment q have equal scores (tied may be NULL). MemoryError naming `what` when a
    thread cannot allocate its work buffer."""
    cdef Py_ssize_t nq = offsets.shape[0] - 1, q, i, lo, n
    cdef Py_ssize_t maxn = max_segment(offsets)
    cdef size_t size = (2 * maxn + 2) * sizeof(Item) if ctx.mode == 1 else (maxn + 1) * sizeof(int64_t)
    cdef void *work
    cdef rk_status *st = new_status(n_threads, what)
    with nogil, parallel(num_threads=n_threads):
        work = rk_malloc(size)
        for q in prange(nq, schedule="dynamic", chunksize=64):
            if work == NULL:
                rk_status_fail(st)
                continue
            lo = offsets[q]
            n = offsets[q + 1] - lo
            _sort_segment(ctx, lo, n, &perm[0], work, maxn)
            if tied != NULL:
                tied[q] = 0
                for i in range(1, n):
                    if ctx.s[perm[lo + i]] == ctx.s[perm[lo + i - 1]]:
                        tied[q] = 1
                        break
        free(work)
    return check_status(st, what)


def sort_segments(const int64_t[::1] offsets, const double[::1] scores, int64_t[::1] perm,
                  unsigned char[::1] tied, int n_threads):
    """perm[offsets[q]:offsets[q+1]] = positions of segment q by score descending (stable);
    tied[q] = 1 when two entries of segment q have equal scores."""
    cdef SortCtx ctx
    ctx.s = &scores[0] if scores.shape[0] else NULL
    ctx.mode = 0
    _sort_all(&ctx, offsets, perm, &tied[0] if tied.shape[0] else NULL, n_threads, b"sort_segments")


def sort_segments_keyed(const int64_t[::1] offsets, const double[::1] scores, const int64_t[::1] keys,
                        int64_t[::1] perm, int n_threads):
    """perm[offsets[q]:offsets[q+1]] = positions of segment q by score descending, equal scores
    by keys descending (then by position). keys: int64 per position, e.g. the rank of each
    document id in string order, which makes this trec_eval's order."""
    cdef SortCtx ctx
    ctx.s = &scores[0] if scores.shape[0] else NULL
    ctx.key = &keys[0] if keys.shape[0] else NULL
    ctx.mode = 2
    _sort_all(&ctx, offsets, perm, NULL, n_threads, b"sort_segments_keyed")


def sort_run_segments(const int64_t[::1] offsets, const double[::1] scores, ids, int64_t[::1] perm,
                      int n_threads):
    """perm[offsets[q]:offsets[q+1]] = positions of segment q in trec_eval's order: score
    descending, equal scores by document id descending in byte order (ids: the
    (pfx, lens, toff, tails) columns of `encode_run`). Scores must not be NaN."""
    cdef const uint64_t[::1] pfx = ids[0]
    cdef const int64_t[::1] lens = ids[1]
    cdef const int64_t[::1] toff = ids[2]
    cdef const unsigned char[::1] tails = ids[3]
    cdef SortCtx ctx
    ctx.s = &scores[0] if scores.shape[0] else NULL
    ctx.pfx = &pfx[0] if pfx.shape[0] else NULL
    ctx.len = &lens[0] if lens.shape[0] else NULL
    ctx.toff = &toff[0] if toff.shape[0] else NULL
    ctx.tails = &tails[0] if tails.shape[0] else NULL
    ctx.mode = 1
    _sort_all(&ctx, offsets, perm, NULL, n_threads, b"sort_run_segments")


# ---------------------------------------------------------------------------------------------
# Metrics.

ctypedef fused grade_t:
    int64_t
    double


cdef void _sort_desc(grade_t *g, Py_ssize_t n) noexcept nogil:
    """Shell sort of a (usually short) list of grades or gains, descending."""
    cdef Py_ssize_t i, j, gap = 1
    cdef grade_t x
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


cdef struct Query:
    const int64_t *perm     # sorted positions of this query (first n are ranked)
    const int64_t *rels     # rel value by position (whole run)
    const int64_t *qg       # qrels grades of the query, sorted descending
    Py_ssize_t nj           # number of qrels grades
    Py_ssize_t n            # ranked documents (after max_docs)
    int64_t level
    int64_t num_rel         # qrels grades >= level
    int64_t num_nonrel      # qrels grades in [0, level)
    int64_t num_rel_ret     # relevant among the n ranked


cdef inline int64_t _rel(const Query *q, Py_ssize_t j) noexcept nogil:
    return q.rels[q.perm[j]]


cdef inline double _gain(int64_t rel, const int64_t *glev, const double *gval, Py_ssize_t ng) noexcept nogil:
    """Gain of a relevance value: the user's gain for that level if given, else the level itself;
    0 for documents outside the qrels or judged with a negative grade."""
    cdef Py_ssize_t i
    if rel < 0:
        return 0.0
    for i in range(ng):
        if glev[i] == rel:
            return gval[i]
    return <double>rel


cdef Py_ssize_t _ideal(const Query *q, const int64_t *glev, const double *gval, Py_ssize_t ng, bint expgain,
                       double *out) noexcept nogil:
    """Positive gains of the query's judged documents, sorted descending, into out; their count."""
    cdef Py_ssize_t i, m = 0
    cdef double x
    for i in range(q.nj):
        if q.qg[i] < 0:
            continue
        if expgain:
            x = exp2(<double>q.qg[i]) - 1.0
        else:
            x = _gain(q.qg[i], glev, gval, ng)
        if x > 0.0:
            out[m] = x
            m += 1
    _sort_desc(out, m)
    return m


cdef inline Py_ssize_t _cut(const Query *q, int64_t k) noexcept nogil:
    return q.n if (k <= 0 or k > q.n) else <Py_ssize_t>k


cdef int64_t _rel_in(const Query *q, Py_ssize_t cut) noexcept nogil:
    cdef Py_ssize_t j
    cdef int64_t r = 0
    for j in range(cut):
        if _rel(q, j) >= q.level:
            r += 1
    return r


cdef double _ap(const Query *q, Py_ssize_t cut) noexcept nogil:
    cdef Py_ssize_t j
    cdef int64_t r = 0
    cdef double s = 0.0
    for j in range(cut):
        if _rel(q, j) >= q.level:
            r += 1
            s += r / (j + 1.0)
    return s / q.num_rel if r > 0 else 0.0


cdef double _bpref(const Query *q) noexcept nogil:
    cdef Py_ssize_t j
    cdef int64_t g, nonrel = 0, a, b
    cdef double bp = 0.0
    b = q.num_nonrel if q.num_nonrel < q.num_rel else q.num_rel
    for j in range(q.n):
        g = _rel(q, j)
        if g < 0:
            continue
        if g < q.level:
            nonrel += 1
        elif nonrel > 0:
            a = nonrel if nonrel < q.num_rel else q.num_rel
            bp += 1.0 - (<double>a) / (<double>b)
        else:
            bp += 1.0
    return bp / q.num_rel if q.num_rel > 0 else 0.0


cdef double _iprec(const Query *q, double p) noexcept nogil:
    """Interpolated precision at recall p: max precision at or after the rank of relevant
    document number lround(p * R) (the first one for 0); 0 when fewer are retrieved."""
    cdef int64_t c = <int64_t>(p * q.num_rel + 0.9), r
    cdef Py_ssize_t i
    cdef double best = 0.0, pr
    if q.n == 0 or c > q.num_rel_ret:
        return 0.0
    if q.num_rel_ret == 0:
        return 0.0
    if c < 1:
        c = 1
    r = q.num_rel_ret
    for i in range(q.n, 0, -1):
        pr = (<double>r) / i
        if pr > best:
            best = pr
        if _rel(q, i - 1) >= q.level:
            if r == c:
                return best
            r -= 1
    return best


cdef double _p_at(const Query *q, int64_t k) noexcept nogil:
    return _rel_in(q, _cut(q, k)) / (<double>k)


cdef double _infap(const Query *q) noexcept nogil:
    cdef Py_ssize_t j
    cdef int64_t g, rel = 0, nonrel = 0, unj = 0
    cdef double s = 0.0, fj
    for j in range(q.n):
        g = _rel(q, j)
        if g == NONPOOL_REL:
            continue
        if g < 0:
            unj += 1
            continue
        if g < q.level:
            nonrel += 1
            continue
        rel += 1
        if j == 0:
            s += 1.0
        else:
            fj = <double>j
            s += 1.0 / (fj + 1.0) + (fj / (fj + 1.0)) * ((rel - 1 + nonrel + unj) / fj) \
                * ((rel - 1 + INFAP_EPSILON) / (rel - 1 + nonrel + 2 * INFAP_EPSILON))
    return s / q.num_rel if q.num_rel > 0 else 0.0


cdef double _bing(const Query *q) noexcept nogil:
    cdef Py_ssize_t j
    cdef int64_t rel = 0
    cdef double s = 0.0
    for j in range(q.n):
        if _rel(q, j) >= q.level:
            rel += 1
            s += 1.0 / log2(<double>(3 + j - rel))
    return s / q.num_rel if rel > 0 else 0.0


cdef double _ndcg(const Query *q, int64_t k, const int64_t *glev, const double *gval, Py_ssize_t ng,
                  bint expgain, double *ideal) noexcept nogil:
    cdef Py_ssize_t j, cut = _cut(q, k), m
    cdef double dcg = 0.0, idcg = 0.0, x
    cdef int64_t g
    for j in range(cut):
        g = _rel(q, j)
        if expgain:
            x = exp2(<double>g) - 1.0 if g > 0 else 0.0
        else:
            x = _gain(g, glev, gval, ng)
        if x != 0.0:
            dcg += x / log2(j + 2.0)
    m = _ideal(q, glev, gval, ng, expgain, ideal)
    if k > 0 and k < m:
        m = <Py_ssize_t>k
    for j in range(m):
        idcg += ideal[j] / log2(j + 2.0)
    return dcg / idcg if idcg > 0.0 else 0.0


cdef inline double _ig(const double *ideal, Py_ssize_t m, Py_ssize_t i) noexcept nogil:
    return ideal[i] if i < m else 0.0


cdef double _ndcg_rel(const Query *q, const int64_t *glev, const double *gval, Py_ssize_t ng,
                      double *ideal) noexcept nogil:
    """Mean over the m documents of positive ideal gain of nDCG at the rank of each relevant
    (positive gain) retrieved document; each one not retrieved counts nDCG of the whole ranking."""
    cdef Py_ssize_t j, m = _ideal(q, glev, gval, ng, False, ideal)
    cdef double dcg = 0.0, idcg = 0.0, x, s = 0.0
    cdef int64_t hits = 0
    if m == 0:
        return 0.0
    for j in range(q.n):
        x = _gain(_rel(q, j), glev, gval, ng)
        if x != 0.0:
            dcg += x / log2(j + 2.0)
        if j < m:
            idcg += ideal[j] / log2(j + 2.0)
        if x > 0.0:
            s += dcg / idcg
            hits += 1
    for j in range(q.n, m):
        idcg += ideal[j] / log2(j + 2.0)
    s += (m - hits) * dcg / idcg
    return s / m if s > 0.0 else 0.0


cdef double _rndcg(const Query *q, const int64_t *glev, const double *gval, Py_ssize_t ng,
                   double *ideal) noexcept nogil:
    """Mean of nDCG taken just before each rank i (1 <= i <= m) where the ideal gain changes
    (m = documents of positive ideal gain; the gain after the last is 0), plus nDCG of the whole
    ranking when it runs more than one document past m."""
    cdef Py_ssize_t i, m = _ideal(q, glev, gval, ng, False, ideal)
    cdef double dcg = 0.0, idcg = 0.0, s = 0.0, x
    cdef int64_t cnt = 0
    if q.num_rel == 0:
        return 0.0
    for i in range(m + 1):
        if i >= 1 and _ig(ideal, m, i) != _ig(ideal, m, i - 1) and idcg > 0.0:
            s += dcg / idcg
            cnt += 1
        if i < q.n:
            x = _gain(_rel(q, i), glev, gval, ng)
            if x != 0.0:
                dcg += x / log2(i + 2.0)
        if i < m:
            idcg += ideal[i] / log2(i + 2.0)
    if q.n > m + 1:
        for i in range(m + 1, q.n):
            x = _gain(_rel(q, i), glev, gval, ng)
            if x != 0.0:
                dcg += x / log2(i + 2.0)
        if idcg > 0.0:
            s += dcg / idcg
            cnt += 1
    return s / cnt if cnt > 0 else 0.0


cdef double _g(const Query *q, const int64_t *glev, const double *gval, Py_ssize_t ng,
               double *ideal) noexcept nogil:
    """G: sum over retrieved documents of gain / log2(2 + cost - gain so far), where cost is the
    ideal gain so far counting each position as at least 1; normalised by the total ideal gain."""
    cdef Py_ssize_t j, m = _ideal(q, glev, gval, ng, False, ideal)
    cdef double total = 0.0, cost = 0.0, got = 0.0, x, ig, s = 0.0
    for j in range(m):
        total += ideal[j]
    if total <= 0.0:
        return 0.0
    for j in range(q.n):
        x = _gain(_rel(q, j), glev, gval, ng)
        got += x
        ig = _ig(ideal, m, j)
        cost += ig if ig >= 1.0 else 1.0
        if x != 0.0:
            s += x / log2(2.0 + cost - got)
    return s / total


cdef struct Ctx:
    const int64_t *offsets
    const int64_t *perm
    const int64_t *rels
    const int64_t *qoffsets
    int64_t *qgrades
    const int32_t *codes
    const int64_t *ks
    const double *params      # (nm, 4)
    const int64_t *goff
    const int64_t *glev
    const double *gval
    Py_ssize_t nm
    int64_t level
    int64_t max_docs
    double *out               # (nq, nm)


cdef void _eval_query(const Ctx *C, Py_ssize_t q, double *ideal) noexcept nogil:
    cdef Query Q
    cdef Py_ssize_t m, j, ng
    cdef int32_t code
    cdef int64_t k, c, r
    cdef double v, P, R, b
    cdef const double *p
    cdef const int64_t *gl
    cdef const double *gv
    cdef int64_t lo = C.offsets[q]
    Q.perm = C.perm + lo
    Q.rels = C.rels
    Q.nj = C.qoffsets[q + 1] - C.qoffsets[q]
    Q.qg = C.qgrades + C.qoffsets[q]
    _sort_desc(C.qgrades + C.qoffsets[q], Q.nj)
    Q.n = C.offsets[q + 1] - lo
    if C.max_docs > 0 and Q.n > C.max_docs:
        Q.n = C.max_docs
    Q.level = C.level
    Q.num_rel = 0
    Q.num_nonrel = 0
    for j in range(Q.nj):
        if Q.qg[j] >= Q.level:
            Q.num_rel += 1
        elif Q.qg[j] >= 0:
            Q.num_nonrel += 1
    Q.num_rel_ret = _rel_in(&Q, Q.n)
    for m in range(C.nm):
        code = C.codes[m]
        k = C.ks[m]
        p = C.params + 4 * m
        gl = C.glev + C.goff[m]
        gv = C.gval + C.goff[m]
        ng = C.goff[m + 1] - C.goff[m]
        v = 0.0
        if code == M_NDCG or code == M_NDCG_EXP:
            v = _ndcg(&Q, k, gl, gv, ng, code == M_NDCG_EXP, ideal)
        elif code == M_MAP:
            v = _ap(&Q, _cut(&Q, k))
        elif code == M_RECIP_RANK:
            for j in range(_cut(&Q, k)):
                if _rel(&Q, j) >= Q.level:
                    v = 1.0 / (j + 1.0)
                    break
        elif code == M_PRECISION:
            v = _p_at(&Q, k)
        elif code == M_RECALL:
            v = _rel_in(&Q, _cut(&Q, k)) / (<double>Q.num_rel) if Q.num_rel > 0 else 0.0
        elif code == M_R_PRECISION:
            c = Q.num_rel if Q.num_rel < Q.n else Q.n
            v = _rel_in(&Q, c) / (<double>Q.num_rel) if c > 0 else 0.0
        elif code == M_SUCCESS:
            v = 1.0 if _rel_in(&Q, _cut(&Q, k)) > 0 else 0.0
        elif code == M_BPREF:
            v = _bpref(&Q)
        elif code == M_GM_MAP:
            v = _ap(&Q, Q.n)
            v = log(v if v > MIN_GEO_MEAN else MIN_GEO_MEAN)
        elif code == M_GM_BPREF:
            v = _bpref(&Q)
            v = log(v if v > MIN_GEO_MEAN else MIN_GEO_MEAN)
        elif code == M_NUM_RET:
            v = <double>Q.n
        elif code == M_NUM_REL:
            v = <double>Q.num_rel
        elif code == M_NUM_REL_RET:
            v = <double>Q.num_rel_ret
        elif code == M_NUM_NONREL_JUDGED_RET:
            r = 0
            for j in range(Q.n):
                if _rel(&Q, j) >= 0 and _rel(&Q, j) < Q.level:
                    r += 1
            v = <double>r
        elif code == M_NUM_Q:
            v = 1.0
        elif code == M_IPREC_AT_RECALL:
            v = _iprec(&Q, p[0])
        elif code == M_RPREC_MULT:
            c = <int64_t>(p[0] * Q.num_rel + 0.9)
            v = _p_at(&Q, c) if c > 0 else 0.0
        elif code == M_INFAP:
            v = _infap(&Q)
        elif code == M_UTILITY:
            v = (p[0] * Q.num_rel_ret + p[1] * (Q.n - Q.num_rel_ret)
                 + p[2] * (Q.num_rel - Q.num_rel_ret) + p[3] * (Q.num_rel_ret - Q.n - Q.num_rel))
        elif code == M_BING:
            v = _bing(&Q)
        elif code == M_G:
            v = _g(&Q, gl, gv, ng, ideal)
        elif code == M_NDCG_REL:
            v = _ndcg_rel(&Q, gl, gv, ng, ideal)
        elif code == M_RNDCG:
            v = _rndcg(&Q, gl, gv, ng, ideal)
        elif code == M_RELATIVE_P:
            c = k if k < Q.num_rel else Q.num_rel
            v = _rel_in(&Q, _cut(&Q, k)) / (<double>c) if c > 0 else 0.0
        elif code == M_SET_P:
            v = Q.num_rel_ret / (<double>Q.n) if Q.n > 0 else 0.0
        elif code == M_SET_RELATIVE_P:
            c = Q.n if Q.n < Q.num_rel else Q.num_rel
            v = Q.num_rel_ret / (<double>c) if c > 0 else 0.0
        elif code == M_SET_RECALL:
            v = Q.num_rel_ret / (<double>Q.num_rel) if Q.num_rel > 0 else 0.0
        elif code == M_SET_MAP:
            if Q.n > 0 and Q.num_rel > 0:
                v = (<double>Q.num_rel_ret * Q.num_rel_ret) / (<double>Q.n * Q.num_rel)
        elif code == M_SET_F:
            if Q.n > 0 and Q.num_rel > 0 and Q.num_rel_ret > 0:
                P = Q.num_rel_ret / (<double>Q.n)
                R = Q.num_rel_ret / (<double>Q.num_rel)
                b = p[0]
                v = (b + 1.0) * P * R / (b * P + R)
        C.out[q * C.nm + m] = v


def metrics(const int64_t[::1] offsets, const int64_t[::1] perm, const int64_t[::1] rels,
            const int64_t[::1] qoffsets, int64_t[::1] qgrades, const int32_t[::1] codes,
            const int64_t[::1] ks, const double[:, ::1] params, const int64_t[::1] goff,
            const int64_t[::1] glev, const double[::1] gval, int64_t level, int64_t max_docs,
            double[:, ::1] out, int n_threads):
    """out[q, m] = measure codes[m] of query q, with cutoff ks[m] (0 = none), parameters
    params[m, :4] and gains glev/gval[goff[m]:goff[m+1]] (levels and their gains).

    qgrades is sorted in place (descending per query). Rels >= level are relevant; rels in
    [0, level) are judged non-relevant; NONPOOL / UNJUDGED entries are non-relevant and
    unjudged. Only the first max_docs ranked documents of each query count (0 = all).
    params must have 4 columns; glev/gval need at least one (unused) slot when empty.
    """
    cdef Py_ssize_t nq = offsets.shape[0] - 1, q, maxj = 0
    cdef Ctx C
    cdef double *ideal
    cdef int64_t zero_i = 0
    cdef double zero_d = 0.0
    if nq <= 0 or codes.shape[0] == 0:
        return
    C.offsets = &offsets[0]
    C.perm = &perm[0] if perm.shape[0] else &zero_i
    C.rels = &rels[0] if rels.shape[0] else &zero_i
    C.qoffsets = &qoffsets[0]
    C.qgrades = &qgrades[0] if qgrades.shape[0] else &zero_i
    C.codes = &codes[0]
    C.ks = &ks[0]
    C.params = &params[0, 0]
    C.goff = &goff[0]
    C.glev = &glev[0] if glev.shape[0] else &zero_i
    C.gval = &gval[0] if gval.shape[0] else &zero_d
    C.nm = codes.shape[0]
    C.level = level
    C.max_docs = max_docs
    C.out = &out[0, 0]
    maxj = max_segment(qoffsets)
    cdef rk_status *st = new_status(n_threads, b"metrics")
    with nogil, parallel(num_threads=n_threads):
        ideal = <double *>rk_malloc((maxj + 1) * sizeof(double))
        for q in prange(nq, schedule="dynamic", chunksize=64):
            if ideal == NULL:
                rk_status_fail(st)
                continue
            _eval_query(&C, q, ideal)
        free(ideal)
    check_status(st, b"metrics")
