"""rank.distributed: sharded BM25 / DenseIndex / SparseIndex on a local Ray cluster give exactly
the answers of the single-machine classes; faults, bad input, the CLI.

One local cluster (2 CPUs, no dashboard) serves the whole module. Most equality checks serve
the shards in-process (``local=True``, the same ShardServer code the actors run) after a build
by Ray tasks; a subset goes through one Ray actor per shard, which costs a process each.
"""
import json
import os
import shutil
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")

from _helpers import local_ray_cluster  # noqa: E402
import rank  # noqa: E402
from rank import errors  # noqa: E402
from rank._io_corpus import read_corpus, read_queries  # noqa: E402
from rank.retrieve import BM25, SparseIndex, Tokenizer  # noqa: E402
from rank.rerank import DenseIndex  # noqa: E402

METHODS = ("robertson", "lucene", "atire", "bm25l", "bm25+")


@pytest.fixture(scope="module")
def cluster():
    with local_ray_cluster() as distributed:
        yield distributed


# --- import and version -------------------------------------------------------------------------

def test_missing_ray_raises_missing_dependency():
    code = ("import sys; sys.modules['ray'] = None\n"
            "try:\n    import rank.distributed\nexcept Exception as e:\n"
            "    print(type(e).__name__, '|', e, '|', isinstance(e, ImportError))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(rank.__file__))))
    assert "MissingDependencyError" in out.stdout, out.stdout + out.stderr
    assert "rank-kernels[ray]" in out.stdout and "True" in out.stdout


def test_supported_ray_versions():
    from rank.distributed._ray import check_version

    for ok in ("2.9.0", "2.9.3", "2.40.0", "2.60.0", "2.10.0rc1"):
        check_version(ok)
    for bad in ("2.8.1", "1.13.0", "3.0.0", "garbage"):
        with pytest.raises(errors.MissingDependencyError, match=r"ray>=2\.9,<3.*found ray"):
            check_version(bad)
    check_version(ray.__version__)  # the installed one is supported


def test_merge_topk_matches_a_full_sort():
    from rank.distributed._ray import merge_topk

    rng = np.random.default_rng(7)
    values = np.array([-1.5, -0.0, 0.0, 0.5, 2.0, 1e-30, 3e38], np.float32)
    for big in (False, True):
        for _ in range(150):
            parts, start, nq = [], (1 << 33) if big else 0, 3
            for _ in range(int(rng.integers(1, 5))):
                n, kk = int(rng.integers(1, 8)), int(rng.integers(1, 6))
                sc = rng.choice(values, (nq, kk))
                ix = np.sort(rng.choice(np.arange(start, start + n + 10), (nq, kk)), axis=1).astype(np.int64)
                if rng.random() < 0.3:
                    ix[:, -1], sc[:, -1] = -1, -np.inf  # padding of a shard with fewer documents
                parts.append((ix, sc))
                start += n + 10
            k = int(rng.integers(1, 12))
            got_idx, got_sc = merge_topk(parts, k)
            all_idx = np.concatenate([p[0] for p in parts], 1)
            all_sc = np.concatenate([p[1] for p in parts], 1)
            for q in range(nq):
                want = sorted(zip(all_idx[q].tolist(), all_sc[q].tolist()), key=lambda t: (t[0] < 0, -t[1], t[0]))[:k]
                assert got_idx[q].tolist() == [i for i, _ in want]
                assert got_sc[q].tolist() == [s for _, s in want]


@pytest.mark.parametrize("method", METHODS)
def test_use_collection_stats_gives_the_scores_of_one_index(method):
    # the BM25 hook the shards rely on, without Ray: two halves of a corpus with the
    # collection's statistics score every document as one index does, bit for bit
    rng = np.random.default_rng(11)
    docs = [list(rng.integers(0, 40, rng.integers(0, 30))) for _ in range(300)]
    queries = [list(rng.integers(0, 45, 4)) for _ in range(30)]
    one = BM25(method).index(docs, show_progress=False)
    lengths = np.array([len(d) for d in docs])
    df = np.zeros(one.n_terms, np.int64)
    for d in docs:
        df[np.unique(np.array(d, np.int64))] += 1
    halves = [BM25(method).index(docs[:170], show_progress=False), BM25(method).index(docs[170:], show_progress=False)]
    for h in halves:
        h.use_collection_stats(len(docs), float(lengths.sum()) / len(docs), df)
    top = np.maximum(*[h._state.postings.max_value for h in halves])  # what the build keeps at the root
    for h in halves:
        h.use_collection_stats(len(docs), float(lengths.sum()) / len(docs), df, max_impact=top, recompute=False)
    for q in queries:
        assert np.array_equal(np.concatenate([h.get_scores(q) for h in halves]), one.get_scores(q))
    with pytest.raises(errors.InvalidValueError, match="n_docs"):
        halves[0].use_collection_stats(10, 5.0, df)
    with pytest.raises(errors.ShapeError, match="df"):
        halves[0].use_collection_stats(len(docs), 5.0, df[:3])
    with pytest.raises(errors.InvalidValueError, match="document frequency"):
        halves[0].use_collection_stats(len(docs), 5.0, np.zeros_like(df))
    with pytest.raises(errors.ShapeError, match="max_impact"):
        halves[0].use_collection_stats(len(docs), 5.0, df, max_impact=top[:2])


# --- sharded BM25 equals one BM25 --------------------------------------------------------------

def _collection(shared_data, name, n_queries=None):
    root = shared_data(name)
    ids, docs = read_corpus(root / "corpus.jsonl")
    _, queries = read_queries(root / "queries.jsonl")
    return root, ids, docs, queries[:n_queries]


# (method, n_shards) served by Ray actors; the other combinations are served in-process.
_ON_ACTORS = {("lucene", 5), ("bm25+", 2)}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["scifact", "cranfield"])
@pytest.mark.parametrize("method", METHODS)
def test_sharded_bm25_equals_one_index(cluster, shared_data, tmp_path, name, method):
    root, ids, docs, queries = _collection(shared_data, name)
    single = BM25(method).index(docs, ids=ids, show_progress=False)
    want_idx, want_sc = single.search(queries, k=100)
    for n_shards in (1, 2, 5):
        path = tmp_path / f"{name}-{method}-{n_shards}"
        built = cluster.ShardedBM25.build(root / "corpus.jsonl", path, n_shards, method=method)
        assert built.n_docs == len(docs) and built.n_shards == n_shards and built.n_terms == single.n_terms
        actors = (method, n_shards) in _ON_ACTORS
        index = cluster.ShardedBM25.load(path, local=not actors)
        with index:
            got_idx, got_sc, got_ids = index.search(queries, k=100, batch_size=400, return_ids=True)
        np.testing.assert_array_equal(got_idx, want_idx)
        np.testing.assert_allclose(got_sc, want_sc, rtol=0, atol=1e-6)
        assert np.array_equal(got_sc, want_sc)  # in fact bit-identical
        assert got_ids[:3] == [[ids[i] for i in row] for row in want_idx[:3].tolist()]
        # get_scores of a shard = the slice of the global scores
        shard = BM25.load(path / "shard-00000", mmap=True)
        assert shard.n_docs == built.manifest["shards"][0]["n_docs"]


