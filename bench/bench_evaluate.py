"""Evaluation and fusion from Python dicts, side by side with pytrec_eval and ranx.

Evaluation workloads, 10,000 queries x 100 documents each, qrels of 1-10 graded judgements per
query, about half of them in the run; ndcg@10, map, recip_rank, recall@100, means over the
queries:

- untied (issue 5): document ids drawn from a 1,000,000-document collection, float scores
  (gamma, 6 decimals), so equal scores are rare;
- tied (issue 19): each query's 100 documents drawn from a 1,000-document collection, scores
  uniform in [0, 1) rounded to 0.1, so every ranking is full of ties (as with BM25 on short
  texts or integer scores) and trec_eval's rule (equal scores by document id descending) decides
  most of the order.

- ours: `rank.evaluate(qrels, run, ...)` straight from the dicts; its per-query values are
  checked against pytrec_eval's to 1e-12 on both workloads.
- pytrec_eval: `RelevanceEvaluator.evaluate(run)` (the evaluator, which holds the qrels, is
  built once outside the timing) and the means.
- ranx: `ranx.evaluate(Qrels(qrels), Run(run), ...)`: ranx needs its own typed containers, so
  building them from the dicts is part of its time. Timed after its numba JIT warm-up; the
  first call (compilation included) is stored in the benchmark's extra_info["first_call_s"].
  ranx breaks ties its own way, so on the tied workload its values differ from trec_eval's
  (only the untied means are checked).

Fusion: 3 runs of the untied size, RRF (k=60) and CombMNZ with min-max normalisation. Ours goes
from dicts to a fused dict; ranx.fuse is given prebuilt `ranx.Run` objects (their construction is
not timed), so the comparison favours ranx; `test_ranx_fuse_from_dicts` times ranx end to end
like ours (Runs built from the dicts, fused, converted back with `to_dict()`).

`python bench/summary.py results.json` prints the ratios.
"""
import time
import warnings

import numpy as np
import pytest

import rank
from _bench import label, ranx_with_threads

METRICS = ["ndcg@10", "map", "recip_rank", "recall@100"]
TREC_MEASURES = {"ndcg_cut.10", "map", "recip_rank", "recall.100"}
TREC_KEYS = ["ndcg_cut_10", "map", "recip_rank", "recall_100"]
RANX_METRICS = ["ndcg@10", "map", "mrr", "recall@100"]


def make_run(rng, n_queries, depth, n_collection):
    docs = rng.integers(0, n_collection, size=(n_queries, depth))
    scores = np.round(rng.gamma(2.0, 3.0, size=(n_queries, depth)), 6)
    return {f"q{q}": {f"doc{d}": s for d, s in zip(docs[q].tolist(), scores[q].tolist())}
            for q in range(n_queries)}


def make_tied_run(rng, n_queries, depth, n_collection):
    docs = np.stack([rng.choice(n_collection, depth, replace=False) for _ in range(n_queries)])
    scores = np.round(rng.random((n_queries, depth)), 1)
    return {f"q{q}": {f"doc{d}": s for d, s in zip(docs[q].tolist(), scores[q].tolist())}
            for q in range(n_queries)}


