"""Fusion methods on cases computed by hand from each method's definition in its paper, the
array form of every method, overflow, allocation failure, bad input."""
import math

import numpy as np
import pytest

from rank.errors import DTypeError, InvalidValueError, NonFiniteError, ShapeError, UnknownMethodError
from rank.fusion import METHODS, NORMS, fuse, fuse_scores, optimize_fusion, train_fusion

# Three documents: run A ranks d1 > d2 > d3, run B ranks d3 > d1 and lacks d2.
A = {"q": {"d1": 3.0, "d2": 2.0, "d3": 1.0}}
B = {"q": {"d3": 0.9, "d1": 0.5}}


def approx(d):
    return pytest.approx(d, rel=1e-12, abs=1e-15)


# --- rank-based ------------------------------------------------------------------------------------

def test_rrf_cormack_2009():
    # RRFscore(d) = sum over rankings of 1 / (k + r(d)), k = 60 (Cormack, Clarke & Buettcher 2009).
    got = fuse([A, B], "rrf")["q"]
    assert got == approx({"d1": 1 / 61 + 1 / 62, "d2": 1 / 62, "d3": 1 / 63 + 1 / 61})
    assert list(got) == ["d1", "d3", "d2"]
    assert fuse([A, B], "rrf", k=0)["q"] == approx({"d1": 1 + 1 / 2, "d2": 1 / 2, "d3": 1 / 3 + 1})


def test_isr_and_log_isr_mourao_2015():
    # ISR(d) = n(d) * sum 1 / r(d)^2 ; logISR(d) = log(n(d)) * sum 1 / r(d)^2 (n: rankings with d).
    assert fuse([A, B], "isr")["q"] == approx({"d1": 2 * (1 + 1 / 4), "d2": 1 / 4, "d3": 2 * (1 / 9 + 1)})
    assert fuse([A, B], "log_isr")["q"] == approx({"d1": math.log(2) * (1 + 1 / 4), "d2": 0.0,
                                                   "d3": math.log(2) * (1 / 9 + 1)})
    got = fuse([A, B], "logn_isr", params={"sigma": 0.5})["q"]
    assert got == approx({"d1": math.log(2.5) * 1.25, "d2": math.log(1.5) / 4, "d3": math.log(2.5) * (1 / 9 + 1)})


def test_rbc_bailey_2017():
    # Item at rank x of a ranking gets (1 - phi) * phi^(x - 1).
    assert fuse([A, B], "rbc", params={"phi": 0.8})["q"] == approx(
        {"d1": 0.2 + 0.2 * 0.8, "d2": 0.2 * 0.8, "d3": 0.2 * 0.8 ** 2 + 0.2})
    # The paper's extremes: phi = 0 orders by first preferences only ("first past the post") ...
    first = fuse([A, B, {"q": {"d1": 5.0}}], "rbc", params={"phi": 0.0})["q"]
    assert first == approx({"d1": 2.0, "d2": 0.0, "d3": 1.0})
    # ... and phi -> 1 by the number of rankings that contain the item.
    many = [{"q": {"a": 3.0, "b": 2.0, "c": 1.0}}, {"q": {"c": 3.0, "b": 2.0}}, {"q": {"b": 1.0}}]
    assert list(fuse(many, "rbc", params={"phi": 0.999})["q"]) == ["b", "c", "a"]


def test_borda_aslam_montague_2001():
    # c candidates: rank r gets c - r + 1 points; the points left over by a voter who ranks only
    # n of them are shared evenly by the c - n unranked: ((c - n)(c - n + 1) / 2) / (c - n).
    c = 3
    left_over_b = sum(range(1, c - 2 + 1)) / (c - 2)
    assert fuse([A, B], "borda")["q"] == approx({"d1": 3 + 2, "d2": 2 + left_over_b, "d3": 1 + 3})
    assert fuse([A, B], "wborda", weights=[2.0, 0.5])["q"] == approx(
        {"d1": 2 * 3 + 0.5 * 2, "d2": 2 * 2 + 0.5 * left_over_b, "d3": 2 * 1 + 0.5 * 3})


