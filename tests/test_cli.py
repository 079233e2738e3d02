"""The `rank` command end to end, in a temporary directory through subprocesses: index and
search in every corpus format against the Python API, eval, fuse and rerank against values
computed here, the demo, --help, and user errors (missing, empty and malformed files) that
print one line and exit with status 2."""
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import _helpers
import numpy as np
import pytest

from rank._io_corpus import read_corpus, read_queries

ROOT = Path(__file__).resolve().parent.parent

DOCS = {
    "d1": ("Dates", "parse a date from a string with a format"),
    "d2": ("Lists", "sort a list of numbers in place"),
    "d3": ("", "the date and time of the current day"),
    "d4": ("Compression", "compress bytes with the gzip format"),
    "d5": ("CSV", "read a csv file row by row"),
    "d6": ("Dates", "format a date as an ISO string"),
    "d7": ("Files", "copy a directory tree recursively"),
    "d8": ("", "a list of the files in a directory"),
}
QUERIES = {"q1": "date string", "q2": "directory files", "q3": "gzip format", "q4": "zebra"}


def rank_cmd(*args, cwd, timeout=120):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "rank", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env=env)


@pytest.fixture
def rank_here(capsys, monkeypatch):
    """Run the command in this process (faster than a subprocess), in directory `cwd`."""

    def run(*args, cwd):
        from rank.cli import main

        monkeypatch.chdir(cwd)
        try:
            code = main([str(a) for a in args])
        except SystemExit as e:  # argparse: --help, usage errors
            code = e.code
        out = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, out.out, out.err)

    return run


def ok(out):
    assert out.returncode == 0, out.stderr
    return out


def user_error(out, *fragments):
    """Exit status 2, no traceback, the error in one line (the last on stderr, after any
    progress lines), each fragment in it."""
    assert out.returncode == 2, (out.returncode, out.stdout, out.stderr)
    assert "Traceback" not in out.stderr, out.stderr
    lines = out.stderr.strip().splitlines()
    assert re.match(r"rank( [a-z-]+)?: error: ", lines[-1]), out.stderr
    assert not any("error" in line for line in lines[:-1]), out.stderr
    for f in fragments:
        assert f in lines[-1], (f, lines[-1])
    return lines[-1]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def work(tmp_path):
    write_jsonl(tmp_path / "corpus.jsonl", [{"_id": k, "title": t, "text": x} for k, (t, x) in DOCS.items()])
    write_jsonl(tmp_path / "queries.jsonl", [{"_id": k, "text": v} for k, v in QUERIES.items()])
    (tmp_path / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td6\t2\nq2\td8\t1\n"
                                        "q3\td4\t1\nq4\td2\t1\n")
    return tmp_path


def parse_trec(path_or_text):
    text = Path(path_or_text).read_text() if isinstance(path_or_text, Path) else path_or_text
    run = {}
    for line in text.splitlines():
        qid, q0, doc, r, score, tag = line.split()
        assert q0 == "Q0"
        run.setdefault(qid, []).append((doc, int(r), float(score), tag))
    for rows in run.values():
        assert [r for _, r, _, _ in rows] == list(range(1, len(rows) + 1))
        pairs = [(d, s) for d, _, s, _ in rows]
        assert pairs == trec_order(pairs)
    return run


def trec_order(pairs):
    """(doc, score) pairs in trec_eval's order: score descending, equal scores by id descending."""
    return sorted(sorted(pairs, reverse=True), key=lambda p: -p[1])


# --- index + search ------------------------------------------------------------------------------

def python_api_run(ids, texts, queries, k, **bm25_kw):
    from rank.retrieve import BM25
    from rank.pipeline import Pipeline

    bm25 = BM25(**bm25_kw).index(texts, ids=ids, show_progress=False)
    return Pipeline(bm25).run(queries, k=k)


def test_index_search_equals_python_api(work):
    ok(rank_cmd("index", "corpus.jsonl", "-o", "idx", "--method", "bm25+", "--k1", "1.5", "--b", "0.6", cwd=work))
    out = ok(rank_cmd("search", "idx", "queries.jsonl", "-k", "3", "-o", "run.trec", "--run-name", "mine", cwd=work))
    assert "queries/s" in out.stderr and out.stdout == ""
    run = parse_trec(work / "run.trec")
    ids, texts = read_corpus(work / "corpus.jsonl")
    ref = python_api_run(ids, texts, QUERIES, 3, method="bm25+", k1=1.5, b=0.6)
    assert set(run) == set(ref) == set(QUERIES)
    for qid, rows in run.items():
        assert [(d, s) for d, _, s, _ in rows] == trec_order(ref[qid].items())
        assert all(tag == "mine" for *_, tag in rows)
    assert run["q3"][0][0] == "d4" and run["q2"][0][0] in ("d7", "d8")
    # no document shares a word with "zebra": the retriever's documents 0, 1, 2 with score 0
    assert [(d, s) for d, _, s, _ in run["q4"]] == [("d3", 0.0), ("d2", 0.0), ("d1", 0.0)]


