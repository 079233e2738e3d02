"""Evaluation metrics against pytrec_eval (trec_eval itself) on random runs full of ties, graded
and negative grades, empty queries, a real TF-IDF run over scifact; significance tests against
SciPy and exact enumeration; bad input."""
import itertools
import json
import math
import re

import numpy as np
import pytest

import rank
from rank.errors import DTypeError, InvalidValueError, NonFiniteError, ShapeError, UnknownMethodError
from rank.evaluate import compare, evaluate, read_qrels

pytrec_eval = pytest.importorskip("pytrec_eval")

# our name -> pytrec_eval measure
TREC = {
    "ndcg": "ndcg", "ndcg@5": "ndcg_cut.5", "ndcg@10": "ndcg_cut.10", "map": "map", "map@10": "map_cut.10",
    "recip_rank": "recip_rank", "mrr": "recip_rank", "precision@5": "P.5", "precision@20": "P.20",
    "recall@10": "recall.10", "recall@100": "recall.100", "r_precision": "Rprec", "bpref": "bpref",
    "hit_rate@1": "success.1", "hit_rate@5": "success.5",
}


def random_case(seed, n_queries=120, n_docs=80):
    """Run with scores drawn from few values (many ties), graded qrels (some negative), empty and
    missing queries on both sides."""
    rng = np.random.default_rng(seed)
    qrels, run = {}, {}
    for q in range(n_queries):
        qid = f"q{q}"
        if rng.random() < 0.9:
            judged = rng.choice(n_docs, int(rng.integers(0, 25)), replace=False)
            qrels[qid] = {f"d{j}": int(rng.integers(-1, 4)) for j in judged}
        if rng.random() < 0.9:
            n = int(rng.integers(0, 60))
            levels = rng.choice([2, 5, 50])
            ids = rng.choice(n_docs, n, replace=False)
            vals = rng.integers(0, levels, n) / 4.0
            run[qid] = {f"d{j}": (float(v) if rng.random() < 0.8 else int(v * 4)) for j, v in zip(ids, vals)}
    run["extra"] = {"d1": 1.0}
    return qrels, run


def trec_ref(qrels, run, measures, level=1):
    ev = pytrec_eval.RelevanceEvaluator(qrels, set(measures), relevance_level=level)
    return ev.evaluate(run)


def assert_matches(ours, ref, names):
    assert set(ours) == set(ref)
    for q in ref:
        for name in names:
            key = TREC[name].replace(".", "_")
            assert abs(ours[q][name] - ref[q][key]) <= 1e-9, (q, name, ours[q][name], ref[q][key])


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("level", [1, 2])
def test_every_metric_matches_pytrec_eval(seed, level):
    qrels, run = random_case(seed)
    names = list(TREC)
    ref = trec_ref(qrels, run, {TREC[n] for n in names}, level)
    ours = evaluate(qrels, run, names, per_query=True, relevance_level=level, n_threads=2)
    assert_matches(ours, ref, names)
    means = evaluate(qrels, run, names, relevance_level=level)
    for name in names:
        key = TREC[name].replace(".", "_")
        assert abs(means[name] - np.mean([ref[q][key] for q in ref])) <= 1e-9


def trec_order(docs):
    return sorted(docs.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)


@pytest.mark.parametrize("seed", range(3))
def test_cutoff_metrics_trec_eval_lacks(seed):
    """mrr@k = recip_rank of the run cut at k; ndcg_exp = ndcg over qrels with gains 2^g - 1."""
    qrels, run = random_case(seed + 10)
    for k in (1, 3, 10):
        cut = {q: dict(trec_order(d)[:k]) for q, d in run.items()}
        ref = trec_ref(qrels, cut, {"recip_rank"})
        ours = evaluate(qrels, run, [f"mrr@{k}"], per_query=True)
        for q in ref:
            assert abs(ours[q][f"mrr@{k}"] - ref[q]["recip_rank"]) <= 1e-12
    exp_qrels = {q: {d: (2 ** g - 1 if g > 0 else g) for d, g in j.items()} for q, j in qrels.items()}
    ref = trec_ref(exp_qrels, run, {"ndcg_cut.10", "ndcg"})
    ours = evaluate(qrels, run, ["ndcg_exp@10", "ndcg_exp"], per_query=True)
    for q in ref:
        assert abs(ours[q]["ndcg_exp@10"] - ref[q]["ndcg_cut_10"]) <= 1e-9
        assert abs(ours[q]["ndcg_exp"] - ref[q]["ndcg"]) <= 1e-9


def test_ties_broken_by_docid_descending():
    qrels = {"q": {"a": 1}}
    run = {"q": {"a": 1.0, "b": 1.0, "c": 1.0}}  # trec order: c, b, a
    assert evaluate(qrels, run, "mrr") == {"mrr": 1 / 3}
    run = {"q": {"b": 1.0, "a10": 1.0, "a9": 1.0}}  # string order: b > a9 > a10
    qrels = {"q": {"a10": 1}}
    assert evaluate(qrels, run, "mrr") == {"mrr": 1 / 3}


