"""Rank fusion against ranx.fuse (every method and normalisation both have), against a slow
obviously-correct reference on runs with ties and missing queries, the array form, bad input."""
import warnings

import numpy as np
import pytest

from rank.errors import DTypeError, InvalidValueError, NonFiniteError, ShapeError, UnknownMethodError
from rank.fusion import fuse, fuse_scores

# The methods and normalisations of the first release (the newer ones are checked against ranx
# and hand-computed cases in test_fusion_ranx.py and test_fusion_methods.py).
METHODS = ("combsum", "combmnz", "combmax", "combmin", "combanz", "combmed", "borda", "isr", "wsum", "rrf")
NORMS = (None, "min-max", "zmuv", "sum", "max", "rank")

RANX_METHOD = {"rrf": "rrf", "combsum": "sum", "combmnz": "mnz", "combmax": "max", "combmin": "min",
               "combanz": "anz", "combmed": "med", "borda": "bordafuse", "isr": "isr", "wsum": "wsum"}
WEIGHTS = [0.2, 0.5, 1.3]


def random_runs(seed, n_runs=3, n_queries=40, n_docs=60, distinct=True, same_queries=True):
    rng = np.random.default_rng(seed)
    runs = []
    for _ in range(n_runs):
        run = {}
        for q in range(n_queries):
            if not same_queries and rng.random() < 0.2:
                continue
            ids = rng.choice(n_docs, int(rng.integers(1, 35)), replace=False)
            vals = rng.gamma(2.0, 1.5, ids.shape[0]) if distinct else rng.integers(-2, 3, ids.shape[0]) / 2
            run[f"q{q}"] = {f"d{i}": float(v) for i, v in zip(ids, vals)}
        runs.append(run)
    return runs


def close(a, b):
    assert list(a) == list(b) or set(a) == set(b)
    for q in b:
        assert set(a[q]) == set(b[q]), q
        for d in b[q]:
            assert abs(a[q][d] - b[q][d]) <= 1e-9 * max(1.0, abs(b[q][d])), (q, d, a[q][d], b[q][d])


@pytest.fixture(scope="module")
def ranx():
    return pytest.importorskip("ranx")


@pytest.mark.slow  # ranx compiles its numba kernels on first use (tens of seconds)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("norm", NORMS)
def test_matches_ranx(ranx, method, norm):
    runs = random_runs(METHODS.index(method) * 10 + NORMS.index(norm))
    params = {"weights": WEIGHTS} if method == "wsum" else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = ranx.fuse([ranx.Run(r) for r in runs], norm=norm, method=RANX_METHOD[method], params=params).to_dict()
    got = fuse(runs, method=method, norm=norm, weights=params.get("weights"), n_threads=2)
    close(got, ref)


