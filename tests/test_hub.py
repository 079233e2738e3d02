"""Sharing indexes on the Hugging Face Hub (rank.retrieve.hub), entirely offline.

Uploads go to a stand-in for ``HfApi.create_repo`` / ``HfApi.upload_folder`` (huggingface-hub
ships no local test double of HfApi) that records the files handed to it and lays them out
as the huggingface-hub cache does: ``models--owner--name/blobs/<sha256>``,
``snapshots/<commit>/<path>`` linking to the blobs, ``refs/<branch>`` holding the commit.
Loads then run with HF_HUB_OFFLINE=1 against that cache, so nothing touches the network.
"""
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

hf = pytest.importorskip("huggingface_hub")
hf_constants = pytest.importorskip("huggingface_hub.constants")

import rank  # noqa: E402
from rank import errors  # noqa: E402
from rank.retrieve import BM25, SparseIndex, hub  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ["the cat sat on the mat", "a dog sat on a log", "cats and dogs are pets", "the quick brown fox",
          "a lazy dog sleeps all day", "fish swim in the river"]


def write_cache(cache, repo_id, files, *, ref="main", links=True, rev=None):
    """Lay out `files` (path -> bytes) as the huggingface-hub cache holds one commit of repo_id."""
    folder = Path(cache) / ("models--" + repo_id.replace("/", "--"))
    rev = rev or hashlib.sha1(repr(sorted(files.items())).encode()).hexdigest()
    snap = folder / "snapshots" / rev
    for name, data in files.items():
        dst = snap / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        if links:
            blob = folder / "blobs" / hashlib.sha256(data).hexdigest()
            blob.parent.mkdir(parents=True, exist_ok=True)
            blob.write_bytes(data)
            dst.symlink_to(os.path.relpath(blob, dst.parent))
        else:
            dst.write_bytes(data)
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / ref).write_text(rev)
    return rev


@pytest.fixture
def offline_cache(tmp_path, monkeypatch):
    """An empty huggingface-hub cache, offline mode on (the environment and the library's flag)."""
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(cache))
    return cache


class FakeHub:
    """Records create_repo / upload_folder calls and publishes each upload into the cache."""

    def __init__(self, cache, links=True):
        self.cache, self.links = cache, links
        self.created, self.uploads = [], []

    def install(self, monkeypatch):
        fake = self

        def create_repo(api, repo_id, **kw):
            fake.created.append((repo_id, kw))
            return f"hub://{repo_id}"

        def upload_folder(api, *, repo_id, folder_path, **kw):
            files = {p.relative_to(folder_path).as_posix(): p.read_bytes()
                     for p in sorted(Path(folder_path).rglob("*")) if p.is_file()}
            fake.uploads.append((repo_id, files, kw))
            rev = write_cache(fake.cache, repo_id, files, links=fake.links, ref=kw.get("revision") or "main")
            return f"hub://{repo_id}/commit/{rev}"

        monkeypatch.setattr(hf.HfApi, "create_repo", create_repo)
        monkeypatch.setattr(hf.HfApi, "upload_folder", upload_folder)
        return self


def bm25_index():
    return BM25().index(CORPUS, ids=[f"d{i}" for i in range(len(CORPUS))], show_progress=False)


