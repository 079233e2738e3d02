"""Learning-to-rank loss kernels (the "ltr" kernel family): losses, gradients, diagonal hessians.

Every kernel takes the scores (n,) float64, integer labels (n,) int32 and the group boundaries
`offsets` (n_groups + 1,) int64 (group g is rows offsets[g]:offsets[g+1]), and writes the
gradient (and, where defined, the diagonal of the hessian) of the loss with respect to the
scores into caller-provided float64 arrays, plus one loss value per group into `group_loss`
(n_groups,). Groups are independent: OpenMP threads take them dynamically, each with its own
scratch buffers sized for the largest group; the GIL is released for the whole loop, and the
results do not depend on the number of threads (each group is computed by one thread, in a
fixed order). No validation happens here: the `rank.learn` layer checks everything first.

- `lambdarank`: LambdaMART gradients with the arithmetic of LightGBM's built-in lambdarank
  objective (pairs with at least one member among the top `truncation` positions of the current
  ranking, |delta DCG| weights scaled by the inverse maximum DCG at `truncation`, the optional
  1 / (0.01 + |s_i - s_j|) and log2(1 + sum) / sum normalisation, and LightGBM's sigmoid, which
  evaluates 1 / (1 + exp(sigma * x)) at x rounded down onto a grid of 2^20 points over
  [-25 / sigma, 25 / sigma]; `exact` uses the sigmoid itself instead). LightGBM tabulates the
  2^20 values (8 MiB, mostly cache misses when read in the pair loop); here exp(sigma * x_b) is
  the product of two 1024-entry tables (16 KiB, in L1), which agrees with LightGBM's table
  entries to a few units in the last place (`grid_sigmoid` exposes it; `sigmoid_table` builds
  LightGBM's table, for comparison). Per group: labels counted for the ideal DCG, rows sorted
  by score (stable merge sort), then for each of the top t rows one branch-free, vectorised
  pass over the rows below it. O(n_g log n_g + n_g * min(n_g, t)).
- `pairwise`: RankNet (logistic loss on every pair with different labels) or the pairwise
  hinge loss of the Ranking SVM. O(n_g^2) per group.
- `listnet`: top-one ListNet, cross-entropy between softmax(labels) and softmax(scores). O(n_g).
- `listmle`: Plackett-Luce negative log-likelihood of the ranking by label (ties in label order
  broken by row order). O(n_g log n_g).
- `approx_ndcg`: 1 - ApproxNDCG (ranks approximated by sums of sigmoids). O(n_g^2).
"""
from cython.parallel cimport parallel, prange
from libc.math cimport exp, fabs, log, log1p, log2
from libc.stdint cimport int32_t, int64_t
from libc.stdlib cimport free

from rank_kernels._mem cimport (check_status, new_status, rk_calloc, rk_malloc, rk_mem_init, rk_status,
                               rk_status_end, rk_status_fail)
from rank_kernels._segments cimport max_segment
from rank_kernels.simd cimport rk_simd_init

cdef enum:
    SIGMOID_BINS = 1048576  # LightGBM's sigmoid table size (1024 * 1024)
    GRID_LO = 1024  # entries of each factor table of the grid sigmoid (GRID_LO^2 = SIGMOID_BINS)
    RANK_BY_COUNTING_MAX = 128  # groups up to this size are ordered by counting, larger ones sorted
    COUNT_LABELS_MAX = 4096  # ideal DCG by counting labels when there are at most this many gains


