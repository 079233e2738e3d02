# Helpers over segment offsets (segment s = [offsets[s], offsets[s + 1])), shared by the kernel
# families that process runs, groups or queries one segment at a time.
from libc.stdint cimport int64_t


cdef inline Py_ssize_t max_segment(const int64_t[::1] offsets) noexcept nogil:
    """Length of the longest segment (0 when there are none). O(number of segments)."""
    cdef Py_ssize_t s, m = 0
    for s in range(offsets.shape[0] - 1):
        if offsets[s + 1] - offsets[s] > m:
            m = offsets[s + 1] - offsets[s]
    return m
