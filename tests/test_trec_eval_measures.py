"""Every measure of ``trec_eval -m all_trec`` against pytrec_eval (which wraps trec_eval) per
query, on random runs full of ties and on a real BM25 run over SciFact; trec_eval's options
(-c, -M, -l, user gains) against pytrec_eval where it has them and slow references written from
trec_eval's definitions where it does not; measure names in every spelling; the tie rule with
ids that share long prefixes or are not ASCII; trec_eval's output format."""
import math
import re
import subprocess
import sys

import numpy as np
import pytest

from rank.errors import DTypeError, InvalidValueError, NonFiniteError, UnknownMethodError
from rank.evaluate import evaluate, format_trec_eval, read_qrels
from rank.evaluate.metrics import ALL_TREC, sort_run
from rank_kernels import evaluate as kernel

pytrec_eval = pytest.importorskip("pytrec_eval")

TEXT_MEASURES = {"runid", "relstring"}


def tie_heavy_case(seed, n_queries=60, n_docs=60):
    """Scores from a handful of values, graded qrels with -1 (pooled, unjudged), 0 and grades up
    to 6, queries without relevant documents, queries on one side only."""
    rng = np.random.default_rng(seed)
    qrels, run = {}, {}
    for q in range(n_queries):
        qid = f"q{q}"
        if rng.random() < 0.9:
            judged = rng.choice(n_docs, int(rng.integers(1, 30)), replace=False)
            qrels[qid] = {f"d{j}": int(rng.choice([-1, 0, 0, 1, 1, 2, 3, 6])) for j in judged}
        if rng.random() < 0.9:
            n = int(rng.integers(1, 50))
            ids = rng.choice(n_docs, n, replace=False)
            vals = rng.integers(0, rng.choice([2, 4, 30]), n) / 10.0
            run[qid] = {f"d{j}": float(v) for j, v in zip(ids, vals)}
    run["only-in-run"] = {"d1": 1.0}
    return qrels, run


def pytrec(qrels, run, measures, level=1):
    return pytrec_eval.RelevanceEvaluator(qrels, set(measures), relevance_level=level).evaluate(run)


def assert_same(ours, ref, tol=1e-9):
    assert set(ours) == set(ref)
    for q in ref:
        keys = set(ref[q]) - TEXT_MEASURES
        assert keys <= set(ours[q]), keys - set(ours[q])
        for k in keys:
            assert abs(ours[q][k] - ref[q][k]) <= tol, (q, k, ours[q][k], ref[q][k])


# --- all_trec against pytrec_eval -----------------------------------------------------------------

@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("level", [1, 2])
def test_all_trec_per_query_matches_pytrec_eval(seed, level):
    qrels, run = tie_heavy_case(seed)
    ref = pytrec(qrels, run, {"all_trec"}, level)
    ours = evaluate(qrels, run, "all_trec", per_query=True, relevance_level=level, n_threads=2)
    assert_same(ours, ref)
    # every measure of all_trec but the two text ones, under pytrec_eval's key for it
    keys = set(next(iter(ref.values()))) - TEXT_MEASURES
    assert set(next(iter(ours.values()))) == keys
    measures = {re.sub(r"_[0-9.]+$", "", k) for k in keys}
    assert len(measures) == len(ALL_TREC) == 32


def test_aggregates_are_trec_eval_s():
    """Arithmetic means, geometric means for gm_*, sums for the counts, the query count."""
    qrels, run = tie_heavy_case(7)
    per = pytrec(qrels, run, {"all_trec"})
    ours = evaluate(qrels, run, "all_trec")
    n = len(per)
    for k, v in ours.items():
        col = np.array([per[q][k] for q in per])
        if k in ("gm_map", "gm_bpref"):
            want = math.exp(col.mean())
        elif k in ("num_ret", "num_rel", "num_rel_ret", "num_nonrel_judged_ret"):
            want = col.sum()
        elif k == "num_q":
            want = n
        else:
            want = col.mean()
        assert abs(v - want) <= 1e-12 * max(1.0, abs(want)), k


