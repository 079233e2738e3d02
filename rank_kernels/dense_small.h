/*
 * dense_small.h -- C helpers of the dense kernel family (rank_kernels/dense.pyx): row sums of
 * squares, finiteness and threshold tests, and the small-batch (1-4 queries) strip kernel.
 */
#ifndef RANK_KERNELS_DENSE_SMALL_H
#define RANK_KERNELS_DENSE_SMALL_H

#include "tile_f32.h"

/* Sum of squares of n floats (eight partial sums; AVX2+FMA when the tile engine uses it). */
static float dense_sumsq_generic(const float *x, ptrdiff_t n)
{
    float a[8] = {0, 0, 0, 0, 0, 0, 0, 0}, s = 0.0f;
    ptrdiff_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) a[l] += x[i + l] * x[i + l];
    for (; i < n; i++) s += x[i] * x[i];
    for (int l = 0; l < 8; l++) s += a[l];
    return s;
}

#if TILE_HAVE_X86
TILE_AVX2 static float dense_sumsq_avx2(const float *x, ptrdiff_t n)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    ptrdiff_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 u = _mm256_loadu_ps(x + i), v = _mm256_loadu_ps(x + i + 8);
        a0 = _mm256_fmadd_ps(u, u, a0);
        a1 = _mm256_fmadd_ps(v, v, a1);
    }
    for (; i + 8 <= n; i += 8) {
        __m256 u = _mm256_loadu_ps(x + i);
        a0 = _mm256_fmadd_ps(u, u, a0);
    }
    float t[8], s = 0.0f;
    _mm256_storeu_ps(t, _mm256_add_ps(a0, a1));
    for (; i < n; i++) s += x[i] * x[i];
    for (int l = 0; l < 8; l++) s += t[l];
    return s;
}
#endif

static inline float dense_sumsq(const float *x, ptrdiff_t n)
{
#if TILE_HAVE_X86
    if (tile_use_avx2) return dense_sumsq_avx2(x, n);
#endif
    return dense_sumsq_generic(x, n);
}

/*
 * Small batches (1 <= nq <= DENSE_SMALL_NQ queries). The tile engine puts queries in the
 * SIMD lanes, which would leave most lanes idle here; instead the rows go in the lanes:
 * a block of rows x 16 (or 8) consecutive coordinates is loaded row by row, transposed in
 * registers, and each query coordinate is broadcast against a column. Every score is still
 * the same single FMA chain over k = 0..d-1 starting from +0 as in the tile engine, so the
 * results are bit-identical to the tile path (and independent of the batch).
 * out[j * os + i] = <q_i, r_j> for i < nq, j < nr <= DENSE_SMALL_ROWS; queries are rows
 * of q, d floats apart. The next `pf_bytes` bytes at `pf` (the rows that follow) are
 * prefetched while this strip is computed.
 */
#define DENSE_SMALL_NQ 4
#define DENSE_SMALL_ROWS 16

static inline int dense_small_ok(ptrdiff_t nq)
{
    return nq <= DENSE_SMALL_NQ && (tile_use_avx512 || tile_use_avx2);
}

/*
 * The parts the AVX-512 and AVX2 bodies share, written once for both widths (FMADD, SET1 and
 * STORE are the width's intrinsics, W its lanes). Inside a body: queries q (d floats apart),
 * NQ of them; accumulators a0..a3; chunk k0 of width w; out, os, nr as documented above.
 *
 * DENSE_SMALL_FMA(cols): a_i += cols[c] * q_i[k0 + c] for c < w (cols[c]: lane j = r_j[k0 + c]).
 * DENSE_SMALL_STORE(W): out[j * os + i] = lane j of a_i, for j < nr and i < NQ.
 * DENSE_SMALL_BY_NQ(body, q, nq, ...): body(q, NQ, ...) with NQ the constant 1, 2, 3 or 4.
 */
#define DENSE_SMALL_FMA(FMADD, SET1, cols)                                       \
    for (int c = 0; c < w; c++) {                                                 \
        a0 = FMADD(cols[c], SET1(q[k0 + c]), a0);                                 \
        if (NQ > 1) a1 = FMADD(cols[c], SET1(q[d + k0 + c]), a1);                 \
        if (NQ > 2) a2 = FMADD(cols[c], SET1(q[2 * d + k0 + c]), a2);             \
        if (NQ > 3) a3 = FMADD(cols[c], SET1(q[3 * d + k0 + c]), a3);             \
    }

#define DENSE_SMALL_STORE(STORE, W)                                              \
    do {                                                                          \
        float s_[4][W];                                                           \
        STORE(s_[0], a0);                                                         \
        STORE(s_[1], a1);                                                         \
        STORE(s_[2], a2);                                                         \
        STORE(s_[3], a3);                                                         \
        for (int j = 0; j < nr; j++)                                              \
            for (int i = 0; i < NQ; i++) out[j * os + i] = s_[i][j];              \
    } while (0)

