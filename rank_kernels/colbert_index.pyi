"""Type stubs of the compiled module rank_kernels.colbert_index (see colbert_index.pyx)."""
import numpy as np
import numpy.typing as npt

def compress(
    residuals: npt.NDArray[np.float32],
    cutoffs: npt.NDArray[np.float32],
    nbits: int,
    out: npt.NDArray[np.uint8],
    n_threads: int,
) -> None: ...
def decompress(
    codes: npt.NDArray[np.int32],
    packed: npt.NDArray[np.uint8],
    centroids: npt.NDArray[np.float32],
    weights: npt.NDArray[np.float32],
    nbits: int,
    starts: npt.NDArray[np.int64],
    lengths: npt.NDArray[np.int64],
    out_offsets: npt.NDArray[np.int64],
    normalize: bool,
    out: npt.NDArray[np.float32],
    n_threads: int,
) -> None: ...
def centroid_maxsim(
    scores_t: npt.NDArray[np.float32],
    codes: npt.NDArray[np.int32],
    doc_offsets: npt.NDArray[np.int64],
    docs: npt.NDArray[np.int64],
    out: npt.NDArray[np.float32],
    n_threads: int,
) -> None: ...
