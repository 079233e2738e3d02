/*
 * sort.h -- the one stable sort of rank-kernels.
 *
 * RK_STABLE_SORT(name, T, CTX, BEFORE) defines
 *
 *     static void name(CTX ctx, T *a, T *tmp, ptrdiff_t n)
 *
 * which sorts a[0:n] so that BEFORE(ctx, &x, &y) (x must come strictly before y) holds for no
 * later x: insertion-sorted runs of RK_SORT_RUN items, then bottom-up merges (a pair of runs
 * already in order is copied), taking the left item on ties, so equal items keep their order.
 * tmp has room for n items. O(n log n) comparisons, no allocation, thread-safe.
 *
 * One algorithm for every kernel family; each instantiates it with its own item type and
 * order (evaluate: trec_eval's order of run entries; ltr: scores or gains descending; relax:
 * values ascending; fusion: values descending). A stable sort's result is unique, so every
 * instance gives exactly what the sort it replaced gave.
 */
#ifndef RANK_KERNELS_SORT_H
#define RANK_KERNELS_SORT_H

#include <stddef.h>
#include <string.h>

#define RK_SORT_RUN 16

#define RK_STABLE_SORT(name, T, CTX, BEFORE)                                                   \
    static void name(CTX ctx, T *a, T *tmp, ptrdiff_t n)                                       \
    {                                                                                          \
        for (ptrdiff_t s = 0; s < n; s += RK_SORT_RUN) {                                       \
            ptrdiff_t e = s + RK_SORT_RUN < n ? s + RK_SORT_RUN : n;                           \
            for (ptrdiff_t i = s + 1; i < e; i++) {                                            \
                T v = a[i];                                                                    \
                ptrdiff_t j = i;                                                               \
                while (j > s && BEFORE(ctx, &v, &a[j - 1])) {                                  \
                    a[j] = a[j - 1];                                                           \
                    j--;                                                                       \
                }                                                                              \
                a[j] = v;                                                                      \
            }                                                                                  \
        }                                                                                      \
        T *src = a, *dst = tmp;                                                                \
        for (ptrdiff_t w = RK_SORT_RUN; w < n; w *= 2) {                                       \
            for (ptrdiff_t lo = 0; lo < n; lo += 2 * w) {                                      \
                ptrdiff_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n; \
                ptrdiff_t i = lo, j = mid, k = lo;                                             \
                if (mid < hi && BEFORE(ctx, &src[j], &src[mid - 1])) {                         \
                    while (i < mid && j < hi) {                                                \
                        int r = BEFORE(ctx, &src[j], &src[i]) != 0;                            \
                        dst[k++] = r ? src[j] : src[i];                                        \
                        j += r;                                                                \
                        i += 1 - r;                                                            \
                    }                                                                          \
                }                                                                              \
                while (i < mid) dst[k++] = src[i++];                                           \
                while (j < hi) dst[k++] = src[j++];                                            \
            }                                                                                  \
            T *t = src;                                                                        \
            src = dst;                                                                         \
            dst = t;                                                                           \
        }                                                                                      \
        if (src != a) memcpy(a, src, (size_t)n * sizeof(T));                                   \
    }

#endif
