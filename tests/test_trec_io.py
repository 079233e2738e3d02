"""TREC run / qrels files: round trips, both qrels formats, the real scifact qrels, malformed
lines reported with their line number, atomic writes."""
import csv
import os

import pytest

from rank.errors import CorruptFileError, DTypeError, InvalidValueError, NonFiniteError, ShapeError
from rank.evaluate import evaluate, read_qrels, read_run, write_run


def write(tmp_path, name, text):
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
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
    ("q1 Q0 d1 1 nan t\n", 1, "NaN"),
    ("# c\nq1 Q0 d1 1 NaN t\n", 2, "NaN"),
    ("q1 Q0 d1 1 1_0 t\n", 1, "not a number"),
    ("q1\tQ0\td1\t1\t1.0\n", 1, "6 fields"),
    ("q1 Q0 d1 1 1.0 t\nq1 Q0 d\xe9 2 0.5 t\n".encode("latin-1"), 2, "UTF-8"),
])
def test_malformed_run_lines(tmp_path, text, line, match):
    path = write(tmp_path, "run.txt", text)
    with pytest.raises(CorruptFileError, match=f"run.txt:{line}: .*{match}"):
        read_run(path)


@pytest.mark.parametrize("text,line,match", [
    ("q1 0 d1 1\nq1 0 d2\n", 2, "4 fields"),
    ("q1 0 d1 1\nq1 0 d2 yes\n", 2, "not an integer"),
    ("q1 0 d1 1.5\n", 1, "not an integer"),
    ("q1 0 d1 1 extra\n", 1, "qrels line"),
    ("q1 0 d1 1\nq1 0 d2 99999999999999999999\n", 2, "int64"),
    ("q1 0 d1 1\nq\xff 0 d2 1\n".encode("latin-1"), 2, "UTF-8"),
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


# --- every file trec_eval takes ---------------------------------------------------------------

def test_comments_tabs_extra_fields_bom_and_grades_trec_eval_accepts(tmp_path):
    qrels = write(tmp_path, "qrels.txt",
                  "\ufeff# judged by hand\nq1 0 d1 1\nq1\t0\td2\t-1\n\n# more\nq1 0 d3 7\nq2  0  d9  0\n")
    assert read_qrels(qrels) == {"q1": {"d1": 1, "d2": -1, "d3": 7}, "q2": {"d9": 0}}
    run = write(tmp_path, "run.txt",
                "\ufeffq1 Q0 d1 1 2.5 tag\n#comment\nq1\tQ0\td3\t2\t1.5\ttag\tscored by x\n"
                "   \nq1 Q0 d2 3 inf tag\nq2 Q0 d9 1 -inf tag extra fields here\n")
    assert read_run(run) == {"q1": {"d1": 2.5, "d3": 1.5, "d2": float("inf")}, "q2": {"d9": float("-inf")}}
    # the BOM no longer hides the first query from evaluation
    got = evaluate(read_qrels(qrels), read_run(run), ["num_q", "num_ret"])
    assert got == {"num_q": 2.0, "num_ret": 4.0}


def test_duplicates_last_wins_with_a_warning_or_error_on_request(tmp_path):
    run = write(tmp_path, "run.txt", "q1 Q0 d1 1 1.0 t\nq1 Q0 d2 2 0.5 t\nq1 Q0 d1 3 0.2 t\nq1 Q0 d2 4 0.1 t\n")
    with pytest.warns(UserWarning, match=r"run.txt:3: document 'd1' appears twice.*1 more.*last line"):
        assert read_run(run) == {"q1": {"d1": 0.2, "d2": 0.1}}
    with pytest.raises(CorruptFileError, match=r"run.txt:3: .*twice"):
        read_run(run, duplicates="error")
    qrels = write(tmp_path, "qrels.txt", "q1 0 d1 1\nq1 0 d1 2\n")
    with pytest.warns(UserWarning, match="qrels.txt:2"):
        assert read_qrels(qrels) == {"q1": {"d1": 2}}
    with pytest.raises(CorruptFileError, match="qrels.txt:2"):
        read_qrels(qrels, duplicates="error")
    with pytest.raises(InvalidValueError, match="duplicates"):
        read_run(run, duplicates="first")


def test_inf_scores_round_trip_and_rank_first(tmp_path):
    run = {"q1": {"a": float("inf"), "b": 1.0, "c": float("-inf"), "d": float("inf")}}
    write_run(run, tmp_path / "r")
    lines = (tmp_path / "r").read_text().split("\n")
    assert [ln.split()[2] for ln in lines if ln] == ["d", "a", "b", "c"]
    assert read_run(tmp_path / "r") == run
    got = evaluate({"q1": {"a": 1}}, run, ["recip_rank"])
    assert got == {"recip_rank": 0.5}  # d (inf) ties a (inf) and wins by id
    with pytest.raises(NonFiniteError):
        write_run({"q1": {"a": float("nan")}}, tmp_path / "r2")
    with pytest.raises(ShapeError, match="#"):
        write_run({"#q": {"a": 1.0}}, tmp_path / "r3")


def test_write_run_to_stream_stdout_and_mode(tmp_path, capsys):
    import io
    import os
    import stat

    from rank.evaluate.io import read_run, write_run

    run = {"q1": {"d1": 1.0, "d2": 2.0}}
    buf = io.StringIO()
    write_run(run, buf, tag="t")
    write_run(run, "-", tag="t")
    assert capsys.readouterr().out == buf.getvalue() == "q1 Q0 d2 1 2.0 t\nq1 Q0 d1 2 1.0 t\n"
    old = os.umask(0o022)
    try:
        path = tmp_path / "run.trec"
        write_run(run, path, tag="t")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    assert read_run(path) == run
    # a failed write (a bad score in the second query) leaves the old file as it was
    with pytest.raises(Exception):
        write_run({"q1": {"d1": 3.0}, "q2": {"d1": float("nan")}}, path, tag="t")
    assert read_run(path) == run
    assert sorted(os.listdir(tmp_path)) == ["run.trec"]
