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
from rank_kernels._mem cimport check_alloc, rk_calloc, rk_malloc, rk_mem_init

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


cdef inline void _put(float *hs, int64_t *hi, Py_ssize_t pos, float s, int64_t idx) noexcept nogil:
    """Entry pos of a heap becomes (s, idx)."""
    hs[pos] = s
    hi[pos] = idx


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
        _put(hs, hi, pos, hs[c], hi[c])
        pos = c
    _put(hs, hi, pos, s, idx)


cdef inline void _offer(float *hs, int64_t *hi, int64_t *cnt, Py_ssize_t k, float s, int64_t idx) noexcept nogil:
    """Insert (s, idx) into a heap of capacity k holding cnt[0] entries if it is among the k best."""
    cdef Py_ssize_t pos = cnt[0], parent
    if pos < k:  # room left: append, then sift up
        cnt[0] = pos + 1
        while pos > 0:
            parent = (pos - 1) >> 1
            if not _worse(s, idx, hs[parent], hi[parent]):
                break
            _put(hs, hi, pos, hs[parent], hi[parent])
            pos = parent
        _put(hs, hi, pos, s, idx)
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


cdef struct _Job:
    # What every row block of one dense_scores / dense_topk call reads.
    const float *qp      # the queries packed into tile panels
    const float *q       # the queries as given, (nq, d)
    const char *m        # M: n_rows rows of d values of element size `kind`
    Py_ssize_t nq, d, n_rows
    Py_ssize_t rb        # rows per block
    Py_ssize_t n_blocks
    Py_ssize_t qrows     # query rows per group
    int kind
    int n_threads        # at most one per block
    bint small           # the small-batch strip (rows in the SIMD lanes)
    bint normalize, check_finite


cdef int _new_job(_Job *job, const float[:, ::1] queries, uintptr_t m_ptr, Py_ssize_t n_rows, int kind,
                  bint normalize, bint check_finite, int n_threads) except -1:
    """Fill job for a call (blocking sizes, thread count) and pack the queries into job.qp,
    which the caller frees. MemoryError when the packed queries cannot be allocated."""
    cdef float *qp
    job.nq = queries.shape[0]
    job.d = queries.shape[1]
    job.n_rows = n_rows
    job.rb = _row_block(job.d)
    job.n_blocks = (n_rows + job.rb - 1) // job.rb
    job.qrows = _query_group(job.nq, job.d)
    job.m = <const char *>m_ptr
    job.kind = kind
    # no idle threads (starting them costs more than small inputs)
    job.n_threads = <int>job.n_blocks if n_threads > job.n_blocks else n_threads
    job.small = dense_small_ok(job.nq)
    job.normalize = normalize
    job.check_finite = check_finite
    job.q = &queries[0, 0]
    qp = <float *>rk_malloc(sizeof(float) * tile_packed_size(job.nq, job.d))
    check_alloc(qp, b"dense")
    with nogil:
        tile_pack_queries(job.q, job.nq, job.d, qp)
    job.qp = qp
    return 0


cdef inline const float *_block_rows(const _Job *job, Py_ssize_t r0, Py_ssize_t nb, float *conv,
                                     float *scale) noexcept nogil:
    """Rows r0 .. r0 + nb of M as float32 (in place, or converted into conv), and with
    `normalize` their inverse norms in scale."""
    cdef const float *rows = tile_rows_f32(job.m, job.kind, r0, <int>nb, job.d, conv)
    if job.normalize:
        _inv_norms(rows, nb, job.d, scale)
    return rows


cdef inline int _strip_at(const _Job *job, const float *rows, Py_ssize_t r0, Py_ssize_t nb, Py_ssize_t g0,
                          Py_ssize_t ng, Py_ssize_t s0, float *tmp) noexcept nogil:
    """Products of queries g0 .. g0 + ng with the strip of the block's rows starting at s0 (at
    most one strip width, within the nb rows of the block at r0) into tmp[j * qrows + i], the
    next strip being prefetched when M is read in place. Returns the strip's number of rows."""
    cdef int sw = DENSE_SMALL_ROWS if job.small else TILE_STRIP
    cdef int nr = <int>min(<Py_ssize_t>sw, nb - s0)
    # rows to prefetch: the next strip, when it is read in place
    cdef Py_ssize_t ahead = min(<Py_ssize_t>sw, job.n_rows - r0 - s0 - nr) if job.kind == TILE_F32 else 0
    _strip(job.small, job.qp + g0 * job.d, job.q + g0 * job.d, ng, job.d, rows + s0 * job.d, nr, tmp,
           job.qrows, rows + (s0 + nr) * job.d, ahead)
    return nr


cdef int _scores_block(const _Job *job, Py_ssize_t r0, float *conv, float *scale, float *tmp,
                       float *out) noexcept nogil:
    """Scores of every query with the block of rows at r0 into out (nq, n_rows). Returns 1 when
    check_finite finds a product that is NaN or infinite, else 0."""
    cdef Py_ssize_t nb = min(job.rb, job.n_rows - r0), qrows = job.qrows
    cdef const float *rows = _block_rows(job, r0, nb, conv, scale)
    cdef Py_ssize_t g0 = 0, ng, s0, i, j
    cdef float *dst
    cdef const float *src
    while g0 < job.nq:
        ng = min(qrows, job.nq - g0)
        s0 = 0
        while s0 < nb:
            s0 += _strip_at(job, rows, r0, nb, g0, ng, s0, tmp + s0 * qrows)
        if job.check_finite and not dense_all_finite(tmp, nb, ng, qrows):
            return 1
        # tmp[j * qrows + i] = S[g0 + i][r0 + j]: write each query's nb scores contiguously
        for i in range(ng):
            dst = out + (g0 + i) * job.n_rows + r0
            src = tmp + i
            if job.normalize:
                for j in range(nb):
                    dst[j] = src[j * qrows] * scale[j]
            else:
                for j in range(nb):
                    dst[j] = src[j * qrows]
        g0 += ng
    return 0


