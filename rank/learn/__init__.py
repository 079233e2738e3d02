"""Learning to rank: pairwise and listwise losses with gradients, boosting objectives, a linear ranker.

>>> from rank.learn import lambdarank
>>> lambdarank([1.0, 0.0], [0, 1], group=[2]).grad.round(4).tolist()
[0.3088, -0.3088]
"""
from rank.learn.losses import (LOSSES, LossResult, approx_ndcg, group_offsets, lambdarank,
                               listmle, listnet, pairwise_hinge, ranknet)
from rank.learn.soft_ndcg import soft_ndcg
from rank.learn.boosting import lightgbm_objective, xgboost_objective
from rank.learn.linear import LinearRanker

# soft_ndcg is built on rank.soft, so it lives in its own module; it takes the same arguments
# as the losses of rank.learn.losses (no hessian, like approx_ndcg), so LinearRanker can use it.
LOSSES.setdefault("soft_ndcg", soft_ndcg)

__all__ = ["LossResult", "lambdarank", "ranknet", "pairwise_hinge", "listnet", "listmle",
           "approx_ndcg", "soft_ndcg", "LOSSES", "group_offsets", "lightgbm_objective",
           "xgboost_objective", "LinearRanker"]
