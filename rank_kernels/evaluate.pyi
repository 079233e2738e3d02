import numpy as np

UNJUDGED: int
NDCG: int
NDCG_EXP: int
MAP: int
RECIP_RANK: int
PRECISION: int
RECALL: int
R_PRECISION: int
HIT_RATE: int
BPREF: int

def encode_run(run: dict, qrels: dict) -> tuple[list, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]: ...
def sort_segments(offsets: np.ndarray, scores: np.ndarray, perm: np.ndarray, tied: np.ndarray,
                  n_threads: int) -> None: ...
def metrics(offsets: np.ndarray, perm: np.ndarray, grades: np.ndarray, qoffsets: np.ndarray,
            qgrades: np.ndarray, codes: np.ndarray, ks: np.ndarray, level: int, out: np.ndarray,
            n_threads: int) -> None: ...
