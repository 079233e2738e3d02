"""File-fault suite: saved indexes truncated at every section boundary, byte flips in headers and
metadata, hostile meta.json values, foreign files (npz, zip, FIFO, directory, symlinks), and
saves interrupted between every two steps. Each case must give CorruptFileError (or, for a
harmless change, the original answers); an interrupted save must leave the old or the new
index, loadable, and the next save must clean up after it."""
import json
import os
import stat
import zipfile

import numpy as np
import pytest

import rank._atomic as atomic
from rank.errors import CorruptFileError, InvalidValueError, RankError
from rank.retrieve import BM25, SparseIndex, Tokenizer

DOCS = ["the quick brown fox jumps", "a lazy dog sleeps all day", "quick quick dogs and foxes",
        "brown bears eat honey", "the dog and the fox are friends", "honey is sweet and brown"]
QUERIES = ["quick fox", "brown honey", "dog", "friends of the fox"]
SPARSE = [{0: 1.0, 3: 0.5}, {3: 2.0, 7: 0.25}, {1: 1.0}, {0: 0.5, 1: 0.5, 7: 1.5}]
SPARSE_Q = [{3: 1.0, 0: 0.1}, {7: 2.0}, {1: 1.0, 0: 1.0}]


def _answers(index):
    if isinstance(index, BM25):
        return [a.tolist() for a in index.search(QUERIES, k=4)]
    return [a.tolist() for a in index.search(SPARSE_Q, k=3)]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = tmp_path_factory.mktemp("saved")
    bm = BM25().index(DOCS, ids=[f"d{i}" for i in range(len(DOCS))], show_progress=False)
    bm.save(root / "bm25")
    sp = SparseIndex().add(SPARSE)
    sp.save(root / "sparse")
    return {"bm25": (root / "bm25", BM25, _answers(bm)), "sparse": (root / "sparse", SparseIndex, _answers(sp))}


def _copy(src, dst):
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def _load_outcome(cls, path, **kw):
    """'corrupt' for CorruptFileError, else the answers of the loaded index (any other
    exception fails the test)."""
    try:
        index = cls.load(path, **kw)
    except CorruptFileError as e:
        assert str(e), "an empty message"
        return "corrupt"
    return _answers(index)


