"""Differentiable ranking relaxations: forward passes and vector-Jacobian products, row by row.

Every function takes a C-contiguous (m, n) float32 or float64 array of rows and writes an
output of the same dtype; the arithmetic runs in float64 on a per-thread copy of the row.
Rows are shared among `n_threads` OpenMP threads and the GIL is released for the whole loop.
No validation happens here: the `rank.soft.relaxations` layer checks shapes, dtypes and ranges.
Each kernel computes its method's natural direction (see each docstring); the Python layer
negates the values (and the gradient) for the other direction.

Methods (tau = temperature, all exponentials taken relative to a maximum, so large |x|/tau never
overflows):

- sigmoid: r_i = 1 + sum_{j != i} sigmoid((x_i - x_j) / tau) (ascending). Each unordered pair is
  evaluated once (sigmoid(-z) = 1 - sigmoid(z)). When the spread of the row is at most
  SEPARABLE_SPAN * tau, exp(-|x_i - x_j| / tau) is the product of two per-element exponentials
  (no exponential inside the pair loop); otherwise one exp per pair. The pair loop is tiled so a
  tile of the row stays in L1.
- neuralsort (Grover et al., 2019): P[i, :] = softmax(((n + 1 - 2i) x - A 1) / tau) with
  (A 1)_j = sum_k |x_j - x_k| (from a sort, O(n log n)); ranks r_j = sum_i i P[i, j]
  (descending: the largest value has rank near 1). P is never stored: consecutive rows differ
  by the factor exp(-2 x_j / tau), so a row is the previous row times a precomputed vector,
  re-anchored with exact exponentials every few rows (the block length is chosen so that no
  intermediate over- or underflows); the VJP recomputes the rows the same way.
- softrank (Taylor et al., 2008): scores s_j ~ N(x_j, sigma^2), pi_ij = P(s_i > s_j)
  = Phi((x_i - x_j) / (sigma sqrt 2)); expected ranks 1 + sum_{i != j} pi_ij (descending); the
  SoftNDCG needs each document's rank distribution from the recursive algorithm, O(n^2) per
  document with a non-zero gain, and its VJP runs the recursion backwards.
- smoothi (Thonet et al., 2022): I^1 = softmax(alpha s), I^r = softmax(alpha s * prod_{l<r}
  (1 - I^l - delta)) for positive scores s; out_j = sum_{r <= K} w_r I^r_j (ranks: w_r = r;
  DCG: w_r = 1 / log2(1 + r)). The VJP stores the K indicator rows and runs them backwards.
- gumbel top-k (relaxed subset sampling): a^1 = perturbed values, p^t = softmax(a^t / tau),
  a^{t+1} = a^t + log(1 - p^t), mask = sum_{t <= k} p^t.
- capped-simplex top-k: the Euclidean projection of x / tau onto {m in [0, 1]^n, sum m = k}
  (the permutahedron of (1, ..., 1, 0, ..., 0)), m = clip(x / tau - theta, 0, 1).
"""
from cython.parallel cimport parallel, prange
from libc.math cimport erfc, exp, fabs, floor, log, sqrt, M_PI
from libc.stdlib cimport free
from libc.string cimport memcpy

from cython cimport floating

from rank_kernels._mem cimport check_status, new_status, rk_malloc, rk_mem_init, rk_status, rk_status_fail
from rank_kernels.simd cimport rk_simd_init, rk_simd_level

cdef extern from "relax_simd.h":
    double relax_sig_fwd(double xi, double ai, double bi, const double *x, const double *A, const double *B,
                         double *out, Py_ssize_t j0, Py_ssize_t j1) noexcept nogil
    double relax_sig_vjp(double ci, double ai, double bi, const double *c, const double *A, const double *B,
                         double *g, Py_ssize_t j0, Py_ssize_t j1) noexcept nogil
    double relax_scale_sum(double *w, const double *u, Py_ssize_t n) noexcept nogil
    void relax_axpy(double *r, double f, const double *w, Py_ssize_t n) noexcept nogil
    double relax_dot(const double *a, const double *b, Py_ssize_t n) noexcept nogil
    void relax_ns_acc(double *g, double *ga, const double *w, const double *c, double f, double m, double ci,
                      Py_ssize_t n) noexcept nogil

rk_simd_init()  # the shared instruction-set probe, once at import (honours RANK_KERNELS_ISA)


def simd_level():
    """Instruction set of the relax inner loops on this CPU under RANK_KERNELS_ISA: 0 portable, >= 1 AVX2."""
    return rk_simd_level()


cdef enum:
    TILE = 512

rk_mem_init()  # work buffers fail under the RANK_KERNELS_FAIL_ALLOC=1 test hook (see mem.h)

# Largest (max - min) / tau for which the sigmoid kernel uses separable exponentials
# (each factor stays within exp(+-SEPARABLE_SPAN / 2), so products neither overflow nor lose
# precision to denormals).
cdef double SEPARABLE_SPAN = 200.0
# Bound on |log| of the multiplicative NeuralSort updates inside one block of rows. Entries
# below exp(NS_FLUSH_LOG) (at a re-anchoring) or 1e-290 (after an update) relative to the
# anchor row's maximum are set to 0; within a block any entry moves by at most
# exp(2 NS_LOG_BOUND) relative to another and the row sum stays >= exp(-NS_LOG_BOUND), so a
# flushed entry weighs less than exp(-660 + 3 * 150) = exp(-210) of its row.
cdef double NS_LOG_BOUND = 150.0
cdef double NS_FLUSH_LOG = -660.0
cdef Py_ssize_t NS_MAX_BLOCK = 32
cdef double TINY = 1e-300