#define DENSE_SMALL_BY_NQ(body, q, nq, ...)                                      \
    switch (nq) {                                                                 \
    case 1: body(q, 1, __VA_ARGS__); break;                                       \
    case 2: body(q, 2, __VA_ARGS__); break;                                       \
    case 3: body(q, 3, __VA_ARGS__); break;                                       \
    default: body(q, 4, __VA_ARGS__); break;                                      \
    }

/* The first two stages of the in-register transposes, for both widths (LO32 / HI32 interleave
 * the 32-bit, LO64 / HI64 the 64-bit elements of each 128-bit lane of two vectors):
 * DENSE_SMALL_PAIRS(n): t[j], t[j + 1] = the 32-bit interleaves of rows x[j], x[j + 1];
 * DENSE_SMALL_QUADS(n): x[j .. j + 3] = the 64-bit interleaves of t[j], t[j + 2] and of
 * t[j + 1], t[j + 3]. Afterwards each 128-bit lane of x[j + c] holds element c of the four
 * rows j .. j + 3 (in that lane). */
#define DENSE_SMALL_PAIRS(LO32, HI32, n)                                         \
    for (int j = 0; j < (n); j += 2) {                                            \
        t[j] = LO32(x[j], x[j + 1]);                                              \
        t[j + 1] = HI32(x[j], x[j + 1]);                                          \
    }

#define DENSE_SMALL_QUADS(LO64, HI64, n)                                         \
    for (int j = 0; j < (n); j += 4) {                                            \
        x[j] = LO64(t[j], t[j + 2]);                                              \
        x[j + 1] = HI64(t[j], t[j + 2]);                                          \
        x[j + 2] = LO64(t[j + 1], t[j + 3]);                                      \
        x[j + 3] = HI64(t[j + 1], t[j + 3]);                                      \
    }

#define DENSE_SMALL_LO64_512(a, b) _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(a), _mm512_castps_pd(b)))
#define DENSE_SMALL_HI64_512(a, b) _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(a), _mm512_castps_pd(b)))
#define DENSE_SMALL_LO64_256(a, b) _mm256_shuffle_ps(a, b, 0x44)
#define DENSE_SMALL_HI64_256(a, b) _mm256_shuffle_ps(a, b, 0xee)

#if TILE_HAVE_X86
TILE_AVX512 TILE_INLINE void dense_small_avx512_body(const float *q, const int NQ, const float *r, ptrdiff_t ld,
                                                     ptrdiff_t d, int nr, float *out, ptrdiff_t os,
                                                     const char *pf, ptrdiff_t pf_bytes)
{
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, x[16], t[16];
    ptrdiff_t chunks = (d + 15) / 16, pf_step = (pf_bytes + 64 * chunks - 1) / (64 * chunks) * 64;
    for (ptrdiff_t k0 = 0; k0 < d; k0 += 16) {
        int w = d - k0 < 16 ? (int)(d - k0) : 16;
        __mmask16 km = (__mmask16)(w == 16 ? 0xffffu : (1u << w) - 1u);
        for (ptrdiff_t o = 0; o < pf_step && pf_bytes > 0; o += 64, pf_bytes -= 64, pf += 64)
            _mm_prefetch(pf, _MM_HINT_T1);
        for (int j = 0; j < 16; j++)
            x[j] = j < nr ? _mm512_maskz_loadu_ps(km, r + j * ld + k0) : _mm512_setzero_ps();
        /* 16 x 16 transpose: afterwards lane j of x[c] is r_j[k0 + c] */
        DENSE_SMALL_PAIRS(_mm512_unpacklo_ps, _mm512_unpackhi_ps, 16)
        DENSE_SMALL_QUADS(DENSE_SMALL_LO64_512, DENSE_SMALL_HI64_512, 16)
        /* then the four 128-bit lanes: two rounds of 128-bit shuffles */
        for (int j = 0; j < 4; j++) {
            t[j] = _mm512_shuffle_f32x4(x[j], x[j + 4], 0x88);
            t[j + 4] = _mm512_shuffle_f32x4(x[j], x[j + 4], 0xdd);
            t[j + 8] = _mm512_shuffle_f32x4(x[j + 8], x[j + 12], 0x88);
            t[j + 12] = _mm512_shuffle_f32x4(x[j + 8], x[j + 12], 0xdd);
        }
        for (int j = 0; j < 4; j++) {
            x[j] = _mm512_shuffle_f32x4(t[j], t[j + 8], 0x88);
            x[j + 8] = _mm512_shuffle_f32x4(t[j], t[j + 8], 0xdd);
            x[j + 4] = _mm512_shuffle_f32x4(t[j + 4], t[j + 12], 0x88);
            x[j + 12] = _mm512_shuffle_f32x4(t[j + 4], t[j + 12], 0xdd);
        }
        DENSE_SMALL_FMA(_mm512_fmadd_ps, _mm512_set1_ps, x)
    }
    DENSE_SMALL_STORE(_mm512_storeu_ps, 16);
}