cdef extern from "ltr_kernels.h":
    ctypedef struct ltr_item:
        double key
        Py_ssize_t idx
    void ltr_sort_desc(ltr_item *a, ltr_item *tmp, Py_ssize_t n) noexcept nogil
    void ltr_gain_order(const double *gains, Py_ssize_t L, int32_t *order) noexcept nogil
    int ltr_rank_desc(const double *s, Py_ssize_t n, int32_t *pos) noexcept nogil
    double ltr_max_dcg_counting(const int32_t *lab, Py_ssize_t cnt, const double *gains, Py_ssize_t L,
                                const int32_t *order, Py_ssize_t k, const double *discount,
                                int32_t *hist) noexcept nogil
    Py_ssize_t ltr_grid_bin(double x, double lo, double factor) noexcept nogil
    void ltr_grid_tables(double sigma, double *e_hi, double *e_lo) noexcept nogil
    double ltr_grid_value(Py_ssize_t b, const double *e_hi, const double *e_lo) noexcept nogil
    void ltr_row_grid(Py_ssize_t i, Py_ssize_t cnt, const double *ss, const double *ld, const double *gs,
                      const double *disc, double inv_max, double sigma, double eps, int norm_on,
                      const double *e_hi, const double *e_lo, double lo, double factor, double *lam,
                      double *hs, double *acc) noexcept nogil
    int ltr_simd_level() noexcept nogil
    void ltr_row_any(int level, int exact, int want_loss, Py_ssize_t i, Py_ssize_t cnt, const double *ss, const double *ld,
                     const double *gs, const double *disc, double inv_max, double sigma, double eps,
                     int norm_on, const double *e_hi, const double *e_lo, double lo, double factor,
                     double *lam, double *hs, double *acc) noexcept nogil
    void ltr_row_exact(Py_ssize_t i, Py_ssize_t cnt, const double *ss, const double *ld, const double *gs,
                       const double *disc, double inv_max, double sigma, double eps, int norm_on,
                       double *lam, double *hs, double *acc) noexcept nogil
    double ltr_row_loss(Py_ssize_t i, Py_ssize_t cnt, const double *ss, const double *ld, const double *gs,
                        const double *disc, double inv_max, double sigma, double eps, int norm_on,
                        double loss) noexcept nogil


rk_simd_init()  # the shared instruction-set probe, once at import (honours RANK_KERNELS_ISA)
rk_mem_init()  # work buffers fail under the RANK_KERNELS_FAIL_ALLOC=1 test hook (see mem.h)


cdef inline double _softplus(double x) noexcept nogil:
    """log(1 + exp(x)) without overflow."""
    if x > 0:
        return x + log1p(exp(-x))
    return log1p(exp(x))


cdef inline double _sigmoid(double x) noexcept nogil:
    """1 / (1 + exp(-x)), exp never overflowing."""
    cdef double e
    if x >= 0:
        return 1.0 / (1.0 + exp(-x))
    e = exp(x)
    return e / (1.0 + e)


cdef inline double _max_dcg(const int32_t *lab, Py_ssize_t cnt, const double *gains, Py_ssize_t k,
                            const double *discount, ltr_item *items) noexcept nogil:
    """DCG of the ideal ordering of `lab` at depth k (gains sorted descending; items: 2 cnt entries)."""
    cdef Py_ssize_t i
    cdef double dcg = 0.0
    for i in range(cnt):
        items[i].key = gains[lab[i]]
        items[i].idx = i
    ltr_sort_desc(items, items + cnt, cnt)
    if k > cnt:
        k = cnt
    for i in range(k):
        dcg += discount[i] * items[i].key
    return dcg


def simd_level():
    """Instruction set the lambdarank pair loop uses on this CPU: 2 AVX-512F, 1 AVX2 + FMA, 0 portable C."""
    return ltr_simd_level()


def grid_sigmoid(double sigma, const double[::1] x, double[::1] out):
    """out[k] = the lambdarank kernel's grid sigmoid at x[k]: LightGBM's table entry for x[k]'s bin."""
    cdef double e_grid[2 * GRID_LO]
    cdef double slo = -50.0 / sigma / 2.0
    cdef double sfactor = SIGMOID_BINS / (-slo - slo)
    cdef Py_ssize_t k
    with nogil:
        ltr_grid_tables(sigma, e_grid, e_grid + GRID_LO)
        for k in range(x.shape[0]):
            out[k] = ltr_grid_value(ltr_grid_bin(x[k], slo, sfactor), e_grid, e_grid + GRID_LO)


def sigmoid_table(double sigma, int n_threads, double[::1] out):
    """Fill out (2^20,) with LightGBM's sigmoid table for `sigma`: out[b] = 1 / (1 + exp(sigma x_b))."""
    cdef double slo = -50.0 / sigma / 2.0
    cdef double sfactor = SIGMOID_BINS / (-slo - slo)
    cdef Py_ssize_t i
    with nogil:
        for i in prange(SIGMOID_BINS, num_threads=n_threads, schedule="static"):
            out[i] = 1.0 / (1.0 + exp((i / sfactor + slo) * sigma))


