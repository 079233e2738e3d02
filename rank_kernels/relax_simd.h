/* Inner loops of the relax kernels, written so the compiler can vectorise them.
 *
 * The loops carry sums, which strict IEEE arithmetic forbids the compiler to reorder; the
 * OpenMP `simd reduction` pragma allows it for these loops only (ignored when OpenMP is off:
 * the loops then run scalar and give the same results up to rounding). On x86-64 Linux with
 * GCC or Clang each function is also compiled for AVX2 and picked per call by the shared probe
 * (simd.h: cpuid, capped by RANK_KERNELS_ISA). The AVX2 copy sums in 4 lanes instead of 2, so
 * the paths agree to rounding (a few ulps of each sum), not bit for bit. */
#ifndef RELAX_SIMD_H
#define RELAX_SIMD_H

#include <math.h>
#include <stddef.h>

#include "simd.h"

#if defined(_OPENMP) && _OPENMP >= 201307 && !defined(_MSC_VER)
#define RELAX_SIMD_SUM_ACC _Pragma("omp simd reduction(+:acc)")
#define RELAX_SIMD_SUM_S _Pragma("omp simd reduction(+:s)")
#else
#define RELAX_SIMD_SUM_ACC
#define RELAX_SIMD_SUM_S
#endif

/* exp(-|x_i - x_j| / tau) from the separable factors: min(ai * B[j], A[j] * bi). */
RK_ALWAYS_INLINE double relax_pair_exp(double ai, double bi, const double *A, const double *B, ptrdiff_t j)
{
    double e = ai * B[j], t = A[j] * bi;
    return e < t ? e : t;
}

/* The pairs (i, j), j in [j0, j1), of one row of the sigmoid kernel, with
 * exp(-|x_i - x_j| / tau) = relax_pair_exp(ai, bi, A, B, j) and q = 1 / (1 + that):
 * - forward (vjp = 0; v = x, vi = x_i): adds sigmoid((x_j - x_i)/tau) to out[j] and returns
 *   sum_j sigmoid((x_i - x_j)/tau);
 * - VJP (vjp = 1; v = c, vi = c_i): d = (c_i - c[j]) sigmoid'(z); out[j] -= d; returns sum_j d.
 * Always inlined with a constant `vjp`, so each caller compiles to its own branch-free loop. */
RK_ALWAYS_INLINE double relax_sig_pairs(int vjp, double vi, double ai, double bi, const double *v, const double *A,
                                        const double *B, double *out, ptrdiff_t j0, ptrdiff_t j1)
{
    double acc = 0.0;
    RELAX_SIMD_SUM_ACC
    for (ptrdiff_t j = j0; j < j1; j++) {
        double e = relax_pair_exp(ai, bi, A, B, j);
        double q = 1.0 / (1.0 + e);
        if (vjp) {
            double d = (vi - v[j]) * e * q * q;
            acc += d;
            out[j] -= d;
        } else {
            double eq = e * q;
            double d = copysign(q - eq, vi - v[j]);      /* sigmoid(z) - sigmoid(-z) (0 when tied) */
            double h = 0.5 * (q + eq);                   /* 1/2 */
            acc += h + 0.5 * d;
            out[j] += h - 0.5 * d;
        }
    }
    return acc;
}

RK_ALWAYS_INLINE double relax_sig_fwd_body(double xi, double ai, double bi, const double *x, const double *A,
                                           const double *B, double *out, ptrdiff_t j0, ptrdiff_t j1)
{
    return relax_sig_pairs(0, xi, ai, bi, x, A, B, out, j0, j1);
}

RK_ALWAYS_INLINE double relax_sig_vjp_body(double ci, double ai, double bi, const double *c, const double *A,
                                           const double *B, double *g, ptrdiff_t j0, ptrdiff_t j1)
{
    return relax_sig_pairs(1, ci, ai, bi, c, A, B, g, j0, j1);
}

/* w[j] *= u[j], flushed to 0 below RELAX_FLUSH (so no denormal ever enters the arithmetic,
 * which is slow on most CPUs); returns sum_j w[j]. */
#define RELAX_FLUSH 1e-290
RK_ALWAYS_INLINE double relax_scale_sum_body(double *w, const double *u, ptrdiff_t n)
{
    double s = 0.0;
    RELAX_SIMD_SUM_S
    for (ptrdiff_t j = 0; j < n; j++) {
        double v = w[j] * u[j];
        v = v < RELAX_FLUSH ? 0.0 : v;
        w[j] = v;
        s += v;
    }
    return s;
}

/* r[j] += f * w[j]. */
RK_ALWAYS_INLINE void relax_axpy_body(double *r, double f, const double *w, ptrdiff_t n)
{
    for (ptrdiff_t j = 0; j < n; j++)
        r[j] += f * w[j];
}

/* sum_j a[j] * b[j]. */
RK_ALWAYS_INLINE double relax_dot_body(const double *a, const double *b, ptrdiff_t n)
{
    double s = 0.0;
    RELAX_SIMD_SUM_S
    for (ptrdiff_t j = 0; j < n; j++)
        s += a[j] * b[j];
    return s;
}

/* gz = f w[j] (c[j] - m); g[j] += ci gz; ga[j] += gz. */
RK_ALWAYS_INLINE void relax_ns_acc_body(double *g, double *ga, const double *w, const double *c, double f,
                                        double m, double ci, ptrdiff_t n)
{
    for (ptrdiff_t j = 0; j < n; j++) {
        double gz = f * w[j] * (c[j] - m);
        g[j] += ci * gz;
        ga[j] += gz;
    }
}

/* The functions relax.pyx calls: each loop above, in an AVX2 copy when the level allows. */
RK_SIMD_VARIANTS(double, relax_sig_fwd, "avx2",
                 (double xi, double ai, double bi, const double *x, const double *A, const double *B, double *out,
                  ptrdiff_t j0, ptrdiff_t j1),
                 (xi, ai, bi, x, A, B, out, j0, j1))
RK_SIMD_VARIANTS(double, relax_sig_vjp, "avx2",
                 (double ci, double ai, double bi, const double *c, const double *A, const double *B, double *g,
                  ptrdiff_t j0, ptrdiff_t j1),
                 (ci, ai, bi, c, A, B, g, j0, j1))
RK_SIMD_VARIANTS(double, relax_scale_sum, "avx2", (double *w, const double *u, ptrdiff_t n), (w, u, n))
RK_SIMD_VARIANTS_VOID(relax_axpy, "avx2", (double *r, double f, const double *w, ptrdiff_t n), (r, f, w, n))
RK_SIMD_VARIANTS(double, relax_dot, "avx2", (const double *a, const double *b, ptrdiff_t n), (a, b, n))
RK_SIMD_VARIANTS_VOID(relax_ns_acc, "avx2",
                      (double *g, double *ga, const double *w, const double *c, double f, double m, double ci,
                       ptrdiff_t n),
                      (g, ga, w, c, f, m, ci, n))

#endif
