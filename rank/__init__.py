"""rank-kernels: fast ranking primitives for search, RAG and learning-to-rank.

The public API lives in subpackages (`rank.rerank`, ...); the most used names are
re-exported here.

>>> import numpy as np, rank
>>> q = np.eye(2, 4, dtype=np.float32)
>>> docs = [np.eye(3, 4, dtype=np.float32), np.ones((1, 4), np.float32)]
>>> rank.maxsim_batch(q, docs)
array([2., 2.], dtype=float32)
"""
from rank._version import __version__
from rank import errors
from rank import rerank as _rerank
from rank.rerank import *  # noqa: F403  (every name of rank.rerank.__all__)
from rank.soft import soft_rank, soft_sort, spearman_loss
from rank.retrieve import BM25, ColBERTIndex, SparseIndex, Tokenizer
from rank.pipeline import Hit, Pipeline
from rank.evaluate import compare, evaluate, read_qrels, read_run, write_run
from rank.fusion import fuse, fuse_scores

__all__ = [*_rerank.__all__, "__version__", "errors", "soft_rank", "soft_sort", "spearman_loss",
          "Tokenizer", "BM25", "SparseIndex", "ColBERTIndex", "Pipeline", "Hit", "evaluate", "compare",
          "read_qrels", "read_run", "write_run", "fuse", "fuse_scores"]
