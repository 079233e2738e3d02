"""Type stubs of rank_kernels.tokenize (the text scanner)."""
from typing import Any, Callable, Iterable, Optional

import numpy as np

def scan(texts: Iterable[Any], lower: bool, min_len: int, cache: dict[str, int],
         resolve: Callable[[str], int], progress: Optional[Callable[[int], Any]] = None,
         every: int = 1024, segment: bool = False) -> tuple[np.ndarray, np.ndarray, int]: ...
def lookup(tokens_lists: Iterable[Iterable[Any]], vocab: dict[str, int],
           add: bool) -> tuple[np.ndarray, np.ndarray, int]: ...
