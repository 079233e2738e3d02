"""MaxSim late interaction: values against a float64 NumPy reference, ragged forms, errors, threads."""
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rank
from rank.errors import DTypeError, InvalidValueError, NonFiniteError, RankError, ShapeError


def unit(rng, *shape, dtype=np.float32):
    x = rng.standard_normal(shape)
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(dtype)


def ref_maxsim(q, d):
    """Slow, obviously correct float64 reference."""
    return (np.asarray(q, np.float64) @ np.asarray(d, np.float64).T).max(axis=1).sum()


def close(ours, ref, lq):
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-6 * lq)


def packed(docs):
    offsets = np.concatenate([[0], np.cumsum([len(d) for d in docs])])
    return np.concatenate(docs), offsets


def padded(docs):
    lmax = max(len(d) for d in docs)
    pad = np.full((len(docs), lmax, docs[0].shape[1]), 7.0, docs[0].dtype)  # junk padding
    for i, d in enumerate(docs):
        pad[i, : len(d)] = d
    return pad, np.array([len(d) for d in docs])


@pytest.mark.parametrize("lq,d,lengths", [
    (1, 1, [1]),
    (1, 128, [1, 2, 3]),
    (32, 128, [1, 11, 12, 13, 128, 511]),
    (17, 7, [5, 24, 25]),
    (33, 129, [300, 1, 47]),
    (48, 96, [13] * 9),
    (5, 384, [3000]),  # a very long document
])
def test_maxsim_batch_matches_reference(lq, d, lengths):
    rng = np.random.default_rng(lq * 1000 + d)
    q = unit(rng, lq, d)
    docs = [unit(rng, n, d) for n in lengths]
    ref = np.array([ref_maxsim(q, x) for x in docs])
    for n_threads in (1, 2):
        out = rank.maxsim_batch(q, docs, n_threads=n_threads)
        assert out.dtype == np.float32 and out.shape == (len(docs),)
        close(out, ref, lq)


def test_forms_agree_and_padding_never_wins():
    rng = np.random.default_rng(1)
    q = unit(rng, 9, 20)
    docs = [unit(rng, n, 20) for n in (4, 1, 30, 12)]
    a = rank.maxsim_batch(q, docs)
    pad, lengths = padded(docs)  # padding rows are large values that would win if read
    b = rank.maxsim_batch(q, pad, doc_lengths=lengths)
    c = rank.maxsim_batch(q, packed(docs))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
    close(a, [ref_maxsim(q, x) for x in docs], 9)


@settings(max_examples=60, deadline=None)
@given(
    lq=st.integers(1, 40),
    d=st.integers(1, 40),
    lengths=st.lists(st.integers(1, 40), min_size=1, max_size=8),
    seed=st.integers(0, 2**32 - 1),
)
def test_property_list_padded_packed_agree(lq, d, lengths, seed):
    rng = np.random.default_rng(seed)
    q = unit(rng, lq, d)
    docs = [unit(rng, n, d) for n in lengths]
    a = rank.maxsim_batch(q, docs)
    pad, lens = padded(docs)
    np.testing.assert_array_equal(a, rank.maxsim_batch(q, pad, doc_lengths=lens))
    np.testing.assert_array_equal(a, rank.maxsim_batch(q, packed(docs)))
    close(a, [ref_maxsim(q, x) for x in docs], lq)


def test_full_padded_without_lengths():
    rng = np.random.default_rng(2)
    q = unit(rng, 4, 8)
    docs = unit(rng, 3, 5, 8)
    close(rank.maxsim_batch(q, docs), [ref_maxsim(q, x) for x in docs], 4)