def lambdarank(const double[::1] scores, const int32_t[::1] labels, const int64_t[::1] offsets,
               const double[::1] gains, double sigma, Py_ssize_t truncation, bint norm, bint exact,
               bint want_loss, int n_threads, double[::1] grad, double[::1] hess, double[::1] group_loss,
               int simd=-1):
    """LightGBM-compatible lambdarank gradients and hessians (see the module docstring).

    gains: gain of each label value (labels index it). truncation >= 1. The per-group "loss"
    is the pairwise logistic loss weighted by the (normalised) delta-NDCG weights, the weights
    held constant: sum over pairs of w * log(1 + exp(-sigma * (s_high - s_low))), times the
    normalisation factor; 0 when `want_loss` is false (the loss costs an exp and a log1p per pair,
    vectorised like the rest on AVX2 / AVX-512, scalar in the portable path). `simd` caps the instruction set of the grid-sigmoid pair
    loop (-1: the best the CPU has; 0: portable C; 1: AVX2 + FMA; 2: AVX-512F), for tests.
    """
    cdef Py_ssize_t n_groups = offsets.shape[0] - 1
    cdef Py_ssize_t m = max(1, max_segment(offsets))
    cdef Py_ssize_t n_labels = gains.shape[0]
    cdef bint counting = n_labels <= COUNT_LABELS_MAX
    cdef rk_status *st = new_status(n_threads, b"lambdarank")
    cdef double *discount = <double *>rk_malloc(sizeof(double) * m)
    cdef int32_t *gain_order = <int32_t *>rk_malloc(sizeof(int32_t) * n_labels) if counting else NULL
    cdef double e_grid[2 * GRID_LO]  # the grid sigmoid's two factor tables (16 KiB, read-only in the loop)
    if discount == NULL or (counting and gain_order == NULL):
        free(discount)
        free(gain_order)
        rk_status_end(st)
        raise MemoryError("lambdarank: could not allocate a work buffer")
    cdef const double *e_hi = e_grid
    cdef const double *e_lo = e_grid + GRID_LO
    cdef Py_ssize_t g, i, k, start, cnt, top
    cdef ltr_item *items
    cdef ltr_item *tmp
    cdef double *ss
    cdef double *gs
    cdef double *ld
    cdef double *lam
    cdef double *hs
    cdef int32_t *hist
    cdef int32_t *pos
    cdef double inv_max, sum_lambdas, factor, loss
    cdef double *acc
    cdef double eps = <double>(<float>0.01)
    cdef double slo = -50.0 / sigma / 2.0
    cdef double sfactor = SIGMOID_BINS / (-slo - slo)
    cdef int norm_on
    cdef int level = ltr_simd_level()
    if 0 <= simd < level:
        level = simd
    with nogil:
        for i in range(m):
            discount[i] = 1.0 / log2(2.0 + i)
        if counting:
            ltr_gain_order(&gains[0], n_labels, gain_order)
        if not exact:
            ltr_grid_tables(sigma, e_grid, e_grid + GRID_LO)
        with parallel(num_threads=n_threads):
            items = <ltr_item *>rk_malloc(sizeof(ltr_item) * 2 * m)
            ss = <double *>rk_malloc(sizeof(double) * (5 * m + 4))
            hist = <int32_t *>rk_calloc((n_labels if counting else 1) + m, sizeof(int32_t))  # all zero between groups
            pos = hist + (n_labels if counting else 1)
            tmp = items + m
            gs = ss + m
            ld = ss + 2 * m
            lam = ss + 3 * m
            hs = ss + 4 * m
            acc = ss + 5 * m
            if True:  # every thread must reach the prange, even one whose allocation failed
                for g in prange(n_groups, schedule="dynamic", chunksize=4):
                    if items == NULL or ss == NULL or hist == NULL:
                        rk_status_fail(st)
                        continue
                    start = offsets[g]
                    cnt = offsets[g + 1] - start
                    group_loss[g] = 0.0
                    if counting and n_labels <= 4 * cnt + 64:
                        inv_max = ltr_max_dcg_counting(&labels[start], cnt, &gains[0], n_labels, gain_order,
                                                       truncation, discount, hist)
                    else:
                        for i in range(cnt):
                            items[i].key = gains[labels[start + i]]
                            items[i].idx = i
                        ltr_sort_desc(items, tmp, cnt)
                        inv_max = 0.0
                        for i in range(cnt if cnt < truncation else truncation):
                            inv_max = inv_max + discount[i] * items[i].key
                    if inv_max > 0.0:
                        inv_max = 1.0 / inv_max
                    if cnt <= RANK_BY_COUNTING_MAX and ltr_rank_desc(&scores[start], cnt, pos):
                        for i in range(cnt):
                            items[pos[i]].idx = i
                    else:
                        for i in range(cnt):
                            items[i].key = scores[start + i]
                            items[i].idx = i
                        ltr_sort_desc(items, tmp, cnt)
                    for i in range(cnt):
                        k = labels[start + items[i].idx]
                        ss[i] = scores[start + items[i].idx]
                        ld[i] = k
                        gs[i] = gains[k]
                        lam[i] = 0.0
                        hs[i] = 0.0
                    norm_on = norm and ss[0] != ss[cnt - 1]
                    sum_lambdas = 0.0
                    loss = 0.0
                    top = cnt - 1 if cnt - 1 < truncation else truncation
                    for i in range(top):
                        ltr_row_any(level, exact, want_loss, i, cnt, ss, ld, gs, discount, inv_max, sigma, eps,
                                    norm_on, e_hi, e_lo, slo, sfactor, lam, hs, acc)
                        lam[i] += acc[0]
                        hs[i] += acc[1]
                        sum_lambdas = sum_lambdas + 2.0 * acc[2]
                        loss = loss + acc[3]
                    factor = 1.0
                    if norm and sum_lambdas > 0.0:
                        factor = log2(1.0 + sum_lambdas) / sum_lambdas
                    if want_loss:
                        group_loss[g] = loss * factor
                    for i in range(cnt):
                        grad[start + items[i].idx] = lam[i] * factor
                        hess[start + items[i].idx] = hs[i] * factor
            free(items)
            free(ss)
            free(hist)
    free(discount)
    free(gain_order)
    check_status(st, b"lambdarank")


