"""Array type aliases shared by the stubs of the compiled kernel modules (typing only: there is
no runtime module of this name). The kernels take C-contiguous arrays of exactly these dtypes."""
import numpy as np
import numpy.typing as npt
from typing import TypeAlias

F32: TypeAlias = npt.NDArray[np.float32]
F64: TypeAlias = npt.NDArray[np.float64]
I8: TypeAlias = npt.NDArray[np.int8]
I32: TypeAlias = npt.NDArray[np.int32]
I64: TypeAlias = npt.NDArray[np.int64]
U8: TypeAlias = npt.NDArray[np.uint8]
U16: TypeAlias = npt.NDArray[np.uint16]
U64: TypeAlias = npt.NDArray[np.uint64]