# ------------------------------------------------------------------------------------------------
# shared row routines

cdef inline void _load(const floating *src, double *dst, Py_ssize_t n, double sign) noexcept nogil:
    cdef Py_ssize_t j
    for j in range(n):
        dst[j] = sign * <double>src[j]


cdef inline void _store(const double *src, floating *dst, Py_ssize_t n, double sign) noexcept nogil:
    cdef Py_ssize_t j
    for j in range(n):
        dst[j] = <floating>(sign * src[j])


cdef inline void _fill(double *a, Py_ssize_t n, double v) noexcept nogil:
    cdef Py_ssize_t j
    for j in range(n):
        a[j] = v


# ------------------------------------------------------------------------------------------------
# the row driver: every kernel is a row function run by _run_rows

# What a row function reads: the rows, their dtype and the method's parameters. The arrays are
# C-contiguous; x, cot and out have the dtype named by f64 (gumbel: always float64).
ctypedef struct _Rows:
    const void *x          # (m, n) input rows
    const void *cot        # (m, n) or (m, n, n) cotangents, or NULL
    void *out              # (m, n) or (m, n, n) output (softrank_ndcg: (m,) float64)
    bint f64               # float64 rows (else float32)
    Py_ssize_t m, n        # rows, row length
    double sign            # +-1: the direction the rows are read in
    double p, q            # the method's parameters (1 / tau; h and k; alpha and delta)
    Py_ssize_t K           # depth (smoothi, softrank_ndcg) or k (gumbel)
    const double *tab      # smoothi weights (K,) or softrank_ndcg gains (m, n)
    const double *dcot     # softrank_ndcg_vjp cotangents (m,)

# One row of one kernel: reads row `row` through a, writes its output; buf, ib, big are the
# calling thread's scratch (sizes given to _run_rows; ib, big NULL when 0). A row function
# of a method pair computes the forward pass when a.cot is NULL, else the VJP.
ctypedef void (*_row_fn)(const _Rows *a, Py_ssize_t row, double *buf, Py_ssize_t *ib,
                         double *big) noexcept nogil


cdef _Rows _args(const floating[:, ::1] x, const void *cot, void *out, double sign, double p, double q):
    """The _Rows of the rows x: cotangents cot (or NULL), output out, parameters p and q; no K,
    no table."""
    cdef _Rows a
    a.x = &x[0, 0]
    a.cot = cot
    a.out = out
    a.f64 = floating is double
    a.m = x.shape[0]
    a.n = x.shape[1]
    a.sign = sign
    a.p = p
    a.q = q
    a.K = 0
    a.tab = NULL
    a.dcot = NULL
    return a


cdef int _run_rows(_row_fn fn, _Rows a, Py_ssize_t n_buf, Py_ssize_t n_ib, Py_ssize_t n_big, int n_threads,
                   const char *name) except -1:
    """fn(&a, row, buf, ib, big) for every row of [0, a.m), rows shared dynamically among n_threads
    OpenMP threads without the GIL. Each thread allocates its scratch once: buf (n_buf doubles),
    ib (n_ib Py_ssize_t) and big (n_big doubles; ib and big NULL when their size is 0). A thread
    that cannot allocate runs no row, and MemoryError("<name>: ...") is raised at the end."""
    cdef Py_ssize_t row
    cdef double *buf = NULL
    cdef double *big = NULL
    cdef Py_ssize_t *ib = NULL
    cdef const _Rows *ap = &a
    cdef rk_status *st = new_status(n_threads, name)
    with nogil, parallel(num_threads=n_threads):
        buf = <double *>rk_malloc(n_buf * sizeof(double))
        ib = <Py_ssize_t *>rk_malloc(n_ib * sizeof(Py_ssize_t)) if n_ib > 0 else NULL
        big = <double *>rk_malloc(n_big * sizeof(double)) if n_big > 0 else NULL
        if True:  # every thread must reach the prange, even one whose allocation failed
            for row in prange(ap.m, schedule="dynamic"):
                if buf == NULL or (n_ib > 0 and ib == NULL) or (n_big > 0 and big == NULL):
                    rk_status_fail(st)
                    continue
                fn(ap, row, buf, ib, big)
        free(buf)
        free(ib)
        free(big)
    return check_status(st, name)


cdef inline void _get(const _Rows *a, const void *src, Py_ssize_t off, double *dst, Py_ssize_t cnt,
                      double sign) noexcept nogil:
    """dst[0:cnt] = sign * src[off:off + cnt] in float64 (src: x or cot, of the rows' dtype)."""
    if a.f64:
        _load(<const double *>src + off, dst, cnt, sign)
    else:
        _load(<const float *>src + off, dst, cnt, sign)


cdef inline void _put(const _Rows *a, const double *src, Py_ssize_t off, Py_ssize_t cnt, double sign) noexcept nogil:
    """out[off:off + cnt] = sign * src[0:cnt], rounded to the rows' dtype."""
    if a.f64:
        _store(src, <double *>a.out + off, cnt, sign)
    else:
        _store(src, <float *>a.out + off, cnt, sign)


cdef extern from *:
    """
    #include "sort.h"
    #define RELAX_ASCENDING(x, a, b) ((x)[*(a)] < (x)[*(b)])
    RK_STABLE_SORT(relax_sort_positions, Py_ssize_t, const double *, RELAX_ASCENDING)
    """
    void relax_sort_positions(const double *x, Py_ssize_t *idx, Py_ssize_t *tmp, Py_ssize_t n) noexcept nogil


