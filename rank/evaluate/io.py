"""TREC run and qrels files.

- qrels, TREC format: ``qid iteration docid grade`` (whitespace separated, 4 fields).
- qrels, BEIR format: ``query-id<TAB>corpus-id<TAB>score`` with a header line (3 fields).
- run, TREC format: ``qid Q0 docid rank score tag`` (6 fields). The rank column is ignored on
  reading, as trec_eval ignores it: the order comes from the scores.

Malformed lines raise :class:`rank.errors.CorruptFileError` naming the file and line number.
:func:`write_run` writes to a temporary file beside the target and renames it into place, so
a failed write never leaves a truncated file.
"""
from __future__ import annotations

import math
import os
import tempfile
from typing import Mapping, Union

from rank.errors import CorruptFileError, DTypeError, NonFiniteError, ShapeError

__all__ = ["read_qrels", "read_run", "write_run"]

PathLike = Union[str, "os.PathLike[str]"]


def _lines(path):
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            fields = line.split()
            if fields:
                yield lineno, line, fields


def read_qrels(path: PathLike) -> dict[str, dict[str, int]]:
    """Read relevance judgements from a TREC qrels file or a BEIR ``qrels.tsv``.

    The format is detected from the first line: 4 fields is TREC (``qid iter docid grade``);
    3 tab-separated fields is BEIR (``query-id corpus-id score``), whose header line (a
    non-numeric third field) is skipped.

    Returns ``{qid: {docid: grade}}`` with int grades, in file order. A document judged twice
    for one query keeps the last grade (as trec_eval does). O(file size).

    Raises CorruptFileError (wrong field count, non-integer grade; the message names the line)
    and ShapeError (no judgement at all).

    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "qrels.tsv")
    >>> _ = open(path, "w").write("query-id\\tcorpus-id\\tscore\\nq1\\td1\\t1\\nq1\\td7\\t2\\n")
    >>> read_qrels(path)
    {'q1': {'d1': 1, 'd7': 2}}
    """
    qrels: dict[str, dict[str, int]] = {}
    width = None
    for lineno, line, fields in _lines(path):
        if width is None:
            width = len(fields)
            if width not in (3, 4):
                raise CorruptFileError(f"{path}:{lineno}: expected a qrels line 'qid iter docid grade' (TREC) "
                                       f"or 'query-id<TAB>corpus-id<TAB>score' (BEIR), got {line.rstrip()!r}")
            if width == 3:
                try:
                    float(fields[2])
                except ValueError:
                    continue  # BEIR header
        if len(fields) != width:
            raise CorruptFileError(f"{path}:{lineno}: expected {width} fields, got {len(fields)}: {line.rstrip()!r}")
        qid, docid, grade = (fields[0], fields[1], fields[2]) if width == 3 else (fields[0], fields[2], fields[3])
        try:
            g = int(grade)
        except ValueError:
            try:
                f = float(grade)
            except ValueError:
                f = math.nan
            if not f.is_integer():
                raise CorruptFileError(f"{path}:{lineno}: relevance grade {grade!r} is not an integer") from None
            g = int(f)
        qrels.setdefault(qid, {})[docid] = g
    if not qrels:
        raise ShapeError(f"{path}: no relevance judgement in the file")
    return qrels


def read_run(path: PathLike) -> dict[str, dict[str, float]]:
    """Read a TREC run file (``qid Q0 docid rank score tag`` per line).

    Returns ``{qid: {docid: score}}`` in file order. O(file size).

    Raises CorruptFileError (wrong field count, non-numeric or non-finite score, a document
    listed twice for one query; the message names the line) and ShapeError (empty file).

    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "run.txt")
    >>> _ = open(path, "w").write("q1 Q0 d7 1 2.5 bm25\\nq1 Q0 d1 2 1.0 bm25\\n")
    >>> read_run(path)
    {'q1': {'d7': 2.5, 'd1': 1.0}}
    """
    run: dict[str, dict[str, float]] = {}
    for lineno, line, fields in _lines(path):
        if len(fields) != 6:
            raise CorruptFileError(f"{path}:{lineno}: expected 6 fields 'qid Q0 docid rank score tag', "
                                   f"got {len(fields)}: {line.rstrip()!r}")
        qid, _, docid, _, score, _ = fields
        try:
            s = float(score)
        except ValueError:
            raise CorruptFileError(f"{path}:{lineno}: score {score!r} is not a number") from None
        if not math.isfinite(s):
            raise CorruptFileError(f"{path}:{lineno}: score {score!r} is not finite")
        docs = run.setdefault(qid, {})
        if docid in docs:
            raise CorruptFileError(f"{path}:{lineno}: document {docid!r} appears twice for query {qid!r}")
        docs[docid] = s
    if not run:
        raise ShapeError(f"{path}: no result line in the file")
    return run


def write_run(run: Mapping[str, Mapping[str, float]], path: PathLike, *, tag: str = "rank") -> None:
    """Write a run as a TREC run file, atomically.

    Each query's documents are written in trec_eval's order (score descending, equal scores
    by document id descending) with ranks 1, 2, ...; scores use ``repr`` so that reading the
    file back gives the same floats. Queries keep the dict's order. The file is written to a
    temporary name in the same directory and renamed into place. O(n log n) per query.

    Raises DTypeError (a score is not a number), NonFiniteError (NaN/inf score) and
    ShapeError (a query or document id or `tag` containing whitespace, or an empty id).

    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "run.txt")
    >>> write_run({"q1": {"d1": 1.0, "d2": 2.0, "d3": 1.0}}, path, tag="demo")
    >>> print(open(path).read(), end="")
    q1 Q0 d2 1 2.0 demo
    q1 Q0 d3 2 1.0 demo
    q1 Q0 d1 3 1.0 demo
    """
    def check_id(x, what):
        if not isinstance(x, str) or not x or len(x.split()) != 1 or x.split()[0] != x:
            raise ShapeError(f"{what}: expected a non-empty id without whitespace, got {x!r}")

    check_id(tag, "tag")
    lines: list[str] = []
    for qid, docs in run.items():
        check_id(qid, "run query id")
        items = []
        for docid, score in docs.items():
            check_id(docid, f"run[{qid!r}] document id")
            if isinstance(score, (str, bytes)) or isinstance(score, bool):
                raise DTypeError(f"run[{qid!r}][{docid!r}]: score is not a number: {score!r}")
            try:
                s = float(score)
            except (TypeError, ValueError):
                raise DTypeError(f"run[{qid!r}][{docid!r}]: score is not a number: {score!r}") from None
            if not math.isfinite(s):
                raise NonFiniteError(f"run[{qid!r}][{docid!r}]: score is {s} (scores must be finite)")
            items.append((s, docid))
        items.sort(reverse=True)
        lines.extend(f"{qid} Q0 {d} {i} {s!r} {tag}\n" for i, (s, d) in enumerate(items, 1))
    directory = os.path.dirname(os.path.abspath(os.fspath(path)))
    fd, tmp = tempfile.mkstemp(prefix=".run-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.writelines(lines)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
