"""Hypothesis suite: generated valid inputs must give the answer of a slow, obviously correct
reference; generated invalid inputs (wrong types, dtypes, shapes, strides, NaN/inf, empty,
huge, out-of-range ids and sizes) must raise a ``rank.errors`` exception or give a valid answer.

The invalid-input fuzz runs in a child process (a crash fails the test and names the last
case instead of killing pytest); the child prints one JSON summary: cases, clean errors,
answers, unclean errors. Example counts stay small by default (CI cost); set
RANK_FUZZ_EXAMPLES to run more.
"""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.special import expit

import rank
from rank.errors import RankError
from rank.learn import listnet, ranknet
from rank.retrieve import BM25, SparseIndex, Tokenizer
from rank.retrieve.tokenizer import STOPWORDS_EN

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = int(os.environ.get("RANK_FUZZ_EXAMPLES", "40"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))

finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False, width=64)


# --- slow references -----------------------------------------------------------------------------

def _pav_nonincreasing(y):
    blocks = []  # [sum, count]
    for v in y:
        blocks.append([v, 1])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] <= blocks[-1][0] / blocks[-1][1]:
            s, c = blocks.pop()
            blocks[-1][0] += s
            blocks[-1][1] += c
    return np.concatenate([[s / c] * c for s, c in blocks])


def _project(z, w):
    """Euclidean projection of z onto the permutahedron of w (Blondel et al. 2020, via PAV)."""
    order = np.argsort(-z, kind="stable")
    out = np.empty_like(z)
    out[order] = z[order] - _pav_nonincreasing(z[order] - np.sort(w)[::-1])
    return out


def ref_soft_rank(x, eps):
    return _project(np.asarray(x, float) / eps, np.arange(len(x), 0, -1.0))


def ref_soft_sort(x, eps):
    return _project(np.arange(len(x), 0, -1.0) / eps, np.asarray(x, float))[::-1]


def ref_sigmoid_rank(x, t):
    x = np.asarray(x, float)
    return np.array([1.0 + sum(expit((x[i] - x[j]) / t) for j in range(len(x)) if j != i) for i in range(len(x))])


def ref_bm25(docs, query, k1=1.2, b=0.75):
    """Lucene BM25 of every document for `query` (token ids), float64, term by term."""
    n = len(docs)
    dl = np.array([len(d) for d in docs], float)
    avgdl = dl.mean()
    out = np.zeros(n)
    for t in query:
        tf = np.array([d.count(t) for d in docs], float)
        df = int((tf > 0).sum())
        if df == 0:
            continue
        idf = math.log(1.0 + (n - df + 0.5) / (df + 0.5))
        out += idf * tf / (k1 * (1.0 - b + b * dl / avgdl) + tf)
    return out


def ref_topk(scores, k):
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:k]
    return order


def ref_ranknet(s, labels, sizes, sigma):
    loss, grad, start = 0.0, np.zeros(len(s)), 0
    for g in sizes:
        for i in range(start, start + g):
            for j in range(start, start + g):
                if labels[i] > labels[j]:
                    d = sigma * (s[i] - s[j])
                    loss += math.log1p(math.exp(-d)) if d > -30 else -d + math.log1p(math.exp(d))
                    p = expit(-d)
                    grad[i] -= sigma * p
                    grad[j] += sigma * p
        start += g
    return loss, grad


def ref_listnet(s, labels, sizes):
    loss, grad, start = 0.0, np.zeros(len(s)), 0
    for g in sizes:
        sl = slice(start, start + g)
        y = np.exp(labels[sl] - labels[sl].max())
        y /= y.sum()
        q = np.exp(s[sl] - s[sl].max())
        q /= q.sum()
        loss += -(y * np.log(q)).sum()
        grad[sl] = q - y
        start += g
    return loss, grad


def ref_tokens(text, min_length=2):
    words, cur = [], []
    for ch in text.lower() + " ":
        if ch.isalnum():
            cur.append(ch)
        else:
            if cur:
                words.append("".join(cur))
            cur = []
    return [w for w in words if len(w) >= min_length and w not in STOPWORDS_EN]


# --- valid inputs: answers equal the references ---------------------------------------------------

