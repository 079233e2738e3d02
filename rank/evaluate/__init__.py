"""Evaluation of rankings: trec_eval-exact metrics, TREC run/qrels files, significance tests."""
from rank.evaluate.metrics import METRICS, evaluate

__all__ = ["evaluate", "METRICS"]