@pytest.mark.slow
def test_sharded_bm25_inputs(cluster, tmp_path):
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(60)]
    docs = [" ".join(rng.choice(words, rng.integers(0, 12))) for _ in range(97)]
    docs[5] = ""  # empty documents are allowed
    queries = [" ".join(rng.choice(words, 3)) for _ in range(25)] + ["unknownterm"]
    ids = [f"d{i}" for i in range(len(docs))]
    for method in ("bm25+",):
        single = BM25(method).index(docs, ids=ids, show_progress=False)
        want = single.search(queries, k=10)
        # in-memory str documents
        got = cluster.ShardedBM25.build(docs, tmp_path / "mem", 3, ids=ids, method=method)
        _same(got.search(queries, k=10), want)
        got.close()
        # a Ray Dataset (rows read by the tasks)
        ds = ray.data.from_items([{"_id": i, "text": d} for i, d in zip(ids, docs)])
        got = cluster.ShardedBM25.build(ds, tmp_path / "ds", 4, method=method)
        _same(got.search(queries, k=10), want)
        assert got.search(queries[:2], k=3, return_ids=True)[2] == [[ids[i] for i in r] for r in want[0][:2, :3].tolist()]
        got.close()
    # token lists and token ids
    toks = [d.split() for d in docs]
    single = BM25().index(toks, show_progress=False)
    got = cluster.ShardedBM25.build(toks, tmp_path / "tok", 2)
    _same(got.search([q.split() for q in queries], k=7), single.search([q.split() for q in queries], k=7))
    got.close()
    int_docs = [[int(w[1:]) for w in d] for d in toks]
    int_q = [[int(w[1:]) for w in q.split()] for q in queries[:-1]]
    single = BM25("atire").index(int_docs, show_progress=False)
    got = cluster.ShardedBM25.build(int_docs, tmp_path / "ids", 5, method="atire")
    _same(got.search(int_q, k=200), single.search(int_q, k=200))  # k clipped to n_docs
    with pytest.raises(errors.InvalidValueError, match="token ids"):
        got.search(["w1 w2"])
    # txt, tsv and csv files (read with the corpus readers)
    (tmp_path / "c.txt").write_text("\n".join(d or "x" for d in docs) + "\n")
    (tmp_path / "c.tsv").write_text("id\ttext\n" + "".join(f"{i}\t{d}\n" for i, d in zip(ids, docs)))
    (tmp_path / "c.csv").write_text("id,title,text\n" + "".join(f'{i},"t {i}","{d}"\n' for i, d in zip(ids, docs)))
    for fname in ("c.txt", "c.tsv", "c.csv"):
        fids, ftexts = read_corpus(tmp_path / fname)
        single = BM25().index(ftexts, ids=fids, show_progress=False)
        got = cluster.ShardedBM25.build(tmp_path / fname, tmp_path / ("idx-" + fname), 3)
        got_idx, got_sc, got_ids = got.search(queries, k=5, return_ids=True)
        want_idx, want_sc = single.search(queries, k=5)
        _same((got_idx, got_sc), (want_idx, want_sc))
        assert got_ids == [[fids[i] for i in r] for r in want_idx.tolist()]
        got.close()


