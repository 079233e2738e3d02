"""Fusion from Python dicts, side by side with ranx, one group per method.

Workload: 3 runs x 1,000 queries x 100 documents, each query's documents drawn from a pool of
250 (so runs overlap, as real retrievers do: about 220 candidates per query), distinct float
scores (untied: both libraries rank identically), qrels of ~10 judgements per query for the
trained methods and the search.

- ours: ``rank.fuse(runs, ...)`` from the dicts to a fused dict.
- ranx: ``ranx.fuse([Run(r) for r in runs], ...).to_dict()`` end to end like ours (ranx needs
  its typed containers, so building them is part of its time); timed after its numba JIT
  warm-up. Trained methods get tables trained once outside the timing by each library.
- optimize: ``optimize_fusion(qrels, runs, "wsum", "min-max", "ndcg@10")`` (66 weight
  vectors, 200 queries) against ``ranx.optimize_fusion`` on prebuilt Qrels/Runs.

Each benchmark asserts that both give the same fused scores (1e-9) on a sample query.
``python bench/summary.py results.json`` prints the ratios.
"""
import warnings

import numpy as np
import pytest

import rank
from _bench import label, ranx_with_threads
from rank.fusion import optimize_fusion, train_fusion

RANX_NAME = {"combmnz": "mnz", "borda": "bordafuse"}
CASES = [("rrf", None, None), ("combmnz", "min-max", None), ("wsum", "min-max", {"weights": (0.2, 0.3, 0.5)}),
         ("borda", None, None), ("rbc", None, {"phi": 0.8}), ("log_isr", None, None),
         ("condorcet", None, None), ("posfuse", None, "trained"), ("bayesfuse", None, "trained")]


def make_runs(rng, n_queries, depth, pool):
    runs = []
    for _ in range(3):
        run = {}
        for q in range(n_queries):
            ids = rng.choice(pool, depth, replace=False)
            run[f"q{q}"] = {f"doc{q}_{d}": float(s) for d, s in zip(ids.tolist(), rng.gamma(2.0, 3.0, depth).tolist())}
        runs.append(run)
    return runs


@pytest.fixture(scope="module")
def workload(smoke):
    n_queries, depth, pool = (20, 10, 25) if smoke else (1000, 100, 250)
    rng = np.random.default_rng(0)
    runs = make_runs(rng, n_queries, depth, pool)
    qrels = {q: {f"doc{q[1:]}_{d}": int(rng.integers(0, 3)) for d in rng.choice(pool, 10, replace=False).tolist()}
             for q in runs[0]}
    return qrels, runs


def _params(method, spec, qrels, runs):
    if spec == "trained":
        return train_fusion(qrels, runs, method)
    return spec


@pytest.mark.parametrize("method,norm,spec", CASES, ids=[c[0] for c in CASES])
def test_rank_fuse(benchmark, workload, threads, method, norm, spec):
    qrels, runs = workload
    label(benchmark, f"fuse-{method}", threads, items=len(runs[0]), unit="queries")
    params = _params(method, spec, qrels, runs)
    out = benchmark(rank.fuse, runs, method=method, norm=norm, params=params, n_threads=threads)
    q = next(iter(runs[0]))
    assert len(out[q]) == len(set(runs[0][q]) | set(runs[1][q]) | set(runs[2][q]))


@pytest.mark.parametrize("method,norm,spec", CASES, ids=[c[0] for c in CASES])
def test_ranx_fuse(benchmark, workload, threads, method, norm, spec, smoke):
    ranx = ranx_with_threads(threads, smoke)
    qrels, runs = workload
    label(benchmark, f"fuse-{method}", threads, items=len(runs[0]), unit="queries")
    name = RANX_NAME.get(method, method)
    if spec == "trained":
        from ranx import fusion as rf
        trained = getattr(rf, f"{method}_train")(ranx.Qrels(qrels), [ranx.Run(r) for r in runs])
        params = {{"bayesfuse": "log_odds"}.get(method, "probs"): trained}
    else:
        params = dict(spec or {})

    def run():
        return ranx.fuse([ranx.Run(r) for r in runs], norm=norm, method=name, params=params).to_dict()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run()  # numba compiles here
        if method == "condorcet":  # pure-Python comparison sort: seconds per call
            out = benchmark.pedantic(run, rounds=2, iterations=1)
        else:
            out = benchmark(run)
    ours = rank.fuse(runs, method=method, norm=norm, params=params)
    q = next(iter(ours))
    if method == "condorcet":
        assert set(out[q]) == set(ours[q])  # orders may differ where majorities cycle
    else:
        assert out[q] == pytest.approx(ours[q], rel=1e-9)


@pytest.fixture(scope="module")
def search_workload(workload, smoke):
    qrels, runs = workload
    qids = list(runs[0])[: (20 if smoke else 200)]
    return {q: qrels[q] for q in qids}, [{q: r[q] for q in qids} for r in runs]


def test_rank_optimize_fusion(benchmark, search_workload, threads):
    qrels, runs = search_workload
    label(benchmark, "optimize-wsum-66", threads, items=len(runs[0]), unit="queries")
    best = benchmark.pedantic(optimize_fusion, (qrels, runs, "wsum", "min-max", "ndcg@10"),
                              {"n_threads": threads}, rounds=3, iterations=1)
    assert abs(sum(best["weights"]) - 1) < 1e-9


def test_ranx_optimize_fusion(benchmark, search_workload, threads, smoke):
    ranx = ranx_with_threads(threads, smoke)
    qrels, runs = search_workload
    label(benchmark, "optimize-wsum-66", threads, items=len(runs[0]), unit="queries")
    q, r = ranx.Qrels(qrels), [ranx.Run(x) for x in runs]

    def run():
        return ranx.optimize_fusion(q, r, norm="min-max", method="wsum", metric="ndcg@10", show_progress=False)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run()
        benchmark.pedantic(run, rounds=3, iterations=1)