def test_queries_handled_like_pytrec_eval():
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}, "q3": {}, "q4": {"c": 0}}
    run = {"q1": {"a": 1.0}, "q3": {"x": 1.0}, "q4": {}, "q5": {"a": 1.0}}
    ours = evaluate(qrels, run, ["map", "ndcg@3"], per_query=True)
    ref = trec_ref(qrels, run, {"map", "ndcg_cut.3"})
    assert set(ours) == set(ref) == {"q1", "q4"}  # q2 absent from the run, q3 unjudged, q5 not in qrels
    assert ours["q4"] == {"map": 0.0, "ndcg@3": 0.0}
    assert evaluate(qrels, run, "map") == {"map": 0.5}


def test_threads_and_long_runs_agree():
    rng = np.random.default_rng(5)
    run = {f"q{q}": {f"d{i}": float(rng.integers(0, 30)) for i in rng.choice(5000, 1500, replace=False)}
           for q in range(40)}
    qrels = {f"q{q}": {f"d{i}": int(rng.integers(0, 3)) for i in rng.choice(5000, 300, replace=False)}
             for q in range(40)}
    names = ["ndcg@10", "map", "recall@1000", "bpref", "r_precision"]
    one = evaluate(qrels, run, names, per_query=True, n_threads=1)
    assert one == evaluate(qrels, run, names, per_query=True, n_threads=2)
    assert_matches(one, trec_ref(qrels, run, {TREC[n] for n in names if n in TREC} | {"recall.1000"}),
                   [n for n in names if n != "recall@1000"])


# --- a real run: TF-IDF over scifact ------------------------------------------------------------

def _tokens(text):
    return re.findall(r"[a-z0-9]+", text.lower())


def tfidf_run(path, depth=100):
    """A deterministic TF-IDF (log tf, cosine-normalised) run over a BEIR collection."""
    sparse = pytest.importorskip("scipy.sparse")
    docs, queries = [], {}
    with open(path / "corpus.jsonl") as f:
        for line in f:
            d = json.loads(line)
            docs.append((d["_id"], _tokens(d.get("title", "") + " " + d.get("text", ""))))
    with open(path / "queries.jsonl") as f:
        for line in f:
            d = json.loads(line)
            queries[d["_id"]] = _tokens(d["text"])
    vocab = {}

    def matrix(token_lists):
        rows, cols, vals = [], [], []
        for i, toks in enumerate(token_lists):
            counts = {}
            for t in toks:
                counts[t] = counts.get(t, 0) + 1
            for t, c in counts.items():
                if t in vocab:
                    rows.append(i)
                    cols.append(vocab[t])
                    vals.append(1.0 + math.log(c))
        return sparse.csr_matrix((vals, (rows, cols)), shape=(len(token_lists), len(vocab)))

    for _, toks in docs:
        for t in toks:
            vocab.setdefault(t, len(vocab))
    dmat = matrix([t for _, t in docs])
    df = np.bincount(dmat.indices, minlength=len(vocab))
    idf = np.log(len(docs) / np.maximum(df, 1))
    dmat = dmat.multiply(idf).tocsr()
    norms = np.sqrt(np.asarray(dmat.multiply(dmat).sum(axis=1)).ravel())
    dmat = sparse.diags(1.0 / np.maximum(norms, 1e-12)) @ dmat
    qids = list(queries)
    scores = (matrix([queries[q] for q in qids]) @ dmat.T).toarray()
    run = {}
    for i, q in enumerate(qids):
        top = np.argsort(-scores[i], kind="stable")[:depth]
        run[q] = {docs[j][0]: round(float(scores[i, j]), 3) for j in top}  # rounding makes ties
    return run


@pytest.mark.slow
def test_real_run_over_scifact_matches_pytrec_eval(shared_data):
    path = shared_data("scifact")
    qrels = read_qrels(path / "qrels.tsv")
    run = tfidf_run(path)
    names = list(TREC)
    ref = trec_ref(qrels, run, {TREC[n] for n in names})
    ours = evaluate(qrels, run, names, per_query=True)
    assert len(ours) == len(qrels) > 250
    assert_matches(ours, ref, names)
    mean = evaluate(qrels, run, ["ndcg@10"])["ndcg@10"]
    assert 0.3 < mean < 0.9  # a sane retrieval run, not noise


# --- significance tests --------------------------------------------------------------------------

def _runs_for_compare(seed, n=30):
    rng = np.random.default_rng(seed)
    qrels = {f"q{q}": {f"d{i}": int(rng.integers(0, 3)) for i in range(10)} for q in range(n)}
    runs = {name: {f"q{q}": {f"d{i}": float(rng.random() + shift * (qrels[f'q{q}'][f'd{i}'])) for i in range(10)}
                   for q in range(n)}
            for name, shift in (("base", 0.0), ("better", 0.4), ("other", 0.1))}
    return qrels, runs


