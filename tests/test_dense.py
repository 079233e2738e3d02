"""Dense scoring and exact search: values against float64 NumPy references, exact top-k order
with ties, threads, persistence and corrupt files, errors, and every instruction-set path."""
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
from rank.errors import (CorruptFileError, DTypeError, InvalidValueError, NonFiniteError, RankError,
                         ShapeError, UnknownMethodError)
from rank.retrieve.dense import DenseIndex, cosine_scores, dot_scores

DTYPES = [np.float16, np.float32, np.float64]


# --- references ----------------------------------------------------------------------------------

def ref_dot(q, m):
    """float64 products of the float32-rounded queries with the matrix as given."""
    q = np.asarray(q, np.float32).astype(np.float64)
    return q @ np.asarray(m, np.float64).T


def unit64(x):
    x = np.asarray(x, np.float64)
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.divide(x, n, out=np.zeros_like(x), where=n > 0)


def ref_cosine(q, m):
    return unit64(q) @ unit64(m).T


def assert_close(ours, ref, q, m, rtol=1e-5):
    """|ours - ref| <= rtol * (|ref| + |q| |m|): float32 accumulation error scales with the norms."""
    q2, m2 = np.atleast_2d(np.asarray(q, np.float64)), np.asarray(m, np.float64)
    scale = np.linalg.norm(q2, axis=1)[:, None] * np.linalg.norm(m2, axis=1)[None, :]
    scale = scale.reshape(np.shape(ref))
    ours = np.asarray(ours, np.float64)
    assert ours.shape == np.shape(ref)
    err = np.abs(ours - ref)
    bound = rtol * (np.abs(ref) + scale) + 1e-30
    assert (err <= bound).all(), f"max error {err.max()} (bound {bound[np.argmax(err - bound)]})"


def ref_topk(scores, k):
    """Brute force: lexsort by (score desc, index asc) per row of a 2-D score array."""
    scores = np.atleast_2d(scores)
    idx = np.stack([np.lexsort((np.arange(s.shape[0]), -s.astype(np.float64)))[:k] for s in scores])
    return idx, np.take_along_axis(scores, idx, axis=1)