cdef inline void _argsort(const double *x, Py_ssize_t *idx, Py_ssize_t *tmp, Py_ssize_t n) noexcept nogil:
    """Stable ascending argsort of x[0:n] into idx (idx, tmp: n entries each), by the one stable sort."""
    cdef Py_ssize_t i
    for i in range(n):
        idx[i] = i
    relax_sort_positions(x, idx, tmp, n)


# ------------------------------------------------------------------------------------------------
# sigmoid

cdef inline bint _separable(const double *x, Py_ssize_t n, double inv, double *A, double *B) noexcept nogil:
    """A_i = exp(-(x_i - c) inv), B_i = 1 / A_i when the row's spread allows it."""
    cdef double lo = x[0], hi = x[0], c
    cdef Py_ssize_t i
    for i in range(1, n):
        if x[i] < lo:
            lo = x[i]
        if x[i] > hi:
            hi = x[i]
    if (hi - lo) * inv > SEPARABLE_SPAN:
        return False
    c = 0.5 * (hi + lo)
    for i in range(n):
        A[i] = exp(-(x[i] - c) * inv)
        B[i] = exp((x[i] - c) * inv)
    return True


cdef void _sigmoid_row(const double *x, Py_ssize_t n, double inv, double *r, double *A, double *B,
                       const double *c, double *g) noexcept nogil:
    """Ranks into r (c == NULL) or the VJP with cotangent c into g; ascending."""
    cdef Py_ssize_t i, j, j0, j1, jt
    cdef double e, q, s, t, xi, ai, bi, acc, ci, d
    cdef bint sep = _separable(x, n, inv, A, B)
    cdef double *out = r if c == NULL else g
    for i in range(n):
        out[i] = 0.0
    jt = 0
    while jt < n:
        j1 = jt + TILE
        if j1 > n:
            j1 = n
        for i in range(j1 - 1):
            j0 = i + 1
            if j0 < jt:
                j0 = jt
            xi = x[i]
            ai = A[i]
            bi = B[i]
            acc = 0.0
            if c == NULL:
                if sep:
                    acc = relax_sig_fwd(xi, ai, bi, x, A, B, out, j0, j1)
                else:
                    for j in range(j0, j1):
                        e = fabs(xi - x[j]) * inv
                        e = exp(-e) if e < 700.0 else 0.0
                        q = 1.0 / (1.0 + e)
                        s = q if xi >= x[j] else e * q
                        t = e * q if xi >= x[j] else q
                        acc = acc + s
                        out[j] = out[j] + t
            else:
                ci = c[i]
                if sep:
                    acc = relax_sig_vjp(ci, ai, bi, c, A, B, out, j0, j1)
                else:
                    for j in range(j0, j1):
                        e = fabs(xi - x[j]) * inv
                        e = exp(-e) if e < 700.0 else 0.0
                        q = 1.0 / (1.0 + e)
                        d = (ci - c[j]) * e * q * q
                        acc = acc + d
                        out[j] = out[j] - d
            out[i] = out[i] + acc
        jt = j1
    if c == NULL:
        for i in range(n):
            out[i] = out[i] + 1.0
    else:
        for i in range(n):
            out[i] = out[i] * inv


cdef void _sigmoid_task(const _Rows *a, Py_ssize_t row, double *buf, Py_ssize_t *ib, double *big) noexcept nogil:
    """Ranks of one row (a.cot == NULL; buf: 4n) or its VJP (buf: 5n); a.p = 1 / tau."""
    cdef Py_ssize_t n = a.n
    _get(a, a.x, row * n, buf, n, a.sign)
    if a.cot == NULL:
        _sigmoid_row(buf, n, a.p, buf + n, buf + 2 * n, buf + 3 * n, NULL, NULL)
        _put(a, buf + n, row * n, n, 1.0)
    else:
        _get(a, a.cot, row * n, buf + n, n, 1.0)
        _sigmoid_row(buf, n, a.p, NULL, buf + 2 * n, buf + 3 * n, buf + n, buf + 4 * n)
        _put(a, buf + 4 * n, row * n, n, a.sign)


def sigmoid_rank(const floating[:, ::1] x, double tau, double sign, floating[:, ::1] out, int n_threads):
    """Ascending pairwise-sigmoid ranks of the rows of sign * x (sign = +-1)."""
    _run_rows(_sigmoid_task, _args(x, NULL, &out[0, 0], sign, 1.0 / tau, 0.0),
              4 * x.shape[1], 0, 0, n_threads, b"sigmoid_rank")


def sigmoid_vjp(const floating[:, ::1] x, const floating[:, ::1] cot, double tau, double sign,
                floating[:, ::1] out, int n_threads):
    """Gradient of sum(cot * sigmoid_rank(sign * x)) with respect to x."""
    _run_rows(_sigmoid_task, _args(x, &cot[0, 0], &out[0, 0], sign, 1.0 / tau, 0.0),
              5 * x.shape[1], 0, 0, n_threads, b"sigmoid_vjp")


# ------------------------------------------------------------------------------------------------
# neuralsort

