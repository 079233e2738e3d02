"""Dense scoring and exact top-k search kernels (the "dense" kernel family).

Both kernels compute S = Q . M^T for a batch of float32 query vectors Q (nq, d) against a
matrix M (n, d) of float16, float32 or float64 rows, read in place through a raw pointer
(float16/float64 rows are converted to float32 one block at a time, never as a whole).
No validation happens here: the `rank.rerank.dense` layer checks shapes and dtypes first.

Blocking. Q is packed once into 16-row panels (tile engine). M is cut into blocks of about
256 KiB of float32 rows that threads take dynamically (OpenMP); inside a block the queries are
taken in groups of a few panels (about 128 KiB packed) and each group is multiplied by strips
of TILE_STRIP (12) rows, so the row block and the query group both stay in L2 while the tile
engine streams them through registers.

- `dense_scores` stores the products into out (nq, n).
- `dense_topk` never materialises S: every thread keeps, per query, a bounded heap of its k
  best (score, row) pairs and a threshold (the heap's worst score once full); each strip of
  products is first compared with the thresholds in a vectorisable pass, and only rows that
  beat some threshold touch a heap. The per-thread heaps are merged at the end. The order is
  exact and deterministic: score descending, then row index ascending, whatever the number
  of threads (every score is computed by the same arithmetic whichever thread computes it).

Small batches (nq <= 4, AVX2 or AVX-512): 16-row panels of queries would leave most SIMD lanes
idle, so the rows go in the lanes instead (a 16 x 16 or 8 x 8 in-register transpose of each
row block, then one broadcast per query coordinate), and the next strip of rows is prefetched
while the current one is multiplied; this runs at memory bandwidth, like a matrix-vector
product. Every score is the same single float32 FMA chain over k = 0..d-1 on both paths, so
results are bit-identical whatever the batch size or composition.

`normalize` divides every product by the Euclidean norm of the row (computed from the float32
row as it streams by; a zero row scores 0), which turns dot products with unit-norm queries
into cosine similarities without a second pass over M.

Cost: 2 * nq * n * d flops. Extra memory per thread: one block of rows (for float16/float64
rows only), the products of one query group with one block (`dense_scores`, written out
row by row so that each query's scores are stored contiguously) or with one strip
(`dense_topk`), and for `dense_topk` nq heaps of k entries (12 bytes each).
"""
from cython.parallel cimport parallel, prange, threadid
from libc.math cimport INFINITY, NAN, sqrt
from libc.stdint cimport int64_t, uintptr_t
from libc.stdlib cimport free

from rank_kernels.tile cimport (TILE_F32, TILE_QW, TILE_STRIP, tile_init, tile_isa,
                                tile_n_panels, tile_pack_queries, tile_packed_size, tile_rows_f32,
                                tile_strip_store)
from rank_kernels._mem cimport rk_calloc, rk_malloc, rk_mem_init

rk_mem_init()  # work buffers fail under the RANK_KERNELS_FAIL_ALLOC=1 test hook (see mem.h)

cdef extern from "dense_small.h":
    float dense_sumsq(const float *x, Py_ssize_t n) nogil
    int dense_all_finite(const float *x, Py_ssize_t rows, Py_ssize_t cols, Py_ssize_t stride) nogil
    int dense_any_ge(const float *x, const float *t, Py_ssize_t n) nogil
    enum:
        DENSE_SMALL_ROWS
    int dense_small_ok(Py_ssize_t nq) nogil
    void dense_small_strip(const float *q, Py_ssize_t nq, const float *r, Py_ssize_t ld, Py_ssize_t d, int nr,
                           float *out, Py_ssize_t os, const void *pf, Py_ssize_t pf_bytes) nogil

tile_init()

# Target working-set sizes of one row block and one query group (bytes of float32).
cdef enum:
    ROW_BLOCK_BYTES = 256 * 1024
    QUERY_GROUP_BYTES = 128 * 1024


def isa():
    """The instruction set the tile engine uses on this machine: 'avx512f', 'avx2+fma' or 'portable'."""
    return tile_isa().decode()


