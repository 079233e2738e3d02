"""Projections onto the permutahedron by isotonic regression (the "isotonic" kernel family).

Soft ranks and soft sorts (Blondel et al. 2020, "Fast Differentiable Sorting and Ranking") are
projections of a vector onto the permutahedron P(w), the convex hull of the permutations of a
vector w. After sorting the input once, the projection is a decreasing isotonic regression of
two descending sequences s and w, solved exactly by pool-adjacent-violators (PAV) in O(n):

- "l2" (quadratic) regularization: a block B of pooled positions takes the value
  mean_B(s) - mean_B(w), and output_j = s_j - value(B(j)).
- "kl" (entropic) regularization: a block takes gamma_B = LSE_B(s) - LSE_B(w) (log-sum-exp
  over the block), and output_j = s_j - gamma_B (rank mode takes exp of it).

Two modes share the PAV:

- rank mode: s = a * x sorted descending (a = +-1/strength), w = a table sorted descending
  (n, n-1, ..., 1 for ranks, log of it for "kl", or k ones and n-k zeros for a top-k mask);
  the output is written back to the positions of the unsorted input.
- sort mode: s = a table (n, ..., 1) / strength, w = a * x sorted descending (a = +-1); the
  output is in sorted order and multiplied by a.

Accuracy. Blocks store their first element and the mean offset from it (l2), or their first
element and log sum exp of the offsets (kl), so that a singleton block returns w_j exactly and
a block of tied values returns mean_B(w) exactly, even when |s| is huge (tiny strengths).

Sorting. Each input value becomes a 64-bit unsigned key that orders like the float (descending)
whose lowest b = bitlength(n - 1) bits are replaced by the value's position. Sorting these
keys as integers (NumPy's own integer sort, SIMD where the CPU has it, called without the GIL)
yields the permutation; keys that agree in all but the low b bits (values within about
2**(b - 52) relative of each other) form runs that are re-sorted exactly by a second key made
of the low bits and the position. Ties come out in position order (a stable order).

The VJPs reuse the permutation and the block boundaries saved by the forward pass: O(n) per row.
No validation happens here: `rank.soft.projection` checks shapes, dtypes and values first.
"""
from cython cimport floating
from cython.parallel cimport parallel, prange, threadid
from libc.math cimport exp, log
from libc.stdint cimport int32_t, uint64_t
from libc.stdlib cimport free
from libc.string cimport memcpy

cimport numpy as cnp
import numpy as np

from rank_kernels._mem cimport check_status, new_status, rk_malloc, rk_mem_init, rk_status, rk_status_fail

rk_mem_init()  # work buffers fail under the RANK_KERNELS_FAIL_ALLOC=1 test hook (see mem.h)

cnp.import_array()

ctypedef int (*_sort_fn)(void *, cnp.npy_intp, void *) noexcept nogil

cdef extern from "numpy/arrayobject.h":
    ctypedef struct PyArray_ArrFuncs:
        _sort_fn sort[3]
    PyArray_ArrFuncs *PyDataType_GetArrFuncs(cnp.dtype descr)

cdef enum:
    MODE_RANK = 0
    MODE_SORT = 1

# The saved permutation flags the last position of each block in its sign bit.
cdef int32_t END_FLAG = -2147483648
cdef int32_t POS_MASK = 2147483647

# NumPy's in-place quicksort of uint64 (SIMD-dispatched); NULL makes every call use _heapsort.
cdef _sort_fn _np_sort = NULL
cdef bint _use_numpy_sort = True


cdef void _init_sort():
    global _np_sort
    cdef cnp.dtype d = np.dtype(np.uint64)
    cdef PyArray_ArrFuncs *f = PyDataType_GetArrFuncs(d)
    if f != NULL:
        _np_sort = f.sort[0]


_init_sort()


def sort_backend():
    """'numpy' when rows are sorted with NumPy's integer sort, 'heapsort' for the fallback."""
    return "numpy" if (_np_sort != NULL and _use_numpy_sort) else "heapsort"