def test_bm25_round_trip(offline_cache, monkeypatch):
    fake = FakeHub(offline_cache).install(monkeypatch)
    bm = bm25_index()
    out = bm.save_to_hub("owner/bm25-demo", private=True, description="Six sentences about pets.")
    assert out.startswith("hub://owner/bm25-demo/commit/")
    assert fake.created == [("owner/bm25-demo", {"private": True, "repo_type": "model", "exist_ok": True})]
    (repo_id, files, kw), = fake.uploads
    assert repo_id == "owner/bm25-demo" and kw["repo_type"] == "model" and kw["create_pr"] is False
    # the stale files of an earlier index go in the same commit; nothing else of the repository
    assert sorted(kw["delete_patterns"]) == ["index.rkd", "index/*", "rank_kernels_index.json"]
    assert "6 documents" in kw["commit_message"]
    # exactly what BM25.save writes, plus the description and the card; no pickle anywhere
    saved = Path(offline_cache.parent / "direct")
    bm.save(saved)
    assert sorted(files) == sorted(["README.md", hub.CONFIG_NAME] + [f"index/{p.name}" for p in saved.iterdir()])
    assert all(not data.startswith(b"\x80") for data in files.values())  # pickle protocol 2+ header
    config = json.loads(files[hub.CONFIG_NAME])
    assert config["class"] == "BM25" and config["n_docs"] == 6 and config["library"] == "rank-kernels"
    assert config["settings"]["method"] == "lucene" and config["settings"]["k1"] == 1.2
    for name, spec in config["files"].items():  # independent digests of what was handed over
        assert spec == {"size": len(files[name]), "sha256": hashlib.sha256(files[name]).hexdigest()}
    card = hf.ModelCard(files["README.md"].decode())  # the Hub's own parser reads the metadata
    assert card.data.library_name == "rank-kernels" and "bm25" in card.data.tags
    assert 'BM25.load_from_hub("owner/bm25-demo")' in card.text and "Six sentences about pets." in card.text
    assert "**6 documents**" in card.text
    # loading offline from the cache gives the same index
    queries = ["dog on a log", "cat", "river fish"]
    want = bm.search(queries, k=4)
    for mmap in (True, False):
        got = BM25.load_from_hub("owner/bm25-demo", mmap=mmap)
        assert got.ids == bm.ids and got.n_docs == 6
        for a, b in zip(got.search(queries, k=4), want):
            np.testing.assert_array_equal(a, b)
    repo_folder = offline_cache / "models--owner--bm25-demo"
    assert not [p for p in repo_folder.iterdir() if p.name.startswith(".rank-kernels-load-")]  # staging removed


def test_sparse_and_dense_round_trip(offline_cache, monkeypatch):
    fake = FakeHub(offline_cache).install(monkeypatch)
    rng = np.random.default_rng(0)
    sparse = SparseIndex().add([{int(t): float(rng.random()) for t in rng.choice(50, 6, replace=False)}
                                for _ in range(40)])
    sparse.save_to_hub("owner/splade")
    queries = [{3: 1.0, 7: 0.5}, {11: 2.0}]
    got = SparseIndex.load_from_hub("owner/splade")
    for a, b in zip(got.search(queries, k=5), sparse.search(queries, k=5)):
        np.testing.assert_array_equal(a, b)
    for metric, dtype in (("cosine", "float16"), ("dot", "float32")):
        dense = rank.DenseIndex(8, metric=metric, dtype=dtype)
        dense.add(rng.standard_normal((30, 8)))
        dense.save_to_hub(f"owner/dense-{metric}", model_card=False)
        files = fake.uploads[-1][1]
        assert sorted(files) == ["index.rkd", hub.CONFIG_NAME]  # no card: the repository keeps its own
        config = json.loads(files[hub.CONFIG_NAME])
        assert config["settings"] == {"dim": 8, "metric": metric, "dtype": dtype, "index": "flat"}
        for mmap in (True, False):
            back = rank.DenseIndex.load_from_hub(f"owner/dense-{metric}", mmap=mmap)
            np.testing.assert_array_equal(back.vectors, dense.vectors)
            assert back.metric == metric and back.dtype == np.dtype(dtype)
    pytest.importorskip("faiss")  # an approximate kind: FAISS's own format inside the checksummed file
    hnsw = rank.DenseIndex(8, index="hnsw")
    hnsw.add(rng.standard_normal((50, 8)))
    hnsw.save_to_hub("owner/dense-hnsw")
    assert json.loads(fake.uploads[-1][1][hub.CONFIG_NAME])["settings"]["index"] == "hnsw"
    q = rng.standard_normal((3, 8))
    for a, b in zip(rank.DenseIndex.load_from_hub("owner/dense-hnsw").search(q, k=5), hnsw.search(q, k=5)):
        np.testing.assert_array_equal(a, b)
    # a repository of another class is refused with the class to use
    with pytest.raises(errors.CorruptFileError, match=r"holds a 'SparseIndex' index, not a BM25 \(load it with "
                                                      r"SparseIndex.load_from_hub\)"):
        BM25.load_from_hub("owner/splade")
    with pytest.raises(errors.CorruptFileError, match="not a DenseIndex"):
        rank.DenseIndex.load_from_hub("owner/splade")


