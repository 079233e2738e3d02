"""Concurrency soak: readers and writers (index / add / save / load) in parallel threads; every
answer a reader gets must equal the answer of one whole index state, never a mix.

Bounded: RANK_SOAK_SECONDS (default 2) per test; set it higher for a longer soak."""
import os
import threading
import time

import numpy as np
import pytest

from rank import _atomic as atomic

from rank.retrieve import BM25, SparseIndex

SECONDS = float(os.environ.get("RANK_SOAK_SECONDS", "2"))

WORDS = [f"w{i}" for i in range(60)]


def _corpus(seed, n):
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(3, 12)))) for _ in range(n)]


CORPUS_A = _corpus(1, 120)
CORPUS_B = _corpus(2, 90)  # another vocabulary order: term ids differ from A's
EXTRA = _corpus(3, 40)
QUERIES = [" ".join(q) for q in np.random.default_rng(4).choice(WORDS, size=(24, 3))]


def _key(result):
    idx, scores = result
    return idx.tobytes() + scores.tobytes()


def _soak(readers, writer, seconds=SECONDS):
    """Run reader(i) in 3 threads and writer() in 1 until `seconds` pass; re-raise any failure."""
    stop = threading.Event()
    errors = []
    counts = [0] * 4

    def loop(i, fn):
        try:
            while not stop.is_set():
                fn(i)
                counts[i] += 1
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)
            stop.set()

    threads = [threading.Thread(target=loop, args=(i, readers)) for i in range(3)]
    threads.append(threading.Thread(target=loop, args=(3, lambda i: writer())))
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join(60)
    if errors:
        raise errors[0]
    assert min(counts[:3]) > 0 and counts[3] > 0, counts
    return counts


def test_bm25_readers_see_whole_states_during_index_and_add(tmp_path):
    a = BM25().index(CORPUS_A, show_progress=False)
    a_extra = BM25().index(CORPUS_A + EXTRA, show_progress=False)
    b = BM25().index(CORPUS_B, show_progress=False)
    allowed = {_key(x.search(QUERIES, k=7, n_threads=1)) for x in (a, a_extra, b)}
    scores_ok = {x.get_scores(QUERIES[0]).tobytes() for x in (a, a_extra, b)}
    assert len(allowed) == 3
    shared = BM25().index(CORPUS_A, show_progress=False)
    step = [0]

    def writer():
        s = step[0] % 3
        if s == 0:
            shared.add(EXTRA, show_progress=False)
        elif s == 1:
            shared.index(CORPUS_B, show_progress=False)  # a new vocabulary, swapped with the postings
        else:
            shared.index(CORPUS_A, show_progress=False)
        step[0] += 1

    def reader(i):
        got = _key(shared.search(QUERIES, k=7, n_threads=1 + i % 2))
        assert got in allowed, "a reader saw a mix of two index states"
        assert shared.get_scores(QUERIES[0]).tobytes() in scores_ok

    counts = _soak(reader, writer)
    assert counts[3] >= 3


def test_sparse_readers_see_whole_states_during_add():
    rng = np.random.default_rng(5)
    docs = [{int(t): float(w) for t, w in zip(rng.choice(50, 6, replace=False), rng.random(6))} for _ in range(30)]
    queries = [{int(t): 1.0 for t in rng.choice(50, 3, replace=False)} for _ in range(10)]
    prefixes = [SparseIndex().add(docs[:n]) for n in range(1, len(docs) + 1)]
    allowed = {_key(p.search(queries, k=5, n_threads=1)) for p in prefixes}
    shared = [SparseIndex().add(docs[:1])]
    n = [1]

    def writer():
        if n[0] == len(docs):
            shared[0] = SparseIndex().add(docs[:1])  # start over (readers keep the object they took)
            n[0] = 1
        shared[0].add(docs[n[0]:n[0] + 1])
        n[0] += 1

    def reader(i):
        assert _key(shared[0].search(queries, k=5, n_threads=1 + i % 2)) in allowed

    _soak(reader, writer)


@pytest.mark.parametrize("swap", ["exchange", "two-renames"])
def test_save_and_load_while_writing(tmp_path, monkeypatch, swap):
    if swap == "two-renames":  # the path taken off Linux, or where the file system has no exchange
        monkeypatch.setattr(atomic, "_renameat2", None)
    a = BM25().index(CORPUS_A, show_progress=False)
    a_extra = BM25().index(CORPUS_A + EXTRA, show_progress=False)
    allowed = {_key(x.search(QUERIES, k=5, n_threads=1)) for x in (a, a_extra)}
    shared = BM25().index(CORPUS_A, show_progress=False)
    path = tmp_path / "index"
    shared.save(path)
    lock = threading.Lock()  # one saver at a time (the documented contract for one target path)
    step = [0]

    def writer():
        if step[0] % 2 == 0:
            shared.add(EXTRA, show_progress=False)
        else:
            shared.index(CORPUS_A, show_progress=False)
        step[0] += 1

    def reader(i):
        if i == 0:
            with lock:
                shared.save(path)  # a snapshot: the old or the new state, whole
        else:
            loaded = BM25.load(path, mmap=i == 1)
            assert _key(loaded.search(QUERIES, k=5, n_threads=1)) in allowed
        assert _key(shared.search(QUERIES, k=5, n_threads=1)) in allowed

    _soak(reader, writer)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index"]