def _set_numpy_sort(bint enabled):
    """Use NumPy's integer sort (True, the default) or the built-in heapsort (False; for tests)."""
    global _use_numpy_sort
    _use_numpy_sort = enabled


# ---------------------------------------------------------------------------------------------
# Sorting

cdef void _heapsort(uint64_t *a, Py_ssize_t n) noexcept nogil:
    """In-place ascending heapsort (used when NumPy's sort function is unavailable)."""
    cdef Py_ssize_t start = n // 2, end = n, root, child
    cdef uint64_t t
    while end > 1:
        if start > 0:
            start -= 1
        else:
            end -= 1
            t = a[end]
            a[end] = a[0]
            a[0] = t
        root = start
        while True:
            child = 2 * root + 1
            if child >= end:
                break
            if child + 1 < end and a[child + 1] > a[child]:
                child += 1
            if a[root] < a[child]:
                t = a[root]
                a[root] = a[child]
                a[child] = t
                root = child
            else:
                break


cdef inline void _sort_u64(uint64_t *a, Py_ssize_t n, bint use_np) noexcept nogil:
    if n < 2:
        return
    if use_np:
        _np_sort(a, n, NULL)
    else:
        _heapsort(a, n)


cdef inline uint64_t _desc_key(double z) noexcept nogil:
    """An unsigned key that sorts ascending when z sorts descending (-0.0 counts as 0.0)."""
    cdef double y = z + 0.0
    cdef uint64_t u
    memcpy(&u, &y, sizeof(double))
    cdef uint64_t neg = <uint64_t>(-<long long>(u >> 63))  # all ones for negative z
    return u ^ (~neg & <uint64_t>0x7FFFFFFFFFFFFFFF)


cdef void _sort_row(const floating *x, Py_ssize_t n, double a, int b, bint use_np,
                    uint64_t *keys, int32_t *perm, double *sv) noexcept nogil:
    """perm: the positions of a * x sorted descending (ties by position); sv[j] = a * x[perm[j]]."""
    cdef uint64_t mask = (<uint64_t>1 << b) - 1
    cdef Py_ssize_t j, r0, r1, k, lo
    cdef int32_t p
    cdef int dirty = 0
    cdef uint64_t k0, k1
    cdef double v0, v1
    for j in range(n):
        keys[j] = (_desc_key(a * <double>x[j]) & ~mask) | <uint64_t>j
    _sort_u64(keys, n, use_np)
    k1 = keys[0]
    v1 = a * <double>x[k1 & mask]
    perm[0] = <int32_t>(k1 & mask)
    sv[0] = v1
    for j in range(1, n):
        k0 = k1
        v0 = v1
        k1 = keys[j]
        p = <int32_t>(k1 & mask)
        v1 = a * <double>x[p]
        perm[j] = p
        sv[j] = v1
        if ((k0 ^ k1) >> b) == 0 and v0 != v1:  # rare: equal high bits, different values
            dirty = 1
    if not dirty:
        return
    # Runs of keys equal in their high bits but holding different values: re-sort exactly.
    # Earlier runs hold second keys after their re-sort: never scan left of `lo`.
    lo = 0
    j = 1
    while j < n:
        if (keys[j] >> b) == (keys[j - 1] >> b) and sv[j] != sv[j - 1]:
            r0 = j - 1
            while r0 > lo and (keys[r0 - 1] >> b) == (keys[j] >> b):
                r0 -= 1
            r1 = j + 1
            while r1 < n and (keys[r1] >> b) == (keys[j] >> b):
                r1 += 1
            for k in range(r0, r1):
                keys[k] = ((_desc_key(sv[k]) & mask) << b) | <uint64_t>perm[k]
            _sort_u64(keys + r0, r1 - r0, use_np)
            for k in range(r0, r1):
                p = <int32_t>(keys[k] & mask)
                perm[k] = p
                sv[k] = a * <double>x[p]
            lo = r1
            j = r1 + 1
        else:
            j += 1