def _same(got, want):
    np.testing.assert_array_equal(got[0], want[0])
    assert np.array_equal(got[1], want[1]), np.abs(got[1] - want[1]).max()


@pytest.mark.slow
@pytest.mark.parametrize("method", ["robertson", "bm25l"])
def test_add_keeps_statistics_exact(cluster, tmp_path, method):
    rng = np.random.default_rng(1)
    words = [f"t{i}" for i in range(80)]
    docs = [" ".join(rng.choice(words[:50], rng.integers(1, 15))) for _ in range(120)]
    more = [" ".join(rng.choice(words, rng.integers(1, 15))) for _ in range(30)]  # new terms too
    even_more = [" ".join(rng.choice(words + ["zzz"], rng.integers(1, 9))) for _ in range(11)]
    queries = [" ".join(rng.choice(words + ["zzz"], 4)) for _ in range(40)]
    ids = [f"d{i}" for i in range(len(docs) + len(more) + len(even_more))]
    index = cluster.ShardedBM25.build(docs, tmp_path / "idx", 3, ids=ids[:120], method=method)
    index.add(more, ids=ids[120:150])
    index.add(even_more, ids=ids[150:], new_shard=True)
    assert index.n_shards == 4 and index.n_docs == len(ids)
    single = BM25(method).index(docs + more + even_more, ids=ids, show_progress=False)
    incremental = BM25(method).index(docs, ids=ids[:120], show_progress=False).add(more, ids=ids[120:150]).add(
        even_more, ids=ids[150:])
    want = single.search(queries, k=20)
    _same(index.search(queries, k=20), want)
    _same(incremental.search(queries, k=20), want)
    reopened = cluster.ShardedBM25.load(tmp_path / "idx", local=True)
    _same(reopened.search(queries, k=20), want)
    assert reopened.tokenizer.terms == single.tokenizer.terms
    with pytest.raises(errors.ShapeError, match="need ids"):
        index.add(["more text"])
    with pytest.raises(errors.InvalidValueError, match="duplicate"):
        index.add(["more text"], ids=["d3"])
    index.close()


