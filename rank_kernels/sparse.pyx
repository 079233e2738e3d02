"""Inverted-index kernels (the "sparse" kernel family): building, BM25 impacts, exact top-k.

An index is term-major (CSC): the postings of term t are ``docs[indptr[t]:indptr[t + 1]]``
(int32 document ids, ascending) with float32 values ``vals[...]`` at the same positions.
For BM25 a value is the precomputed impact of the term in the document; for learned sparse
vectors it is the term weight. A query is a list of (term, weight) pairs plus a constant
`shift` added to every document's score; the score of document d is
``fl32(acc_d + shift)`` where ``acc_d`` is the float32 sum of ``weight * value`` over the
query terms in the order given (the caller orders the terms; scoring a document through
`accumulate` or through `topk` performs the same additions in the same order, so both give
bit-identical scores).

`topk` scores a batch of queries term at a time, one query per thread (OpenMP `prange`), each
thread with its own float32 accumulator over the documents, a byte marker per document and a
list of the documents it touched, so the cost is the number of postings read plus the number of
touched documents, never n_docs (except to fill results with zero-score documents).

Exact pruning (when every weight and value is >= 0): terms come sorted by their upper bound
``weight * max value`` descending. After each term, if at least k documents were touched, the
k-th best partial score theta is a lower bound of the final k-th score, and the remaining
terms can add at most R (the sum of their bounds, rounded up). Once R < theta no untouched
document can reach the top k; from then on only the candidates whose partial score plus R
can still reach theta are completed, by a galloping search for each of them in the remaining
posting lists (which are doc-sorted), instead of reading those lists in full. Results are
identical to exhaustive scoring: same additions, same order, ties broken by the smaller id.

No validation happens here; the `rank.retrieve` layer checks every input first.
"""
from cython.parallel cimport parallel, prange, threadid
from libc.math cimport INFINITY, floor, log, sqrt
from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t, uint64_t
from libc.stdlib cimport free, qsort
from libc.string cimport memcpy, memset

import numpy as np
from rank_kernels._mem cimport (check_status, new_status, rk_calloc, rk_malloc, rk_mem_init, rk_status,
                                rk_status_fail)

rk_mem_init()  # work buffers fail under the RANK_KERNELS_FAIL_ALLOC=1 test hook (see mem.h)

# Documents over which a pruning check computes its threshold (see _one_query).
cdef enum:
    PROBE_MAX = 32768

# BM25 variant codes: rank.retrieve.bm25 reads them by name from BM25_METHODS, never by position.
# A new variant is one code here, its entry in BM25_METHODS, its term-frequency component in
# _tfc and its inverse in bm25_recover_tf (plus its idf in rank.retrieve.bm25 if that differs).
cdef enum BM25Method:
    ROBERTSON = 0
    LUCENE = 1
    ATIRE = 2
    BM25L = 3
    BM25PLUS = 4

#: The BM25 variants by their public name (the order is the order users see them listed).
BM25_METHODS = {"robertson": ROBERTSON, "lucene": LUCENE, "atire": ATIRE, "bm25l": BM25L, "bm25+": BM25PLUS}


# ---------------------------------------------------------------------------------------------
# Building

cdef void _postings_pass(const int32_t[::1] ids, const int64_t[::1] offsets, int64_t *last, bint fill,
                         int64_t *df, int64_t *head, int64_t *pos, int32_t *docs, int32_t *tf) noexcept nogil:
    """One pass over a packed token stream, term by term of each document (last[t]: the last
    document where term t was seen, -1 at first). Count pass (not `fill`): the first occurrence
    of t in a document adds 1 to df[t]. Fill pass: it opens t's posting at head[t] (its
    position kept in pos[t]) with tf 1, and every repeat adds 1 to that tf."""
    cdef Py_ssize_t n_docs = offsets.shape[0] - 1, d, p, t
    for d in range(n_docs):
        for p in range(offsets[d], offsets[d + 1]):
            t = ids[p]
            if last[t] != d:
                last[t] = d
                if not fill:
                    df[t] += 1
                else:
                    pos[t] = head[t]
                    head[t] += 1
                    docs[pos[t]] = <int32_t>d
                    tf[pos[t]] = 1
            elif fill:
                tf[pos[t]] += 1


def count_postings(const int32_t[::1] ids, const int64_t[::1] offsets, Py_ssize_t n_terms):
    """Document frequency of every term: df (int64, n_terms) of the packed token stream."""
    df_arr = np.zeros(n_terms, np.int64)
    last_arr = np.full(n_terms, -1, np.int64)
    cdef int64_t[::1] df = df_arr
    cdef int64_t[::1] last = last_arr
    with nogil:
        _postings_pass(ids, offsets, &last[0] if n_terms else NULL, False, &df[0] if n_terms else NULL,
                       NULL, NULL, NULL, NULL)
    return df_arr


def fill_postings(const int32_t[::1] ids, const int64_t[::1] offsets, const int64_t[::1] indptr,
                  int32_t[::1] docs, int32_t[::1] tf):
    """Term-major postings of a packed token stream: docs (ascending per term) and counts.

    `indptr` comes from the cumulative sum of `count_postings`; docs and tf have indptr[-1]
    entries and are filled in place.
    """
    cdef Py_ssize_t n_terms = indptr.shape[0] - 1
    head_arr = np.asarray(indptr[:n_terms]).copy()
    pos_arr = np.empty(n_terms, np.int64)
    last_arr = np.full(n_terms, -1, np.int64)
    cdef int64_t[::1] head = head_arr
    cdef int64_t[::1] pos = pos_arr
    cdef int64_t[::1] last = last_arr
    if n_terms == 0:
        return
    with nogil:
        _postings_pass(ids, offsets, &last[0], True, NULL, &head[0], &pos[0],
                       &docs[0] if docs.shape[0] else NULL, &tf[0] if tf.shape[0] else NULL)