@pytest.fixture(scope="module")
def scifact_bm25(shared_data):
    from rank._io_corpus import read_corpus, read_queries
    from rank.retrieve import BM25

    path = shared_data("scifact")
    qrels = read_qrels(path / "qrels.tsv")
    ids, texts = read_corpus(path / "corpus.jsonl")
    qids, qtexts = read_queries(path / "queries.jsonl")
    keep = [i for i, q in enumerate(qids) if q in qrels]
    idx, scores = BM25().index(texts, ids, show_progress=False).search([qtexts[i] for i in keep], k=100)
    run = {qids[i]: {ids[d]: float(s) for d, s in zip(row_i, row_s) if d >= 0}
           for i, row_i, row_s in zip(keep, idx.tolist(), scores.tolist())}
    return qrels, run


def test_all_trec_on_scifact_bm25_matches_pytrec_eval(scifact_bm25):
    qrels, run = scifact_bm25
    ref = pytrec(qrels, run, {"all_trec"})
    ours = evaluate(qrels, run, "all_trec", per_query=True)
    assert len(ours) > 250
    assert_same(ours, ref)
    assert 0.5 < evaluate(qrels, run, "ndcg_cut.10")["ndcg_cut.10"] < 0.8  # a sane BM25 run


def test_max_docs_is_the_run_cut_in_trec_order(scifact_bm25):
    """-M n: pytrec_eval on each ranking cut to its n first documents (trec_eval's order)."""
    qrels, run = scifact_bm25
    run = {q: {d: round(s, 1) for d, s in docs.items()} for q, docs in run.items()}  # ties
    for m in (1, 7, 30):
        cut = {q: dict(sorted(docs.items(), key=lambda t: (t[1], t[0]), reverse=True)[:m]) for q, docs in run.items()}
        ref = pytrec(qrels, cut, {"all_trec"})
        assert_same(evaluate(qrels, run, "all_trec", per_query=True, max_docs=m), ref)


# --- -c: every qrels query, missing ones as empty rankings ----------------------------------------

def test_complete_scores_missing_queries_as_empty_rankings():
    qrels, run = tie_heavy_case(3)
    missing = [q for q in qrels if q not in run]
    assert missing
    normal = evaluate(qrels, run, "all_trec", per_query=True)
    full = evaluate(qrels, run, "all_trec", per_query=True, complete=True)
    assert set(full) == set(normal) | set(missing)
    for q in normal:
        assert full[q] == normal[q]
    for q in missing:
        R = sum(g >= 1 for g in qrels[q].values())
        for k, v in full[q].items():
            want = {"num_rel": R, "num_q": 1.0, "gm_map": math.log(1e-5), "gm_bpref": math.log(1e-5)}.get(k, 0.0)
            assert v == want, (q, k, v)
    means = evaluate(qrels, run, ["map", "P_5", "gm_map", "num_q", "num_rel"], complete=True)
    n = len(full)
    assert means["num_q"] == n
    assert means["map"] == pytest.approx(sum(full[q]["map"] for q in full) / n, abs=1e-15)
    assert means["P_5"] == pytest.approx(sum(normal[q]["P_5"] for q in normal) / n, abs=1e-15)
    assert means["gm_map"] == pytest.approx(math.exp(sum(full[q]["gm_map"] for q in full) / n), rel=1e-12)
    assert means["num_rel"] == sum(sum(g >= 1 for g in j.values()) for j in qrels.values())


# --- user gains: slow references written from trec_eval's definitions ---------------------------

def trec_order(docs):
    return [d for d, _ in sorted(docs.items(), key=lambda t: (t[1], t[0]), reverse=True)]


