"""`rank fuse` with the new methods, parameters and training judgements (in process)."""
import pytest

from rank.evaluate import read_run, write_run
from rank.fusion import fuse


@pytest.fixture
def runs(tmp_path):
    a = {"q1": {"d1": 9.0, "d2": 5.0, "d3": 1.0}, "q2": {"d8": 2.0, "d9": 1.5}}
    b = {"q1": {"d3": 0.9, "d1": 0.5}, "q2": {"d7": 3.0, "d8": 1.0}}
    write_run(a, tmp_path / "a.trec")
    write_run(b, tmp_path / "b.trec")
    (tmp_path / "qrels.txt").write_text("q1 0 d3 1\nq2 0 d8 2\nq2 0 d7 0\n")
    return tmp_path, a, b


def run_cli(*args, cwd, monkeypatch):
    from rank.cli import main

    monkeypatch.chdir(cwd)
    return main([str(x) for x in args])


def test_cli_parameters_and_training(runs, monkeypatch):
    d, a, b = runs
    assert run_cli("fuse", "a.trec", "b.trec", "--method", "rbc", "--param", "phi=0.5", "-o", "rbc.trec", "-q",
                   cwd=d, monkeypatch=monkeypatch) == 0
    want = fuse([read_run(d / "a.trec"), read_run(d / "b.trec")], "rbc", params={"phi": 0.5})
    got = read_run(d / "rbc.trec")
    assert {q: pytest.approx(v) for q, v in got.items()} == want
    assert run_cli("fuse", "a.trec", "b.trec", "--method", "w_bordafuse", "--weights", "1", "2", "--norm", "none",
                   "-o", "wb.trec", "-q", cwd=d, monkeypatch=monkeypatch) == 0
    assert read_run(d / "wb.trec")["q1"] == pytest.approx(fuse([a, b], "wborda", weights=[1, 2])["q1"])
    assert run_cli("fuse", "a.trec", "b.trec", "--method", "probfuse", "--param", "n_segments=2", "--train-qrels",
                   "qrels.txt", "-o", "pf.trec", "-q", cwd=d, monkeypatch=monkeypatch) == 0
    qrels = {"q1": {"d3": 1}, "q2": {"d8": 2, "d7": 0}}
    assert read_run(d / "pf.trec")["q2"] == pytest.approx(
        fuse([a, b], "probfuse", qrels=qrels, params={"n_segments": 2})["q2"])


def test_cli_errors(runs, monkeypatch, capsys):
    d, _, _ = runs
    for args, fragment in ((["--method", "rbc"], "phi"), (["--method", "rbc", "--param", "phi"], "NAME=VALUE"),
                           (["--method", "rbc", "--param", "phi=x"], "number"),
                           (["--method", "combsun"], "did you mean 'combsum'"),
                           (["--method", "posfuse"], "train")):
        assert run_cli("fuse", "a.trec", "b.trec", *args, cwd=d, monkeypatch=monkeypatch) == 2
        assert fragment in capsys.readouterr().err
