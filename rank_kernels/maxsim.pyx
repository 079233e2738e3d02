"""MaxSim late-interaction kernels (ColBERT / ColPali scoring).

MaxSim(Q, D) = sum_i max_j <Q_i, D_j> for a query of Lq token vectors and a document of Ld.
Documents are given as raw row pointers, so lists of arrays, padded 3-D arrays and packed
(flat, offsets) pairs all reach the same loop without a copy. No validation happens here:
the `rank.rerank` layer checks shapes, dtypes and lengths first.

Cost: 2 * sum(Lq) * d * sum(Ld) flops; extra memory per thread is one strip of
TILE_STRIP * d floats (for float16/float64 conversion) and one running maximum per query row.
"""
from cython.parallel cimport parallel, prange
from libc.math cimport INFINITY
from libc.stdint cimport int64_t, uint8_t, uintptr_t
from libc.stdlib cimport free

cimport numpy as cnp

from rank_kernels.tile cimport (TILE_F16, TILE_F32, TILE_F64, TILE_QW, TILE_STRIP, tile_all_finite,
                                tile_init, tile_isa, tile_n_panels, tile_pack_queries,
                                tile_packed_size, tile_rows_f32, tile_strip_max)

import numpy as np

from rank_kernels._mem cimport rk_malloc, rk_mem_init

rk_mem_init()  # work buffers fail under the RANK_KERNELS_FAIL_ALLOC=1 test hook (see mem.h)

cnp.import_array()
tile_init()


def isa():
    """The instruction set the tile engine uses on this machine: 'avx512f', 'avx2+fma' or 'portable'."""
    return tile_isa().decode()


def ragged_pointers(list docs):
    """Raw (pointer, rows, cols, kind) of each document of a list, without copying.

    kind is the element size (2, 4, 8 for float16/32/64) for a 2-D C-contiguous aligned
    ndarray of one of those dtypes; 0 means the entry needs conversion first.
    Returns (ptrs uint64, rows int64, cols int64, kinds uint8), each of length len(docs).
    """
    cdef Py_ssize_t n = len(docs), i
    ptrs = np.empty(n, dtype=np.uint64)
    rows = np.zeros(n, dtype=np.int64)
    cols = np.zeros(n, dtype=np.int64)
    kinds = np.zeros(n, dtype=np.uint8)
    cdef uintptr_t[::1] p = ptrs
    cdef int64_t[::1] r = rows, c = cols
    cdef uint8_t[::1] k = kinds
    cdef cnp.ndarray a
    cdef int t
    for i in range(n):
        obj = docs[i]
        p[i] = 0
        if type(obj) is not cnp.ndarray:
            continue
        a = <cnp.ndarray>obj
        if cnp.PyArray_NDIM(a) != 2 or not cnp.PyArray_ISCARRAY_RO(a):
            continue
        t = cnp.PyArray_TYPE(a)
        if t == cnp.NPY_FLOAT32:
            k[i] = TILE_F32
        elif t == cnp.NPY_FLOAT16:
            k[i] = TILE_F16
        elif t == cnp.NPY_FLOAT64:
            k[i] = TILE_F64
        else:
            continue
        p[i] = <uintptr_t>cnp.PyArray_DATA(a)
        r[i] = cnp.PyArray_DIM(a, 0)
        c[i] = cnp.PyArray_DIM(a, 1)
    return ptrs, rows, cols, kinds


def maxsim_scores(const float[:, ::1] queries, const int64_t[::1] query_offsets,
                  const uintptr_t[::1] doc_ptrs, const int64_t[::1] doc_lengths, int kind,
                  bint check_finite, int n_threads, float[:, ::1] out, uint8_t[::1] bad):
    """out[i, j] = MaxSim(query j, document i) for every document i and query j.

    queries: (sum Lq, d) float32, the token rows of all queries stacked; query j is rows
    query_offsets[j]:query_offsets[j + 1]. Document i is doc_lengths[i] >= 1 rows of d
    values of element size `kind` (2, 4 or 8) at address doc_ptrs[i].
    out: (n_docs, n_queries) float32. bad[i] is set to 1 (and out[i] left undefined) when
    check_finite and document i holds NaN or infinity, to 2 when a thread ran out of memory. Runs without the GIL on n_threads.
    """
    cdef Py_ssize_t n_rows = queries.shape[0], d = queries.shape[1]
    cdef Py_ssize_t n_docs = doc_ptrs.shape[0], n_queries = query_offsets.shape[0] - 1
    cdef Py_ssize_t width = tile_n_panels(n_rows) * TILE_QW
    cdef float *qp = <float *>rk_malloc(sizeof(float) * tile_packed_size(n_rows, d))
    if qp == NULL:
        raise MemoryError()
    cdef Py_ssize_t i, j, t0, r
    cdef int nr, ok
    cdef float *strip = NULL
    cdef float *runmax = NULL
    cdef const float *rows
    cdef double s
    with nogil:
        tile_pack_queries(&queries[0, 0], n_rows, d, qp)
        with parallel(num_threads=n_threads):
            strip = <float *>rk_malloc(sizeof(float) * TILE_STRIP * d)
            runmax = <float *>rk_malloc(sizeof(float) * width)
            for i in prange(n_docs, schedule='dynamic', chunksize=1):
                if strip == NULL or runmax == NULL:
                    bad[i] = 2
                    continue
                for r in range(width):
                    runmax[r] = -INFINITY
                ok = 1
                t0 = 0
                while t0 < doc_lengths[i]:
                    nr = <int>min(<Py_ssize_t>TILE_STRIP, doc_lengths[i] - t0)
                    rows = tile_rows_f32(<const char *>doc_ptrs[i], kind, t0, nr, d, strip)
                    if check_finite and not tile_all_finite(rows, nr * d):
                        ok = 0
                        break
                    tile_strip_max(qp, n_rows, rows, d, d, nr, runmax)
                    t0 = t0 + nr
                bad[i] = not ok
                for j in range(n_queries):
                    s = 0.0
                    for r in range(query_offsets[j], query_offsets[j + 1]):
                        s = s + runmax[r]
                    out[i, j] = <float>s
            free(runmax)
            free(strip)
        free(qp)