def pairwise(const double[::1] scores, const int32_t[::1] labels, const int64_t[::1] offsets,
             bint hinge, double param, int n_threads, double[::1] grad, double[::1] hess,
             double[::1] group_loss):
    """RankNet (hinge=False, param = sigma) or pairwise hinge (hinge=True, param = margin).

    Every ordered pair (i, j) of a group with labels[i] > labels[j] contributes
    log(1 + exp(-sigma * (s_i - s_j))) (RankNet; hessian diagonal sigma^2 p (1 - p) to both),
    or max(0, margin - (s_i - s_j)) (hinge; a subgradient, and a zero hessian).
    """
    cdef Py_ssize_t n_groups = offsets.shape[0] - 1
    cdef Py_ssize_t g, i, j, start, end
    cdef double d, p, loss, gi, hi_
    with nogil:
        for g in prange(n_groups, schedule="dynamic", num_threads=n_threads):
            start = offsets[g]
            end = offsets[g + 1]
            for i in range(start, end):
                grad[i] = 0.0
                hess[i] = 0.0
            loss = 0.0
            for i in range(start, end):
                gi = 0.0
                hi_ = 0.0
                for j in range(start, end):
                    if labels[i] <= labels[j]:
                        continue
                    d = scores[i] - scores[j]
                    if hinge:
                        if param - d > 0.0:
                            loss = loss + (param - d)
                            gi = gi - 1.0
                            grad[j] += 1.0
                    else:
                        p = _sigmoid(-param * d)
                        loss = loss + _softplus(-param * d)
                        gi = gi - param * p
                        grad[j] += param * p
                        p = param * param * p * (1.0 - p)
                        hi_ = hi_ + p
                        hess[j] += p
                grad[i] += gi
                hess[i] += hi_
            group_loss[g] = loss


def listnet(const double[::1] scores, const int32_t[::1] labels, const int64_t[::1] offsets,
            int n_threads, double[::1] grad, double[::1] hess, double[::1] group_loss):
    """Top-one ListNet: loss = -sum softmax(labels) * log softmax(scores) per group.

    Gradient softmax(scores) - softmax(labels), hessian diagonal q (1 - q) with q = softmax(scores).
    """
    cdef Py_ssize_t n_groups = offsets.shape[0] - 1
    cdef Py_ssize_t g, i, start, end
    cdef double ms, ml, zs, zl, q, t, lse, loss
    with nogil:
        for g in prange(n_groups, schedule="dynamic", num_threads=n_threads):
            start = offsets[g]
            end = offsets[g + 1]
            ms = scores[start]
            ml = labels[start]
            for i in range(start, end):
                if scores[i] > ms:
                    ms = scores[i]
                if labels[i] > ml:
                    ml = labels[i]
            zs = 0.0
            zl = 0.0
            for i in range(start, end):
                zs = zs + exp(scores[i] - ms)
                zl = zl + exp(labels[i] - ml)
            lse = ms + log(zs)
            loss = 0.0
            for i in range(start, end):
                q = exp(scores[i] - ms) / zs
                t = exp(labels[i] - ml) / zl
                loss = loss + t * (lse - scores[i])
                grad[i] = q - t
                hess[i] = q * (1.0 - q)
            group_loss[g] = loss


