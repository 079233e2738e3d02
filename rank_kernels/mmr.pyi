"""Type stubs of the compiled module rank_kernels.mmr (see mmr.pyx)."""
from rank_kernels._typing import F32, F64, I64

def mmr_select(query: F32 | F64, candidates: F32 | F64, lambda_: float, cosine: bool, out_indices: I64,
               out_scores: F32) -> int: ...
