"""Approximate DenseIndex kinds (hnsw, ivf, ivfpq) backed by FAISS: recall against the exact
index on clustered data, knobs, masks, save/load, corrupt files and errors."""
import os
import struct
import sys
import zlib

import numpy as np
import pytest

faiss = pytest.importorskip("faiss")

import rank  # noqa: E402
from rank import DenseIndex  # noqa: E402
from rank.errors import (CorruptFileError, DTypeError, InvalidValueError, MissingDependencyError,  # noqa: E402
                         NonFiniteError, ShapeError, UnknownMethodError)
from rank.retrieve import ann  # noqa: E402

KINDS = ("hnsw", "ivf", "ivfpq")


def mixture(n, d, n_clusters, rng, spread=0.25):
    """A Gaussian mixture: cluster centres plus isotropic noise (what ANN indexes are built for)."""
    centres = rng.standard_normal((n_clusters, d))
    labels = rng.integers(0, n_clusters, n)
    x = centres[labels] + spread * rng.standard_normal((n, d))
    return x.astype(np.float32), centres


def queries_near(centres, nq, rng, spread=0.25):
    c = centres[rng.integers(0, centres.shape[0], nq)]
    return (c + spread * rng.standard_normal(c.shape)).astype(np.float32)


def recall(approx_ids, exact_ids):
    hits = [len(set(a[a >= 0].tolist()) & set(e.tolist())) for a, e in zip(approx_ids, exact_ids)]
    return sum(hits) / exact_ids.size


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x, centres = mixture(4000, 32, 40, rng)
    q = queries_near(centres, 60, rng)
    return x, q


@pytest.fixture(scope="module")
def built(data):
    x, _ = data
    out = {}
    for metric in ("dot", "cosine"):
        flat = DenseIndex(32, metric=metric)
        flat.add(x)
        out["flat", metric] = flat
        for kind in KINDS:
            if kind == "ivfpq" and metric == "cosine":
                continue  # PQ training is the slow part of this fixture: one metric is enough
            kw = {"nlist": 32} if kind != "hnsw" else {}
            if kind == "ivfpq":
                kw.update(pq_m=16, pq_nbits=8)
            index = DenseIndex(32, metric=metric, index=kind, **kw)
            index.add(x, show_progress=False)
            out[kind, metric] = index
    return out


@pytest.mark.parametrize("kind,floor,metric", [("hnsw", 0.95, "dot"), ("hnsw", 0.95, "cosine"), ("ivf", 0.95, "dot"),
                                               ("ivf", 0.95, "cosine"), ("ivfpq", 0.8, "dot")])
def test_recall_against_exact(built, data, kind, floor, metric):
    _, q = data
    exact_ids, exact_scores = built["flat", metric].search(q, k=10)
    ids, scores = built[kind, metric].search(q, k=10, n_threads=1)
    assert ids.shape == scores.shape == (60, 10)
    assert ids.dtype == np.int64 and scores.dtype == np.float32
    if kind == "ivfpq":  # lossy codes: the exact best row is among the first ten (1-recall@10)
        assert np.mean([e in a for a, e in zip(ids.tolist(), exact_ids[:, 0].tolist())]) >= floor
    else:
        assert recall(ids, exact_ids) >= floor
    # sorted descending; equal scores by smaller id
    assert (np.diff(scores, axis=1) <= 0).all()
    if kind != "ivfpq":
        # stored vectors are exact: a found row's score is its exact score
        ref = q @ built["flat", metric].vectors.T if metric == "dot" else None
        if ref is not None:
            found = np.take_along_axis(ref, np.maximum(ids, 0), axis=1)
            np.testing.assert_allclose(scores, found, rtol=1e-4, atol=1e-4)