def ref_graded(judged, docs, gains, level=1):
    """nDCG, ndcg_cut.5, G, ndcg_rel and Rndcg of one query, from trec_eval's definitions."""
    def gain(grade):
        if grade is None or grade < 0:
            return 0.0
        return float(gains.get(grade, grade))

    ranked = [gain(judged.get(d)) for d in trec_order(docs)]
    ideal = sorted((gain(g) for g in judged.values() if g >= 0 and gain(g) > 0), reverse=True)
    n, m = len(ranked), len(ideal)
    R = sum(g >= level for g in judged.values())

    def dcg(k):  # first k retrieved
        return sum(x / math.log2(i + 2) for i, x in enumerate(ranked[:k]) if x != 0)

    def idcg(k):  # first k ideal
        return sum(x / math.log2(i + 2) for i, x in enumerate(ideal[:k]))

    ndcg = dcg(n) / idcg(m) if m else 0.0
    ndcg5 = dcg(5) / idcg(5) if m else 0.0
    # G: gain / log2(2 + cost so far - gain so far); cost counts each rank as at least 1
    g_sum, cost, got = 0.0, 0.0, 0.0
    for i, x in enumerate(ranked):
        cost += max(ideal[i] if i < m else 0.0, 1.0)
        got += x
        if x != 0:
            g_sum += x / math.log2(2 + cost - got)
    G = g_sum / sum(ideal) if m else 0.0
    # ndcg_rel: mean of nDCG at each relevant (gain > 0) retrieved document; each relevant one
    # not retrieved counts nDCG of the whole ranking
    at_rel = [dcg(i + 1) / idcg(i + 1) for i, x in enumerate(ranked) if x > 0]
    total = sum(at_rel) + (m - len(at_rel)) * (dcg(n) / idcg(m) if m else 0.0)
    ndcg_rel = total / m if m and total > 0 else 0.0
    # Rndcg: mean of nDCG just before each rank where the ideal gain changes (up to the first
    # rank of gain 0), plus the whole ranking when it runs more than one past the ideal
    points = []
    if R:
        ig = ideal + [0.0]
        points = [dcg(i) / idcg(i) for i in range(1, m + 1) if ig[i] != ig[i - 1]]
        if n > m + 1 and m:
            points.append(dcg(n) / idcg(m))
    Rndcg = sum(points) / len(points) if points else 0.0
    return {"ndcg": ndcg, "ndcg_cut_5": ndcg5, "G": G, "ndcg_rel": ndcg_rel, "Rndcg": Rndcg}


def test_graded_references_agree_with_pytrec_eval_on_default_gains():
    """The slow references encode trec_eval's definitions: same values as pytrec_eval."""
    qrels, run = tie_heavy_case(11)
    ref = pytrec(qrels, run, {"ndcg", "ndcg_cut.5", "G", "ndcg_rel", "Rndcg"})
    for q in ref:
        mine = ref_graded(qrels[q], run[q], {})
        for k, v in mine.items():
            assert abs(v - ref[q][k]) <= 1e-12, (q, k, v, ref[q][k])


@pytest.mark.parametrize("gains", [{1: 3, 2: 9}, {0: 0.5, 1: 1, 3: 2.0}, {2: 0, 6: 1}, {1: -1, 2: 4}])
def test_user_gains_match_the_reference(gains):
    qrels, run = tie_heavy_case(5)
    names = ["ndcg", "ndcg_cut.5", "G", "ndcg_rel", "Rndcg"]
    ours = evaluate(qrels, run, names, per_query=True, gains=gains)
    spec = ",".join(f"{k}={v}" for k, v in gains.items())
    inline = evaluate(qrels, run, [f"ndcg.{spec}", f"G.{spec}", f"Rndcg.{spec}", f"ndcg_rel.{spec}"], per_query=True)
    for q in ours:
        want = ref_graded(qrels[q], run[q], gains)
        for name, key in zip(names, ["ndcg", "ndcg_cut_5", "G", "ndcg_rel", "Rndcg"]):
            assert abs(ours[q][name] - want[key]) <= 1e-12, (q, name, ours[q][name], want[key])
        assert inline[q][f"ndcg.{spec}"] == ours[q]["ndcg"]
        assert inline[q][f"G.{spec}"] == ours[q]["G"]
        assert inline[q][f"Rndcg.{spec}"] == ours[q]["Rndcg"]
        assert inline[q][f"ndcg_rel.{spec}"] == ours[q]["ndcg_rel"]


