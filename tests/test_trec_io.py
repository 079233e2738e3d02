"""TREC run / qrels files: round trips, both qrels formats, the real scifact qrels, malformed
lines reported with their line number, atomic writes."""
import csv
import os

import pytest

from rank.errors import CorruptFileError, DTypeError, NonFiniteError, ShapeError
from rank.evaluate import evaluate, read_qrels, read_run, write_run


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_run_round_trip_keeps_scores_and_trec_order(tmp_path):
    run = {"q1": {"b": 0.1 + 0.2, "a": 1e-300, "c": 0.30000000000000004, "z": -3},
           "q2": {"x": 2.5}}
    path = tmp_path / "run.txt"
    write_run(run, path, tag="mine")
    lines = path.read_text().splitlines()
    assert lines[0].split() == ["q1", "Q0", "c", "1", "0.30000000000000004", "mine"]
    assert [ln.split()[2] for ln in lines[:4]] == ["c", "b", "a", "z"]  # ties: docid descending
    assert [ln.split()[3] for ln in lines[:4]] == ["1", "2", "3", "4"]
    back = read_run(path)
    assert back == {q: {d: float(s) for d, s in docs.items()} for q, docs in run.items()}
    assert oct(os.stat(path).st_mode & 0o777) == oct(0o644)


def test_trec_and_beir_qrels(tmp_path):
    trec = write(tmp_path, "qrels.txt", "q1 0 d1 1\nq1 0 d2 0\n\nq2 0 d3 2\n")
    beir = write(tmp_path, "qrels.tsv", "query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td2\t0\nq2\td3\t2\n")
    want = {"q1": {"d1": 1, "d2": 0}, "q2": {"d3": 2}}
    assert read_qrels(trec) == want
    assert read_qrels(beir) == want
    headless = write(tmp_path, "h.tsv", "q1\td1\t1\nq1\td2\t0\nq2\td3\t2.0\n")
    assert read_qrels(headless) == want


def test_real_scifact_qrels(shared_data):
    path = shared_data("scifact") / "qrels.tsv"
    with open(path) as f:
        rows = list(csv.reader(f, delimiter="\t"))[1:]
    want = {}
    for q, d, s in rows:
        want.setdefault(q, {})[d] = int(s)
    assert read_qrels(path) == want
    assert len(want) > 250


def test_files_evaluate_like_dicts(tmp_path):
    qrels = {"q1": {"d1": 1, "d2": 2}, "q2": {"d3": 1}}
    run = {"q1": {"d1": 0.5, "d2": 0.5, "d9": 1.0}, "q2": {"d3": 0.1}}
    write_run(run, tmp_path / "r")
    (tmp_path / "q").write_text("".join(f"{q} 0 {d} {g}\n" for q, j in qrels.items() for d, g in j.items()))
    names = ["ndcg@10", "map", "bpref"]
    assert evaluate(read_qrels(tmp_path / "q"), read_run(tmp_path / "r"), names) == evaluate(qrels, run, names)


@pytest.mark.parametrize("text,line,match", [
    ("q1 Q0 d1 1 1.0 t\nq1 Q0 d2 2 0.5\n", 2, "6 fields"),
    ("q1 Q0 d1 1 1.0 t\n\nq1 Q0 d2 2 high t\n", 3, "not a number"),
    ("q1 Q0 d1 1 nan t\n", 1, "not finite"),
    ("q1 Q0 d1 1 1.0 t\nq1 Q0 d1 2 0.5 t\n", 2, "twice"),
])
def test_malformed_run_lines(tmp_path, text, line, match):
    path = write(tmp_path, "run.txt", text)
    with pytest.raises(CorruptFileError, match=f"run.txt:{line}: .*{match}"):
        read_run(path)


@pytest.mark.parametrize("text,line,match", [
    ("q1 0 d1 1\nq1 0 d2\n", 2, "4 fields"),
    ("q1 0 d1 1\nq1 0 d2 yes\n", 2, "not an integer"),
    ("q1 0 d1 1.5\n", 1, "not an integer"),
    ("q1 d1\n", 1, "qrels line"),
    ("query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td2\t1\t7\n", 3, "3 fields"),
])
def test_malformed_qrels_lines(tmp_path, text, line, match):
    path = write(tmp_path, "qrels.txt", text)
    with pytest.raises(CorruptFileError, match=f"qrels.txt:{line}: .*{match}"):
        read_qrels(path)


def test_empty_files(tmp_path):
    with pytest.raises(ShapeError):
        read_run(write(tmp_path, "r", "\n\n"))
    with pytest.raises(ShapeError):
        read_qrels(write(tmp_path, "q", "query-id\tcorpus-id\tscore\n"))


def test_failed_write_leaves_existing_file_untouched(tmp_path):
    path = tmp_path / "run.txt"
    write_run({"q": {"a": 1.0}}, path)
    before = path.read_text()
    with pytest.raises(NonFiniteError):
        write_run({"q": {"a": 1.0, "b": float("nan")}}, path)
    with pytest.raises(DTypeError):
        write_run({"q": {"a": "x"}}, path)
    with pytest.raises(ShapeError):
        write_run({"q 1": {"a": 1.0}}, path)
    with pytest.raises(ShapeError):
        write_run({"q": {"a": 1.0}}, path, tag="two words")
    assert path.read_text() == before
    assert sorted(os.listdir(tmp_path)) == ["run.txt"]