def test_search_to_stdout_and_quiet(work):
    ok(rank_cmd("index", "corpus.jsonl", "-o", "idx", "-q", cwd=work))
    out = ok(rank_cmd("search", "idx", "queries.jsonl", "-k", "2", "--quiet", cwd=work))
    assert out.stderr == ""
    run = parse_trec(out.stdout)
    assert run["q3"][0][0] == "d4"


@pytest.mark.parametrize("fmt", ["txt", "tsv", "tsv-header", "csv", "csv-header", "jsonl.gz"])
def test_corpus_formats_give_the_same_ranking(rank_here, work, fmt):
    order = list(DOCS)
    texts = [f"{t} {x}" if t else x for t, x in DOCS.values()]
    if fmt == "txt":
        (work / "c.txt").write_text("\n".join(texts) + "\n\n")
        name, ids = "c.txt", [str(i) for i in range(1, len(texts) + 1)]
    elif fmt.startswith("tsv"):
        header = "id\ttext\n" if fmt == "tsv-header" else ""
        (work / "c.tsv").write_text(header + "".join(f"{i}\t{t}\n" for i, t in zip(order, texts)))
        name, ids = "c.tsv", order
    elif fmt.startswith("csv"):
        header = "text,title,_id\n" if fmt == "csv-header" else ""
        if header:
            body = "".join(f'"{x}",{t},{i}\n' for i, (t, x) in DOCS.items())
        else:
            body = "".join(f'{i},"{t}"\n' for i, t in zip(order, texts))
        (work / "c.csv").write_text(header + body)
        name, ids = "c.csv", order
    else:
        import gzip

        with gzip.open(work / "c.jsonl.gz", "wt") as f:
            for k, (t, x) in DOCS.items():
                f.write(json.dumps({"_id": k, "title": t, "text": x}) + "\n")
        name, ids = "c.jsonl.gz", order
    assert read_corpus(work / name) == (ids, texts)
    (work / "q.tsv").write_text("".join(f"{k}\t{v}\n" for k, v in QUERIES.items()))
    ok(rank_here("index", name, "-o", "idx", cwd=work))
    run = parse_trec(ok(rank_here("search", "idx", "q.tsv", "-k", "4", cwd=work)).stdout)
    ref = python_api_run(ids, texts, QUERIES, 4)
    for qid, rows in run.items():
        assert [(d, s) for d, _, s, _ in rows] == trec_order(ref[qid].items())


def test_readers_take_bom_crlf_int_ids_and_null_text(tmp_path):
    (tmp_path / "c.jsonl").write_bytes(b'\xef\xbb\xbf{"_id": 7, "text": "hello world"}\r\n\r\n'
                                       b'{"id": "b", "title": "T", "text": null}\r\n')
    assert read_corpus(tmp_path / "c.jsonl") == (["7", "b"], ["hello world", "T"])
    (tmp_path / "q.csv").write_bytes(b'\xef\xbb\xbfqid,query\r\n1,"a, b"\r\n2,c\r\n')
    assert read_queries(tmp_path / "q.csv") == (["1", "2"], ["a, b", "c"])
    assert read_queries(tmp_path / "q.csv", "csv") == read_queries(tmp_path / "q.csv")


def test_queries_txt_ids_are_line_numbers(rank_here, work):
    (work / "q.txt").write_text("gzip\n\ndate string\n")
    assert read_queries(work / "q.txt") == (["1", "3"], ["gzip", "date string"])
    ok(rank_here("index", "corpus.jsonl", "-o", "idx", cwd=work))
    run = parse_trec(ok(rank_here("search", "idx", "q.txt", "-k", "1", cwd=work)).stdout)
    assert run["1"][0][0] == "d4" and set(run) == {"1", "3"}


# --- user errors ---------------------------------------------------------------------------------