@FUZZ
@given(st.lists(finite, min_size=1, max_size=9), st.floats(1e-3, 1e3))
def test_soft_rank_and_sort_equal_the_pav_reference(x, eps):
    scale = max(1.0, max(abs(v) for v in x))
    np.testing.assert_allclose(rank.soft_rank(x, regularization_strength=eps), ref_soft_rank(x, eps),
                               rtol=1e-9, atol=1e-9 * scale / eps + 1e-9)
    np.testing.assert_allclose(rank.soft_sort(x, regularization_strength=eps), ref_soft_sort(x, eps),
                               rtol=1e-9, atol=1e-9 * scale)
    x32 = np.asarray(x, np.float32)
    np.testing.assert_allclose(rank.soft_rank(x32, regularization_strength=eps),
                               ref_soft_rank(x32.astype(float), eps), rtol=1e-4, atol=1e-3)


@FUZZ
@given(st.lists(st.floats(-50, 50), min_size=1, max_size=8), st.floats(0.05, 20))
def test_sigmoid_ranks_equal_the_pairwise_reference(x, t):
    np.testing.assert_allclose(rank.soft_rank(x, method="sigmoid", temperature=t), ref_sigmoid_rank(x, t),
                               rtol=1e-9, atol=1e-9)


@FUZZ
@given(st.lists(st.lists(st.integers(0, 12), max_size=8), min_size=1, max_size=10),
       st.lists(st.lists(st.integers(0, 15), max_size=4), min_size=1, max_size=4), st.integers(1, 12))
def test_bm25_equals_the_formula(docs, queries, k):
    if not any(docs):
        docs = docs + [[0]]
    bm = BM25().index(docs, show_progress=False)
    idx, scores = bm.search(queries, k=k, n_threads=2)
    for qi, q in enumerate(queries):
        ref = ref_bm25(docs, q)
        np.testing.assert_allclose(bm.get_scores(q), ref, rtol=2e-5, atol=1e-6)
        np.testing.assert_allclose(scores[qi], np.sort(ref)[::-1][:idx.shape[1]], rtol=2e-5, atol=1e-6)
        got = ref[idx[qi]]
        assert np.all(np.diff(got) <= 1e-5 * max(1.0, got.max()))  # sorted by score (float32 ties aside)
    ids = np.concatenate([np.asarray(d, np.int64) for d in docs]) if any(docs) else np.zeros(0, np.int64)
    offsets = np.concatenate([[0], np.cumsum([len(d) for d in docs])]).astype(np.uint64)  # any integer dtype
    packed = BM25().index((ids, offsets), show_progress=False)
    assert [a.tolist() for a in packed.search(queries, k=k)] == [a.tolist() for a in (idx, scores)]


@FUZZ
@given(st.lists(st.dictionaries(st.integers(0, 30), st.floats(-5, 5), max_size=6), min_size=1, max_size=8),
       st.lists(st.dictionaries(st.integers(0, 40), st.floats(-5, 5), min_size=1, max_size=4), min_size=1,
                max_size=3))
def test_sparse_equals_dense_dot_products(docs, queries):
    dense = np.zeros((len(docs), 41))
    for i, d in enumerate(docs):
        for t, w in d.items():
            dense[i, t] = np.float32(w)
    index = SparseIndex().add(docs)
    for q in queries:
        qv = np.zeros(41)
        for t, w in q.items():
            qv[t] = np.float32(w)
        np.testing.assert_allclose(index.get_scores(q), dense @ qv, rtol=1e-5, atol=1e-5)


@FUZZ
@given(st.lists(st.integers(1, 5), min_size=1, max_size=4).flatmap(
    lambda sizes: st.tuples(st.just(sizes), st.lists(st.floats(-8, 8), min_size=sum(sizes), max_size=sum(sizes)),
                            st.lists(st.integers(0, 3), min_size=sum(sizes), max_size=sum(sizes)))),
       st.floats(0.1, 4.0))
def test_ranknet_and_listnet_equal_the_pair_loops(case, sigma):
    sizes, s, labels = case
    s, labels = np.asarray(s), np.asarray(labels)
    loss, grad = ref_ranknet(s, labels, sizes, sigma)
    res = ranknet(s, labels, group=np.asarray(sizes, np.uint64), sigma=sigma)  # unsigned sizes work too
    assert math.isclose(res.loss, loss, rel_tol=1e-9, abs_tol=1e-9)
    np.testing.assert_allclose(res.grad, grad, rtol=1e-9, atol=1e-12)
    loss, grad = ref_listnet(s, labels.astype(float), sizes)
    res = listnet(s, labels, group=sizes)
    assert math.isclose(res.loss, loss, rel_tol=1e-9, abs_tol=1e-9)
    np.testing.assert_allclose(res.grad, grad, rtol=1e-9, atol=1e-12)