def test_plain_files_and_revisions(offline_cache, monkeypatch):
    """A cache of plain files (no links: e.g. where symlinks are unavailable) and tags."""
    FakeHub(offline_cache, links=False).install(monkeypatch)
    old = BM25().index(CORPUS[:3], show_progress=False)
    old.save_to_hub("owner/versions")
    folder = offline_cache / "models--owner--versions"
    (folder / "refs" / "v1").write_text((folder / "refs" / "main").read_text())
    new = bm25_index()
    new.save_to_hub("owner/versions")
    assert BM25.load_from_hub("owner/versions").n_docs == 6
    assert BM25.load_from_hub("owner/versions", revision="v1").n_docs == 3
    commit = (folder / "refs" / "v1").read_text()
    assert BM25.load_from_hub("owner/versions", revision=commit, verify=False).n_docs == 3


def _published(cache, monkeypatch, repo="owner/idx", links=True):
    """Files of a BM25 index as uploaded to `repo` (path -> bytes), and the fake hub."""
    fake = FakeHub(cache, links=links).install(monkeypatch)
    bm25_index().save_to_hub(repo)
    return dict(fake.uploads[-1][1])


def test_foreign_or_tampered_repositories(offline_cache, monkeypatch):
    files = _published(offline_cache, monkeypatch)
    # a model repository (weights, config, code): never an index, nothing of it is run
    write_cache(offline_cache, "owner/model", {"config.json": b'{"model_type": "bert"}',
                                               "pytorch_model.bin": b"\x80\x04K\x01.", "index/evil.py": b"1/0"})
    with pytest.raises(errors.CorruptFileError, match=r"not a rank-kernels index \(no rank_kernels_index.json"):
        BM25.load_from_hub("owner/model")

    def variant(name, **changes):
        cfg = json.loads(files[hub.CONFIG_NAME])
        cfg.update(changes)
        write_cache(offline_cache, f"owner/{name}", {**files, hub.CONFIG_NAME: json.dumps(cfg).encode()})
        return f"owner/{name}"

    cases = [
        (variant("v2", format_version=2), "unsupported index repository format version 2"),
        (variant("other", format="something.else"), "not a rank-kernels index description"),
        (variant("escape", files={"index/../../etc/passwd": {"size": 1, "sha256": "0" * 64}}), "unexpected file"),
        (variant("nofiles", files={}), "lists no index files"),
        (variant("badsha", files={k: {"size": v["size"], "sha256": "xyz"}
                                  for k, v in json.loads(files[hub.CONFIG_NAME])["files"].items()}), "unexpected file"),
    ]
    for repo, message in cases:
        with pytest.raises(errors.CorruptFileError, match=message):
            BM25.load_from_hub(repo)
    write_cache(offline_cache, "owner/notjson", {**files, hub.CONFIG_NAME: b"{not json"})
    with pytest.raises(errors.CorruptFileError, match="not valid JSON"):
        BM25.load_from_hub("owner/notjson")
    # a flipped byte: the digest catches it; without verify the loader's own checks still run
    name = next(n for n in files if n.endswith("impacts.npy"))
    flipped = bytearray(files[name])
    flipped[-1] ^= 0x40
    write_cache(offline_cache, "owner/flipped", {**files, name: bytes(flipped)})
    with pytest.raises(errors.CorruptFileError, match=r"impacts.npy: SHA-256 mismatch"):
        BM25.load_from_hub("owner/flipped")
    with pytest.raises(errors.CorruptFileError, match=r"Hub repository 'owner/flipped'.*index.*corrupt"):
        BM25.load_from_hub("owner/flipped", verify=False)
    write_cache(offline_cache, "owner/short", {**files, name: files[name][:-4]})
    with pytest.raises(errors.CorruptFileError, match=r"bytes, rank_kernels_index.json says"):
        BM25.load_from_hub("owner/short")
    # a link out of the repository's cache folder
    secret = offline_cache.parent / "secret.npy"
    secret.write_bytes(files[name])
    rev = write_cache(offline_cache, "owner/link", files)
    target = offline_cache / "models--owner--link" / "snapshots" / rev / name
    target.unlink()
    target.symlink_to(secret)
    with pytest.raises(errors.CorruptFileError, match="leads outside the repository's cache folder"):
        BM25.load_from_hub("owner/link")
    # a file the cache lacks (an interrupted download) is a missing model, not a corrupt one
    rev = write_cache(offline_cache, "owner/partial", files)
    (offline_cache / "models--owner--partial" / "snapshots" / rev / name).unlink()
    with pytest.raises(errors.ModelNotFoundError, match="missing from the downloaded snapshot"):
        BM25.load_from_hub("owner/partial")


