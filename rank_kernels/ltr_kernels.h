/* Hot loops of the lambdarank kernel, in C so that the pair loop vectorises: one row i of
 * the pair matrix at a time, j over the contiguous score-sorted arrays, labels compared
 * with arithmetic (sign as -1/0/+1 doubles) instead of branches, and pairs with equal
 * labels computed as exact zeros instead of skipped. Three versions of the grid-sigmoid
 * row, chosen per call from the shared probe (simd.h: cpuid capped by RANK_KERNELS_ISA, and
 * by the kernel's `simd` argument): AVX-512F and AVX2 + FMA
 * intrinsics on x86-64 with GCC or clang (the grid value exp(sigma x_b) computed by a
 * polynomial: hardware gathers from a table are slow on many x86 CPUs), else portable C
 * that the compiler vectorises (the grid value from two 1024-entry tables; an OpenMP
 * `simd reduction` for the row sums; compiled also for AVX2, taken when the probe allows).
 * The versions agree to rounding (about 1e-15 relative), not bit for bit; the thread
 * count never changes a result. */
#ifndef RANK_KERNELS_LTR_KERNELS_H
#define RANK_KERNELS_LTR_KERNELS_H

#include <Python.h>
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

#include "simd.h"
#include "sort.h"

#if defined(_OPENMP) && _OPENMP >= 201307 && !defined(_MSC_VER)
#define LTR_SIMD_SUMS _Pragma("omp simd reduction(+:al, ah, as)")
#else
#define LTR_SIMD_SUMS
#endif

typedef struct { double key; Py_ssize_t idx; } ltr_item;

/* Stable sort by key descending (equal keys keep their order): the one stable sort (sort.h);
 * tmp has room for n items. */
#define LTR_KEY_DESC(ctx, x, y) ((x)->key > (y)->key)
RK_STABLE_SORT(ltr_sort_desc_in, ltr_item, int, LTR_KEY_DESC)
static inline void ltr_sort_desc(ltr_item *a, ltr_item *tmp, Py_ssize_t n) { ltr_sort_desc_in(0, a, tmp, n); }

/* Positions in the order by key descending, ties by index (the order ltr_sort_desc gives),
 * by counting for each row the rows placed before it: O(n^2), but branch-free and
 * vectorised, faster than sorting for small groups. Returns 0 (pos untouched) when a key is
 * NaN. */