cdef void _abs_sums(const double *x, Py_ssize_t n, const Py_ssize_t *idx, double *a) noexcept nogil:
    """a_j = sum_k |x_j - x_k| from the ascending order idx."""
    cdef double tot = 0.0, pre = 0.0, v
    cdef Py_ssize_t p
    for p in range(n):
        tot += x[idx[p]]
    for p in range(n):
        v = x[idx[p]]
        a[idx[p]] = (v * p - pre) + ((tot - pre - v) - v * (n - 1 - p))
        pre += v


cdef void _abs_sums_vjp(const double *x, Py_ssize_t n, const Py_ssize_t *idx, const double *ga,
                        double *g) noexcept nogil:
    """g_j += sum_k (ga_j + ga_k) sign(x_j - x_k), the VJP of _abs_sums."""
    cdef double tot = 0.0, pre = 0.0, grp
    cdef Py_ssize_t p0 = 0, p1, p, j
    for p in range(n):
        tot += ga[idx[p]]
    while p0 < n:
        p1 = p0 + 1
        while p1 < n and x[idx[p1]] == x[idx[p0]]:
            p1 += 1
        grp = 0.0
        for p in range(p0, p1):
            grp += ga[idx[p]]
        for p in range(p0, p1):
            j = idx[p]
            g[j] += ga[j] * (p0 - (n - p1)) + (pre - (tot - pre - grp))
        pre += grp
        p0 = p1


cdef Py_ssize_t _ns_block(const double *x, Py_ssize_t n, double inv, double *u) noexcept nogil:
    """Rows per exact re-anchoring, and u_j = exp(-2 (x_j - mid) inv) when that is > 1."""
    cdef double lo = x[0], hi = x[0], half, mid
    cdef Py_ssize_t j, blk
    for j in range(1, n):
        if x[j] < lo:
            lo = x[j]
        if x[j] > hi:
            hi = x[j]
    half = 0.5 * (hi - lo) * inv
    mid = 0.5 * (hi + lo)
    if half * 2.0 * NS_MAX_BLOCK <= NS_LOG_BOUND:
        blk = NS_MAX_BLOCK
    else:
        blk = <Py_ssize_t>floor(NS_LOG_BOUND / (2.0 * half)) + 1
        if blk < 1:
            blk = 1
    if blk > 1:
        for j in range(n):
            u[j] = exp(-2.0 * (x[j] - mid) * inv)
    return blk


cdef inline double _ns_row(const double *x, const double *a, Py_ssize_t n, Py_ssize_t i, double inv,
                           Py_ssize_t blk, const double *u, double *w) noexcept nogil:
    """Unnormalised row i (1-based) of P into w, updated from row i - 1 unless re-anchored; the sum."""
    cdef Py_ssize_t j
    cdef double ci = <double>(n + 1 - 2 * i), z, mx, s = 0.0
    if (i - 1) % blk == 0:
        mx = (ci * x[0] - a[0]) * inv
        for j in range(n):
            z = (ci * x[j] - a[j]) * inv
            w[j] = z
            mx = z if z > mx else mx
        for j in range(n):
            z = w[j] - mx
            w[j] = exp(z) if z > NS_FLUSH_LOG else 0.0
            s += w[j]
    else:
        s = relax_scale_sum(w, u, n)
    return s


cdef void _ns_rank_row(const double *x, Py_ssize_t n, double inv, double *r, double *a, double *u,
                       double *w, Py_ssize_t *idx, Py_ssize_t *tmp) noexcept nogil:
    cdef Py_ssize_t i, j, blk
    cdef double s, f
    _argsort(x, idx, tmp, n)
    _abs_sums(x, n, idx, a)
    blk = _ns_block(x, n, inv, u)
    for j in range(n):
        r[j] = 0.0
    for i in range(1, n + 1):
        s = _ns_row(x, a, n, i, inv, blk, u, w)
        relax_axpy(r, i / s, w, n)


cdef void _ns_vjp_row(const double *x, const double *c, const double *C, Py_ssize_t n, double inv,
                      double *g, double *a, double *u, double *w, double *ga,
                      Py_ssize_t *idx, Py_ssize_t *tmp) noexcept nogil:
    """VJP for ranks (cotangent c, C == NULL) or for P itself (cotangent C, n x n)."""
    cdef Py_ssize_t i, j, blk
    cdef double s, sc, f, mi, gz, ci
    cdef const double *Ci
    _argsort(x, idx, tmp, n)
    _abs_sums(x, n, idx, a)
    blk = _ns_block(x, n, inv, u)
    for j in range(n):
        g[j] = 0.0
        ga[j] = 0.0
    for i in range(1, n + 1):
        s = _ns_row(x, a, n, i, inv, blk, u, w)
        ci = <double>(n + 1 - 2 * i)
        sc = 0.0
        if C == NULL:
            relax_ns_acc(g, ga, w, c, i / s, relax_dot(c, w, n) / s, ci, n)
        else:
            Ci = C + (i - 1) * n
            relax_ns_acc(g, ga, w, Ci, 1.0 / s, relax_dot(Ci, w, n) / s, ci, n)
    for j in range(n):
        g[j] = g[j] * inv
        ga[j] = -ga[j] * inv
    _abs_sums_vjp(x, n, idx, ga, g)