def test_missing_repository_bad_arguments_and_extra(offline_cache, monkeypatch):
    with pytest.raises(errors.ModelNotFoundError, match=r"'owner/absent'.*HF_HUB_OFFLINE is set") as info:
        BM25.load_from_hub("owner/absent")
    assert isinstance(info.value, FileNotFoundError)
    _published(offline_cache, monkeypatch)
    with pytest.raises(errors.ModelNotFoundError, match="revision 'no-such-tag'"):
        BM25.load_from_hub("owner/idx", revision="no-such-tag")
    for bad in ("not a repo id!", "", "a/b/c", "../x", None, 3):
        with pytest.raises(errors.InvalidValueError, match="repo_id: expected a Hub repository id"):
            BM25.load_from_hub(bad)
        with pytest.raises(errors.InvalidValueError, match="repo_id"):
            bm25_index().save_to_hub(bad)
    with pytest.raises(errors.InvalidValueError, match="revision"):
        BM25.load_from_hub("owner/idx", revision="")
    with pytest.raises(errors.InvalidValueError, match="index is empty"):  # save's own check, before any upload
        BM25().save_to_hub("owner/empty")
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # as if the extra were not installed
    for call in (lambda: BM25.load_from_hub("owner/idx"), lambda: bm25_index().save_to_hub("owner/idx"),
                 lambda: SparseIndex.load_from_hub("owner/idx")):
        with pytest.raises(errors.MissingDependencyError, match=r"install rank-kernels\[hub\]"):
            call()


def test_offline_environment_set_before_import(offline_cache, monkeypatch, tmp_path):
    """The documented use: HF_HUB_CACHE and HF_HUB_OFFLINE=1 in the environment of a fresh process."""
    _published(offline_cache, monkeypatch)
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(offline_cache),
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    code = ("from rank.retrieve import BM25\n"
            "bm = BM25.load_from_hub('owner/idx')\n"
            "idx, _ = bm.search(['dog on a log'], k=2)\n"
            "print([bm.ids[i] for i in idx[0]])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    want, _ = bm25_index().search(["dog on a log"], k=2)
    assert out.stdout.split("\n")[0] == str([f"d{i}" for i in want[0]])


def test_concurrent_loads(offline_cache, monkeypatch, run_threads):
    _published(offline_cache, monkeypatch)
    results = run_threads(lambda i: BM25.load_from_hub("owner/idx").search(["lazy dog"], k=3)[0], n=4)
    for r in results:
        np.testing.assert_array_equal(r, results[0])


def test_docstring_examples():
    import doctest

    assert doctest.testmod(hub, raise_on_error=False).failed == 0
