"""Reranking: late interaction (MaxSim), dense scoring and exact search, MMR, token pooling."""
from rank.rerank.maxsim import maxsim, maxsim_batch, maxsim_matrix, rerank_maxsim
from rank.rerank.dense import DenseIndex, cosine_scores, dot_scores
from rank.rerank.mmr import mmr
from rank.rerank.pooling import pool_tokens

__all__ = [
    "maxsim",
    "maxsim_batch",
    "maxsim_matrix",
    "rerank_maxsim",
    "dot_scores",
    "cosine_scores",
    "DenseIndex",
    "mmr",
    "pool_tokens",
]
from rank.rerank.cross_encoder import CrossEncoder, export_cross_encoder

__all__ += ["CrossEncoder", "export_cross_encoder"]
from rank.rerank.colbert import ColBERTEncoder, ColBERTReranker, export_colbert_encoder

__all__ += ["ColBERTEncoder", "ColBERTReranker", "export_colbert_encoder"]
