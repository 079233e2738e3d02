/*
 * tile_f32.h -- register-tiled float32 micro-kernels for S = Q . R^T, shared by the MaxSim
 * and dense-scoring kernel families.
 *
 * Layout
 *   Q (the "queries": query tokens, or a batch of query vectors) is packed once by
 *   tile_pack_queries() into panels of TILE_QW = 16 rows: panel p holds, for k = 0..d-1, the
 *   16 values Q[16p + l][k] (l = 0..15) contiguously, zero-padded past the last row.
 *   R (document tokens, or index vectors) is read in place: nr <= TILE_NR rows of d float32
 *   values, consecutive rows `ld` floats apart.
 *
 *   One tile call computes the 16 x nr block S[16p + l][j] = sum_k Q[16p + l][k] * R[j][k]
 *   in registers (lanes over query rows, one broadcast per R value, so R needs no packing) and
 *   either folds it into a running row maximum (tile_max) or stores it (tile_store).
 *
 * Cost: 16 * nr * d multiply-adds per call, no memory traffic besides reading the panel
 *   (d * 64 bytes) and the R rows. With AVX2+FMA the 16 x 6 tile keeps 12 accumulators in
 *   registers and issues 8 loads per 12 FMAs, so it runs near the FMA port limit.
 *
 * Dispatch: on x86-64 with GCC or Clang the AVX2+FMA (and F16C) versions are compiled with
 *   target attributes and chosen at run time by the shared probe of simd.h (cpuid, capped by
 *   RANK_KERNELS_ISA), so a wheel built for the x86-64 baseline still uses them; elsewhere a
 *   portable C version is used.
 *   tile_init() must be called once (module import) before any other function.
 *
 * All functions are thread-safe and touch no global state except the dispatch flags, which
 * are written once by tile_init().
 */
#ifndef RANK_KERNELS_TILE_F32_H
#define RANK_KERNELS_TILE_F32_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <stdlib.h>
#include <math.h>

#include "simd.h"

#define TILE_QW 16 /* query rows per packed panel */
#define TILE_NR 6  /* maximum R rows per tile call */

#if (defined(__x86_64__) || defined(_M_X64) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define TILE_HAVE_X86 1
#include <immintrin.h>
#define TILE_AVX2 __attribute__((target("avx2,fma,f16c")))
#else
#define TILE_HAVE_X86 0
#endif

#if defined(__GNUC__) || defined(__clang__)
#define TILE_INLINE static inline __attribute__((always_inline))
#else
#define TILE_INLINE static __forceinline
#endif

static int tile_use_avx2 = 0, tile_use_avx512 = 0;

/* Take the level of the shared probe (simd.h: cpuid capped by RANK_KERNELS_ISA) once;
 * returns 2 (AVX-512), 1 (AVX2+FMA) or 0 (portable). */
static int tile_init(void)
{
    int level = rk_simd_init();
    (void)level;
#if TILE_HAVE_X86
    tile_use_avx2 = level >= RK_ISA_AVX2;
    tile_use_avx512 = level >= RK_ISA_AVX512;
#endif
    return tile_use_avx512 ? 2 : tile_use_avx2;
}

/* Name of the instruction set in use, for diagnostics. */
static const char *tile_isa(void) { return tile_use_avx512 ? "avx512f" : tile_use_avx2 ? "avx2+fma" : "portable"; }

/* Number of 16-row panels for n rows, and the packed size in floats. */
static inline ptrdiff_t tile_n_panels(ptrdiff_t n) { return (n + TILE_QW - 1) / TILE_QW; }
static inline ptrdiff_t tile_packed_size(ptrdiff_t n, ptrdiff_t d) { return tile_n_panels(n) * d * TILE_QW; }