def test_rebuild_is_atomic_and_refuses_foreign_directories(cluster, tmp_path):
    docs = ["red fox", "blue fox", "red red sky", "green grass", "sky blue"]
    path = tmp_path / "idx"
    first = cluster.ShardedBM25.build(docs, path, 2)
    before = sorted(os.listdir(path))
    with pytest.raises(errors.DTypeError, match="ids"):  # fails in the last step's task of shard 1
        cluster.ShardedBM25.build(docs, path, 2, ids=["a", "b", "c", "d", 1.5])
    with pytest.raises(errors.DTypeError, match="got a int"):
        cluster.ShardedBM25.build(docs[:4] + [123], path, 2)
    assert sorted(os.listdir(path)) == before
    assert [p for p in os.listdir(tmp_path) if p.startswith(".")] == []  # no temporary left behind
    again = cluster.ShardedBM25.load(path, local=True)
    _same(again.search(["red sky"], k=3), BM25().index(docs, show_progress=False).search(["red sky"], k=3))
    cluster.ShardedBM25.build(docs[::-1], path, 3)  # a complete rebuild replaces it
    assert cluster.ShardedBM25.load(path).n_shards == 3
    first.close()
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(errors.InvalidValueError, match="not a sharded index"):
        cluster.ShardedBM25.build(docs, other, 2)
    assert (other / "notes.txt").read_text() == "keep me"


def test_bad_arguments(cluster, tmp_path):
    docs = ["a b c", "b c d", "c d e"]
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(errors.InvalidValueError, match="n_shards"):
            cluster.ShardedBM25.build(docs, tmp_path / "x", bad)
    with pytest.raises(errors.ShapeError, match="empty corpus split"):
        cluster.ShardedBM25.build(docs, tmp_path / "x", 4)
    with pytest.raises(errors.ShapeError, match="at least one document"):
        cluster.ShardedBM25.build([], tmp_path / "x", 1)
    with pytest.raises(errors.ShapeError, match="empty corpus split"):
        cluster.ShardedBM25.build(ray.data.from_items([{"text": "a"}]), tmp_path / "x", 2)
    with pytest.raises(errors.UnknownMethodError):
        cluster.ShardedBM25.build(docs, tmp_path / "x", 1, method="bm99")
    with pytest.raises(errors.ShapeError, match="ids"):
        cluster.ShardedBM25.build(docs, tmp_path / "x", 1, ids=["a"])
    index = cluster.ShardedBM25.build(docs, tmp_path / "ok", 1)
    with pytest.raises(errors.InvalidValueError, match="k"):
        index.search(["a"], k=0)
    with pytest.raises(errors.InvalidValueError, match="without document ids"):
        index.search(["a"], return_ids=True)
    assert not os.path.exists(tmp_path / "x")


def test_shards_with_other_settings_refuse_to_combine(cluster, tmp_path):
    docs = ["red fox jumps", "blue fox", "red red sky", "green grass", "sky blue", "the fox"]
    path = tmp_path / "idx"
    cluster.ShardedBM25.build(docs, path, 2, k1=1.2)
    saved = tmp_path / "saved"
    shutil.copytree(path / "shard-00001", saved)
    shutil.rmtree(path / "shard-00001")
    BM25(k1=2.0).index([[0], [1], [2]], show_progress=False).save(path / "shard-00001")
    with pytest.raises(errors.InvalidValueError, match=r"shard 1 .*k1=2\.0.*k1=1\.2"):
        cluster.ShardedBM25.load(path)
    shutil.rmtree(path / "shard-00001")
    BM25(tokenizer=Tokenizer(stopwords=None)).index([[0], [1], [2]], show_progress=False).save(path / "shard-00001")
    with pytest.raises(errors.InvalidValueError, match="tokenizer setting stopwords"):
        cluster.ShardedBM25.load(path)
    shutil.rmtree(path / "shard-00001")
    BM25("atire").index([[0], [1], [2]], show_progress=False).save(path / "shard-00001")
    with pytest.raises(errors.InvalidValueError, match="method='atire'"):
        cluster.ShardedBM25.load(path)
    shutil.rmtree(path / "shard-00001")
    shutil.copytree(saved, path / "shard-00001")
    assert cluster.ShardedBM25.load(path).n_docs == len(docs)


