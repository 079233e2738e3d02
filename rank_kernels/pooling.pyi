"""Type stubs of the compiled module rank_kernels.pooling (see pooling.pyx)."""
from rank_kernels._typing import I8, I64, U64

def pool_batch(doc_ptrs: U64, n_rows: I64, d: int, kind: int, n_clusters: I64, out_ptrs: U64,
               label_ptrs: U64, n_threads: int, status: I8) -> None: ...