def test_measure_parameters_match_pytrec_eval():
    qrels, run = tie_heavy_case(9)
    names = ["P.3,7", "recall.2,50", "iprec_at_recall.0.25,0.65", "Rprec_mult.0.5,1.5", "success.2,3",
             "relative_P.4,9", "map_cut.3,8", "ndcg_cut.2,4"]
    ref = pytrec(qrels, run, set(names))
    assert_same(evaluate(qrels, run, names, per_query=True), ref)
    # utility and set_F parameters, and 11pt_avg over chosen points, from their definitions
    ours = evaluate(qrels, run, ["utility.2,-0.5,-1,0", "set_F.0.25", "11pt_avg.0.2,0.5,0.8", "num_rel_ret",
                                 "num_ret", "num_rel", "iprec_at_recall.0.2,0.5,0.8"], per_query=True)
    for q, v in ours.items():
        a, n, R = v["num_rel_ret"], v["num_ret"], v["num_rel"]
        assert v["utility.2,-0.5,-1,0"] == pytest.approx(2 * a - 0.5 * (n - a) - (R - a), abs=1e-12)
        P, Rc = (a / n if n else 0.0), (a / R if R else 0.0)
        want_f = 1.25 * P * Rc / (0.25 * P + Rc) if a else 0.0
        assert v["set_F.0.25"] == pytest.approx(want_f, abs=1e-12)
        pts = [v[f"iprec_at_recall_{p:3.2f}"] for p in (0.2, 0.5, 0.8)]
        assert v["11pt_avg.0.2,0.5,0.8"] == pytest.approx(sum(pts) / 3, abs=1e-12)


# --- names -------------------------------------------------------------------------------------

def test_every_spelling_gives_the_same_value_under_the_key_given():
    qrels, run = tie_heavy_case(2)
    groups = [
        ["ndcg@10", "ndcg_cut.10", "ndcg_cut_10", "nDCG@10", "NDCG@10"],
        ["precision@5", "P.5", "P_5", "P@5", "p@5"],
        ["recall@100", "recall.100", "recall_100", "R@100", "Recall@100"],
        ["map", "AP", "MAP"], ["map@10", "map_cut.10", "map_cut_10", "AP@10"],
        ["recip_rank", "mrr", "RR", "MRR"], ["mrr@3", "RR@3"],
        ["r_precision", "Rprec", "R-Precision"], ["hit_rate@5", "success.5", "success_5", "Success@5"],
        ["num_ret", "NumRet"], ["num_rel_ret", "NumRelRet"], ["set_P", "SetP"], ["set_F", "SetF"],
        ["iprec_at_recall.0.5", "iprec_at_recall_0.50", "IPrec@0.5"],
        ["recall", "set_recall", "R"],
    ]
    names = [n for g in groups for n in g]
    ours = evaluate(qrels, run, names)
    assert list(ours) == names
    for g in groups:
        assert len({ours[n] for n in g}) == 1, {n: ours[n] for n in g}


def test_families_expand_to_trec_eval_keys():
    qrels, run = tie_heavy_case(2)
    got = evaluate(qrels, run, ["P", "success", "iprec_at_recall", "Rprec_mult", "ndcg_cut", "P.5,10"])
    assert [k for k in got if k.startswith("P_")] == [f"P_{k}" for k in (5, 10, 15, 20, 30, 100, 200, 500, 1000)]
    assert {k for k in got if k.startswith("success")} == {"success_1", "success_5", "success_10"}
    assert "iprec_at_recall_0.00" in got and "iprec_at_recall_1.00" in got and "Rprec_mult_0.20" in got
    assert "ndcg_cut_1000" in got
    ref = pytrec(qrels, run, {"P", "success", "iprec_at_recall", "Rprec_mult", "ndcg_cut"})
    assert_same(evaluate(qrels, run, ["P", "success", "iprec_at_recall", "Rprec_mult", "ndcg_cut"], per_query=True), ref)
    assert set(evaluate(qrels, run, "official")) == {"num_q", "num_ret", "num_rel", "num_rel_ret", "map", "gm_map",
                                                     "Rprec", "bpref", "recip_rank"} | {
        k for k in got if k.startswith(("P_", "iprec_at_recall_"))}
    assert len(ALL_TREC) == 32


