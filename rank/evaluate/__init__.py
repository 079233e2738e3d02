"""Evaluation of rankings: trec_eval-exact metrics, TREC run/qrels files, significance tests.

- :func:`evaluate` scores a run ``{qid: {docid: score}}`` against qrels
  ``{qid: {docid: grade}}`` with every measure of ``trec_eval -m all_trec`` (nDCG, MAP, MRR,
  precision, recall, R-precision, bpref, infAP, G, iprec_at_recall, set measures, ...) and
  trec_eval's options (-c, -M, -l, gains), equal to trec_eval / pytrec_eval;
  :func:`format_trec_eval` prints the result as trec_eval does.
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
from rank.evaluate.metrics import MEASURES, METRICS, evaluate, format_trec_eval

__all__ = ["evaluate", "format_trec_eval", "compare", "Comparison", "read_qrels", "read_run", "write_run", "METRICS",
           "MEASURES", "TESTS"]