def fill_weighted(const int64_t[::1] row_ptr, const int32_t[::1] terms, const float[::1] weights,
                  const int64_t[::1] indptr, int32_t[::1] docs, float[::1] vals):
    """Transpose document-major (term, weight) rows into term-major postings (in place).

    Each row must list a term at most once; `indptr` is the cumulative count of rows per term.
    """
    cdef Py_ssize_t n_docs = row_ptr.shape[0] - 1, n_terms = indptr.shape[0] - 1, d, p, t
    head_arr = np.asarray(indptr[:n_terms]).copy()
    cdef int64_t[::1] head = head_arr
    with nogil:
        for d in range(n_docs):
            for p in range(row_ptr[d], row_ptr[d + 1]):
                t = terms[p]
                docs[head[t]] = <int32_t>d
                vals[head[t]] = weights[p]
                head[t] += 1


ctypedef fused posting_value:
    int32_t
    float


def merge_postings(const int64_t[::1] indptr_a, const int32_t[::1] docs_a, const posting_value[::1] vals_a,
                   const int64_t[::1] indptr_b, const int32_t[::1] docs_b, const posting_value[::1] vals_b,
                   int32_t doc_offset, const int64_t[::1] indptr, int32_t[::1] docs, posting_value[::1] vals):
    """Concatenate two term-major indexes term by term (b's doc ids shifted by doc_offset).

    The values are int32 term frequencies (BM25) or float32 weights (SparseIndex), the same
    type in the three value arrays. indptr_a may have fewer terms than indptr_b (new terms);
    `indptr` is the merged pointer. O(nnz).
    """
    cdef Py_ssize_t n_terms = indptr.shape[0] - 1, na = indptr_a.shape[0] - 1, t, p, o
    with nogil:
        for t in range(n_terms):
            o = indptr[t]
            if t < na:
                for p in range(indptr_a[t], indptr_a[t + 1]):
                    docs[o] = docs_a[p]
                    vals[o] = vals_a[p]
                    o += 1
            for p in range(indptr_b[t], indptr_b[t + 1]):
                docs[o] = docs_b[p] + doc_offset
                vals[o] = vals_b[p]
                o += 1


#: The float-valued merge is the same fused kernel (kept under its old name).
merge_weighted = merge_postings


def term_max(const int64_t[::1] indptr, const float[::1] vals):
    """Largest value of every term's postings (0 for a term without postings), float32."""
    cdef Py_ssize_t n_terms = indptr.shape[0] - 1, t, p
    out_arr = np.zeros(n_terms, np.float32)
    cdef float[::1] out = out_arr
    cdef float m
    with nogil:
        for t in range(n_terms):
            if indptr[t + 1] > indptr[t]:
                m = vals[indptr[t]]
                for p in range(indptr[t] + 1, indptr[t + 1]):
                    if vals[p] > m:
                        m = vals[p]
                out[t] = m
    return out_arr


def check_postings(const int64_t[::1] indptr, const int32_t[::1] docs, const float[::1] vals,
                   Py_ssize_t n_docs, const float[::1] max_value):
    """Everything the kernels trust about loaded postings, in one pass without temporaries.

    Returns (code, nonneg): code 0 when indptr starts at 0, never decreases and ends at
    len(docs); every doc id lies in [0, n_docs) and ids strictly increase within a term; every
    value is finite; and max_value[t] equals the largest value of term t (0 for an empty term,
    as term_max). Otherwise code is 1 (pointers), 2 (doc ids), 3 (values) or 4 (maxima).
    nonneg: every value >= 0.
    """
    cdef Py_ssize_t n_terms = indptr.shape[0] - 1, t, p, n_post = docs.shape[0]
    cdef int64_t start, end
    cdef int32_t prev, d
    cdef float v, m
    cdef int code = 0
    cdef bint nonneg = True
    if n_terms < 0 or max_value.shape[0] != n_terms or vals.shape[0] != n_post:
        return 1, False
    with nogil:
        if indptr[0] != 0 or indptr[n_terms] != n_post:
            code = 1
        t = 0
        while code == 0 and t < n_terms:
            start, end = indptr[t], indptr[t + 1]
            if end < start or end > n_post:
                code = 1
                break
            prev = -1
            m = 0.0
            for p in range(start, end):
                d = docs[p]
                if d <= prev or d >= n_docs:
                    code = 2
                    break
                prev = d
                v = vals[p]
                if not (v - v == 0.0):  # NaN or infinity
                    code = 3
                    break
                if p == start or v > m:
                    m = v
                if v < 0.0:
                    nonneg = False
            if code == 0 and max_value[t] != m:
                code = 4
            t += 1
    return code, bool(nonneg)


# ---------------------------------------------------------------------------------------------
# BM25 impacts (Kamphuis et al., ECIR 2020: the five variants' term-frequency components)

cdef inline double _tfc(int method, double tf, double norm, double k1, double delta) noexcept nogil:
    """Term-frequency component; norm = (1 - b) + b * dl / avgdl."""
    cdef double c
    if method == ROBERTSON or method == LUCENE:
        return tf / (k1 * norm + tf)
    if method == ATIRE:
        return (tf * (k1 + 1.0)) / (tf + k1 * norm)
    if method == BM25L:
        c = tf / norm
        return ((k1 + 1.0) * (c + delta)) / (k1 + c + delta)
    return ((k1 + 1.0) * tf) / (k1 * norm + tf) + delta


