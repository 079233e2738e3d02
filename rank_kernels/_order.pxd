# Three-way comparisons for the qsort comparators of the kernels: -1, 0 or 1 as a is less than,
# equal to or greater than b. Compare a key, then break its ties with the next one:
#     c = cmp_f64(x.height, y.height)
#     return c if c else cmp_i64(x.step, y.step)
from libc.stdint cimport int64_t


cdef inline int cmp_i64(int64_t a, int64_t b) noexcept nogil:
    return (a > b) - (a < b)


cdef inline int cmp_f64(double a, double b) noexcept nogil:
    """As cmp_i64; a NaN compares equal to everything (callers sort values without NaN)."""
    return (a > b) - (a < b)