def shapes(seed, count):
    """Random (n_queries, n_rows, d) with d rarely a multiple of 8/16 and n_queries not of 16."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        nq = int(rng.choice([1, 2, 3, 5, 15, 17, 31, 33, 40]))
        n = int(rng.choice([1, 2, 5, 11, 12, 13, 25, 100, 701]))
        d = int(rng.choice([1, 3, 7, 9, 17, 33, 100, 129, 385]))
        out.append((nq, n, d))
    return out


# --- dot_scores / cosine_scores -----------------------------------------------------------------

@pytest.mark.parametrize("nq,n,d", shapes(0, 24) + [(40, 3, 1000), (16, 12, 16), (33, 257, 1001)])
@pytest.mark.parametrize("mdtype", DTYPES)
def test_scores_match_float64_reference(nq, n, d, mdtype):
    rng = np.random.default_rng(nq * 1000 + n + d)
    q = rng.standard_normal((nq, d))  # float64 queries are converted to float32
    m = rng.standard_normal((n, d)).astype(mdtype)
    out = dot_scores(q, m, n_threads=2)
    assert out.dtype == np.float32 and out.shape == (nq, n)
    assert_close(out, ref_dot(q, m), q, m)
    cos = cosine_scores(q, m, n_threads=2)
    assert cos.dtype == np.float32 and cos.shape == (nq, n)
    assert_close(cos, ref_cosine(q, m), unit64(q), unit64(m))


def test_one_dimensional_query_gives_one_dimensional_scores():
    rng = np.random.default_rng(1)
    q, m = rng.standard_normal(19).astype(np.float32), rng.standard_normal((7, 19)).astype(np.float32)
    out = dot_scores(q, m)
    assert out.shape == (7,)
    assert_close(out, ref_dot(q, m), q, m)
    assert_close(cosine_scores(q, m), ref_cosine(q, m), unit64(q), unit64(m))
    np.testing.assert_array_equal(dot_scores(q[None], m)[0], out)


def test_scores_accept_lists_integers_and_non_contiguous():
    rng = np.random.default_rng(2)
    big = rng.standard_normal((30, 40)).astype(np.float32)
    m = big[::2, ::2]  # non-contiguous (15, 20)
    q = rng.integers(-3, 4, size=(3, 20))
    assert_close(dot_scores(q.tolist(), m), ref_dot(q, m), q, m)
    assert_close(dot_scores(q, np.asfortranarray(m)), ref_dot(q, m), q, m)
    np.testing.assert_array_equal(dot_scores([[1, 2]], [[3, 4], [5, 6]]), [[11, 17]])


def test_cosine_with_zero_vectors_is_zero():
    m = np.array([[0.0, 0.0, 0.0], [3.0, 4.0, 0.0]], np.float32)
    out = cosine_scores(np.array([[3.0, 4.0, 0.0], [0.0, 0.0, 0.0]]), m)
    np.testing.assert_allclose(out, [[0.0, 1.0], [0.0, 0.0]], atol=1e-7)


def test_extreme_magnitudes():
    """Finite inputs never raise; overflowing dot products are inf; cosine survives huge and
    tiny rows (norms fall back to float64 when float32 squares would over/underflow)."""
    out = dot_scores(np.array([[1e30, 0.0]], np.float32), np.array([[1e30, 0.0], [1.0, 2.0]], np.float32))
    assert np.isinf(out[0, 0]) and out[0, 1] == 1e30
    m = np.array([[3e25, 4e25], [3e-25, 4e-25], [0.0, 0.0], [1.0, 0.0]], np.float32)
    np.testing.assert_allclose(cosine_scores([3.0, 4.0], m), [1.0, 1.0, 0.0, 0.6], rtol=1e-6)
    np.testing.assert_allclose(cosine_scores([3e-30, 4e-30], m), [1.0, 1.0, 0.0, 0.6], rtol=1e-6)


def test_scores_scale_invariance_of_cosine():
    rng = np.random.default_rng(3)
    q, m = rng.standard_normal((4, 50)), rng.standard_normal((60, 50))
    np.testing.assert_allclose(cosine_scores(q * 1e-3, m * 250.0), cosine_scores(q, m), rtol=1e-5, atol=1e-6)


def test_scores_threads_are_identical():
    rng = np.random.default_rng(4)
    q, m = rng.standard_normal((37, 70)).astype(np.float32), rng.standard_normal((9001, 70)).astype(np.float16)
    ref = dot_scores(q, m, n_threads=1)
    for t in (2, 3):
        np.testing.assert_array_equal(dot_scores(q, m, n_threads=t), ref)
        np.testing.assert_array_equal(cosine_scores(q, m, n_threads=t), cosine_scores(q, m, n_threads=1))


# --- DenseIndex search --------------------------------------------------------------------------

def brute_force(index, queries, k):
    """Reference top-k over the stored vectors, scored by dot_scores (same float32 arithmetic)."""
    q = np.atleast_2d(np.asarray(queries, np.float64))
    if index.metric == "cosine":
        q = unit64(q)
    return ref_topk(dot_scores(q.astype(np.float32), index.vectors, n_threads=1), min(k, len(index)))


@pytest.mark.parametrize("metric", ["dot", "cosine"])
@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("nq,n,d", [(1, 1, 3), (3, 5, 8), (17, 11, 33), (7, 12, 16), (33, 13, 9),
                                    (40, 300, 100), (5, 5000, 17), (40, 500, 1000), (2, 20000, 16)])
@pytest.mark.parametrize("k", [1, 10, 100])
def test_search_matches_brute_force(metric, dtype, nq, n, d, k):
    rng = np.random.default_rng(n * 7 + d + k)
    x = rng.standard_normal((n, d))
    index = DenseIndex(d, metric=metric, dtype=dtype)
    np.testing.assert_array_equal(index.add(x), np.arange(n))
    q = rng.standard_normal((nq, d))
    ids, scores = index.search(q, k=k, n_threads=2)
    kk = min(k, n)
    assert ids.shape == scores.shape == (nq, kk) and ids.dtype == np.int64 and scores.dtype == np.float32
    ref_ids, ref_scores = brute_force(index, q, k)
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_array_equal(scores, ref_scores)
    # ... and the scores agree with a float64 reference on the original vectors
    if dtype == "float32":
        full = ref_cosine(q, x) if metric == "cosine" else ref_dot(q, x)
        qq, xx = (unit64(q), unit64(x)) if metric == "cosine" else (q, x)
        ref = np.take_along_axis(full, ids, axis=1)
        scale = np.linalg.norm(qq, axis=1)[:, None] * np.linalg.norm(xx, axis=1)[ids]
        assert (np.abs(scores - ref) <= 1e-5 * (np.abs(ref) + scale)).all()


@pytest.mark.parametrize("d", [24, 200])
@pytest.mark.parametrize("nq", [1, 4, 21])
@pytest.mark.parametrize("k", [1, 3, 7, 50, 1000])
def test_search_ties_break_by_smaller_index(k, nq, d):
    """Integer vectors give exact float32 scores, and duplicated rows exact ties; with d=200 the
    duplicates fall in different row blocks, handled by different threads."""
    rng = np.random.default_rng(k + d)
    base = rng.integers(-2, 3, size=(300, d)).astype(np.float32)
    x = np.concatenate([base, base[::-1], base[:7], base])
    index = DenseIndex(d)
    index.add(x)
    q = rng.integers(-2, 3, size=(nq, d))
    exact = q.astype(np.float64) @ x.astype(np.float64).T
    ref_ids, ref_scores = ref_topk(exact, min(k, len(x)))
    for t in (1, 2, 3):
        ids, scores = index.search(q, k=k, n_threads=t)
        np.testing.assert_array_equal(ids, ref_ids)
        np.testing.assert_array_equal(scores, ref_scores)


@pytest.mark.parametrize("nq", [1, 5, 17])
def test_search_all_equal_rows(nq):
    index = DenseIndex(256)
    index.add(np.ones((3000, 256)))  # about ten row blocks
    for t in (1, 2, 3):
        ids, scores = index.search(np.ones((nq, 256)), k=10, n_threads=t)
        np.testing.assert_array_equal(ids, np.tile(np.arange(10), (nq, 1)))
        np.testing.assert_array_equal(scores, np.full((nq, 10), 256.0, np.float32))


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 60), st.integers(1, 20), st.integers(1, 9), st.integers(1, 70), st.integers(0, 2**32 - 1))
def test_search_property_integer_vectors(n, d, nq, k, seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(-1, 2, size=(n, d))
    q = rng.integers(-1, 2, size=(nq, d))
    index = DenseIndex(d)
    index.add(x)
    ids, scores = index.search(q, k=k, n_threads=2)
    ref_ids, ref_scores = ref_topk(q.astype(np.float64) @ x.T.astype(np.float64), min(k, n))
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_array_equal(scores, ref_scores)


def test_search_one_query_and_k_above_size():
    rng = np.random.default_rng(5)
    index = DenseIndex(6, metric="cosine")
    index.add(rng.standard_normal((9, 6)))
    q = rng.standard_normal(6)
    ids, scores = index.search(q, k=50)
    assert ids.shape == scores.shape == (9,)
    assert sorted(ids.tolist()) == list(range(9))
    ref_ids, ref_scores = brute_force(index, q, 50)
    np.testing.assert_array_equal(ids, ref_ids[0])
    np.testing.assert_array_equal(scores, ref_scores[0])
    ids1, _ = index.search(q, k=1)
    assert ids1.shape == (1,) and ids1[0] == ids[0]


def test_search_threads_are_identical():
    rng = np.random.default_rng(6)
    index = DenseIndex(48, dtype="float16")
    index.add(rng.standard_normal((30000, 48)))
    q = rng.standard_normal((35, 48))
    ids1, s1 = index.search(q, k=25, n_threads=1)
    for t in (2, 4):
        ids, s = index.search(q, k=25, n_threads=t)
        np.testing.assert_array_equal(ids, ids1)
        np.testing.assert_array_equal(s, s1)


def test_results_do_not_depend_on_the_batch():
    """Each score is one float32 FMA chain over d whatever the batch: a query alone, or inside
    any batch (several query groups for this d), gives bit-identical scores and results."""
    rng = np.random.default_rng(17)
    index = DenseIndex(1000, dtype="float16")
    index.add(rng.standard_normal((700, 1000)))
    q = rng.standard_normal((45, 1000))
    ids, scores = index.search(q, k=6)
    full = dot_scores(q, index.vectors)
    for i in (0, 16, 31, 44):
        one_ids, one_scores = index.search(q[i], k=6)
        np.testing.assert_array_equal(one_ids, ids[i])
        np.testing.assert_array_equal(one_scores, scores[i])
        np.testing.assert_array_equal(dot_scores(q[i], index.vectors), full[i])
        np.testing.assert_array_equal(dot_scores(q[i:i + 3], index.vectors), full[i:i + 3])


@pytest.mark.parametrize("mdtype", DTYPES)
@pytest.mark.parametrize("d", [1, 3, 8, 15, 16, 17, 31, 33, 100, 385])
def test_small_batches_match_the_large_batch_path_bitwise(d, mdtype):
    """1-4 queries take a rows-in-lanes path; its scores equal the tile path's bit for bit."""
    rng = np.random.default_rng(d)
    q = rng.standard_normal((20, d)).astype(np.float32)
    for n in (1, 5, 16, 17, 47, 48, 49, 200):
        m = rng.standard_normal((n, d)).astype(mdtype)
        full = dot_scores(q, m, n_threads=2)
        for nq in (1, 2, 3, 4):
            np.testing.assert_array_equal(dot_scores(q[:nq], m, n_threads=2), full[:nq])
            np.testing.assert_array_equal(dot_scores(q[nq:2 * nq], m, n_threads=1), full[nq:2 * nq])
        np.testing.assert_array_equal(dot_scores(q[7], m), full[7])
        np.testing.assert_array_equal(cosine_scores(q[:3], m), cosine_scores(q, m)[:3])
    index = DenseIndex(d, dtype="float16" if mdtype == np.float16 else "float32")
    index.add(rng.standard_normal((3000, d)))
    ids, scores = index.search(q, k=5)
    for nq in (1, 2, 4):
        small = index.search(q[:nq], k=5, n_threads=2)
        np.testing.assert_array_equal(small[0], ids[:nq])
        np.testing.assert_array_equal(small[1], scores[:nq])