def test_missing_files(rank_here, work):
    user_error(rank_cmd("index", "nope.jsonl", "-o", "idx", cwd=work), "nope.jsonl")
    user_error(rank_here("search", "no-index", "queries.jsonl", cwd=work), "no-index")
    ok(rank_here("index", "corpus.jsonl", "-o", "idx", cwd=work))
    user_error(rank_here("search", "idx", "missing.jsonl", cwd=work), "missing.jsonl")
    user_error(rank_here("eval", "missing-qrels.tsv", "run.trec", cwd=work), "missing-qrels.tsv")
    user_error(rank_here("search", "idx", "queries.jsonl", "-o", "no/such/dir/run.trec", cwd=work), "no/such/dir")


def test_empty_files(rank_here, work):
    (work / "empty.jsonl").write_text("")
    user_error(rank_cmd("index", "empty.jsonl", "-o", "idx", cwd=work), "empty.jsonl", "empty")
    (work / "blank.txt").write_text("\n  \n")
    user_error(rank_here("index", "blank.txt", "-o", "idx", cwd=work), "blank.txt", "empty")
    ok(rank_here("index", "corpus.jsonl", "-o", "idx", cwd=work))
    user_error(rank_here("search", "idx", "empty.jsonl", "-o", "empty-out.trec", cwd=work), "no queries")
    assert not (work / "empty-out.trec").exists()


def test_malformed_json_line_names_the_line(rank_here, work):
    lines = (work / "corpus.jsonl").read_text().splitlines()
    lines[2] = lines[2][:-5]  # cut the closing of line 3
    (work / "bad.jsonl").write_text("\n".join(lines) + "\n")
    user_error(rank_cmd("index", "bad.jsonl", "-o", "idx", cwd=work), "bad.jsonl", "line 3", "malformed JSON")
    assert not (work / "idx").exists()
    write_jsonl(work / "noid.jsonl", [{"_id": "a", "text": "x"}, {"text": "no id here"}])
    user_error(rank_here("index", "noid.jsonl", "-o", "idx", cwd=work), "line 2", "id")
    write_jsonl(work / "dup.jsonl", [{"_id": "a", "text": "x"}, {"_id": "b", "text": "y"}, {"_id": "a", "text": "z"}])
    user_error(rank_here("index", "dup.jsonl", "-o", "idx", cwd=work), "line 3", "duplicate", "line 1")
    (work / "q.jsonl").write_text('{"_id": "q1", "text": "date"}\n[1, 2]\n')
    ok(rank_here("index", "corpus.jsonl", "-o", "idx", cwd=work))
    user_error(rank_here("search", "idx", "q.jsonl", cwd=work), "q.jsonl", "line 2", "JSON object")