def test_condorcet_montague_aslam_2002():
    # Voters: d1 > d2 > d3, d2 > d3 > d1, d1 > d3 > d2: d1 beats d2 and d3 (2 of 3), d2 beats d3.
    voters = [{"q": {"d1": 3.0, "d2": 2.0, "d3": 1.0}}, {"q": {"d2": 3.0, "d3": 2.0, "d1": 1.0}},
              {"q": {"d1": 3.0, "d3": 2.0, "d2": 1.0}}]
    assert fuse(voters, "condorcet")["q"] == {"d1": 3.0, "d2": 2.0, "d3": 1.0}
    # Weighting the second voter 3x makes it a majority on its own.
    assert fuse(voters, "wcondorcet", weights=[1, 3, 1])["q"] == {"d2": 3.0, "d3": 2.0, "d1": 1.0}


def test_condorcet_with_cycles_is_a_hamiltonian_path():
    # With majority cycles, Condorcet-fuse still never places a document right after one it beats... the
    # other way round: no document is directly followed by one that beats it by a strict majority.
    rng = np.random.default_rng(0)
    for trial in range(20):
        runs = [{"q": {f"d{i}": float(v) for i, v in enumerate(rng.permutation(9))}} for _ in range(3)]
        order = list(fuse(runs, "condorcet")["q"])
        pos = [sorted(r["q"], key=lambda d: -r["q"][d]) for r in runs]
        for a, b in zip(order, order[1:]):
            b_wins = sum(p.index(b) < p.index(a) for p in pos)
            assert b_wins < 2, (trial, order, a, b)


# --- score-based -----------------------------------------------------------------------------------

S = [{"q": {"d1": 0.9, "d2": 0.5}}, {"q": {"d1": 0.4, "d3": 0.8}}, {"q": {"d2": 0.6, "d3": 0.7}}]


def test_comb_fox_shaw_1994():
    # CombSUM: sum of the similarities; CombMNZ: CombSUM times the number of nonzero similarities;
    # CombMAX/MIN/ANZ/MED: max, min, mean, median of the similarities given.
    assert fuse(S, "combsum")["q"] == approx({"d1": 1.3, "d2": 1.1, "d3": 1.5})
    assert fuse(S, "combmnz")["q"] == approx({"d1": 2.6, "d2": 2.2, "d3": 3.0})
    assert fuse(S, "combmax")["q"] == approx({"d1": 0.9, "d2": 0.6, "d3": 0.8})
    assert fuse(S, "combmin")["q"] == approx({"d1": 0.4, "d2": 0.5, "d3": 0.7})
    assert fuse(S, "combanz")["q"] == approx({"d1": 0.65, "d2": 0.55, "d3": 0.75})
    assert fuse(S, "combmed")["q"] == approx({"d1": 0.65, "d2": 0.55, "d3": 0.75})
    assert list(fuse(S, "combmnz")["q"]) == ["d3", "d1", "d2"]


def test_gmnz_lee_1997_and_weighted():
    # CombGMNZ: CombSUM * n^gamma; gamma = 1 is CombMNZ, gamma = 0 CombSUM.
    assert fuse(S, "combgmnz", params={"gamma": 0.5})["q"] == approx(
        {"d1": 1.3 * math.sqrt(2), "d2": 1.1 * math.sqrt(2), "d3": 1.5 * math.sqrt(2)})
    assert fuse(S, "gmnz", params={"gamma": 1.0}) == fuse(S, "combmnz")
    w = [0.5, 2.0, 1.0]
    assert fuse(S, "wsum", weights=w)["q"] == approx({"d1": 0.45 + 0.8, "d2": 0.25 + 0.6, "d3": 1.6 + 0.7})
    assert fuse(S, "wmnz", weights=w)["q"] == approx({"d1": 1.3 * 2.5, "d2": 1.1 * 1.5, "d3": 1.5 * 3.0})
    assert fuse(S, "mixed", weights=w)["q"] == approx(
        {"d1": 1.25 * math.sqrt(2), "d2": 0.85 * math.sqrt(2), "d3": 2.3 * math.sqrt(2)})