def test_unknown_names_suggest_the_nearest_and_list_valid_ones():
    qrels, run = tie_heavy_case(1)
    for bad, near in [("ndgc@10", "ndcg"), ("ndcg_ct.10", "ndcg_cut"), ("precison@5", "precision"), ("bpre", "bpref"),
                      ("gm_mapp", "gm_map")]:
        with pytest.raises(UnknownMethodError, match=rf"^metrics must be one of .*all_trec.*did you mean {near!r}"):
            evaluate(qrels, run, bad)
    with pytest.raises(UnknownMethodError, match="text"):
        evaluate(qrels, run, "runid")
    for bad in ("ndcg@" + "9" * 40, "P.0", "P.5,5", "iprec_at_recall.1.5", "bpref@5", "G@5", "utility.1,2",
                "ndcg.1=x", "ndcg.-1=2", "precision", "P.", "set_F.-1"):
        with pytest.raises(InvalidValueError):
            evaluate(qrels, run, bad)
    for bad in ({-1: 2.0}, {1: float("nan")}, {"a": 1}, [1, 2]):
        with pytest.raises(InvalidValueError):
            evaluate(qrels, run, "ndcg", gains=bad)
    for kw in ({"relevance_level": -1}, {"max_docs": 0}, {"max_docs": 1.5}, {"complete": "yes"}):
        with pytest.raises(InvalidValueError):
            evaluate(qrels, run, "map", **kw)


# --- bad values, large grades --------------------------------------------------------------------

def test_grades_beyond_int32_are_not_truncated():
    assert evaluate({"q": {"d1": 2 ** 32, "d2": 1}}, {"q": {"d1": 2.0, "d2": 1.0}}, ["precision@1"]) == {"precision@1": 1.0}
    big = 2 ** 40
    got = evaluate({"q": {"a": big, "b": 1}}, {"q": {"a": 1.0, "b": 2.0}}, ["ndcg", "num_rel"], relevance_level=2)
    assert got["num_rel"] == 1.0
    assert got["ndcg"] == pytest.approx((1 + big / math.log2(3)) / (big + 1 / math.log2(3)), rel=1e-12)
    with pytest.raises(DTypeError, match="int64"):
        evaluate({"q": {"a": 2 ** 70}}, {"q": {"a": 1.0}}, "map")
    with pytest.raises(NonFiniteError, match="'b'"):
        evaluate({"q": {"a": 1}}, {"q": {"a": 1.0, "b": float("nan")}}, "map")
    with pytest.raises(DTypeError, match="not a str"):
        evaluate({"q": {"a": 1}}, {"q": {1: 1.0}}, "map")


# --- the tie rule ----------------------------------------------------------------------------------

def test_ties_broken_by_id_bytes_descending_in_the_kernel():
    """Ids sharing their first 8 bytes, ids that are prefixes of others, non-ASCII ids, -0.0 vs
    0.0 and +-inf: the kernel's order is Python's sort on (score, id) descending, which is
    trec_eval's strcmp order on UTF-8."""
    rng = np.random.default_rng(0)
    pool = ["abcdefgh", "abcdefgh1", "abcdefgh2", "abcdefgh10", "abcdefg", "a", "b", "é", "z", "ab\u00e9", "ab\u4e2d",
            "abcdefghijklmnop", "abcdefghijklmnoq", "\U0001f600", "A", "abcdefgh\x00"]
    values = [0.0, -0.0, 1.0, float("inf"), float("-inf"), 2.5]
    run = {}
    for q in range(200):
        ids = rng.choice(pool, int(rng.integers(1, len(pool))), replace=False)
        run[f"q{q}"] = {str(d): float(rng.choice(values)) for d in ids}
    qrels = {q: {d: 1 for d in docs} for q, docs in run.items()}
    qids, offsets, scores, rels, ids, qoff, qgr = kernel.encode_run(run, qrels)
    perm = np.empty(scores.shape[0], np.int64)
    kernel.sort_run_segments(offsets, scores, ids, perm, 2)
    for i, q in enumerate(qids):
        docs = list(run[q])
        got = [docs[p - offsets[i]] for p in perm[offsets[i]:offsets[i + 1]]]
        want = [d for d, _ in sorted(run[q].items(), key=lambda t: (t[1] + 0.0, t[0]), reverse=True)]
        assert got == want, q
    # the compatibility entry point used by fusion gives the same order
    perm2 = sort_run(offsets, scores, lambda s: list(run[qids[s]]), 2)
    assert np.array_equal(perm, perm2)


