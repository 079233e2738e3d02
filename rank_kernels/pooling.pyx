"""Token pooling kernel: Ward agglomerative clustering of token vectors.

For each document of n token vectors, build the full Ward dendrogram with the
nearest-neighbour-chain algorithm (O(n^2) time after the O(n^2 d) squared-distance matrix,
O(n^2) memory for the condensed matrix) using the Lance-Williams update on squared
Euclidean distances. Ward linkage is reducible, so the chain finds the same merges as the
greedy algorithm; sorting them by height and applying the n - m lowest with a union-find
gives the m-cluster partition (the same as cutting the dendrogram into m clusters). Each
cluster becomes the mean of its vectors scaled to unit L2 norm. No validation happens here:
the `rank.rerank` layer checks shapes, dtypes and sizes first.
"""
from cython.parallel cimport prange
from libc.math cimport isfinite, sqrt
from libc.stdint cimport int8_t, int64_t, uint8_t, uintptr_t
from libc.stdlib cimport free

from cython cimport floating
from rank_kernels._mem cimport rk_malloc, rk_mem_init

rk_mem_init()  # work buffers fail under the RANK_KERNELS_FAIL_ALLOC=1 test hook (see mem.h)


cdef extern from *:
    """
    #include "sort.h"
    typedef struct { double height; Py_ssize_t a, b; } pool_merge;
    #define POOL_LOWER(ctx, x, y) ((x)->height < (y)->height)
    RK_STABLE_SORT(pool_sort_merges, pool_merge, int, POOL_LOWER)
    """
    ctypedef struct Merge "pool_merge":
        double height
        Py_ssize_t a
        Py_ssize_t b
    # Merges by height ascending, equal heights in step order (the one stable sort, sort.h).
    void _sort_merges "pool_sort_merges"(int ctx, Merge *merges, Merge *tmp, Py_ssize_t n) noexcept nogil


cdef inline Py_ssize_t _cond(Py_ssize_t n, Py_ssize_t i, Py_ssize_t j) noexcept nogil:
    """Position of pair (i, j), i != j, in a condensed n x n matrix."""
    cdef Py_ssize_t t
    if i > j:
        t = i
        i = j
        j = t
    return n * i - (i * (i + 1)) // 2 + j - i - 1


cdef inline Py_ssize_t _find(Py_ssize_t *parent, Py_ssize_t x) noexcept nogil:
    cdef Py_ssize_t r = x, nxt
    while parent[r] != r:
        r = parent[r]
    while parent[x] != r:  # path compression
        nxt = parent[x]
        parent[x] = r
        x = nxt
    return r


cdef inline double _sqdist(const floating *x, const floating *y, Py_ssize_t d) noexcept nogil:
    """Squared Euclidean distance in float64, with independent partial sums for speed."""
    cdef double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0, v0, v1, v2, v3
    cdef Py_ssize_t t = 0
    while t + 4 <= d:
        v0 = <double>x[t] - <double>y[t]
        v1 = <double>x[t + 1] - <double>y[t + 1]
        v2 = <double>x[t + 2] - <double>y[t + 2]
        v3 = <double>x[t + 3] - <double>y[t + 3]
        s0 = s0 + v0 * v0
        s1 = s1 + v1 * v1
        s2 = s2 + v2 * v2
        s3 = s3 + v3 * v3
        t = t + 4
    while t < d:
        v0 = <double>x[t] - <double>y[t]
        s0 = s0 + v0 * v0
        t = t + 1
    return (s0 + s1) + (s2 + s3)


cdef int _ward_merges(const floating *x, Py_ssize_t n, Py_ssize_t d, Merge *merges) noexcept nogil:
    """The n - 1 Ward merges of the rows of x (n >= 2) by nearest-neighbour chain.

    merges[s] = (squared height, a, b): at step s the clusters held in slots a and b merge
    (slot x always holds a cluster containing token x). Returns 0, -1 when out of memory,
    1 when a distance is not finite.
    """
    cdef Py_ssize_t npairs = n * (n - 1) // 2
    cdef double *dist = <double *>rk_malloc(sizeof(double) * npairs)
    cdef double *size = <double *>rk_malloc(sizeof(double) * n)
    cdef uint8_t *active = <uint8_t *>rk_malloc(sizeof(uint8_t) * n)
    cdef Py_ssize_t *chain = <Py_ssize_t *>rk_malloc(sizeof(Py_ssize_t) * n)
    cdef int status = 0
    cdef Py_ssize_t i, j, p, a, b, lo, hi, first, clen = 0, step
    cdef double s, v, best, dab, na, nb, nk
    if dist == NULL or size == NULL or active == NULL or chain == NULL:
        free(dist)
        free(size)
        free(active)
        free(chain)
        return -1
    # Squared Euclidean distances, summed directly over the differences for accuracy.
    p = 0
    for i in range(n):
        size[i] = 1.0
        active[i] = 1
        for j in range(i + 1, n):
            s = _sqdist(x + i * d, x + j * d, d)
            dist[p] = s
            p = p + 1
            if not isfinite(s):
                status = 1
    if status:
        free(dist)
        free(size)
        free(active)
        free(chain)
        return status
    first = 0
    for step in range(n - 1):
        if clen == 0:
            while not active[first]:
                first = first + 1
            chain[0] = first
            clen = 1
        while True:
            a = chain[clen - 1]
            # Nearest active neighbour of a; the previous chain element wins ties so the
            # chain always terminates, otherwise the smaller index does.
            if clen >= 2:
                b = chain[clen - 2]
                best = dist[_cond(n, a, b)]
            else:
                b = -1
                best = 0.0
            for j in range(n):
                if j == a or not active[j]:
                    continue
                v = dist[_cond(n, a, j)]
                if b < 0 or v < best:
                    b = j
                    best = v
            if clen >= 2 and b == chain[clen - 2]:
                break
            chain[clen] = b
            clen = clen + 1
        clen = clen - 2
        lo = a if a < b else b
        hi = b if a < b else a
        dab = best
        merges[step].height = dab
        merges[step].a = lo
        merges[step].b = hi
        # Lance-Williams update for Ward on squared distances; the union lives in slot lo.
        na = size[lo]
        nb = size[hi]
        active[hi] = 0
        for j in range(n):
            if not active[j] or j == lo:
                continue
            nk = size[j]
            dist[_cond(n, lo, j)] = ((na + nk) * dist[_cond(n, lo, j)] + (nb + nk) * dist[_cond(n, hi, j)]
                                     - nk * dab) / (na + nb + nk)
        size[lo] = na + nb
    free(dist)
    free(size)
    free(active)
    free(chain)
    return 0