@pytest.mark.parametrize("dtype", [np.float16, np.float64])
def test_other_dtypes_read_in_place(dtype):
    rng = np.random.default_rng(3)
    q = unit(rng, 6, 33)
    docs = [unit(rng, n, 33, dtype=dtype) for n in (1, 13, 40)]
    ref = [ref_maxsim(q, x) for x in docs]  # on the stored (e.g. float16) values
    close(rank.maxsim_batch(q, docs), ref, 6)
    close(rank.maxsim_batch(q, packed(docs)), ref, 6)
    pad, lens = padded(docs)
    close(rank.maxsim_batch(q, pad, doc_lengths=lens), ref, 6)
    close(rank.maxsim_batch(q.astype(dtype), docs), [ref_maxsim(q.astype(dtype).astype(np.float32), x)
                                                     for x in docs], 6)


def test_converted_inputs():
    rng = np.random.default_rng(4)
    q = unit(rng, 5, 16)
    base = unit(rng, 30, 32)
    docs = [base[:, ::2], base[3:9, ::2].tolist(), np.arange(32).reshape(2, 16)]  # strided, list, int
    mixed = [docs[0].astype(np.float16), docs[1], docs[2]]
    ref = [ref_maxsim(q, np.asarray(x, np.float64)) for x in docs]
    close(rank.maxsim_batch(q, docs), ref, 5)
    close(rank.maxsim_batch(q.T.copy().T, mixed), [ref_maxsim(q, np.asarray(x, np.float32)) for x in mixed], 5)
    assert rank.maxsim_batch(q, []).shape == (0,)


def test_maxsim_single():
    rng = np.random.default_rng(5)
    q, d = unit(rng, 3, 10), unit(rng, 7, 10)
    s = rank.maxsim(q, d)
    assert isinstance(s, float)
    close(s, ref_maxsim(q, d), 3)


def test_maxsim_matrix():
    rng = np.random.default_rng(6)
    queries = [unit(rng, n, 24) for n in (1, 16, 17, 40)]
    docs = [unit(rng, n, 24) for n in (2, 50, 9)]
    ref = np.array([[ref_maxsim(q, d) for d in docs] for q in queries])
    out = rank.maxsim_matrix(queries, docs)
    assert out.shape == (4, 3) and out.dtype == np.float32 and out.flags.c_contiguous
    close(out, ref, 40)
    pq, lq = padded(queries)
    pd, ld = padded(docs)
    np.testing.assert_allclose(rank.maxsim_matrix(pq, pd, query_lengths=lq, doc_lengths=ld), out, rtol=1e-6)
    np.testing.assert_allclose(rank.maxsim_matrix(packed(queries), packed(docs), n_threads=1), out, rtol=1e-6)


def test_rerank_maxsim_sorted_with_index_ties():
    rng = np.random.default_rng(7)
    q = unit(rng, 4, 8)
    a, b = unit(rng, 5, 8), unit(rng, 3, 8)
    docs = [b, a, b, a.copy(), b]
    scores = rank.maxsim_batch(q, docs)
    idx, s = rank.rerank_maxsim(q, docs)
    order = sorted(range(5), key=lambda i: (-scores[i], i))
    assert idx.tolist() == order and idx.dtype == np.int64
    np.testing.assert_array_equal(s, scores[order])
    idx2, s2 = rank.rerank_maxsim(q, docs, top_k=2)
    assert idx2.tolist() == order[:2]
    assert rank.rerank_maxsim(q, docs, top_k=50)[0].tolist() == order


# --- bad input ---------------------------------------------------------------------------------