def test_malformed_tables_and_unknown_suffix(rank_here, work):
    (work / "c.tsv").write_text("a\tb\tc\n")
    user_error(rank_here("index", "c.tsv", "-o", "idx", cwd=work), "line 1", "header")
    (work / "c2.tsv").write_text("id\ttext\nd1\thello\nd2\n")
    user_error(rank_here("index", "c2.tsv", "-o", "idx", cwd=work), "line 3", "columns")
    (work / "c.xml").write_text("<docs/>")
    user_error(rank_here("index", "c.xml", "-o", "idx", cwd=work), "c.xml", "suffix")
    (work / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    user_error(rank_here("index", "latin1.txt", "-o", "idx", cwd=work), "UTF-8", "line 1")


def test_index_replaces_only_an_index(rank_here, work):
    ok(rank_here("index", "corpus.jsonl", "-o", "idx", cwd=work))
    ok(rank_here("index", "corpus.jsonl", "-o", "idx", "--k1", "2", cwd=work))  # rebuilt in place
    (work / "notes.txt").write_text("keep me\n")
    user_error(rank_here("index", "corpus.jsonl", "-o", "notes.txt", cwd=work), "notes.txt", "not a saved index")
    assert (work / "notes.txt").read_text() == "keep me\n"
    (work / "folder").mkdir()
    (work / "folder" / "file").write_text("x")
    user_error(rank_here("index", "corpus.jsonl", "-o", "folder", cwd=work), "folder", "not a saved index")
    assert (work / "folder" / "file").read_text() == "x"


def test_failed_search_leaves_existing_output_untouched(work):
    ok(rank_cmd("index", "corpus.jsonl", "-o", "idx", cwd=work))
    (work / "run.trec").write_text("precious\n")
    (work / "bad.jsonl").write_text('{"_id": "q1", "text": "date"}\n{oops\n')
    user_error(rank_cmd("search", "idx", "bad.jsonl", "-o", "run.trec", cwd=work), "line 2")
    assert (work / "run.trec").read_text() == "precious\n"
    assert sorted(p.name for p in work.iterdir() if p.name.startswith(".")) == []


def test_corrupt_index_and_bad_options(rank_here, work):
    (work / "junk").mkdir()
    (work / "junk" / "meta.json").write_text("{not json")
    user_error(rank_here("search", "junk", "queries.jsonl", cwd=work))
    user_error(rank_here("index", "corpus.jsonl", "-o", "idx", "--method", "bm99", cwd=work), "bm99")
    user_error(rank_here("index", "corpus.jsonl", "-o", "idx", "--b", "1.5", cwd=work))
    ok(rank_here("index", "corpus.jsonl", "-o", "idx", cwd=work))
    user_error(rank_here("search", "idx", "queries.jsonl", "-k", "0", cwd=work), "-k")
    user_error(rank_here("search", "idx", "queries.jsonl", "--threads", "0", cwd=work), "--threads")
    user_error(rank_here("index", "corpus.jsonl", cwd=work), "-o")
    user_error(rank_here("frobnicate", cwd=work), "frobnicate")


def test_threads_policy(rank_here, work):
    """--threads goes through the one thread-count policy: 100000 once segfaulted the search."""
    ok(rank_here("index", "corpus.jsonl", "-o", "idx", "-q", cwd=work))
    user_error(rank_here("search", "idx", "queries.jsonl", "--threads", "100000", cwd=work), "--threads", "4096")
    user_error(rank_here("search", "idx", "queries.jsonl", "--threads", str(2**40), cwd=work), "--threads")
    user_error(rank_here("demo", "--threads", "100000", cwd=work), "--threads")
    clamped = ok(rank_here("search", "idx", "queries.jsonl", "--threads", "4096", "-q", cwd=work)).stdout
    assert clamped == ok(rank_here("search", "idx", "queries.jsonl", "--threads", "1", "-q", cwd=work)).stdout


def test_check_command(rank_here, work):
    ok(rank_here("index", "corpus.jsonl", "-o", "idx", "-q", cwd=work))
    out = ok(rank_here("check", "idx", cwd=work))
    assert "ok" in out.stdout and "checksums" in out.stdout
    path = work / "idx" / "impacts.npy"
    impacts, indptr = np.load(path), np.load(work / "idx" / "indptr.npy")
    term = np.repeat(np.arange(indptr.size - 1), np.diff(indptr))
    i = int(np.flatnonzero(impacts < np.load(work / "idx" / "max_impact.npy")[term])[0])
    data = bytearray(path.read_bytes())
    data[len(data) - 4 * impacts.size + 4 * i] ^= 0x01  # the lowest bit of one impact below its term's maximum:
    path.write_bytes(bytes(data))                         # structurally valid, caught by the checksum only
    ok(rank_here("check", "idx", "--quick", cwd=work))
    bad = rank_here("check", "idx", cwd=work)
    assert bad.returncode == 1 and "checksum" in bad.stderr and "Traceback" not in bad.stderr
    (work / "junk").mkdir()
    (work / "junk" / "meta.json").write_text("[" * 100000)  # deeply nested: no RecursionError traceback
    bad = rank_here("check", "junk", cwd=work)
    assert bad.returncode == 1 and "not valid JSON" in bad.stderr
    user_error(rank_here("search", "junk", "queries.jsonl", cwd=work), "not valid JSON")
    user_error(rank_here("check", "absent", cwd=work), "absent")


def test_deeply_nested_json_lines_are_a_user_error(rank_here, work):
    (work / "deep.jsonl").write_text('{"_id": "d1", "text": ' + "[" * 100000 + "]" * 100000 + "}\n")
    user_error(rank_here("index", "deep.jsonl", "-o", "idx", cwd=work), "line 1", "nested")
    user_error(rank_here("search", "idx", "deep.jsonl", cwd=work))


def test_output_file_mode_follows_umask(work):
    old = os.umask(0o022)
    try:
        ok(rank_cmd("index", "corpus.jsonl", "-o", "idx", "-q", cwd=work))
        ok(rank_cmd("search", "idx", "queries.jsonl", "-o", "run.trec", "-q", cwd=work))
    finally:
        os.umask(old)
    assert (work / "run.trec").stat().st_mode & 0o777 == 0o644
    assert (work / "idx").stat().st_mode & 0o777 == 0o755
    assert all(f.stat().st_mode & 0o777 == 0o644 for f in (work / "idx").iterdir())


@pytest.mark.parametrize("command", ["index", "search", "rerank", "fuse", "eval", "check", "demo", "bench-maxsim"])
def test_help_has_an_example(rank_here, work, command):
    out = ok(rank_here(command, "--help", cwd=work))
    assert f"usage: rank {command}" in out.stdout and "example:" in out.stdout
    assert f"rank {command}" in out.stdout.split("example:")[1]


# --- eval and fuse -------------------------------------------------------------------------------

def write_trec(path, run, tag="t"):
    with open(path, "w") as f:
        for qid, docs in run.items():
            for r, (d, s) in enumerate(docs, 1):
                f.write(f"{qid} Q0 {d} {r} {s} {tag}\n")


def test_eval_table_and_json_match_hand_computed(work):
    # q1: relevant d1 (grade 1) and d6 (grade 2); q2: d8; q3: d4.
    write_trec(work / "a.trec", {"q1": [("d6", 3.0), ("d2", 2.0), ("d1", 1.0)],
                                 "q2": [("d7", 2.0), ("d8", 1.0)], "q3": [("d4", 5.0)]})
    idcg1 = 2 + 1 / math.log2(3)
    ndcg = {"q1": (2 + 1 / math.log2(4)) / idcg1, "q2": 1 / math.log2(3), "q3": 1.0, "q4": 0.0}
    ap = {"q1": (1 + 2 / 3) / 2, "q2": 0.5, "q3": 1.0, "q4": 0.0}
    out = ok(rank_cmd("eval", "qrels.tsv", "a.trec", "-m", "ndcg@10", "map", "--json", cwd=work))
    got = json.loads(out.stdout)
    from rank.evaluate import evaluate

    qrels = {"q1": {"d1": 1, "d6": 2}, "q2": {"d8": 1}, "q3": {"d4": 1}, "q4": {"d2": 1}}
    run = {"q1": {"d6": 3.0, "d2": 2.0, "d1": 1.0}, "q2": {"d7": 2.0, "d8": 1.0}, "q3": {"d4": 5.0}}
    py = evaluate(qrels, run, ["ndcg@10", "map"])
    assert got == pytest.approx(py, rel=1e-12)
    # as pytrec_eval: the mean is over the judged queries that the run holds (q4 is absent)
    assert got["ndcg@10"] == pytest.approx(np.mean([ndcg[q] for q in ("q1", "q2", "q3")]), rel=1e-9)
    assert got["map"] == pytest.approx(np.mean([ap[q] for q in ("q1", "q2", "q3")]), rel=1e-9)
    table = ok(rank_cmd("eval", "qrels.tsv", "a.trec", "-m", "ndcg@10", "map", cwd=work)).stdout.splitlines()
    assert table[0].split() == ["run", "ndcg@10", "map"]
    name, v1, v2 = table[1].split()
    assert name == "a.trec" and float(v1) == pytest.approx(got["ndcg@10"], abs=5e-5)
    assert float(v2) == pytest.approx(got["map"], abs=5e-5)


def test_eval_errors(rank_here, work):
    write_trec(work / "a.trec", {"q1": [("d1", 1.0)]})
    user_error(rank_cmd("eval", "qrels.tsv", "a.trec", "-m", "ndgc@10", cwd=work), "ndgc@10")
    (work / "bad.trec").write_text("q1 Q0 d1 1 1.0 t\nq1 Q0 d2\n")
    line = user_error(rank_here("eval", "qrels.tsv", "bad.trec", cwd=work), "bad.trec")
    assert re.search(r"line 2\b|:2\b", line), line


def test_fuse_rrf_matches_hand_computed(work):
    a = {"q1": [("d1", 9.0), ("d2", 5.0), ("d3", 1.0)], "q2": [("d8", 2.0)]}
    b = {"q1": [("d3", 0.9), ("d1", 0.5)], "q2": [("d7", 3.0), ("d8", 1.0)]}
    write_trec(work / "a.trec", a)
    write_trec(work / "b.trec", b)
    ok(rank_cmd("fuse", "a.trec", "b.trec", "--method", "rrf", "-o", "f.trec", cwd=work))
    fused = parse_trec(work / "f.trec")
    ref = {}
    for run in (a, b):
        for qid, docs in run.items():
            for r, (d, _) in enumerate(docs, 1):
                ref.setdefault(qid, {}).setdefault(d, 0.0)
                ref[qid][d] += 1 / (60 + r)
    for qid, rows in fused.items():
        assert {d: s for d, _, s, _ in rows} == pytest.approx(ref[qid], rel=1e-9)
    assert [d for d, *_ in fused["q1"]] == ["d1", "d3", "d2"]
    assert fused["q1"][0][3] == "fused"


def test_fuse_errors(rank_here, work):
    write_trec(work / "a.trec", {"q1": [("d1", 9.0)]})
    write_trec(work / "b.trec", {"q1": [("d2", 9.0)]})
    user_error(rank_here("fuse", "a.trec", "b.trec", "--method", "nope", cwd=work), "nope")
    user_error(rank_here("fuse", "a.trec", cwd=work), "two runs")
    user_error(rank_here("fuse", "a.trec", "gone.trec", cwd=work), "gone.trec")


# --- rerank --------------------------------------------------------------------------------------

def test_model_kind_from_config(tmp_path):
    from rank.cli import model_kind
    from rank.errors import InvalidValueError

    def model_dir(name, config):
        d = tmp_path / name
        d.mkdir()
        (d / "model.onnx").write_bytes(b"")
        if config is not None:
            (d / "config.json").write_text(json.dumps(config))
        return d

    assert model_kind(model_dir("ce", {"rank_kernels": {"kind": "cross-encoder"}})) == "cross-encoder"
    assert model_kind(model_dir("cb", {"rank_kernels": {"kind": "colbert", "dim": 128}})) == "colbert"
    assert model_kind(model_dir("hf", {"architectures": ["BertForSequenceClassification"]})) == "cross-encoder"
    with pytest.raises(InvalidValueError, match="cannot tell"):
        model_kind(model_dir("bare", None))
    (tmp_path / "nomodel").mkdir()
    with pytest.raises(InvalidValueError, match="no ONNX model"):
        model_kind(tmp_path / "nomodel")
    with pytest.raises(FileNotFoundError):
        model_kind(tmp_path / "absent")
    (model_dir("badjson", None) / "config.json").write_text("{")
    with pytest.raises(InvalidValueError, match="config.json"):
        model_kind(tmp_path / "badjson")


def test_rerank_errors_without_a_model(rank_here, work):
    write_trec(work / "a.trec", {"q1": [("d1", 1.0)]})
    user_error(rank_cmd("rerank", "a.trec", "--corpus", "corpus.jsonl", "--queries", "queries.jsonl",
                        "--model", "no-model", cwd=work), "no-model")
    (work / "empty-model").mkdir()
    user_error(rank_here("rerank", "a.trec", "--corpus", "corpus.jsonl", "--queries", "queries.jsonl",
                        "--model", "empty-model", cwd=work), "empty-model", "no ONNX model")


def wordpiece_tokenizer(words, extra=()):
    """A WordPiece tokenizer over `words`, letters, digits and their ## pieces; and its vocabulary."""
    tok = _helpers.wordpiece_tokenizer(specials=extra, suffixes=(), max_length=512, words=words,
                                       letters="abcdefghijklmnopqrstuvwxyz0123456789", punctuation="")
    return tok, tok.get_vocab()


@pytest.fixture(scope="module")
def tiny_cross_encoder(tmp_path_factory):
    """A tiny random BERT sequence classifier (1 logit) with a WordPiece vocabulary of the test
    collection's words, exported with export_cross_encoder: (the torch model, its tokenizer,
    the export directory)."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("onnxruntime")
    pytest.importorskip("tokenizers")
    import rank.rerank

    root = tmp_path_factory.mktemp("ce")
    words = sorted({w for t, x in DOCS.values() for w in f"{t} {x}".lower().split()}
                   | {w for q in QUERIES.values() for w in q.split()})
    tok, vocab = wordpiece_tokenizer(words)
    assert vocab["[UNK]"] not in tok("date string")["input_ids"]
    cfg = transformers.BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2,
                                  num_attention_heads=2, intermediate_size=64, max_position_embeddings=64,
                                  num_labels=1, initializer_range=0.3)
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(cfg).eval()
    model.save_pretrained(root / "ckpt")
    tok.save_pretrained(root / "ckpt")
    rank.rerank.export_cross_encoder(root / "ckpt", root / "onnx")
    return model, tok, root / "onnx"


@pytest.mark.slow
def test_rerank_with_a_cross_encoder_matches_torch(work, tiny_cross_encoder):
    import torch

    model, tok, model_dir = tiny_cross_encoder
    first = {"q1": [("d3", 9.0), ("d1", 8.0), ("d6", 7.0), ("d2", 1.0)], "q3": [("d4", 3.0), ("d6", 2.0)]}
    write_trec(work / "bm25.trec", first)
    out = ok(rank_cmd("rerank", "bm25.trec", "--corpus", "corpus.jsonl", "--queries", "queries.jsonl",
                      "--model", model_dir, "--depth", "3", "-o", "ce.trec", cwd=work))
    assert "cross-encoder" in out.stderr
    got = parse_trec(work / "ce.trec")
    text = {k: f"{t} {x}" if t else x for k, (t, x) in DOCS.items()}
    for qid, cands in first.items():
        cands = [d for d, _ in cands[:3]]
        enc = tok([QUERIES[qid]] * len(cands), [text[d] for d in cands], padding=True, return_tensors="pt")
        with torch.no_grad():
            ref = torch.sigmoid(model(**enc).logits[:, 0]).numpy().astype(np.float64)
        assert len(set(np.round(ref, 3))) == len(ref)  # no near-ties: the order is well defined
        order = sorted(range(len(cands)), key=lambda i: -ref[i])
        assert [d for d, *_ in got[qid]] == [cands[i] for i in order]
        np.testing.assert_allclose([s for _, _, s, _ in got[qid]], ref[order], atol=1e-4)
        assert all(tag == "rerank" for *_, tag in got[qid])


# --- demo ----------------------------------------------------------------------------------------

RESULT = re.compile(r"^\s+(\d+)\s+(-?\d+\.\d+)\s+(\S+)\s")


def demo_results(stdout):
    blocks, current = {}, None
    for line in stdout.splitlines():
        m = RESULT.match(line)
        if m:
            blocks[current].append((int(m[1]), float(m[2]), m[3]))
        elif line.startswith("  ") and not line.startswith("   ") and line.strip():
            current = line.strip()
            blocks[current] = []
    return {q: rows for q, rows in blocks.items() if rows}


def test_demo_answers_the_users_question(tmp_path):
    out = ok(rank_cmd("demo", "copy a directory tree recursively", "compress data with gzip", "-k", "3",
                      cwd=tmp_path))
    results = demo_results(out.stdout)
    assert list(results) == ["copy a directory tree recursively", "compress data with gzip"]
    for rows in results.values():
        assert [r for r, _, _ in rows] == [1, 2, 3]
        assert [s for _, s, _ in rows] == sorted((s for _, s, _ in rows), reverse=True)
    assert "shutil.copytree" in [d for *_, d in results["copy a directory tree recursively"]]
    assert any(d.startswith(("gzip", "zlib")) for *_, d in results["compress data with gzip"])
    assert "docstrings" in out.stdout and "queries/s" in out.stdout


@pytest.mark.slow
def test_demo_reranks_with_colbert_maxsim(tmp_path):
    """`rank demo --colbert DIR`: BM25 candidates reordered by MaxSim of a tiny random ColBERT
    encoder (a bare BERT exported with export_colbert_encoder), checked against MaxSim computed
    here in float64 from the same encoder's token matrices."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("onnxruntime")
    pytest.importorskip("tokenizers")
    from rank.rerank import export_colbert_encoder

    words = "copy directory tree file recursively compress data gzip date parse string".split()
    tok, vocab = wordpiece_tokenizer(words, extra=["[unused0]", "[unused1]"])
    cfg = transformers.BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2,
                                  num_attention_heads=2, intermediate_size=64, max_position_embeddings=64,
                                  initializer_range=0.3)
    torch.manual_seed(0)
    transformers.BertModel(cfg).eval().save_pretrained(tmp_path / "ckpt")
    tok.save_pretrained(tmp_path / "ckpt")
    export_colbert_encoder(tmp_path / "ckpt", tmp_path / "colbert")

    query, k, depth = "copy a directory tree recursively", 4, 20
    out = ok(rank_cmd("demo", query, "-k", k, "--depth", depth, "--colbert", tmp_path / "colbert", cwd=tmp_path))
    assert "MaxSim ranking" in out.stdout and "MaxSim reranking" in out.stdout
    shown = demo_results(out.stdout)[query]

    # the reference in a fresh interpreter, as the demo's: docstrings can differ in this process
    # (other tests import and patch modules)
    script = f"""
import importlib.util, json, numpy as np
from rank._demo_corpus import stdlib_corpus
from rank.pipeline import Pipeline
from rank.rerank import ColBERTEncoder
from rank.retrieve import BM25, Tokenizer
ids, texts = stdlib_corpus()
stemmer = "english" if importlib.util.find_spec("Stemmer") else None
bm25 = BM25(tokenizer=Tokenizer(stopwords="en", stemmer=stemmer)).index(texts, ids=ids, show_progress=False)
cands = [h.id for h in Pipeline(bm25).search([{query!r}], k={depth})[0] if h.score > 0]
enc = ColBERTEncoder({str(tmp_path / "colbert")!r}, intra_op_threads=1)
q = enc.encode_queries([{query!r}])[0].astype(np.float64)
text = dict(zip(ids, texts))
docs = enc.encode_documents([text[c] for c in cands])
print(json.dumps({{c: float((q @ d.astype(np.float64).T).max(axis=1).sum()) for c, d in zip(cands, docs)}}))
"""
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    ref_run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                             cwd=tmp_path, env=env)
    assert ref_run.returncode == 0, ref_run.stderr
    ref = json.loads(ref_run.stdout)
    assert [r for r, _, _ in shown] == list(range(1, k + 1))
    # the demo prints three decimals; the texts are the same in both processes (no memory
    # addresses in the signatures), so the scores agree to that rounding
    for _, score, doc in shown:
        assert doc in ref and score == pytest.approx(ref[doc], abs=6e-4)
    assert [s for _, s, _ in shown] == sorted((s for _, s, _ in shown), reverse=True)


