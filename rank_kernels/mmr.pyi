"""Type stubs of the compiled module rank_kernels.mmr (see mmr.pyx)."""
import numpy as np
import numpy.typing as npt

def mmr_select(
    query: npt.NDArray[np.float32] | npt.NDArray[np.float64],
    candidates: npt.NDArray[np.float32] | npt.NDArray[np.float64],
    lambda_: float,
    cosine: bool,
    out_indices: npt.NDArray[np.int64],
    out_scores: npt.NDArray[np.float32],
) -> int: ...
