"""Type stubs of the compiled module rank_kernels.pooling (see pooling.pyx)."""
import numpy as np
import numpy.typing as npt

def pool_batch(
    doc_ptrs: npt.NDArray[np.uint64],
    n_rows: npt.NDArray[np.int64],
    d: int,
    kind: int,
    n_clusters: npt.NDArray[np.int64],
    out_ptrs: npt.NDArray[np.uint64],
    label_ptrs: npt.NDArray[np.uint64],
    n_threads: int,
    status: npt.NDArray[np.int8],
) -> None: ...
