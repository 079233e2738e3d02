"""Evaluation of rankings: trec_eval-exact metrics, TREC run/qrels files, significance tests.

- :func:`evaluate` scores a run ``{qid: {docid: score}}`` against qrels
  ``{qid: {docid: grade}}`` (nDCG, MAP, MRR, precision, recall, R-precision, hit rate, bpref),
  equal to trec_eval / pytrec_eval.
- :func:`compare` gives each run's means and p-values (paired t-test or randomization test)
  against a baseline.
- :func:`read_qrels`, :func:`read_run`, :func:`write_run` read and write TREC files (and BEIR
  ``qrels.tsv``).

>>> qrels = {"q1": {"d1": 1, "d2": 0}, "q2": {"d3": 2}}
>>> run = {"q1": {"d1": 0.2, "d2": 0.9}, "q2": {"d3": 1.0, "d4": 0.5}}
>>> evaluate(qrels, run, ["ndcg@10", "recall@1"])
{'ndcg@10': 0.8154648767857288, 'recall@1': 0.5}
"""
from rank.evaluate.compare import TESTS, Comparison, compare
from rank.evaluate.io import read_qrels, read_run, write_run
from rank.evaluate.metrics import METRICS, evaluate

__all__ = ["evaluate", "compare", "Comparison", "read_qrels", "read_run", "write_run", "METRICS", "TESTS"]
