"""Type stubs of the compiled module rank_kernels.colbert_index (see colbert_index.pyx)."""
from typing import TypeAlias

import numpy as np
import numpy.typing as npt

from rank_kernels._typing import F32, I32, I64, U8

U16: TypeAlias = npt.NDArray[np.uint16]

def compress(residuals: F32, cutoffs: F32, nbits: int, out: U8, n_threads: int) -> None: ...
def decompress(codes: U16 | I32, packed: U8, centroids: F32, weights: F32, nbits: int, starts: I64, lengths: I64,
               out_offsets: I64, normalize: bool, out: F32, n_threads: int) -> None: ...
def centroid_maxsim(scores_t: F32, codes: U16 | I32, doc_offsets: I64, docs: I64, out: F32, n_threads: int) -> None: ...
