"""Type stubs of the compiled module rank_kernels.dense (see dense.pyx)."""
import numpy as np
import numpy.typing as npt

def isa() -> str: ...
def dense_scores(queries: npt.NDArray[np.float32], m_ptr: int, n_rows: int, kind: int, normalize: bool,
                 check_finite: bool, n_threads: int, out: npt.NDArray[np.float32]) -> int: ...
def dense_topk(queries: npt.NDArray[np.float32], m_ptr: int, n_rows: int, kind: int, normalize: bool,
               check_finite: bool, k: int, n_threads: int, out_idx: npt.NDArray[np.int64],
               out_scores: npt.NDArray[np.float32]) -> int: ...