def test_paired_t_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    qrels, runs = _runs_for_compare(0)
    res = compare(qrels, runs, ["ndcg@5", "map"], test="paired_t")
    per = {n: evaluate(qrels, r, ["ndcg@5", "map"], per_query=True) for n, r in runs.items()}
    qs = sorted(per["base"])
    for name in ("better", "other"):
        for m in ("ndcg@5", "map"):
            a = [per[name][q][m] for q in qs]
            b = [per["base"][q][m] for q in qs]
            assert res.means[name][m] == pytest.approx(np.mean(a), abs=1e-12)
            assert res.p_values[name][m] == pytest.approx(stats.ttest_rel(a, b).pvalue, rel=1e-9, abs=1e-14)
    assert math.isnan(res.p_values["base"]["map"])
    assert "better" in str(res) and "map" in str(res)


def test_randomization_test_close_to_exact_enumeration_and_seeded():
    qrels, runs = _runs_for_compare(1, n=12)
    two = {"base": runs["base"], "other": runs["other"]}
    res = compare(qrels, two, ["map"], test="randomization", n_permutations=20000, seed=3)
    per = {n: evaluate(qrels, r, ["map"], per_query=True) for n, r in two.items()}
    d = np.array([per["other"][q]["map"] - per["base"][q]["map"] for q in per["base"]])
    signs = np.array(list(itertools.product([-1, 1], repeat=d.shape[0])))
    exact = np.mean(np.abs(signs @ d) >= abs(d.sum()) - 1e-12)
    assert abs(res.p_values["other"]["map"] - exact) < 0.015
    again = compare(qrels, two, ["map"], test="randomization", n_permutations=20000, seed=3)
    assert again.p_values == res.p_values


def test_compare_errors():
    qrels, runs = _runs_for_compare(2)
    with pytest.raises(UnknownMethodError, match="paired_t"):
        compare(qrels, runs, "map", test="wilcoxon")
    with pytest.raises(ShapeError):
        compare(qrels, [runs["base"]], "map")
    with pytest.raises(InvalidValueError):
        compare(qrels, runs, "map", test="randomization", n_permutations=0)


# --- bad input -----------------------------------------------------------------------------------

def test_bad_input():
    qrels = {"q": {"a": 1}}
    run = {"q": {"a": 1.0}}
    with pytest.raises(ShapeError, match="empty run"):
        evaluate(qrels, {}, "map")
    with pytest.raises(ShapeError, match="no query"):
        evaluate(qrels, {"other": {"a": 1.0}}, "map")
    with pytest.raises(DTypeError, match="'a'"):
        evaluate(qrels, {"q": {"a": "high"}}, "map")
    with pytest.raises(DTypeError):
        evaluate(qrels, {"q": {"a": None}}, "map")
    with pytest.raises(DTypeError):
        evaluate(qrels, {"q": [("a", 1.0)]}, "map")
    with pytest.raises(NonFiniteError, match="'b'"):
        evaluate(qrels, {"q": {"a": 1.0, "b": float("nan")}}, "map")
    # +-inf scores are ranked first / last, as trec_eval does (NaN has no order)
    assert evaluate(qrels, {"q": {"a": float("-inf"), "b": float("inf")}}, "mrr") == {"mrr": 0.5}
    with pytest.raises(DTypeError, match="grade"):
        evaluate({"q": {"a": 0.5}}, run, "map")
    with pytest.raises(UnknownMethodError, match=r"ndcg\[@k\].*bpref.*; got 'ndgc@10' \(did you mean 'ndcg'"):
        evaluate(qrels, run, ["map", "ndgc@10"])
    for bad in ("ndcg@0", "map@-3", "recall@x", "precision", "bpref@5"):
        with pytest.raises(InvalidValueError):
            evaluate(qrels, run, bad)
    with pytest.raises(InvalidValueError):
        evaluate(qrels, run, [])
    with pytest.raises(InvalidValueError):
        evaluate(qrels, run, "map", relevance_level=1.5)
    with pytest.raises(InvalidValueError):
        evaluate(qrels, run, "map", n_threads=0)
    with pytest.raises(DTypeError):
        evaluate(qrels, [("q", {"a": 1.0})], "map")


def test_integer_and_numpy_scores_accepted():
    qrels = {"q": {"a": 1, "b": 2}}
    ref = evaluate(qrels, {"q": {"a": 2.0, "b": 1.0, "c": 3.0}}, ["ndcg", "map"])
    assert evaluate(qrels, {"q": {"a": 2, "b": np.float32(1), "c": np.int64(3)}}, ["ndcg", "map"]) == ref
    assert evaluate({"q": {"a": np.int64(1), "b": 2.0}}, {"q": {"a": 2.0, "b": 1.0, "c": 3.0}}, ["ndcg", "map"]) == ref


def test_concurrent_callers_agree(run_threads):
    qrels, run = random_case(42)
    want = evaluate(qrels, run, list(TREC), per_query=True)
    results = run_threads(lambda i: evaluate(qrels, run, list(TREC), per_query=True, n_threads=2))
    assert all(r == want for r in results)


def test_public_names_are_documented():
    for name in ("evaluate", "compare", "read_qrels", "read_run", "write_run", "fuse", "fuse_scores"):
        assert callable(getattr(rank, name)) and getattr(rank, name).__doc__