# ---------------------------------------------------------------------------------------------
# Pool adjacent violators. Blocks k = 0..nb-1 cover [bs[k], bs[k + 1]) with bs[nb] = n.
# Both keep the top block in registers and the blocks below it on a stack; a block is compared
# through differences of first elements, so ties and huge |s| (tiny strengths) stay exact.

cdef struct _Top:
    # The open (top) block of a PAV pass: its first element, its first values s and w, and the
    # two running sums p, q of the regulariser (l2: offset sums, kl: sums of exponentials).
    int32_t start
    double s, w, p, q


cdef inline Py_ssize_t _close_top(_Top *t, int32_t *bs, double *sf, double *wf, double *p, double *q,
                                  Py_ssize_t nb, Py_ssize_t j, double cs, double cw, double zero) noexcept nogil:
    """Close the top block t as block nb and open a new one at element j (values cs, cw, both
    sums `zero`: 0 for l2, 1 for kl); returns the number of closed blocks, nb + 1."""
    bs[nb] = t.start
    sf[nb] = t.s
    wf[nb] = t.w
    p[nb] = t.p
    q[nb] = t.q
    t.start = <int32_t>j
    t.s = cs
    t.w = cw
    t.p = zero
    t.q = zero
    return nb + 1


cdef inline Py_ssize_t _pool_below(_Top *t, const int32_t *bs, const double *sf, const double *wf,
                                   Py_ssize_t k, double pv, double qv) noexcept nogil:
    """Pool the closed block k (the last one) into the top block t, whose sums become pv, qv;
    returns the number of closed blocks left, k."""
    t.p = pv
    t.q = qv
    t.s = sf[k]
    t.w = wf[k]
    t.start = bs[k]
    return k


cdef inline Py_ssize_t _end_pass(_Top *t, int32_t *bs, double *sf, double *wf, double *p, double *q,
                                 Py_ssize_t nb, Py_ssize_t n) noexcept nogil:
    """Close the last block; bs[nb] = n ends the block starts. Returns the number of blocks."""
    nb = _close_top(t, bs, sf, wf, p, q, nb, n, 0.0, 0.0, 0.0)
    bs[nb] = <int32_t>n
    return nb


cdef Py_ssize_t _pav_l2(const double *s, const double *w, Py_ssize_t n, int32_t *bs,
                        double *sf, double *wf, double *ds, double *dw) noexcept nogil:
    """l2 blocks: first elements sf, wf and the offset sums ds = sum_B (s - sf), dw = sum_B (w - wf),
    so that the block value is (sf - wf) + (ds - dw) / count. Comparisons are cross-multiplied
    (no division)."""
    cdef Py_ssize_t nb = 0, j, k
    cdef double cs, cw, dks, dkw, tc, ck
    cdef _Top t = _Top(0, s[0], w[0], 0.0, 0.0)
    for j in range(1, n):
        cs = s[j]
        cw = w[j]
        dks = cs - t.s
        dkw = cw - t.w
        if (dkw - dks) * <double>(j - t.start) < t.q - t.p:  # value(top) < value(new element): pool them
            t.p += dks
            t.q += dkw
            while nb > 0:  # the grown block may now exceed the one below it
                k = nb - 1
                ck = <double>(t.start - bs[k])
                tc = <double>(j + 1 - t.start)
                dks = t.s - sf[k]
                dkw = t.w - wf[k]
                if (dkw - dks) * ck * tc < (t.p - t.q) * ck - (ds[k] - dw[k]) * tc:
                    nb = _pool_below(&t, bs, sf, wf, k, ds[k] + t.p + tc * dks, dw[k] + t.q + tc * dkw)
                else:
                    break
        else:
            nb = _close_top(&t, bs, sf, wf, ds, dw, nb, j, cs, cw, 0.0)
    return _end_pass(&t, bs, sf, wf, ds, dw, nb, n)