def bm25_impacts(int method, const int64_t[::1] indptr, const int32_t[::1] docs, const int32_t[::1] tf,
                 const double[::1] norm, const float[::1] idf, const float[::1] shift,
                 double k1, double delta, float[::1] out):
    """out[p] = fl32(idf[t] * tfc(tf[p], norm[docs[p]]) - shift[t]) for every posting p of term t."""
    cdef Py_ssize_t n_terms = indptr.shape[0] - 1, t, p
    cdef double w, s
    with nogil:
        for t in range(n_terms):
            w = idf[t]
            s = shift[t]
            for p in range(indptr[t], indptr[t + 1]):
                out[p] = <float>(w * _tfc(method, tf[p], norm[docs[p]], k1, delta) - s)


def bm25_recover_tf(int method, const int64_t[::1] indptr, const int32_t[::1] docs, const float[::1] impacts,
                    const double[::1] norm, const float[::1] idf, const float[::1] shift,
                    double k1, double delta, int32_t[::1] out):
    """Invert bm25_impacts: the nearest integer term frequency of every impact (0 if not invertible).

    The caller keeps the (rare) postings where this differs from the true count as exceptions.
    """
    cdef Py_ssize_t n_terms = indptr.shape[0] - 1, t, p
    cdef double w, s, u, k, x, est, c
    with nogil:
        for t in range(n_terms):
            w = idf[t]
            s = shift[t]
            for p in range(indptr[t], indptr[t + 1]):
                est = 0.0
                if w > 0:
                    u = (impacts[p] + s) / w
                    k = k1 * norm[docs[p]]
                    if method == ROBERTSON or method == LUCENE:
                        if u < 1.0:
                            est = u * k / (1.0 - u)
                    elif method == ATIRE:
                        if u < k1 + 1.0:
                            est = u * k / (k1 + 1.0 - u)
                    elif method == BM25PLUS:
                        u = u - delta
                        if u < k1 + 1.0:
                            est = u * k / (k1 + 1.0 - u)
                    else:
                        # u = (k1 + 1) x / (k1 + x) with x = tf / norm + delta
                        if u < k1 + 1.0:
                            x = u * k1 / (k1 + 1.0 - u)
                            c = x - delta
                            est = c * norm[docs[p]]
                if est > 2.0e9 or est != est:
                    est = 0.0
                out[p] = <int32_t>floor(est + 0.5)


# ---------------------------------------------------------------------------------------------
# Scoring

cdef inline int cmp_i64(int64_t a, int64_t b) noexcept nogil:
    """Three-way comparison for the qsort comparators: -1, 0 or 1 as a <, == or > b."""
    return (a > b) - (a < b)


cdef struct QueryTerm:
    int64_t term
    int64_t pos
    double weight
    double bound


cdef int _cmp_term_pos(const void *a, const void *b) noexcept nogil:
    cdef const QueryTerm *x = <const QueryTerm *>a
    cdef const QueryTerm *y = <const QueryTerm *>b
    cdef int c = cmp_i64(x.term, y.term)
    return c if c else cmp_i64(x.pos, y.pos)


cdef int _cmp_bound_desc(const void *a, const void *b) noexcept nogil:
    cdef const QueryTerm *x = <const QueryTerm *>a
    cdef const QueryTerm *y = <const QueryTerm *>b
    if x.bound != y.bound:
        return -1 if x.bound > y.bound else 1
    return cmp_i64(x.term, y.term)


cdef void _sort_terms(QueryTerm *a, Py_ssize_t n, int (*cmp)(const void *, const void *) noexcept nogil) noexcept nogil:
    """Insertion sort for the usual short queries, qsort beyond (cmp is a total order here)."""
    cdef Py_ssize_t i, e
    cdef QueryTerm x
    if n > 24:
        qsort(a, n, sizeof(QueryTerm), cmp)
        return
    for i in range(1, n):
        x = a[i]
        e = i
        while e > 0 and cmp(&a[e - 1], &x) > 0:
            a[e] = a[e - 1]
            e -= 1
        a[e] = x


def prepare_queries(const int64_t[::1] ptr, const int64_t[::1] terms, const double[::1] weights,
                    const float[::1] max_value, int64_t[::1] out_ptr, int32_t[::1] out_terms,
                    float[::1] out_weights, float[::1] out_bounds, uint8_t[::1] out_negative):
    """Per query (terms[ptr[i]:ptr[i + 1]]): drop terms outside [0, len(max_value)), merge
    repeated terms (weights summed in float64 in input order, then rounded to float32) and order
    the terms by bound = weight * max_value[term] (in float64) descending, then term ascending.

    Writes out_ptr (nq + 1), out_terms / out_weights / out_bounds (first out_ptr[nq] entries) and
    out_negative (nq: whether a merged weight is < 0); returns out_ptr[nq]. O(m log m) per query.
    """
    cdef Py_ssize_t nq = ptr.shape[0] - 1, i, j, m, u, longest = 0, n_terms = max_value.shape[0]
    cdef int64_t t, total = 0
    cdef float w32
    cdef QueryTerm *buf
    for i in range(nq):
        longest = max(longest, ptr[i + 1] - ptr[i])
    buf = <QueryTerm *>rk_malloc((longest + 1) * sizeof(QueryTerm))
    if buf == NULL:
        raise MemoryError()
    with nogil:
        out_ptr[0] = 0
        for i in range(nq):
            m = 0
            for j in range(ptr[i], ptr[i + 1]):
                t = terms[j]
                if 0 <= t < n_terms:
                    buf[m].term = t
                    buf[m].pos = j
                    buf[m].weight = weights[j]
                    m += 1
            _sort_terms(buf, m, _cmp_term_pos)
            u = 0
            out_negative[i] = 0
            for j in range(m):
                if u > 0 and buf[u - 1].term == buf[j].term:
                    buf[u - 1].weight = buf[u - 1].weight + buf[j].weight
                else:
                    buf[u] = buf[j]
                    u += 1
            for j in range(u):
                w32 = <float>buf[j].weight
                buf[j].weight = w32
                buf[j].bound = <double>w32 * <double>max_value[buf[j].term]
                if w32 < 0:
                    out_negative[i] = 1
            _sort_terms(buf, u, _cmp_bound_desc)
            for j in range(u):
                out_terms[total + j] = <int32_t>buf[j].term
                out_weights[total + j] = <float>buf[j].weight
                out_bounds[total + j] = <float>buf[j].bound
            total += u
            out_ptr[i + 1] = total
    free(buf)
    return total


