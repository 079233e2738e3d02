"""Evaluation and fusion from Python dicts, side by side with pytrec_eval and ranx.

Workload (issue 5): 10,000 queries x 100 documents (ids drawn from a 1,000,000-document
collection, float scores), qrels of 1-10 graded judgements per query, about half of them in
the run. Evaluation: ndcg@10, map, recip_rank, recall@100, means over the queries.

- ours: `rank.evaluate(qrels, run, ...)` straight from the dicts.
- pytrec_eval: `RelevanceEvaluator.evaluate(run)` (the evaluator, which holds the qrels, is
  built once outside the timing) and the means.
- ranx: `ranx.evaluate(Qrels(qrels), Run(run), ...)`: ranx needs its own typed containers, so
  building them from the dicts is part of its time. Timed after its numba JIT warm-up; the
  first call (compilation included) is stored in the benchmark's extra_info["first_call_s"].

Fusion: 3 runs of that size, RRF (k=60) and CombMNZ with min-max normalisation. Ours goes from
dicts to a fused dict; ranx.fuse is given prebuilt `ranx.Run` objects (their construction is
not timed), so the comparison favours ranx; `test_ranx_fuse_from_dicts` times ranx end to end
like ours (Runs built from the dicts, fused, converted back with `to_dict()`).

`python bench/summary.py results.json` prints the ratios.
"""
import time
import warnings

import numpy as np
import pytest

import rank

METRICS = ["ndcg@10", "map", "recip_rank", "recall@100"]
TREC_MEASURES = {"ndcg_cut.10", "map", "recip_rank", "recall.100"}
RANX_METRICS = ["ndcg@10", "map", "mrr", "recall@100"]


def make_run(rng, n_queries, depth, n_collection):
    docs = rng.integers(0, n_collection, size=(n_queries, depth))
    scores = np.round(rng.gamma(2.0, 3.0, size=(n_queries, depth)), 6)
    return {f"q{q}": {f"doc{d}": s for d, s in zip(docs[q].tolist(), scores[q].tolist())}
            for q in range(n_queries)}


@pytest.fixture(scope="module")
def workload(smoke):
    n_queries, depth, n_collection = (50, 20, 5000) if smoke else (10_000, 100, 1_000_000)
    rng = np.random.default_rng(0)
    runs = [make_run(rng, n_queries, depth, n_collection) for _ in range(3)]
    qrels = {}
    for q, docs in runs[0].items():
        ids = list(docs)
        n = int(rng.integers(1, 11))
        hits = [ids[i] for i in rng.choice(len(ids), n // 2, replace=False)]
        misses = [f"doc{d}" for d in rng.integers(0, n_collection, n - len(hits))]
        qrels[q] = {d: int(rng.integers(0, 4)) for d in hits + misses}
    return qrels, runs


@pytest.fixture(scope="module")
def reference_means(workload):
    pytrec_eval = pytest.importorskip("pytrec_eval")
    qrels, runs = workload
    per = pytrec_eval.RelevanceEvaluator(qrels, TREC_MEASURES).evaluate(runs[0])
    keys = ["ndcg_cut_10", "map", "recip_rank", "recall_100"]
    return {m: float(np.mean([v[k] for v in per.values()])) for m, k in zip(METRICS, keys)}


def _label(benchmark, group, threads, n_queries):
    benchmark.group = f"{group}-t{threads}"
    benchmark.extra_info["queries"] = n_queries


# --- evaluation ----------------------------------------------------------------------------------

def test_rank_evaluate(benchmark, workload, threads, reference_means):
    qrels, runs = workload
    _label(benchmark, "evaluate-4metrics", threads, len(runs[0]))
    out = benchmark(rank.evaluate, qrels, runs[0], METRICS, n_threads=threads)
    for m in METRICS:
        assert abs(out[m] - reference_means[m]) < 1e-9


def test_pytrec_eval_evaluate(benchmark, workload, threads, reference_means):
    pytrec_eval = pytest.importorskip("pytrec_eval")
    qrels, runs = workload
    _label(benchmark, "evaluate-4metrics", threads, len(runs[0]))
    evaluator = pytrec_eval.RelevanceEvaluator(qrels, TREC_MEASURES)

    def run():
        per = evaluator.evaluate(runs[0])
        return {k: np.mean([v[k] for v in per.values()]) for k in ("ndcg_cut_10", "map", "recip_rank", "recall_100")}

    out = benchmark(run)
    assert abs(out["map"] - reference_means["map"]) < 1e-9


def _ranx(threads, smoke):
    if smoke:  # its numba compilation alone takes minutes, far beyond a smoke run
        pytest.skip("ranx compiles its kernels on first use; run with --benchmark-enable")
    ranx = pytest.importorskip("ranx")
    import numba

    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    return ranx


def test_ranx_evaluate(benchmark, workload, threads, reference_means, smoke):
    ranx = _ranx(threads, smoke)
    qrels, runs = workload
    _label(benchmark, "evaluate-4metrics", threads, len(runs[0]))

    def run():
        return ranx.evaluate(ranx.Qrels(qrels), ranx.Run(runs[0]), RANX_METRICS)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        out = run()  # numba compiles here
        benchmark.extra_info["first_call_s"] = time.perf_counter() - start
        benchmark(run)
    assert abs(out["map"] - reference_means["map"]) < 1e-6


# --- fusion ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ranx_runs(workload):
    ranx = pytest.importorskip("ranx")
    return [ranx.Run(r) for r in workload[1]]


@pytest.mark.parametrize("method,norm", [("rrf", None), ("combmnz", "min-max")])
def test_rank_fuse(benchmark, workload, threads, method, norm):
    _, runs = workload
    _label(benchmark, f"fuse-3runs-{method}", threads, len(runs[0]))
    out = benchmark(rank.fuse, runs, method=method, norm=norm, n_threads=threads)
    q = next(iter(runs[0]))
    assert len(out[q]) == len(set(runs[0][q]) | set(runs[1][q]) | set(runs[2][q]))


@pytest.mark.parametrize("method,norm", [("rrf", None), ("combmnz", "min-max")])
def test_ranx_fuse(benchmark, workload, threads, method, norm, smoke, request):
    ranx = _ranx(threads, smoke)
    ranx_runs = request.getfixturevalue("ranx_runs")
    _label(benchmark, f"fuse-3runs-{method}", threads, len(workload[1][0]))
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
    ranx = _ranx(threads, smoke)
    _label(benchmark, f"fuse-3runs-{method}", threads, len(workload[1][0]))
    name = {"rrf": "rrf", "combmnz": "mnz"}[method]

    def run():
        return ranx.fuse([ranx.Run(r) for r in workload[1]], norm=norm, method=name).to_dict()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run()  # compile first
        out = benchmark(run)
    q = next(iter(out))
    assert len(out[q]) == len(set().union(*(r[q] for r in workload[1])))