/* Pack n rows of q (row-major n x d float32) into `out` (tile_packed_size floats). */
static void tile_pack_queries(const float *q, ptrdiff_t n, ptrdiff_t d, float *out)
{
    ptrdiff_t np = tile_n_panels(n);
    memset(out, 0, sizeof(float) * (size_t)(np * d * TILE_QW));
    for (ptrdiff_t i = 0; i < n; i++) {
        float *panel = out + (i / TILE_QW) * d * TILE_QW + (i % TILE_QW);
        const float *row = q + i * d;
        for (ptrdiff_t k = 0; k < d; k++) panel[k * TILE_QW] = row[k];
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Portable version: plain loops the compiler vectorises over the 16 lanes.                   */

/* Two R rows at a time (NR = 1 or 2, a constant once inlined). With GCC/Clang the 16 lanes of
 * each row are four 4-wide vectors (SSE2, NEON, ...), so all 8 accumulators stay in registers. */
#if defined(__GNUC__) || defined(__clang__)
typedef float tile_v4 __attribute__((vector_size(16)));
TILE_INLINE void tile_generic_rows(const float *qp, const float *r, ptrdiff_t ld, ptrdiff_t d, const int NR,
                                   float *out, ptrdiff_t ostride, int fold_max)
{
    tile_v4 a0 = {0, 0, 0, 0}, a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
    const float *r0 = r, *r1 = r + ld;
    for (ptrdiff_t k = 0; k < d; k++) {
        tile_v4 q0, q1, q2, q3;
        memcpy(&q0, qp + k * TILE_QW, 16);
        memcpy(&q1, qp + k * TILE_QW + 4, 16);
        memcpy(&q2, qp + k * TILE_QW + 8, 16);
        memcpy(&q3, qp + k * TILE_QW + 12, 16);
        const float x = r0[k];
        a0 += q0 * x; a1 += q1 * x; a2 += q2 * x; a3 += q3 * x;
        if (NR > 1) {
            const float y = r1[k];
            b0 += q0 * y; b1 += q1 * y; b2 += q2 * y; b3 += q3 * y;
        }
    }
    float acc[2][TILE_QW];
    memcpy(acc[0], &a0, 16); memcpy(acc[0] + 4, &a1, 16); memcpy(acc[0] + 8, &a2, 16); memcpy(acc[0] + 12, &a3, 16);
    memcpy(acc[1], &b0, 16); memcpy(acc[1] + 4, &b1, 16); memcpy(acc[1] + 8, &b2, 16); memcpy(acc[1] + 12, &b3, 16);
#else
TILE_INLINE void tile_generic_rows(const float *qp, const float *r, ptrdiff_t ld, ptrdiff_t d, const int NR,
                                   float *out, ptrdiff_t ostride, int fold_max)
{
    float acc[2][TILE_QW] = {{0}};
    for (ptrdiff_t k = 0; k < d; k++)
        for (int j = 0; j < NR; j++)
            for (int l = 0; l < TILE_QW; l++) acc[j][l] += qp[k * TILE_QW + l] * r[j * ld + k];
#endif
    if (fold_max) {
        for (int l = 0; l < TILE_QW; l++) {
            float m = acc[0][l] > out[l] ? acc[0][l] : out[l];
            if (NR > 1) m = acc[1][l] > m ? acc[1][l] : m;
            out[l] = m;
        }
    } else {
        for (int j = 0; j < NR; j++)
            for (int l = 0; l < TILE_QW; l++) out[j * ostride + l] = acc[j][l];
    }
}

static void tile_generic(const float *qp, const float *r, ptrdiff_t ld, ptrdiff_t d, int nr,
                         float *out, ptrdiff_t ostride, int fold_max)
{
    int j = 0;
    for (; j + 2 <= nr; j += 2)
        tile_generic_rows(qp, r + j * ld, ld, d, 2, fold_max ? out : out + j * ostride, ostride, fold_max);
    if (j < nr)
        tile_generic_rows(qp, r + j * ld, ld, d, 1, fold_max ? out : out + j * ostride, ostride, fold_max);
}

/* ------------------------------------------------------------------------------------------ */
/* AVX2 + FMA version. NR and NV (vectors of 8 lanes: 1 or 2) are compile-time constants in   */
/* every instantiation below, so the accumulator arrays live in registers.                    */

#if TILE_HAVE_X86
TILE_AVX2 TILE_INLINE void tile_avx2_body(const float *qp, const float *r, ptrdiff_t ld, ptrdiff_t d,
                                          const int NR, const int NV, float *out, ptrdiff_t ostride,
                                          const int fold_max)
{
    /* Named accumulators (not an array) so that GCC keeps all 12 in registers. */
    __m256 c0a = _mm256_setzero_ps(), c0b = c0a, c1a = c0a, c1b = c0a, c2a = c0a, c2b = c0a;
    __m256 c3a = c0a, c3b = c0a, c4a = c0a, c4b = c0a, c5a = c0a, c5b = c0a;
    const float *r0 = r, *r1 = r + ld, *r2 = r + 2 * ld, *r3 = r + 3 * ld, *r4 = r + 4 * ld, *r5 = r + 5 * ld;
    for (ptrdiff_t k = 0; k < d; k++) {
        const __m256 qa = _mm256_loadu_ps(qp + k * TILE_QW);
        const __m256 qb = NV > 1 ? _mm256_loadu_ps(qp + k * TILE_QW + 8) : qa;
        __m256 b;
#define TILE_STEP(J)                                                   \
        if (NR > J) {                                                  \
            b = _mm256_broadcast_ss(r##J + k);                         \
            c##J##a = _mm256_fmadd_ps(qa, b, c##J##a);                 \
            if (NV > 1) c##J##b = _mm256_fmadd_ps(qb, b, c##J##b);     \
        }
        TILE_STEP(0) TILE_STEP(1) TILE_STEP(2) TILE_STEP(3) TILE_STEP(4) TILE_STEP(5)
#undef TILE_STEP
    }
    if (fold_max) {
        __m256 ma = _mm256_loadu_ps(out), mb = _mm256_loadu_ps(out + 8);
#define TILE_FOLD(J)                                                   \
        if (NR > J) {                                                  \
            ma = _mm256_max_ps(c##J##a, ma);                           \
            if (NV > 1) mb = _mm256_max_ps(c##J##b, mb);               \
        }
        TILE_FOLD(0) TILE_FOLD(1) TILE_FOLD(2) TILE_FOLD(3) TILE_FOLD(4) TILE_FOLD(5)
#undef TILE_FOLD
        _mm256_storeu_ps(out, ma);
        if (NV > 1) _mm256_storeu_ps(out + 8, mb);
    } else {
#define TILE_PUT(J)                                                    \
        if (NR > J) {                                                  \
            _mm256_storeu_ps(out + J * ostride, c##J##a);              \
            _mm256_storeu_ps(out + J * ostride + 8, NV > 1 ? c##J##b : _mm256_setzero_ps()); \
        }
        TILE_PUT(0) TILE_PUT(1) TILE_PUT(2) TILE_PUT(3) TILE_PUT(4) TILE_PUT(5)
#undef TILE_PUT
    }
}

#define TILE_AVX2_VARIANT(NR, NV)                                                                  \
    TILE_AVX2 static void tile_avx2_##NR##_##NV(const float *qp, const float *r, ptrdiff_t ld,    \
                                                ptrdiff_t d, float *out, ptrdiff_t os, int fold_max) \
    {                                                                                              \
        if (fold_max) tile_avx2_body(qp, r, ld, d, NR, NV, out, os, 1);                            \
        else tile_avx2_body(qp, r, ld, d, NR, NV, out, os, 0);                                     \
    }
TILE_AVX2_VARIANT(1, 1) TILE_AVX2_VARIANT(2, 1) TILE_AVX2_VARIANT(3, 1)
TILE_AVX2_VARIANT(4, 1) TILE_AVX2_VARIANT(5, 1) TILE_AVX2_VARIANT(6, 1)
TILE_AVX2_VARIANT(1, 2) TILE_AVX2_VARIANT(2, 2) TILE_AVX2_VARIANT(3, 2)
TILE_AVX2_VARIANT(4, 2) TILE_AVX2_VARIANT(5, 2) TILE_AVX2_VARIANT(6, 2)

typedef void (*tile_fn)(const float *, const float *, ptrdiff_t, ptrdiff_t, float *, ptrdiff_t, int);
static const tile_fn tile_avx2_table[2][TILE_NR] = {
    {tile_avx2_1_1, tile_avx2_2_1, tile_avx2_3_1, tile_avx2_4_1, tile_avx2_5_1, tile_avx2_6_1},
    {tile_avx2_1_2, tile_avx2_2_2, tile_avx2_3_2, tile_avx2_4_2, tile_avx2_5_2, tile_avx2_6_2},
};
#endif

/* ------------------------------------------------------------------------------------------ */
/* AVX-512 version: one zmm holds a whole 16-row panel; a tile is NP (1 or 2) panels x NR     */
/* (<= 12) rows, i.e. up to 24 accumulators in the 32 zmm registers.                          */

#if TILE_HAVE_X86
#define TILE_AVX512 __attribute__((target("avx512f")))
TILE_AVX512 TILE_INLINE void tile_avx512_body(const float *qp, ptrdiff_t pstride, const float *r, ptrdiff_t ld,
                                              ptrdiff_t d, const int NR, const int NP, float *out,
                                              ptrdiff_t ostride, const int fold_max)
{
    __m512 z = _mm512_setzero_ps();
    __m512 c0a = z, c1a = z, c2a = z, c3a = z, c4a = z, c5a = z, c6a = z, c7a = z, c8a = z, c9a = z, c10a = z, c11a = z;
    __m512 c0b = z, c1b = z, c2b = z, c3b = z, c4b = z, c5b = z, c6b = z, c7b = z, c8b = z, c9b = z, c10b = z, c11b = z;
    const float *r0 = r, *r1 = r + ld, *r2 = r + 2 * ld, *r3 = r + 3 * ld, *r4 = r + 4 * ld, *r5 = r + 5 * ld;
    const float *r6 = r + 6 * ld, *r7 = r + 7 * ld, *r8 = r + 8 * ld, *r9 = r + 9 * ld, *r10 = r + 10 * ld, *r11 = r + 11 * ld;
    for (ptrdiff_t k = 0; k < d; k++) {
        const __m512 qa = _mm512_loadu_ps(qp + k * TILE_QW);
        const __m512 qb = NP > 1 ? _mm512_loadu_ps(qp + pstride + k * TILE_QW) : qa;
        __m512 b;
#define TILE_STEP(J)                                                   \
        if (NR > J) {                                                  \
            b = _mm512_set1_ps(r##J[k]);                               \
            c##J##a = _mm512_fmadd_ps(qa, b, c##J##a);                 \
            if (NP > 1) c##J##b = _mm512_fmadd_ps(qb, b, c##J##b);     \
        }
        TILE_STEP(0) TILE_STEP(1) TILE_STEP(2) TILE_STEP(3) TILE_STEP(4) TILE_STEP(5)
        TILE_STEP(6) TILE_STEP(7) TILE_STEP(8) TILE_STEP(9) TILE_STEP(10) TILE_STEP(11)
#undef TILE_STEP
    }
    if (fold_max) {
        __m512 ma = _mm512_loadu_ps(out), mb = NP > 1 ? _mm512_loadu_ps(out + TILE_QW) : z;
#define TILE_FOLD(J)                                                   \
        if (NR > J) {                                                  \
            ma = _mm512_max_ps(c##J##a, ma);                           \
            if (NP > 1) mb = _mm512_max_ps(c##J##b, mb);               \
        }
        TILE_FOLD(0) TILE_FOLD(1) TILE_FOLD(2) TILE_FOLD(3) TILE_FOLD(4) TILE_FOLD(5)
        TILE_FOLD(6) TILE_FOLD(7) TILE_FOLD(8) TILE_FOLD(9) TILE_FOLD(10) TILE_FOLD(11)
#undef TILE_FOLD
        _mm512_storeu_ps(out, ma);
        if (NP > 1) _mm512_storeu_ps(out + TILE_QW, mb);
    } else {
#define TILE_PUT(J)                                                    \
        if (NR > J) {                                                  \
            _mm512_storeu_ps(out + J * ostride, c##J##a);              \
            if (NP > 1) _mm512_storeu_ps(out + J * ostride + TILE_QW, c##J##b); \
        }
        TILE_PUT(0) TILE_PUT(1) TILE_PUT(2) TILE_PUT(3) TILE_PUT(4) TILE_PUT(5)
        TILE_PUT(6) TILE_PUT(7) TILE_PUT(8) TILE_PUT(9) TILE_PUT(10) TILE_PUT(11)
#undef TILE_PUT
    }
}

typedef void (*tile512_fn)(const float *, ptrdiff_t, const float *, ptrdiff_t, ptrdiff_t, float *, ptrdiff_t, int);
#define TILE_AVX512_VARIANT(NR, NP)                                                                \
    TILE_AVX512 static void tile_avx512_##NR##_##NP(const float *qp, ptrdiff_t ps, const float *r, \
                                                    ptrdiff_t ld, ptrdiff_t d, float *out,         \
                                                    ptrdiff_t os, int fold_max)                    \
    {                                                                                              \
        if (fold_max) tile_avx512_body(qp, ps, r, ld, d, NR, NP, out, os, 1);                      \
        else tile_avx512_body(qp, ps, r, ld, d, NR, NP, out, os, 0);                               \
    }
#define TILE_AVX512_ROW(NP)                                                                        \
    TILE_AVX512_VARIANT(1, NP) TILE_AVX512_VARIANT(2, NP) TILE_AVX512_VARIANT(3, NP)               \
    TILE_AVX512_VARIANT(4, NP) TILE_AVX512_VARIANT(5, NP) TILE_AVX512_VARIANT(6, NP)               \
    TILE_AVX512_VARIANT(7, NP) TILE_AVX512_VARIANT(8, NP) TILE_AVX512_VARIANT(9, NP)               \
    TILE_AVX512_VARIANT(10, NP) TILE_AVX512_VARIANT(11, NP) TILE_AVX512_VARIANT(12, NP)
TILE_AVX512_ROW(1)
TILE_AVX512_ROW(2)
static const tile512_fn tile_avx512_table[2][12] = {
    {tile_avx512_1_1, tile_avx512_2_1, tile_avx512_3_1, tile_avx512_4_1, tile_avx512_5_1, tile_avx512_6_1,
     tile_avx512_7_1, tile_avx512_8_1, tile_avx512_9_1, tile_avx512_10_1, tile_avx512_11_1, tile_avx512_12_1},
    {tile_avx512_1_2, tile_avx512_2_2, tile_avx512_3_2, tile_avx512_4_2, tile_avx512_5_2, tile_avx512_6_2,
     tile_avx512_7_2, tile_avx512_8_2, tile_avx512_9_2, tile_avx512_10_2, tile_avx512_11_2, tile_avx512_12_2},
};
#endif

/*
 * Strips: all panels of a packed Q (n_rows real rows) against nr <= TILE_STRIP rows of R.
 *   tile_strip_max:   out[i] = max(out[i], max_j S[i][j])   out: n_panels * 16 floats
 *   tile_strip_store: out[j * ostride + i] = S[i][j]        ostride >= n_panels * 16
 * Each ISA blocks the strip as suits its register file.
 */
#define TILE_STRIP 12

static inline void tile_strip(const float *qp, ptrdiff_t n_rows, const float *r, ptrdiff_t ld, ptrdiff_t d,
                              int nr, float *out, ptrdiff_t ostride, int fold_max)
{
    ptrdiff_t np = tile_n_panels(n_rows), pstride = d * TILE_QW;
#if TILE_HAVE_X86
    if (tile_use_avx512) {
        for (ptrdiff_t p = 0; p < np; p += 2) {
            int two = p + 1 < np;
            tile_avx512_table[two][nr - 1](qp + p * pstride, pstride, r, ld, d, out + p * TILE_QW, ostride, fold_max);
        }
        return;
    }
    if (tile_use_avx2) {
        for (ptrdiff_t p = 0; p < np; p++) {
            int live = (int)(n_rows - p * TILE_QW);
            for (int j = 0; j < nr; j += 6) {
                int n = nr - j < 6 ? nr - j : 6;
                float *o = fold_max ? out + p * TILE_QW : out + j * ostride + p * TILE_QW;
                tile_avx2_table[live > 8][n - 1](qp + p * pstride, r + j * ld, ld, d, o, ostride, fold_max);
            }
        }
        return;
    }
#endif
    for (ptrdiff_t p = 0; p < np; p++)
        for (int j = 0; j < nr; j += TILE_NR) {
            int n = nr - j < TILE_NR ? nr - j : TILE_NR;
            float *o = fold_max ? out + p * TILE_QW : out + j * ostride + p * TILE_QW;
            tile_generic(qp + p * pstride, r + j * ld, ld, d, n, o, ostride, fold_max);
        }
}

static inline void tile_strip_max(const float *qp, ptrdiff_t n_rows, const float *r, ptrdiff_t ld, ptrdiff_t d,
                                  int nr, float *out)
{
    tile_strip(qp, n_rows, r, ld, d, nr, out, 0, 1);
}

static inline void tile_strip_store(const float *qp, ptrdiff_t n_rows, const float *r, ptrdiff_t ld, ptrdiff_t d,
                                    int nr, float *out, ptrdiff_t ostride)
{
    tile_strip(qp, n_rows, r, ld, d, nr, out, ostride, 0);
}

/* ------------------------------------------------------------------------------------------ */
/* Row conversion to float32, and the finiteness check.                                      */

/* IEEE half -> float, exact for every value including subnormals, inf and NaN. */
static inline float tile_half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, bits;
    if (exp == 0x1fu) bits = sign | 0x7f800000u | (man << 13);
    else if (exp != 0) bits = sign | ((exp + 112u) << 23) | (man << 13);
    else if (man == 0) bits = sign;
    else { /* subnormal: normalise */
        exp = 113u;
        while (!(man & 0x400u)) { man <<= 1; exp--; }
        bits = sign | (exp << 23) | ((man & 0x3ffu) << 13);
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

#if TILE_HAVE_X86
TILE_AVX2 static void tile_f16_to_f32_avx2(const uint16_t *src, float *dst, ptrdiff_t n)
{
    ptrdiff_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
    for (; i < n; i++) dst[i] = tile_half_to_float(src[i]);
}

TILE_AVX2 static int tile_all_finite_avx2(const float *x, ptrdiff_t n)
{
    /* x * 0 is 0 for finite x and NaN for inf/NaN; the sum stays 0 iff all are finite. */
    __m256 acc = _mm256_setzero_ps(), zero = _mm256_setzero_ps();
    ptrdiff_t i = 0;
    for (; i + 8 <= n; i += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), zero, acc);
    float s[8];
    _mm256_storeu_ps(s, acc);
    float t = s[0] + s[1] + s[2] + s[3] + s[4] + s[5] + s[6] + s[7];
    for (; i < n; i++) t += x[i] * 0.0f;
    return t == 0.0f;
}
#endif

/* dst[i] = (float)src[i] for n IEEE half values. */
static inline void tile_f16_to_f32(const uint16_t *src, float *dst, ptrdiff_t n)
{
#if TILE_HAVE_X86
    if (tile_use_avx2) { tile_f16_to_f32_avx2(src, dst, n); return; }
#endif
    for (ptrdiff_t i = 0; i < n; i++) dst[i] = tile_half_to_float(src[i]);
}

/* dst[i] = (float)src[i] for n doubles. */
static inline void tile_f64_to_f32(const double *src, float *dst, ptrdiff_t n)
{
    for (ptrdiff_t i = 0; i < n; i++) dst[i] = (float)src[i];
}

/* 1 if none of the n values is NaN or infinite. */
static inline int tile_all_finite(const float *x, ptrdiff_t n)
{
#if TILE_HAVE_X86
    if (tile_use_avx2) return tile_all_finite_avx2(x, n);
#endif
    float t = 0.0f;
    for (ptrdiff_t i = 0; i < n; i++) t += x[i] * 0.0f;
    return t == 0.0f;
}

/* Element types a row source may have (the numpy itemsize doubles as the code). */
enum { TILE_F16 = 2, TILE_F32 = 4, TILE_F64 = 8 };

/*
 * Rows [row0, row0 + nr) of a source of `d`-wide rows of type `kind` starting at `base`,
 * as float32: returns a pointer to them, in place for float32 or converted into `buf`
 * (nr * d floats) otherwise.
 */
static inline const float *tile_rows_f32(const char *base, int kind, ptrdiff_t row0, int nr, ptrdiff_t d,
                                         float *buf)
{
    ptrdiff_t off = row0 * d;
    if (kind == TILE_F32) return (const float *)base + off;
    if (kind == TILE_F16) tile_f16_to_f32((const uint16_t *)base + off, buf, nr * d);
    else tile_f64_to_f32((const double *)base + off, buf, nr * d);
    return buf;
}

#endif /* RANK_KERNELS_TILE_F32_H */