def accumulate(const int64_t[::1] indptr, const int32_t[::1] docs, const float[::1] vals,
               const int32_t[::1] q_terms, const float[::1] q_weights, float shift, float[::1] out):
    """out[d] = fl32(sum over query terms in order of weight * value + shift); out starts at 0."""
    cdef Py_ssize_t j, p, n = out.shape[0]
    cdef float w
    cdef int32_t t
    with nogil:
        for j in range(q_terms.shape[0]):
            t = q_terms[j]
            w = q_weights[j]
            for p in range(indptr[t], indptr[t + 1]):
                if <uint32_t>docs[p] < <uint32_t>n:
                    out[docs[p]] += w * vals[p]
        if shift != 0:
            for j in range(n):
                out[j] = out[j] + shift


# Bounded heaps of top-k entries as 64-bit keys: the high half is the float32 score mapped to
# an unsigned integer of the same order, the low half the complement of the document id, so a
# larger key is a better entry (higher score, then smaller id) and one compare decides.

cdef inline uint64_t _key(float f, int64_t idx) noexcept nogil:
    cdef uint32_t u
    f = f + 0.0  # -0.0 -> +0.0
    memcpy(&u, &f, 4)
    u = ~u if (u >> 31) else (u | 0x80000000u)
    return ((<uint64_t>u) << 32) | (<uint64_t>(0xFFFFFFFFu - <uint32_t>idx))


cdef inline float _kscore(uint64_t key) noexcept nogil:
    cdef uint32_t u = <uint32_t>(key >> 32)
    cdef float f
    u = (u & 0x7FFFFFFFu) if (u >> 31) else ~u
    memcpy(&f, &u, 4)
    return f


cdef inline int64_t _kidx(uint64_t key) noexcept nogil:
    return <int64_t>(0xFFFFFFFFu - <uint32_t>(key & 0xFFFFFFFFu))


ctypedef fused heap_t:
    uint64_t  # packed (score, doc) keys of the top-k heap
    float     # scores of the k-th-largest threshold heap


cdef inline void _hsift(heap_t *h, Py_ssize_t size, heap_t key) noexcept nogil:
    """Put key at the root of a min-heap (root = worst entry) and restore the order."""
    cdef Py_ssize_t pos = 0, c
    cdef heap_t a, b
    while True:
        c = 2 * pos + 1
        if c >= size:
            break
        a = h[c]
        if c + 1 < size:
            b = h[c + 1]
            if b < a:
                a = b
                c += 1
        if a >= key:
            break
        h[pos] = a
        pos = c
    h[pos] = key


cdef inline void _hpush(heap_t *h, Py_ssize_t *size, Py_ssize_t k, heap_t key) noexcept nogil:
    """Offer key to a bounded min-heap of capacity k (root = k-th largest once full)."""
    cdef Py_ssize_t pos, parent
    if size[0] < k:
        pos = size[0]
        size[0] += 1
        while pos > 0:
            parent = (pos - 1) // 2
            if h[parent] <= key:
                break
            h[pos] = h[parent]
            pos = parent
        h[pos] = key
    elif key > h[0]:
        _hsift(h, size[0], key)


cdef inline void _hsorted(uint64_t *h, Py_ssize_t size) noexcept nogil:
    """Sort the heap in place, best (largest key) first."""
    cdef uint64_t key
    while size > 1:
        size -= 1
        key = h[size]
        h[size] = h[0]
        _hsift(h, size, key)


cdef int _cmp_i32(const void *a, const void *b) noexcept nogil:
    return cmp_i64((<const int32_t *>a)[0], (<const int32_t *>b)[0])


cdef inline Py_ssize_t _gallop(const int32_t *docs, Py_ssize_t lo, Py_ssize_t hi, int32_t target) noexcept nogil:
    """First position p in [lo, hi) with docs[p] >= target (hi if none); docs ascending."""
    cdef Py_ssize_t step = 1, mid
    if lo >= hi or docs[lo] >= target:
        return lo
    # docs[lo] < target: find a bracket (lo, lo + step] by doubling, then bisect.
    while lo + step < hi and docs[lo + step] < target:
        lo += step
        step *= 2
    hi = lo + step + 1 if lo + step + 1 < hi else hi
    lo += 1
    while lo < hi:
        mid = (lo + hi) // 2
        if docs[mid] < target:
            lo = mid + 1
        else:
            hi = mid
    return lo