def test_demo_errors(rank_here, tmp_path):
    user_error(rank_here("demo", "-k", "0", cwd=tmp_path), "-k")
    user_error(rank_here("demo", "--colbert", "no-such-dir", cwd=tmp_path), "no-such-dir")


# --- quality on a real collection ----------------------------------------------------------------

@pytest.mark.slow
def test_scifact_command_line_reproduces_the_python_api(shared_data, tmp_path):
    pytest.importorskip("Stemmer")
    from rank.evaluate import evaluate
    from rank.retrieve import BM25, Tokenizer

    data = shared_data("scifact")
    ok(rank_cmd("index", data / "corpus.jsonl", "-o", "idx", "--method", "lucene", "--k1", "1.2", "--b", "0.75",
                "--stopwords", "en", "--stemmer", "english", cwd=tmp_path, timeout=300))
    ok(rank_cmd("search", "idx", data / "queries.jsonl", "-k", "100", "-o", "bm25.trec", cwd=tmp_path, timeout=300))
    out = ok(rank_cmd("eval", data / "qrels.tsv", "bm25.trec", "-m", "ndcg@10", "recall@100", "--json",
                      cwd=tmp_path))
    cli = json.loads(out.stdout)

    # the same settings through the Python API, the collection parsed here
    docs = [json.loads(line) for line in (data / "corpus.jsonl").read_text(encoding="utf-8").splitlines()]
    ids = [d["_id"] for d in docs]
    texts = [f"{d['title']} {d['text']}" if d.get("title") else d["text"] for d in docs]
    queries = [json.loads(line) for line in (data / "queries.jsonl").read_text(encoding="utf-8").splitlines()]
    bm25 = BM25(method="lucene", k1=1.2, b=0.75, tokenizer=Tokenizer(stopwords="en", stemmer="english"))
    bm25.index(texts, ids=ids, show_progress=False)
    idx, scores = bm25.search([q["text"] for q in queries], k=100)
    run = {q["_id"]: {ids[i]: float(s) for i, s in zip(row_i, row_s) if i >= 0}
           for q, row_i, row_s in zip(queries, idx, scores)}
    qrels = {}
    for line in (data / "qrels.tsv").read_text().splitlines()[1:]:
        qid, doc, grade = line.split("\t")
        qrels.setdefault(qid, {})[doc] = int(grade)
    py = evaluate(qrels, run, ["ndcg@10", "recall@100"])
    assert cli["ndcg@10"] == pytest.approx(py["ndcg@10"], abs=1e-9)
    assert cli["recall@100"] == pytest.approx(py["recall@100"], abs=1e-9)
    assert 0.65 < py["ndcg@10"] < 0.71  # bm25s gives about 0.679 with these settings