# ------------------------------------------------------------------------------------------------
# the group driver of the list losses (listmle, approx_ndcg)

# What a group function reads and writes: the arrays of the kernel's signature, as pointers.
ctypedef struct _Groups:
    const double *scores       # (n,)
    const int32_t *labels      # (n,)
    const int64_t *offsets     # (n_groups + 1,)
    const double *gains        # gain of each label value, or NULL
    const double *discount     # (m,) 1 / log2(2 + position), or NULL
    double *grad               # (n,)
    double *hess               # (n,) or NULL
    double *group_loss         # (n_groups,)
    double alpha               # approx_ndcg's sigmoid scale

# One group: rows start:start + cnt; items (2 m) and buf (the n_buf doubles given to _run_groups)
# are the calling thread's scratch.
ctypedef void (*_group_fn)(const _Groups *a, Py_ssize_t g, Py_ssize_t start, Py_ssize_t cnt, ltr_item *items,
                           double *buf) noexcept nogil


cdef int _run_groups(_group_fn fn, const _Groups *a, Py_ssize_t n_groups, Py_ssize_t m, Py_ssize_t n_buf,
                     int n_threads, const char *name) except -1:
    """fn for every group, groups shared dynamically among n_threads OpenMP threads without the GIL;
    each thread allocates 2 m items (m: the largest group) and n_buf doubles once. A thread that
    cannot allocate runs no group, and MemoryError("<name>: ...") is raised at the end."""
    cdef Py_ssize_t g, start
    cdef ltr_item *items = NULL
    cdef double *buf = NULL
    cdef rk_status *st = new_status(n_threads, name)
    with nogil, parallel(num_threads=n_threads):
        items = <ltr_item *>rk_malloc(sizeof(ltr_item) * 2 * m)
        buf = <double *>rk_malloc(sizeof(double) * n_buf)
        if True:  # every thread must reach the prange, even one whose allocation failed
            for g in prange(n_groups, schedule="dynamic"):
                if items == NULL or buf == NULL:
                    rk_status_fail(st)
                    continue
                start = a.offsets[g]
                fn(a, g, start, a.offsets[g + 1] - start, items, buf)
        free(items)
        free(buf)
    return check_status(st, name)


cdef _Groups _groups(const double[::1] scores, const int32_t[::1] labels, const int64_t[::1] offsets,
                     double[::1] grad, double[::1] group_loss):
    """The _Groups of a kernel's arrays (no gains, discount, hessian or parameter yet)."""
    cdef _Groups a
    a.scores = &scores[0]
    a.labels = &labels[0]
    a.offsets = &offsets[0]
    a.gains = NULL
    a.discount = NULL
    a.grad = &grad[0]
    a.hess = NULL
    a.group_loss = &group_loss[0]
    a.alpha = 0.0
    return a


cdef void _listmle_group(const _Groups *a, Py_ssize_t g, Py_ssize_t start, Py_ssize_t cnt, ltr_item *items,
                         double *lse) noexcept nogil:
    """ListMLE loss, gradient and hessian of one group; lse: m doubles."""
    cdef const double *scores = a.scores
    cdef Py_ssize_t k, r
    cdef double loss, c, d, e, s, x
    for k in range(cnt):
        items[k].key = a.labels[start + k]
        items[k].idx = k
    ltr_sort_desc(items, items + cnt, cnt)
    # lse[k] = log sum over positions >= k of exp(score)
    lse[cnt - 1] = scores[start + items[cnt - 1].idx]
    for k in range(cnt - 2, -1, -1):
        s = scores[start + items[k].idx]
        if s > lse[k + 1]:
            lse[k] = s + log1p(exp(lse[k + 1] - s))
        else:
            lse[k] = lse[k + 1] + log1p(exp(s - lse[k + 1]))
    loss = 0.0
    c = 0.0
    d = 0.0
    for k in range(cnt):
        r = start + items[k].idx
        if k > 0:
            x = exp(lse[k] - lse[k - 1])
            c = c * x
            d = d * x * x
        c = c + 1.0
        d = d + 1.0
        e = exp(scores[r] - lse[k])
        loss = loss + lse[k] - scores[r]
        a.grad[r] = e * c - 1.0
        a.hess[r] = e * c - e * e * d
    a.group_loss[g] = loss


