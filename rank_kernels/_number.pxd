# Reading a Python score as a C double, shared by the run encoders (evaluate, fusion); each
# raises its own TypeError naming where the value stands.
from cpython.float cimport PyFloat_AS_DOUBLE, PyFloat_Check


cdef inline bint as_number(object value, double *out) except -1:
    """Store float(value) in out[0] and return True; False for a str, bytes, None or any value
    float() rejects. A Python float is read directly (the common case, no call)."""
    if PyFloat_Check(value):
        out[0] = PyFloat_AS_DOUBLE(value)
        return True
    if isinstance(value, (str, bytes)) or value is None:
        return False
    try:
        out[0] = float(value)
    except (TypeError, ValueError, OverflowError):
        return False
    return True
