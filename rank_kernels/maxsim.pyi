"""Type stubs of the compiled module rank_kernels.maxsim (see maxsim.pyx)."""
import numpy as np
import numpy.typing as npt

def isa() -> str: ...
def ragged_pointers(
    docs: list[object],
) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.uint8]]: ...
def maxsim_scores(
    queries: npt.NDArray[np.float32],
    query_offsets: npt.NDArray[np.int64],
    doc_ptrs: npt.NDArray[np.uint64],
    doc_lengths: npt.NDArray[np.int64],
    kind: int,
    check_finite: bool,
    n_threads: int,
    out: npt.NDArray[np.float32],
    bad: npt.NDArray[np.uint8],
) -> None: ...
