"""Kernels of the PLAID-style ColBERT index: residual compression, decompression and
centroid-score candidate ranking.

A token vector x is stored as the id c of a centroid and its residual r = x - centroid[c],
each coordinate j of r replaced by a bucket index b of ``bits[j]`` bits (1 to 8, per
coordinate) with ``cutoffs[j, b - 1] <= r_j < cutoffs[j, b]``; decompression gives
``centroid[c, j] + weights[j, b]``. Centroids are float32, or IEEE float16 passed as uint16
bits (converted exactly). `cutoffs` has ``2**max(bits) - 1`` columns; a coordinate
with fewer bits pads its row with +inf, so its bucket index never exceeds ``2**bits[j] - 1``.
Bucket indices are packed as one little-endian bit stream per token: coordinate j sits at
bits ``p_j = bits[0] + ... + bits[j - 1]`` .. ``p_j + bits[j] - 1`` of the token's row of
bytes (bit p is bit p % 8 of byte p // 8), so a field may straddle two bytes.

No validation happens here: `rank.retrieve.colbert_index` checks shapes, dtypes and ranges.
Every function releases the GIL.
"""
from cython.parallel cimport prange
from libc.math cimport INFINITY, sqrt
from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t
from libc.stdlib cimport free
from rank_kernels._mem cimport check_status, new_status, rk_malloc, rk_mem_init, rk_status, rk_status_fail
from rank_kernels.tile cimport tile_f16_to_f32, tile_init

ctypedef fused code_t:  # centroid ids: uint16 up to 65,536 centroids, int32 above
    uint16_t
    int32_t

ctypedef fused centroid_t:  # float32 centroids, or float16 ones as their uint16 bit patterns
    float
    uint16_t

tile_init()  # the float16 conversion uses F16C when the CPU (and RANK_KERNELS_ISA) allow it
rk_mem_init()  # work buffers fail under the RANK_KERNELS_FAIL_ALLOC=1 test hook (see mem.h)


def compress(const float[:, ::1] residuals, const float[:, ::1] cutoffs, const uint8_t[::1] bits,
             uint8_t[:, ::1] out, int n_threads):
    """Bucket every residual coordinate and pack the bucket ids into `out`.

    residuals: (T, dim) float32; cutoffs: (dim, 2**max(bits) - 1) float32, ascending per row
    (+inf padded); bits: (dim,) uint8 in 1..8; out: (T, sum(bits) / 8) uint8 (sum(bits) a
    multiple of 8), overwritten. Binary search per coordinate: O(T * dim * max(bits)).
    """
    cdef Py_ssize_t T = residuals.shape[0], dim = residuals.shape[1], nb = cutoffs.shape[1]
    cdef Py_ssize_t width = out.shape[1]
    cdef Py_ssize_t t, j, lo, hi, mid, pos, sh
    cdef float v
    with nogil:
        for t in prange(T, num_threads=n_threads, schedule="static"):
            for j in range(width):
                out[t, j] = 0
            pos = 0
            for j in range(dim):
                v = residuals[t, j]
                lo = 0
                hi = nb
                while lo < hi:  # the number of cutoffs <= v
                    mid = (lo + hi) >> 1
                    if cutoffs[j, mid] <= v:
                        lo = mid + 1
                    else:
                        hi = mid
                sh = pos & 7
                out[t, pos >> 3] = out[t, pos >> 3] | <uint8_t>((lo << sh) & 0xFF)
                if sh + bits[j] > 8:  # the field straddles two bytes
                    out[t, (pos >> 3) + 1] = out[t, (pos >> 3) + 1] | <uint8_t>(lo >> (8 - sh))
                pos = pos + bits[j]


def decompress(const code_t[::1] codes, const uint8_t[:, ::1] packed, const centroid_t[:, ::1] centroids,
               const float[:, ::1] weights, const uint8_t[::1] bits, const int64_t[::1] starts,
               const int64_t[::1] lengths, const int64_t[::1] out_offsets, bint normalize, float[:, ::1] out,
               int n_threads):
    """Rebuild the tokens of several documents into `out`.

    codes: (T,) uint16 or int32 centroid ids; packed: (T, sum(bits) / 8) uint8; bits: (dim,)
    uint8, as for :func:`compress`; centroids: (C, dim) float32, or float16 viewed as uint16.
    Document i's tokens ``starts[i] .. starts[i] + lengths[i] - 1`` (rows of `codes` and
    `packed`) go to rows ``out_offsets[i] ..`` of `out` (float32, (sum lengths, dim)):
    ``out[r, j] = centroids[codes[t], j] + weights[j, bucket(t, j)]``, each row then divided
    by its norm when `normalize` (rows of norm 0 stay 0). O(sum lengths * dim).
    """
    cdef Py_ssize_t m = starts.shape[0], dim = centroids.shape[1]
    cdef Py_ssize_t i, s, t, r, j, pos, c, sh
    cdef int b
    cdef float v, norm
    with nogil:
        for i in prange(m, num_threads=n_threads, schedule="dynamic"):
            for s in range(lengths[i]):
                t = starts[i] + s
                r = out_offsets[i] + s
                c = codes[t]
                if centroid_t is uint16_t:
                    tile_f16_to_f32(&centroids[c, 0], &out[r, 0], dim)
                norm = 0
                pos = 0
                for j in range(dim):
                    sh = pos & 7
                    b = packed[t, pos >> 3] >> sh
                    if sh + bits[j] > 8:
                        b = b | (packed[t, (pos >> 3) + 1] << (8 - sh))
                    b = b & ((1 << bits[j]) - 1)
                    pos = pos + bits[j]
                    if centroid_t is float:
                        v = centroids[c, j] + weights[j, b]
                    else:
                        v = out[r, j] + weights[j, b]
                    out[r, j] = v
                    norm = norm + v * v
                if normalize and norm > 0:
                    norm = 1 / sqrt(norm)
                    for j in range(dim):
                        out[r, j] = out[r, j] * norm


def centroid_maxsim(const float[:, ::1] scores_t, const code_t[::1] codes, const int64_t[::1] doc_offsets,
                    const int64_t[::1] docs, float[::1] out, int n_threads):
    """Approximate MaxSim of one query against candidate documents from centroid scores.

    scores_t: (n_centroids, Lq) float32, ``scores_t[c, i] = <query token i, centroid c>``;
    codes: (T,) uint16 or int32;
    document d's tokens are ``codes[doc_offsets[d]:doc_offsets[d + 1]]``;
    ``out[k] = sum_i max_{t in docs[k]} scores_t[codes[t], i]``. O(sum of candidate lengths * Lq).
    Raises MemoryError if the per-thread buffers cannot be allocated.
    """
    cdef Py_ssize_t m = docs.shape[0], lq = scores_t.shape[1]
    cdef Py_ssize_t k, t, i, d
    cdef float *best
    cdef float acc, v
    cdef rk_status *st = new_status(n_threads, b"centroid_maxsim")
    with nogil:
        for k in prange(m, num_threads=n_threads, schedule="dynamic"):
            best = <float *>rk_malloc(sizeof(float) * lq)
            if best == NULL:
                rk_status_fail(st)
                out[k] = 0
                continue
            for i in range(lq):
                best[i] = -INFINITY
            d = docs[k]
            for t in range(doc_offsets[d], doc_offsets[d + 1]):
                for i in range(lq):
                    v = scores_t[codes[t], i]
                    if v > best[i]:
                        best[i] = v
            acc = 0
            for i in range(lq):
                acc = acc + best[i]
            out[k] = acc
            free(best)
    check_status(st, b"centroid_maxsim")