cdef float _theta(const float *acc, float *fh, const int32_t *list_, Py_ssize_t n, Py_ssize_t k) noexcept nogil:
    """k-th largest partial score among the n documents of list_ (n >= k)."""
    cdef Py_ssize_t size = 0, i
    for i in range(n):
        _hpush(fh, &size, k, acc[list_[i]])
    return fh[0]


cdef inline bint _can_reach(float a, float rup, float shift, float theta) noexcept nogil:
    """Whether a partial score a, plus at most rup to come, may still reach theta (final space)."""
    return <float>(<float>(a + rup) + shift) >= <float>(theta + shift)


cdef inline Py_ssize_t _reachable(const float *acc, const int32_t *docs, Py_ssize_t n, int32_t *out,
                                  float rup, float shift, float theta) noexcept nogil:
    """Copy the documents of docs[0:n] that can still reach theta (`_can_reach`) to out, in
    order; out may be docs itself. Returns how many were kept."""
    cdef Py_ssize_t i, m = 0
    cdef int32_t d
    for i in range(n):
        d = docs[i]
        if _can_reach(acc[d], rup, shift, theta):
            out[m] = d
            m += 1
    return m


cdef void _nth_desc(uint64_t *a, Py_ssize_t n, Py_ssize_t k) noexcept nogil:
    """Reorder distinct keys so that a[0:k] are the k largest and a[k - 1] the k-th largest."""
    cdef Py_ssize_t lo = 0, hi = n - 1, target = k - 1, i, j, mid
    cdef uint64_t pivot, x, y, z, tmp
    while hi > lo:
        mid = (lo + hi) // 2
        x = a[lo]
        y = a[mid]
        z = a[hi]
        pivot = max(min(x, y), min(max(x, y), z))
        i = lo
        j = hi
        while i <= j:
            while a[i] > pivot:
                i += 1
            while a[j] < pivot:
                j -= 1
            if i <= j:
                tmp = a[i]
                a[i] = a[j]
                a[j] = tmp
                i += 1
                j -= 1
        if target <= j:
            hi = j
        elif target >= i:
            lo = i
        else:
            break


cdef float _kth_lower_bound(const float *x, Py_ssize_t n, Py_ssize_t k, int32_t *bins) noexcept nogil:
    """A value v with at least k of x[0:n] >= v, close to the k-th largest (n >= k >= 1).

    A histogram of 64 bins between the smallest and the largest finite value (-inf counts
    below every bin) finds the highest bin b with k values in bins >= b; v is the smallest of
    those values, so the count holds exactly whatever the rounding of the bin arithmetic.
    Branch-free passes, O(n); bins holds n int32.
    """
    cdef Py_ssize_t i, count = 0
    cdef int32_t b
    cdef int32_t hist[65]
    cdef float lo = INFINITY, hi = -INFINITY, v, scale
    for i in range(n):
        v = x[i]
        hi = v if v > hi else hi
        if v > -INFINITY:
            lo = v if v < lo else lo
    if not hi > -INFINITY:
        return -INFINITY
    scale = 0.0 if hi == lo else 63.999 / (hi - lo)
    memset(hist, 0, sizeof(hist))
    for i in range(n):
        v = x[i]
        b = <int32_t>((v - lo) * scale) + 1 if v > -INFINITY else 0
        b = 64 if b > 64 else b
        b = 1 if b < 1 and v > -INFINITY else b
        bins[i] = b
        hist[b] += 1
    b = 64
    while b > 0:
        count += hist[b]
        if count >= k:
            break
        b -= 1
    if b == 0:
        return -INFINITY  # fewer than k finite values
    v = INFINITY
    for i in range(n):
        if bins[i] >= b and x[i] < v:
            v = x[i]
    return v