cdef inline Py_ssize_t _row_block(Py_ssize_t d) noexcept nogil:
    """Rows per block: a multiple of both strip widths (48) filling about ROW_BLOCK_BYTES."""
    cdef Py_ssize_t rb = ROW_BLOCK_BYTES // (4 * d) // 48 * 48
    return rb if rb > 48 else 48


cdef inline Py_ssize_t _query_group(Py_ssize_t nq, Py_ssize_t d) noexcept nogil:
    """Query rows per group: an even number of panels filling about QUERY_GROUP_BYTES, capped by nq."""
    cdef Py_ssize_t panels = QUERY_GROUP_BYTES // (4 * TILE_QW * d)
    panels -= panels & 1
    if panels < 2:
        panels = 2
    if panels > tile_n_panels(nq):
        panels = tile_n_panels(nq)
    return panels * TILE_QW


cdef inline void _inv_norms(const float *rows, Py_ssize_t nb, Py_ssize_t d, float *scale) noexcept nogil:
    """scale[j] = 1 / |row j| (0 for a zero row); float64 when float32 squares over/underflow."""
    cdef Py_ssize_t j, i
    cdef float s
    cdef double w
    cdef const float *x
    for j in range(nb):
        x = rows + j * d
        s = dense_sumsq(x, d)
        if s == INFINITY or s < 1e-30:
            w = 0.0
            for i in range(d):
                w += <double>x[i] * x[i]
            scale[j] = <float>(1.0 / sqrt(w)) if w > 0 else 0.0
        else:
            scale[j] = 1.0 / sqrt(s)


# ---------------------------------------------------------------------------------------------
# Bounded heaps of (score, row): the root is the worst entry, "worse" meaning a lower score or,
# for equal scores, a larger row index.

cdef inline bint _worse(float s, int64_t i, float t, int64_t j) noexcept nogil:
    return s < t or (s == t and i > j)


cdef inline void _sift_down(float *hs, int64_t *hi, Py_ssize_t size, float s, int64_t idx) noexcept nogil:
    """Place (s, idx) at the root of a heap of `size` entries and restore the heap order."""
    cdef Py_ssize_t pos = 0, c
    while True:
        c = 2 * pos + 1
        if c >= size:
            break
        if c + 1 < size and _worse(hs[c + 1], hi[c + 1], hs[c], hi[c]):
            c += 1
        if not _worse(hs[c], hi[c], s, idx):
            break
        hs[pos] = hs[c]
        hi[pos] = hi[c]
        pos = c
    hs[pos] = s
    hi[pos] = idx


cdef inline void _offer(float *hs, int64_t *hi, int64_t *cnt, Py_ssize_t k, float s, int64_t idx) noexcept nogil:
    """Insert (s, idx) into a heap of capacity k holding cnt[0] entries if it is among the k best."""
    cdef Py_ssize_t pos = cnt[0], parent
    if pos < k:
        cnt[0] = pos + 1
        while pos > 0:
            parent = (pos - 1) >> 1
            if not _worse(s, idx, hs[parent], hi[parent]):
                break
            hs[pos] = hs[parent]
            hi[pos] = hi[parent]
            pos = parent
        hs[pos] = s
        hi[pos] = idx
    elif _worse(hs[0], hi[0], s, idx):
        _sift_down(hs, hi, k, s, idx)


# ---------------------------------------------------------------------------------------------
# One block of rows against all queries.

cdef inline void _strip(bint small, const float *qp, const float *q, Py_ssize_t ng, Py_ssize_t d,
                        const float *rows, int nr, float *tmp, Py_ssize_t qrows,
                        const float *nxt, Py_ssize_t nxt_rows) noexcept nogil:
    """Products of ng queries with nr rows into tmp[j * qrows + i]; `nxt` (nxt_rows rows) follows."""
    if small:
        dense_small_strip(q, ng, rows, d, d, nr, tmp, qrows, nxt, 4 * d * nxt_rows)
    else:
        tile_strip_store(qp, ng, rows, d, d, nr, tmp, qrows)


