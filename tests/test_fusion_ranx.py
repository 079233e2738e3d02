"""Every fusion method and normalisation against ranx on UNTIED runs (distinct scores in every
run, same queries in every run: ranx's input-order tie rule and its query-set requirement
cannot make a difference), fused scores to 1e-9 and the same ranking; trained methods with
tables trained by ranx and by us; optimize_fusion against ranx's grid search."""
import warnings

import numpy as np
import pytest

from rank.fusion import METHODS, NORMS, fuse, optimize_fusion, train_fusion

ranx = pytest.importorskip("ranx")
pytestmark = pytest.mark.slow  # ranx compiles its numba kernels on first use

RANX_NAME = {"combsum": "sum", "combmnz": "mnz", "combmax": "max", "combmin": "min", "combanz": "anz",
             "combmed": "med", "combgmnz": "gmnz", "borda": "bordafuse", "wborda": "w_bordafuse",
             "wcondorcet": "w_condorcet"}
WEIGHTS = (0.2, 0.5, 1.3)  # no subset sums to half the total: weighted Condorcet votes never tie
PARAMS = {"rrf": {"k": 20}, "rbc": {"phi": 0.8}, "combgmnz": {"gamma": 0.6}, "logn_isr": {"sigma": 0.3},
          "wsum": {"weights": WEIGHTS}, "wmnz": {"weights": WEIGHTS}, "mixed": {"weights": WEIGHTS},
          "wborda": {"weights": WEIGHTS}, "wcondorcet": {"weights": WEIGHTS}}
TRAINED = ("bayesfuse", "mapfuse", "posfuse", "probfuse", "segfuse", "slidefuse")
SCORE_BASED = ("combsum", "combmnz", "combmax", "combmin", "combanz", "combmed", "combgmnz", "wsum", "wmnz",
               "mixed")


def untied_runs(seed, n_runs=3, n_queries=30, n_docs=80, noise=None):
    """Runs over the same queries with distinct scores; `noise`: every run ranks the same
    documents of a query, scored by a shared base relevance plus noise (runs that mostly
    agree: Condorcet majorities mostly without cycles)."""
    rng = np.random.default_rng(seed)
    base = rng.gamma(2.0, 1.5, (n_queries, n_docs))
    shared = [rng.choice(n_docs, int(rng.integers(5, 25)), replace=False) for _ in range(n_queries)]
    runs = []
    for _ in range(n_runs):
        run = {}
        for q in range(n_queries):
            ids = shared[q] if noise else rng.choice(n_docs, int(rng.integers(5, 40)), replace=False)
            vals = base[q, ids] + noise * rng.standard_normal(ids.shape[0]) if noise else rng.gamma(2.0, 1.5, ids.shape[0])
            run[f"q{q}"] = {f"d{i}": float(v) for i, v in zip(ids, vals)}
        assert all(len(set(d.values())) == len(d) for d in run.values())
        runs.append(run)
    return runs


