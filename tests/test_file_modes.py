"""File modes of every save path: under umask 022 a new file is 0644 and a new directory 0755
(what ``open`` and ``mkdir`` give), and a file or directory that replaces an existing one keeps
that one's permission bits (0600 stays 0600).

Covered: BM25.save, SparseIndex.save, DenseIndex.save (flat, and HNSW through FAISS),
ColBERTIndex.save, rank.evaluate.write_run (to a path, an open stream and "-"), the CLI's
`rank index -o`, `rank search -o`, `rank fuse -o`, `rank rerank -o`, the ONNX exports of a tiny
cross-encoder and ColBERT encoder, and the shard directories of rank.distributed.
"""
import io
import os
import stat

import numpy as np
import pytest

from rank.evaluate import write_run
from rank.retrieve import BM25, SparseIndex

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")

DOCS = ["the cat sat on the mat", "a dog sat on a log", "cats and dogs are friends", "the mat is red",
        "a red log in the river", "the river bank", "money in the bank", "green trees by the river"]
QUERIES = ["cat on a mat", "river bank", "red log"]


@pytest.fixture(autouse=True)
def umask022():
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def tree_modes(root):
    """{relative path: mode} of `root` and everything below it ('.' is the root itself)."""
    out = {".": mode(root)}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            out[os.path.relpath(full, root)] = mode(full)
    return out


def assert_new_modes(path):
    """A new file is 0644; a new directory 0755 and so is every directory below it, its files 0644;
    no temporary is left beside it."""
    if os.path.isdir(path):
        wrong = {p: oct(m) for p, m in tree_modes(path).items()
                 if m != (0o755 if os.path.isdir(os.path.join(path, p)) else 0o644)}
        assert not wrong, f"{path}: expected directories 0755 and files 0644, got {wrong}"
    else:
        assert mode(path) == 0o644, f"{path}: expected 0644, got {oct(mode(path))}"
    parent = os.path.dirname(os.path.abspath(path))
    leftovers = [n for n in os.listdir(parent) if n.startswith((".tmp-", ".old-"))]
    assert not leftovers, leftovers


def assert_replace_keeps_mode(path, save, kept):
    """Set `path` to mode `kept`, save over it, and check the replacement has mode `kept` again."""
    os.chmod(path, kept)
    save()
    assert mode(path) == kept, f"{path}: replacing a {oct(kept)} target gave {oct(mode(path))}"


# --- indexes -------------------------------------------------------------------------------------

def test_bm25_save(tmp_path):
    bm = BM25().index(DOCS, show_progress=False)
    path = tmp_path / "bm25.idx"
    bm.save(path)
    assert_new_modes(path)
    assert_replace_keeps_mode(path, lambda: bm.save(path), 0o700)
    assert BM25.load(path).n_docs == len(DOCS)


def test_sparse_index_save(tmp_path):
    rng = np.random.default_rng(0)
    docs = [{int(t): float(w) for t, w in zip(rng.choice(50, 5, replace=False), rng.random(5))} for _ in range(20)]
    index = SparseIndex().add(docs)
    path = tmp_path / "sparse.idx"
    index.save(path)
    assert_new_modes(path)
    assert_replace_keeps_mode(path, lambda: index.save(path), 0o750)


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_dense_index_save(tmp_path, kind):
    if kind != "flat":
        pytest.importorskip("faiss")
    from rank.retrieve import DenseIndex

    index = DenseIndex(8, index=kind)
    index.add(np.random.default_rng(1).standard_normal((50, 8)).astype(np.float32))
    path = tmp_path / f"{kind}.rkd"
    index.save(path)
    assert_new_modes(path)
    assert_replace_keeps_mode(path, lambda: index.save(path), 0o600)
    assert len(DenseIndex.load(path)) == 50


def test_colbert_index_save(tmp_path):
    pytest.importorskip("faiss")
    from rank.retrieve import ColBERTIndex

    rng = np.random.default_rng(2)
    docs = [rng.standard_normal((int(rng.integers(4, 10)), 16)).astype(np.float32) for _ in range(60)]
    index = ColBERTIndex(16, nbits=2, n_centroids=8)
    index.add(docs, show_progress=False)
    path = tmp_path / "colbert.idx"
    index.save(path)
    assert_new_modes(path)
    assert_replace_keeps_mode(path, lambda: index.save(path), 0o700)


# --- runs ----------------------------------------------------------------------------------------

RUN = {"q1": {"d1": 2.0, "d2": 1.0}, "q2": {"d3": 0.5}}
RUN_TEXT = "q1 Q0 d1 1 2.0 t\nq1 Q0 d2 2 1.0 t\nq2 Q0 d3 1 0.5 t\n"


def test_write_run_to_a_path(tmp_path):
    path = tmp_path / "run.trec"
    write_run(RUN, path, tag="t")
    assert_new_modes(path)
    assert_replace_keeps_mode(path, lambda: write_run(RUN, path, tag="t"), 0o600)
    assert path.read_text() == RUN_TEXT
    write_run(RUN, str(tmp_path / "str.trec"), tag="t")  # a str path too
    assert_new_modes(tmp_path / "str.trec")