TILE_AVX512 static void dense_small_avx512(const float *q, ptrdiff_t nq, const float *r, ptrdiff_t ld,
                                           ptrdiff_t d, int nr, float *out, ptrdiff_t os,
                                           const char *pf, ptrdiff_t pf_bytes)
{
    DENSE_SMALL_BY_NQ(dense_small_avx512_body, q, nq, r, ld, d, nr, out, os, pf, pf_bytes)
}

/* AVX2: 8 rows per pass (8 x 8 transposes). */
TILE_AVX2 TILE_INLINE void dense_small_avx2_body(const float *q, const int NQ, const float *r, ptrdiff_t ld,
                                                 ptrdiff_t d, int nr, float *out, ptrdiff_t os,
                                                 const char *pf, ptrdiff_t pf_bytes)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, x[8], t[8];
    ptrdiff_t chunks = (d + 7) / 8, pf_step = (pf_bytes + 64 * chunks - 1) / (64 * chunks) * 64;
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (ptrdiff_t k0 = 0; k0 < d; k0 += 8) {
        int w = d - k0 < 8 ? (int)(d - k0) : 8;
        __m256i km = _mm256_cmpgt_epi32(_mm256_set1_epi32(w), lane);
        for (ptrdiff_t o = 0; o < pf_step && pf_bytes > 0; o += 64, pf_bytes -= 64, pf += 64)
            _mm_prefetch(pf, _MM_HINT_T1);
        for (int j = 0; j < 8; j++)
            x[j] = j < nr ? _mm256_maskload_ps(r + j * ld + k0, km) : _mm256_setzero_ps();
        /* 8 x 8 transpose: afterwards lane j of x[c] is r_j[k0 + c] */
        DENSE_SMALL_PAIRS(_mm256_unpacklo_ps, _mm256_unpackhi_ps, 8)
        DENSE_SMALL_QUADS(DENSE_SMALL_LO64_256, DENSE_SMALL_HI64_256, 8)
        /* then the two 128-bit lanes */
        for (int j = 0; j < 4; j++) {
            t[j] = _mm256_permute2f128_ps(x[j], x[j + 4], 0x20);
            t[j + 4] = _mm256_permute2f128_ps(x[j], x[j + 4], 0x31);
        }
        DENSE_SMALL_FMA(_mm256_fmadd_ps, _mm256_set1_ps, t)
    }
    DENSE_SMALL_STORE(_mm256_storeu_ps, 8);
}

TILE_AVX2 static void dense_small_avx2(const float *q, ptrdiff_t nq, const float *r, ptrdiff_t ld,
                                       ptrdiff_t d, int nr, float *out, ptrdiff_t os,
                                       const char *pf, ptrdiff_t pf_bytes)
{
    for (int j0 = 0; j0 < nr; j0 += 8) {
        int n = nr - j0 < 8 ? nr - j0 : 8;
        ptrdiff_t half = pf_bytes / 2, b = j0 ? pf_bytes - half : half;
        const char *p = j0 ? pf + half : pf;
        const float *rr = r + j0 * ld;
        float *oo = out + j0 * os;
        DENSE_SMALL_BY_NQ(dense_small_avx2_body, q, nq, rr, ld, d, n, oo, os, p, b)
    }
}
#endif

/* The small-batch strip: call only when dense_small_ok(nq). */
static inline void dense_small_strip(const float *q, ptrdiff_t nq, const float *r, ptrdiff_t ld, ptrdiff_t d,
                                     int nr, float *out, ptrdiff_t os, const void *pf, ptrdiff_t pf_bytes)
{
#if TILE_HAVE_X86
    if (tile_use_avx512) dense_small_avx512(q, nq, r, ld, d, nr, out, os, (const char *)pf, pf_bytes);
    else dense_small_avx2(q, nq, r, ld, d, nr, out, os, (const char *)pf, pf_bytes);
#endif
}

/* 1 if none of x[j * stride + i] (j < rows, i < cols) is NaN or infinite (exponent bits
 * all ones). Branch-free, so that the inner loop vectorises. */
static int dense_all_finite(const float *x, ptrdiff_t rows, ptrdiff_t cols, ptrdiff_t stride)
{
    uint32_t bad = 0, w;
    for (ptrdiff_t j = 0; j < rows; j++)
        for (ptrdiff_t i = 0; i < cols; i++) {
            memcpy(&w, x + j * stride + i, sizeof w);
            bad |= (uint32_t)((w & 0x7f800000u) == 0x7f800000u);
        }
    return !bad;
}

/* 1 if some x[i] >= t[i] (NaN never passes); branch-free so that it vectorises. */
static inline int dense_any_ge(const float *x, const float *t, ptrdiff_t n)
{
    int hit = 0;
    for (ptrdiff_t i = 0; i < n; i++) hit |= x[i] >= t[i];
    return hit;
}

#endif /* RANK_KERNELS_DENSE_SMALL_H */