def test_ties_agree_with_pytrec_eval_on_shared_prefixes():
    rng = np.random.default_rng(4)
    run, qrels = {}, {}
    for q in range(50):
        ids = [f"clueweb12-0000tw-{int(x):05d}" for x in rng.choice(300, 40, replace=False)]
        run[f"q{q}"] = {d: float(rng.integers(0, 3)) for d in ids}
        qrels[f"q{q}"] = {d: int(rng.integers(0, 3)) for d in ids[:20]}
    assert_same(evaluate(qrels, run, ["map", "ndcg_cut_10", "recip_rank", "P_5"], per_query=True),
                pytrec(qrels, run, {"map", "ndcg_cut.10", "recip_rank", "P.5"}))


# --- trec_eval's output format --------------------------------------------------------------------

def test_format_trec_eval_lines():
    qrels = {"q2": {"a": 1, "b": 0}, "q10": {"c": 2}}
    run = {"q2": {"a": 0.5, "b": 0.9}, "q10": {"c": 1.0, "x": 3.0}}
    text = format_trec_eval(qrels, run, ["num_q", "num_ret", "map", "gm_map", "P.1,2", "ndcg@10"], per_query=True)
    lines = text.splitlines()
    per = evaluate(qrels, run, ["map", "ndcg@10"], per_query=True)
    # queries in byte order of their ids (q10 before q2), then the summary under "all"
    assert lines[0] == f"{'num_ret':<22}\tq10\t2"
    assert lines[1] == f"{'map':<22}\tq10\t{per['q10']['map']:6.4f}"
    assert lines[2] == "P_1                   \tq10\t0.0000"
    assert lines[4] == f"ndcg_cut_10           \tq10\t{per['q10']['ndcg@10']:6.4f}"
    assert [ln.split("\t")[1] for ln in lines] == ["q10"] * 5 + ["q2"] * 5 + ["all"] * 7
    assert lines[10] == "num_q                 \tall\t2"
    assert lines[11] == "num_ret               \tall\t4"
    assert lines[13].startswith("gm_map                \tall\t")
    assert all(len(ln.split("\t")[0]) == 22 for ln in lines)


def test_cli_trec_eval_format(tmp_path):
    (tmp_path / "qrels.txt").write_text("# comment\nq1 0 d1 1\nq1 0 d2 2\nq2 0 d3 1\nq3 0 d9 1\n")
    (tmp_path / "run.txt").write_text("q1 Q0 d2 1 2.0 t\nq1\tQ0\td1\t2\t2.0\tt\textra\nq2 Q0 d4 1 1 t\nq2 Q0 d3 2 0.5 t\n")
    cmd = [sys.executable, "-m", "rank.cli", "eval", str(tmp_path / "qrels.txt"), str(tmp_path / "run.txt"),
           "--format", "trec_eval", "-q", "-c", "-M", "1", "-m", "P.1", "num_rel_ret", "ndcg.1=3,2=9"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    assert out == format_trec_eval(read_qrels(tmp_path / "qrels.txt"),
                                   {"q1": {"d2": 2.0, "d1": 2.0}, "q2": {"d4": 1.0, "d3": 0.5}},
                                   ["P.1", "num_rel_ret", "ndcg.1=3,2=9"], per_query=True, complete=True, max_docs=1)
    lines = out.splitlines()
    assert lines[0] == "P_1                   \tq1\t1.0000"  # d2 wins the tie by id
    assert "num_rel_ret           \tall\t1" in lines
    assert [ln.split("\t")[1] for ln in lines].count("q3") == 3  # -c: the query without a ranking
    assert lines[-1].startswith("ndcg_1=3,2=9          \tall\t")


def test_cli_bad_measure_and_options_are_user_errors(tmp_path):
    (tmp_path / "qrels.txt").write_text("q1 0 d1 1\n")
    (tmp_path / "run.txt").write_text("q1 Q0 d1 1 1.0 t\n")
    base = [sys.executable, "-m", "rank.cli", "eval", str(tmp_path / "qrels.txt"), str(tmp_path / "run.txt")]
    for extra, needle in [(["-m", "ndcg@" + "9" * 30], "ndcg@"), (["-m", "ndgc@10"], "did you mean 'ndcg'"),
                          (["--gains", "1=x"], "gains"), (["--gains=-1=2"], "relevance level"),
                          (["--relevance-level=-3"], "relevance_level")]:
        res = subprocess.run(base + extra, capture_output=True, text=True)
        assert res.returncode == 2, (extra, res.stderr)
        assert needle in res.stderr and "Traceback" not in res.stderr, (extra, res.stderr)