def test_normalisations_by_hand():
    run = {"q": {"a": 4.0, "b": 2.0, "c": 1.0}}
    one = [run, {"q": {"a": 0.0}}]
    assert fuse(one, "combmax", norm="min-max")["q"] == approx({"a": 1.0, "b": 1 / 3, "c": 0.0})
    assert fuse([run], "combsum", norm="min-max-inverted")["q"] == approx({"c": 1.0, "b": 2 / 3, "a": 0.0})
    assert fuse([run], "combsum", norm="max")["q"] == approx({"a": 1.0, "b": 0.5, "c": 0.25})
    assert fuse([run], "combsum", norm="sum")["q"] == approx({"a": 3 / 4, "b": 1 / 4, "c": 0.0})
    sd = math.sqrt(((4 - 7 / 3) ** 2 + (2 - 7 / 3) ** 2 + (1 - 7 / 3) ** 2) / 3)
    assert fuse([run], "combsum", norm="z-score")["q"] == approx(
        {"a": (4 - 7 / 3) / sd, "b": (2 - 7 / 3) / sd, "c": (1 - 7 / 3) / sd})
    assert fuse([run], "combsum", norm="rank")["q"] == approx({"a": 1.0, "b": 2 / 3, "c": 1 / 3})
    # borda: 1 - i/c for ranked documents, 0.5 - (n - 1) / (2c) for the candidates a run lacks
    two = [run, {"q": {"d": 1.0}}]
    assert fuse(two, "combsum", norm="borda")["q"] == approx(
        {"a": 1 + (0.5 - 0 / 8), "b": 0.75 + 0.5, "c": 0.5 + 0.5, "d": (0.5 - 2 / 8) + 1})
    # min-max-inverted reverses the ranks rank-based methods see
    assert list(fuse([run], "rrf", norm="min-max-inverted")["q"]) == ["c", "b", "a"]


# --- trained ---------------------------------------------------------------------------------------

TRAIN_QRELS = {"q1": {"a": 1, "z": 0}, "q2": {"b": 2}}
TRAIN_RUN = {"q1": {"a": 3.0, "x": 2.0, "y": 1.0}, "q2": {"x": 2.0, "b": 1.0}}  # hits [1, 0, 0] and [0, 1]
OTHER_RUN = {"q1": {"y": 5.0, "a": 4.0}, "q2": {"b": 1.0}}                      # hits [0, 1] and [1]


def test_posfuse_and_slidefuse_lillis():
    probs = train_fusion(TRAIN_QRELS, [TRAIN_RUN, OTHER_RUN], "posfuse")["probs"]
    # P(rank p) = relevant at p / queries with at least p documents
    np.testing.assert_allclose(probs[0], [1 / 2, 1 / 2, 0 / 1])
    np.testing.assert_allclose(probs[1], [1 / 2, 1 / 1])
    slide = train_fusion(TRAIN_QRELS, [TRAIN_RUN, OTHER_RUN], "slide_fuse")  # w is not needed to train
    assert set(slide) == {"probs"} and all(np.array_equal(a, b) for a, b in zip(slide["probs"], probs))
    test = [{"t": {"u": 3.0, "v": 2.0, "w": 1.0, "x": 0.5}}, {"t": {"v": 1.0}}]
    assert fuse(test, "posfuse", params={"probs": probs})["t"] == approx(
        {"u": 0.5, "v": 0.5 + 0.5, "w": 0.0, "x": 0.0})
    # SlideFuse, w = 1: mean of P over ranks p-1..p+1 clipped to the list (sums stop at the table's end)
    got = fuse(test, "slidefuse", params={"probs": probs, "w": 1})["t"]
    assert got == approx({"u": (0.5 + 0.5) / 2, "v": (0.5 + 0.5 + 0) / 3 + 0.5, "w": (0.5 + 0) / 3, "x": 0 / 2})