def test_more_probes_is_more_exact(built, data):
    _, q = data
    exact_ids, _ = built["flat", "dot"].search(q, k=10)
    ivf = built["ivf", "dot"]
    r1 = recall(ivf.search(q, k=10, nprobe=1)[0], exact_ids)
    r_all = recall(ivf.search(q, k=10, nprobe=32)[0], exact_ids)
    assert r_all == 1.0  # every cell scanned: exact
    assert r1 <= r_all
    hnsw = built["hnsw", "dot"]
    assert recall(hnsw.search(q, k=10, ef_search=400)[0], exact_ids) >= recall(hnsw.search(q, k=10, ef_search=10)[0], exact_ids)
    assert ivf.nprobe == 32 and hnsw.ef_search == 64 and ivf.ef_search is None and hnsw.nprobe is None


def test_knob_setters_and_defaults():
    index = DenseIndex(8, index="ivf")
    assert index.nprobe == ann.DEFAULT_NPROBE == 32
    index.nprobe = 3
    assert index.nprobe == 3
    with pytest.raises(InvalidValueError, match="nprobe"):
        index.nprobe = 0
    with pytest.raises(InvalidValueError, match="ef_search"):
        index.ef_search = 10
    h = DenseIndex(8, index="hnsw")
    assert h.ef_search == ann.DEFAULT_EF_SEARCH == 64
    h.ef_search = 128
    assert h.ef_search == 128
    with pytest.raises(InvalidValueError, match="nprobe"):
        h.nprobe = 4
    assert ann.default_pq_m(384) == 48 and ann.default_pq_m(100) == 10 and ann.default_pq_m(7) == 1
    assert ann.default_pq_m(128) == 16


def test_ivfpq_memory_is_at_most_an_eighth_of_float32():
    rng = np.random.default_rng(3)
    x, _ = mixture(6000, 128, 20, rng)
    pq = DenseIndex(128, index="ivfpq", nlist=16, pq_nbits=4, train_size=3000)  # default pq_m 16: 8 bytes
    pq.add(x[:3000], show_progress=False)
    before = pq.nbytes
    pq.add(x[3000:], show_progress=False)
    per_vector = (pq.nbytes - before) / 3000  # codes + ids, without the fixed codebooks
    assert per_vector <= 128 * 4 / 8
    assert per_vector == 16 * 4 / 8 + 8


def test_single_query_and_k_above_size():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((30, 8))
    for kind in KINDS:
        kw = {"nlist": 2, "pq_m": 2, "pq_nbits": 4} if kind != "hnsw" else {}
        index = DenseIndex(8, index=kind, **kw)
        index.add(x, show_progress=False)
        ids, scores = index.search(x[3], k=50, nprobe=2) if kind != "hnsw" else index.search(x[3], k=50)
        assert ids.shape == scores.shape == (30,)
        found = ids[ids >= 0]
        assert len(set(found.tolist())) == found.shape[0]
        if kind != "ivfpq":
            assert sorted(found.tolist()) == list(range(30))
            assert ids[0] == int(np.argmax(x @ x[3]))


def test_mask(built, data):
    x, q = data
    rng = np.random.default_rng(2)
    allowed = rng.random(x.shape[0]) < 0.3
    exact = built["flat", "dot"]
    e_ids, e_scores = exact.search(q, k=10, mask=allowed)
    ref = (q.astype(np.float64) @ x.T.astype(np.float64))
    ref[:, ~allowed] = -np.inf
    assert allowed[e_ids].all()
    np.testing.assert_array_equal(e_ids[:, 0], np.argmax(ref, axis=1))
    for kind in ("hnsw", "ivf"):
        ids, _ = built[kind, "dot"].search(q, k=10, mask=allowed)
        assert allowed[ids[ids >= 0]].all()
        assert recall(ids, e_ids) >= 0.9
    # per-query masks; a query with only two allowed rows gets -1 / -inf padding
    per = np.zeros((2, x.shape[0]), bool)
    per[0, [5, 7]] = True
    per[1] = allowed
    for index in (exact, built["hnsw", "dot"], built["ivf", "dot"]):
        ids, scores = index.search(q[:2], k=4, mask=per, **({"nprobe": 32} if index.index == "ivf" else {}))
        assert sorted(ids[0, :2].tolist()) == [5, 7] and (ids[0, 2:] == -1).all()
        assert np.isneginf(scores[0, 2:]).all()
        assert per[1][ids[1]].all()
        np.testing.assert_allclose(scores[0, :2], np.sort(x[[5, 7]] @ q[0])[::-1], rtol=1e-5)
    with pytest.raises(DTypeError, match="mask"):
        exact.search(q, mask=np.ones(x.shape[0]))
    with pytest.raises(ShapeError, match="mask"):
        built["hnsw", "dot"].search(q, mask=np.ones(3, bool))


