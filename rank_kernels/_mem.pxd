# The one allocation-failure pattern of the kernels (mem.h): rk_malloc / rk_calloc for work
# buffers, a per-thread status table for parallel regions, then MemoryError. Every kernel
# module calls rk_mem_init() at import, which reads the RANK_KERNELS_FAIL_ALLOC=1 test hook.
cdef extern from "mem.h" nogil:
    ctypedef struct rk_status:
        pass
    int rk_mem_init()
    void rk_set_fail_alloc(int on)
    void *rk_malloc(size_t n)
    void *rk_calloc(size_t n, size_t size)
    void *rk_realloc(void *p, size_t n)
    rk_status *rk_status_new(int n_threads)
    void rk_status_fail(rk_status *st)
    int rk_status_mine(const rk_status *st)
    int rk_status_end(rk_status *st)


cdef inline rk_status *new_status(int n_threads, const char *what) except NULL:
    """A per-thread status table for a parallel region of n_threads, or MemoryError."""
    cdef rk_status *st = rk_status_new(n_threads)
    if st == NULL:
        raise MemoryError(f"{what.decode()}: could not allocate the thread status table")
    return st


cdef inline int check_status(rk_status *st, const char *what) except -1:
    """Free the status table; MemoryError if a thread could not allocate its work buffers."""
    if rk_status_end(st):
        raise MemoryError(f"{what.decode()}: could not allocate the per-thread work buffers")
    return 0


cdef inline int check_alloc(const void *p, const char *what) except -1:
    """MemoryError if p (a buffer rk_malloc returned outside any parallel region) is NULL."""
    if p == NULL:
        raise MemoryError(f"{what.decode()}: could not allocate a work buffer")
    return 0