def test_probfuse_lillis_2006():
    # n_segments = 2: q1's 3 documents cut in segments of ceil(3/2) = 2 -> [1, 0], [0];
    # q2's 2 documents in segments of 1 -> [0], [1]. P(k) = mean over queries of the fraction relevant.
    probs = train_fusion(TRAIN_QRELS, [TRAIN_RUN], "probfuse", params={"n_segments": 2})["probs"]
    np.testing.assert_allclose(probs[0], [(1 / 2 + 0) / 2, (0 + 1) / 2])
    test = [{"t": {"u": 4.0, "v": 3.0, "w": 2.0, "x": 1.0}}]
    # Segment k (1-based) of ceil(4/2) = 2 documents scores P(k) / k.
    assert fuse(test, "probfuse", params={"probs": probs})["t"] == approx(
        {"u": 0.25, "v": 0.25, "w": 0.5 / 2, "x": 0.5 / 2})


def test_segfuse_shokouhi_2007():
    # Segments of ranks 1-5, 6-15, 16-35, ...; P(k) = mean over queries of relevant / segment size.
    probs = train_fusion(TRAIN_QRELS, [TRAIN_RUN], "segfuse")["probs"]
    np.testing.assert_allclose(probs[0][:3], [(1 / 5 + 1 / 5) / 2, 0, 0])
    assert len(probs[0]) == 10
    test = [{"t": {f"d{i}": float(100 - i) for i in range(7)}}]
    got = fuse(test, "segfuse", norm="min-max", params={"probs": probs})["t"]
    s = {f"d{i}": (6 - i) / 6 for i in range(7)}  # min-max scores
    assert got == approx({d: (0.2 if i < 5 else 0.0) * (s[d] + 1) for i, d in enumerate(s)})


def test_bayesfuse_aslam_montague_2001():
    odds = train_fusion(TRAIN_QRELS, [TRAIN_RUN], "bayesfuse")["log_odds"][0]
    # ranks 1-5: mean precision (1/5 + 1/5) / 2 = 0.2 -> log(0.2 / 0.8); no relevant below -> 0.001
    assert odds.shape == (1000,)
    np.testing.assert_allclose(odds[:5], math.log(0.2 / 0.8))
    np.testing.assert_allclose(odds[5:], math.log(0.001 / 0.999))
    test = [{"t": {"u": 2.0, "v": 1.0}}, {"t": {"v": 1.0}}]
    got = fuse(test, "bayesfuse", params={"log_odds": [odds, odds]})["t"]
    assert got == approx({"u": math.log(0.25) + math.log(0.001 / 0.999), "v": 2 * math.log(0.25)})


def test_mapfuse_lillis_2010():
    # MAP of TRAIN_RUN: q1 AP = 1 (its relevant document first), q2 AP = 1/2.
    maps = train_fusion(TRAIN_QRELS, [TRAIN_RUN, OTHER_RUN], "mapfuse")["map_scores"]
    np.testing.assert_allclose(maps, [0.75, (1 / 2 + 1) / 2])
    test = [{"t": {"u": 2.0, "v": 1.0}}, {"t": {"v": 1.0}}]
    assert fuse(test, "mapfuse", params={"map_scores": maps})["t"] == approx({"u": 0.75, "v": 0.75 / 2 + 0.75})
    # training on the runs being fused with qrels=...
    assert fuse([TRAIN_RUN, OTHER_RUN], "mapfuse", qrels=TRAIN_QRELS) == fuse(
        [TRAIN_RUN, OTHER_RUN], "mapfuse", params={"map_scores": maps})