cdef inline bint _kl_less(double ds, double dw, double a, double b, double sk, double wk,
                          double st, double wt) noexcept nogil:
    """gamma(k) < gamma(top) for blocks k (first elements) and top: ds = sf_k - s_top,
    dw = wf_k - w_top, a = exp(-ds), b = exp(-dw), sk/wk and st/wt their linear offset sums."""
    if a > 1e-290 and b > 1e-290:
        return a * st * wk > b * wt * sk
    return ds - dw + log(sk / wk) - log(st / wt) < 0.0


cdef Py_ssize_t _pav_kl(const double *s, const double *w, Py_ssize_t n, int mode, const double *etab,
                        int32_t *bs, double *sf, double *wf, double *ss, double *sw) noexcept nogil:
    """kl blocks: first (largest) elements sf, wf and the sums ss = sum_B exp(s - sf),
    sw = sum_B exp(w - wf) (each in [1, n]), so that gamma = (sf - wf) + log(ss / sw).
    Comparisons use ratios of these sums and differences of first elements (log only on underflow).
    The table side needs no exp: rank mode, etab[j] = exp(w[j]) (the ranks themselves), so
    exp(w[j] - w[i]) = etab[j] / etab[i]; sort mode, etab[d] = exp(-d / strength) = exp(s[i + d] - s[i])."""
    cdef Py_ssize_t nb = 0, j, k
    cdef double cs, cw, a, b
    cdef _Top t = _Top(0, s[0], w[0], 1.0, 1.0)
    for j in range(1, n):
        cs = s[j]
        cw = w[j]
        if mode == MODE_RANK:
            a = exp(cs - t.s)
            b = etab[j] / etab[t.start]
        else:
            a = etab[j - t.start]
            b = exp(cw - t.w)
        if _kl_less(t.s - cs, t.w - cw, a, b, t.p, t.q, 1.0, 1.0):  # gamma(top) < gamma(new): pool
            t.p += a
            t.q += b
            while nb > 0:
                k = nb - 1
                if mode == MODE_RANK:
                    a = exp(t.s - sf[k])
                    b = etab[t.start] / etab[bs[k]]
                else:
                    a = etab[t.start - bs[k]]
                    b = exp(t.w - wf[k])
                if _kl_less(sf[k] - t.s, wf[k] - t.w, a, b, ss[k], sw[k], t.p, t.q):
                    nb = _pool_below(&t, bs, sf, wf, k, ss[k] + a * t.p, sw[k] + b * t.q)
                else:
                    break
        else:
            nb = _close_top(&t, bs, sf, wf, ss, sw, nb, j, cs, cw, 1.0)
    return _end_pass(&t, bs, sf, wf, ss, sw, nb, n)


# ---------------------------------------------------------------------------------------------
# Forward

cdef int _bits(Py_ssize_t n) noexcept nogil:
    cdef int b = 0
    while (<Py_ssize_t>1 << b) < n:
        b += 1
    return b