cdef int _pool_one(const floating *x, Py_ssize_t n, Py_ssize_t d, Py_ssize_t m,
                   float *out, int64_t *labels) noexcept nogil:
    """Pool the n rows of x into m <= n unit-norm cluster means (out: m x d, labels: n).

    Clusters are numbered by their smallest member row. Returns 0, -1 when out of memory,
    1 when a distance is not finite.
    """
    cdef Py_ssize_t *parent = <Py_ssize_t *>rk_malloc(sizeof(Py_ssize_t) * n)
    cdef Py_ssize_t *label_of_root = <Py_ssize_t *>rk_malloc(sizeof(Py_ssize_t) * n)
    cdef double *acc = <double *>rk_malloc(sizeof(double) * m * d)
    cdef Merge *merges = NULL
    cdef Py_ssize_t i, t, r, ra, rb, c, n_labels = 0
    cdef double s, v, mx
    cdef int status = 0
    if parent == NULL or label_of_root == NULL or acc == NULL:
        status = -1
    elif m < n:
        merges = <Merge *>rk_malloc(sizeof(Merge) * 2 * (n - 1))  # the merges, then the sort's room
        status = _ward_merges(x, n, d, merges) if merges != NULL else -1
    if status == 0:
        for i in range(n):
            parent[i] = i
            label_of_root[i] = -1
        if m < n:
            _sort_merges(0, merges, merges + n - 1, n - 1)
            for i in range(n - m):
                ra = _find(parent, merges[i].a)
                rb = _find(parent, merges[i].b)
                if ra < rb:
                    parent[rb] = ra
                elif rb < ra:
                    parent[ra] = rb
        for i in range(m * d):
            acc[i] = 0.0
        for i in range(n):
            r = _find(parent, i)
            if label_of_root[r] < 0:
                label_of_root[r] = n_labels
                n_labels = n_labels + 1
            c = label_of_root[r]
            labels[i] = c
            for t in range(d):
                acc[c * d + t] = acc[c * d + t] + <double>x[i * d + t]
        # Mean scaled to unit norm = sum scaled to unit norm; scale by the largest entry
        # first so the squares cannot overflow. A zero sum stays zero.
        for c in range(m):
            mx = 0.0
            for t in range(d):
                v = acc[c * d + t]
                if v < 0.0:
                    v = -v
                if v > mx:
                    mx = v
            s = 0.0
            if mx > 0.0:
                for t in range(d):
                    v = acc[c * d + t] / mx
                    s = s + v * v
                s = 1.0 / (mx * sqrt(s))
            for t in range(d):
                out[c * d + t] = <float>(acc[c * d + t] * s)
    free(merges)
    free(parent)
    free(label_of_root)
    free(acc)
    return status


def pool_batch(const uintptr_t[::1] doc_ptrs, const int64_t[::1] n_rows, Py_ssize_t d, int kind,
               const int64_t[::1] n_clusters, const uintptr_t[::1] out_ptrs,
               const uintptr_t[::1] label_ptrs, int n_threads, int8_t[::1] status):
    """Pool each of len(doc_ptrs) documents; documents run in parallel on n_threads.

    Document i is n_rows[i] >= 1 rows of d >= 1 values at address doc_ptrs[i], float32
    (kind 4) or float64 (kind 8), C-contiguous. It is pooled into n_clusters[i] (1 <= m <=
    n_rows[i]) unit-norm rows written as float32 to out_ptrs[i] (m x d), with the cluster
    of each row (0 .. m - 1, numbered by smallest member row) written as int64 to
    label_ptrs[i]. status[i] is 0 on success, -1 when out of memory, 1 when a distance is
    not finite (out is then left unwritten). Runs without the GIL.
    """
    cdef Py_ssize_t n_docs = doc_ptrs.shape[0], i
    with nogil:
        for i in prange(n_docs, num_threads=n_threads, schedule='dynamic', chunksize=1):
            if kind == 8:
                status[i] = _pool_one(<const double *>doc_ptrs[i], n_rows[i], d, n_clusters[i],
                                      <float *>out_ptrs[i], <int64_t *>label_ptrs[i])
            else:
                status[i] = _pool_one(<const float *>doc_ptrs[i], n_rows[i], d, n_clusters[i],
                                      <float *>out_ptrs[i], <int64_t *>label_ptrs[i])
