import numpy as np

NONPOOL: int
UNJUDGED: int
NDCG: int
NDCG_EXP: int
MAP: int
RECIP_RANK: int
PRECISION: int
RECALL: int
R_PRECISION: int
SUCCESS: int
BPREF: int
GM_MAP: int
GM_BPREF: int
NUM_RET: int
NUM_REL: int
NUM_REL_RET: int
NUM_NONREL_JUDGED_RET: int
NUM_Q: int
IPREC_AT_RECALL: int
RPREC_MULT: int
INFAP: int
UTILITY: int
BING: int
G: int
NDCG_REL: int
RNDCG: int
RELATIVE_P: int
SET_P: int
SET_RELATIVE_P: int
SET_RECALL: int
SET_MAP: int
SET_F: int
N_CODES: int

def encode_run(run: dict, qrels: dict, complete: bool = ...) -> tuple[
    list, np.ndarray, np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    np.ndarray, np.ndarray]: ...
def sort_segments(offsets: np.ndarray, scores: np.ndarray, perm: np.ndarray, tied: np.ndarray,
                  n_threads: int) -> None: ...
def sort_segments_keyed(offsets: np.ndarray, scores: np.ndarray, keys: np.ndarray, perm: np.ndarray,
                        n_threads: int) -> None: ...
def sort_run_segments(offsets: np.ndarray, scores: np.ndarray,
                      ids: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], perm: np.ndarray,
                      n_threads: int) -> None: ...
def metrics(offsets: np.ndarray, perm: np.ndarray, rels: np.ndarray, qoffsets: np.ndarray,
            qgrades: np.ndarray, codes: np.ndarray, ks: np.ndarray, params: np.ndarray, goff: np.ndarray,
            glev: np.ndarray, gval: np.ndarray, level: int, max_docs: int, out: np.ndarray,
            n_threads: int) -> None: ...