cdef void _project_row(const floating *x, floating *out, Py_ssize_t n, int mode, bint kl, double a,
                       const double *table, const double *etab, int b, bint use_np, uint64_t *keys, int32_t *perm,
                       double *sv, int32_t *bs, double *f1, double *f2, double *f3, double *f4,
                       bint save) noexcept nogil:
    cdef const double *s
    cdef const double *w
    cdef Py_ssize_t nb, k, j
    cdef double c, sfk
    _sort_row(x, n, a, b, use_np, keys, perm, sv)
    if mode == MODE_RANK:
        s = sv
        w = table
    else:
        s = table
        w = sv
    if kl:
        nb = _pav_kl(s, w, n, mode, etab, bs, f1, f2, f3, f4)
    else:
        nb = _pav_l2(s, w, n, bs, f1, f2, f3, f4)
    for k in range(nb):
        sfk = f1[k]
        if kl:
            if mode == MODE_RANK:
                # exp(s_j - gamma) = exp(s_j - sf) * exp(wf) * sw / ss
                c = exp(f2[k]) * f4[k] / f3[k]
                for j in range(bs[k], bs[k + 1]):
                    out[perm[j]] = <floating>(exp(s[j] - sfk) * c)
            else:
                c = (f2[k] + log(f4[k])) - log(f3[k])  # output_j = (s_j - sf) - log ss + wf + log sw
                for j in range(bs[k], bs[k + 1]):
                    out[j] = <floating>(a * ((s[j] - sfk) + c) + 0.0)  # no -0.0
        elif bs[k + 1] - bs[k] == 1:  # a singleton keeps w exactly
            if mode == MODE_RANK:
                out[perm[bs[k]]] = <floating>f2[k]
            else:
                out[bs[k]] = <floating>(a * f2[k] + 0.0)
        else:
            # output_j = (s_j - sf) - ds / count + wf + dw / count
            c = (f2[k] + f4[k] / (bs[k + 1] - bs[k])) - f3[k] / (bs[k + 1] - bs[k])
            if mode == MODE_RANK:
                for j in range(bs[k], bs[k + 1]):
                    out[perm[j]] = <floating>((s[j] - sfk) + c)
            else:
                for j in range(bs[k], bs[k + 1]):
                    out[j] = <floating>(a * ((s[j] - sfk) + c) + 0.0)  # no -0.0
    if save:  # flag the last position of every block in the sign bit of the permutation
        for k in range(nb):
            perm[bs[k + 1] - 1] |= END_FLAG