def listmle(const double[::1] scores, const int32_t[::1] labels, const int64_t[::1] offsets,
            int n_threads, double[::1] grad, double[::1] hess, double[::1] group_loss):
    """ListMLE: sum over positions k of the ranking by label of log sum_{m >= k} exp(s_m) - s_k.

    Computed with running log-sum-exps (no overflow or underflow for any finite scores).
    """
    cdef Py_ssize_t m = max(1, max_segment(offsets))
    cdef _Groups a = _groups(scores, labels, offsets, grad, group_loss)
    a.hess = &hess[0]
    _run_groups(_listmle_group, &a, offsets.shape[0] - 1, m, m, n_threads, b"listmle")


cdef void _approx_ndcg_group(const _Groups *a, Py_ssize_t g, Py_ssize_t start, Py_ssize_t cnt, ltr_item *items,
                             double *buf) noexcept nogil:
    """1 - ApproxNDCG of one group and its gradient; buf: 2 m doubles."""
    cdef const double *scores = a.scores
    cdef const int32_t *labels = a.labels
    cdef const double *gains = a.gains
    cdef double alpha = a.alpha
    cdef double *rk = buf
    cdef double *d = buf + cnt
    cdef Py_ssize_t i, j
    cdef double max_dcg, dcg, p, l2, acc
    max_dcg = _max_dcg(&labels[start], cnt, gains, cnt, a.discount, items)
    if max_dcg <= 0.0:
        a.group_loss[g] = 0.0
        for i in range(start, start + cnt):
            a.grad[i] = 0.0
        return
    for i in range(cnt):
        rk[i] = 1.0
    for i in range(cnt):
        for j in range(i + 1, cnt):
            p = _sigmoid(alpha * (scores[start + j] - scores[start + i]))
            rk[i] += p
            rk[j] += 1.0 - p
    dcg = 0.0
    for i in range(cnt):
        l2 = log2(1.0 + rk[i])
        dcg = dcg + gains[labels[start + i]] / l2
        # d(loss)/d(rank_i)
        d[i] = gains[labels[start + i]] / (max_dcg * log(2.0) * (1.0 + rk[i]) * l2 * l2)
    a.group_loss[g] = 1.0 - dcg / max_dcg
    for i in range(cnt):
        acc = 0.0
        for j in range(cnt):
            if j != i:
                p = _sigmoid(alpha * (scores[start + j] - scores[start + i]))
                acc = acc + p * (1.0 - p) * (d[j] - d[i])
        a.grad[start + i] = alpha * acc


def approx_ndcg(const double[::1] scores, const int32_t[::1] labels, const int64_t[::1] offsets,
                const double[::1] gains, double alpha, int n_threads, double[::1] grad,
                double[::1] group_loss):
    """1 - ApproxNDCG per group (0, with a zero gradient, for groups whose maximum DCG is 0).

    The rank of item i is approximated by 1 + sum_{j != i} sigmoid(alpha * (s_j - s_i)) and
    its discount by 1 / log2(1 + rank); the NDCG is over the whole group (no cutoff).
    """
    cdef Py_ssize_t m = max(1, max_segment(offsets)), i
    cdef _Groups a = _groups(scores, labels, offsets, grad, group_loss)
    cdef double *discount = <double *>rk_malloc(sizeof(double) * m)
    if discount == NULL:
        raise MemoryError("approx_ndcg: could not allocate a work buffer")
    for i in range(m):
        discount[i] = 1.0 / log2(2.0 + i)
    a.gains = &gains[0]
    a.discount = discount
    a.alpha = alpha
    try:
        _run_groups(_approx_ndcg_group, &a, offsets.shape[0] - 1, m, 2 * m, n_threads, b"approx_ndcg")
    finally:
        free(discount)