cdef void _ns_task(const _Rows *a, Py_ssize_t row, double *buf, Py_ssize_t *ib, double *big) noexcept nogil:
    """Ranks of one row (a.cot == NULL; buf: 5n) or its VJP (buf: 7n); ib: 2n; a.p = 1 / tau."""
    cdef Py_ssize_t n = a.n
    _get(a, a.x, row * n, buf, n, a.sign)
    if a.cot == NULL:
        _ns_rank_row(buf, n, a.p, buf + n, buf + 2 * n, buf + 3 * n, buf + 4 * n, ib, ib + n)
        _put(a, buf + n, row * n, n, 1.0)
    else:
        _get(a, a.cot, row * n, buf + n, n, 1.0)
        _ns_vjp_row(buf, buf + n, NULL, n, a.p, buf + 2 * n, buf + 3 * n, buf + 4 * n,
                    buf + 5 * n, buf + 6 * n, ib, ib + n)
        _put(a, buf + 2 * n, row * n, n, a.sign)


def neuralsort_rank(const floating[:, ::1] x, double tau, double sign, floating[:, ::1] out, int n_threads):
    """Expected NeuralSort ranks of the rows of sign * x (descending: largest -> rank ~1)."""
    _run_rows(_ns_task, _args(x, NULL, &out[0, 0], sign, 1.0 / tau, 0.0),
              5 * x.shape[1], 2 * x.shape[1], 0, n_threads, b"neuralsort_rank")


def neuralsort_vjp(const floating[:, ::1] x, const floating[:, ::1] cot, double tau, double sign,
                   floating[:, ::1] out, int n_threads):
    """Gradient of sum(cot * neuralsort_rank(sign * x)) with respect to x."""
    _run_rows(_ns_task, _args(x, &cot[0, 0], &out[0, 0], sign, 1.0 / tau, 0.0),
              7 * x.shape[1], 2 * x.shape[1], 0, n_threads, b"neuralsort_vjp")


cdef void _ns_perm_task(const _Rows *a, Py_ssize_t row, double *buf, Py_ssize_t *ib, double *big) noexcept nogil:
    """The matrix P of one row into out (m, n, n) (a.cot == NULL; buf: 4n), or the VJP of P with
    the cotangent rows cot (m, n, n) (buf: 6n, big: n^2); ib: 2n; a.p = 1 / tau."""
    cdef Py_ssize_t n = a.n, i, j
    cdef double s
    _get(a, a.x, row * n, buf, n, a.sign)
    if a.cot != NULL:
        _get(a, a.cot, row * n * n, big, n * n, 1.0)
        _ns_vjp_row(buf, NULL, big, n, a.p, buf + n, buf + 2 * n, buf + 3 * n, buf + 4 * n, buf + 5 * n, ib, ib + n)
        _put(a, buf + n, row * n, n, a.sign)
        return
    _argsort(buf, ib, ib + n, n)
    _abs_sums(buf, n, ib, buf + n)
    for i in range(1, n + 1):
        s = _ns_row(buf, buf + n, n, i, a.p, 1, NULL, buf + 2 * n)
        for j in range(n):
            buf[3 * n + j] = buf[2 * n + j] / s
        _put(a, buf + 3 * n, (row * n + i - 1) * n, n, 1.0)


def neuralsort_perm(const floating[:, ::1] x, double tau, double sign, floating[:, :, ::1] out, int n_threads):
    """out[row] = the relaxed permutation matrix P of sign * x[row] (exact exponentials)."""
    _run_rows(_ns_perm_task, _args(x, NULL, &out[0, 0, 0], sign, 1.0 / tau, 0.0),
              4 * x.shape[1], 2 * x.shape[1], 0, n_threads, b"neuralsort_perm")


def neuralsort_perm_vjp(const floating[:, ::1] x, const floating[:, :, ::1] cot, double tau, double sign,
                        floating[:, ::1] out, int n_threads):
    """Gradient of sum(cot * P(sign * x)) with respect to x, row by row."""
    _run_rows(_ns_perm_task, _args(x, &cot[0, 0, 0], &out[0, 0], sign, 1.0 / tau, 0.0),
              6 * x.shape[1], 2 * x.shape[1], x.shape[1] * x.shape[1], n_threads, b"neuralsort_perm_vjp")


# ------------------------------------------------------------------------------------------------
# softrank

cdef inline double _beat(double xi, double xj, double h) noexcept nogil:
    """P(s_i > s_j) for s ~ N(x, sigma^2): 0.5 erfc(-(x_i - x_j) / (2 sigma)); h = 1 / (2 sigma)."""
    return 0.5 * erfc(-(xi - xj) * h)


cdef void _softrank_task(const _Rows *a, Py_ssize_t row, double *buf, Py_ssize_t *ib, double *big) noexcept nogil:
    """Expected ranks of one row (a.cot == NULL; buf: 2n) or their VJP (buf: 3n);
    a.p = h = 1 / (2 sigma), a.q = k = 1 / (2 sigma sqrt(pi))."""
    cdef Py_ssize_t n = a.n, i, j
    cdef double h = a.p, k = a.q, p, d, t, acc
    _get(a, a.x, row * n, buf, n, a.sign)
    if a.cot == NULL:
        _fill(buf + n, n, 1.0)
        for i in range(n):
            acc = 0.0
            for j in range(i + 1, n):
                p = _beat(buf[i], buf[j], h)      # i beats j
                buf[n + j] = buf[n + j] + p
                acc = acc + (1.0 - p)
            buf[n + i] = buf[n + i] + acc
        _put(a, buf + n, row * n, n, 1.0)
        return
    _get(a, a.cot, row * n, buf + n, n, 1.0)
    _fill(buf + 2 * n, n, 0.0)
    for i in range(n):
        acc = 0.0
        for j in range(i + 1, n):
            t = (buf[i] - buf[j]) * h
            d = (buf[n + j] - buf[n + i]) * k * exp(-t * t)
            acc = acc + d
            buf[2 * n + j] = buf[2 * n + j] - d
        buf[2 * n + i] = buf[2 * n + i] + acc
    _put(a, buf + 2 * n, row * n, n, a.sign)


