"""TREC run and qrels files, read as trec_eval reads them.

- qrels, TREC format: ``qid iteration docid grade`` (4 fields).
- qrels, BEIR format: ``query-id<TAB>corpus-id<TAB>score`` with a header line (3 fields).
- run, TREC format: ``qid Q0 docid rank score tag`` (6 fields; anything after the sixth is
  ignored, as trec_eval ignores it). The rank column is ignored on reading, as trec_eval
  ignores it: the order comes from the scores.

As with trec_eval: fields are separated by any ASCII whitespace (spaces or tabs), blank lines
and lines starting with ``#`` are skipped (also the first line), grades may be any integer
(negative: pooled but unjudged; above 4: graded), scores may be ``inf``/``-inf``. A UTF-8 byte
order mark at the start of a file is dropped. Malformed lines (too few fields, a non-numeric
score or grade, a NaN score, bytes that are not UTF-8) raise
:class:`rank.errors.CorruptFileError` naming the file and line number. A (query, document)
pair listed twice keeps the last line, with a warning (trec_eval itself refuses such files;
``duplicates="error"`` does too).

:func:`write_run` writes to a temporary file beside the target and renames it into place, so
a failed write never leaves a truncated file.
"""
from __future__ import annotations

import math
import os
import sys
import warnings
from typing import IO, Any, Mapping, Optional, TypeVar, Union

from rank._atomic import atomic_open
from rank.errors import CorruptFileError, DTypeError, InvalidValueError, NonFiniteError, ShapeError

__all__ = ["read_qrels", "read_run", "write_run"]

PathLike = Union[str, "os.PathLike[str]"]

_INT64 = 2 ** 63
_DUPLICATES = ("warn", "error")