@pytest.mark.slow
def test_rrf_k_matches_ranx(ranx):
    runs = random_runs(7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = ranx.fuse([ranx.Run(r) for r in runs], norm=None, method="rrf", params={"k": 10}).to_dict()
    close(fuse(runs, method="rrf", k=10), ref)


# --- slow reference: ties (trec order) and queries missing from some runs -------------------------

def ref_fuse(runs, method, norm, weights, k):
    qids = []
    for run in runs:
        for q in run:
            if q not in qids:
                qids.append(q)
    out = {}
    for q in qids:
        per = []
        for run in runs:
            items = sorted(run.get(q, {}).items(), key=lambda kv: (kv[1], kv[0]), reverse=True)
            s = np.array([v for _, v in items])
            n = len(items)
            if n:
                lo, hi = s.min(), s.max()
                if norm == "min-max":
                    s = (s - lo) / max(hi - lo, 1e-9)
                elif norm == "zmuv":
                    s = (s - s.mean()) / max(s.std(), 1e-9)
                elif norm == "sum":
                    s = (s - lo) / max(s.sum() - lo * n, 1e-9)
                elif norm == "max":
                    s = s / max(hi, 1e-9)
                elif norm == "rank":
                    s = 1 - np.arange(n) / n
            per.append({d: (rank, float(v)) for rank, ((d, _), v) in enumerate(zip(items, s), 1)})
        cands = sorted({d for p in per for d in p})
        fused = {}
        for d in cands:
            hits = [(r, p[d]) for r, p in enumerate(per) if d in p]
            vals = [v for _, (_, v) in hits]
            ranks = [rk for _, (rk, _) in hits]
            if method == "rrf":
                x = sum(1 / (k + rk) for rk in ranks)
            elif method == "isr":
                x = sum(1 / rk ** 2 for rk in ranks) * len(ranks)
            elif method == "borda":
                x = sum((len(cands) - p[d][0] + 1) if d in p else (len(cands) - len(p) + 1) / 2 for p in per)
            elif method == "combsum":
                x = sum(vals)
            elif method == "wsum":
                x = sum(weights[r] * v for r, (_, v) in hits)
            elif method == "combmnz":
                x = sum(vals) * len(vals)
            elif method == "combanz":
                x = sum(vals) / len(vals)
            elif method == "combmax":
                x = max(vals)
            elif method == "combmin":
                x = min(vals)
            else:
                x = float(np.median(vals))
            fused[d] = x
        out[q] = dict(sorted(fused.items(), key=lambda kv: (kv[1], kv[0]), reverse=True))
    return out


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("norm", [None, "min-max", "zmuv", "rank"])
def test_ties_and_missing_queries_match_reference(method, norm):
    runs = random_runs(3, n_runs=4 if method != "wsum" else 3, distinct=False, same_queries=False)
    runs[1]["only-here"] = {"x": 1.0, "y": 1.0}
    weights = WEIGHTS if method == "wsum" else None
    got = fuse(runs, method=method, norm=norm, weights=weights)
    want = ref_fuse(runs, method, norm, weights, 60)
    close(got, want)
    for q in want:  # same order: fused score descending, ties by docid descending
        assert [d for d in got[q]] == [d for d in want[q]] or all(
            abs(got[q][a] - want[q][b]) < 1e-12 for a, b in zip(got[q], want[q]))


def test_single_run_and_threads():
    runs = random_runs(11, n_queries=200)
    assert fuse(runs, "combsum", n_threads=1) == fuse(runs, "combsum", n_threads=2)
    one = fuse(runs[:1], "combsum", norm="max")
    for q, d in runs[0].items():
        top = max(d.values())
        if top > 1e-9:
            assert one[q] == pytest.approx({k: v / top for k, v in d.items()}, abs=1e-12)


# --- array form ------------------------------------------------------------------------------------

@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("norm", [None, "min-max", "sum", "rank"])
def test_fuse_scores_matches_dict_form(method, norm):
    rng = np.random.default_rng(len(method))
    s = rng.standard_normal((3, 25, 30))
    s[rng.random(s.shape) < 0.3] = np.nan
    s[:, 3, :] = np.nan  # a query no run answered
    weights = WEIGHTS if method == "wsum" else None
    got = fuse_scores(s, method=method, norm=norm, weights=weights)
    # Columns named so that descending string order is ascending column order, as in the array form.
    name = [f"c{99 - c:02d}" for c in range(30)]
    runs = [{f"q{q}": {name[c]: float(s[r, q, c]) for c in range(30) if not np.isnan(s[r, q, c])}
             for q in range(25)} for r in range(3)]
    want = fuse(runs, method=method, norm=norm, weights=weights)
    for q in range(25):
        row = want.get(f"q{q}", {})
        for c in range(30):
            if name[c] in row:
                assert got[q, c] == pytest.approx(row[name[c]], rel=1e-12, abs=1e-12)
            else:
                assert np.isnan(got[q, c])
    assert got.dtype == np.float64 and got.shape == (25, 30)
    listed = fuse_scores(list(s), method=method, norm=norm, weights=weights)
    np.testing.assert_array_equal(listed, got)


def test_fuse_scores_ties_by_column():
    s = np.array([[[1.0, 1.0, 1.0]], [[np.nan, 2.0, 2.0]]])
    np.testing.assert_allclose(fuse_scores(s, "rrf", k=0), [[1.0, 1 / 2 + 1, 1 / 3 + 1 / 2]])


# --- bad input -------------------------------------------------------------------------------------

def test_bad_input():
    a = {"q": {"d1": 1.0, "d2": 0.5}}
    with pytest.raises(ShapeError):
        fuse([])
    with pytest.raises(ShapeError, match="empty"):
        fuse([{}, {"q": {}}])
    with pytest.raises(DTypeError):
        fuse(a)
    with pytest.raises(DTypeError):
        fuse([a, [("q", {})]])
    with pytest.raises(DTypeError, match="'d2'"):
        fuse([a, {"q": {"d2": "x"}}])
    with pytest.raises(NonFiniteError, match=r"runs\[1\]"):
        fuse([a, {"q": {"d2": float("nan")}}])
    with pytest.raises(UnknownMethodError, match="combmnz"):
        fuse([a, a], method="combo")
    with pytest.raises(UnknownMethodError, match="min-max"):
        fuse([a, a], norm="l2")
    with pytest.raises(InvalidValueError):
        fuse([a, a], method="rrf", weights=[1, 2])
    with pytest.raises(ShapeError):
        fuse([a, a], method="wsum", weights=[1, 2, 3])
    with pytest.raises(InvalidValueError):
        fuse([a, a], k=-1)
    with pytest.raises(ShapeError):
        fuse_scores(np.ones((2, 3)))
    with pytest.raises(NonFiniteError):
        fuse_scores(np.full((2, 1, 3), np.inf))
    with pytest.raises(ShapeError):
        fuse_scores([np.ones((2, 3)), np.ones((2, 4))])
