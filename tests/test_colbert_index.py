"""ColBERTIndex: recall against exhaustive MaxSim on a clustered synthetic token corpus, the
compression kernels against NumPy, add without retraining, save/load, corrupt files, errors,
and the Pipeline/encoder integration."""
import json
import os
import threading
import zlib

import numpy as np
import pytest

pytest.importorskip("faiss")

import rank  # noqa: E402
from rank import maxsim_batch, rerank_maxsim  # noqa: E402
from rank.errors import CorruptFileError, InvalidValueError, NonFiniteError, ShapeError  # noqa: E402
from rank.retrieve import ColBERTIndex  # noqa: E402
from rank.retrieve.colbert_index import ColBERTRetriever  # noqa: E402
from rank_kernels import colbert_index as kernel  # noqa: E402

DIM = 32


def unit(x):
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def token_corpus(n_docs, rng, dim=DIM, n_topics=300, per_doc=4, lengths=(8, 30), noise=0.35):
    """Documents whose unit token vectors come from a few topics each, plus noise (ColBERT-like:
    tokens cluster by meaning, documents mix a few meanings)."""
    topics = unit(rng.standard_normal((n_topics, dim)))
    docs = []
    for _ in range(n_docs):
        n = int(rng.integers(*lengths))
        mine = rng.choice(n_topics, per_doc, replace=False)
        v = topics[mine[rng.integers(0, per_doc, n)]] + noise * rng.standard_normal((n, dim)) / np.sqrt(dim)
        docs.append(unit(v))
    return docs


def queries_from(docs, n, rng, lq=12, noise=0.3):
    out = []
    for i in rng.integers(0, len(docs), n):
        d = docs[i]
        q = d[rng.integers(0, d.shape[0], lq)] + noise * rng.standard_normal((lq, d.shape[1])) / np.sqrt(d.shape[1])
        out.append(unit(q))
    return out


def recall(ids, exact):
    return np.mean([len(set(a.tolist()) & set(e.tolist())) / len(e) for a, e in zip(ids, exact)])


@pytest.fixture(scope="module")
def corpus():
    rng = np.random.default_rng(0)
    docs = token_corpus(1500, rng)
    queries = queries_from(docs, 40, rng)
    exact = [rerank_maxsim(q, docs, 10)[0] for q in queries]
    return docs, queries, exact


@pytest.fixture(scope="module")
def index8(corpus):
    docs, _, _ = corpus
    index = ColBERTIndex(DIM, nbits=8, n_centroids=128)
    index.add(docs, ids=[f"d{i}" for i in range(len(docs))], show_progress=False)
    return index


def test_recall_against_exhaustive_maxsim(corpus, index8):
    _, queries, exact = corpus
    ids, scores = index8.search(queries, k=10, n_threads=1)
    assert ids.shape == scores.shape == (40, 10) and ids.dtype == np.int64 and scores.dtype == np.float32
    assert recall(ids, exact) >= 0.95
    assert (np.diff(scores, axis=1) <= 0).all()
    # the scores are exact MaxSim against the decompressed tokens
    for j in (0, 7):
        ref = maxsim_batch(queries[j], [index8.decompress(int(d)) for d in ids[j]])
        np.testing.assert_allclose(scores[j], ref, rtol=1e-5, atol=1e-5)


def test_more_bits_and_probes_are_more_exact(corpus, index8):
    docs, queries, exact = corpus
    rec = {}
    sizes = {}
    for nbits in (1, 2, 3, 4):
        index = ColBERTIndex(DIM, nbits=nbits, n_centroids=128)
        index.add(docs, show_progress=False)
        rec[nbits] = recall(index.search(queries, k=10)[0], exact)
        sizes[nbits] = index.nbytes
        if nbits == 2:
            assert recall(index.search(queries, k=10, nprobe=1, n_candidates=40)[0], exact) <= rec[2] + 1e-9
    rec[8], sizes[8] = recall(index8.search(queries, k=10)[0], exact), index8.nbytes
    # measured on this corpus: about 0.79, 0.85, 0.91, 0.93, 0.98
    assert rec[1] <= rec[2] <= rec[3] <= rec[4] <= rec[8]
    assert rec[4] >= 0.9 and rec[2] >= 0.75
    assert sizes[1] < sizes[2] < sizes[3] < sizes[4] < sizes[8]
    # bytes per token: 2 (uint16 centroid id) + DIM * nbits / 8, plus the inverted lists
    tokens = sum(d.shape[0] for d in docs)
    assert 2 + DIM * 2 / 8 < sizes[2] / tokens < 2 + DIM * 2 / 8 + 6
    assert index8._state.codes.dtype == np.uint16


