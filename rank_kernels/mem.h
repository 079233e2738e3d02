/*
 * mem.h -- the one allocation-failure pattern of rank-kernels.
 *
 * Work buffers come from rk_malloc / rk_calloc. A kernel that allocates inside an OpenMP
 * parallel region keeps a per-thread status table (rk_status_new): a thread whose allocation
 * failed marks its own slot (rk_status_fail) and skips its rows, every thread still reaches
 * the loop and frees what it holds, and once the region has ended the caller turns any marked
 * slot into MemoryError (rk_status_end; the Cython side is check_status in _mem.pxd). So an
 * allocation failure is never a crash and never leaves rows of an output unset.
 *
 * Test hook: RANK_KERNELS_FAIL_ALLOC=1 in the environment when a module is imported (read by
 * rk_mem_init), or rk_set_fail_alloc(1), makes every rk_malloc / rk_calloc / rk_status_new of
 * that module return NULL, so tests can check that each kernel raises MemoryError.
 */
#ifndef RANK_KERNELS_MEM_H
#define RANK_KERNELS_MEM_H

#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static int rk_fail_alloc = 0;

/* Read the test hook once, at module import. */
static int rk_mem_init(void)
{
    const char *v = getenv("RANK_KERNELS_FAIL_ALLOC");
    rk_fail_alloc = v != NULL && strcmp(v, "1") == 0;
    return rk_fail_alloc;
}

/* Turn the test hook on or off (tests only: not while a kernel runs). */
static void rk_set_fail_alloc(int on) { rk_fail_alloc = on != 0; }

/* malloc / calloc that never take a size of 0 (which may legally return NULL) and obey the hook. */
static inline void *rk_malloc(size_t n) { return rk_fail_alloc ? NULL : malloc(n ? n : 1); }
static inline void *rk_calloc(size_t n, size_t size)
{
    return rk_fail_alloc ? NULL : calloc(n ? n : 1, size ? size : 1);
}

static inline void *rk_realloc(void *p, size_t n) { return rk_fail_alloc ? NULL : realloc(p, n ? n : 1); }

/* Per-thread status: n slots, one per thread of a parallel region of at most n threads. */
typedef struct { int n; int flags[1]; } rk_status;

static rk_status *rk_status_new(int n_threads)
{
    int n = n_threads > 0 ? n_threads : 1;
    rk_status *st = (rk_status *)rk_calloc(1, sizeof(rk_status) + (size_t)n * sizeof(int));
    if (st != NULL) st->n = n;
    return st;
}

/* Mark the calling thread's slot: its allocation failed. */
static inline void rk_status_fail(rk_status *st)
{
#ifdef _OPENMP
    int t = omp_get_thread_num();
#else
    int t = 0;
#endif
    st->flags[t < st->n ? t : 0] = 1;
}

/* 1 if the calling thread marked its slot (it skips its rows from then on). */
static inline int rk_status_mine(const rk_status *st)
{
#ifdef _OPENMP
    int t = omp_get_thread_num();
#else
    int t = 0;
#endif
    return st->flags[t < st->n ? t : 0];
}

/* Free the table; 1 if any thread marked its slot. */
static int rk_status_end(rk_status *st)
{
    int failed = 0;
    if (st == NULL) return 0;
    for (int i = 0; i < st->n; i++) failed |= st->flags[i];
    free(st);
    return failed;
}

#endif