cdef int _scores_block(const float *qp, const float *q, bint small, Py_ssize_t nq, Py_ssize_t d,
                       Py_ssize_t qrows, const char *m, int kind, Py_ssize_t n_rows, Py_ssize_t r0,
                       Py_ssize_t nb, bint normalize, bint check_finite, float *conv, float *scale,
                       float *tmp, float *out) noexcept nogil:
    cdef const float *rows = tile_rows_f32(m, kind, r0, <int>nb, d, conv)
    cdef Py_ssize_t g0, ng, s0, i, j, ahead
    cdef int nr, sw = DENSE_SMALL_ROWS if small else TILE_STRIP
    cdef float *dst
    cdef const float *src
    if normalize:
        _inv_norms(rows, nb, d, scale)
    g0 = 0
    while g0 < nq:
        ng = min(qrows, nq - g0)
        s0 = 0
        while s0 < nb:
            nr = <int>min(<Py_ssize_t>sw, nb - s0)
            # rows to prefetch: the next strip, when it is read in place
            ahead = min(<Py_ssize_t>sw, n_rows - r0 - s0 - nr) if kind == TILE_F32 else 0
            _strip(small, qp + g0 * d, q + g0 * d, ng, d, rows + s0 * d, nr, tmp + s0 * qrows, qrows,
                   rows + (s0 + nr) * d, ahead)
            s0 += nr
        if check_finite and not dense_all_finite(tmp, nb, ng, qrows):
            return 1
        # tmp[j * qrows + i] = S[g0 + i][r0 + j]: write each query's nb scores contiguously
        for i in range(ng):
            dst = out + (g0 + i) * n_rows + r0
            src = tmp + i
            if normalize:
                for j in range(nb):
                    dst[j] = src[j * qrows] * scale[j]
            else:
                for j in range(nb):
                    dst[j] = src[j * qrows]
        g0 += ng
    return 0


cdef int _topk_block(const float *qp, const float *q, bint small, Py_ssize_t nq, Py_ssize_t d,
                     Py_ssize_t qrows, const char *m, int kind, Py_ssize_t n_rows, Py_ssize_t r0,
                     Py_ssize_t nb, Py_ssize_t k, bint normalize, bint check_finite, float *conv,
                     float *scale, float *tmp, float *hs, int64_t *hi, int64_t *cnt,
                     float *thr) noexcept nogil:
    cdef const float *rows = tile_rows_f32(m, kind, r0, <int>nb, d, conv)
    cdef Py_ssize_t g0, ng, s0, i, j, qi, ahead
    cdef int nr, sw = DENSE_SMALL_ROWS if small else TILE_STRIP
    cdef float sc
    cdef float *o
    cdef float *t
    if normalize:
        _inv_norms(rows, nb, d, scale)
    g0 = 0
    while g0 < nq:
        ng = min(qrows, nq - g0)
        t = thr + g0
        s0 = 0
        while s0 < nb:
            nr = <int>min(<Py_ssize_t>sw, nb - s0)
            ahead = min(<Py_ssize_t>sw, n_rows - r0 - s0 - nr) if kind == TILE_F32 else 0
            _strip(small, qp + g0 * d, q + g0 * d, ng, d, rows + s0 * d, nr, tmp, qrows,
                   rows + (s0 + nr) * d, ahead)
            if check_finite and not dense_all_finite(tmp, nr, ng, qrows):
                return 1
            for j in range(nr):
                o = tmp + j * qrows
                if normalize:
                    sc = scale[s0 + j]
                    for i in range(ng):
                        o[i] = o[i] * sc
                if not dense_any_ge(o, t, ng):
                    continue
                for i in range(ng):
                    if o[i] >= t[i]:
                        qi = g0 + i
                        _offer(hs + qi * k, hi + qi * k, cnt + qi, k, o[i], r0 + s0 + j)
                        if cnt[qi] == k:
                            t[i] = hs[qi * k]
            s0 += nr
        g0 += ng
    return 0