@FUZZ
@given(st.lists(st.text(alphabet=st.characters(codec="utf-8"), max_size=30), min_size=1, max_size=6))
def test_tokenizer_equals_the_character_loop(texts):
    # the scanner of indexes saved before scripts were handled (no stemming, runs of isalnum);
    # today's scanner (marks, CJK/Thai bigrams) has its own reference in tests/test_tokenizer.py
    tok = Tokenizer.from_config({"stopwords": "en", "stemmer": None}, [])
    ids = tok.tokenize(texts)
    terms = tok.terms
    assert [[terms[i] for i in doc] for doc in ids] == [ref_tokens(t) for t in texts]


# --- invalid inputs: a rank.errors exception or a valid answer, in a child process ----------------

def _garbage():
    """Values that are wrong somewhere: types, dtypes, shapes, strides, NaN/inf, empty, huge."""
    arrays = st.sampled_from([
        np.zeros(0), np.zeros((0, 3)), np.array(np.nan), np.array([np.nan, 1.0]), np.array([np.inf, 0.0]),
        np.array([1e308, -1e308, 5e-324]), np.array([2**63], np.uint64), np.array([-1, 2**31], np.int64),
        np.array([1 + 2j]), np.array(["a", "b"]), np.array([None, 1], dtype=object), np.array([True, False]),
        np.ones((2, 3, 4)), np.arange(12.0).reshape(3, 4)[:, ::2], np.asfortranarray(np.ones((3, 4))),
        np.ones(5, np.float16), np.ones((3, 4), np.float32)[::2], np.ones(3, np.int8),
    ])
    scalars = st.sampled_from([None, "1", b"x", True, -1, 0, 2**63, -2**63, 2**40, 1e-320, float("nan"),
                               float("inf"), -float("inf"), 1.5, [], {}, [[1], [2, 3]], object(), (1, 2, 3)])
    return st.one_of(arrays, scalars, st.lists(st.one_of(st.integers(), st.floats(), st.text(max_size=3)),
                                                max_size=4))


def _calls():
    """(label, function of one garbage value) for each argument of each public function."""
    ok_x = np.array([[0.3, 1.0, -2.0], [1.0, 1.0, 0.5]])
    bm = BM25().index([[0, 1, 2], [2, 3], [4]], show_progress=False)
    bmt = BM25().index(["a cat sat", "the dog ran", "cats and dogs"], show_progress=False)
    sp = SparseIndex().add([{0: 1.0, 3: 0.5}, {3: 2.0}])
    s4, l4 = np.array([0.1, 0.5, -0.2, 0.0]), np.array([1, 0, 2, 0])
    calls = []
    for method in ("projection", "sigmoid", "neuralsort", "softrank", "smoothi"):
        calls += [(f"soft_rank[{method}].values", lambda g, m=method: rank.soft_rank(g, method=m)),
                  (f"soft_rank[{method}].temperature",
                   lambda g, m=method: rank.soft_rank(ok_x, method=m, **(
                       {"regularization_strength": g} if m == "projection" else {"temperature": g}))),
                  (f"soft_rank[{method}].n_threads", lambda g, m=method: rank.soft_rank(ok_x, method=m, n_threads=g)),
                  (f"soft_rank[{method}].direction", lambda g, m=method: rank.soft_rank(ok_x, method=m, direction=g))]
    calls += [("soft_sort.values", lambda g: rank.soft_sort(g)),
              ("soft_sort.strength", lambda g: rank.soft_sort(ok_x, regularization_strength=g)),
              ("spearman_loss.target", lambda g: rank.soft.spearman_loss(ok_x, g))]
    for name in ("ranknet", "lambdarank", "pairwise_hinge", "listnet", "listmle", "approx_ndcg", "soft_ndcg"):
        fn = getattr(rank.learn, name)
        calls += [(f"{name}.scores", lambda g, f=fn: f(g, l4, group=[2, 2])),
                  (f"{name}.labels", lambda g, f=fn: f(s4, g, group=[2, 2])),
                  (f"{name}.group", lambda g, f=fn: f(s4, l4, group=g)),
                  (f"{name}.qid", lambda g, f=fn: f(s4, l4, qid=g)),
                  (f"{name}.n_threads", lambda g, f=fn: f(s4, l4, group=[4], n_threads=g))]
    calls += [("BM25.method", lambda g: BM25(g)), ("BM25.k1", lambda g: BM25(k1=g)), ("BM25.b", lambda g: BM25(b=g)),
              ("BM25.index", lambda g: BM25().index(g, show_progress=False)),
              ("BM25.index.ids", lambda g: BM25().index([[1], [2]], ids=g, show_progress=False)),
              ("BM25.index.packed", lambda g: BM25().index((g, np.array([0, 1, 2])), show_progress=False)),
              ("BM25.index.offsets", lambda g: BM25().index((np.array([1, 2]), g), show_progress=False)),
              ("BM25.retrieve", lambda g: bm.search(g)), ("BM25.retrieve.text", lambda g: bmt.search(g)),
              ("BM25.retrieve.packed", lambda g: bm.search((g, np.array([0, 1])))),
              ("BM25.retrieve.offsets", lambda g: bm.search((np.array([1, 2]), g))),
              ("BM25.retrieve.k", lambda g: bm.search([[1]], k=g)),
              ("BM25.retrieve.n_threads", lambda g: bm.search([[1]], n_threads=g)),
              ("BM25.retrieve.mask", lambda g: bm.search([[1]], mask=g)),
              ("BM25.get_scores", lambda g: bmt.get_scores(g)),
              ("BM25.add", lambda g: BM25().index([[0, 1]], show_progress=False).add(g, show_progress=False)),
              ("SparseIndex.add", lambda g: SparseIndex().add(g)),
              ("SparseIndex.add.dict", lambda g: SparseIndex().add([{0: g}])),
              ("SparseIndex.add.key", lambda g: SparseIndex().add([_one_key(g)])),
              ("SparseIndex.search", lambda g: sp.search(g)), ("SparseIndex.search.k", lambda g: sp.search({0: 1.0}, k=g)),
              ("SparseIndex.search.mask", lambda g: sp.search({0: 1.0}, mask=g)),
              ("Tokenizer.pattern", lambda g: Tokenizer(pattern=g)), ("Tokenizer.stopwords", lambda g: Tokenizer(stopwords=g)),
              ("Tokenizer.min_length", lambda g: Tokenizer(min_length=g)),
              ("Tokenizer.tokenize", lambda g: Tokenizer().tokenize(g))]
    return calls