def pack_reference(buckets, bits):
    """Slow bit-by-bit packing: bit b of coordinate j's bucket id is bit p_j + b of the token's
    row (p_j = bits[0] + ... + bits[j - 1]), that is bit (p_j + b) % 8 of byte (p_j + b) // 8."""
    t, dim = buckets.shape
    out = np.zeros((t, int(bits.sum()) // 8), np.uint8)
    for r in range(t):
        p = 0
        for j in range(dim):
            for b in range(int(bits[j])):
                if (int(buckets[r, j]) >> b) & 1:
                    out[r, (p + b) // 8] |= 1 << ((p + b) % 8)
            p += int(bits[j])
    return out


BIT_LAYOUTS = [np.full(16, n, np.uint8) for n in (1, 2, 3, 4, 8)] + [
    np.array([4] * 8 + [3] * 8, np.uint8),           # nbits 3.5: fields straddle bytes
    np.array([5, 1, 7, 2, 8, 3, 6, 4, 1, 2, 3, 4, 5, 6, 7, 8], np.uint8),  # every width, 72 bits
]


@pytest.mark.parametrize("bits", BIT_LAYOUTS, ids=lambda b: "-".join(map(str, b[:3])) + f"-sum{int(b.sum())}")
def test_compression_kernels_match_numpy(bits):
    rng = np.random.default_rng(int(bits.sum()))
    top = int(bits.max())
    resid = rng.standard_normal((50, 16)).astype(np.float32)
    cutoffs = np.full((16, (1 << top) - 1), np.inf, np.float32)  # each row +inf padded past its own buckets
    for j in range(16):
        nb = 1 << int(bits[j])
        cutoffs[j, :nb - 1] = np.sort(rng.standard_normal(nb - 1))
    weights = rng.standard_normal((16, 1 << top)).astype(np.float32)
    packed = np.empty((50, int(bits.sum()) // 8), np.uint8)
    kernel.compress(resid, cutoffs, bits, packed, 2)
    buckets = np.stack([np.searchsorted(cutoffs[j], resid[:, j], side="right") for j in range(16)], axis=1)
    assert (buckets < (1 << bits.astype(np.int64))).all()
    np.testing.assert_array_equal(packed, pack_reference(buckets, bits))
    # unpack little-endian bit fields with NumPy
    stream = np.unpackbits(packed, axis=1, bitorder="little")
    starts_bit = np.concatenate([[0], np.cumsum(bits.astype(np.int64))])
    got = np.stack([(stream[:, starts_bit[j]:starts_bit[j + 1]] * (1 << np.arange(bits[j]))).sum(axis=1)
                    for j in range(16)], axis=1)
    np.testing.assert_array_equal(got, buckets)
    assert (buckets == (1 << bits.astype(np.int64)) - 1).any() and (buckets == 0).any()  # extreme ids round-trip
    centroids = rng.standard_normal((5, 16)).astype(np.float32)
    for dtype in (np.int32, np.uint16):  # both id widths
        codes = rng.integers(0, 5, 50).astype(dtype)
        starts = np.array([10, 0, 30], np.int64)
        lengths = np.array([5, 3, 20], np.int64)
        offs = np.array([0, 5, 8, 28], np.int64)
        for normalize in (False, True):
            out = np.empty((28, 16), np.float32)
            kernel.decompress(codes, packed, centroids, weights, bits, starts, lengths, offs, normalize, out, 2)
            rows = np.concatenate([np.arange(s, s + n) for s, n in zip(starts, lengths)])
            ref = centroids[codes[rows]] + weights[np.arange(16), buckets[rows]]
            if normalize:
                ref = ref / np.linalg.norm(ref, axis=1, keepdims=True)
            np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)


def test_fractional_nbits_rotates_and_gives_the_extra_bits_to_the_widest_axes(corpus, tmp_path):
    """nbits 2.5: residuals rotated onto their principal axes (largest variance first), the first
    half of the coordinates 3 bits, the rest 2. Checked against NumPy: the rotation is the
    residuals' eigenbasis, decompressed tokens are centroid + rotated-back values, search scores
    are MaxSim against them, accuracy lies between nbits 2 and 3, and the index survives
    save/load (format 3) unchanged."""
    docs, queries, exact = corpus
    flat = np.concatenate(docs)
    base = ColBERTIndex(DIM, nbits=2, n_centroids=128)
    base.add(docs, show_progress=False)
    err, rec = {}, {}
    for nbits in (2, 2.5, 3):
        index = ColBERTIndex(DIM, nbits=nbits)
        index.train(flat, centroids=base.centroids, show_progress=False)
        index.add(docs, show_progress=False)
        dec = np.concatenate([index.decompress(i) for i in range(len(index))])
        err[nbits] = float(((dec - flat) ** 2).sum(axis=1).mean())
        ids, scores = index.search(queries, k=10, n_threads=1)
        rec[nbits] = recall(ids, exact)
        if nbits == 2.5:
            frac, frac_ids, frac_scores = index, ids, scores
    assert frac.nbits == 2.5 and frac._width == DIM * 5 // 16
    assert err[2] > err[2.5] > err[3] and rec[2] <= rec[2.5] + 0.02 and rec[2.5] <= rec[3] + 0.02
    codec = frac._codec
    np.testing.assert_array_equal(codec.bits, [3] * (DIM // 2) + [2] * (DIM // 2))
    rot = codec.rotation
    np.testing.assert_allclose(rot @ rot.T, np.eye(DIM), atol=1e-5)
    resid = flat - frac.centroids[((flat[:, None, :] - frac.centroids[None]) ** 2).sum(axis=2).argmin(axis=1)]
    var = ((resid - resid.mean(axis=0)) @ rot).var(axis=0)
    assert (np.diff(var) <= 1e-6).all()  # principal axes, largest variance first
    # decompressed tokens: centroid + the rotated-back bucket values (independent reconstruction)
    d = 5
    rows = np.arange(sum(x.shape[0] for x in docs[:d]), sum(x.shape[0] for x in docs[:d + 1]))
    stream = np.unpackbits(np.asarray(frac._state.residuals[rows]), axis=1, bitorder="little")
    edges = np.concatenate([[0], np.cumsum(codec.bits.astype(np.int64))])
    buckets = np.stack([(stream[:, edges[j]:edges[j + 1]] * (1 << np.arange(codec.bits[j]))).sum(axis=1)
                        for j in range(DIM)], axis=1)
    ref = frac.centroids[frac._state.codes[rows]] + codec.weights[np.arange(DIM), buckets] @ rot.T
    np.testing.assert_allclose(frac.decompress(d), ref / np.linalg.norm(ref, axis=1, keepdims=True), atol=1e-5)
    for j in (0, 9):  # search scores: MaxSim against the decompressed tokens
        want = maxsim_batch(queries[j], [frac.decompress(int(i)) for i in frac_ids[j]])
        np.testing.assert_allclose(frac_scores[j], want, rtol=1e-5, atol=1e-5)
    frac.save(tmp_path / "f")
    meta = json.loads((tmp_path / "f" / "meta.json").read_text())
    assert meta["format_version"] == 4 and meta["nbits"] == 2.5 and meta["rotated"] is True
    for mmap in (True, False):
        again = ColBERTIndex.load(tmp_path / "f", mmap=mmap, verify=True)
        got = again.search(queries, k=10, n_threads=1)
        np.testing.assert_array_equal(got[0], frac_ids)
        np.testing.assert_array_equal(got[1], frac_scores)
    # a damaged rotation, bit layout or flag is refused
    good = {n: (tmp_path / "f" / f"{n}.npy").read_bytes() for n in ("rotation", "bits", "cutoffs")}
    unpadded = codec.cutoffs.copy()
    unpadded[-1, -1] = 0.5  # a 2-bit coordinate's row must end in +inf
    for name, value in (("rotation", 2 * rot), ("bits", np.full(DIM, 3, np.uint8)), ("cutoffs", unpadded)):
        np.save(tmp_path / "f" / f"{name}.npy", value)
        with pytest.raises(CorruptFileError, match=name):
            ColBERTIndex.load(tmp_path / "f")
        (tmp_path / "f" / f"{name}.npy").write_bytes(good[name])
    meta["rotated"] = False
    (tmp_path / "f" / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(CorruptFileError, match="rotation"):
        ColBERTIndex.load(tmp_path / "f")


def test_centroid_maxsim_kernel():
    """Approximate MaxSim from centroid scores, for both id widths."""
    rng = np.random.default_rng(2)
    scores_t = rng.standard_normal((5, 3)).astype(np.float32)
    doc_offsets = np.array([0, 4, 9, 50], np.int64)
    cand = np.array([2, 0], np.int64)
    for dtype in (np.int32, np.uint16):
        codes = rng.integers(0, 5, 50).astype(dtype)
        out = np.empty(2, np.float32)
        kernel.centroid_maxsim(scores_t, codes, doc_offsets, cand, out, 2)
        for k, d in enumerate(cand):
            ref = scores_t[codes[doc_offsets[d]:doc_offsets[d + 1]]].max(axis=0).sum()
            assert out[k] == pytest.approx(ref, rel=1e-6)


def test_buckets_are_a_lloyd_max_quantizer():
    """Training: each coordinate's buckets are a Lloyd-Max quantizer of the sample residuals,
    checked by an independent NumPy computation: every bucket value is the mean residual of
    the training tokens in it, every cutoff (after convergence) the midpoint of its two
    neighbouring values (within a tenth of their gap: 20 rounds), and the squared error is below that of PLAID's equal-count buckets."""
    rng = np.random.default_rng(4)
    docs = token_corpus(300, rng)
    flat = np.concatenate(docs)
    index = ColBERTIndex(DIM, nbits=3, n_centroids=16)
    index.add(docs, show_progress=False)
    codec = index._codec
    dist = ((flat[:, None, :] - codec.centroids[None]) ** 2).sum(axis=2)
    resid = flat - codec.centroids[dist.argmin(axis=1)]
    assert (np.diff(codec.cutoffs, axis=1) > 0).all()
    buckets = np.stack([np.searchsorted(codec.cutoffs[j], resid[:, j], side="right") for j in range(DIM)], axis=1)
    for j in range(DIM):
        for b in range(8):
            np.testing.assert_allclose(codec.weights[j, b], resid[buckets[:, j] == b, j].mean(), rtol=1e-4, atol=1e-6)
    mid = (codec.weights[:, 1:] + codec.weights[:, :-1]) / 2  # near the fixed point (Lloyd converges slowly)
    assert (np.abs(codec.cutoffs - mid) <= 0.1 * np.diff(codec.weights, axis=1)).all()
    err = ((codec.weights[np.arange(DIM), buckets] - resid) ** 2).sum()
    cut_q = np.quantile(resid, np.arange(1, 8) / 8, axis=0).T
    b_q = np.stack([np.searchsorted(cut_q[j], resid[:, j], side="right") for j in range(DIM)], axis=1)
    mean_q = np.array([[resid[b_q[:, j] == b, j].mean() for b in range(8)] for j in range(DIM)])
    err_q = ((mean_q[np.arange(DIM), b_q] - resid) ** 2).sum()
    assert err < 0.97 * err_q
    dec = np.concatenate([index.decompress(i) for i in range(len(index))])
    assert np.abs(np.linalg.norm(dec, axis=1) - 1).max() < 1e-5


def test_bucket_fit_edge_cases():
    """Coordinates with fewer distinct values than buckets: empty buckets take the midpoint of
    their cutoffs, cutoffs stay sorted, and every occupied bucket holds its exact value."""
    from rank.retrieve.colbert_index import _fit_buckets

    few = np.zeros((64, 3), np.float32)
    few[32:, 0] = 1
    few[:, 2] = np.repeat([-2.0, 0.5, 3.0, 7.0], 16)
    cut, val = _fit_buckets(few, 2)
    assert (np.diff(cut, axis=1) >= 0).all()
    for j in range(3):
        b = np.searchsorted(cut[j], few[:, j], side="right")
        np.testing.assert_array_equal(val[j, b], few[:, j])  # zero error: every value has its own bucket
    np.testing.assert_array_equal(val[2], [-2.0, 0.5, 3.0, 7.0])
    # iterations never raise the squared error
    x = np.random.default_rng(0).standard_t(3, size=(4000, 2)).astype(np.float32)
    errs = []
    for iters in (0, 1, 2, 5, 20):
        cut, val = _fit_buckets(x, 3, iters)
        b = np.stack([np.searchsorted(cut[j], x[:, j], side="right") for j in range(2)], axis=1)
        errs.append(float(((val[np.arange(2), b] - x) ** 2).sum()))
    assert all(a >= b - 1e-6 * a for a, b in zip(errs, errs[1:])) and errs[-1] < 0.9 * errs[0]


def test_add_without_retraining_and_packed_input(corpus):
    docs, queries, exact = corpus
    index = ColBERTIndex(DIM, nbits=8, n_centroids=128)
    index.add(docs[:800], show_progress=False)
    centroids = index._codec.centroids.copy()
    lengths = [d.shape[0] for d in docs[800:]]
    flat = np.concatenate(docs[800:])
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    ids = index.add((flat, offsets), show_progress=False)
    np.testing.assert_array_equal(ids, np.arange(800, len(docs)))
    np.testing.assert_array_equal(index._codec.centroids, centroids)  # no retraining
    assert len(index) == len(docs) and index.n_tokens == sum(d.shape[0] for d in docs)
    assert recall(index.search(queries, k=10)[0], exact) >= 0.95
    # a second index trained with these centroids (only the buckets are fitted) encodes alike
    twin = ColBERTIndex(DIM, nbits=8)
    twin.train(np.concatenate(docs[:800]), centroids=index.centroids, show_progress=False)
    np.testing.assert_array_equal(twin.centroids, centroids)
    twin.add(docs, show_progress=False)
    np.testing.assert_array_equal(twin._state.codes, index._state.codes)
    # a document of the second batch is found by its own tokens
    got, _ = index.search(docs[1200], k=1)
    assert got[0] == 1200


def test_single_query_forms_and_k_above_size():
    rng = np.random.default_rng(2)
    docs = token_corpus(40, rng, n_topics=20)
    index = ColBERTIndex(DIM, nbits=8, n_centroids=8, nprobe=8)
    index.add(docs, show_progress=False)
    q = docs[3][:5]
    ids, scores = index.search(q, k=100)
    assert ids.shape == (40,) and sorted(ids.tolist()) == list(range(40))  # every centroid probed
    ids2, scores2 = index.search(q.tolist(), k=100)
    np.testing.assert_array_equal(ids, ids2)
    b_ids, b_scores = index.search([q, docs[5][:3]], k=3)
    assert b_ids.shape == (2, 3)
    np.testing.assert_array_equal(b_ids[0], ids[:3])
    flat = np.concatenate([q, docs[5][:3]])
    p_ids, _ = index.search((flat, np.array([0, 5, 8])), k=3)
    np.testing.assert_array_equal(p_ids, b_ids)
    assert ids[0] == 3


def test_save_load_round_trip(index8, corpus, tmp_path):
    _, queries, _ = corpus
    path = tmp_path / "cb"
    index8.save(path)
    for mmap in (True, False):
        loaded = ColBERTIndex.load(path, mmap=mmap)
        assert len(loaded) == len(index8) and loaded.ids == index8.ids and loaded.nbits == 8
        a, b = index8.search(queries[:5], k=10), loaded.search(queries[:5], k=10)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
    loaded = ColBERTIndex.load(path, verify=True)
    # add to a memory-mapped index: copies, the file is untouched
    extra = [np.ones((3, DIM), np.float32) / np.sqrt(DIM)]
    loaded.add(extra, ids=["new"], show_progress=False)
    assert loaded.ids[-1] == "new" and len(ColBERTIndex.load(path)) == len(index8)
    # overwrite an existing index in place
    loaded.save(path)
    assert len(ColBERTIndex.load(path)) == len(index8) + 1
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]  # no temporaries left


def _as_old_version(path, version):
    """Rewrite a saved index of whole-bit nbits as an earlier format, by hand: version 3 stores
    the centroids as float32 and the inverted lists as int32; version 2 also has no bits.npy;
    version 1 also stores the centroid ids as int32."""
    meta = json.loads((path / "meta.json").read_text())

    def rewrite(name, dtype):
        a = np.load(path / f"{name}.npy").astype(dtype)
        np.save(path / f"{name}.npy", a)
        meta["arrays"][name]["crc32"] = zlib.crc32(a.data.cast("B")) & 0xFFFFFFFF

    rewrite("centroids", "<f4")
    rewrite("ivf_docs", "<i4")
    if version <= 2:
        (path / "bits.npy").unlink()
        del meta["arrays"]["bits"], meta["rotated"]
    if version == 1:
        rewrite("codes", "<i4")
    meta["format_version"] = version
    (path / "meta.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("version", [1, 2, 3])
def test_codes_are_uint16_and_older_files_load(index8, corpus, tmp_path, version):
    docs, queries, _ = corpus
    path = tmp_path / "cb"
    index8.save(path)
    meta = json.loads((path / "meta.json").read_text())
    assert meta["format_version"] == 4 and np.load(path / "codes.npy").dtype == np.dtype("<u2")
    assert np.load(path / "centroids.npy").dtype == np.dtype("<f2")
    assert np.load(path / "ivf_docs.npy").dtype == np.dtype("<u2")
    np.testing.assert_array_equal(np.load(path / "bits.npy"), np.full(DIM, 8))
    _as_old_version(path, version)
    assert np.load(path / "codes.npy").dtype == np.dtype("<i4" if version == 1 else "<u2")
    want = index8.search(queries[:8], k=10)
    for mmap in (True, False):
        old = ColBERTIndex.load(path, mmap=mmap, verify=True)
        assert old._state.codes.dtype == (np.int32 if version == 1 else np.uint16)
        assert old._codec.centroids.dtype == np.float32 and old._state.ivf_docs.dtype == np.int32
        assert old.nbytes > index8.nbytes
        got = old.search(queries[:8], k=10)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
        np.testing.assert_array_equal(old.decompress(3), index8.decompress(3))
    # adding to a version-1 index converts its ids; saving writes the current version
    old.add(docs[:2], ids=["x", "y"], show_progress=False)
    assert old._state.codes.dtype == np.uint16
    np.testing.assert_array_equal(old._state.codes[:index8.n_tokens], index8._state.codes)
    assert old._state.ivf_docs.dtype == np.uint16 and old._codec.centroids.dtype == np.float32
    old.save(tmp_path / "new")  # the current version, keeping the float32 centroids its tokens were encoded with
    assert json.loads((tmp_path / "new" / "meta.json").read_text())["format_version"] == 4
    again = ColBERTIndex.load(tmp_path / "new")
    assert again._codec.centroids.dtype == np.float32
    np.testing.assert_array_equal(again.search(queries[:8], k=10)[0], old.search(queries[:8], k=10)[0])
    # ids out of range are refused (version 1: int32 ids below 0)
    codes = np.load(path / "codes.npy")
    codes[0] = -1 if version == 1 else 65535
    np.save(path / "codes.npy", codes)
    with pytest.raises(CorruptFileError, match="codes"):
        ColBERTIndex.load(path)


def test_centroids_are_float16_unless_the_scale_forbids_it():
    from rank.retrieve.colbert_index import _stored_centroids

    rng = np.random.default_rng(3)
    c = rng.standard_normal((50, 16)).astype(np.float32)
    half = _stored_centroids(c)
    assert half.dtype == np.float16
    assert (np.abs(half.astype(np.float32) - c) <= 2.0 ** -11 * np.abs(c)).all()  # round to nearest
    for scale in (1e5, 1e-7):  # past float16's range, or so small that float16 loses most bits
        kept = _stored_centroids(c * np.float32(scale))
        assert kept.dtype == np.float32
        np.testing.assert_array_equal(kept, c * np.float32(scale))
    # an index of such tokens keeps float32 centroids and still finds a document by its own tokens
    docs = [rng.standard_normal((4, 8)).astype(np.float32) * np.float32(1e5) for _ in range(40)]
    index = ColBERTIndex(8, nbits=8, n_centroids=4)
    index.add(docs, show_progress=False)
    assert index._codec.centroids.dtype == np.float32
    assert index.search(docs[17], k=1)[0][0] == 17


def test_inverted_lists_switch_to_int32_past_65536_documents():
    rng = np.random.default_rng(4)
    flat = rng.standard_normal(((1 << 16) + 1, 16)).astype(np.float32)
    flat /= np.linalg.norm(flat, axis=1, keepdims=True)  # unit tokens: a document is its own best match
    index = ColBERTIndex(16, nbits=8, n_centroids=16)
    index.add((flat[:1 << 16], np.arange((1 << 16) + 1, dtype=np.int64)), show_progress=False)
    assert index._state.ivf_docs.dtype == np.uint16
    index.add([flat[-1:]], show_progress=False)
    assert index._state.ivf_docs.dtype == np.int32 and index._state.ivf_docs.max() == 1 << 16
    assert index.search(flat[-1:], k=1, nprobe=16, n_candidates=(1 << 16) + 1)[0][0] == 1 << 16


def test_more_than_65536_centroids_use_int32():
    from rank.retrieve.colbert_index import _codes_dtype

    assert _codes_dtype(1 << 16) == np.uint16 and _codes_dtype((1 << 16) + 1) == np.int32
    assert _codes_dtype(10, version=1) == np.int32


def test_save_refuses_to_replace_other_things(index8, tmp_path):
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(InvalidValueError, match="not a saved ColBERTIndex"):
        index8.save(other)
    assert (other / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize("damage", ["no_meta", "bad_json", "foreign_kind", "version", "truncated_array",
                                    "pickle_array", "code_out_of_range", "doc_out_of_range", "offsets",
                                    "shape_mismatch", "flip_residual_verify", "ids_wrong"])
def test_corrupt_files_raise(index8, tmp_path, damage):
    path = tmp_path / "cb"
    index8.save(path)
    meta = json.loads((path / "meta.json").read_text())
    verify = None
    if damage == "no_meta":
        (path / "meta.json").unlink()
    elif damage == "bad_json":
        (path / "meta.json").write_text("{" * 5000)
    elif damage == "foreign_kind":
        meta["kind"] = "something else"
        (path / "meta.json").write_text(json.dumps(meta))
    elif damage == "version":
        meta["format_version"] = 99
        (path / "meta.json").write_text(json.dumps(meta))
    elif damage == "truncated_array":
        data = (path / "residuals.npy").read_bytes()
        (path / "residuals.npy").write_bytes(data[:len(data) // 2])
    elif damage == "pickle_array":
        np.save(path / "codes.npy", np.array([object()] * 3, dtype=object), allow_pickle=True)
    elif damage == "code_out_of_range":
        codes = np.load(path / "codes.npy")
        codes[5] = meta["n_centroids"]
        np.save(path / "codes.npy", codes)
    elif damage == "doc_out_of_range":
        docs = np.load(path / "ivf_docs.npy")
        docs[0] = meta["n_docs"]  # one past the last document (the positions are unsigned below 65,536 documents)
        np.save(path / "ivf_docs.npy", docs)
    elif damage == "offsets":
        offs = np.load(path / "doc_offsets.npy")
        offs[3], offs[4] = offs[4], offs[3]
        np.save(path / "doc_offsets.npy", offs)
    elif damage == "shape_mismatch":
        meta["n_tokens"] += 1
        (path / "meta.json").write_text(json.dumps(meta))
    elif damage == "flip_residual_verify":
        raw = bytearray((path / "residuals.npy").read_bytes())
        raw[-7] ^= 0xFF
        (path / "residuals.npy").write_bytes(bytes(raw))
        verify = True
    elif damage == "ids_wrong":
        (path / "ids.json").write_text(json.dumps(["a", "b"]))
    for mmap in (True, False):
        with pytest.raises(CorruptFileError):
            ColBERTIndex.load(path, mmap=mmap, verify=verify)
    with pytest.raises(FileNotFoundError):
        ColBERTIndex.load(tmp_path / "missing")


def test_errors():
    for bad in (5, 0, 16, True):
        with pytest.raises(InvalidValueError, match="nbits: expected one of 1, 2, 3, 4, 8"):
            ColBERTIndex(DIM, nbits=bad)
    with pytest.raises(InvalidValueError, match="multiple of 8"):
        ColBERTIndex(3, nbits=2)
    with pytest.raises(InvalidValueError, match="multiple of 8"):
        ColBERTIndex(12, nbits=3)
    with pytest.raises(InvalidValueError, match="multiple of 8"):
        ColBERTIndex(DIM, nbits=3.1)
    for bad in (0.5, 8.5, float("nan"), "3", None):
        with pytest.raises(InvalidValueError, match="nbits"):
            ColBERTIndex(DIM, nbits=bad)
    assert ColBERTIndex(DIM, nbits=3.0).nbits == 3 and isinstance(ColBERTIndex(DIM, nbits=3.0).nbits, int)
    for name in ("nprobe", "n_candidates", "n_centroids", "train_size"):
        with pytest.raises(InvalidValueError, match=name):
            ColBERTIndex(DIM, **{name: 0})
    index = ColBERTIndex(DIM, n_centroids=4)
    with pytest.raises(InvalidValueError, match="empty"):
        index.search(np.ones((2, DIM)))
    with pytest.raises(InvalidValueError, match="not trained"):
        index.save("never-written")
    rng = np.random.default_rng(3)
    docs = [unit(rng.standard_normal((6, DIM))) for _ in range(30)]
    with pytest.raises(ShapeError, match=r"docs\[1\]"):
        index.add([docs[0], np.ones((3, DIM + 1))], show_progress=False)
    bad = [d.copy() for d in docs[:3]]
    bad[2][1, 1] = np.nan
    with pytest.raises(NonFiniteError, match=r"docs\[2\]"):
        index.add(bad, show_progress=False)
    with pytest.raises(NonFiniteError, match=r"docs\[0\]"):
        index.add([np.full((2, DIM), 1e300)], show_progress=False)
    with pytest.raises(ShapeError, match="at least one"):
        index.add([], show_progress=False)
    with pytest.raises(ShapeError, match="ids"):
        index.add(docs, ids=["a"], show_progress=False)
    assert len(index) == 0
    index.add(docs, show_progress=False)
    with pytest.raises(InvalidValueError, match="ids"):
        index.add(docs[:1], ids=["x"], show_progress=False)
    with pytest.raises(ShapeError, match="query_tokens"):
        index.search(np.ones((2, DIM + 1)))
    with pytest.raises(NonFiniteError, match="query_tokens"):
        index.search(np.full((2, DIM), np.nan))
    with pytest.raises(NonFiniteError, match=r"query_tokens\[1\]"):
        index.search([np.ones((2, DIM)), np.full((2, DIM), np.inf)])
    with pytest.raises(InvalidValueError, match="k"):
        index.search(np.ones((2, DIM)), k=0)
    with pytest.raises(ShapeError):
        index.search(np.ones(DIM))
    with pytest.raises(InvalidValueError, match="doc"):
        index.decompress(30)
    with pytest.raises(InvalidValueError, match="already holds"):
        index.train(np.ones((10, DIM)))
    small = ColBERTIndex(DIM, n_centroids=50)
    with pytest.raises(InvalidValueError, match="50 centroids"):
        small.add(docs[:2], show_progress=False)


def test_concurrent_searches_during_add_see_old_or_new(corpus):
    docs, queries, _ = corpus
    index = ColBERTIndex(DIM, nbits=2, n_centroids=64)
    index.add(docs[:600], show_progress=False)
    before = index.search(queries[:4], k=5)
    errors = []

    def reader():
        for _ in range(20):
            ids, _ = index.search(queries[:4], k=5, n_threads=1)
            if ids.max() >= 600 and len(index) == 600:
                errors.append("new ids from the old index")

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    index.add(docs[600:900], show_progress=False)
    for t in threads:
        t.join()
    assert not errors
    after = index.search(queries[:4], k=5)
    assert after[0].shape == before[0].shape


def test_top_level_names():
    assert rank.ColBERTIndex is ColBERTIndex
    assert "ColBERTIndex" in rank.__all__ and "ColBERTIndex" in rank.retrieve.__all__


class _FakeEncoder:
    """encode_queries as ColBERTEncoder does: a list of (Lq, dim) float32 matrices."""

    def __init__(self, table, dim=DIM):
        self.table, self.dim = table, dim

    def encode_queries(self, texts):
        return [self.table[t] for t in texts]


def test_pipeline_with_an_encoder(corpus, index8):
    docs, queries, exact = corpus
    enc = _FakeEncoder({f"q{j}": q for j, q in enumerate(queries)})
    pipe = rank.Pipeline(index8, encoder=enc)
    hits = pipe.search(["q0", "q1"], k=10)
    ids, scores = index8.search(queries[:2], k=10)
    assert [h.id for h in hits[0]] == [f"d{i}" for i in ids[0]]
    assert [h.score for h in hits[1]] == pytest.approx(scores[1].tolist())
    with pytest.raises(InvalidValueError, match="encoder"):
        rank.Pipeline(index8)
    with pytest.raises(ShapeError, match="encoder"):
        ColBERTRetriever(index8, _FakeEncoder({}, dim=DIM + 1))
    run = pipe.run({"a": "q3"}, k=5)
    assert list(run["a"]) == [f"d{i}" for i in index8.search(queries[3], k=5)[0]]


@pytest.mark.slow
def test_scifact_cli_with_a_tiny_colbert_encoder(shared_data, tmp_path):
    """`rank index --colbert` + `rank search` on SciFact abstracts (the first 500) with a tiny
    random ColBERT checkpoint exported here, against exhaustive MaxSim with the same encoder."""
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    from _helpers import tiny_colbert_checkpoint

    from rank.cli import main
    from rank.rerank import ColBERTEncoder, export_colbert_encoder

    data = shared_data("scifact")
    tiny_colbert_checkpoint(tmp_path / "ckpt", "pylate")
    export_colbert_encoder(tmp_path / "ckpt", tmp_path / "onnx")
    lines = (data / "corpus.jsonl").read_text(encoding="utf-8").splitlines()[:500]
    (tmp_path / "corpus.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    queries = (data / "queries.jsonl").read_text(encoding="utf-8").splitlines()[:20]
    (tmp_path / "queries.jsonl").write_text("\n".join(queries) + "\n", encoding="utf-8")
    assert main(["index", str(tmp_path / "corpus.jsonl"), "--colbert", str(tmp_path / "onnx"), "--nbits", "8",
                 "--n-centroids", "64", "--n-candidates", "300", "--nprobe", "6", "-o", str(tmp_path / "idx"),
                 "-q"]) == 0
    assert main(["search", str(tmp_path / "idx"), str(tmp_path / "queries.jsonl"), "--colbert",
                 str(tmp_path / "onnx"), "-k", "10", "-o", str(tmp_path / "run.trec"), "-q"]) == 0
    from rank._io_corpus import read_corpus, read_queries
    from rank.evaluate import read_run

    run = read_run(tmp_path / "run.trec")
    ids, texts = read_corpus(tmp_path / "corpus.jsonl")
    qids, qtexts = read_queries(tmp_path / "queries.jsonl")
    enc = ColBERTEncoder(tmp_path / "onnx")
    docs = enc.encode_documents(texts)
    got = []
    for qid, q in zip(qids, enc.encode_queries(qtexts)):
        top, _ = rerank_maxsim(q, docs, 10)
        got.append(len(set(run[qid]) & {ids[i] for i in top}) / 10)
    assert np.mean(got) >= 0.9
    index = ColBERTIndex.load(tmp_path / "idx")
    assert index.ids == tuple(ids) and len(index) == 500
    assert (index.nbits, index.n_centroids, index.n_candidates, index.nprobe) == (8, 64, 300, 6)


def test_cli_colbert_options_need_colbert(tmp_path, capsys):
    from rank.cli import main

    (tmp_path / "c.txt").write_text("one document\nanother document\n", encoding="utf-8")
    for flag, value in (("--n-centroids", "8"), ("--nbits", "3.5"), ("--n-candidates", "10"), ("--nprobe", "2")):
        assert main(["index", str(tmp_path / "c.txt"), flag, value, "-o", str(tmp_path / "idx"), "-q"]) != 0
        assert flag in capsys.readouterr().err and not (tmp_path / "idx").exists()


def test_cli_nbits_argument():
    import argparse

    from rank.cli import _nbits_arg

    assert _nbits_arg("3") == 3 and isinstance(_nbits_arg("3"), int)
    assert _nbits_arg("3.5") == 3.5 and _nbits_arg("8.0") == 8 and isinstance(_nbits_arg("8.0"), int)
    with pytest.raises(argparse.ArgumentTypeError, match="3.5"):
        _nbits_arg("three")
