"""One allocation-failure pattern (rank_kernels/mem.h, _mem.pxd) for every kernel family.

With ``RANK_KERNELS_FAIL_ALLOC=1`` in the environment when the kernels are imported, every
work-buffer allocation of every kernel module fails. Each family is called through its public
entry point in a fresh interpreter and must raise ``MemoryError``: never a crash, never an
output with rows left unset. The same calls without the hook succeed (so the expected error
is not an accident of the inputs).
"""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SETUP = """
import numpy as np, rank, rank.soft, rank.learn, rank.rerank, rank.fusion
rng = np.random.default_rng(0)
x = rng.standard_normal((3, 40))
q = rng.standard_normal((5, 16)).astype(np.float32)
m = rng.standard_normal((50, 16)).astype(np.float32)
run = {"q1": {"d1": 3.0, "d2": 2.0, "d3": 2.0}, "q2": {"d1": 1.0, "d4": 0.5}}
qrels = {"q1": {"d1": 1, "d3": 2}, "q2": {"d4": 1}}
"""

# family -> a call of its public entry point (an expression)
CALLS = {
    "relax": "rank.soft.soft_rank(x, method='sigmoid')",
    "relax-neuralsort": "rank.soft.soft_rank(x, method='neuralsort')",
    "isotonic": "rank.soft.soft_rank(x)",
    "ltr": "rank.learn.lambdarank(x.ravel(), rng.integers(0, 4, 120), group=[40, 40, 40])",
    "ltr-listmle": "rank.learn.listmle(x.ravel(), rng.integers(0, 4, 120), group=[40, 40, 40])",
    "evaluate": "rank.evaluate(qrels, run, ['ndcg_cut_10', 'map'])",
    "fusion": "rank.fusion.fuse([run, run], 'combsum')",
    "dense": "rank.rerank.dot_scores(q, m)",
    "maxsim": "rank.maxsim_batch(q, [m[:7], m[7:20]])",
    "mmr": "rank.rerank.mmr(q[0], m, 5)",
    "pooling": "rank.rerank.pool_tokens(m[:20], 2)",
    "sparse": "rank.retrieve.BM25().index(['a b c', 'b c d', 'c d e']).retrieve(['c d'], k=2)",
    "colbert_index": ("__import__('rank_kernels.colbert_index').colbert_index.centroid_maxsim("
                      "np.ones((4, 3), np.float32), np.array([0, 1, 2, 3], np.int32), np.array([0, 2, 4]),"
                      " np.array([0, 1]), np.empty(2, np.float32), 1)"),
}


def _outcomes(fail):
    code = SETUP + (
        "for name, call in CALLS.items():\n"
        "    try:\n"
        "        eval(call)\n"
        "        print(name, 'ok')\n"
        "    except MemoryError:\n"
        "        print(name, 'MemoryError')\n"
        "    except Exception as e:\n"
        "        print(name, type(e).__name__, str(e).replace(chr(10), ' '))\n"
    )
    env = dict(os.environ)
    env.pop("RANK_KERNELS_FAIL_ALLOC", None)
    if fail:
        env["RANK_KERNELS_FAIL_ALLOC"] = "1"
    proc = subprocess.run([sys.executable, "-c", f"CALLS = {CALLS!r}\n" + code], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return dict(line.split(" ", 1) for line in proc.stdout.splitlines())


@pytest.fixture(scope="module")
def hooked():
    return _outcomes(fail=True)


@pytest.fixture(scope="module")
def plain():
    return _outcomes(fail=False)


@pytest.mark.parametrize("family", sorted(CALLS))
def test_allocation_failure_raises_memory_error(family, hooked, plain):
    assert plain[family] == "ok", plain[family]
    assert hooked[family] == "MemoryError", hooked[family]


def test_hook_is_off_by_default_and_read_at_import():
    """Without the variable nothing fails; the fusion switch still toggles the same hook."""
    from rank_kernels import fusion

    import rank.fusion

    run = {"q": {"a": 1.0, "b": 0.5}}
    fusion._fail_allocations(True)
    try:
        with pytest.raises(MemoryError):
            rank.fusion.fuse([run, run], "combsum")
    finally:
        fusion._fail_allocations(False)
    assert rank.fusion.fuse([run, run], "combsum")["q"]["a"] == pytest.approx(2.0)