def test_write_run_to_a_stream_and_to_stdout(tmp_path, capsys):
    path = tmp_path / "mine.trec"
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)  # the caller's file: written to, never replaced
    with os.fdopen(fd, "w") as f:
        write_run(RUN, f, tag="t")
    assert path.read_text() == RUN_TEXT and mode(path) == 0o600
    buf = io.StringIO()
    write_run(RUN, buf, tag="t")
    assert buf.getvalue() == RUN_TEXT
    write_run(RUN, "-", tag="t")
    assert capsys.readouterr().out == RUN_TEXT
    assert sorted(os.listdir(tmp_path)) == ["mine.trec"]


# --- the command line ----------------------------------------------------------------------------

@pytest.fixture
def collection(tmp_path):
    corpus, queries = tmp_path / "corpus.txt", tmp_path / "queries.txt"
    corpus.write_text("\n".join(DOCS) + "\n")
    queries.write_text("\n".join(QUERIES) + "\n")
    return corpus, queries


def rank_cli(*args):
    from rank.cli import main

    status = main([str(a) for a in args])
    assert status == 0, (args, status)


def test_cli_index_search_and_fuse_outputs(tmp_path, collection, capsys):
    corpus, queries = collection
    index = tmp_path / "cli.idx"
    rank_cli("index", corpus, "-o", index, "--quiet")
    assert_new_modes(index)
    assert_replace_keeps_mode(index, lambda: rank_cli("index", corpus, "-o", index, "--quiet"), 0o700)

    run = tmp_path / "bm25.trec"
    rank_cli("search", index, queries, "-o", run, "-k", 3, "--quiet")
    assert_new_modes(run)
    assert_replace_keeps_mode(run, lambda: rank_cli("search", index, queries, "-o", run, "-k", 3, "--quiet"),
                              0o600)
    other = tmp_path / "other.trec"
    rank_cli("search", index, queries, "-o", other, "-k", 5, "--run-name", "other", "--quiet")

    fused = tmp_path / "fused.trec"
    rank_cli("fuse", run, other, "-o", fused, "--quiet")
    assert_new_modes(fused)
    assert_replace_keeps_mode(fused, lambda: rank_cli("fuse", run, other, "-o", fused, "--quiet"), 0o640)
    assert len(fused.read_text().splitlines()) >= len(QUERIES)


# --- model exports -------------------------------------------------------------------------------

def _needs_export():
    for name in ("onnxruntime", "onnx", "tokenizers", "torch", "transformers", "safetensors"):
        pytest.importorskip(name)


@pytest.mark.slow
def test_cross_encoder_export_and_cli_rerank(tmp_path, collection):
    _needs_export()
    from _helpers import tiny_cross_encoder
    from rank.rerank import export_cross_encoder

    tiny_cross_encoder(tmp_path / "ckpt")
    out = tmp_path / "ce"
    export_cross_encoder(tmp_path / "ckpt", out)
    assert_new_modes(out)
    assert_replace_keeps_mode(out, lambda: export_cross_encoder(tmp_path / "ckpt", out), 0o700)

    corpus, queries = collection
    rank_cli("index", corpus, "-o", tmp_path / "idx", "--quiet")
    rank_cli("search", tmp_path / "idx", queries, "-o", tmp_path / "bm25.trec", "-k", 4, "--quiet")
    reranked = tmp_path / "reranked.trec"
    rerank = ("rerank", tmp_path / "bm25.trec", "--corpus", corpus, "--queries", queries, "--model", out,
              "-o", reranked, "--quiet")
    rank_cli(*rerank)
    assert_new_modes(reranked)
    assert_replace_keeps_mode(reranked, lambda: rank_cli(*rerank), 0o600)


@pytest.mark.slow
def test_colbert_encoder_export(tmp_path):
    _needs_export()
    from _helpers import tiny_colbert_checkpoint
    from rank.rerank import export_colbert_encoder

    tiny_colbert_checkpoint(tmp_path / "ckpt", "pylate")
    out = tmp_path / "colbert"
    export_colbert_encoder(tmp_path / "ckpt", out)
    assert_new_modes(out)
    assert_replace_keeps_mode(out, lambda: export_colbert_encoder(tmp_path / "ckpt", out), 0o750)


# --- distributed shards --------------------------------------------------------------------------

@pytest.mark.slow
def test_sharded_bm25_directories(tmp_path):
    pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    from _helpers import local_ray_cluster

    with local_ray_cluster() as distributed:
        path = tmp_path / "sharded"
        index = distributed.ShardedBM25.build(DOCS, path, 2)
        index.close()
        assert_new_modes(path)
        assert_replace_keeps_mode(path, lambda: distributed.ShardedBM25.build(DOCS, path, 2).close(), 0o700)