def _npy_sections(data):
    """Offsets where a .npy file's sections end: magic, version, header length, header, data."""
    header_len = int.from_bytes(data[8:10], "little")
    start = 10 + header_len
    return sorted({0, 1, 6, 8, 10, 10 + header_len // 2, start - 1, start, start + 1,
                   (start + len(data)) // 2, len(data) - 1})


@pytest.mark.parametrize("kind", ["bm25", "sparse"])
def test_truncation_at_every_section_boundary(saved, tmp_path, kind):
    src, cls, good = saved[kind]
    cases = 0
    for f in sorted(src.iterdir()):
        data = f.read_bytes()
        cuts = _npy_sections(data) if f.suffix == ".npy" else sorted({0, 1, len(data) // 2, len(data) - 1})
        for cut in cuts:
            if cut >= len(data):
                continue
            d = _copy(src, tmp_path / f"{f.stem}-{cut}")
            (d / f.name).write_bytes(data[:cut])
            for mmap in (True, False):
                out = _load_outcome(cls, d, mmap=mmap)
                cases += 1
                # an empty array's file only loses its padding: its answers cannot change
                assert out == "corrupt" or out == good, (f.name, cut, mmap)
    assert cases > 50


@pytest.mark.parametrize("kind", ["bm25", "sparse"])
def test_byte_flips_in_headers_and_metadata(saved, tmp_path, kind):
    src, cls, good = saved[kind]
    d = _copy(src, tmp_path / "work")
    results = {"corrupt": 0, "same": 0}
    for f in sorted(src.iterdir()):
        data = f.read_bytes()
        end = 10 + int.from_bytes(data[8:10], "little") if f.suffix == ".npy" else len(data)
        for pos in range(0, end, 3 if f.suffix == ".npy" else 5):
            for bit in (0x01, 0x20):
                flipped = bytearray(data)
                flipped[pos] ^= bit
                (d / f.name).write_bytes(bytes(flipped))
                out = _load_outcome(cls, d)
                assert out == "corrupt" or out == good, (f.name, pos, bit)
                results["corrupt" if out == "corrupt" else "same"] += 1
        (d / f.name).write_bytes(data)
    assert results["corrupt"] > 100


@pytest.mark.parametrize("kind", ["bm25", "sparse"])
def test_verify_catches_any_data_byte_flip(saved, tmp_path, kind):
    src, cls, good = saved[kind]
    d = _copy(src, tmp_path / "work")
    rng = np.random.default_rng(0)
    files = sorted(f for f in src.iterdir() if f.suffix == ".npy" and np.load(f).size) + [
        f for f in src.iterdir() if f.suffix == ".json" and f.name != "meta.json"]
    for f in files:
        data = f.read_bytes()
        start = 10 + int.from_bytes(data[8:10], "little") if f.suffix == ".npy" else 0
        for pos in rng.integers(start, len(data), size=6):
            flipped = bytearray(data)
            flipped[pos] ^= 1 << int(rng.integers(8))
            (d / f.name).write_bytes(bytes(flipped))
            assert _load_outcome(cls, d, verify=True) == "corrupt", (f.name, pos)
            out = _load_outcome(cls, d)  # without verify: a clean error, or answers from the flipped data
            assert out == "corrupt" or isinstance(out, list)
        (d / f.name).write_bytes(data)
    assert _load_outcome(cls, d, verify=True) == good


def _edit_meta(d, fn):
    meta = json.loads((d / "meta.json").read_text())
    fn(meta)
    (d / "meta.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("edit", [
    lambda m: m.update(avgdl=float("nan")), lambda m: m.update(avgdl=0.0), lambda m: m.update(avgdl=-1.0),
    lambda m: m.update(avgdl=m["avgdl"] * 1.5), lambda m: m.update(avgdl="3"), lambda m: m.update(avgdl=1e400),
    lambda m: m.update(n_docs=m["n_docs"] + 10), lambda m: m.update(n_docs=m["n_docs"] - 1),
    lambda m: m.update(n_docs=2**40), lambda m: m.update(n_docs=True), lambda m: m.update(n_terms=-1),
    lambda m: m.update(n_terms=m["n_terms"] + 1), lambda m: m.update(k1=float("inf")), lambda m: m.update(k1="1"),
    lambda m: m.update(b=2.0), lambda m: m.update(method="bm99"), lambda m: m.update(kind="pickles"),
    lambda m: m.update(tokenizer={"pattern": "(w+)+$"}), lambda m: m.update(tokenizer={"evil": 1}),
    lambda m: m.update(tokenizer="english"), lambda m: m["tokenizer"].update(stopwords=[1, 2]),
    lambda m: m["tokenizer"].update(pattern="(a|aa)+$"), lambda m: m["tokenizer"].update(min_length="2"),
    lambda m: m["arrays"].update({"../../outside": m["arrays"]["docs"]}),
    lambda m: m["arrays"].update({"/etc/passwd": m["arrays"]["docs"]}),
    lambda m: m.update(json=["../../../etc/hostname"]), lambda m: m.update(json=["vocabulary", "extra"]),
    lambda m: m["arrays"].pop("docs"), lambda m: m["arrays"]["docs"].update(shape=[1]),
    lambda m: m["arrays"]["docs"].update(dtype="<i8"), lambda m: m.update(arrays=[]),
    lambda m: m.update(format_version=2), lambda m: m.update(format="rank-kernels.sparse"),
], ids=lambda f: "")
def test_hostile_metadata(saved, tmp_path, edit):
    src, cls, _ = saved["bm25"]
    d = _copy(src, tmp_path / "work")
    _edit_meta(d, edit)
    with pytest.raises(CorruptFileError):
        BM25.load(d)


@pytest.mark.parametrize("name,content", [
    ("vocabulary.json", {"a": 1}), ("vocabulary.json", [1, 2, 3]), ("vocabulary.json", [["nested"]]),
    ("vocabulary.json", ["dup", "dup"]), ("vocabulary.json", [f"t{i}" for i in range(1000)]),
    ("ids.json", {"0": "d0"}), ("ids.json", ["d0"]), ("ids.json", [[1]] * 6), ("ids.json", [True] * 6),
    ("meta.json", []), ("meta.json", "text"), ("meta.json", None),
])
def test_json_of_the_wrong_shape(saved, tmp_path, name, content):
    src, _, _ = saved["bm25"]
    d = _copy(src, tmp_path / "work")
    (d / name).write_text(json.dumps(content))
    with pytest.raises(CorruptFileError):
        BM25.load(d)


def test_deeply_nested_and_undecodable_json(saved, tmp_path):
    src, _, _ = saved["bm25"]
    for name in ("meta.json", "vocabulary.json", "ids.json"):
        for payload in (b"[" * 200_000 + b"]" * 200_000, b"\xff\xfe\x00garbage", b'{"a": 1'):
            d = _copy(src, tmp_path / f"{name}-{len(payload)}-{payload[:2].hex()}")
            (d / name).write_bytes(payload)
            with pytest.raises(CorruptFileError):
                BM25.load(d)


def test_stored_pattern_runs_only_from_the_vetted_set(tmp_path):
    bm = BM25(tokenizer=Tokenizer(pattern=r"(w+)+$")).index(["www www", "w x"], show_progress=False)
    bm.save(tmp_path / "custom")
    with pytest.raises(CorruptFileError, match="vetted"):
        BM25.load(tmp_path / "custom")
    loaded = BM25.load(tmp_path / "custom", tokenizer=Tokenizer(pattern=r"(w+)+$"))  # the caller vouches for it
    assert loaded.tokenizer.vocabulary == bm.tokenizer.vocabulary
    with pytest.raises(InvalidValueError, match="tokenizer"):
        BM25.load(tmp_path / "custom", tokenizer=Tokenizer(pattern=r"\w+"))
    for preset in ("sklearn", "word", "nonspace"):
        vetted = BM25(tokenizer=Tokenizer(pattern=preset)).index(["Hello, world", "x y z"], show_progress=False)
        vetted.save(tmp_path / preset)
        back = BM25.load(tmp_path / preset)
        assert back.tokenizer.vocabulary == vetted.tokenizer.vocabulary
        assert _answers(back) == _answers(vetted)


def _foreign_npz(path):
    np.savez(str(path) + ".npz", docs=np.zeros(3, np.int32))
    os.replace(str(path) + ".npz", path)


def _foreign_zip(path):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("hello.txt", "not an array")


def _foreign_pickle(path):
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)


def _fifo(path):
    os.mkfifo(path)


def _directory(path):
    path.mkdir()


def _symlink_outside(path):
    outside = path.parent.parent / f"outside-{path.name}"
    outside.write_bytes((path.parent.parent / "template" / path.name).read_bytes())
    path.symlink_to(outside)


def _dangling(path):
    path.symlink_to(path.parent / "nowhere")


@pytest.mark.parametrize("make", [_foreign_npz, _foreign_zip, _foreign_pickle, _fifo, _directory,
                                  _symlink_outside, _dangling])
@pytest.mark.parametrize("target", ["docs.npy", "meta.json", "vocabulary.json"])
def test_foreign_files(saved, tmp_path, make, target):
    if make is _fifo and not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs on this OS")
    src, _, _ = saved["bm25"]
    _copy(src, tmp_path / "template")
    d = _copy(src, tmp_path / "work")
    (d / target).unlink()
    make(d / target)
    for mmap in (True, False):
        with pytest.raises(CorruptFileError):  # never a hang (FIFO), never an unpickled object
            BM25.load(d, mmap=mmap)


def test_symlink_inside_the_index_is_followed(saved, tmp_path):
    src, _, good = saved["bm25"]
    d = _copy(src, tmp_path / "work")
    (d / "docs.npy").rename(d / "docs-real.npy")
    (d / "docs.npy").symlink_to("docs-real.npy")
    assert _answers(BM25.load(d)) == good


# --- interrupted saves ------------------------------------------------------------------------------

class Injected(Exception):
    pass


class _Injector:
    """Raises Injected at the k-th call of any wrapped step (k = 1, 2, ...; 0 = never)."""

    STEPS = [(os, "open"), (os, "fsync"), (os, "rename"), (os, "replace"), (os, "mkdir"), (os, "chmod"),
             (np, "save"), (json, "dumps"), (json, "dump"), (atomic, "_remove"),
             (atomic, "_exchange")]

    def __init__(self, monkeypatch, k):
        self.k, self.calls, self.fired = k, 0, None
        for mod, name in self.STEPS:
            monkeypatch.setattr(mod, name, self._wrap(getattr(mod, name), f"{mod.__name__}.{name}"))

    def _wrap(self, fn, label):
        def step(*a, **kw):
            self.calls += 1
            if self.calls == self.k:
                self.fired = label
                raise Injected(label)
            return fn(*a, **kw)
        return step


@pytest.mark.slow
@pytest.mark.parametrize("swap", ["exchange", "two-renames"])
@pytest.mark.parametrize("kind", ["bm25", "sparse"])
def test_interrupted_saves_keep_the_old_or_the_new_index(tmp_path, monkeypatch, kind, swap):
    if swap == "two-renames":  # the path taken off Linux, or where the file system has no exchange
        monkeypatch.setattr(atomic, "_renameat2", None)
    if kind == "bm25":
        old, new, cls = (BM25().index(DOCS[:4], show_progress=False), BM25().index(DOCS, show_progress=False), BM25)
    else:
        old, new, cls = SparseIndex().add(SPARSE[:2]), SparseIndex().add(SPARSE), SparseIndex
    old_ans, new_ans = _answers(old), _answers(new)
    path = tmp_path / "index"
    k, fired = 1, 0
    while True:
        old.save(path)
        with monkeypatch.context() as m:
            inj = _Injector(m, k)
            try:
                new.save(path)
                done = True
            except Injected:
                done = False
        if inj.fired is None:
            assert done
            break
        fired += 1
        out = _load_outcome(cls, path)
        assert out in (old_ans, new_ans), (k, inj.fired, out)
        assert out == new_ans or not done  # a save that returned normally wrote the new index
        new.save(path)  # the next save cleans the leftovers of the failed one
        assert _answers(cls.load(path)) == new_ans
        assert sorted(p.name for p in tmp_path.iterdir()) == ["index"], (k, inj.fired)
        k += 1
    assert fired >= 10  # every step of a save was interrupted once


def test_killed_save_leftovers_are_cleaned_and_the_old_index_restored(tmp_path):
    bm = BM25().index(DOCS, show_progress=False)
    path = tmp_path / "index"
    bm.save(path)
    dead = 2**22 + 12345  # above any pid this test could meet (pid_max is at most 2**22)
    (tmp_path / f".tmp-index-{dead}-abcd").mkdir()
    (tmp_path / f".tmp-index-{dead}-abcd" / "docs.npy").write_bytes(b"partial")
    os.rename(path, tmp_path / f".old-index-{dead}-ef01")  # killed between the two renames
    assert not path.exists()
    (tmp_path / f".tmp-other-{dead}-0000").mkdir()  # a leftover of another target: not ours to touch
    live = tmp_path / f".tmp-index-{os.getppid()}-9999"  # a save in progress in a live process: kept
    live.mkdir()
    (tmp_path / f".tmp-index-{os.getpid()}-8888").mkdir()  # ours, but no save of ours runs: stale
    BM25().index(DOCS[:2], show_progress=False).save(path)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(["index", f".tmp-other-{dead}-0000", live.name])
    atomic.clean_stale(tmp_path / "gone")  # the old directory of a missing target is put back
    os.rename(path, tmp_path / f".old-gone-{dead}-1111")
    atomic.clean_stale(tmp_path / "gone")
    assert (tmp_path / "gone" / "meta.json").exists()


def test_save_modes_follow_the_umask_and_the_replaced_file(tmp_path):
    old = os.umask(0o022)
    try:
        BM25().index(DOCS, show_progress=False).save(tmp_path / "bm25")
        SparseIndex().add(SPARSE).save(tmp_path / "sparse")
        atomic.atomic_write(tmp_path / "f.txt", "x")
        os.chmod(tmp_path / "f.txt", 0o600)
        atomic.atomic_write(tmp_path / "f.txt", "y")  # replacing keeps the replaced file's mode
        os.umask(0o077)
        atomic.atomic_write(tmp_path / "g.txt", "z")
    finally:
        os.umask(old)
    for d in ("bm25", "sparse"):
        assert stat.S_IMODE((tmp_path / d).stat().st_mode) == 0o755
        assert all(stat.S_IMODE(f.stat().st_mode) == 0o644 for f in (tmp_path / d).iterdir())
    assert stat.S_IMODE((tmp_path / "f.txt").stat().st_mode) == 0o600
    assert (tmp_path / "f.txt").read_text() == "y"
    assert stat.S_IMODE((tmp_path / "g.txt").stat().st_mode) == 0o600


def test_atomic_open_failure_keeps_the_target(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("precious")
    with pytest.raises(RuntimeError):
        with atomic.atomic_open(target, "w") as f:
            f.write("half")
            raise RuntimeError("boom")
    assert target.read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]
    with pytest.raises(IsADirectoryError):
        with atomic.atomic_open(tmp_path, "w"):
            pass
    with pytest.raises(RankError):
        BM25().index(DOCS, show_progress=False).save(target)  # a file that is not an index
    assert target.read_text() == "precious"
