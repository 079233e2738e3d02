/*
 * simd.h -- the one instruction-set probe of rank-kernels.
 *
 * Every SIMD kernel (tile_f32.h for MaxSim and dense scoring, ltr_kernels.h for lambdarank,
 * relax_simd.h for the soft relaxations) asks rk_simd_level() which path to take:
 *
 *   RK_ISA_PORTABLE (0)  plain C, vectorised by the compiler for the build's baseline
 *   RK_ISA_AVX2     (1)  AVX2 + FMA + F16C (x86-64 with GCC or Clang)
 *   RK_ISA_AVX512   (2)  AVX-512F on top of level 1
 *
 * The level is what the CPU has (cpuid, through __builtin_cpu_supports), capped by the
 * environment variable RANK_KERNELS_ISA = portable | avx2 | avx512 (any other value, or no
 * value, caps nothing). The cap exists so that every path can be tested on one machine.
 *
 * Each extension module includes this header and calls rk_simd_init() once at import; the
 * level is written there and only read afterwards, so rk_simd_level() is thread-safe.
 *
 * RK_SIMD_VARIANTS / RK_SIMD_VARIANTS_VOID turn one portable loop (NAME_body, a static inline
 * function) into a function NAME that runs an AVX2-compiled copy of the same loop when the
 * level allows it: the C idiom for what target_clones does, but obeying the cap.
 */
#ifndef RANK_KERNELS_SIMD_H
#define RANK_KERNELS_SIMD_H

#include <stdlib.h>
#include <string.h>

#define RK_ISA_PORTABLE 0
#define RK_ISA_AVX2 1
#define RK_ISA_AVX512 2

#if (defined(__x86_64__) || defined(_M_X64) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define RK_HAVE_X86 1
#else
#define RK_HAVE_X86 0
#endif

#if defined(__GNUC__) || defined(__clang__)
#define RK_ALWAYS_INLINE static inline __attribute__((always_inline))
#else
#define RK_ALWAYS_INLINE static __forceinline
#endif

static int rk_isa_level = RK_ISA_PORTABLE;

/* The cap RANK_KERNELS_ISA sets: a level, or RK_ISA_AVX512 (no cap) when unset or unknown. */
static int rk_isa_cap(void)
{
    const char *cap = getenv("RANK_KERNELS_ISA");
    if (cap == NULL) return RK_ISA_AVX512;
    if (strcmp(cap, "portable") == 0) return RK_ISA_PORTABLE;
    if (strcmp(cap, "avx2") == 0) return RK_ISA_AVX2;
    return RK_ISA_AVX512;
}

/* Probe the CPU, apply the cap and remember the level; returns it. Call once, at import. */
static int rk_simd_init(void)
{
    int level = RK_ISA_PORTABLE;
#if RK_HAVE_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c")) {
        level = RK_ISA_AVX2;
        if (__builtin_cpu_supports("avx512f")) level = RK_ISA_AVX512;
    }
#endif
    int cap = rk_isa_cap();
    rk_isa_level = level < cap ? level : cap;
    return rk_isa_level;
}

/* The level rk_simd_init() chose. */
static inline int rk_simd_level(void) { return rk_isa_level; }

#if RK_HAVE_X86
/* NAME(params) runs NAME_at_avx2 (NAME_body compiled for ISA) at level >= 1, else NAME_body.
 * ISA is a target attribute string such as "avx2" or "avx2,fma". */
#define RK_SIMD_VARIANTS(ret, name, isa, params, args)                                   \
    __attribute__((target(isa))) static ret name##_at_avx2 params { return name##_body args; } \
    static ret name params                                                                  \
    {                                                                                       \
        if (rk_isa_level >= RK_ISA_AVX2) return name##_at_avx2 args;                           \
        return name##_body args;                                                            \
    }
#define RK_SIMD_VARIANTS_VOID(name, isa, params, args)                                   \
    __attribute__((target(isa))) static void name##_at_avx2 params { name##_body args; }   \
    static void name params                                                                 \
    {                                                                                       \
        if (rk_isa_level >= RK_ISA_AVX2) name##_at_avx2 args;                                  \
        else name##_body args;                                                              \
    }
#else
#define RK_SIMD_VARIANTS(ret, name, isa, params, args) \
    static ret name params { return name##_body args; }
#define RK_SIMD_VARIANTS_VOID(name, isa, params, args) \
    static void name params { name##_body args; }
#endif

#endif
