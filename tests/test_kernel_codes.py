"""Codes shared by Python and Cython are read by name from the kernel modules, never by position."""
import numpy as np
import pytest

from rank.retrieve import BM25
from rank.retrieve import bm25 as bm25_mod
from rank_kernels import fusion as fusion_kernel
from rank_kernels import sparse as sparse_kernel


def test_bm25_variants_come_from_the_kernel_table():
    codes = sparse_kernel.BM25_METHODS
    assert bm25_mod.METHODS == tuple(codes)
    assert len(set(codes.values())) == len(codes)
    assert all(isinstance(c, int) for c in codes.values())


@pytest.mark.parametrize("method", bm25_mod.METHODS)
def test_each_bm25_code_runs_its_own_formula(method):
    """Each variant's kernel code gives the scores of its own formula (a direct NumPy
    evaluation): a name table out of step with the kernel's enum would score with another
    variant's formula."""
    docs = [["a", "b", "a", "c"], ["b", "c"], ["a", "a", "a", "d", "e"], ["c"], ["d", "e"], ["b"], ["e", "c"]]
    k1, b, delta = 1.2, 0.75, 0.5
    model = BM25(method=method, k1=k1, b=b, delta=delta).index(docs)
    got = np.asarray(model.get_scores(["a"]), dtype=np.float64)
    tf = np.array([2.0, 0.0, 3.0, 0.0, 0.0, 0.0, 0.0])
    lens = np.array([len(d) for d in docs], dtype=np.float64)
    norm = 1 - b + b * lens / lens.mean()
    if method in ("robertson", "lucene"):
        tfc = tf / (tf + k1 * norm)
    elif method == "atire":
        tfc = tf * (k1 + 1) / (tf + k1 * norm)
    elif method == "bm25l":
        c = tf / norm
        tfc = (k1 + 1) * (c + delta) / (k1 + c + delta)
    else:
        tfc = (k1 + 1) * tf / (k1 * norm + tf) + delta
    # Published idf of each variant (Kamphuis et al., 2020, as in bm25s), N = 7, df = 2.
    n, df = 7.0, 2.0
    idf = {"robertson": np.log((n - df + 0.5) / (df + 0.5)), "lucene": np.log(1 + (n - df + 0.5) / (df + 0.5)),
           "atire": np.log(n / df), "bm25l": np.log((n + 1) / (df + 0.5)), "bm25+": np.log((n + 1) / df)}[method]
    # Documents without the term score the component at tf = 0 (the shifted variants' floor).
    np.testing.assert_allclose(got, idf * tfc, rtol=2e-6, atol=1e-6)


def test_fusion_rules_come_from_the_kernel_table():
    from rank.fusion import _registry

    rules = set(fusion_kernel.COMBINE)
    for m in _registry.METHODS.values():
        assert m.combine in rules or m.combine == "condorcet", m.name