@pytest.mark.parametrize("nq", [1, 3, 20])
@pytest.mark.parametrize("mdtype", DTYPES)
def test_topk_kernel_normalize_option(nq, mdtype):
    """The kernel can divide by row norms on the fly (cosine over a raw matrix, zero rows score 0)."""
    from rank_kernels import dense as kernel

    rng = np.random.default_rng(nq)
    m = (rng.standard_normal((500, 19)) * rng.uniform(0.1, 10, (500, 1))).astype(mdtype)
    m[[3, 77]] = 0
    q = unit64(rng.standard_normal((nq, 19))).astype(np.float32)
    ids = np.empty((nq, 9), np.int64)
    scores = np.empty((nq, 9), np.float32)
    assert kernel.dense_topk(q, m.ctypes.data, 500, m.dtype.itemsize, True, True, 9, 2, ids, scores) == 0
    ref_ids, ref_scores = ref_topk(cosine_scores(q, m, n_threads=1), 9)
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_array_equal(scores, ref_scores)
    np.testing.assert_allclose(scores, np.take_along_axis(ref_cosine(q, m), ids, axis=1), rtol=1e-5, atol=1e-6)


def test_search_has_no_score_matrix_intermediate():
    import tracemalloc

    rng = np.random.default_rng(18)
    index = DenseIndex(32)
    index.add(rng.standard_normal((200_000, 32), dtype=np.float32))
    q = rng.standard_normal((64, 32), dtype=np.float32)
    index.search(q[:2], k=10)  # warm up
    tracemalloc.start()
    try:
        ids, _ = index.search(q, k=10, n_threads=2)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert ids.shape == (64, 10)
    assert peak < 64 * 200_000 * 4 / 50  # a (64, 200000) float32 matrix would be 51 MB