def project(const floating[:, ::1] x, floating[:, ::1] out, int mode, bint kl, double a,
            const double[::1] table, const double[::1] etab, int32_t[:, ::1] perm, bint save, int n_threads):
    """Project every row of x (m, n) onto the permutahedron; results in out (m, n).

    mode 0 (rank): s = a * x[i] sorted descending, w = table; out[i] in input order.
    mode 1 (sort): s = table, w = a * x[i] sorted descending; out[i] = a * projection, sorted.
    kl: entropic ("kl") instead of quadratic ("l2") regularization (rank mode: table = log w).
    etab (kl only, else unused): exp(table) in rank mode, exp(-d / strength) for d < n in sort mode.
    When save, perm[i] receives the sorting permutation (positions of the values in descending
    order), the last position of every pooled block flagged by the sign bit (see `vjp`).
    Returns 0, or raises MemoryError. Runs without the GIL on n_threads (OpenMP over rows).
    """
    cdef Py_ssize_t m = x.shape[0], n = x.shape[1], i
    cdef int b = _bits(n)
    cdef bint use_np = _np_sort != NULL and _use_numpy_sort
    cdef uint64_t *keys = NULL
    cdef int32_t *pbuf = NULL
    cdef int32_t *bs = NULL
    cdef double *dbuf = NULL
    cdef int32_t *prow = NULL
    if n_threads > m:
        n_threads = <int>m
    if n_threads < 1:
        n_threads = 1
    # Small dynamic chunks (about 8 per thread): rows differ in cost, and a thread that the OS
    # parks holds back only a few rows.
    cdef Py_ssize_t chunk = max(1, m // (8 * n_threads))
    cdef rk_status *st = new_status(n_threads, b"isotonic")
    with nogil:
        with parallel(num_threads=n_threads):
            keys = <uint64_t *>rk_malloc(sizeof(uint64_t) * n)
            pbuf = <int32_t *>rk_malloc(sizeof(int32_t) * n)
            bs = <int32_t *>rk_malloc(sizeof(int32_t) * (n + 1))
            dbuf = <double *>rk_malloc(sizeof(double) * 5 * n)
            for i in prange(m, schedule='dynamic', chunksize=chunk):
                if keys == NULL or pbuf == NULL or bs == NULL or dbuf == NULL:
                    rk_status_fail(st)
                    continue
                prow = &perm[i, 0] if save else pbuf
                _project_row(&x[i, 0], &out[i, 0], n, mode, kl, a, &table[0], &etab[0], b, use_np, keys, prow,
                             dbuf, bs, dbuf + n, dbuf + 2 * n, dbuf + 3 * n, dbuf + 4 * n, save)
            free(keys)
            free(pbuf)
            free(bs)
            free(dbuf)
    check_status(st, b"isotonic")
    return 0


# ---------------------------------------------------------------------------------------------
# Backward (vector-Jacobian products from the saved permutation and blocks)

cdef inline Py_ssize_t _block_end(const int32_t *perm, Py_ssize_t j) noexcept nogil:
    """One past the last position of the block starting at j (the flagged one)."""
    while perm[j] >= 0:
        j += 1
    return j + 1


cdef void _vjp_row(const floating *g, const floating *y, floating *grad, Py_ssize_t n, int mode,
                   bint kl, double a, const int32_t *perm) noexcept nogil:
    """grad = J^T g for one row. y: the forward output (rank, kl) or the input x (sort, kl)."""
    cdef Py_ssize_t j, j0 = 0, j1
    cdef int32_t p
    cdef double acc, tot, mx, t, cnt
    while j0 < n:
        j1 = _block_end(perm, j0)
        cnt = <double>(j1 - j0)
        if mode == MODE_RANK:
            if kl:
                # d out_j / d s_i = out_j (delta_ij - p_i), p = out / sum_B(out)
                acc = 0.0
                tot = 0.0
                for j in range(j0, j1):
                    p = perm[j] & POS_MASK
                    t = <double>y[p]
                    acc += <double>g[p] * t
                    tot += t
                acc /= tot
                for j in range(j0, j1):
                    p = perm[j] & POS_MASK
                    grad[p] = <floating>(a * <double>y[p] * (<double>g[p] - acc))
            else:
                acc = 0.0
                for j in range(j0, j1):
                    acc += <double>g[perm[j] & POS_MASK]
                acc /= cnt
                for j in range(j0, j1):
                    p = perm[j] & POS_MASK
                    grad[p] = <floating>(a * (<double>g[p] - acc))
        else:
            acc = 0.0
            for j in range(j0, j1):
                acc += <double>g[j]
            if kl:
                # d out_j / d w_i = softmax_B(w)_i, w = a * x sorted
                mx = a * <double>y[perm[j0] & POS_MASK]
                tot = 0.0
                for j in range(j0, j1):
                    tot += exp(a * <double>y[perm[j] & POS_MASK] - mx)
                acc /= tot
                for j in range(j0, j1):
                    p = perm[j] & POS_MASK
                    grad[p] = <floating>(acc * exp(a * <double>y[p] - mx))
            else:
                acc /= cnt
                for j in range(j0, j1):
                    grad[perm[j] & POS_MASK] = <floating>acc
        j0 = j1


def vjp(const floating[:, ::1] g, const floating[:, ::1] y, floating[:, ::1] grad, int mode, bint kl,
        double a, const int32_t[:, ::1] perm, int n_threads):
    """grad[i] = J_i^T g[i] for every row, from the state `project(..., save=True)` left.

    y: the forward output for rank mode with kl, the input x for sort mode with kl (else unused,
    any array of the same shape). Runs without the GIL on n_threads (OpenMP over rows).
    """
    cdef Py_ssize_t m = g.shape[0], n = g.shape[1], i
    if n_threads > m:
        n_threads = <int>m
    if n_threads < 1:
        n_threads = 1
    cdef Py_ssize_t chunk = max(1, m // (8 * n_threads))
    with nogil:
        for i in prange(m, schedule='dynamic', chunksize=chunk, num_threads=n_threads):
            _vjp_row(&g[i, 0], &y[i, 0], &grad[i, 0], n, mode, kl, a, &perm[i, 0])
    return 0
