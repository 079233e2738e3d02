"""Lexical, learned-sparse and late-interaction retrieval: :class:`Tokenizer`, :class:`BM25`,
:class:`SparseIndex`, :class:`DenseIndex`,
:class:`ColBERTIndex` (PLAID-style, needs the ``ann`` extra).

>>> from rank.retrieve import BM25
>>> bm25 = BM25().index(["the quick brown fox", "the lazy dog", "a quick dog"])
>>> bm25.search(["quick dog"], k=1)[0].tolist()
[[2]]
"""
from rank.retrieve.bm25 import BM25
from rank.retrieve.colbert_index import ColBERTIndex
from rank.retrieve.dense import DenseIndex
from rank.retrieve.sparse import SparseIndex
from rank.retrieve.tokenizer import Tokenizer

__all__ = ["Tokenizer", "BM25", "SparseIndex", "DenseIndex", "ColBERTIndex"]
