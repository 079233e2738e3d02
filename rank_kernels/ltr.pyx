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
  [-25 / sigma, 25 / sigma], tabulated once per call (8 MiB) unless a table from
  `sigmoid_table` is passed; `exact` uses the sigmoid itself instead). O(n_g * min(n_g, t)).
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
from libc.stdlib cimport free, malloc, qsort

cdef enum:
    SIGMOID_BINS = 1048576  # LightGBM's sigmoid table size (1024 * 1024)


ctypedef struct Item:
    double key
    Py_ssize_t idx


cdef int _cmp_desc(const void *a, const void *b) noexcept nogil:
    """Order by key descending, then by index ascending (a total order: sorting is stable)."""
    cdef const Item *x = <const Item *>a
    cdef const Item *y = <const Item *>b
    if x.key > y.key:
        return -1
    if x.key < y.key:
        return 1
    return (x.idx > y.idx) - (x.idx < y.idx)


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


cdef inline double _grid_sigmoid(const double *table, double x, double lo, double factor) noexcept nogil:
    """LightGBM's tabulated 1 / (1 + exp(sigma * x)): x rounded down onto its grid, ends clamped."""
    if x <= lo:
        return table[0]
    if x >= -lo:
        return table[SIGMOID_BINS - 1]
    return table[<size_t>((x - lo) * factor)]


cdef inline Py_ssize_t _max_group(const int64_t[::1] offsets) noexcept nogil:
    cdef Py_ssize_t g, m = 1
    for g in range(offsets.shape[0] - 1):
        if offsets[g + 1] - offsets[g] > m:
            m = offsets[g + 1] - offsets[g]
    return m


cdef inline double _max_dcg(const int32_t *lab, Py_ssize_t cnt, const double *gains, Py_ssize_t k,
                            const double *discount, Item *items) noexcept nogil:
    """DCG of the ideal ordering of `lab` at depth k (gains sorted descending)."""
    cdef Py_ssize_t i
    cdef double dcg = 0.0
    for i in range(cnt):
        items[i].key = gains[lab[i]]
        items[i].idx = i
    qsort(items, cnt, sizeof(Item), _cmp_desc)
    if k > cnt:
        k = cnt
    for i in range(k):
        dcg += discount[i] * items[i].key
    return dcg


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
               const double[::1] given_table=None):
    """LightGBM-compatible lambdarank gradients and hessians (see the module docstring).

    gains: gain of each label value (labels index it). truncation >= 1. The per-group "loss"
    is the pairwise logistic loss weighted by the (normalised) delta-NDCG weights, the weights
    held constant: sum over pairs of w * log(1 + exp(-sigma * (s_high - s_low))), times the
    normalisation factor; 0 when `want_loss` is false.
    """
    cdef Py_ssize_t n_groups = offsets.shape[0] - 1
    cdef Py_ssize_t m = _max_group(offsets)
    cdef double *discount = <double *>malloc(sizeof(double) * m)
    cdef double *table = NULL
    cdef const double *tab = NULL
    cdef bint build = not exact and given_table is None
    if build:
        table = <double *>malloc(sizeof(double) * SIGMOID_BINS)
        tab = table
    elif not exact:
        tab = &given_table[0]
    if discount == NULL or (build and table == NULL):
        free(discount)
        free(table)
        raise MemoryError()
    cdef Py_ssize_t g, i, j, start, cnt, top
    cdef Item *items
    cdef double *ss
    cdef double *gs
    cdef double *lam
    cdef double *hs
    cdef int32_t *ls
    cdef double inv_max, best, worst, sum_lambdas, delta, dpair, p, ph, factor, loss, li, hi_acc
    cdef int sgn
    cdef double eps = <double>(<float>0.01)
    cdef double slo = -50.0 / sigma / 2.0
    cdef double sfactor = SIGMOID_BINS / (-slo - slo)
    cdef int failed = 0
    cdef int *failp = &failed
    with nogil:
        for i in range(m):
            discount[i] = 1.0 / log2(2.0 + i)
        if build:  # the same table LightGBM builds, entry by entry
            for i in prange(SIGMOID_BINS, num_threads=n_threads, schedule="static"):
                table[i] = 1.0 / (1.0 + exp((i / sfactor + slo) * sigma))
        with parallel(num_threads=n_threads):
            items = <Item *>malloc(sizeof(Item) * m)
            ss = <double *>malloc(sizeof(double) * 4 * m)
            ls = <int32_t *>malloc(sizeof(int32_t) * m)
            gs = ss + m
            lam = ss + 2 * m
            hs = ss + 3 * m
            if True:  # every thread must reach the prange, even one whose allocation failed
                for g in prange(n_groups, schedule="dynamic"):
                    if items == NULL or ss == NULL or ls == NULL:
                        failp[0] = 1
                        continue
                    start = offsets[g]
                    cnt = offsets[g + 1] - start
                    group_loss[g] = 0.0
                    inv_max = _max_dcg(&labels[start], cnt, &gains[0], truncation, discount, items)
                    if inv_max > 0.0:
                        inv_max = 1.0 / inv_max
                    for i in range(cnt):
                        items[i].key = scores[start + i]
                        items[i].idx = i
                    qsort(items, cnt, sizeof(Item), _cmp_desc)
                    for i in range(cnt):
                        ss[i] = items[i].key
                        ls[i] = labels[start + items[i].idx]
                        gs[i] = gains[ls[i]]
                        lam[i] = 0.0
                        hs[i] = 0.0
                    best = ss[0]
                    worst = ss[cnt - 1]
                    sum_lambdas = 0.0
                    loss = 0.0
                    top = cnt - 1 if cnt - 1 < truncation else truncation
                    for i in range(top):
                        li = 0.0
                        hi_acc = 0.0
                        for j in range(i + 1, cnt):
                            sgn = (ls[i] > ls[j]) - (ls[i] < ls[j])
                            if sgn == 0:
                                continue
                            # sgn = +1: i is the better labelled member (the "high" one), -1: j is
                            delta = sgn * (ss[i] - ss[j])
                            dpair = sgn * (gs[i] - gs[j]) * (discount[i] - discount[j]) * inv_max
                            if norm and best != worst:
                                dpair = dpair / (eps + fabs(delta))
                            if exact:
                                p = 1.0 - _sigmoid(sigma * delta)
                            else:
                                p = _grid_sigmoid(tab, delta, slo, sfactor)
                            ph = p * (1.0 - p) * sigma * sigma * dpair
                            p = p * sigma * dpair
                            li = li - sgn * p
                            lam[j] += sgn * p
                            hi_acc = hi_acc + ph
                            hs[j] += ph
                            sum_lambdas = sum_lambdas + 2.0 * p
                            if want_loss:
                                loss = loss + dpair * _softplus(-sigma * delta)
                        lam[i] += li
                        hs[i] += hi_acc
                    factor = 1.0
                    if norm and sum_lambdas > 0.0:
                        factor = log2(1.0 + sum_lambdas) / sum_lambdas
                    group_loss[g] = loss * factor
                    for i in range(cnt):
                        grad[start + items[i].idx] = lam[i] * factor
                        hess[start + items[i].idx] = hs[i] * factor
            free(items)
            free(ss)
            free(ls)
    free(discount)
    free(table)
    if failed:
        raise MemoryError()


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


