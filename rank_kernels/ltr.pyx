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
from libc.stdlib cimport calloc, free, malloc, qsort

cdef enum:
    SIGMOID_BINS = 1048576  # LightGBM's sigmoid table size (1024 * 1024)
    GRID_LO = 1024  # entries of each factor table of the grid sigmoid (GRID_LO^2 = SIGMOID_BINS)
    RANK_BY_COUNTING_MAX = 128  # groups up to this size are ordered by counting, larger ones sorted
    COUNT_LABELS_MAX = 4096  # ideal DCG by counting labels when there are at most this many gains


cdef extern from *:
    """
    /* Hot loops of the lambdarank kernel, in C so that the pair loop vectorises: one row i of
     * the pair matrix at a time, j over the contiguous score-sorted arrays, labels compared
     * with arithmetic (sign as -1/0/+1 doubles) instead of branches, and pairs with equal
     * labels computed as exact zeros instead of skipped. Three versions of the grid-sigmoid
     * row, chosen per call from what the CPU has (ltr_simd_level): AVX-512F and AVX2 + FMA
     * intrinsics on x86-64 with GCC or clang (the grid value exp(sigma x_b) computed by a
     * polynomial: hardware gathers from a table are slow on many x86 CPUs), else portable C
     * that the compiler vectorises (the grid value from two 1024-entry tables; an OpenMP
     * `simd reduction` for the row sums; compiled also for AVX2 with target_clones on Linux
     * GCC). The versions agree to rounding (about 1e-15 relative), not bit for bit; the thread
     * count never changes a result. */
    #include <math.h>
    #include <stddef.h>
    #include <stdint.h>
    #include <string.h>
    #if defined(_MSC_VER) && !defined(restrict)
    #define restrict __restrict
    #endif

    #define LTR_SIGMOID_BINS 1048576
    #define LTR_LO_BITS 10
    #define LTR_LO_MASK 1023

    #if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
    #define LTR_CLONES __attribute__((target_clones("avx2", "default")))
    #else
    #define LTR_CLONES
    #endif
    #if defined(_OPENMP) && _OPENMP >= 201307 && !defined(_MSC_VER)
    #define LTR_SIMD_SUMS _Pragma("omp simd reduction(+:al, ah, as)")
    #else
    #define LTR_SIMD_SUMS
    #endif

    typedef struct { double key; Py_ssize_t idx; } ltr_item;

    /* Stable sort by key descending (equal keys keep their order): insertion-sorted runs of 8,
     * then branch-free merges; tmp has room for n items. */
    static void ltr_sort_desc(ltr_item *a, ltr_item *tmp, Py_ssize_t n)
    {
        const Py_ssize_t run = 8;
        for (Py_ssize_t s = 0; s < n; s += run) {
            Py_ssize_t e = s + run < n ? s + run : n;
            for (Py_ssize_t i = s + 1; i < e; i++) {
                ltr_item v = a[i];
                Py_ssize_t j = i;
                while (j > s && a[j - 1].key < v.key) {
                    a[j] = a[j - 1];
                    j--;
                }
                a[j] = v;
            }
        }
        ltr_item *src = a, *dst = tmp;
        for (Py_ssize_t w = run; w < n; w *= 2) {
            for (Py_ssize_t lo = 0; lo < n; lo += 2 * w) {
                Py_ssize_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
                Py_ssize_t i = lo, j = mid, k = lo;
                while (i < mid && j < hi) {
                    int r = src[j].key > src[i].key;
                    dst[k++] = r ? src[j] : src[i];
                    j += r;
                    i += 1 - r;
                }
                while (i < mid) dst[k++] = src[i++];
                while (j < hi) dst[k++] = src[j++];
            }
            ltr_item *t = src;
            src = dst;
            dst = t;
        }
        if (src != a) memcpy(a, src, (size_t)n * sizeof(ltr_item));
    }

    /* Positions in the order by key descending, ties by index (the order ltr_sort_desc gives),
     * by counting for each row the rows placed before it: O(n^2), but branch-free and
     * vectorised, faster than sorting for small groups. Returns 0 (pos untouched) when a key is
     * NaN. */
    LTR_CLONES static int ltr_rank_desc(const double *restrict s, Py_ssize_t n, int32_t *restrict pos)
    {
        for (Py_ssize_t i = 0; i < n; i++)
            if (s[i] != s[i]) return 0;
        for (Py_ssize_t i = 0; i < n; i++) {
            const double si = s[i];
            int64_t c = 0;
            for (Py_ssize_t j = 0; j < i; j++) c += s[j] >= si;
            for (Py_ssize_t j = i + 1; j < n; j++) c += s[j] > si;
            pos[i] = (int32_t)c;
        }
        return 1;
    }

    /* order[0..L) = the label values sorted by gain descending (ties by label). */
    static void ltr_gain_order(const double *gains, Py_ssize_t L, int32_t *order)
    {
        for (Py_ssize_t i = 0; i < L; i++) {
            int32_t v = (int32_t)i;
            Py_ssize_t j = i;
            while (j > 0 && gains[order[j - 1]] < gains[v]) {
                order[j] = order[j - 1];
                j--;
            }
            order[j] = v;
        }
    }

    /* Ideal DCG at depth k of one group by counting its labels (the same terms, in the same
     * order, as summing the gains sorted descending). hist (L,) is all zero on entry and exit. */
    static double ltr_max_dcg_counting(const int32_t *lab, Py_ssize_t cnt, const double *gains, Py_ssize_t L,
                                       const int32_t *order, Py_ssize_t k, const double *discount, int32_t *hist)
    {
        double dcg = 0.0;
        Py_ssize_t pos = 0, seen = 0;
        if (k > cnt) k = cnt;
        for (Py_ssize_t i = 0; i < cnt; i++) hist[lab[i]]++;
        for (Py_ssize_t r = 0; r < L && seen < cnt; r++) {
            int32_t v = order[r];
            Py_ssize_t c = hist[v];
            hist[v] = 0;
            seen += c;
            double g = gains[v];
            for (; c > 0 && pos < k; c--, pos++) dcg += discount[pos] * g;
        }
        return dcg;
    }

    /* LightGBM's grid index of x: bins over [lo, -lo], ends clamped (NaN gives bin 0). */
    static inline Py_ssize_t ltr_grid_bin(double x, double lo, double factor)
    {
        double c = x > lo ? x : lo;
        c = c < -lo ? c : -lo;
        int b = (int)((c - lo) * factor);
        b = b < LTR_SIGMOID_BINS - 1 ? b : LTR_SIGMOID_BINS - 1;
        return b > 0 ? b : 0;
    }

    /* The two factor tables for `sigma` (1024 entries each): x_b = (b / factor + lo) * sigma with
     * lo = -25 / sigma and factor = 2^20 / (50 / sigma) as in LightGBM, split as
     * exp(x_b) ~ exp(x_{1024 hi}) * exp(lo_part * sigma / factor), within a few ulp of exp(x_b). */
    static void ltr_grid_tables(double sigma, double *e_hi, double *e_lo)
    {
        const double lo = -50.0 / sigma / 2.0, factor = LTR_SIGMOID_BINS / (-lo - lo);
        for (Py_ssize_t k = 0; k <= LTR_LO_MASK; k++) {
            e_hi[k] = exp(((double)(k << LTR_LO_BITS) / factor + lo) * sigma);
            e_lo[k] = exp((double)k / factor * sigma);
        }
    }

    static inline double ltr_grid_value(Py_ssize_t b, const double *e_hi, const double *e_lo)
    {
        return 1.0 / (1.0 + e_hi[b >> LTR_LO_BITS] * e_lo[b & LTR_LO_MASK]);
    }

    /* Row i of the pair matrix (pairs (i, j), j > i) with LightGBM's grid sigmoid: adds the
     * j-side terms to lam[j], hs[j]; acc = (lambda of i, hessian of i, sum of |lambda|).
     * The grid value of bin b, 1 / (1 + exp(x_b)), takes exp(x_b) as the product of two small
     * tables (bins b = hi * 1024 + lo): 16 KiB that stay in L1 instead of LightGBM's 8 MiB table. */
    /* One pair (i, j): sg = sign(label_i - label_j), delta = s_high - s_low, w = |delta NDCG|
     * weight; den = 0.01 + |delta| (norm) or 1. With e = exp(sigma x_b) and r = 1 / ((1 + e) den),
     * rho = 1 / (1 + e) and the lambda rho * sigma * w / den = sigma * w * r, the hessian term
     * rho (1 - rho) sigma^2 w / den = sigma^2 * (w r) * (e r den): one division per pair. Pairs
     * with equal labels have sg = 0, hence w = 0 and exact zero terms. */
    #define LTR_PAIR(DEN)                                                                \
        double sg = (double)(li > ld[j]) - (double)(li < ld[j]);                         \
        double delta = sg * (si - ss[j]);                                                \
        double w = sg * (gi - gs[j]) * (di - disc[j]) * inv_max;                         \
        double den = DEN;                                                                \
        double c = delta > lo ? delta : lo;                                              \
        c = c < hi ? c : hi;                                                             \
        int b = (int)((c - lo) * factor);                                                \
        b = b < LTR_SIGMOID_BINS - 1 ? b : LTR_SIGMOID_BINS - 1;                         \
        b = b > 0 ? b : 0;                                                               \
        double e = e_hi[b >> LTR_LO_BITS] * e_lo[b & LTR_LO_MASK];                       \
        double r = 1.0 / ((1.0 + e) * den);                                              \
        double q = w * r;                                                                \
        double pl = sigma * q;                                                           \
        double ph = s2 * q * (e * r * den);                                              \
        double spl = sg * pl;                                                            \
        al -= spl;                                                                       \
        lam[j] += spl;                                                                   \
        ah += ph;                                                                        \
        hs[j] += ph;                                                                     \
        as += pl;

    /* Row i of the pair matrix (pairs (i, j), j > i) with LightGBM's grid sigmoid: adds the
     * j-side terms to lam[j], hs[j]; acc = (lambda of i, hessian of i, sum of |lambda|).
     * The grid value of bin b, 1 / (1 + exp(x_b)), takes exp(x_b) as the product of two small
     * tables (bins b = hi * 1024 + lo): 16 KiB that stay in L1 instead of LightGBM's 8 MiB table. */
    LTR_CLONES static void ltr_row_grid(Py_ssize_t i, Py_ssize_t cnt, const double *restrict ss,
                                        const double *restrict ld, const double *restrict gs,
                                        const double *restrict disc, double inv_max, double sigma,
                                        double eps, int norm_on, const double *restrict e_hi,
                                        const double *restrict e_lo, double lo, double factor,
                                        double *restrict lam, double *restrict hs, double *acc)
    {
        const double si = ss[i], li = ld[i], gi = gs[i], di = disc[i], hi = -lo, s2 = sigma * sigma;
        double al = 0.0, ah = 0.0, as = 0.0;
        if (norm_on) {
            LTR_SIMD_SUMS
            for (Py_ssize_t j = i + 1; j < cnt; j++) {
                LTR_PAIR(eps + fabs(delta))
            }
        } else {
            LTR_SIMD_SUMS
            for (Py_ssize_t j = i + 1; j < cnt; j++) {
                LTR_PAIR(1.0)
            }
        }
        acc[0] = al;
        acc[1] = ah;
        acc[2] = as;
    }

    #if defined(__GNUC__) && defined(__x86_64__) && !defined(LTR_NO_INTRINSICS)
    #define LTR_X86 1
    #include <immintrin.h>

    /* exp(x) for |x| <= 40: x = k ln2 + r, |r| <= ln2 / 2, exp(r) by its Taylor polynomial of
     * degree 12 (truncation error below 2e-16 relative), times 2^k. */
    #define LTR_LN2_HI 6.93147180369123816490e-01
    #define LTR_LN2_LO 1.90821492927058770002e-10
    #define LTR_EXP_POLY(FMA, MUL, SET1, p, r)  /* Estrin's scheme: short dependency chains */ \
        {                                                                                \
            __typeof__(r) r2 = MUL(r, r), r4, r8, q0, q1, q2, q3, q4, q5;                 \
            q0 = FMA(r, SET1(1.0), SET1(1.0));                                            \
            q1 = FMA(r, SET1(1.0 / 6.0), SET1(0.5));                                      \
            q2 = FMA(r, SET1(1.0 / 120.0), SET1(1.0 / 24.0));                             \
            q3 = FMA(r, SET1(1.0 / 5040.0), SET1(1.0 / 720.0));                           \
            q4 = FMA(r, SET1(1.0 / 362880.0), SET1(1.0 / 40320.0));                       \
            q5 = FMA(r, SET1(1.0 / 39916800.0), SET1(1.0 / 3628800.0));                   \
            r4 = MUL(r2, r2);                                                             \
            q0 = FMA(q1, r2, q0);                                                         \
            q2 = FMA(q3, r2, q2);                                                         \
            q4 = FMA(q5, r2, q4);                                                         \
            r8 = MUL(r4, r4);                                                             \
            q0 = FMA(q2, r4, q0);                                                         \
            q4 = FMA(SET1(1.0 / 479001600.0), r4, q4);                                    \
            p = FMA(q4, r8, q0);                                                          \
        }

    __attribute__((target("avx2,fma"))) static inline __m256d ltr_exp_avx2(__m256d x)
    {
        __m256d k = _mm256_round_pd(_mm256_mul_pd(x, _mm256_set1_pd(1.4426950408889634)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        __m256d r = _mm256_fnmadd_pd(k, _mm256_set1_pd(LTR_LN2_HI), x);
        r = _mm256_fnmadd_pd(k, _mm256_set1_pd(LTR_LN2_LO), r);
        __m256d p;
        LTR_EXP_POLY(_mm256_fmadd_pd, _mm256_mul_pd, _mm256_set1_pd, p, r)
        __m256i ki = _mm256_castpd_si256(_mm256_add_pd(k, _mm256_set1_pd(6755399441055744.0)));  /* 1.5 * 2^52 */
        return _mm256_castsi256_pd(_mm256_add_epi64(_mm256_castpd_si256(p), _mm256_slli_epi64(ki, 52)));
    }

    __attribute__((target("avx512f"))) static inline __m512d ltr_exp_avx512(__m512d x)
    {
        __m512d k = _mm512_roundscale_pd(_mm512_mul_pd(x, _mm512_set1_pd(1.4426950408889634)),
                                         _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        __m512d r = _mm512_fnmadd_pd(k, _mm512_set1_pd(LTR_LN2_HI), x);
        r = _mm512_fnmadd_pd(k, _mm512_set1_pd(LTR_LN2_LO), r);
        __m512d p;
        LTR_EXP_POLY(_mm512_fmadd_pd, _mm512_mul_pd, _mm512_set1_pd, p, r)
        return _mm512_scalef_pd(p, k);
    }

    /* log1p(u) for 0 <= u <= 1: m = 1 + u (rounded; the rounding error restored by a first-order
     * term), m scaled into [sqrt(1/2), sqrt(2)] by 2^-k, log m = 2 atanh(s), s = (m - 1) / (m + 1),
     * |s| <= 0.172, by the odd series to s^21 (truncation error below 1e-17 relative). */
    #define LTR_ATANH_POLY(FMA, MUL, SET1, p, z)                                          \
        {                                                                                \
            __typeof__(z) z2 = MUL(z, z), z4, z8, a0, a1, a2, a3, a4;                     \
            a0 = FMA(z, SET1(1.0 / 3.0), SET1(1.0));                                      \
            a1 = FMA(z, SET1(1.0 / 7.0), SET1(1.0 / 5.0));                                \
            a2 = FMA(z, SET1(1.0 / 11.0), SET1(1.0 / 9.0));                               \
            a3 = FMA(z, SET1(1.0 / 15.0), SET1(1.0 / 13.0));                              \
            a4 = FMA(z, SET1(1.0 / 19.0), SET1(1.0 / 17.0));                              \
            z4 = MUL(z2, z2);                                                             \
            a0 = FMA(a1, z2, a0);                                                         \
            a2 = FMA(a3, z2, a2);                                                         \
            a4 = FMA(SET1(1.0 / 21.0), z2, a4);                                           \
            z8 = MUL(z4, z4);                                                             \
            a0 = FMA(a2, z4, a0);                                                         \
            p = FMA(a4, z8, a0);                                                          \
        }

    __attribute__((target("avx2,fma"))) static inline __m256d ltr_log1p01_avx2(__m256d u)
    {
        const __m256d one = _mm256_set1_pd(1.0);
        __m256d m = _mm256_add_pd(one, u);
        __m256d c = _mm256_div_pd(_mm256_sub_pd(u, _mm256_sub_pd(m, one)), m);
        __m256d big = _mm256_cmp_pd(m, _mm256_set1_pd(1.4142135623730951), _CMP_GT_OQ);
        m = _mm256_blendv_pd(m, _mm256_mul_pd(m, _mm256_set1_pd(0.5)), big);
        __m256d f = _mm256_sub_pd(m, one);
        __m256d s = _mm256_div_pd(f, _mm256_add_pd(_mm256_set1_pd(2.0), f));
        __m256d z = _mm256_mul_pd(s, s), p;
        LTR_ATANH_POLY(_mm256_fmadd_pd, _mm256_mul_pd, _mm256_set1_pd, p, z)
        __m256d lg = _mm256_fmadd_pd(_mm256_add_pd(s, s), p, c);
        return _mm256_add_pd(lg, _mm256_and_pd(big, _mm256_set1_pd(0.6931471805599453)));
    }

    __attribute__((target("avx512f"))) static inline __m512d ltr_log1p01_avx512(__m512d u)
    {
        const __m512d one = _mm512_set1_pd(1.0);
        __m512d m = _mm512_add_pd(one, u);
        __m512d c = _mm512_div_pd(_mm512_sub_pd(u, _mm512_sub_pd(m, one)), m);
        __mmask8 big = _mm512_cmp_pd_mask(m, _mm512_set1_pd(1.4142135623730951), _CMP_GT_OQ);
        m = _mm512_mask_mul_pd(m, big, m, _mm512_set1_pd(0.5));
        __m512d f = _mm512_sub_pd(m, one);
        __m512d s = _mm512_div_pd(f, _mm512_add_pd(_mm512_set1_pd(2.0), f));
        __m512d z = _mm512_mul_pd(s, s), p;
        LTR_ATANH_POLY(_mm512_fmadd_pd, _mm512_mul_pd, _mm512_set1_pd, p, z)
        __m512d lg = _mm512_fmadd_pd(_mm512_add_pd(s, s), p, c);
        return _mm512_mask_add_pd(lg, big, lg, _mm512_set1_pd(0.6931471805599453));
    }

    /* ltr_row_grid with AVX2 + FMA intrinsics, 4 pairs per step; the last step masked, so
     * nothing is read or written past cnt. The grid value exp(x_b) is computed (ltr_exp_avx2
     * at x_b = (b / factor + lo) * sigma) rather than looked up: gathers are slow on many x86
     * CPUs. It agrees with LightGBM's table entry to about 1e-15 relative. */
    __attribute__((target("avx2,fma"))) static void
    ltr_row_grid_avx2(Py_ssize_t i, Py_ssize_t cnt, const double *ss, const double *ld, const double *gs,
                      const double *disc, double inv_max, double sigma, double eps, int norm_on, int exact,
                      int want_loss, double lo, double factor, double *lam, double *hs, double *acc)
    {
        static const int64_t tail[8] = {-1, -1, -1, -1, 0, 0, 0, 0};
        const __m256d si = _mm256_set1_pd(ss[i]), li = _mm256_set1_pd(ld[i]), gi = _mm256_set1_pd(gs[i]);
        const __m256d di = _mm256_set1_pd(disc[i]), vinv = _mm256_set1_pd(inv_max);
        const __m256d vsig = _mm256_set1_pd(sigma), vs2 = _mm256_set1_pd(sigma * sigma);
        const __m256d veps = _mm256_set1_pd(norm_on ? eps : 1.0);
        const __m256d vabs = _mm256_castsi256_pd(_mm256_set1_epi64x(norm_on ? 0x7fffffffffffffffLL : 0));
        const __m256d vlo = _mm256_set1_pd(lo), vhi = _mm256_set1_pd(-lo), vfac = _mm256_set1_pd(factor);
        const __m256d one = _mm256_set1_pd(1.0);
        const __m256d bmax = _mm256_set1_pd(LTR_SIGMOID_BINS - 1), vstep = _mm256_set1_pd(1.0 / factor);
        const __m256d absm = _mm256_castsi256_pd(_mm256_set1_epi64x(0x7fffffffffffffffLL)), v700 = _mm256_set1_pd(700.0);
        __m256d al = _mm256_setzero_pd(), ah = _mm256_setzero_pd(), as = _mm256_setzero_pd();
        __m256d aloss = _mm256_setzero_pd();
        for (Py_ssize_t j = i + 1; j < cnt; j += 4) {
            Py_ssize_t rem = cnt - j;
            __m256i m = _mm256_loadu_si256((const __m256i *)(tail + 4 - (rem < 4 ? rem : 4)));
            __m256d mv = _mm256_castsi256_pd(m);
            __m256d lj = _mm256_maskload_pd(ld + j, m);
            __m256d sg = _mm256_sub_pd(_mm256_and_pd(_mm256_cmp_pd(li, lj, _CMP_GT_OQ), one),
                                       _mm256_and_pd(_mm256_cmp_pd(li, lj, _CMP_LT_OQ), one));
            sg = _mm256_and_pd(sg, mv);
            __m256d delta = _mm256_and_pd(_mm256_mul_pd(sg, _mm256_sub_pd(si, _mm256_maskload_pd(ss + j, m))), mv);
            __m256d w = _mm256_mul_pd(sg, _mm256_sub_pd(gi, _mm256_maskload_pd(gs + j, m)));
            w = _mm256_mul_pd(_mm256_mul_pd(w, _mm256_sub_pd(di, _mm256_maskload_pd(disc + j, m))), vinv);
            w = _mm256_and_pd(w, mv);
            __m256d den = _mm256_add_pd(veps, _mm256_and_pd(delta, vabs));
            __m256d e, np_ = one, nq_;
            if (exact) {  /* rho = np_ / (1 + e), 1 - rho = nq_ / (1 + e), e = exp(-|sigma delta|) */
                __m256d x = _mm256_mul_pd(vsig, delta);
                e = ltr_exp_avx2(_mm256_sub_pd(_mm256_setzero_pd(), _mm256_min_pd(_mm256_and_pd(x, absm), v700)));
                __m256d pos = _mm256_cmp_pd(x, _mm256_setzero_pd(), _CMP_GE_OQ);
                np_ = _mm256_blendv_pd(one, e, pos);
                nq_ = _mm256_blendv_pd(e, one, pos);
            } else {  /* rho = 1 / (1 + e), e = exp(x_b) at the grid point below delta */
                __m256d c = _mm256_min_pd(_mm256_max_pd(delta, vlo), vhi);  /* NaN -> lo */
                __m256d b = _mm256_round_pd(_mm256_mul_pd(_mm256_sub_pd(c, vlo), vfac),
                                            _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
                b = _mm256_min_pd(b, bmax);
                e = ltr_exp_avx2(_mm256_mul_pd(_mm256_add_pd(_mm256_mul_pd(b, vstep), vlo), vsig));
                nq_ = e;
            }
            __m256d r = _mm256_div_pd(one, _mm256_mul_pd(_mm256_add_pd(one, e), den));
            __m256d q = _mm256_mul_pd(w, r);
            __m256d pl = _mm256_mul_pd(_mm256_mul_pd(vsig, q), np_);
            __m256d ph = _mm256_mul_pd(_mm256_mul_pd(_mm256_mul_pd(vs2, q), _mm256_mul_pd(np_, nq_)),
                                       _mm256_mul_pd(r, den));
            __m256d spl = _mm256_mul_pd(sg, pl);
            al = _mm256_sub_pd(al, spl);
            ah = _mm256_add_pd(ah, ph);
            as = _mm256_add_pd(as, pl);
            if (want_loss) {  /* (w / den) * log(1 + exp(-sigma delta)) */
                __m256d x = _mm256_mul_pd(vsig, delta);
                __m256d em = exact ? e : ltr_exp_avx2(_mm256_sub_pd(_mm256_setzero_pd(),
                                                                    _mm256_min_pd(_mm256_and_pd(x, absm), v700)));
                __m256d sp = _mm256_add_pd(_mm256_max_pd(_mm256_sub_pd(_mm256_setzero_pd(), x), _mm256_setzero_pd()),
                                           ltr_log1p01_avx2(em));
                aloss = _mm256_fmadd_pd(_mm256_mul_pd(q, _mm256_add_pd(one, e)), sp, aloss);
            }
            _mm256_maskstore_pd(lam + j, m, _mm256_add_pd(_mm256_maskload_pd(lam + j, m), spl));
            _mm256_maskstore_pd(hs + j, m, _mm256_add_pd(_mm256_maskload_pd(hs + j, m), ph));
        }
        double t[4];
        _mm256_storeu_pd(t, al);
        acc[0] = (t[0] + t[1]) + (t[2] + t[3]);
        _mm256_storeu_pd(t, ah);
        acc[1] = (t[0] + t[1]) + (t[2] + t[3]);
        _mm256_storeu_pd(t, as);
        acc[2] = (t[0] + t[1]) + (t[2] + t[3]);
        _mm256_storeu_pd(t, aloss);
        acc[3] = (t[0] + t[1]) + (t[2] + t[3]);
    }

    /* The same with AVX-512F, 8 pairs per step (masked loads and stores on the last one). */
    __attribute__((target("avx512f"))) static void
    ltr_row_grid_avx512(Py_ssize_t i, Py_ssize_t cnt, const double *ss, const double *ld, const double *gs,
                        const double *disc, double inv_max, double sigma, double eps, int norm_on, int exact,
                        int want_loss, double lo, double factor, double *lam, double *hs, double *acc)
    {
        const __m512d si = _mm512_set1_pd(ss[i]), li = _mm512_set1_pd(ld[i]), gi = _mm512_set1_pd(gs[i]);
        const __m512d di = _mm512_set1_pd(disc[i]), vinv = _mm512_set1_pd(inv_max);
        const __m512d vsig = _mm512_set1_pd(sigma), vs2 = _mm512_set1_pd(sigma * sigma);
        const __m512d veps = _mm512_set1_pd(norm_on ? eps : 1.0);
        const __mmask8 nmask = norm_on ? 0xFF : 0;
        const __m512d vlo = _mm512_set1_pd(lo), vhi = _mm512_set1_pd(-lo), vfac = _mm512_set1_pd(factor);
        const __m512d one = _mm512_set1_pd(1.0), zero = _mm512_setzero_pd();
        const __m512d bmax = _mm512_set1_pd(LTR_SIGMOID_BINS - 1), vstep = _mm512_set1_pd(1.0 / factor);
        const __m512d v700 = _mm512_set1_pd(700.0);
        __m512d al = zero, ah = zero, as = zero, aloss = zero;
        for (Py_ssize_t j = i + 1; j < cnt; j += 8) {
            Py_ssize_t rem = cnt - j;
            __mmask8 m = rem >= 8 ? (__mmask8)0xFF : (__mmask8)((1u << rem) - 1u);
            __m512d lj = _mm512_maskz_loadu_pd(m, ld + j);
            __m512d sg = _mm512_sub_pd(_mm512_maskz_mov_pd(_mm512_mask_cmp_pd_mask(m, li, lj, _CMP_GT_OQ), one),
                                       _mm512_maskz_mov_pd(_mm512_mask_cmp_pd_mask(m, li, lj, _CMP_LT_OQ), one));
            __m512d delta = _mm512_maskz_mul_pd(m, sg, _mm512_sub_pd(si, _mm512_maskz_loadu_pd(m, ss + j)));
            __m512d w = _mm512_mul_pd(sg, _mm512_sub_pd(gi, _mm512_maskz_loadu_pd(m, gs + j)));
            w = _mm512_maskz_mul_pd(m, _mm512_mul_pd(w, _mm512_sub_pd(di, _mm512_maskz_loadu_pd(m, disc + j))), vinv);
            __m512d den = _mm512_add_pd(veps, _mm512_maskz_mov_pd(nmask, _mm512_abs_pd(delta)));
            __m512d e, np_ = one, nq_;
            if (exact) {  /* rho = np_ / (1 + e), 1 - rho = nq_ / (1 + e), e = exp(-|sigma delta|) */
                __m512d x = _mm512_mul_pd(vsig, delta);
                e = ltr_exp_avx512(_mm512_sub_pd(zero, _mm512_min_pd(_mm512_abs_pd(x), v700)));
                __mmask8 pos = _mm512_cmp_pd_mask(x, zero, _CMP_GE_OQ);
                np_ = _mm512_mask_blend_pd(pos, one, e);
                nq_ = _mm512_mask_blend_pd(pos, e, one);
            } else {  /* rho = 1 / (1 + e), e = exp(x_b) at the grid point below delta */
                __m512d c = _mm512_min_pd(_mm512_max_pd(delta, vlo), vhi);  /* NaN -> lo */
                __m512d b = _mm512_roundscale_pd(_mm512_mul_pd(_mm512_sub_pd(c, vlo), vfac),
                                                 _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
                b = _mm512_min_pd(b, bmax);
                e = ltr_exp_avx512(_mm512_mul_pd(_mm512_add_pd(_mm512_mul_pd(b, vstep), vlo), vsig));
                nq_ = e;
            }
            /* r = 1 / a: 14-bit estimate, two Newton steps (error ~1 ulp; a >= 0.01, finite) */
            __m512d a = _mm512_mul_pd(_mm512_add_pd(one, e), den);
            __m512d r = _mm512_rcp14_pd(a);
            r = _mm512_fmadd_pd(r, _mm512_fnmadd_pd(a, r, one), r);
            r = _mm512_fmadd_pd(r, _mm512_fnmadd_pd(a, r, one), r);
            __m512d q = _mm512_mul_pd(w, r);
            __m512d pl = _mm512_mul_pd(_mm512_mul_pd(vsig, q), np_);
            __m512d ph = _mm512_mul_pd(_mm512_mul_pd(_mm512_mul_pd(vs2, q), _mm512_mul_pd(np_, nq_)),
                                       _mm512_mul_pd(r, den));
            __m512d spl = _mm512_mul_pd(sg, pl);
            al = _mm512_sub_pd(al, spl);
            ah = _mm512_add_pd(ah, ph);
            as = _mm512_add_pd(as, pl);
            if (want_loss) {  /* (w / den) * log(1 + exp(-sigma delta)) */
                __m512d x = _mm512_mul_pd(vsig, delta);
                __m512d em = exact ? e : ltr_exp_avx512(_mm512_sub_pd(zero, _mm512_min_pd(_mm512_abs_pd(x), v700)));
                __m512d sp = _mm512_add_pd(_mm512_max_pd(_mm512_sub_pd(zero, x), zero), ltr_log1p01_avx512(em));
                aloss = _mm512_fmadd_pd(_mm512_mul_pd(q, _mm512_add_pd(one, e)), sp, aloss);
            }
            _mm512_mask_storeu_pd(lam + j, m, _mm512_add_pd(_mm512_maskz_loadu_pd(m, lam + j), spl));
            _mm512_mask_storeu_pd(hs + j, m, _mm512_add_pd(_mm512_maskz_loadu_pd(m, hs + j), ph));
        }
        acc[0] = _mm512_reduce_add_pd(al);
        acc[1] = _mm512_reduce_add_pd(ah);
        acc[2] = _mm512_reduce_add_pd(as);
        acc[3] = _mm512_reduce_add_pd(aloss);
    }

    /* 2: AVX-512F, 1: AVX2 and FMA, 0: the portable loop. */
    static int ltr_simd_level(void)
    {
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx512f")) return 2;
        if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return 1;
        return 0;
    }
    #else
    static int ltr_simd_level(void) { return 0; }
    #endif

    /* 1 / (1 + exp(-x)), exp never overflowing. */
    static inline double ltr_sigmoid(double x)
    {
        if (x >= 0) return 1.0 / (1.0 + exp(-x));
        double e = exp(x);
        return e / (1.0 + e);
    }

    /* ltr_row_grid with the exact logistic function (scalar: one exp per pair). */
    static void ltr_row_exact(Py_ssize_t i, Py_ssize_t cnt, const double *ss, const double *ld,
                              const double *gs, const double *disc, double inv_max, double sigma,
                              double eps, int norm_on, double *restrict lam, double *restrict hs, double *acc)
    {
        const double si = ss[i], li = ld[i], gi = gs[i], di = disc[i], s2 = sigma * sigma;
        double al = 0.0, ah = 0.0, as = 0.0;
        for (Py_ssize_t j = i + 1; j < cnt; j++) {
            if (li == ld[j]) continue;
            double sg = li > ld[j] ? 1.0 : -1.0;
            double delta = sg * (si - ss[j]);
            double dpair = sg * (gi - gs[j]) * (di - disc[j]) * inv_max;
            if (norm_on) dpair = dpair / (eps + fabs(delta));
            double p = 1.0 - ltr_sigmoid(sigma * delta);
            double ph = p * (1.0 - p) * s2 * dpair;
            double pl = p * sigma * dpair;
            double spl = sg * pl;
            al -= spl;
            lam[j] += spl;
            ah += ph;
            hs[j] += ph;
            as += pl;
        }
        acc[0] = al;
        acc[1] = ah;
        acc[2] = as;
    }

    static inline double ltr_softplus(double x)
    {
        return x > 0 ? x + log1p(exp(-x)) : log1p(exp(x));
    }

    /* The loss terms of row i, added to `loss` in pair order. */
    static double ltr_row_loss(Py_ssize_t i, Py_ssize_t cnt, const double *ss, const double *ld,
                               const double *gs, const double *disc, double inv_max, double sigma,
                               double eps, int norm_on, double loss)
    {
        const double si = ss[i], li = ld[i], gi = gs[i], di = disc[i];
        for (Py_ssize_t j = i + 1; j < cnt; j++) {
            if (li == ld[j]) continue;
            double sg = li > ld[j] ? 1.0 : -1.0;
            double delta = sg * (si - ss[j]);
            double dpair = sg * (gi - gs[j]) * (di - disc[j]) * inv_max;
            if (norm_on) dpair = dpair / (eps + fabs(delta));
            loss = loss + dpair * ltr_softplus(-sigma * delta);
        }
        return loss;
    }
    /* Row i with the widest instruction set the CPU has (level from ltr_simd_level), for the
     * grid sigmoid or (exact) the logistic function itself. */
    static inline void ltr_row_any(int level, int exact, int want_loss, Py_ssize_t i, Py_ssize_t cnt, const double *ss,
                                   const double *ld, const double *gs, const double *disc, double inv_max,
                                   double sigma, double eps, int norm_on, const double *e_hi, const double *e_lo,
                                   double lo, double factor, double *lam, double *hs, double *acc)
    {
    #ifdef LTR_X86
        if (level == 2) {
            ltr_row_grid_avx512(i, cnt, ss, ld, gs, disc, inv_max, sigma, eps, norm_on, exact, want_loss, lo,
                                factor, lam, hs, acc);
            return;
        }
        if (level == 1) {
            ltr_row_grid_avx2(i, cnt, ss, ld, gs, disc, inv_max, sigma, eps, norm_on, exact, want_loss, lo,
                              factor, lam, hs, acc);
            return;
        }
    #endif
        if (exact)
            ltr_row_exact(i, cnt, ss, ld, gs, disc, inv_max, sigma, eps, norm_on, lam, hs, acc);
        else
            ltr_row_grid(i, cnt, ss, ld, gs, disc, inv_max, sigma, eps, norm_on, e_hi, e_lo, lo, factor, lam, hs, acc);
        acc[3] = want_loss ? ltr_row_loss(i, cnt, ss, ld, gs, disc, inv_max, sigma, eps, norm_on, 0.0) : 0.0;
    }

    """
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
    cdef Py_ssize_t m = _max_group(offsets)
    cdef Py_ssize_t n_labels = gains.shape[0]
    cdef bint counting = n_labels <= COUNT_LABELS_MAX
    cdef double *discount = <double *>malloc(sizeof(double) * m)
    cdef int32_t *gain_order = <int32_t *>malloc(sizeof(int32_t) * n_labels) if counting else NULL
    cdef double e_grid[2 * GRID_LO]  # the grid sigmoid's two factor tables (16 KiB, read-only in the loop)
    if discount == NULL or (counting and gain_order == NULL):
        free(discount)
        free(gain_order)
        raise MemoryError()
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
    cdef int failed = 0
    cdef int *failp = &failed
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
            items = <ltr_item *>malloc(sizeof(ltr_item) * 2 * m)
            ss = <double *>malloc(sizeof(double) * (5 * m + 4))
            hist = <int32_t *>calloc((n_labels if counting else 1) + m, sizeof(int32_t))  # all zero between groups
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
                        failp[0] = 1
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