def softrank_rank(const floating[:, ::1] x, double sigma, double sign, floating[:, ::1] out, int n_threads):
    """Expected SoftRank ranks 1 + sum_{i != j} P(s_i > s_j) of the rows of sign * x (descending)."""
    _run_rows(_softrank_task, _args(x, NULL, &out[0, 0], sign, 0.5 / sigma, 0.0),
              2 * x.shape[1], 0, 0, n_threads, b"softrank_rank")


def softrank_vjp(const floating[:, ::1] x, const floating[:, ::1] cot, double sigma, double sign,
                 floating[:, ::1] out, int n_threads):
    """Gradient of sum(cot * softrank_rank(sign * x)) with respect to x."""
    cdef double k = 1.0 / (2.0 * sigma * sqrt(M_PI))
    _run_rows(_softrank_task, _args(x, &cot[0, 0], &out[0, 0], sign, 0.5 / sigma, k),
              3 * x.shape[1], 0, 0, n_threads, b"softrank_vjp")


cdef double _softrank_ndcg_row(const double *x, const double *gain, Py_ssize_t n, Py_ssize_t K,
                               double h, double k, double cot, double *g, double *p, double *tri,
                               double *adj, double *disc) noexcept nogil:
    """sum_j gain_j sum_r D(r) P(rank_j = r) (0-based r, D(r) = 1/log2(r + 2) for r < K);
    when g != NULL also adds cot * its gradient to g. tri: n (n + 1) / 2 doubles, adj: n + 1."""
    cdef Py_ssize_t j, i, t, r, off
    cdef double total = 0.0, pi, acc, dpi, q, a0
    for r in range(n):
        disc[r] = 1.0 / log(r + 2.0) * log(2.0) if r < K else 0.0
    for j in range(n):
        if gain[j] == 0.0:
            continue
        # forward: p over ranks 0..t after t other documents; prefix states kept in tri
        p[0] = 1.0
        t = 0
        off = 0
        for i in range(n):
            if i == j:
                continue
            if g != NULL:
                memcpy(tri + off, p, (t + 1) * sizeof(double))
                off += t + 1
            pi = _beat(x[i], x[j], h)
            p[t + 1] = p[t] * pi
            for r in range(t, 0, -1):
                p[r] = p[r] * (1.0 - pi) + p[r - 1] * pi
            p[0] = p[0] * (1.0 - pi)
            t += 1
        acc = 0.0
        for r in range(n):
            acc += disc[r] * p[r]
        total += gain[j] * acc
        if g == NULL:
            continue
        # backward through the additions in reverse order
        for r in range(n):
            adj[r] = cot * gain[j] * disc[r]
        for i in range(n - 1, -1, -1):
            if i == j:
                continue
            t -= 1                      # p had t + 1 entries before adding i
            off -= t + 1
            pi = _beat(x[i], x[j], h)
            dpi = 0.0
            for r in range(t + 1):
                dpi += tri[off + r] * (adj[r + 1] - adj[r])
            for r in range(t + 1):
                adj[r] = (1.0 - pi) * adj[r] + pi * adj[r + 1]
            a0 = (x[i] - x[j]) * h
            q = dpi * k * exp(-a0 * a0)
            g[i] += q
            g[j] -= q
    return total


cdef void _softrank_ndcg_task(const _Rows *a, Py_ssize_t row, double *buf, Py_ssize_t *ib,
                              double *big) noexcept nogil:
    """SoftNDCG of one row into out (m,) (a.dcot == NULL; buf: 4 (n + 1)), or cot[row] times its
    gradient into out (m, n) (buf: 5 (n + 1), big: n (n + 1) / 2 + 1); gains a.tab (m, n)."""
    cdef Py_ssize_t n = a.n
    cdef double *g = buf + 4 * (n + 1)
    _get(a, a.x, row * n, buf, n, 1.0)
    if a.dcot == NULL:
        (<double *>a.out)[row] = _softrank_ndcg_row(buf, a.tab + row * n, n, a.K, a.p, 0.0, 0.0, NULL,
                                                    buf + (n + 1), NULL, NULL, buf + 2 * (n + 1))
        return
    _fill(g, n, 0.0)
    _softrank_ndcg_row(buf, a.tab + row * n, n, a.K, a.p, a.q, a.dcot[row], g, buf + (n + 1), big,
                       buf + 3 * (n + 1), buf + 2 * (n + 1))
    _put(a, g, row * n, n, 1.0)


def softrank_ndcg(const floating[:, ::1] x, const double[:, ::1] gain, Py_ssize_t K, double sigma,
                  double[::1] out, int n_threads):
    """out[row] = SoftNDCG numerator of row (gains already divided by the ideal DCG)."""
    cdef _Rows a = _args(x, NULL, &out[0], 1.0, 0.5 / sigma, 0.0)
    a.tab = &gain[0, 0]
    a.K = K
    _run_rows(_softrank_ndcg_task, a, 4 * (x.shape[1] + 1), 0, 0, n_threads, b"softrank_ndcg")


