"""Scale-out on Ray (extra ``ray``): sharded retrieval and batch inference with the answers of
the single-machine API.

- :class:`ShardedBM25`: BM25 shards built by Ray tasks with the collection's statistics, so
  scores and top-k equal one :class:`rank.BM25` over the whole corpus; one actor per shard.
- :class:`ShardedDenseIndex`, :class:`ShardedSparseIndex`: the same for
  :class:`rank.rerank.DenseIndex` and :class:`rank.retrieve.SparseIndex`.
- :func:`rerank`, :func:`encode`, :func:`maxsim_rerank`: CrossEncoder / ColBERT inference with
  Ray Data ``map_batches`` on a pool of actors (one ONNX Runtime session each).

Importing this module needs Ray ``>=2.9,<3`` (``pip install rank-kernels[ray]``); without it
the import raises :class:`rank.errors.MissingDependencyError` naming the extra.
Connect with :func:`init` (a local cluster by default, ``address=`` for an existing one);
every entry point also connects on first use.
"""
from rank.distributed._ray import RANGE as SUPPORTED_RAY, check_installed, check_version, init

check_installed()  # Ray itself is imported on first use (it loads pandas, pyarrow, grpc, ...)

from rank.distributed.bm25 import ShardedBM25  # noqa: E402
from rank.distributed.inference import encode, maxsim_rerank, rerank  # noqa: E402
from rank.distributed.serving import ShardedDenseIndex, ShardedSparseIndex  # noqa: E402

__all__ = ["ShardedBM25", "ShardedDenseIndex", "ShardedSparseIndex", "rerank", "encode", "maxsim_rerank",
           "init", "check_version", "SUPPORTED_RAY"]