# --- optimize_fusion -------------------------------------------------------------------------------

def test_optimize_fusion_finds_the_informative_run():
    rng = np.random.default_rng(3)
    qrels, good, bad = {}, {}, {}
    for q in range(30):
        docs = [f"d{i}" for i in range(20)]
        qrels[f"q{q}"] = {d: 1 for d in docs[:3]}
        good[f"q{q}"] = {d: float(20 - i + rng.random()) for i, d in enumerate(docs)}
        bad[f"q{q}"] = {d: float(rng.random()) for d in docs}
    best, report = optimize_fusion(qrels, [bad, good], "wsum", "min-max", "ndcg@10", return_report=True)
    assert best["weights"][1] > best["weights"][0]
    assert len(report) == 11 and [p["weights"] for p, _ in report][:2] == [(0.0, 1.0), (0.1, 0.9)]
    assert optimize_fusion(qrels, [bad, good], "rrf", metric="map", grid=[{"k": 1}, {"k": 5}]) in ({"k": 1}, {"k": 5})
    assert set(optimize_fusion(qrels, [bad, good], "posfuse")) == {"probs"}
    with pytest.raises(InvalidValueError, match="no weights or parameter"):
        optimize_fusion(qrels, [bad, good], "combsum")
    with pytest.raises(InvalidValueError, match="divides 1"):
        optimize_fusion(qrels, [bad, good], "wsum", step=0.3)


# --- the array form of every method ----------------------------------------------------------------

PARAMS = {"rbc": {"phi": 0.7}, "combgmnz": {"gamma": 0.5}, "slidefuse": {"w": 2}}


@pytest.mark.parametrize("method", METHODS)
def test_fuse_scores_every_method_matches_dict_form(method):
    rng = np.random.default_rng(len(method))
    s = rng.standard_normal((3, 12, 15))
    s[rng.random(s.shape) < 0.3] = np.nan
    params = dict(PARAMS.get(method, {}))
    if method in ("posfuse", "slidefuse", "probfuse", "segfuse"):
        params["probs"] = [rng.random(k) for k in ((4, 6, 5) if method != "segfuse" else (10, 10, 10))]
        if method == "probfuse":
            params["probs"] = [rng.random(4) for _ in range(3)]
    if method == "bayesfuse":
        params["log_odds"] = [np.log(rng.random(8)) for _ in range(3)]
    if method == "mapfuse":
        params["map_scores"] = [0.3, 0.2, 0.5]
    if method in ("wsum", "wmnz", "mixed", "wborda", "wcondorcet"):
        params["weights"] = [0.2, 0.5, 1.3]
    got = fuse_scores(s, method=method, norm="min-max", params=params)
    name = [f"c{99 - c:02d}" for c in range(15)]  # descending names = ascending columns (tie order)
    runs = [{f"q{q}": {name[c]: float(s[r, q, c]) for c in range(15) if not np.isnan(s[r, q, c])}
             for q in range(12)} for r in range(3)]
    want = fuse(runs, method=method, norm="min-max", params=params)
    for q in range(12):
        row = want.get(f"q{q}", {})
        for c in range(15):
            if name[c] in row:
                assert got[q, c] == pytest.approx(row[name[c]], rel=1e-12, abs=1e-12), (q, c)
            else:
                assert np.isnan(got[q, c])


@pytest.mark.parametrize("method", [m for m in METHODS if m not in ("bayesfuse", "mapfuse", "posfuse", "probfuse",
                                                                   "segfuse", "slidefuse")])