def test_threads_and_repeat_are_identical(built, data):
    _, q = data
    for kind in KINDS:
        index = built[kind, "cosine" if kind != "ivfpq" else "dot"]
        a = index.search(q, k=10, n_threads=1)
        b = index.search(q, k=10, n_threads=2)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])


@pytest.mark.parametrize("kind", KINDS)
def test_save_load_round_trip(built, data, tmp_path, kind):
    _, q = data
    metric = "cosine" if kind != "ivfpq" else "dot"
    index = built[kind, metric]
    path = tmp_path / f"{kind}.rkd"
    index.save(path)
    loaded = DenseIndex.load(path)
    assert loaded.index == kind and loaded.metric == metric and len(loaded) == len(index) and loaded.dim == 32
    assert loaded.nprobe == index.nprobe and loaded.ef_search == index.ef_search
    a, b = index.search(q, k=10), loaded.search(q, k=10)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    # adding after a load continues the ids
    ids = loaded.add(np.ones((2, 32)), show_progress=False)
    np.testing.assert_array_equal(ids, [len(index), len(index) + 1])
    # an untrained IVF index saves and loads untrained
    empty = DenseIndex(4, index="ivf", nlist=2)
    empty.save(tmp_path / "empty.rkd")
    again = DenseIndex.load(tmp_path / "empty.rkd")
    assert not again.is_trained and len(again) == 0


def _damaged(path, how):
    data = bytearray(path.read_bytes())
    if how == "truncate_header":
        data = data[:60]
    elif how == "truncate_payload":
        data = data[:-100]
    elif how == "trailing":
        data += b"\0" * 8
    elif how == "flip_header":
        data[20] ^= 0x01
    elif how == "flip_payload":
        data[len(data) // 2] ^= 0xFF
    elif how == "version":
        data[8] = 9
        data[124:128] = struct.pack("<I", zlib.crc32(bytes(data[:124])) & 0xFFFFFFFF)
    elif how == "wrong_count":  # consistent header checksum, but the header lies about the count
        data[24] ^= 0x01
        data[124:128] = struct.pack("<I", zlib.crc32(bytes(data[:124])) & 0xFFFFFFFF)
    elif how == "foreign_payload":  # a valid FAISS index of another kind behind a valid header
        other = faiss.serialize_index(faiss.IndexFlatIP(32))
        head = bytearray(data[:128])
        head[84:92] = struct.pack("<Q", other.nbytes)
        head[92:96] = struct.pack("<I", zlib.crc32(other) & 0xFFFFFFFF)
        head[124:128] = struct.pack("<I", zlib.crc32(bytes(head[:124])) & 0xFFFFFFFF)
        data = head + other.tobytes()
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["truncate_header", "truncate_payload", "trailing", "flip_header", "flip_payload",
                                 "version", "wrong_count", "foreign_payload"])
def test_corrupt_files_raise(built, tmp_path, how):
    path = tmp_path / "x.rkd"
    built["hnsw", "cosine"].save(path)
    _damaged(path, how)
    with pytest.raises(CorruptFileError):
        DenseIndex.load(path)


