"""Maximal Marginal Relevance (MMR) selection kernel.

Greedy diversity-aware selection (Carbonell & Goldstein, 1998): with rel[i] = sim(q, c_i),
each step picks the unselected candidate maximising

    lambda * rel[i] - (1 - lambda) * max over selected s of sim(c_i, c_s)

The first pick is the most relevant candidate. A running maximum similarity to the selected
set is kept per candidate and refreshed with the newly selected candidate only, so the cost
is O(k * n * d) time and O(n) extra memory. No validation happens here: the `rank.rerank`
layer checks shapes, dtypes and ranges first.
"""
from libc.math cimport INFINITY, isfinite, sqrt
from libc.stdint cimport int64_t, uint8_t
from libc.stdlib cimport free

from cython cimport floating
from rank_kernels._mem cimport rk_malloc, rk_mem_init

rk_mem_init()  # work buffers fail under the RANK_KERNELS_FAIL_ALLOC=1 test hook (see mem.h)


cdef inline double _dot(const floating *a, const floating *b, Py_ssize_t d) noexcept nogil:
    """Dot product in float64, with independent partial sums for speed."""
    cdef double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0
    cdef Py_ssize_t t = 0
    while t + 4 <= d:
        s0 = s0 + <double>a[t] * <double>b[t]
        s1 = s1 + <double>a[t + 1] * <double>b[t + 1]
        s2 = s2 + <double>a[t + 2] * <double>b[t + 2]
        s3 = s3 + <double>a[t + 3] * <double>b[t + 3]
        t = t + 4
    while t < d:
        s0 = s0 + <double>a[t] * <double>b[t]
        t = t + 1
    return (s0 + s1) + (s2 + s3)


def mmr_select(const floating[::1] query, const floating[:, ::1] candidates, double lambda_,
               bint cosine, int64_t[::1] out_indices, float[::1] out_scores):
    """Fill out_indices / out_scores with the first k = len(out_indices) MMR picks.

    query: (d,), candidates: (n, d) of the same float dtype, 1 <= k <= n.
    cosine: use cosine similarity (a zero vector has similarity 0 with everything), else the
    dot product. Similarities and objectives are computed in float64; ties go to the smaller
    candidate index. out_scores[t] is the objective of pick t at selection time (the first
    pick's is lambda * rel, the maximum over an empty selected set counting as 0).
    Returns 0, or 1 if a similarity was not finite (overflow or non-finite input).
    Runs without the GIL.
    """
    cdef Py_ssize_t n = candidates.shape[0], d = candidates.shape[1]
    cdef Py_ssize_t k = out_indices.shape[0]
    cdef double *rel = <double *>rk_malloc(sizeof(double) * n)
    cdef double *maxsim = <double *>rk_malloc(sizeof(double) * n)
    cdef double *inv = <double *>rk_malloc(sizeof(double) * n)
    cdef uint8_t *taken = <uint8_t *>rk_malloc(sizeof(uint8_t) * n)
    if rel == NULL or maxsim == NULL or inv == NULL or taken == NULL:
        free(rel)
        free(maxsim)
        free(inv)
        free(taken)
        raise MemoryError()
    cdef const floating *q = &query[0]
    cdef const floating *c = &candidates[0, 0]
    cdef const floating *cs
    cdef Py_ssize_t i, t, best = 0
    cdef double qinv = 1.0, nrm, v, obj, best_obj, best_rel = 0.0, sim
    cdef double mu = 1.0 - lambda_
    cdef int status = 0
    with nogil:
        if cosine:
            nrm = sqrt(_dot(q, q, d))
            qinv = 1.0 / nrm if nrm > 0.0 else 0.0
            if not isfinite(nrm):
                status = 1
        for i in range(n):
            taken[i] = 0
            maxsim[i] = 0.0
            if cosine:
                nrm = sqrt(_dot(c + i * d, c + i * d, d))
                inv[i] = 1.0 / nrm if nrm > 0.0 else 0.0
                if not isfinite(nrm):
                    status = 1
            else:
                inv[i] = 1.0
            v = _dot(q, c + i * d, d)
            if cosine:
                v = v * qinv * inv[i]
            rel[i] = v
            if not isfinite(v):
                status = 1
            # First pick: the most relevant candidate (ties: smaller index).
            if i == 0 or v > best_rel:
                best = i
                best_rel = v
        best_obj = lambda_ * best_rel
        t = 0
        while True:
            out_indices[t] = best
            out_scores[t] = <float>best_obj
            taken[best] = 1
            t = t + 1
            if t >= k:
                break
            # Refresh the running maximum with the new pick and choose the next one.
            cs = c + best * d
            best = -1
            best_obj = -INFINITY
            for i in range(n):
                if taken[i]:
                    continue
                sim = _dot(c + i * d, cs, d)
                if cosine:
                    sim = sim * inv[i] * inv[out_indices[t - 1]]
                if not isfinite(sim):
                    status = 1
                if t == 1 or sim > maxsim[i]:
                    maxsim[i] = sim
                obj = lambda_ * rel[i] - mu * maxsim[i]
                if best < 0 or obj > best_obj:
                    best = i
                    best_obj = obj
    free(rel)
    free(maxsim)
    free(inv)
    free(taken)
    return status