def listmle(const double[::1] scores, const int32_t[::1] labels, const int64_t[::1] offsets,
            int n_threads, double[::1] grad, double[::1] hess, double[::1] group_loss):
    """ListMLE: sum over positions k of the ranking by label of log sum_{m >= k} exp(s_m) - s_k.

    Computed with running log-sum-exps (no overflow or underflow for any finite scores).
    """
    cdef Py_ssize_t n_groups = offsets.shape[0] - 1
    cdef Py_ssize_t m = _max_group(offsets)
    cdef Py_ssize_t g, k, start, cnt, r
    cdef Item *items
    cdef double *lse
    cdef double loss, c, d, e, s, x
    cdef int failed = 0
    cdef int *failp = &failed
    with nogil, parallel(num_threads=n_threads):
        items = <Item *>malloc(sizeof(Item) * m)
        lse = <double *>malloc(sizeof(double) * m)
        if True:  # every thread must reach the prange, even one whose allocation failed
            for g in prange(n_groups, schedule="dynamic"):
                if items == NULL or lse == NULL:
                    failp[0] = 1
                    continue
                start = offsets[g]
                cnt = offsets[g + 1] - start
                for k in range(cnt):
                    items[k].key = labels[start + k]
                    items[k].idx = k
                qsort(items, cnt, sizeof(Item), _cmp_desc)
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
                    grad[r] = e * c - 1.0
                    hess[r] = e * c - e * e * d
                group_loss[g] = loss
        free(items)
        free(lse)
    if failed:
        raise MemoryError()


def approx_ndcg(const double[::1] scores, const int32_t[::1] labels, const int64_t[::1] offsets,
                const double[::1] gains, double alpha, int n_threads, double[::1] grad,
                double[::1] group_loss):
    """1 - ApproxNDCG per group (0, with a zero gradient, for groups whose maximum DCG is 0).

    The rank of item i is approximated by 1 + sum_{j != i} sigmoid(alpha * (s_j - s_i)) and
    its discount by 1 / log2(1 + rank); the NDCG is over the whole group (no cutoff).
    """
    cdef Py_ssize_t n_groups = offsets.shape[0] - 1
    cdef Py_ssize_t m = _max_group(offsets)
    cdef double *discount = <double *>malloc(sizeof(double) * m)
    if discount == NULL:
        raise MemoryError()
    cdef Py_ssize_t g, i, j, start, cnt
    cdef Item *items
    cdef double *buf
    cdef double *rk
    cdef double *a
    cdef double max_dcg, dcg, p, l2, acc
    cdef int failed = 0
    cdef int *failp = &failed
    with nogil:
        for i in range(m):
            discount[i] = 1.0 / log2(2.0 + i)
        with parallel(num_threads=n_threads):
            items = <Item *>malloc(sizeof(Item) * m)
            buf = <double *>malloc(sizeof(double) * 2 * m)
            rk = buf
            a = buf + m
            if True:  # every thread must reach the prange, even one whose allocation failed
                for g in prange(n_groups, schedule="dynamic"):
                    if items == NULL or buf == NULL:
                        failp[0] = 1
                        continue
                    start = offsets[g]
                    cnt = offsets[g + 1] - start
                    max_dcg = _max_dcg(&labels[start], cnt, &gains[0], cnt, discount, items)
                    if max_dcg <= 0.0:
                        group_loss[g] = 0.0
                        for i in range(start, start + cnt):
                            grad[i] = 0.0
                        continue
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
                        a[i] = gains[labels[start + i]] / (max_dcg * log(2.0) * (1.0 + rk[i]) * l2 * l2)
                    group_loss[g] = 1.0 - dcg / max_dcg
                    for i in range(cnt):
                        acc = 0.0
                        for j in range(cnt):
                            if j != i:
                                p = _sigmoid(alpha * (scores[start + j] - scores[start + i]))
                                acc = acc + p * (1.0 - p) * (a[j] - a[i])
                        grad[start + i] = alpha * acc
            free(items)
            free(buf)
    free(discount)
    if failed:
        raise MemoryError()