def test_foreign_files_raise(tmp_path):
    p = tmp_path / "f.rkd"
    faiss.write_index(faiss.IndexFlatIP(4), str(p))  # a bare FAISS file is not ours
    with pytest.raises(CorruptFileError):
        DenseIndex.load(p)
    p.write_bytes(b"RKDANN\0\0" + b"\0" * 10)
    with pytest.raises(CorruptFileError, match="truncated"):
        DenseIndex.load(p)


def test_errors():
    with pytest.raises(UnknownMethodError, match="'flat', 'hnsw', 'ivf', 'ivfpq'"):
        DenseIndex(4, index="lsh")
    with pytest.raises(InvalidValueError, match="dtype"):
        DenseIndex(4, index="hnsw", dtype="float16")
    with pytest.raises(InvalidValueError, match="pq_m"):
        DenseIndex(10, index="ivfpq", pq_m=3)
    for name in ("nprobe", "hnsw_m", "ef_search", "ef_construction", "nlist", "pq_nbits", "train_size"):
        with pytest.raises(InvalidValueError, match=name):
            DenseIndex(4, index="ivf", **{name: 0})
    ivf = DenseIndex(4, index="ivf", nlist=8)
    with pytest.raises(InvalidValueError, match="not trained"):
        ivf.search(np.ones(4))
    with pytest.raises(InvalidValueError, match="at least 8 training vectors"):
        ivf.add(np.ones((5, 4)), show_progress=False)
    assert len(ivf) == 0 and not ivf.is_trained
    pq = DenseIndex(4, index="ivfpq", nlist=2, pq_m=2, pq_nbits=8)
    with pytest.raises(InvalidValueError, match="256"):
        pq.add(np.random.default_rng(0).standard_normal((100, 4)), show_progress=False)
    h = DenseIndex(4, index="hnsw")
    with pytest.raises(ShapeError, match="empty"):
        h.search(np.ones(4))
    with pytest.raises(NonFiniteError, match="vectors"):
        h.add([[1.0, np.nan, 0, 0]], show_progress=False)
    with pytest.raises(NonFiniteError, match="vectors"):
        h.add([[1.0, np.nan, 0, 0]], check_finite=False, show_progress=False)
    with pytest.raises(NonFiniteError, match=r"vectors\[1\].*float32"):
        h.add(np.array([[1.0, 0, 0, 0], [1e300, 0, 0, 0]]), show_progress=False)
    assert len(h) == 0
    h.add(np.eye(4), show_progress=False)
    with pytest.raises(ShapeError, match=r"queries.*\(3,\)"):
        h.search(np.ones(3))
    with pytest.raises(ShapeError, match=r"vectors.*\(2, 5\)"):
        h.add(np.ones((2, 5)))
    with pytest.raises(NonFiniteError, match="queries"):
        h.search([np.nan, 0, 0, 0])
    with pytest.raises(NonFiniteError, match="queries"):
        h.search([np.nan, 0, 0, 0], check_finite=False)
    with pytest.raises(InvalidValueError, match="k"):
        h.search(np.ones(4), k=0)
    with pytest.raises(InvalidValueError, match="ef_search"):
        h.search(np.ones(4), ef_search=0)
    with pytest.raises(InvalidValueError, match="vectors"):
        DenseIndex(4, index="ivf").vectors
    np.testing.assert_allclose(h.vectors, np.eye(4))
    with pytest.raises(InvalidValueError, match="already holds"):
        h2 = DenseIndex(4, index="ivf", nlist=2)
        h2.add(np.eye(4), show_progress=False)
        h2.train(np.eye(4))


def test_explicit_training_on_a_sample(data):
    x, q = data
    index = DenseIndex(32, index="ivf", nlist=16, train_size=1000)
    index.train(x[:2000], show_progress=False)
    assert index.is_trained and len(index) == 0
    index.add(x[:100], show_progress=False)  # fewer vectors than a training would need: fine now
    index.add(x[100:], show_progress=False)
    assert len(index) == x.shape[0]
    exact = DenseIndex(32)
    exact.add(x)
    assert recall(index.search(q, k=10, nprobe=16)[0], exact.search(q, k=10)[0]) == 1.0