# ---------------------------------------------------------------------------------------------

def dense_scores(const float[:, ::1] queries, uintptr_t m_ptr, Py_ssize_t n_rows, int kind,
                 bint normalize, bint check_finite, int n_threads, float[:, ::1] out):
    """out[i, r] = <queries[i], M[r]> (divided by |M[r]| when `normalize`) for all i, r.

    queries: (nq, d) float32. M: n_rows >= 1 rows of d values of element size `kind`
    (2, 4 or 8 for float16/32/64) at address m_ptr, C-contiguous. out: (nq, n_rows) float32.
    Runs without the GIL on n_threads. Returns 0, or 1 when check_finite and some product is
    NaN or infinite (out is then undefined). With finite queries that happens whenever a row
    of M holds NaN or infinity (every product with such a row is NaN or infinite), so the
    check costs nq values per row instead of d; the caller tells it apart from an overflow of
    finite values by looking for the row.
    """
    cdef Py_ssize_t nq = queries.shape[0], d = queries.shape[1]
    cdef Py_ssize_t rb = _row_block(d), qrows = _query_group(nq, d)
    cdef Py_ssize_t n_blocks = (n_rows + rb - 1) // rb, b, r0
    cdef const char *m = <const char *>m_ptr
    if n_threads > n_blocks:  # no idle threads (starting them costs more than small inputs)
        n_threads = <int>n_blocks
    cdef float *qp = <float *>rk_malloc(sizeof(float) * tile_packed_size(nq, d))
    cdef int *status = <int *>rk_calloc(n_threads, sizeof(int))
    cdef float *conv = NULL
    cdef float *scale = NULL
    cdef float *tmp = NULL
    cdef int tid = 0, rc = 0, res = 0
    cdef bint small = dense_small_ok(nq)
    if qp == NULL or status == NULL:
        free(qp)
        free(status)
        raise MemoryError()
    with nogil:
        tile_pack_queries(&queries[0, 0], nq, d, qp)
        with parallel(num_threads=n_threads):
            tid = threadid()
            conv = <float *>rk_malloc(sizeof(float) * rb * d) if kind != TILE_F32 else NULL
            scale = <float *>rk_malloc(sizeof(float) * rb)
            tmp = <float *>rk_malloc(sizeof(float) * rb * qrows)
            for b in prange(n_blocks, schedule='dynamic', chunksize=1):
                if scale == NULL or tmp == NULL or (kind != TILE_F32 and conv == NULL):
                    status[tid] = 2
                    continue
                r0 = b * rb
                rc = _scores_block(qp, &queries[0, 0], small, nq, d, qrows, m, kind, n_rows, r0,
                                   min(rb, n_rows - r0), normalize, check_finite, conv, scale, tmp,
                                   &out[0, 0])
                if rc > status[tid]:
                    status[tid] = rc
            free(tmp)
            free(scale)
            free(conv)
        for tid in range(n_threads):
            if status[tid] > res:
                res = status[tid]
    free(qp)
    free(status)
    if res == 2:
        raise MemoryError()
    return res