cdef void _sort_desc(uint64_t *a, Py_ssize_t n) noexcept nogil:
    """Sort keys in place, largest first: insertion sort for short arrays (few mispredicted
    branches), heap sort beyond."""
    cdef Py_ssize_t i, e
    cdef uint64_t key
    if n <= 160:
        for i in range(1, n):
            key = a[i]
            e = i
            while e > 0 and a[e - 1] < key:
                a[e] = a[e - 1]
                e -= 1
            a[e] = key
        return
    for i in range(1, n):  # a min-heap of the n keys, then the worst moved to the back
        key = a[i]
        e = i
        while e > 0 and a[(e - 1) // 2] > key:
            a[e] = a[(e - 1) // 2]
            e = (e - 1) // 2
        a[e] = key
    _hsorted(a, n)


cdef inline Py_ssize_t _block_size(Py_ssize_t n_docs, Py_ssize_t k) noexcept nogil:
    """Documents per block for `_select_all`: about sqrt(2 n_docs / k), so that the selection
    over the n_docs / size block maxima and the scan of the blocks that pass cost about the same."""
    cdef Py_ssize_t size = <Py_ssize_t>sqrt(2.0 * n_docs / k)
    if size < 8:
        return 1 if n_docs < 16 * k else 8
    return (size + 3) & ~7  # the nearest multiple of 8: the maxima are taken 8 lanes at a time


cdef inline void _offer_range(const float *acc, Py_ssize_t start, Py_ssize_t end, const uint8_t *mask,
                              float shift, Py_ssize_t k, uint64_t *hk, Py_ssize_t cap,
                              Py_ssize_t *n, float *lo, uint64_t *kmin) noexcept nogil:
    """Append the keys of the documents in [start, end) reaching lo to hk; keep the k best when full."""
    cdef Py_ssize_t i
    cdef float f
    cdef uint64_t key
    for i in range(start, end):
        f = acc[i] + shift
        if f >= lo[0] and (mask == NULL or mask[i] != 0):
            key = _key(f, i)
            if key > kmin[0]:
                hk[n[0]] = key
                n[0] += 1
                if n[0] == cap:
                    _nth_desc(hk, n[0], k)
                    n[0] = k
                    kmin[0] = hk[k - 1]
                    lo[0] = _kscore(kmin[0])


cdef Py_ssize_t _select_all(const float *acc, Py_ssize_t n_docs, const uint8_t *mask, float shift, Py_ssize_t k,
                            uint64_t *hk, Py_ssize_t cap, float *bm, Py_ssize_t bsz) noexcept nogil:
    """Top k of fl(acc[i] + shift) over every allowed document i into hk (best first); returns how many.

    The documents are cut into nb = ceil(n_docs / bsz) blocks of bsz. The k-th largest block
    maximum is a lower bound of the k-th score (the k best blocks hold k distinct documents at
    least that large), so only the blocks whose maximum reaches it are scanned, and only their
    documents reaching it become keys in the buffer hk (capacity cap >= 2k); when the buffer
    fills, a selection keeps its k best and their k-th score becomes the bar. bm holds 2 * nb
    floats (the maxima, then scratch). O(n_docs) compares, vectorisable, plus O(nb + k * bsz) for the rest.
    """
    cdef Py_ssize_t n = 0, i, e, b, s, l, nb = (n_docs + bsz - 1) // bsz
    cdef float lo = -INFINITY, m, a
    cdef float m8[8]
    cdef uint64_t kmin = 0, key
    if bsz == 1 or nb < k:
        _offer_range(acc, 0, n_docs, mask, shift, k, hk, cap, &n, &lo, &kmin)
    else:
        for b in range(nb):
            s = b * bsz
            e = s + bsz if s + bsz < n_docs else n_docs
            m = -INFINITY
            if mask == NULL and e - s == bsz:
                for l in range(8):
                    m8[l] = acc[s + l]
                for i in range(s + 8, e, 8):
                    for l in range(8):
                        m8[l] = acc[i + l] if acc[i + l] > m8[l] else m8[l]
                for l in range(4):  # pairwise reduction: a short dependency chain
                    m8[l] = m8[l + 4] if m8[l + 4] > m8[l] else m8[l]
                m8[0] = m8[2] if m8[2] > m8[0] else m8[0]
                m8[1] = m8[3] if m8[3] > m8[1] else m8[1]
                m = m8[1] if m8[1] > m8[0] else m8[0]
            elif mask == NULL:
                for i in range(s, e):
                    a = acc[i]
                    m = a if a > m else m
            else:
                for i in range(s, e):
                    if mask[i] != 0 and acc[i] > m:
                        m = acc[i]
            bm[b] = m
        # fl(. + shift) is monotone, so the bound carries over to the final scores.
        lo = _kth_lower_bound(bm, nb, k, <int32_t *>(bm + nb)) + shift
        for b in range(nb):
            if bm[b] + shift >= lo:
                s = b * bsz
                e = s + bsz if s + bsz < n_docs else n_docs
                _offer_range(acc, s, e, mask, shift, k, hk, cap, &n, &lo, &kmin)
    if n > k:
        _nth_desc(hk, n, k)
        n = k
    _sort_desc(hk, n)
    return n


cdef void _dense_query(const int64_t *indptr, const int32_t *docs, const float *vals, Py_ssize_t n_docs,
                       const int32_t *terms, const float *weights, Py_ssize_t m, float shift,
                       const uint8_t *mask, Py_ssize_t k, float *acc, uint64_t *hk, Py_ssize_t cap,
                       float *bm, Py_ssize_t bsz, int64_t *out_i, float *out_s) noexcept nogil:
    """Exhaustive: scatter every posting into acc, select over all documents, clear acc."""
    cdef Py_ssize_t j, p, i, size
    cdef int32_t t, d
    cdef float wt
    for j in range(m):
        t = terms[j]
        wt = weights[j]
        for p in range(indptr[t], indptr[t + 1]):
            d = docs[p]
            if <uint32_t>d < <uint32_t>n_docs:  # guards against a corrupt memory-mapped index
                acc[d] += wt * vals[p]
    size = _select_all(acc, n_docs, mask, shift, k, hk, cap, bm, bsz)
    for i in range(size):
        out_s[i] = _kscore(hk[i])
        out_i[i] = _kidx(hk[i])
    for i in range(size, k):
        out_s[i] = -INFINITY
        out_i[i] = -1
    memset(acc, 0, n_docs * sizeof(float))


cdef void _one_query(const int64_t *indptr, const int32_t *docs, const float *vals, Py_ssize_t n_docs,
                     const int32_t *terms, const float *weights, const float *bounds, Py_ssize_t m,
                     float shift, bint prune, const uint8_t *mask, Py_ssize_t k,
                     float *acc, uint8_t *seen, int32_t *touched, int32_t *cand, uint64_t *hk, Py_ssize_t cap,
                     float *fh, float *bm, Py_ssize_t bsz, int64_t *out_i, float *out_s) noexcept nogil:
    cdef Py_ssize_t j, p, lo, hi, nt = 0, nc = 0, size = 0, i, got, q, e
    cdef uint64_t word
    cdef int32_t t, d
    cdef float wt, theta = 0, base = 0.0, rupf = 0, f
    cdef double rest = 0.0, total = 0.0, margin = 0.0, rup
    cdef int64_t remaining = 0
    cdef Py_ssize_t probe
    cdef bint switched = False
    base = base + shift
    if prune:
        for j in range(m):
            total += bounds[j]
            remaining += indptr[terms[j] + 1] - indptr[terms[j]]
        rest = total
        margin = (m + 2) * 1.2e-7 * total
    # Phase 1: whole posting lists, term by term, until the rest cannot bring in a new document.
    j = 0
    while j < m:
        t = terms[j]
        wt = weights[j]
        for p in range(indptr[t], indptr[t + 1]):
            d = docs[p]
            if <uint32_t>d >= <uint32_t>n_docs or (mask != NULL and mask[d] == 0):
                continue  # the first test guards against a corrupt memory-mapped index
            if seen[d] == 0:
                seen[d] = 1
                touched[nt] = d
                nt += 1
            acc[d] += wt * vals[p]
        j += 1
        if prune and j < m:
            rest -= bounds[j - 1]
            remaining -= indptr[t + 1] - indptr[t]
            rup = rest * (1.0 + 1e-6) + margin
            # theta is taken over the first `probe` touched documents only (those of the rarest,
            # highest-bound terms): the k-th best of a subset is still a lower bound, and the
            # check then costs O(probe). Worth it only if the lists left are longer than that,
            # and possible only if theta (<= the sum of the bounds read so far) can exceed rup.
            probe = nt if nt < PROBE_MAX else PROBE_MAX
            if probe < 64 * k and nt > probe:
                probe = 64 * k if nt > 64 * k else nt
            if nt >= k and remaining > 2 * probe and rup < (total - rest) * (1.0 + 1e-6) + margin:
                theta = _theta(acc, fh, touched, probe, k)
                rupf = <float>rup
                if <float>(rupf + shift) < <float>(theta + shift):
                    # Switch only if probing the candidates is much cheaper than reading the rest.
                    nc = _reachable(acc, touched, nt, cand, rupf, shift, theta)
                    if 4 * nc < remaining:
                        switched = True
                        break
                    nc = 0
    if switched:
        # Phase 2: complete only the candidates that can still reach theta, in doc order.
        if 64 * nc > n_docs:
            for i in range(nc):
                seen[cand[i]] = 2
            q = 0
            i = 0
            while i < n_docs:  # eight markers at a time: most words hold no 2
                if i + 8 <= n_docs:
                    memcpy(&word, seen + i, 8)
                    if (word & 0x0202020202020202ULL) == 0:
                        i += 8
                        continue
                e = i + 8 if i + 8 <= n_docs else n_docs
                while i < e:
                    if seen[i] == 2:
                        seen[i] = 1
                        cand[q] = <int32_t>i
                        q += 1
                    i += 1
        else:
            qsort(cand, nc, sizeof(int32_t), _cmp_i32)
        while j < m:
            t = terms[j]
            wt = weights[j]
            lo = indptr[t]
            hi = indptr[t + 1]
            for i in range(nc):
                d = cand[i]
                lo = _gallop(docs, lo, hi, d)
                if lo < hi and docs[lo] == d:
                    acc[d] += wt * vals[lo]
            rest -= bounds[j]
            j += 1
            if j < m:
                rupf = <float>(rest * (1.0 + 1e-6) + margin)
                theta = _theta(acc, fh, cand, nc, k)
                nc = _reachable(acc, cand, nc, cand, rupf, shift, theta)
        for i in range(nc):
            d = cand[i]
            _hpush(hk, &size, k, _key(acc[d] + shift, d))
        _hsorted(hk, size)
        for i in range(size):
            out_s[i] = _kscore(hk[i])
            out_i[i] = _kidx(hk[i])
        got = size
    elif 4 * nt > n_docs:
        # Most documents touched: one sequential pass over all of them (zero scores included).
        got = _select_all(acc, n_docs, mask, shift, k, hk, cap, bm, bsz)
        for i in range(got):
            out_s[i] = _kscore(hk[i])
            out_i[i] = _kidx(hk[i])
    else:
        # Exhaustive selection over the touched documents, then the documents scoring `base`
        # (untouched ones, by ascending id), then touched ones below it.
        for i in range(nt):
            d = touched[i]
            _hpush(hk, &size, k, _key(acc[d] + shift, d))
        _hsorted(hk, size)
        got = 0
        while got < size and _kscore(hk[got]) > base:
            out_s[got] = _kscore(hk[got])
            out_i[got] = _kidx(hk[got])
            got += 1
        if got < k:
            d = 0
            while d < n_docs and got < k:
                if (mask == NULL or mask[d] != 0) and (seen[d] == 0 or <float>(acc[d] + shift) == base):
                    out_s[got] = base
                    out_i[got] = d
                    got += 1
                d += 1
            i = 0
            while i < size and got < k:
                if _kscore(hk[i]) < base:
                    out_s[got] = _kscore(hk[i])
                    out_i[got] = _kidx(hk[i])
                    got += 1
                i += 1
    for i in range(got, k):
        out_s[i] = -INFINITY
        out_i[i] = -1
    if 8 * nt > n_docs:  # sequential clearing beats scattered stores
        memset(acc, 0, n_docs * sizeof(float))
        memset(seen, 0, n_docs)
    else:
        for i in range(nt):
            d = touched[i]
            acc[d] = 0
            seen[d] = 0


cdef inline bint _use_dense(const int64_t *indptr, const int32_t *terms, Py_ssize_t m, Py_ssize_t n_docs,
                            bint prune) noexcept nogil:
    """Exhaustive scoring without tracking touched documents: when the postings are many for
    the number of documents, and pruning is impossible or the index small enough for a full pass."""
    cdef int64_t total = 0
    cdef Py_ssize_t j
    for j in range(m):
        total += indptr[terms[j] + 1] - indptr[terms[j]]
    return 8 * total >= n_docs and (not prune or n_docs <= 65536)


def work_bytes(Py_ssize_t n_docs):
    """Bytes of one thread's row of `topk`'s work array: 13 per document, rounded up to 64."""
    return (13 * (n_docs + 1) + 63) // 64 * 64


def topk(const int64_t[::1] indptr, const int32_t[::1] docs, const float[::1] vals, Py_ssize_t n_docs,
         const int64_t[::1] q_ptr, const int32_t[::1] q_terms, const float[::1] q_weights,
         const float[::1] q_bounds, const float[::1] q_shift, const uint8_t[::1] q_prune,
         const uint8_t[:, ::1] mask, Py_ssize_t k, int n_threads,
         int64_t[:, ::1] out_idx, float[:, ::1] out_scores, uint8_t[:, ::1] work):
    """Exact top-k of every query (see the module docstring); results in out_idx / out_scores.

    q_ptr (nq + 1) delimits each query's terms, weights and bounds (weight * max value, sorted
    descending when q_prune[i]); mask has 0 rows (none), 1 row (shared) or nq rows, one byte per
    document (0 = excluded). Rows with fewer than k eligible documents are padded (-1, -inf).

    work: 0 rows (each thread allocates its arrays), or one row per thread of at least
    `work_bytes(n_docs)` bytes, all zero, which the call leaves all zero again; reusing it across
    calls saves the page faults of fresh allocations (large indexes, one query per call).
    """
    cdef Py_ssize_t nq = q_ptr.shape[0] - 1, i, n_mask = mask.shape[0], n_work = work.shape[0]
    cdef Py_ssize_t stride = n_docs + 1
    cdef uint8_t *row
    cdef rk_status *st
    cdef float *acc = NULL
    cdef uint8_t *seen = NULL
    cdef int32_t *touched = NULL
    cdef int32_t *cand = NULL
    cdef uint64_t *hk = NULL
    cdef Py_ssize_t cap = max(4 * k, 256)
    cdef float *fh = NULL
    cdef float *bm = NULL
    cdef Py_ssize_t bsz = _block_size(n_docs, k) if k > 0 else 1
    cdef Py_ssize_t nb = (n_docs + bsz - 1) // bsz
    cdef const uint8_t *mrow
    cdef const int32_t *dp = &docs[0] if docs.shape[0] else NULL
    cdef const float *vp = &vals[0] if vals.shape[0] else NULL
    cdef const int32_t *tp = &q_terms[0] if q_terms.shape[0] else NULL
    cdef const float *wp = &q_weights[0] if q_weights.shape[0] else NULL
    cdef const float *bp = &q_bounds[0] if q_bounds.shape[0] else NULL
    if nq == 0:
        return
    if n_threads > nq:
        n_threads = <int>nq
    if n_work and n_threads > n_work:
        n_threads = <int>n_work
    st = new_status(n_threads, b"topk")
    with nogil, parallel(num_threads=n_threads):
        if n_work:
            row = &work[threadid(), 0]
            acc = <float *>row
            touched = <int32_t *>(row + 4 * stride)
            cand = <int32_t *>(row + 8 * stride)
            seen = row + 12 * stride
        else:
            acc = <float *>rk_calloc(stride, sizeof(float))
            seen = <uint8_t *>rk_calloc(stride, 1)
            touched = <int32_t *>rk_malloc(stride * sizeof(int32_t))
            cand = <int32_t *>rk_malloc(stride * sizeof(int32_t))
        hk = <uint64_t *>rk_malloc(cap * sizeof(uint64_t))
        fh = <float *>rk_malloc(k * sizeof(float))
        bm = <float *>rk_malloc((2 * nb + 1) * sizeof(float))
        for i in prange(nq, schedule='dynamic', chunksize=1):
            if acc == NULL or seen == NULL or touched == NULL or cand == NULL or hk == NULL or fh == NULL or bm == NULL:
                rk_status_fail(st)
                continue
            mrow = NULL
            if n_mask == 1:
                mrow = &mask[0, 0]
            elif n_mask > 1:
                mrow = &mask[i, 0]
            if _use_dense(&indptr[0], tp + q_ptr[i], q_ptr[i + 1] - q_ptr[i], n_docs, q_prune[i] != 0):
                _dense_query(&indptr[0], dp, vp, n_docs, tp + q_ptr[i], wp + q_ptr[i], q_ptr[i + 1] - q_ptr[i],
                             q_shift[i], mrow, k, acc, hk, cap, bm, bsz, &out_idx[i, 0], &out_scores[i, 0])
            else:
                _one_query(&indptr[0], dp, vp, n_docs, tp + q_ptr[i], wp + q_ptr[i], bp + q_ptr[i],
                           q_ptr[i + 1] - q_ptr[i], q_shift[i], q_prune[i] != 0, mrow, k,
                           acc, seen, touched, cand, hk, cap, fh, bm, bsz, &out_idx[i, 0], &out_scores[i, 0])
        if not n_work:
            free(acc)
            free(seen)
            free(touched)
            free(cand)
        free(hk)
        free(fh)
        free(bm)
    check_status(st, b"topk")
