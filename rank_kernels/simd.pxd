# The one instruction-set probe (simd.h): every SIMD kernel module calls rk_simd_init() at import.
cdef extern from "simd.h" nogil:
    int RK_ISA_PORTABLE
    int RK_ISA_AVX2
    int RK_ISA_AVX512
    int rk_simd_init()
    int rk_simd_level()