cdef int _topk_block(const _Job *job, Py_ssize_t r0, Py_ssize_t k, float *conv, float *scale, float *tmp,
                     float *hs, int64_t *hi, int64_t *cnt, float *thr) noexcept nogil:
    """Offer the scores of every query with the block of rows at r0 to the queries' heaps
    (hs, hi, cnt: nq heaps of capacity k; thr: their thresholds). Returns 1 as _scores_block."""
    cdef Py_ssize_t nb = min(job.rb, job.n_rows - r0), qrows = job.qrows
    cdef const float *rows = _block_rows(job, r0, nb, conv, scale)
    cdef Py_ssize_t g0 = 0, ng, s0, i, j, qi
    cdef int nr
    cdef float sc
    cdef float *o
    cdef float *t
    while g0 < job.nq:
        ng = min(qrows, job.nq - g0)
        t = thr + g0
        s0 = 0
        while s0 < nb:
            nr = _strip_at(job, rows, r0, nb, g0, ng, s0, tmp)
            if job.check_finite and not dense_all_finite(tmp, nr, ng, qrows):
                return 1
            for j in range(nr):
                o = tmp + j * qrows
                if job.normalize:
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


cdef int _run_blocks(const _Job *job, Py_ssize_t k, float *out, float *hs, int64_t *hi, int64_t *cnt,
                     float *thr) noexcept nogil:
    """Every row block of M, taken dynamically by job.n_threads threads, each with its own
    conversion, norm and product buffers: _scores_block into out when k == 0, else _topk_block
    into the thread's nq heaps (at hs + tid * nq * k, ...). Returns the worst block result: 0,
    1 (a product is not finite, with check_finite) or 2 (buffers could not be allocated)."""
    cdef Py_ssize_t rb = job.rb, b, slot
    # dense_scores keeps a query group's products with the whole block, dense_topk one strip
    cdef Py_ssize_t tmp_rows = DENSE_SMALL_ROWS if k else rb
    cdef int *status = <int *>rk_calloc(job.n_threads, sizeof(int))
    cdef float *conv = NULL
    cdef float *scale = NULL
    cdef float *tmp = NULL
    cdef int tid = 0, rc = 0, res = 0
    if status == NULL:
        return 2
    with parallel(num_threads=job.n_threads):
        tid = threadid()
        conv = <float *>rk_malloc(sizeof(float) * rb * job.d) if job.kind != TILE_F32 else NULL
        scale = <float *>rk_malloc(sizeof(float) * rb)
        tmp = <float *>rk_malloc(sizeof(float) * tmp_rows * job.qrows)
        for b in prange(job.n_blocks, schedule='dynamic', chunksize=1):
            if scale == NULL or tmp == NULL or (job.kind != TILE_F32 and conv == NULL):
                status[tid] = 2
                continue
            if k == 0:
                rc = _scores_block(job, b * rb, conv, scale, tmp, out)
            else:
                slot = tid * job.nq
                rc = _topk_block(job, b * rb, k, conv, scale, tmp, hs + slot * k, hi + slot * k, cnt + slot,
                                 thr + slot)
            if rc > status[tid]:
                status[tid] = rc
        free(tmp)
        free(scale)
        free(conv)
    for tid in range(job.n_threads):
        if status[tid] > res:
            res = status[tid]
    free(status)
    return res


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
    cdef _Job job
    cdef int res
    _new_job(&job, queries, m_ptr, n_rows, kind, normalize, check_finite, n_threads)
    with nogil:
        res = _run_blocks(&job, 0, &out[0, 0], NULL, NULL, NULL, NULL)
    free(<void *>job.qp)
    if res == 2:
        raise MemoryError("dense_scores: could not allocate the per-thread work buffers")
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
    cdef _Job job
    _new_job(&job, queries, m_ptr, n_rows, kind, normalize, check_finite, n_threads)
    cdef Py_ssize_t nq = job.nq, i, q, t, e, slot, size
    cdef Py_ssize_t nslots = <Py_ssize_t>job.n_threads * nq
    cdef float *hs = <float *>rk_malloc(sizeof(float) * nslots * k)
    cdef int64_t *hi = <int64_t *>rk_malloc(sizeof(int64_t) * nslots * k)
    cdef int64_t *cnt = <int64_t *>rk_calloc(nslots, sizeof(int64_t))
    cdef float *thr = <float *>rk_malloc(sizeof(float) * nslots)
    cdef float *ms
    cdef int64_t *mi
    cdef int64_t *mc
    cdef float ws, ls
    cdef int64_t wi, li
    cdef int res = 2
    if hs != NULL and hi != NULL and cnt != NULL and thr != NULL:
        with nogil:
            for i in range(nslots):
                thr[i] = -INFINITY
            res = _run_blocks(&job, k, NULL, hs, hi, cnt, thr)
            if res == 0:
                # Merge: fold the heaps of threads 1.. into thread 0's, then heap-sort it out.
                for q in prange(nq, schedule='static', num_threads=job.n_threads):
                    ms = hs + q * k
                    mi = hi + q * k
                    mc = cnt + q
                    for t in range(1, job.n_threads):
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
    free(<void *>job.qp)
    free(hs)
    free(hi)
    free(cnt)
    free(thr)
    if res == 2:
        raise MemoryError("dense_topk: could not allocate the work buffers")
    return res