def _lines(path):
    """(line number, fields as bytes) of every content line: ASCII-whitespace separated (as C's
    isspace), blank and ``#`` lines skipped, a leading UTF-8 BOM dropped."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            fields = raw.split()
            if fields and not fields[0].startswith(b"#"):
                yield lineno, raw, fields


def _text(b: bytes, path: PathLike, lineno: int, what: str) -> str:
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CorruptFileError(f"{path}:{lineno}: {what} {b!r} is not valid UTF-8 ({e.reason})") from None


def _show(raw: bytes) -> str:
    return repr(raw.rstrip(b"\r\n").decode("utf-8", "replace"))


def _check_duplicates(duplicates: object) -> str:
    if duplicates not in _DUPLICATES:
        raise InvalidValueError(f"duplicates: expected one of {', '.join(map(repr, _DUPLICATES))}, got {duplicates!r}")
    return str(duplicates)


T = TypeVar("T", bound=dict)


class _Dups:
    """Counts repeated (query, document) pairs; warns once per file."""

    def __init__(self, path: PathLike, mode: str, what: str) -> None:
        self.path, self.mode, self.what = path, mode, what
        self.first: Optional[str] = None
        self.count = 0

    def seen(self, lineno: int, qid: str, docid: str) -> None:
        msg = f"{self.path}:{lineno}: document {docid!r} appears twice for query {qid!r}"
        if self.mode == "error":
            raise CorruptFileError(msg + " (trec_eval refuses such files)")
        self.count += 1
        if self.first is None:
            self.first = msg

    def put(self, table: dict, lineno: int, qid_raw: bytes, docid_raw: bytes, value: Any) -> None:
        """``table[qid][docid] = value`` from the raw fields of line `lineno`, counting repeats."""
        qid = _text(qid_raw, self.path, lineno, "query id")
        docid = _text(docid_raw, self.path, lineno, "document id")
        docs = table.setdefault(qid, {})
        if docid in docs:
            self.seen(lineno, qid, docid)
        docs[docid] = value

    def done(self, table: T, what: str) -> T:
        """`table` once the file is read: ShapeError if it is empty, the repeats warned about."""
        if not table:
            raise ShapeError(f"{self.path}: no {what} in the file")
        if self.count:
            more = f" ({self.count - 1} more repeated pairs)" if self.count > 1 else ""
            warnings.warn(f"{self.first}{more}: the last line of each pair wins; trec_eval refuses such "
                          f"{self.what} files", UserWarning, stacklevel=3)
        return table


def read_qrels(path: PathLike, *, duplicates: str = "warn") -> dict[str, dict[str, int]]:
    """Read relevance judgements from a TREC qrels file or a BEIR ``qrels.tsv``.

    The format is detected from the first content line: 4 fields is TREC (``qid iter docid
    grade``); 3 fields is BEIR (``query-id corpus-id score``), whose header line (a
    non-numeric third field) is skipped. Fields are separated by spaces or tabs; blank lines and
    ``#`` comment lines are skipped; a UTF-8 BOM is dropped. Grades are integers of any sign
    and size within int64 (negative: pooled but unjudged, as trec_eval reads them).

    Returns ``{qid: {docid: grade}}`` with int grades, in file order. A document judged twice
    for one query keeps the last grade and warns (`duplicates="warn"`, the default) or raises
    CorruptFileError (`duplicates="error"`, trec_eval's behaviour). O(file size).

    Raises CorruptFileError (wrong field count, non-integer grade, bytes that are not UTF-8;
    the message names the file and line), ShapeError (no judgement at all) and
    InvalidValueError (bad `duplicates`).

    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "qrels.tsv")
    >>> _ = open(path, "w").write("query-id\\tcorpus-id\\tscore\\nq1\\td1\\t1\\nq1\\td7\\t2\\n")
    >>> read_qrels(path)
    {'q1': {'d1': 1, 'd7': 2}}
    """
    dups = _Dups(path, _check_duplicates(duplicates), "qrels")
    qrels: dict[str, dict[str, int]] = {}
    width = None
    for lineno, raw, fields in _lines(path):
        if width is None:
            width = len(fields)
            if width not in (3, 4):
                raise CorruptFileError(f"{path}:{lineno}: expected a qrels line 'qid iter docid grade' (TREC) "
                                       f"or 'query-id<TAB>corpus-id<TAB>score' (BEIR), got {_show(raw)}")
            if width == 3:
                try:
                    float(fields[2])
                except ValueError:
                    continue  # BEIR header
        if len(fields) != width:
            raise CorruptFileError(f"{path}:{lineno}: expected {width} fields, got {len(fields)}: {_show(raw)}")
        q, d, grade = (fields[0], fields[1], fields[2]) if width == 3 else (fields[0], fields[2], fields[3])
        try:
            g = int(grade)
        except ValueError:
            try:
                f = float(grade) if b"_" not in grade else math.nan
            except ValueError:
                f = math.nan
            if not f.is_integer():
                raise CorruptFileError(f"{path}:{lineno}: relevance grade {_text(grade, path, lineno, 'grade')!r} "
                                       "is not an integer") from None
            g = int(f)
        if b"_" in grade:
            raise CorruptFileError(f"{path}:{lineno}: relevance grade {grade.decode('utf-8', 'replace')!r} "
                                   "is not an integer")
        if not -_INT64 <= g < _INT64:
            raise CorruptFileError(f"{path}:{lineno}: relevance grade {g} is outside the int64 range")
        dups.put(qrels, lineno, q, d, g)
    return dups.done(qrels, "relevance judgement")


def read_run(path: PathLike, *, duplicates: str = "warn") -> dict[str, dict[str, float]]:
    """Read a TREC run file (``qid Q0 docid rank score tag`` per line), as trec_eval reads it.

    Fields are separated by spaces or tabs; anything after the sixth field is ignored; blank
    lines and ``#`` comment lines are skipped; a UTF-8 BOM is dropped. Scores may be ``inf``
    or ``-inf`` (trec_eval reads them and ranks them first / last); NaN is refused, since no
    order can be derived from it.

    Returns ``{qid: {docid: score}}`` in file order. A document listed twice for one query
    keeps the last score and warns (`duplicates="warn"`, the default) or raises
    CorruptFileError (`duplicates="error"`, trec_eval's behaviour). O(file size).

    Raises CorruptFileError (fewer than 6 fields, a non-numeric or NaN score, bytes that are
    not UTF-8; the message names the file and line), ShapeError (empty file) and
    InvalidValueError (bad `duplicates`).

    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "run.txt")
    >>> _ = open(path, "w").write("# bm25\\nq1 Q0 d7 1 2.5 bm25\\nq1\\tQ0\\td1\\t2\\t1.0\\tbm25\\textra\\n")
    >>> read_run(path)
    {'q1': {'d7': 2.5, 'd1': 1.0}}
    """
    dups = _Dups(path, _check_duplicates(duplicates), "run")
    run: dict[str, dict[str, float]] = {}
    for lineno, raw, fields in _lines(path):
        if len(fields) < 6:
            raise CorruptFileError(f"{path}:{lineno}: expected 6 fields 'qid Q0 docid rank score tag', "
                                   f"got {len(fields)}: {_show(raw)}")
        score = fields[4]
        try:
            if b"_" in score:
                raise ValueError
            s = float(score)
        except ValueError:
            raise CorruptFileError(f"{path}:{lineno}: score {score.decode('utf-8', 'replace')!r} "
                                   "is not a number") from None
        if s != s:
            raise CorruptFileError(f"{path}:{lineno}: score {score.decode('utf-8', 'replace')!r} is NaN "
                                   "(scores must be numbers; inf and -inf are allowed)")
        dups.put(run, lineno, fields[0], fields[2], s)
    return dups.done(run, "result line")


def write_run(run: Mapping[str, Mapping[str, float]], path: Union[PathLike, IO[str]], *,
              tag: str = "rank") -> None:
    """Write a run as a TREC run file, atomically.

    Each query's documents are written in trec_eval's order (score descending, equal scores
    by document id descending) with ranks 1, 2, ...; scores use ``repr`` so that reading the
    file back gives the same floats. Queries keep the dict's order. A path is written with
    :func:`rank._atomic.atomic_open` (a temporary sibling, fsync, renamed into place, so a
    failed write leaves the old file); ``"-"`` writes to standard output and an open text
    stream is written to as it is. Every line is checked before anything is written.
    O(n log n) per query.

    Raises DTypeError (a score is not a number), NonFiniteError (NaN score) and
    ShapeError (a query or document id or `tag` containing whitespace, an empty id, or a query
    id starting with ``#``).

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
        if qid.startswith("#"):
            raise ShapeError(f"run query id: {qid!r} starts with '#', which makes its lines comments to readers")
        items = []
        for docid, score in docs.items():
            check_id(docid, f"run[{qid!r}] document id")
            if isinstance(score, (str, bytes)) or isinstance(score, bool):
                raise DTypeError(f"run[{qid!r}][{docid!r}]: score is not a number: {score!r}")
            try:
                s = float(score)
            except (TypeError, ValueError):
                raise DTypeError(f"run[{qid!r}][{docid!r}]: score is not a number: {score!r}") from None
            if s != s:
                raise NonFiniteError(f"run[{qid!r}][{docid!r}]: score is NaN (scores must be numbers; "
                                     "inf and -inf are written as such)")
            items.append((s, docid))
        items.sort(reverse=True)
        lines.extend(f"{qid} Q0 {d} {i} {s!r} {tag}\n" for i, (s, d) in enumerate(items, 1))
    if isinstance(path, str) and path == "-":
        sys.stdout.writelines(lines)
        sys.stdout.flush()
    elif isinstance(path, (str, os.PathLike)):
        with atomic_open(path, "w", encoding="utf-8") as f:
            f.writelines(lines)
    else:
        path.writelines(lines)