def make_qrels(rng, run, n_collection):
    qrels = {}
    for q, docs in run.items():
        ids = list(docs)
        n = int(rng.integers(1, 11))
        hits = [ids[i] for i in rng.choice(len(ids), n // 2, replace=False)]
        misses = [f"doc{d}" for d in rng.integers(0, n_collection, n - len(hits))]
        qrels[q] = {d: int(rng.integers(0, 4)) for d in hits + misses}
    return qrels


@pytest.fixture(scope="module")
def workload(smoke):
    n_queries, depth, n_collection = (50, 20, 5000) if smoke else (10_000, 100, 1_000_000)
    rng = np.random.default_rng(0)
    runs = [make_run(rng, n_queries, depth, n_collection) for _ in range(3)]
    return make_qrels(rng, runs[0], n_collection), runs


@pytest.fixture(scope="module")
def tied_workload(smoke):
    n_queries, depth, n_collection = (50, 20, 100) if smoke else (10_000, 100, 1_000)
    rng = np.random.default_rng(1)
    run = make_tied_run(rng, n_queries, depth, n_collection)
    return make_qrels(rng, run, n_collection), [run]


def _eval_case(request, kind):
    qrels, runs = request.getfixturevalue("workload" if kind == "untied" else "tied_workload")
    return qrels, runs[0]


_reference_cache = {}


def _reference(request, kind):
    """pytrec_eval's per-query values and means of the workload."""
    if kind not in _reference_cache:
        pytrec_eval = pytest.importorskip("pytrec_eval")
        qrels, run = _eval_case(request, kind)
        per = pytrec_eval.RelevanceEvaluator(qrels, TREC_MEASURES).evaluate(run)
        means = {m: float(np.mean([v[k] for v in per.values()])) for m, k in zip(METRICS, TREC_KEYS)}
        _reference_cache[kind] = (per, means)
    return _reference_cache[kind]


# --- evaluation ----------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["untied", "tied"])
def test_rank_evaluate(benchmark, request, threads, kind):
    qrels, run = _eval_case(request, kind)
    per_ref, means = _reference(request, kind)
    label(benchmark, f"evaluate-4metrics-{kind}", threads, items=len(run), unit="queries")
    out = benchmark(rank.evaluate, qrels, run, METRICS, n_threads=threads)
    for m in METRICS:
        assert abs(out[m] - means[m]) < 1e-12
    per = rank.evaluate(qrels, run, METRICS, per_query=True, n_threads=threads)
    assert set(per) == set(per_ref)
    worst = max(abs(per[q][m] - per_ref[q][k]) for q in per for m, k in zip(METRICS, TREC_KEYS))
    benchmark.extra_info["max_abs_diff_vs_pytrec_eval"] = worst
    assert worst <= 1e-12


@pytest.mark.parametrize("kind", ["untied", "tied"])
def test_pytrec_eval_evaluate(benchmark, request, threads, kind):
    pytrec_eval = pytest.importorskip("pytrec_eval")
    qrels, run = _eval_case(request, kind)
    _, means = _reference(request, kind)
    label(benchmark, f"evaluate-4metrics-{kind}", threads, items=len(run), unit="queries")
    evaluator = pytrec_eval.RelevanceEvaluator(qrels, TREC_MEASURES)

    def go():
        per = evaluator.evaluate(run)
        return {k: np.mean([v[k] for v in per.values()]) for k in TREC_KEYS}

    out = benchmark(go)
    assert abs(out["map"] - means["map"]) < 1e-12


@pytest.mark.parametrize("kind", ["untied", "tied"])
def test_ranx_evaluate(benchmark, request, threads, smoke, kind):
    ranx = ranx_with_threads(threads, smoke)
    qrels, run = _eval_case(request, kind)
    _, means = _reference(request, kind)
    label(benchmark, f"evaluate-4metrics-{kind}", threads, items=len(run), unit="queries")

    def go():
        return ranx.evaluate(ranx.Qrels(qrels), ranx.Run(run), RANX_METRICS)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        out = go()  # numba compiles here
        benchmark.extra_info["first_call_s"] = time.perf_counter() - start
        benchmark(go)
    benchmark.extra_info["map_minus_pytrec_eval"] = float(out["map"] - means["map"])
    if kind == "untied":
        assert abs(out["map"] - means["map"]) < 1e-6


# --- fusion ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ranx_runs(workload):
    ranx = pytest.importorskip("ranx")
    return [ranx.Run(r) for r in workload[1]]


@pytest.mark.parametrize("method,norm", [("rrf", None), ("combmnz", "min-max")])
def test_rank_fuse(benchmark, workload, threads, method, norm):
    _, runs = workload
    label(benchmark, f"fuse-3runs-{method}", threads, items=len(runs[0]), unit="queries")
    out = benchmark(rank.fuse, runs, method=method, norm=norm, n_threads=threads)
    q = next(iter(runs[0]))
    assert len(out[q]) == len(set(runs[0][q]) | set(runs[1][q]) | set(runs[2][q]))


@pytest.mark.parametrize("method,norm", [("rrf", None), ("combmnz", "min-max")])
def test_ranx_fuse(benchmark, workload, threads, method, norm, smoke, request):
    ranx = ranx_with_threads(threads, smoke)
    ranx_runs = request.getfixturevalue("ranx_runs")
    label(benchmark, f"fuse-3runs-{method}", threads, items=len(workload[1][0]), unit="queries")
    name = {"rrf": "rrf", "combmnz": "mnz"}[method]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        ranx.fuse(ranx_runs, norm=norm, method=name)
        benchmark.extra_info["first_call_s"] = time.perf_counter() - start
        out = benchmark(ranx.fuse, ranx_runs, norm=norm, method=name)
    ours = rank.fuse(workload[1], method=method, norm=norm)
    q = next(iter(ours))
    assert out[q] == pytest.approx(ours[q], rel=1e-9)


@pytest.mark.parametrize("method,norm", [("rrf", None), ("combmnz", "min-max")])
def test_ranx_fuse_from_dicts(benchmark, workload, threads, method, norm, smoke):
    """ranx end to end, as ours is timed: Runs built from the dicts, fused, returned as dicts."""
    ranx = ranx_with_threads(threads, smoke)
    label(benchmark, f"fuse-3runs-{method}", threads, items=len(workload[1][0]), unit="queries")
    name = {"rrf": "rrf", "combmnz": "mnz"}[method]

    def run():
        return ranx.fuse([ranx.Run(r) for r in workload[1]], norm=norm, method=name).to_dict()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run()  # compile first
        out = benchmark(run)
    q = next(iter(out))
    assert len(out[q]) == len(set().union(*(r[q] for r in workload[1])))