RK_ALWAYS_INLINE int ltr_rank_desc_body(const double *restrict s, Py_ssize_t n, int32_t *restrict pos)
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
RK_SIMD_VARIANTS(int, ltr_rank_desc, "avx2", (const double *restrict s, Py_ssize_t n, int32_t *restrict pos),
                 (s, n, pos))

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
RK_ALWAYS_INLINE void ltr_row_grid_body(Py_ssize_t i, Py_ssize_t cnt, const double *restrict ss,
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
RK_SIMD_VARIANTS_VOID(ltr_row_grid, "avx2",
                      (Py_ssize_t i, Py_ssize_t cnt, const double *restrict ss, const double *restrict ld,
                       const double *restrict gs, const double *restrict disc, double inv_max, double sigma,
                       double eps, int norm_on, const double *restrict e_hi, const double *restrict e_lo,
                       double lo, double factor, double *restrict lam, double *restrict hs, double *acc),
                      (i, cnt, ss, ld, gs, disc, inv_max, sigma, eps, norm_on, e_hi, e_lo, lo, factor, lam, hs, acc))

#if defined(__GNUC__) && defined(__x86_64__) && !defined(LTR_NO_INTRINSICS)
#define LTR_X86 1
#include <immintrin.h>

/* p = c0 + c1 r + ... + c12 r^12 by Estrin's scheme (short dependency chains), for any vector
 * width: FMA, MUL, SET1 are that width's intrinsics. A shorter polynomial passes zeros for its
 * top coefficients (an FMA with a zero term is exact, so the value is the same). */
#define LTR_ESTRIN12(FMA, MUL, SET1, p, r, c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12) \
    {                                                                                \
        __typeof__(r) r2 = MUL(r, r), r4, r8, q0, q1, q2, q3, q4, q5;                 \
        q0 = FMA(r, SET1(c1), SET1(c0));                                              \
        q1 = FMA(r, SET1(c3), SET1(c2));                                              \
        q2 = FMA(r, SET1(c5), SET1(c4));                                              \
        q3 = FMA(r, SET1(c7), SET1(c6));                                              \
        q4 = FMA(r, SET1(c9), SET1(c8));                                              \
        q5 = FMA(r, SET1(c11), SET1(c10));                                            \
        r4 = MUL(r2, r2);                                                             \
        q0 = FMA(q1, r2, q0);                                                         \
        q2 = FMA(q3, r2, q2);                                                         \
        q4 = FMA(q5, r2, q4);                                                         \
        r8 = MUL(r4, r4);                                                             \
        q0 = FMA(q2, r4, q0);                                                         \
        q4 = FMA(SET1(c12), r4, q4);                                                  \
        p = FMA(q4, r8, q0);                                                          \
    }

/* exp(r) for |r| <= ln2 / 2 by its Taylor polynomial of degree 12 (truncation error below 2e-16
 * relative); ln 2 split in two parts for the reduction x = k ln2 + r (ltr_row_simd.h). */
#define LTR_LN2_HI 6.93147180369123816490e-01
#define LTR_LN2_LO 1.90821492927058770002e-10
#define LTR_EXP_POLY(FMA, MUL, SET1, p, r)                                           \
    LTR_ESTRIN12(FMA, MUL, SET1, p, r, 1.0, 1.0, 0.5, 1.0 / 6.0, 1.0 / 24.0, 1.0 / 120.0, 1.0 / 720.0,  \
                 1.0 / 5040.0, 1.0 / 40320.0, 1.0 / 362880.0, 1.0 / 3628800.0, 1.0 / 39916800.0,      \
                 1.0 / 479001600.0)

/* atanh(s) / s = 1 + z / 3 + z^2 / 5 + ... + z^10 / 21 with z = s^2 (for log1p, ltr_row_simd.h). */
#define LTR_ATANH_POLY(FMA, MUL, SET1, p, z)                                          \
    LTR_ESTRIN12(FMA, MUL, SET1, p, z, 1.0, 1.0 / 3.0, 1.0 / 5.0, 1.0 / 7.0, 1.0 / 9.0, 1.0 / 11.0,   \
                 1.0 / 13.0, 1.0 / 15.0, 1.0 / 17.0, 1.0 / 19.0, 1.0 / 21.0, 0.0, 0.0)

/* The per-width pieces of the intrinsics row (ltr_row_simd.h), AVX2 + FMA: 4 pairs per step,
 * the mask of the last step a vector of all-ones / zero lanes (maskload / maskstore). */
#define ltr_avx2_W 256
#define ltr_avx2_FN __attribute__((target("avx2,fma"))) static
#define LTR_AVX2_HELPER __attribute__((target("avx2,fma"), always_inline)) static inline
typedef __m256d ltr_avx2_vec;
typedef __m256i ltr_avx2_mask;

LTR_AVX2_HELPER __m256i ltr_avx2_tail(Py_ssize_t rem)
{
    static const int64_t tail[8] = {-1, -1, -1, -1, 0, 0, 0, 0};
    return _mm256_loadu_si256((const __m256i *)(tail + 4 - (rem < 4 ? rem : 4)));
}
LTR_AVX2_HELPER __m256d ltr_avx2_load(__m256i m, const double *p) { return _mm256_maskload_pd(p, m); }
LTR_AVX2_HELPER void ltr_avx2_add_to(double *p, __m256i m, __m256d v)
{
    _mm256_maskstore_pd(p, m, _mm256_add_pd(_mm256_maskload_pd(p, m), v));
}
LTR_AVX2_HELPER __m256d ltr_avx2_keep(__m256i m, __m256d v) { return _mm256_and_pd(v, _mm256_castsi256_pd(m)); }
LTR_AVX2_HELPER __m256d ltr_avx2_sign(__m256i m, __m256d li, __m256d lj)
{
    const __m256d one = _mm256_set1_pd(1.0);
    return ltr_avx2_keep(m, _mm256_sub_pd(_mm256_and_pd(_mm256_cmp_pd(li, lj, _CMP_GT_OQ), one),
                                          _mm256_and_pd(_mm256_cmp_pd(li, lj, _CMP_LT_OQ), one)));
}
LTR_AVX2_HELPER __m256d ltr_avx2_abs(__m256d v)
{
    return _mm256_and_pd(v, _mm256_castsi256_pd(_mm256_set1_epi64x(0x7fffffffffffffffLL)));
}
/* veps + |delta| when norm_on, else veps + 0. */
LTR_AVX2_HELPER __m256d ltr_avx2_den(__m256d veps, __m256d delta, int norm_on)
{
    const __m256d vabs = _mm256_castsi256_pd(_mm256_set1_epi64x(norm_on ? 0x7fffffffffffffffLL : 0));
    return _mm256_add_pd(veps, _mm256_and_pd(delta, vabs));
}
/* x >= 0 ? b : a, lane by lane. */
LTR_AVX2_HELPER __m256d ltr_avx2_sel_ge0(__m256d x, __m256d a, __m256d b)
{
    return _mm256_blendv_pd(a, b, _mm256_cmp_pd(x, _mm256_setzero_pd(), _CMP_GE_OQ));
}
LTR_AVX2_HELPER __m256d ltr_avx2_trunc(__m256d v) { return _mm256_round_pd(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC); }
LTR_AVX2_HELPER __m256d ltr_avx2_rint(__m256d v)
{
    return _mm256_round_pd(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}
/* p 2^k for an integral k (|k| < 1023): k added to the exponent field. */
LTR_AVX2_HELPER __m256d ltr_avx2_ldexp(__m256d p, __m256d k)
{
    __m256i ki = _mm256_castpd_si256(_mm256_add_pd(k, _mm256_set1_pd(6755399441055744.0)));  /* 1.5 * 2^52 */
    return _mm256_castsi256_pd(_mm256_add_epi64(_mm256_castpd_si256(p), _mm256_slli_epi64(ki, 52)));
}
LTR_AVX2_HELPER __m256i ltr_avx2_gt(__m256d v, double t)
{
    return _mm256_castpd_si256(_mm256_cmp_pd(v, _mm256_set1_pd(t), _CMP_GT_OQ));
}
/* mask ? b : a, and a + (mask ? b : 0), lane by lane. */
LTR_AVX2_HELPER __m256d ltr_avx2_sel(__m256i m, __m256d a, __m256d b) { return _mm256_blendv_pd(a, b, _mm256_castsi256_pd(m)); }
LTR_AVX2_HELPER __m256d ltr_avx2_add_where(__m256i m, __m256d a, __m256d b)
{
    return _mm256_add_pd(a, _mm256_and_pd(_mm256_castsi256_pd(m), b));
}
LTR_AVX2_HELPER __m256d ltr_avx2_recip(__m256d a) { return _mm256_div_pd(_mm256_set1_pd(1.0), a); }
LTR_AVX2_HELPER double ltr_avx2_sum(__m256d v)
{
    double t[4];
    _mm256_storeu_pd(t, v);
    return (t[0] + t[1]) + (t[2] + t[3]);
}

/* AVX-512F: 8 pairs per step, the mask of the last step a __mmask8 (masked loads and stores). */
#define ltr_avx512_W 512
#define ltr_avx512_FN __attribute__((target("avx512f"))) static
#define LTR_AVX512_HELPER __attribute__((target("avx512f"), always_inline)) static inline
typedef __m512d ltr_avx512_vec;
typedef __mmask8 ltr_avx512_mask;

LTR_AVX512_HELPER __mmask8 ltr_avx512_tail(Py_ssize_t rem)
{
    return rem >= 8 ? (__mmask8)0xFF : (__mmask8)((1u << rem) - 1u);
}
LTR_AVX512_HELPER __m512d ltr_avx512_load(__mmask8 m, const double *p) { return _mm512_maskz_loadu_pd(m, p); }
LTR_AVX512_HELPER void ltr_avx512_add_to(double *p, __mmask8 m, __m512d v)
{
    _mm512_mask_storeu_pd(p, m, _mm512_add_pd(_mm512_maskz_loadu_pd(m, p), v));
}
LTR_AVX512_HELPER __m512d ltr_avx512_keep(__mmask8 m, __m512d v) { return _mm512_maskz_mov_pd(m, v); }
LTR_AVX512_HELPER __m512d ltr_avx512_sign(__mmask8 m, __m512d li, __m512d lj)
{
    const __m512d one = _mm512_set1_pd(1.0);
    return _mm512_sub_pd(_mm512_maskz_mov_pd(_mm512_mask_cmp_pd_mask(m, li, lj, _CMP_GT_OQ), one),
                         _mm512_maskz_mov_pd(_mm512_mask_cmp_pd_mask(m, li, lj, _CMP_LT_OQ), one));
}
LTR_AVX512_HELPER __m512d ltr_avx512_abs(__m512d v) { return _mm512_abs_pd(v); }
LTR_AVX512_HELPER __m512d ltr_avx512_den(__m512d veps, __m512d delta, int norm_on)
{
    return _mm512_add_pd(veps, _mm512_maskz_mov_pd(norm_on ? (__mmask8)0xFF : (__mmask8)0, _mm512_abs_pd(delta)));
}
LTR_AVX512_HELPER __m512d ltr_avx512_sel_ge0(__m512d x, __m512d a, __m512d b)
{
    return _mm512_mask_blend_pd(_mm512_cmp_pd_mask(x, _mm512_setzero_pd(), _CMP_GE_OQ), a, b);
}
LTR_AVX512_HELPER __m512d ltr_avx512_trunc(__m512d v)
{
    return _mm512_roundscale_pd(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
}
LTR_AVX512_HELPER __m512d ltr_avx512_rint(__m512d v)
{
    return _mm512_roundscale_pd(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}
LTR_AVX512_HELPER __m512d ltr_avx512_ldexp(__m512d p, __m512d k) { return _mm512_scalef_pd(p, k); }
LTR_AVX512_HELPER __mmask8 ltr_avx512_gt(__m512d v, double t)
{
    return _mm512_cmp_pd_mask(v, _mm512_set1_pd(t), _CMP_GT_OQ);
}
LTR_AVX512_HELPER __m512d ltr_avx512_sel(__mmask8 m, __m512d a, __m512d b) { return _mm512_mask_blend_pd(m, a, b); }
LTR_AVX512_HELPER __m512d ltr_avx512_add_where(__mmask8 m, __m512d a, __m512d b)
{
    return _mm512_mask_add_pd(a, m, a, b);
}
/* 1 / a: 14-bit estimate, two Newton steps (error ~1 ulp; a >= 0.01, finite). */
LTR_AVX512_HELPER __m512d ltr_avx512_recip(__m512d a)
{
    const __m512d one = _mm512_set1_pd(1.0);
    __m512d r = _mm512_rcp14_pd(a);
    r = _mm512_fmadd_pd(r, _mm512_fnmadd_pd(a, r, one), r);
    return _mm512_fmadd_pd(r, _mm512_fnmadd_pd(a, r, one), r);
}
LTR_AVX512_HELPER double ltr_avx512_sum(__m512d v) { return _mm512_reduce_add_pd(v); }

/* ltr_avx2_exp, _log1p01, _row_grid and the same for avx512: one body (ltr_row_simd.h), two widths. */
#define LTR_ISA ltr_avx2
#include "ltr_row_simd.h"
#undef LTR_ISA
#define LTR_ISA ltr_avx512
#include "ltr_row_simd.h"
#undef LTR_ISA

/* 2: AVX-512F, 1: AVX2 and FMA, 0: the portable loop: the shared probe's level (simd.h). */
static int ltr_simd_level(void) { return rk_simd_level(); }
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

/* One pair (i, j) with different labels of the scalar rows: sg = sign(label_i - label_j),
 * delta = s_high - s_low, w = |delta NDCG| weight, divided by eps + |delta| when norm_on. */
typedef struct { double sg, delta, w; } ltr_pair;
static inline ltr_pair ltr_pair_at(const double *ss, const double *ld, const double *gs, const double *disc,
                                   Py_ssize_t i, Py_ssize_t j, double inv_max, double eps, int norm_on)
{
    ltr_pair q;
    q.sg = ld[i] > ld[j] ? 1.0 : -1.0;
    q.delta = q.sg * (ss[i] - ss[j]);
    q.w = q.sg * (gs[i] - gs[j]) * (disc[i] - disc[j]) * inv_max;
    if (norm_on) q.w = q.w / (eps + fabs(q.delta));
    return q;
}

/* ltr_row_grid with the exact logistic function (scalar: one exp per pair). */
static void ltr_row_exact(Py_ssize_t i, Py_ssize_t cnt, const double *ss, const double *ld,
                          const double *gs, const double *disc, double inv_max, double sigma,
                          double eps, int norm_on, double *restrict lam, double *restrict hs, double *acc)
{
    const double s2 = sigma * sigma;
    double al = 0.0, ah = 0.0, as = 0.0;
    for (Py_ssize_t j = i + 1; j < cnt; j++) {
        if (ld[i] == ld[j]) continue;
        ltr_pair q = ltr_pair_at(ss, ld, gs, disc, i, j, inv_max, eps, norm_on);
        double p = 1.0 - ltr_sigmoid(sigma * q.delta);
        double ph = p * (1.0 - p) * s2 * q.w;
        double pl = p * sigma * q.w;
        double spl = q.sg * pl;
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
    for (Py_ssize_t j = i + 1; j < cnt; j++) {
        if (ld[i] == ld[j]) continue;
        ltr_pair q = ltr_pair_at(ss, ld, gs, disc, i, j, inv_max, eps, norm_on);
        loss = loss + q.w * ltr_softplus(-sigma * q.delta);
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
        ltr_avx512_row_grid(i, cnt, ss, ld, gs, disc, inv_max, sigma, eps, norm_on, exact, want_loss, lo,
                            factor, lam, hs, acc);
        return;
    }
    if (level == 1) {
        ltr_avx2_row_grid(i, cnt, ss, ld, gs, disc, inv_max, sigma, eps, norm_on, exact, want_loss, lo,
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

#endif