def test_threads_do_not_change_results(method):
    rng = np.random.default_rng(1)
    runs = [{f"q{q}": {f"d{i}": float(rng.integers(0, 5)) for i in rng.choice(50, 20, replace=False)}
             for q in range(100)} for _ in range(3)]
    params = PARAMS.get(method)
    one = fuse(runs, method, params=params, n_threads=1)
    assert fuse(runs, method, params=params, n_threads=2) == one
    assert fuse(runs, method, params=params, n_threads=3000) == one  # clamped, not refused


# --- overflow: never an inf in a run ---------------------------------------------------------------

def test_overflow_raises_instead_of_writing_inf():
    big = [{"q": {"a": 1.5e308, "b": 1.0}}, {"q": {"a": 1.5e308}}]
    with pytest.raises(NonFiniteError, match="overflows"):
        fuse(big, "combsum")
    with pytest.raises(NonFiniteError, match="'a'"):
        fuse(big, "combmnz")
    with pytest.raises(NonFiniteError):
        fuse([{"q": {"a": 1e10}}, {"q": {"a": 1.0}}], "wsum", weights=[1e300, 1.0])
    with pytest.raises(NonFiniteError):
        fuse_scores(np.array([[[1e308]], [[1e308]]]), "combsum")
    # normalising huge scores does not overflow: the result is exact
    huge = [{"q": {"a": 1.7e308, "b": -1.7e308, "c": 0.0}}, {"q": {"a": 1.0}}]
    assert fuse(huge, "combmax", norm="min-max")["q"] == approx({"a": 1.0, "b": 0.0, "c": 0.5})
    z = fuse(huge[:1], "combsum", norm="zmuv")["q"]
    assert z == approx({"a": math.sqrt(1.5), "b": -math.sqrt(1.5), "c": 0.0})
    assert fuse(huge[:1], "combsum", norm="sum")["q"] == approx({"a": 2 / 3, "b": 0.0, "c": 1 / 3})
    for m in ("log_isr", "logn_isr", "isr", "rrf"):  # log(n) of one run is 0, never -inf
        assert all(math.isfinite(v) for v in fuse([A, B], m)["q"].values())


def test_allocation_failure_raises_memory_error():
    from rank_kernels import fusion as kernel

    runs = [A, B]
    kernel._fail_allocations(True)
    try:
        for method, params in (("combsum", None), ("condorcet", None), ("rrf", None)):
            with pytest.raises(MemoryError):
                fuse(runs, method, params=params)
    finally:
        kernel._fail_allocations(False)
    assert fuse(runs, "combsum")["q"] == approx({"d1": 3.5, "d2": 2.0, "d3": 1.9})


# --- bad input -------------------------------------------------------------------------------------

def test_unknown_names_list_valid_ones_and_suggest():
    with pytest.raises(UnknownMethodError, match=r"'rrf'.*; got 'combsun' \(did you mean 'combsum'\?\)"):
        fuse([A, B], "combsun")
    with pytest.raises(UnknownMethodError, match=r"did you mean 'condorcet'"):
        fuse([A, B], "condorset")
    with pytest.raises(UnknownMethodError, match=r"^norm must be one of .*'zmuv'.*did you mean 'min-max'\?"):
        fuse([A, B], norm="min-maxx")
    with pytest.raises(UnknownMethodError):
        fuse([A, B], method=3)
    with pytest.raises(UnknownMethodError):
        fuse_scores(np.ones((2, 1, 2)), "nope")
    assert NORMS[0] is None and len(METHODS) == 25
    # ranx's names are aliases
    assert fuse(S, "mnz") == fuse(S, "combmnz") and fuse([A, B], "bordafuse") == fuse([A, B], "borda")
    assert fuse(S, "combsum", norm="min_max") == fuse(S, "combsum", norm="min-max")
    assert fuse(S, "combsum", norm="none") == fuse(S, "combsum")