def test_incremental_add_equals_bulk_add():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((1000, 12))
    bulk, inc = DenseIndex(12, metric="cosine"), DenseIndex(12, metric="cosine")
    bulk.add(x)
    for start in range(0, 1000, 137):
        ids = inc.add(x[start:start + 137])
        np.testing.assert_array_equal(ids, np.arange(start, min(start + 137, 1000)))
    np.testing.assert_array_equal(inc.vectors, bulk.vectors)
    q = rng.standard_normal((4, 12))
    for a, b in zip(inc.search(q, k=5), bulk.search(q, k=5)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(inc.add(x[3]), [1000])  # a 1-D vector is one row
    assert len(inc) == 1001
    np.testing.assert_array_equal(inc.vectors[1000], inc.vectors[3])


def test_index_properties():
    index = DenseIndex(3, metric="cosine", dtype=np.float16)
    assert index.dim == 3 and index.metric == "cosine" and index.dtype == np.float16 and len(index) == 0
    index.add([[3.0, 4.0, 0.0], [0.0, 0.0, 0.0]])
    v = index.vectors
    assert v.shape == (2, 3) and v.dtype == np.float16 and not v.flags.writeable
    np.testing.assert_allclose(v.astype(np.float64), [[0.6, 0.8, 0.0], [0.0, 0.0, 0.0]], atol=1e-3)
    assert "DenseIndex(dim=3" in repr(index)


def test_concurrent_searches_are_consistent():
    rng = np.random.default_rng(8)
    index = DenseIndex(32)
    index.add(rng.standard_normal((20000, 32)))
    q = rng.standard_normal((20, 32))
    expect = index.search(q, k=7, n_threads=1)
    results = [None] * 6

    def run(i):
        results[i] = index.search(q, k=7, n_threads=1 + i % 2)

    ts = [threading.Thread(target=run, args=(i,)) for i in range(6)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for ids, scores in results:
        np.testing.assert_array_equal(ids, expect[0])
        np.testing.assert_array_equal(scores, expect[1])


def test_search_releases_gil():
    """A spinning Python thread makes progress while a long single-threaded search runs.

    The switch interval is raised far above the search time, so if the kernel held the GIL
    the spinning thread (which yields the GIL between steps) could not run until it returned.
    """
    rng = np.random.default_rng(9)
    index = DenseIndex(256)
    index.add(rng.standard_normal((100_000, 256), dtype=np.float32))
    q = rng.standard_normal((64, 256), dtype=np.float32)
    counter = [0]
    started, stop = threading.Event(), threading.Event()
    yield_gil = getattr(os, "sched_yield", lambda: time.sleep(0))  # both release the GIL

    def spin():
        started.set()
        while not stop.is_set():
            counter[0] += 1
            yield_gil()

    old = sys.getswitchinterval()
    sys.setswitchinterval(30.0)
    t = threading.Thread(target=spin)
    try:
        t.start()
        started.wait()
        before = counter[0]
        ids, _ = index.search(q, k=10, n_threads=1, check_finite=False)
        during = counter[0] - before
    finally:
        stop.set()
        sys.setswitchinterval(old)
        t.join()
    assert ids.shape == (64, 10)
    assert during > 0, "no other Python thread ran during the search: the GIL was not released"


# --- persistence ---------------------------------------------------------------------------------

@pytest.mark.parametrize("metric", ["dot", "cosine"])
@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("mmap", [False, True])
def test_save_load_round_trip(tmp_path, metric, dtype, mmap):
    rng = np.random.default_rng(10)
    index = DenseIndex(21, metric=metric, dtype=dtype)
    index.add(rng.standard_normal((333, 21)))
    path = tmp_path / "vectors.rkd"
    index.save(path)
    assert os.path.getsize(path) == 64 + 333 * 21 * np.dtype(dtype).itemsize
    loaded = DenseIndex.load(str(path), mmap=mmap)
    assert (loaded.dim, loaded.metric, loaded.dtype, len(loaded)) == (21, metric, np.dtype(dtype), 333)
    np.testing.assert_array_equal(loaded.vectors, index.vectors)
    q = rng.standard_normal((5, 21))
    for a, b in zip(loaded.search(q, k=8), index.search(q, k=8)):
        np.testing.assert_array_equal(a, b)
    # adding to a loaded (possibly memory-mapped) index copies, and never writes the file
    before = path.read_bytes()
    loaded.add(rng.standard_normal((4, 21)))
    assert len(loaded) == 337 and path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["vectors.rkd"]  # no temporary left behind


def test_save_load_empty_index_and_overwrite(tmp_path):
    path = tmp_path / "empty.rkd"
    DenseIndex(4).save(path)
    loaded = DenseIndex.load(path)
    assert len(loaded) == 0 and loaded.dim == 4
    loaded.add(np.eye(4))
    loaded.save(path)  # replaces the existing file
    assert len(DenseIndex.load(path, mmap=True)) == 4


def saved(tmp_path, n=50):
    index = DenseIndex(8)
    index.add(np.random.default_rng(0).standard_normal((n, 8)))
    path = tmp_path / "idx.rkd"
    index.save(path)
    return path


@pytest.mark.parametrize("mmap", [False, True])
@pytest.mark.parametrize("damage", ["truncated", "header_only", "tiny", "empty", "random", "magic",
                                    "version", "trailing", "metric", "dtype", "dim"])
def test_corrupt_files_raise(tmp_path, damage, mmap):
    path = saved(tmp_path)
    data = bytearray(path.read_bytes())
    if damage == "truncated":
        data = data[:-5]
    elif damage == "header_only":
        data = data[:64]
    elif damage == "tiny":
        data = data[:20]
    elif damage == "empty":
        data = b""
    elif damage == "random":
        data = np.random.default_rng(1).integers(0, 256, len(data), dtype=np.uint8).tobytes()
    elif damage == "magic":
        data[:8] = b"NOTDENSE"
    elif damage == "version":
        data[8:12] = (99).to_bytes(4, "little")
    elif damage == "trailing":
        data += b"\0" * 4
    elif damage == "metric":
        data[32] = 7
    elif damage == "dtype":
        data[33] = 9
    elif damage == "dim":
        data[16:24] = (9).to_bytes(8, "little")
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError) as info:
        DenseIndex.load(path, mmap=mmap)
    assert str(path) in str(info.value)
    if damage == "version":
        assert "version 99" in str(info.value)


def test_nonfinite_vectors_in_file_raise(tmp_path):
    path = saved(tmp_path)
    data = bytearray(path.read_bytes())
    data[64 + 4 * 10:64 + 4 * 11] = np.array([np.nan], "<f4").tobytes()
    path.write_bytes(bytes(data))
    for kwargs in ({"mmap": False}, {"verify": True}, {"mmap": True, "verify": True}):
        with pytest.raises(CorruptFileError, match="NaN"):
            DenseIndex.load(path, **kwargs)
    assert len(DenseIndex.load(path)) == 50  # mmap (the default) reads no vector until searched


def test_every_index_class_loads_with_one_signature():
    import inspect

    from rank.retrieve import BM25, ColBERTIndex, SparseIndex

    for cls in (BM25, SparseIndex, DenseIndex, ColBERTIndex):
        params = inspect.signature(cls.load).parameters
        assert list(params)[:3] == ["path", "mmap", "verify"], cls
        assert params["mmap"].default is True and params["mmap"].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
        assert params["verify"].default is False and params["verify"].kind is inspect.Parameter.KEYWORD_ONLY


@pytest.mark.parametrize("fail", ["replace", "fsync", "write"])
def test_failed_save_leaves_existing_file_intact(tmp_path, monkeypatch, fail):
    path = saved(tmp_path)
    before = path.read_bytes()
    bigger = DenseIndex(8)
    bigger.add(np.ones((500, 8)))

    def boom(*args, **kwargs):
        raise OSError("disk full")

    if fail == "write":
        real_fdopen = os.fdopen

        class FailingFile:
            def __init__(self, f):
                self.f = f

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self.f.close()

            def write(self, data):
                raise OSError("disk full")

        monkeypatch.setattr(os, "fdopen", lambda fd, mode: FailingFile(real_fdopen(fd, mode)))
    else:
        monkeypatch.setattr(os, fail, boom)
    with pytest.raises(OSError, match="disk full"):
        bigger.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["idx.rkd"]
    assert len(DenseIndex.load(path)) == 50


# --- errors --------------------------------------------------------------------------------------

@pytest.mark.parametrize("fn", [dot_scores, cosine_scores])
def test_scores_errors(fn):
    m = np.ones((4, 3), np.float32)
    with pytest.raises(ShapeError, match=r"query.*3.*\(2,\)"):
        fn(np.ones(2), m)
    with pytest.raises(ShapeError, match=r"query.*\(5, 4\)"):
        fn(np.ones((5, 4)), m)
    with pytest.raises(ShapeError, match="query.*3-D"):
        fn(np.ones((1, 1, 3)), m)
    with pytest.raises(ShapeError, match="query.*0-D"):
        fn(1.0, m)
    with pytest.raises(ShapeError, match="matrix.*1-D"):
        fn(np.ones(3), np.ones(3))
    with pytest.raises(ShapeError, match="matrix.*empty"):
        fn(np.ones(3), np.ones((0, 3)))
    with pytest.raises(ShapeError, match="query.*empty"):
        fn(np.ones((0, 3)), m)
    with pytest.raises(NonFiniteError, match="query"):
        fn([1.0, np.nan, 0.0], m)
    with pytest.raises(NonFiniteError, match="query"):
        fn(np.array([1e300, 0.0, 0.0]) if fn is dot_scores else [np.inf, 0, 0], m)
    bad = np.ones((40, 3), np.float16)
    bad[17, 1] = np.inf
    with pytest.raises(NonFiniteError, match=r"matrix\[17\]"):
        fn(np.ones(3), bad)
    bad64 = np.ones((40, 3))
    bad64[33, 2] = np.nan
    with pytest.raises(NonFiniteError, match=r"matrix\[33\]"):
        fn(np.ones((2, 3)), bad64)
    fn(np.ones(3), bad, check_finite=False)  # no check, no error (values unspecified)
    with pytest.raises(DTypeError, match="matrix"):
        fn(np.ones(3), np.array([["a", "b", "c"]]))
    with pytest.raises(InvalidValueError, match="n_threads"):
        fn(np.ones(3), m, n_threads=0)


@pytest.mark.parametrize("mdtype", DTYPES)
@pytest.mark.parametrize("d", [1, 7, 16, 17, 33])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_matrix_found_anywhere(mdtype, d, bad):
    rng = np.random.default_rng(d)
    for row, col in [(0, 0), (299, d - 1), (150, d // 2)]:
        m = rng.standard_normal((300, d)).astype(mdtype)
        m[row, col] = bad
        for fn, nq in [(dot_scores, 1), (cosine_scores, 3), (dot_scores, 20)]:
            with pytest.raises(NonFiniteError, match=rf"matrix\[{row}\]"):
                fn(np.ones((nq, d)), m, n_threads=2)


def test_index_errors():
    with pytest.raises(UnknownMethodError, match="'dot', 'cosine'.*'l2'"):
        DenseIndex(4, metric="l2")
    with pytest.raises(UnknownMethodError, match="'float32', 'float16'"):
        DenseIndex(4, dtype="int8")
    with pytest.raises(UnknownMethodError, match="'float32', 'float16'"):
        DenseIndex(4, dtype="nonsense")
    for dim in (0, -3, 2.5, None):
        with pytest.raises(InvalidValueError, match="dim"):
            DenseIndex(dim)
    index = DenseIndex(4)
    with pytest.raises(ShapeError, match="empty"):
        index.search(np.ones(4))
    with pytest.raises(ShapeError, match=r"vectors.*\(n, 4\).*\(2, 5\)"):
        index.add(np.ones((2, 5)))
    with pytest.raises(ShapeError, match="vectors.*empty"):
        index.add(np.ones((0, 4)))
    with pytest.raises(ShapeError, match="vectors.*3-D"):
        index.add(np.ones((1, 2, 4)))
    with pytest.raises(NonFiniteError, match="vectors"):
        index.add([[1.0, np.nan, 0.0, 0.0]])
    assert len(index) == 0
    with pytest.raises(NonFiniteError, match="float16"):
        DenseIndex(2, dtype="float16").add([[1e6, 0.0]])
    index.add(np.eye(4))
    for k in (0, -1, 2.5, True, None):
        with pytest.raises(InvalidValueError, match="k"):
            index.search(np.ones(4), k=k)
    with pytest.raises(ShapeError, match=r"queries.*4.*\(3,\)"):
        index.search(np.ones(3))
    with pytest.raises(ShapeError, match=r"queries.*\(2, 5\)"):
        index.search(np.ones((2, 5)))
    with pytest.raises(ShapeError, match="queries.*empty"):
        index.search(np.ones((0, 4)))
    with pytest.raises(NonFiniteError, match="queries"):
        index.search([np.inf, 0, 0, 0])
    with pytest.raises(InvalidValueError, match="n_threads"):
        index.search(np.ones(4), n_threads=-1)
    assert issubclass(CorruptFileError, RankError) and issubclass(UnknownMethodError, ValueError)


def test_failed_add_leaves_index_unchanged():
    index = DenseIndex(2, dtype="float16")
    index.add([[1.0, 2.0]])
    x = np.ones((3, 2))
    x[2, 0] = 1e9  # overflows float16 storage
    with pytest.raises(NonFiniteError):
        index.add(x)
    assert len(index) == 1
    ids, _ = index.search([1.0, 1.0], k=5)
    np.testing.assert_array_equal(ids, [0])


def test_top_level_names():
    assert rank.DenseIndex is DenseIndex and rank.dot_scores is dot_scores and rank.cosine_scores is cosine_scores


# --- instruction-set paths ------------------------------------------------------------------------

ISA_SCRIPT = r"""
import numpy as np, rank, rank_kernels.dense as k
rng = np.random.default_rng(0)
q = rng.standard_normal((37, 70))
for dt in (np.float16, np.float32, np.float64):
    m = rng.standard_normal((205, 70)).astype(dt)
    ref = q.astype(np.float32).astype(np.float64) @ m.astype(np.float64).T
    scale = np.linalg.norm(q, axis=1)[:, None] * np.linalg.norm(m.astype(np.float64), axis=1)[None]
    assert (np.abs(rank.dot_scores(q, m) - ref) <= 1e-5 * (np.abs(ref) + scale)).all(), dt
    un = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)
    cref = un(q) @ un(m.astype(np.float64)).T
    assert (np.abs(rank.cosine_scores(q, m) - cref) <= 2e-5).all(), dt
for metric in ("dot", "cosine"):
    for dtype in ("float32", "float16"):
        index = rank.DenseIndex(70, metric=metric, dtype=dtype)
        index.add(rng.standard_normal((3001, 70)))
        qq = q / np.linalg.norm(q, axis=1, keepdims=True) if metric == "cosine" else q
        s = rank.dot_scores(qq.astype(np.float32), index.vectors)
        ref = np.stack([np.lexsort((np.arange(s.shape[1]), -r.astype(np.float64)))[:9] for r in s])
        ids, scores = index.search(q, k=9)
        assert (ids == ref).all() and (scores == np.take_along_axis(s, ref, 1)).all(), (metric, dtype)
x = rng.integers(-1, 2, size=(500, 13)).astype(np.float32)
index = rank.DenseIndex(13); index.add(np.concatenate([x, x]))
qi = rng.integers(-1, 2, size=(5, 13))
e = qi @ np.concatenate([x, x]).T.astype(np.float64)
ref = np.stack([np.lexsort((np.arange(1000), -r))[:20] for r in e])
assert (index.search(qi, k=20)[0] == ref).all()
for dt in (np.float16, np.float32, np.float64):  # 1-4 queries: the rows-in-lanes path
    m = rng.standard_normal((203, 37)).astype(dt)
    qs = rng.standard_normal((20, 37)).astype(np.float32)
    full = rank.dot_scores(qs, m)
    for nq in (1, 2, 3, 4):
        assert (rank.dot_scores(qs[:nq], m) == full[:nq]).all(), (dt, nq)
    ref = qs.astype(np.float64) @ m.astype(np.float64).T
    assert np.allclose(full, ref, rtol=1e-5, atol=1e-4)
index = rank.DenseIndex(37); index.add(rng.standard_normal((999, 37)))
ids, scores = index.search(qs, k=7)
for nq in (1, 3):
    a, b = index.search(qs[:nq], k=7)
    assert (a == ids[:nq]).all() and (b == scores[:nq]).all()
m = np.ones((30, 70), np.float16); m[29, 3] = np.inf
try:
    rank.dot_scores(q, m); raise SystemExit("no error")
except rank.errors.NonFiniteError:
    pass
print(k.isa())
"""


@pytest.mark.parametrize("isa", ["portable", "avx2"])
def test_every_instruction_set_path(isa):
    from rank_kernels import dense

    native = dense.isa()
    env = dict(os.environ, RANK_KERNELS_ISA=isa)
    out = subprocess.run([sys.executable, "-c", ISA_SCRIPT], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    if isa == "portable":
        expected = {"portable"}
    elif native in ("avx512f", "avx2+fma"):
        expected = {"avx2+fma"}
    else:  # no AVX2 here, or this process itself was capped to portable
        expected = {"avx2+fma", "portable"}
    assert out.stdout.strip() in expected