@pytest.mark.slow
def test_missing_or_corrupt_shard_is_named(cluster, tmp_path):
    docs = [f"word{i % 7} word{i % 3} text" for i in range(30)]
    path = tmp_path / "idx"
    cluster.ShardedBM25.build(docs, path, 3)
    shutil.move(path / "shard-00002", tmp_path / "away")
    with pytest.raises(errors.CorruptFileError, match="shard 2 .*shard-00002"):
        cluster.ShardedBM25.load(path)
    shutil.move(tmp_path / "away", path / "shard-00002")
    with open(path / "shard-00001" / "docs.npy", "r+b") as f:  # truncate a posting array
        f.truncate(100)
    index = cluster.ShardedBM25.load(path)
    with pytest.raises(errors.CorruptFileError, match="shard 1 .*shard-00001"):
        index.search(["word1"], k=3)
    local = cluster.ShardedBM25.load(path, local=True)
    with pytest.raises(errors.CorruptFileError, match="shard 1 .*shard-00001"):
        local.search(["word1"], k=3)
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["shards"][0]["n_docs"] += 1
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(errors.CorruptFileError, match="manifest"):
        cluster.ShardedBM25.load(path)


@pytest.mark.slow
def test_killed_shard_actor_restarts_and_batch_completes(cluster, shared_data, tmp_path):
    root, ids, docs, queries = _collection(shared_data, "scifact")
    queries = queries * 3
    want = BM25().index(docs, show_progress=False).search(queries, k=50)
    index = cluster.ShardedBM25.build(root / "corpus.jsonl", tmp_path / "idx", 2)
    index.group.start()
    victim = index.group.actors[0]
    pid = ray.get(victim.pid.remote())
    result = {}

    def run():
        result["out"] = index.search(queries, k=50, batch_size=5)

    t = threading.Thread(target=run)
    t.start()
    time.sleep(0.3)
    ray.kill(victim, no_restart=False)  # dies mid-batch; Ray restarts it from the shard files
    t.join(timeout=300)
    assert not t.is_alive()
    _same(result["out"], want)
    assert ray.get(index.group.actors[0].pid.remote()) != pid  # it really died and came back
    # an actor Ray may not restart: the caller starts a fresh one and resubmits
    result.clear()
    t = threading.Thread(target=run)
    t.start()
    time.sleep(0.3)
    ray.kill(index.group.actors[1], no_restart=True)
    t.join(timeout=300)
    _same(result["out"], want)
    index.close()


def test_replicas_share_batches_and_give_the_same_answers(cluster, tmp_path):
    rng = np.random.default_rng(11)
    words = [f"w{i}" for i in range(60)]
    docs = [" ".join(rng.choice(words, int(rng.integers(3, 12)))) for _ in range(300)]
    queries = [" ".join(rng.choice(words, 3)) for _ in range(40)]
    want = BM25().index(docs, show_progress=False).search(queries, k=7)
    cluster.ShardedBM25.build(docs, tmp_path / "idx", 2)
    with pytest.raises(errors.InvalidValueError, match="replicas"):
        cluster.ShardedBM25.load(tmp_path / "idx", replicas=0)
    with cluster.ShardedBM25.load(tmp_path / "idx", replicas=2) as index:
        assert index.group.batch_size(1000, 40) == 20  # one batch per replica
        assert index.group.batch_size(8, 40) == 8 and index.group.batch_size(1000, 1) == 1
        _same(index.search(queries, k=7), want)
        assert len(index.group.actors) == 4
        pids = {ray.get(a.pid.remote()) for a in index.group.actors}
        assert len(pids) == 4  # every replica is its own actor process
        # a replica Ray may not restart: the caller starts a fresh one and resubmits its batches
        ray.kill(index.group.actors[1], no_restart=True)
        _same(index.search(queries, k=7, batch_size=5), want)
        assert ray.get(index.group.actors[1].pid.remote()) not in pids
    dense = rng.standard_normal((200, 8)).astype(np.float32)
    cluster.ShardedDenseIndex.build(dense, tmp_path / "dense", 2)
    one = DenseIndex(8)
    one.add(dense, show_progress=False)
    with cluster.ShardedDenseIndex.load(tmp_path / "dense", replicas=2) as index:
        _same(index.search(dense[:9], k=5), one.search(dense[:9], k=5))