def softrank_ndcg_vjp(const floating[:, ::1] x, const double[:, ::1] gain, Py_ssize_t K, double sigma,
                      const double[::1] cot, floating[:, ::1] out, int n_threads):
    """out[row] = cot[row] * gradient of the SoftNDCG of row with respect to x[row]."""
    cdef _Rows a = _args(x, NULL, &out[0, 0], 1.0, 0.5 / sigma, 1.0 / (2.0 * sigma * sqrt(M_PI)))
    a.tab = &gain[0, 0]
    a.K = K
    a.dcot = &cot[0]
    # big: the prefix states of the rank-distribution recursion, n (n + 1) / 2 doubles
    _run_rows(_softrank_ndcg_task, a,
              5 * (x.shape[1] + 1), 0, x.shape[1] * (x.shape[1] + 1) // 2 + 1, n_threads, b"softrank_ndcg_vjp")


# ------------------------------------------------------------------------------------------------
# smoothi

cdef void _smoothi_row(const double *s, Py_ssize_t n, Py_ssize_t K, double alpha, double delta,
                       const double *wr, double *out, double *p, double *e, double *Is, double *Ps,
                       const double *c, double *g) noexcept nogil:
    """out_j = sum_{r<K} wr[r] I^{r+1}_j; with c != NULL the VJP into g (Is, Ps: K x n)."""
    cdef Py_ssize_t r, j
    cdef double mx, s_, z, gi, dot
    cdef double *I
    for j in range(n):
        p[j] = 1.0
        if out != NULL:
            out[j] = 0.0
    for r in range(K):
        mx = alpha * s[0] * p[0]
        for j in range(n):
            z = alpha * s[j] * p[j]
            e[j] = z
            mx = z if z > mx else mx
        s_ = 0.0
        for j in range(n):
            e[j] = exp(e[j] - mx)
            s_ += e[j]
        s_ = 1.0 / s_
        if c != NULL:
            memcpy(Ps + r * n, p, n * sizeof(double))
            I = Is + r * n
        else:
            I = e
        for j in range(n):
            I[j] = e[j] * s_
            if out != NULL:
                out[j] += wr[r] * I[j]
            p[j] = p[j] * (1.0 - I[j] - delta)
    if c == NULL:
        return
    # backward: p holds the adjoint of p^{r+1}, g the adjoint of s
    for j in range(n):
        p[j] = 0.0
        g[j] = 0.0
    for r in range(K - 1, -1, -1):
        I = Is + r * n
        dot = 0.0
        for j in range(n):
            gi = wr[r] * c[j] - p[j] * Ps[r * n + j]
            e[j] = gi
            dot += gi * I[j]
        for j in range(n):
            z = I[j] * (e[j] - dot) * alpha
            p[j] = p[j] * (1.0 - I[j] - delta) + z * s[j]
            g[j] += z * Ps[r * n + j]


cdef void _smoothi_task(const _Rows *a, Py_ssize_t row, double *buf, Py_ssize_t *ib, double *big) noexcept nogil:
    """One row's output (a.cot == NULL; buf: 4n) or its VJP (buf: 5n, big: 2 K n: the K indicator
    rows and the K products before them); a.p = alpha, a.q = delta, weights a.tab (K,)."""
    cdef Py_ssize_t n = a.n
    _get(a, a.x, row * n, buf, n, 1.0)
    if a.cot == NULL:
        _smoothi_row(buf, n, a.K, a.p, a.q, a.tab, buf + n, buf + 2 * n, buf + 3 * n, NULL, NULL, NULL, NULL)
        _put(a, buf + n, row * n, n, 1.0)
    else:
        _get(a, a.cot, row * n, buf + n, n, 1.0)
        _smoothi_row(buf, n, a.K, a.p, a.q, a.tab, NULL, buf + 2 * n, buf + 3 * n, big, big + a.K * n,
                     buf + n, buf + 4 * n)
        _put(a, buf + 4 * n, row * n, n, 1.0)


def smoothi(const floating[:, ::1] s, double alpha, double delta, const double[::1] wr,
            floating[:, ::1] out, int n_threads):
    """out[row, j] = sum_r wr[r] I^{r+1}_j of the positive scores s[row] (K = len(wr))."""
    cdef _Rows a = _args(s, NULL, &out[0, 0], 1.0, alpha, delta)
    a.tab = &wr[0]
    a.K = wr.shape[0]
    _run_rows(_smoothi_task, a, 4 * s.shape[1], 0, 0, n_threads, b"smoothi")


def smoothi_vjp(const floating[:, ::1] s, const floating[:, ::1] cot, double alpha, double delta,
                const double[::1] wr, floating[:, ::1] out, int n_threads):
    """Gradient of sum(cot * smoothi(s)) with respect to s."""
    cdef _Rows a = _args(s, &cot[0, 0], &out[0, 0], 1.0, alpha, delta)
    a.tab = &wr[0]
    a.K = wr.shape[0]
    _run_rows(_smoothi_task, a, 5 * s.shape[1], 0, 2 * a.K * s.shape[1], n_threads, b"smoothi_vjp")


# ------------------------------------------------------------------------------------------------
# top-k masks

cdef void _gumbel_row(const double *a0, Py_ssize_t n, Py_ssize_t k, double inv, double *mask,
                      double *a, double *ps, const double *c, double *g) noexcept nogil:
    """Relaxed top-k of the perturbed values a0; with c != NULL the VJP into g (ps: k x n)."""
    cdef Py_ssize_t t, j
    cdef double mx, s, om, dot, gp
    cdef double *p
    memcpy(a, a0, n * sizeof(double))
    if mask != NULL:
        _fill(mask, n, 0.0)
    for t in range(k):
        p = ps + (t * n if c != NULL else 0)
        mx = a[0]
        for j in range(n):
            mx = a[j] if a[j] > mx else mx
        s = 0.0
        for j in range(n):
            p[j] = exp((a[j] - mx) * inv)
            s += p[j]
        for j in range(n):
            om = (s - p[j]) / s
            p[j] = p[j] / s
            if mask != NULL:
                mask[j] += p[j]
            a[j] = a[j] + log(om if om > TINY else TINY)
    if c == NULL:
        return
    _fill(g, n, 0.0)          # adjoint of a^{t+1}
    for t in range(k - 1, -1, -1):
        p = ps + t * n
        dot = 0.0
        for j in range(n):
            om = 1.0 - p[j]
            gp = c[j] - (g[j] / om if om > TINY else 0.0)
            a[j] = gp
            dot += gp * p[j]
        for j in range(n):
            g[j] += p[j] * (a[j] - dot) * inv


cdef void _gumbel_task(const _Rows *a, Py_ssize_t row, double *buf, Py_ssize_t *ib, double *big) noexcept nogil:
    """The relaxed top-a.K mask of one float64 row (a.cot == NULL; buf: 2n), or its VJP (buf: n,
    big: the K softmax rows, K n); a.p = 1 / tau."""
    cdef Py_ssize_t n = a.n
    cdef const double *a0 = <const double *>a.x + row * n
    cdef double *out = <double *>a.out + row * n
    if a.cot == NULL:
        _gumbel_row(a0, n, a.K, a.p, out, buf, buf + n, NULL, NULL)
    else:
        _gumbel_row(a0, n, a.K, a.p, NULL, buf, big, <const double *>a.cot + row * n, out)


def gumbel_topk(const double[:, ::1] a0, Py_ssize_t k, double tau, double[:, ::1] out, int n_threads):
    """Relaxed top-k masks of the perturbed rows a0 (each row sums to k)."""
    cdef _Rows a = _args(a0, NULL, &out[0, 0], 1.0, 1.0 / tau, 0.0)
    a.K = k
    _run_rows(_gumbel_task, a, 2 * a0.shape[1], 0, 0, n_threads, b"gumbel_topk")


def gumbel_topk_vjp(const double[:, ::1] a0, const double[:, ::1] cot, Py_ssize_t k, double tau,
                    double[:, ::1] out, int n_threads):
    """Gradient of sum(cot * gumbel_topk(a0)) with respect to a0."""
    cdef _Rows a = _args(a0, &cot[0, 0], &out[0, 0], 1.0, 1.0 / tau, 0.0)
    a.K = k
    _run_rows(_gumbel_task, a, a0.shape[1], 0, k * a0.shape[1], n_threads, b"gumbel_topk_vjp")


cdef double _capped_theta(const double *z, Py_ssize_t n, double k) noexcept nogil:
    """theta with sum_i clip(z_i - theta, 0, 1) = k (bisection, then the exact linear piece)."""
    cdef double lo = z[0], hi = z[0], mid, f, sz, n1, nm, th
    cdef Py_ssize_t j, it
    for j in range(n):
        lo = z[j] if z[j] < lo else lo
        hi = z[j] if z[j] > hi else hi
    lo = lo - 1.0                   # f(lo) = n >= k, f(hi) = 0 <= k
    for it in range(200):
        mid = 0.5 * (lo + hi)
        if mid <= lo or mid >= hi:
            break
        f = 0.0
        for j in range(n):
            th = z[j] - mid
            f += 1.0 if th >= 1.0 else (th if th > 0.0 else 0.0)
        if f > k:
            lo = mid
        else:
            hi = mid
    mid = 0.5 * (lo + hi)
    sz = 0.0
    n1 = 0.0
    nm = 0.0
    for j in range(n):
        th = z[j] - mid
        if th >= 1.0:
            n1 += 1.0
        elif th > 0.0:
            nm += 1.0
            sz += z[j]
    if nm > 0.0:
        return (sz + n1 - k) / nm
    return mid


def capped_topk(const double[:, ::1] z, double k, double[:, ::1] out, int n_threads):
    """out[row] = projection of z[row] onto {m in [0, 1]^n, sum m = k}."""
    cdef Py_ssize_t m = z.shape[0], n = z.shape[1], row, j
    cdef double th, v
    with nogil:
        for row in prange(m, schedule="dynamic", num_threads=n_threads):
            th = _capped_theta(&z[row, 0], n, k)
            for j in range(n):
                v = z[row, j] - th
                out[row, j] = 1.0 if v >= 1.0 else (v if v > 0.0 else 0.0)


def capped_topk_vjp(const double[:, ::1] mask, const double[:, ::1] cot, double[:, ::1] out, int n_threads):
    """Gradient of sum(cot * projection(z)) with respect to z, given the projection `mask`."""
    cdef Py_ssize_t m = mask.shape[0], n = mask.shape[1], row, j
    cdef double s, cnt, mean
    with nogil:
        for row in prange(m, schedule="dynamic", num_threads=n_threads):
            s = 0.0
            cnt = 0.0
            for j in range(n):
                if mask[row, j] > 0.0 and mask[row, j] < 1.0:
                    s = s + cot[row, j]
                    cnt = cnt + 1.0
            mean = s / cnt if cnt > 0.0 else 0.0
            for j in range(n):
                if mask[row, j] > 0.0 and mask[row, j] < 1.0:
                    out[row, j] = cot[row, j] - mean
                else:
                    out[row, j] = 0.0