def dense_topk(const float[:, ::1] queries, uintptr_t m_ptr, Py_ssize_t n_rows, int kind,
               bint normalize, bint check_finite, Py_ssize_t k, int n_threads,
               int64_t[:, ::1] out_idx, float[:, ::1] out_scores):
    """The k rows of M with the largest <queries[i], M[r]>, for every query i.

    Arguments as for dense_scores; 1 <= k <= n_rows. out_idx (nq, k) int64 and out_scores
    (nq, k) float32 receive, per query, row indices and scores sorted by score descending,
    ties by smaller row index. Rows whose score is NaN are never selected; if fewer than k
    rows qualify, the remaining slots get index -1 and score NaN. Runs without the GIL on
    n_threads; extra memory O(n_threads * nq * k). Returns 0, or 1 as for dense_scores.
    """
    cdef Py_ssize_t nq = queries.shape[0], d = queries.shape[1]
    cdef Py_ssize_t rb = _row_block(d), qrows = _query_group(nq, d)
    cdef Py_ssize_t n_blocks = (n_rows + rb - 1) // rb, b, r0, i, q, t, e, slot, size
    if n_threads > n_blocks:  # no idle threads (starting them costs more than small inputs)
        n_threads = <int>n_blocks
    cdef Py_ssize_t nslots = <Py_ssize_t>n_threads * nq
    cdef const char *m = <const char *>m_ptr
    cdef float *qp = <float *>rk_malloc(sizeof(float) * tile_packed_size(nq, d))
    cdef int *status = <int *>rk_calloc(n_threads, sizeof(int))
    cdef float *hs = <float *>rk_malloc(sizeof(float) * nslots * k)
    cdef int64_t *hi = <int64_t *>rk_malloc(sizeof(int64_t) * nslots * k)
    cdef int64_t *cnt = <int64_t *>rk_calloc(nslots, sizeof(int64_t))
    cdef float *thr = <float *>rk_malloc(sizeof(float) * nslots)
    cdef float *conv = NULL
    cdef float *scale = NULL
    cdef float *tmp = NULL
    cdef float *ms
    cdef int64_t *mi
    cdef int64_t *mc
    cdef float ws, ls
    cdef int64_t wi, li
    cdef int tid = 0, rc = 0, res = 0
    cdef bint small = dense_small_ok(nq)
    if qp == NULL or status == NULL or hs == NULL or hi == NULL or cnt == NULL or thr == NULL:
        free(qp)
        free(status)
        free(hs)
        free(hi)
        free(cnt)
        free(thr)
        raise MemoryError()
    with nogil:
        tile_pack_queries(&queries[0, 0], nq, d, qp)
        for i in range(nslots):
            thr[i] = -INFINITY
        with parallel(num_threads=n_threads):
            tid = threadid()
            conv = <float *>rk_malloc(sizeof(float) * rb * d) if kind != TILE_F32 else NULL
            scale = <float *>rk_malloc(sizeof(float) * rb)
            tmp = <float *>rk_malloc(sizeof(float) * DENSE_SMALL_ROWS * qrows)
            for b in prange(n_blocks, schedule='dynamic', chunksize=1):
                if scale == NULL or tmp == NULL or (kind != TILE_F32 and conv == NULL):
                    status[tid] = 2
                    continue
                r0 = b * rb
                slot = tid * nq
                rc = _topk_block(qp, &queries[0, 0], small, nq, d, qrows, m, kind, n_rows, r0,
                                 min(rb, n_rows - r0), k, normalize, check_finite, conv, scale, tmp,
                                 hs + slot * k, hi + slot * k, cnt + slot, thr + slot)
                if rc > status[tid]:
                    status[tid] = rc
            free(tmp)
            free(scale)
            free(conv)
        for tid in range(n_threads):
            if status[tid] > res:
                res = status[tid]
        if res == 0:
            # Merge: fold the heaps of threads 1.. into thread 0's, then heap-sort it out.
            for q in prange(nq, schedule='static', num_threads=n_threads):
                ms = hs + q * k
                mi = hi + q * k
                mc = cnt + q
                for t in range(1, n_threads):
                    slot = t * nq + q
                    for e in range(cnt[slot]):
                        _offer(ms, mi, mc, k, hs[slot * k + e], hi[slot * k + e])
                size = mc[0]
                for e in range(size, k):
                    out_idx[q, e] = -1
                    out_scores[q, e] = NAN
                while size > 0:
                    ws = ms[0]
                    wi = mi[0]
                    size = size - 1
                    ls = ms[size]
                    li = mi[size]
                    _sift_down(ms, mi, size, ls, li)
                    out_idx[q, size] = wi
                    out_scores[q, size] = ws
    free(qp)
    free(status)
    free(hs)
    free(hi)
    free(cnt)
    free(thr)
    if res == 2:
        raise MemoryError()
    return res
