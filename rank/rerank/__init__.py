"""Reranking: late interaction (MaxSim), dense scoring, MMR, token pooling, cross-encoders.

:class:`DenseIndex` (exact and ANN dense retrieval) lives in :mod:`rank.retrieve.dense` and
is re-exported here; the old module paths ``rank.rerank.dense``, ``rank.rerank._export``,
``rank.rerank._onnx`` and ``rank.rerank._calibration`` still import (aliases of
:mod:`rank.retrieve.dense` and of the modules of :mod:`rank.onnx`).
"""
import sys as _sys
from rank.rerank.maxsim import maxsim, maxsim_batch, maxsim_matrix, rerank_maxsim
from rank.retrieve import dense as _dense
from rank.retrieve.dense import DenseIndex, cosine_scores, dot_scores
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
from rank._truncation import TruncationInfo

__all__ += ["ColBERTEncoder", "ColBERTReranker", "export_colbert_encoder", "TruncationInfo"]

# Old module paths keep importing: `import rank.rerank.dense` finds the alias once the package is
# imported (the import system checks sys.modules again after importing the parent package).
from rank.onnx import _calibration, _export, _runtime  # noqa: E402

for _old, _module in (("dense", _dense), ("_export", _export), ("_onnx", _runtime),
                      ("_calibration", _calibration)):
    _sys.modules.setdefault(f"{__name__}.{_old}", _module)
    globals()[_old] = _module
del _old, _module