def test_errors_shapes_and_types():
    rng = np.random.default_rng(8)
    q, d = unit(rng, 4, 8), unit(rng, 6, 8)
    with pytest.raises(ShapeError, match="query"):
        rank.maxsim_batch(q[0], [d])  # 1-D query
    with pytest.raises(ShapeError, match="query"):
        rank.maxsim_batch(np.zeros((0, 8), np.float32), [d])  # empty query
    with pytest.raises(ShapeError, match=r"docs\[1\]"):
        rank.maxsim_batch(q, [d, d[None]])  # 3-D document in a list
    with pytest.raises(ShapeError, match="docs"):
        rank.maxsim_batch(q, d)  # a bare 2-D array is not a batch
    with pytest.raises(ShapeError, match="dimension"):
        rank.maxsim_batch(q, [unit(rng, 6, 9)])
    with pytest.raises(ShapeError, match=r"docs\[1\]"):
        rank.maxsim_batch(q, [d, unit(rng, 6, 9)])
    with pytest.raises(ShapeError, match=r"docs\[0\].*zero tokens"):
        rank.maxsim_batch(q, [np.zeros((0, 8), np.float32), d])
    with pytest.raises(ShapeError, match="dimension"):
        rank.maxsim(q, unit(rng, 6, 7))
    with pytest.raises(DTypeError, match="query"):
        rank.maxsim_batch(np.array([["a", "b"]]), [d])
    with pytest.raises(DTypeError, match=r"docs\[0\]"):
        rank.maxsim_batch(q, [np.array([[object()] * 8])])
    with pytest.raises(ShapeError):
        rank.maxsim_matrix([], [d])


def test_errors_ragged_forms():
    rng = np.random.default_rng(9)
    q = unit(rng, 4, 8)
    flat = unit(rng, 10, 8)
    with pytest.raises(InvalidValueError, match="increasing"):
        rank.maxsim_batch(q, (flat, np.array([0, 5, 3, 10])))
    with pytest.raises(InvalidValueError, match="zero tokens"):
        rank.maxsim_batch(q, (flat, np.array([0, 5, 5, 10])))
    with pytest.raises(InvalidValueError, match=r"\[0, 10\]"):
        rank.maxsim_batch(q, (flat, np.array([0, 5, 11])))
    with pytest.raises(InvalidValueError, match=r"\[0, 10\]"):
        rank.maxsim_batch(q, (flat, np.array([-1, 5])))
    with pytest.raises(DTypeError, match="offsets"):
        rank.maxsim_batch(q, (flat, np.array([0.0, 5.0])))
    pad = unit(rng, 3, 5, 8)
    with pytest.raises(InvalidValueError, match="padded axis"):
        rank.maxsim_batch(q, pad, doc_lengths=[5, 6, 1])
    with pytest.raises(InvalidValueError, match="at least one token"):
        rank.maxsim_batch(q, pad, doc_lengths=[5, 0, 1])
    with pytest.raises(ShapeError, match="doc_lengths"):
        rank.maxsim_batch(q, pad, doc_lengths=[5, 1])
    with pytest.raises(InvalidValueError, match="doc_lengths"):
        rank.maxsim_batch(q, [pad[0]], doc_lengths=[5])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_detected_in_every_form(bad):
    rng = np.random.default_rng(10)
    q = unit(rng, 4, 8)
    docs = [unit(rng, n, 8) for n in (3, 20, 5)]
    docs[1][17, 3] = bad  # past the first 12-row strip
    with pytest.raises(NonFiniteError, match=r"docs\[1\]"):
        rank.maxsim_batch(q, docs)
    with pytest.raises(NonFiniteError, match=r"docs\[1\]"):
        rank.maxsim_batch(q, packed(docs), n_threads=2)
    pad, lens = padded(docs)
    with pytest.raises(NonFiniteError, match=r"docs\[1\]"):
        rank.maxsim_batch(q, pad, doc_lengths=lens)
    with pytest.raises(NonFiniteError):
        rank.maxsim_batch(q, [d.astype(np.float16) for d in docs])
    pad[0, 4:] = np.nan  # NaN in padding is never read
    docs[1][17, 3] = 0.0
    pad[1, 17, 3] = 0.0
    rank.maxsim_batch(q, pad, doc_lengths=lens)
    qb = q.copy()
    qb[2, 1] = bad
    with pytest.raises(NonFiniteError, match="query"):
        rank.maxsim_batch(qb, docs)
    with pytest.raises(NonFiniteError, match="^doc: contains NaN"):
        rank.maxsim(q, np.where(np.arange(8) == 2, bad, 1.0)[None])
    with pytest.raises(NonFiniteError, match=r"queries\[1\]"):
        rank.maxsim_matrix([q, qb], docs)
    docs[2][0, 0] = bad
    out = rank.maxsim_batch(q, docs, check_finite=False)  # skipped on request
    assert np.isfinite(out[:2]).all()