def test_faiss_version_range_and_missing(monkeypatch):
    with pytest.raises(MissingDependencyError, match=r"1\.7\.4.*faiss-cpu>=1.8,<2.*rank-kernels\[ann\]"):
        ann.import_faiss("1.7.4")
    with pytest.raises(MissingDependencyError, match="2.0.0"):
        ann.import_faiss("2.0.0")
    assert ann.import_faiss("1.8.0") is faiss
    monkeypatch.setattr(ann, "_faiss_module", None)
    monkeypatch.setitem(sys.modules, "faiss", None)  # import faiss -> ImportError
    with pytest.raises(MissingDependencyError, match=r"rank-kernels\[ann\]"):
        DenseIndex(4, index="hnsw")
    DenseIndex(4).add(np.eye(4))  # the exact index never needs FAISS


def test_float64_overflow_is_refused_by_the_flat_index(tmp_path):
    # Regression: values beyond the float32 range became inf in storage and the file could
    # not be loaded back.
    index = DenseIndex(2)
    index.add([[1.0, 2.0]])
    with pytest.raises(NonFiniteError, match=r"vectors\[1\].*float32"):
        index.add(np.array([[1.0, 1.0], [3e38 * 10, 0.0]]))
    assert len(index) == 1
    index.save(tmp_path / "ok.rkd")
    assert len(DenseIndex.load(tmp_path / "ok.rkd")) == 1
    cos = DenseIndex(2, metric="cosine")  # normalised first: no overflow
    cos.add([[1e300, 1e300]])
    np.testing.assert_allclose(cos.vectors, [[2 ** -0.5, 2 ** -0.5]], rtol=1e-6)


def test_top_level_and_repr(built):
    assert rank.DenseIndex is DenseIndex
    assert "index='hnsw'" in repr(built["hnsw", "dot"])
    assert os.path.basename(ann.__file__) == "ann.py"


def test_cli_dense_index_and_search(tmp_path, capsys):
    from rank.cli import main

    rng = np.random.default_rng(4)
    x, centres = mixture(300, 16, 5, rng)
    corpus = tmp_path / "corpus.tsv"
    corpus.write_text("".join(f"doc{i}\ttext {i}\n" for i in range(300)))
    queries = tmp_path / "queries.tsv"
    queries.write_text("q1\tfirst\nq2\tsecond\n")
    np.save(tmp_path / "docs.npy", x)
    q = queries_near(centres, 2, rng)
    np.save(tmp_path / "q.npy", q)
    out = tmp_path / "idx"
    assert main(["index", str(corpus), "--dense", str(tmp_path / "docs.npy"), "--index-kind", "hnsw",
                 "-o", str(out), "-q"]) == 0
    run = tmp_path / "run.trec"
    assert main(["search", str(out), str(queries), "--vectors", str(tmp_path / "q.npy"), "-k", "5",
                 "-o", str(run), "-q"]) == 0
    lines = run.read_text().splitlines()
    assert len(lines) == 10
    exact = DenseIndex(16, metric="cosine")
    exact.add(x)
    top = exact.search(q[0], k=5)[0]
    assert [line.split()[2] for line in lines[:5]] == [f"doc{i}" for i in top]
    # missing --vectors and a mismatched vectors file are one-line errors
    assert main(["search", str(out), str(queries), "-q"]) == 2
    np.save(tmp_path / "bad.npy", q[:1])
    assert main(["search", str(out), str(queries), "--vectors", str(tmp_path / "bad.npy"), "-q"]) == 2
    np.save(tmp_path / "short.npy", x[:10])
    assert main(["index", str(corpus), "--dense", str(tmp_path / "short.npy"), "-o", str(tmp_path / "i2"), "-q"]) == 2
    err = capsys.readouterr().err
    assert "--vectors" in err and "n_documents=300" in err