def qrels_for(runs, seed):
    rng = np.random.default_rng(seed)
    qrels = {}
    for q in runs[0]:
        docs = sorted({d for r in runs for d in r[q]})
        rel = rng.choice(len(docs), max(1, len(docs) // 4), replace=False)
        qrels[q] = {docs[i]: int(rng.integers(1, 3)) for i in rel}
        qrels[q].update({docs[i]: 0 for i in rng.choice(len(docs), 3, replace=False) if docs[i] not in qrels[q]})
    return qrels


def ranx_fuse(runs, method, norm, params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ranx.fuse([ranx.Run(r) for r in runs], norm=norm, method=RANX_NAME.get(method, method),
                         params=dict(params)).to_dict()


def assert_same(got, ref, queries=None):
    assert set(got) == set(ref)
    for q in (queries if queries is not None else ref):
        assert set(got[q]) == set(ref[q]), q
        for d, v in ref[q].items():
            assert abs(got[q][d] - v) <= 1e-9 * max(1.0, abs(v)), (q, d, got[q][d], v)
        scores = list(got[q].values())
        assert all(a >= b for a, b in zip(scores, scores[1:])), q  # listed by fused score
        ours = sorted(got[q], key=lambda d: -got[q][d])
        theirs = sorted(ref[q], key=lambda d: -ref[q][d])
        for a, b in zip(ours, theirs):  # same ranking (documents swapped only on equal scores)
            assert a == b or abs(ref[q][a] - ref[q][b]) <= 1e-9 * max(1.0, abs(ref[q][a])), (q, a, b)


def acyclic_queries(runs, weights):
    """Queries whose pairwise-majority relation (ranx's rule) is a strict total order."""
    ok = []
    for q in runs[0]:
        pos = [{d: i for i, d in enumerate(sorted(r[q], key=lambda d: -r[q][d]))} for r in runs]
        docs = sorted({d for p in pos for d in p})
        total = sum(weights)
        wins = dict.fromkeys(docs, 0)
        tie = False
        for x in docs:
            for y in docs:
                if x < y:
                    vx = sum(w for p, w in zip(pos, weights) if p.get(x, 10**9) < p.get(y, 10**9))
                    vy = sum(w for p, w in zip(pos, weights) if p.get(y, 10**9) < p.get(x, 10**9))
                    both_missing = sum(w for p, w in zip(pos, weights) if x not in p and y not in p)
                    if vx + vy + both_missing != total or abs(vx - vy) < 1e-12 or both_missing:
                        tie = True
                    wins[x if vx > vy else y] += 1
        if not tie and sorted(wins.values()) == list(range(len(docs))):
            ok.append(q)
    return ok


UNTRAINED = [m for m in METHODS if m not in TRAINED]


@pytest.mark.parametrize("method", UNTRAINED)
@pytest.mark.parametrize("norm", [None, "min-max"])
def test_methods_match_ranx(method, norm):
    condorcet = "condorcet" in method
    runs = untied_runs(UNTRAINED.index(method) * 7 + [None, "min-max"].index(norm),
                       noise=0.3 if condorcet else None)
    params = PARAMS.get(method, {})
    ref = ranx_fuse(runs, method, norm, params)
    got = fuse(runs, method=method, norm=norm, params=params, n_threads=2)
    if condorcet:
        weights = params.get("weights", (1.0, 1.0, 1.0))
        queries = acyclic_queries(runs, weights)
        assert len(queries) >= 10
        assert_same(got, ref, queries)
    else:
        assert_same(got, ref)


@pytest.mark.parametrize("norm", [n for n in NORMS if n is not None])
@pytest.mark.parametrize("method", ["combsum", "combmnz", "combmed", "wsum"])
def test_every_normalisation_matches_ranx(method, norm):
    runs = untied_runs(100 + SCORE_BASED.index(method) * 11 + NORMS.index(norm))
    params = PARAMS.get(method, {})
    assert_same(fuse(runs, method=method, norm=norm, params=params), ranx_fuse(runs, method, norm, params))


@pytest.mark.parametrize("method", ["rrf", "isr", "borda", "rbc"])
def test_inverted_norm_reverses_ranks_as_ranx(method):
    runs = untied_runs(5)
    params = PARAMS.get(method, {})
    assert_same(fuse(runs, method=method, norm="min-max-inverted", params=params),
                ranx_fuse(runs, method, "min-max-inverted", params))


def ranx_train(qrels, runs, method, **kw):
    from ranx import fusion as rf
    qr = ranx.Qrels(qrels)
    rr = [ranx.Run(r) for r in runs]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if method == "probfuse":
            return {"probs": list(rf.probfuse_train(qr, rr, kw["n_segments"]))}
        trained = getattr(rf, f"{method}_train")(qr, rr)
        key = {"bayesfuse": "log_odds", "mapfuse": "map_scores"}.get(method, "probs")
        return {key: trained}


@pytest.mark.parametrize("method", TRAINED)
@pytest.mark.parametrize("norm", [None, "min-max"])
def test_trained_methods_match_ranx(method, norm):
    runs = untied_runs(200 + TRAINED.index(method), n_queries=40)
    qrels = qrels_for(runs, 1)
    extra = {"probfuse": {"n_segments": 7}, "slidefuse": {"w": 3}}.get(method, {})
    theirs = ranx_train(qrels, runs, method, **extra)
    ours = train_fusion(qrels, runs, method, norm, params=extra)
    key = next(iter(theirs))
    for a, b in zip(ours[key], theirs[key]):
        np.testing.assert_allclose(np.atleast_1d(a), np.atleast_1d(b), rtol=1e-9, atol=1e-12)
    test = untied_runs(300 + TRAINED.index(method), n_queries=40)
    ref = ranx_fuse(test, method, norm, {**theirs, **({"w": 3} if method == "slidefuse" else {})})
    assert_same(fuse(test, method, norm, params=ours), ref)
    # ranx's trained tables are accepted as they are, and fuse(qrels=...) trains on the runs given
    assert_same(fuse(test, method, norm, params={**theirs, **({"w": 3} if method == "slidefuse" else {})}), ref)
    on_train = ranx_fuse(runs, method, norm, {**theirs, **({"w": 3} if method == "slidefuse" else {})})
    assert_same(fuse(runs, method, norm, qrels=qrels, params=extra), on_train)


def _config(text):
    import re
    nums = [float(x) for x in re.findall(r"-?\d+(?:\.\d+)?(?:e-?\d+)?", text.replace("np.float64", ""))]
    return tuple(nums) if text.startswith("(") else nums[0]


@pytest.mark.parametrize("method,options", [("wsum", {}), ("mixed", {"step": 0.25}), ("rrf", {}),
                                            ("rbc", {"step": 0.05}), ("combgmnz", {"step": 0.1}),
                                            ("logn_isr", {"step": 0.1}), ("slidefuse", {"max_w": 10}),
                                            ("probfuse", {"max_n_segments": 8})])
def test_optimize_fusion_grid_as_ranx(method, options):
    """Same grid as ranx's optimize_fusion (plus the weight vectors ranx's float test drops),
    each configuration scored by rank.evaluate of the fused run, the last best one returned."""
    from rank import evaluate

    runs = untied_runs(400, n_queries=25)
    qrels = qrels_for(runs, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, ref_report = ranx.optimize_fusion(
            ranx.Qrels(qrels), [ranx.Run(r) for r in runs], norm="min-max", method=RANX_NAME.get(method, method),
            metric="ndcg@10", return_optimization_report=True, show_progress=False, **options)
    best, report = optimize_fusion(qrels, runs, method, "min-max", "ndcg@10", return_report=True, **options)
    key = {"wsum": "weights", "mixed": "weights", "rrf": "k", "rbc": "phi", "combgmnz": "gamma",
           "logn_isr": "sigma", "slidefuse": "w", "probfuse": "n_segments"}[method]
    tried = [p[key] for p, _ in report]
    theirs = [_config(c) for c in ref_report.configs]
    if key in ("phi", "gamma", "sigma"):  # ranx's float arange may step past the maximum (phi = 1.01)
        theirs = [c for c in theirs if c <= 1.0]
    assert [c for c in tried if c in theirs] == theirs  # ranx's configurations, in ranx's order
    extra = [c for c in tried if c not in theirs]
    assert all(sum(c) != 1.0 for c in extra) and all(abs(sum(c) - 1) < 1e-9 for c in extra)  # float-sum drops
    trained = {k: v for k, v in best.items() if k in ("probs",)}
    for p, score in report[:: max(1, len(report) // 8)]:
        params = {**p, **(trained if method == "slidefuse" else {})}
        if method == "probfuse":
            params = train_fusion(qrels, runs, "probfuse", "min-max", params=p)
        fused = fuse(runs, method, "min-max", params=params)
        assert score == evaluate(qrels, fused, "ndcg@10")["ndcg@10"]
    top = max(s for _, s in report)
    last = [p for p, s in report if s == top][-1]
    assert all(best[k] == v for k, v in last.items())