def test_bad_parameters():
    with pytest.raises(ShapeError, match="one number per run"):
        fuse([A, B], "wsum", weights=[1.0, 2.0, 3.0])
    with pytest.raises(InvalidValueError, match="finite"):
        fuse([A, B], "wsum", weights=[1.0, float("nan")])
    with pytest.raises(InvalidValueError, match="takes no weights.*'wsum'"):
        fuse([A, B], "combsum", weights=[1.0, 2.0])
    with pytest.raises(InvalidValueError, match="both"):
        fuse([A, B], "wsum", weights=[1, 1], params={"weights": [1, 1]})
    with pytest.raises(InvalidValueError, match="needs 'phi'"):
        fuse([A, B], "rbc")
    with pytest.raises(InvalidValueError, match=r"phi"):
        fuse([A, B], "rbc", params={"phi": 1.5})
    with pytest.raises(InvalidValueError, match="takes no parameter 'alpha'"):
        fuse([A, B], "rrf", params={"alpha": 1})
    with pytest.raises(InvalidValueError):
        fuse([A, B], "rrf", params={"k": float("inf")})
    with pytest.raises(InvalidValueError, match="needs 'probs'.*train"):
        fuse([A, B], "posfuse")
    with pytest.raises(InvalidValueError, match="not trained"):
        fuse([A, B], "rrf", qrels=TRAIN_QRELS)
    with pytest.raises(ShapeError, match="one array per run"):
        fuse([A, B], "posfuse", params={"probs": [np.ones(3)]})
    with pytest.raises(InvalidValueError, match="NaN"):
        fuse([A, B], "posfuse", params={"probs": [np.ones(3), np.array([np.nan])]})
    with pytest.raises(InvalidValueError, match="n_segments"):
        train_fusion(TRAIN_QRELS, [TRAIN_RUN], "probfuse")
    with pytest.raises(DTypeError, match="qrels"):
        train_fusion([("q", "d")], [TRAIN_RUN], "posfuse")
    with pytest.raises(DTypeError, match="grade"):
        train_fusion({"q1": {"a": "high"}}, [TRAIN_RUN], "posfuse")
    with pytest.raises(InvalidValueError, match="not trained"):
        train_fusion(TRAIN_QRELS, [TRAIN_RUN], "rrf")
    with pytest.raises(NonFiniteError, match=r"runs\[1\]\['q'\]\['d1'\]"):
        fuse([A, {"q": {"d1": float("nan")}}], "combsum")
    with pytest.raises(InvalidValueError, match="n_threads"):
        fuse([A, B], n_threads=0)
    with pytest.raises(InvalidValueError, match="n_threads"):
        fuse([A, B], n_threads=10**6)


def test_registering_one_function_is_all_a_method_needs():
    """The extension point: a registered contribution function is a method of fuse, fuse_scores
    and optimize_fusion, with its parameter checked, no other table to edit."""
    from rank.fusion import _registry

    @_registry.method("test_reciprocal_rank", "sum", ranks=True, params={"a": _registry.Param(1.0, _registry.real(0.0))},
                      grid=lambda n_runs, **_: [{"a": 0.5}, {"a": 2.0}])
    def reciprocal(ctx, a):
        """a / rank, summed over the runs."""
        return a / (ctx.rank + 1.0), None

    try:
        assert fuse([A, B], "test_reciprocal_rank", params={"a": 2.0})["q"] == approx(
            {"d1": 2 + 1, "d2": 1.0, "d3": 2 / 3 + 2})
        np.testing.assert_allclose(fuse_scores(np.array([[[3.0, 1.0]], [[np.nan, 2.0]]]), "test_reciprocal_rank"),
                                   [[1.0, 0.5 + 1.0]])
        assert optimize_fusion({"q": {"d3": 1}}, [A, B], "test_reciprocal_rank", metric="map") == {"a": 2.0}
        with pytest.raises(InvalidValueError, match="^a must be a finite number >= 0; got -1"):
            fuse([A, B], "test_reciprocal_rank", params={"a": -1})
    finally:
        del _registry.METHODS["test_reciprocal_rank"]
