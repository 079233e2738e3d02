"""The reproducers of the hardening report: each crashed the interpreter, hung, or returned a
silently wrong answer. They run in a child process (a crash must fail one test, not kill
pytest): all cases in one child first; if it dies, the cases it did not report are rerun one
child each, so the crashing case is named."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

PRELUDE = """
import numpy as np, rank, rank.learn, rank.rerank, rank.retrieve, rank.soft
from rank.errors import *
"""

# name -> (code, the rank.errors exception expected, or None when the code must simply succeed)
CASES = {
    # n_threads has no upper bound (segfault, or the OpenMP runtime aborting the process)
    "maxsim_batch_threads": ("rank.maxsim_batch(np.ones((2,4),np.float32), [np.ones((3,4),np.float32)], "
                             "n_threads=100_000)", "InvalidValueError"),
    "maxsim_matrix_threads": ("rank.rerank.maxsim_matrix(np.ones((1,2,4),np.float32), [np.ones((3,4),np.float32)], "
                              "n_threads=100_000)", "InvalidValueError"),
    "rerank_maxsim_threads": ("rank.rerank_maxsim(np.ones((2,4),np.float32), [np.ones((3,4),np.float32)], "
                              "n_threads=100_000)", "InvalidValueError"),
    "soft_rank_sigmoid_threads": ("rank.soft_rank(np.ones((3,4)), method='sigmoid', n_threads=100_000)",
                                  "InvalidValueError"),
    "soft_rank_smoothi_threads": ("rank.soft_rank(np.ones((3,4)), method='smoothi', n_threads=100_000)",
                                  "InvalidValueError"),
    "lambdarank_threads": ("rank.learn.lambdarank(np.zeros(4), [0,1,0,1], group=[2,2], n_threads=100_000)",
                           "InvalidValueError"),
    "ranknet_threads": ("rank.learn.ranknet(np.zeros(4), [0,1,0,1], group=[2,2], n_threads=100_000)",
                        "InvalidValueError"),
    "threads_2_31": ("rank.learn.ranknet(np.zeros(4), [0,1,0,1], group=[2,2], n_threads=2**31-1)",
                     "InvalidValueError"),
    "threads_2_40": ("rank.soft_rank(np.ones(4), n_threads=2**40)", "InvalidValueError"),
    "threads_clamped": ("""
        from rank._validate import resolve_threads, available_cores
        assert resolve_threads(4096) == 4 * available_cores()
        r = rank.learn.ranknet(np.zeros(4), [0,1,0,1], group=[2,2], n_threads=4096)
        assert np.allclose(r.grad, rank.learn.ranknet(np.zeros(4), [0,1,0,1], group=[2,2], n_threads=1).grad)
        """, None),
    # LTR group sizes that wrap around in int64
    **{f"{loss}_group_wraparound": (
        f"rank.learn.{loss}(np.zeros(12), np.arange(12) % 3, group=np.array([2**62]*4 + [12]))", "ShapeError")
       for loss in ("ranknet", "lambdarank", "pairwise_hinge", "listnet", "listmle", "approx_ndcg", "soft_ndcg")},
    "group_uint64_wraparound": ("rank.learn.ranknet(np.zeros(3), [0,1,2], group=np.array([2**64-1, 4], np.uint64))",
                                "ShapeError"),
    "linear_gain_huge_label": ("""
        r = rank.learn.lambdarank(np.array([0.0, 1.0]), np.array([2**31-1, 0]), group=[2], gain='linear')
        ref = rank.learn.lambdarank(np.array([0.0, 1.0]), np.array([1, 0]), group=[2], gain='linear')
        assert np.allclose(r.grad, ref.grad), (r.grad, ref.grad)   # one relevant item: same normalised lambdas
        """, None),
    # packed BM25 input with uint64 offsets
    "bm25_retrieve_uint64_offsets": ("rank.BM25().index([[1,2],[3]], show_progress=False).search("
                                     "(np.array([1,2,3]), np.array([0,2**63,3],np.uint64)))", "InvalidValueError"),
    "bm25_index_uint64_offsets": ("rank.BM25().index((np.array([1,2,3]), np.array([0,2**63,3],np.uint64)))",
                                  "InvalidValueError"),
    "bm25_token_id_2_63": ("rank.BM25().index([[1,2],[3]], show_progress=False).search([[2**63]])",
                           "InvalidValueError"),
    "bm25_token_id_2_40_packed": ("rank.BM25().index([[1,2],[3]], show_progress=False).search("
                                  "(np.array([2**40]), np.array([0,1])))", "InvalidValueError"),
    # non-finite parameters
    "bm25l_k1_inf": ("rank.BM25('bm25l', k1=float('inf'))", "InvalidValueError"),
    "bm25_b_nan": ("rank.BM25(b=float('nan'))", "InvalidValueError"),
    "sparse_weight_beyond_float32": ("rank.retrieve.SparseIndex().add([{0: 1e300}])", "NonFiniteError"),
    # float64 extremes: a finite correct answer or a clean error, never inf/NaN
    "soft_sort_extremes": ("rank.soft_sort([1.7e308, -1.7e308, 1.0])", "InvalidValueError"),
    "neuralsort_extremes": ("rank.soft_rank(np.array([1.7e308, -1.7e308, 1.0]), method='neuralsort')",
                            "InvalidValueError"),
    "smoothi_extremes": ("rank.soft_rank(np.array([1.7e308, -1.7e308, 1.0]), method='smoothi')",
                         "InvalidValueError"),
    "neuralsort_tiny_temperature": ("rank.soft_rank(np.array([3.0, 1.0, 2.0]), method='neuralsort', "
                                    "temperature=1e-320)", "InvalidValueError"),
    "smoothi_tiny_temperature": ("rank.soft_rank(np.array([3.0, 1.0, 2.0]), method='smoothi', temperature=1e-320)",
                                 "InvalidValueError"),
    "sigmoid_extremes_correct": ("""
        r = rank.soft_rank(np.array([1.7e308, -1.7e308, 1.0]), method='sigmoid')
        assert np.array_equal(r, [3.0, 1.0, 2.0]), r
        r = rank.soft_rank(np.array([3.0, 1.0, 2.0]), method='sigmoid', temperature=1e-320)
        assert np.array_equal(r, [3.0, 1.0, 2.0]), r
        """, None),
    # lenient validation
    "temperature_str": ("rank.soft_rank(np.array([3.0, 1.0, 2.0]), method='sigmoid', temperature='1')",
                        "InvalidValueError"),
    "sigma_bool": ("rank.learn.ranknet(np.zeros(4), [0,1,0,1], group=[2,2], sigma=True)", "InvalidValueError"),
    "tokenizer_bad_pattern": ("rank.retrieve.Tokenizer(pattern='([')", "InvalidValueError"),
}


def _child_script(names):
    body = [PRELUDE, "import json, sys, traceback"]
    for name in names:
        code, _ = CASES[name]
        body.append(f"def case_{name}():\n" + textwrap.indent(textwrap.dedent(code).strip(), "    "))
    body.append(textwrap.dedent(f"""
        for name in {names!r}:
            try:
                globals()['case_' + name]()
                out = ('ok', '')
            except Exception as e:
                out = (type(e).__name__, str(e)[:300])
            print(json.dumps([name, *out]), flush=True)
        """))
    return "\n".join(body)


def _run(names, timeout):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    try:
        proc = subprocess.run([sys.executable, "-c", _child_script(names)], capture_output=True, text=True,
                              timeout=timeout, cwd=ROOT, env=env)
        out, code = proc.stdout, proc.returncode
    except subprocess.TimeoutExpired as e:
        out, code = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or ""), "timeout"
    results = {}
    for line in out.splitlines():
        try:
            name, kind, msg = json.loads(line)
        except ValueError:
            continue
        results[name] = (kind, msg)
    return results, code


@pytest.fixture(scope="module")
def outcomes():
    names = list(CASES)
    results, code = _run(names, timeout=300)
    for name in names:
        if name not in results:  # the child died on or before this case: rerun it alone
            alone, code = _run([name], timeout=60)
            results[name] = alone.get(name, (f"CRASH (exit {code})", ""))
    return results


@pytest.mark.parametrize("name", list(CASES))
def test_reproducer(outcomes, name):
    kind, msg = outcomes[name]
    expected = CASES[name][1]
    if expected is None:
        assert kind == "ok", f"{name}: {kind}: {msg}"
    else:
        assert kind == expected, f"{name}: expected {expected}, got {kind}: {msg}"
        assert msg, "the error names the argument and the value"