def test_errors_arguments():
    rng = np.random.default_rng(11)
    q, d = unit(rng, 4, 8), unit(rng, 6, 8)
    for k in (0, -1, 1.5, True):
        with pytest.raises(InvalidValueError, match="top_k"):
            rank.rerank_maxsim(q, [d], top_k=k)
    with pytest.raises(InvalidValueError, match="n_threads"):
        rank.maxsim_batch(q, [d], n_threads=0)
    assert issubclass(ShapeError, ValueError) and issubclass(DTypeError, TypeError)
    assert issubclass(NonFiniteError, RankError)


# --- threads -----------------------------------------------------------------------------------

def test_gil_released_during_kernel():
    rng = np.random.default_rng(12)
    q = unit(rng, 512, 128)
    docs = unit(rng, 64, 4096, 128)  # ~34 GFLOP: far longer than the 50 ms below
    done = []
    worker = threading.Thread(target=lambda: done.append(rank.maxsim_batch(q, docs, n_threads=1)))
    worker.start()
    time.sleep(0.05)  # let the worker enter the kernel
    steps = 0
    while steps < 2000:
        steps += 1
    still_running = worker.is_alive()
    worker.join()
    # With the GIL held by the kernel this thread could not have run 2000 steps meanwhile.
    assert still_running, "the main thread only ran after the kernel finished: GIL not released"
    assert done[0].shape == (64,)


def test_concurrent_calls_are_consistent(run_threads):
    rng = np.random.default_rng(13)
    q = unit(rng, 32, 64)
    docs = [unit(rng, n, 64) for n in rng.integers(1, 200, 300)]
    expect = rank.maxsim_batch(q, docs, n_threads=1)
    for r in run_threads(lambda i: rank.maxsim_batch(q, docs, n_threads=1 + i % 2)):
        np.testing.assert_array_equal(r, expect)


@pytest.mark.parametrize("isa", ["portable", "avx2"])
def test_every_instruction_set_path(isa):
    code = (
        "import numpy as np, rank, rank_kernels.maxsim as k\n"
        "rng = np.random.default_rng(0)\n"
        "q = rng.standard_normal((37, 70)).astype(np.float32)\n"
        "docs = [rng.standard_normal((n, 70)).astype(dt) for n, dt in "
        "zip((1, 12, 13, 100), (np.float32, np.float16, np.float64, np.float32))]\n"
        "ref = [(q.astype(np.float64) @ d.astype(np.float64).T).max(1).sum() for d in docs]\n"
        "np.testing.assert_allclose(rank.maxsim_batch(q, docs), ref, rtol=1e-5, atol=1e-4)\n"
        "d = docs[3].copy(); d[50, 5] = np.nan\n"
        "try:\n    rank.maxsim_batch(q, [d]); raise SystemExit('no error')\n"
        "except rank.errors.NonFiniteError: pass\n"
        "print(k.isa())\n"
    )
    env = dict(os.environ, RANK_KERNELS_ISA=isa)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() in ({"portable"} if isa == "portable" else {"avx2+fma", "portable"})


def test_no_padded_intermediate():
    """Extra memory stays far below a (n_docs, Lq, L_max) score tensor."""
    import tracemalloc

    rng = np.random.default_rng(14)
    q = unit(rng, 32, 64)
    pad = unit(rng, 100, 512, 64)
    rank.maxsim_batch(q, pad[:2])  # warm up imports and caches
    tracemalloc.start()
    rank.maxsim_batch(q, pad, doc_lengths=np.full(100, 400))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 100 * 32 * 512 * 4 / 20, peak  # < 5% of the B x Lq x L_max float32 tensor