class _NotACase(Exception):
    """The generated value cannot even be put in the call (an unhashable dict key)."""


def _one_key(g):
    try:
        return {g: 1.0}
    except TypeError:
        raise _NotACase() from None


def _valid_answer(out):
    """An answer must hold no NaN/inf where it holds floats (padding -inf of top-k aside)."""
    items = out if isinstance(out, tuple) else (out,)
    for item in items:
        if isinstance(item, np.ndarray) and item.dtype.kind == "f":
            bad = ~np.isfinite(item) & ~np.isneginf(item)
            assert not bad.any(), f"non-finite answer {item!r}"
        elif isinstance(item, float):
            assert math.isfinite(item), f"non-finite answer {item!r}"


def garbage_fuzz(examples):
    """Run every call with generated garbage; print the case before running it (a crash leaves
    it as the last line); return the summary counts."""
    calls = _calls()
    counts = {"cases": 0, "clean_errors": 0, "answers": 0, "unclean": []}

    @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.sampled_from(range(len(calls))), _garbage())
    def case(i, g):
        label, fn = calls[i]
        print(f"CASE {label} {g!r:.200}", file=sys.stderr, flush=True)
        counts["cases"] += 1
        try:
            out = fn(g)
        except _NotACase:
            counts["cases"] -= 1
            return
        except RankError:
            counts["clean_errors"] += 1
            return
        except Exception as e:  # noqa: BLE001 - the thing being counted
            counts["unclean"].append(f"{label} {g!r:.100}: {type(e).__name__}: {str(e)[:150]}")
            return
        _valid_answer(out)
        counts["answers"] += 1

    case()
    return counts


@pytest.mark.slow
def test_invalid_inputs_give_clean_errors_in_a_child_process():
    examples = max(200, 12 * EXAMPLES)
    code = (f"import sys, json; sys.path.insert(0, {str(ROOT / 'tests')!r}); import test_hardening_fuzz as T; "
            f"print(json.dumps(T.garbage_fuzz({examples})))")
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env,
                          timeout=600)
    last = [line for line in proc.stderr.splitlines() if line.startswith("CASE ")][-1:]
    assert proc.returncode == 0, f"the child died (status {proc.returncode}) at {last}: {proc.stderr[-2000:]}"
    counts = json.loads(proc.stdout.strip().splitlines()[-1])
    assert counts["unclean"] == [], counts["unclean"]
    assert counts["cases"] >= examples // 2 and counts["clean_errors"] > counts["cases"] // 2
    print(f"fuzz: {counts['cases']} cases, {counts['clean_errors']} clean errors, {counts['answers']} answers")