# --- dense and sparse ---------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("metric,dtype", [("dot", "float32"), ("cosine", "float32"), ("dot", "float16")])
def test_sharded_dense_equals_one_index(cluster, tmp_path, metric, dtype):
    rng = np.random.default_rng(2)
    v = rng.standard_normal((1500, 24)).astype(np.float32)
    v[700:760] = v[100:160]  # exact ties across shards
    v[1200:1210] = v[5]
    q = np.concatenate([rng.standard_normal((60, 24)), v[[5, 100, 130]]]).astype(np.float32)
    one = DenseIndex(24, metric=metric, dtype=dtype)
    one.add(v)
    for n_shards in (1, 2, 5):
        path = tmp_path / f"d{n_shards}"
        cluster.ShardedDenseIndex.build(v, path, n_shards, metric=metric, dtype=dtype)
        for k in (10, 100, 2000):
            actors = (n_shards, k, metric, dtype) == (5, 100, "cosine", "float32")
            with cluster.ShardedDenseIndex.load(path, local=not actors) as index:
                _same(index.search(q, k=k, batch_size=25), one.search(q, k=k))
    idx, sc = cluster.ShardedDenseIndex.load(tmp_path / "d2", local=True).search(q[0], k=3)
    assert idx.shape == (3,)
    with pytest.raises(errors.ShapeError, match="dimension"):
        cluster.ShardedDenseIndex.load(tmp_path / "d2", local=True).search(np.ones((2, 5)))
    with pytest.raises(errors.ShapeError, match="empty corpus split"):
        cluster.ShardedDenseIndex.build(v[:3], tmp_path / "small", 4)


def _sparse_rows(rng, n, n_terms, nnz):
    rows = []
    for _ in range(n):
        t = rng.choice(n_terms, rng.integers(0, nnz + 1), replace=False)
        w = np.round(rng.random(t.shape[0]) * 4, 1)  # coarse weights: many exact ties
        rows.append({int(a): float(b) for a, b in zip(t, w)})
    return rows


@pytest.mark.slow
def test_sharded_sparse_equals_one_index(cluster, tmp_path):
    scipy_sparse = pytest.importorskip("scipy.sparse")
    rng = np.random.default_rng(3)
    docs = _sparse_rows(rng, 900, 300, 25)
    queries = _sparse_rows(rng, 50, 300, 8) + [{}, {299: 1.0, 0: 0.5}]
    one = SparseIndex().add(docs)
    for n_shards in (1, 2, 5):
        path = tmp_path / f"s{n_shards}"
        cluster.ShardedSparseIndex.build(docs, path, n_shards)
        for k in (10, 1000):
            want = one.search(queries, k=k)
            index = cluster.ShardedSparseIndex.load(path, local=(n_shards, k) != (2, 10))
            with index:
                _same(index.search(queries, k=k, batch_size=20), want)
    # a CSR matrix with negative weights (no pruning) gives the same as its dict form
    m = scipy_sparse.random(400, 200, density=0.05, format="csr", random_state=4, dtype=np.float64)
    m.data = np.round(m.data * 4 - 1, 1)
    qm = scipy_sparse.random(30, 200, density=0.05, format="csr", random_state=5, dtype=np.float64)
    want = SparseIndex().add(m).search(qm, k=15)
    cluster.ShardedSparseIndex.build(m, tmp_path / "csr", 3)
    _same(cluster.ShardedSparseIndex.load(tmp_path / "csr", local=True).search(qm, k=15), want)


# --- CLI ---------------------------------------------------------------------------------------

@pytest.mark.slow
def test_cli_sharded_index_and_search(cluster, tmp_path, capsys):
    from rank.cli import main

    rng = np.random.default_rng(5)
    words = [f"w{i}" for i in range(40)]
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"_id": f"d{i}", "title": "", "text": " ".join(rng.choice(words, 8))}) + "\n"
                              for i in range(200)))
    queries = tmp_path / "queries.jsonl"
    queries.write_text("".join(json.dumps({"_id": f"q{i}", "text": " ".join(rng.choice(words, 3))}) + "\n"
                               for i in range(20)))
    assert main(["index", str(corpus), "-o", str(tmp_path / "one"), "-q"]) == 0
    assert main(["index", str(corpus), "-o", str(tmp_path / "sharded"), "--shards", "3", "-q"]) == 0
    assert (tmp_path / "sharded" / "manifest.json").is_file()
    assert main(["search", str(tmp_path / "one"), str(queries), "-k", "15", "-o", str(tmp_path / "one.trec"), "-q"]) == 0
    assert main(["search", str(tmp_path / "sharded"), str(queries), "-k", "15", "-o", str(tmp_path / "sh.trec"),
                 "-q"]) == 0
    one = (tmp_path / "one.trec").read_text()
    assert one and (tmp_path / "sh.trec").read_text() == one
