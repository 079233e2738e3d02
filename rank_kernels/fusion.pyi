import numpy as np

COMBSUM: int
COMBMNZ: int
COMBMAX: int
COMBMIN: int
COMBANZ: int
COMBMED: int
BORDA: int
ISR: int
WSUM: int
RRF: int
NORM_NONE: int
NORM_MINMAX: int
NORM_ZMUV: int
NORM_SUM: int
NORM_MAX: int
NORM_RANK: int

def encode_runs(runs: list) -> tuple[list, list, np.ndarray, np.ndarray, np.ndarray]: ...
def fuse(seg_off: np.ndarray, docs: np.ndarray, scores: np.ndarray, perm: np.ndarray, n_runs: int,
         n_vocab: int, method: int, norm: int, weights: np.ndarray, k: float, out_docs: np.ndarray,
         out_scores: np.ndarray, out_count: np.ndarray, n_threads: int) -> None: ...
