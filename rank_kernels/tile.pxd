# Declarations of the shared float32 tile engine (tile_f32.h), cimported by the kernel modules.

from libc.stdint cimport uint16_t

cdef extern from "tile_f32.h" nogil:
    enum:
        TILE_QW
        TILE_STRIP
        TILE_F16
        TILE_F32
        TILE_F64
    int tile_init()
    const char *tile_isa()
    ptrdiff_t tile_n_panels(ptrdiff_t n)
    ptrdiff_t tile_packed_size(ptrdiff_t n, ptrdiff_t d)
    void tile_pack_queries(const float *q, ptrdiff_t n, ptrdiff_t d, float *out)
    void tile_strip_max(const float *qp, ptrdiff_t n_rows, const float *r, ptrdiff_t ld, ptrdiff_t d,
                        int nr, float *out)
    void tile_strip_store(const float *qp, ptrdiff_t n_rows, const float *r, ptrdiff_t ld, ptrdiff_t d,
                          int nr, float *out, ptrdiff_t ostride)
    const float *tile_rows_f32(const char *base, int kind, ptrdiff_t row0, int nr, ptrdiff_t d, float *buf)
    int tile_all_finite(const float *x, ptrdiff_t n)
    void tile_f16_to_f32(const uint16_t *src, float *dst, ptrdiff_t n)
