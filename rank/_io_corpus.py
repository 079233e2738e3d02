"""Reading document collections and query sets from the files users already have.

Formats, chosen by the file name's suffix (a trailing ``.gz`` is decompressed on the fly) or
by ``fmt``:

- ``jsonl`` (also ``.json``, ``.ndjson``): one JSON object per line, BEIR style. Documents
  carry ``_id`` (or ``id`` / ``docid``), ``text`` (or ``contents``) and an optional ``title``,
  which is prepended to the text; queries carry ``_id`` and ``text``.
- ``txt``: one document (or query) per line; its id is the line number, counted from 1.
  Blank lines are skipped (their numbers are not used).
- ``tsv`` / ``csv``: a header row naming an id column (``_id``, ``id``, ``docid``, ``doc_id``,
  ``pid``, ``qid``, ``query_id``, ``query-id``) and a text column (``text``, ``contents``,
  ``body``, ``passage``, ``query``), plus an optional ``title`` column; or, without a header,
  exactly two columns ``id, text`` (the MS MARCO layout). TSV fields are split on tabs with no
  quoting; CSV follows RFC 4180 quoting.

Errors name the file and, for a malformed record, its line number: a missing file raises
``FileNotFoundError``; an empty file, a malformed line, bytes that are not UTF-8, a missing
field or a duplicate id raises :class:`rank.errors.InvalidValueError`.

>>> import os, tempfile
>>> path = os.path.join(tempfile.mkdtemp(), "corpus.jsonl")
>>> with open(path, "w") as f:
...     _ = f.write('{"_id": "d1", "title": "Dates", "text": "Parse a date."}\\n')
>>> read_corpus(path)
(['d1'], ['Dates Parse a date.'])
"""
from __future__ import annotations

import csv
import gzip
import io
import json
import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Union

from rank._validate import check_choice
from rank.errors import InvalidValueError, UnknownMethodError

__all__ = ["read_corpus", "read_queries", "detect_format", "FORMATS"]

PathLike = Union[str, "os.PathLike[str]"]

#: File formats understood by :func:`read_corpus` and :func:`read_queries`.
FORMATS = ("jsonl", "txt", "tsv", "csv")
_SUFFIXES = {".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".txt": "txt",
             ".tsv": "tsv", ".csv": "csv"}
_ID_KEYS = ("_id", "id", "docid", "doc_id", "pid", "qid", "query_id", "query-id")
_TEXT_KEYS = ("text", "contents", "body", "passage", "query")


def detect_format(path: PathLike, fmt: str | None = None) -> str:
    """The format of `path`: `fmt` when given, otherwise from its suffix (``.gz`` ignored).

    Raises UnknownMethodError for an unknown `fmt` or suffix, listing the valid ones.

    >>> detect_format("queries.jsonl.gz"), detect_format("collection.tsv")
    ('jsonl', 'tsv')
    """
    if fmt is not None:
        return check_choice("format", fmt, FORMATS)
    name = Path(path).name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    suffix = Path(name).suffix
    if suffix not in _SUFFIXES:
        raise UnknownMethodError(
            f"{path}: cannot tell the format from the suffix {suffix or '(none)'!r}; expected one of "
            f"{', '.join(sorted(_SUFFIXES))} (optionally .gz), or pass the format explicitly")
    return _SUFFIXES[suffix]


def _open(path: PathLike) -> IO[str]:
    """The file as text. Bytes that are not UTF-8 become lone surrogates (surrogateescape), so
    that :func:`_checked` reports them with the line they are on: a strict decoder fails on the
    chunk it reads ahead, lines before the bad one."""
    p = Path(path)
    if p.is_dir():
        raise IsADirectoryError(21, "Is a directory (expected a file)", str(p))
    if p.suffix.lower() == ".gz":
        return io.TextIOWrapper(gzip.open(p, "rb"), encoding="utf-8-sig", errors="surrogateescape", newline="")
    return open(p, encoding="utf-8-sig", errors="surrogateescape", newline="")


_NOT_UTF8 = re.compile("[\udc80-\udcff]")


def _checked(path: PathLike, lines: IO[str]) -> Iterator[str]:
    """The lines of `lines`; InvalidValueError naming the file and line at the first byte that
    is not UTF-8. O(1) per ASCII line, one scan of the others."""
    for n, line in enumerate(lines, 1):
        if not line.isascii():
            bad = _NOT_UTF8.search(line)
            if bad is not None:
                raise InvalidValueError(
                    f"{path}, line {n}: not valid UTF-8 (byte 0x{ord(bad.group()) - 0xDC00:02x} at character "
                    f"{bad.start() + 1}); re-encode the file as UTF-8")
        yield line


def _lines(path: PathLike) -> Iterator[tuple[int, str]]:
    """(line number from 1, line without its end of line) for every line of the file."""
    with _open(path) as f:
        n = 0
        try:
            for n, line in enumerate(_checked(path, f), 1):
                yield n, line.rstrip("\r\n")
        except (OSError, EOFError) as e:  # truncated or corrupt gzip stream
            if isinstance(e, FileNotFoundError):
                raise
            raise InvalidValueError(f"{path}, line {n + 1}: cannot read ({e})") from None


def _pick(keys: dict, names: tuple[str, ...]) -> str | None:
    for name in names:
        if name in keys:
            return name
    return None


def _read_jsonl(path: PathLike, what: str, with_title: bool) -> Iterator[tuple[int, str, str]]:
    for n, line in _lines(path):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise InvalidValueError(f"{path}, line {n}: malformed JSON ({e.msg} at column {e.colno})") from None
        except RecursionError:
            raise InvalidValueError(f"{path}, line {n}: malformed JSON (nested too deeply)") from None
        if not isinstance(obj, dict):
            raise InvalidValueError(f"{path}, line {n}: expected a JSON object, got {type(obj).__name__}")
        id_key = _pick(obj, _ID_KEYS)
        if id_key is None:
            raise InvalidValueError(f"{path}, line {n}: the {what} has no id field (expected '_id')")
        text_key = _pick(obj, _TEXT_KEYS)
        if text_key is None:
            raise InvalidValueError(f"{path}, line {n}: the {what} has no 'text' field")
        doc_id, text = obj[id_key], obj[text_key]
        if isinstance(doc_id, bool) or not isinstance(doc_id, (str, int)):
            raise InvalidValueError(f"{path}, line {n}: the id must be a string or an integer, got {doc_id!r}")
        if text is None:
            text = ""
        if not isinstance(text, str):
            raise InvalidValueError(f"{path}, line {n}: '{text_key}' must be a string, got {type(text).__name__}")
        title = obj.get("title") if with_title else None
        if title:
            if not isinstance(title, str):
                raise InvalidValueError(f"{path}, line {n}: 'title' must be a string, got {type(title).__name__}")
            text = f"{title} {text}" if text else title
        yield n, str(doc_id), text


def _read_txt(path: PathLike) -> Iterator[tuple[int, str, str]]:
    for n, line in _lines(path):
        if line.strip():
            yield n, str(n), line


def _read_table(path: PathLike, delimiter: str, what: str, with_title: bool) -> Iterator[tuple[int, str, str]]:
    rows: Iterator[tuple[int, list[str]]]
    if delimiter == "\t":
        rows = ((n, line.split("\t")) for n, line in _lines(path) if line.strip())
    else:
        rows = _csv_rows(path)
    id_col: int | None = None
    text_col = 1
    title_col: int | None = None
    width = 0
    for n, row in rows:
        if id_col is None:
            header = {cell.strip().lower(): i for i, cell in enumerate(row)}
            found_id, found_text = _pick(header, _ID_KEYS), _pick(header, _TEXT_KEYS)
            width = len(row)
            if found_id is not None and found_text is not None:
                id_col, text_col = header[found_id], header[found_text]
                title_col = header.get("title") if with_title else None
                continue
            if len(row) != 2:
                raise InvalidValueError(
                    f"{path}, line {n}: expected a header row naming the id and text columns "
                    f"(e.g. 'id{'<TAB>' if delimiter == chr(9) else ','}text') or exactly two columns "
                    f"id and text, got {len(row)} column(s)")
            id_col, text_col = 0, 1
        if len(row) != width:
            raise InvalidValueError(f"{path}, line {n}: expected {width} columns, got {len(row)}")
        assert id_col is not None
        doc_id, text = row[id_col].strip(), row[text_col]
        if not doc_id:
            raise InvalidValueError(f"{path}, line {n}: empty {what} id")
        if title_col is not None and row[title_col].strip():
            text = f"{row[title_col]} {text}" if text else row[title_col]
        yield n, doc_id, text


_CSV_LOCK = threading.Lock()
_CSV_READERS = [0, 0]  # readers running, the limit to restore when the last one ends
#: Largest CSV field accepted (a document's text): the csv module's default is 128 KiB.
CSV_FIELD_LIMIT = (1 << 31) - 1


@contextmanager
def _csv_field_limit() -> Iterator[None]:
    """Raise the csv module's field size limit while a corpus is read, then restore it.

    The limit is process-wide in the csv module; it is raised only (other readers meanwhile
    accept longer fields, never fewer) and restored when the last of our readers ends."""
    with _CSV_LOCK:
        if _CSV_READERS[0] == 0:
            _CSV_READERS[1] = csv.field_size_limit()
            csv.field_size_limit(max(_CSV_READERS[1], CSV_FIELD_LIMIT))
        _CSV_READERS[0] += 1
    try:
        yield
    finally:
        with _CSV_LOCK:
            _CSV_READERS[0] -= 1
            if _CSV_READERS[0] == 0:
                csv.field_size_limit(_CSV_READERS[1])


def _csv_rows(path: PathLike) -> Iterator[tuple[int, list[str]]]:
    with _open(path) as f, _csv_field_limit():
        reader = csv.reader(_checked(path, f))
        try:
            for row in reader:
                if row and any(cell.strip() for cell in row):
                    yield reader.line_num, row
        except csv.Error as e:
            raise InvalidValueError(f"{path}, line {reader.line_num}: malformed CSV ({e})") from None


def _read(path: PathLike, fmt: str | None, what: str, with_title: bool,
          show_progress: bool = False) -> tuple[list[str], list[str]]:
    kind = detect_format(path, fmt)
    if kind == "jsonl":
        records = _read_jsonl(path, what, with_title)
    elif kind == "txt":
        records = _read_txt(path)
    else:
        records = _read_table(path, "\t" if kind == "tsv" else ",", what, with_title)
    ids: list[str] = []
    texts: list[str] = []
    seen: dict[str, int] = {}
    if show_progress:
        from rank.pipeline import progress

        records = progress(records, desc=f"reading {Path(path).name}", unit=" " + what)
    for n, doc_id, text in records:
        first = seen.setdefault(doc_id, n)
        if first != n:
            raise InvalidValueError(f"{path}, line {n}: duplicate {what} id {doc_id!r} (first on line {first})")
        ids.append(doc_id)
        texts.append(text)
    if not ids:
        plural = "queries" if what == "query" else f"{what}s"
        raise InvalidValueError(f"{path}: no {plural} found (the file is empty)")
    return ids, texts


def read_corpus(path: PathLike, fmt: str | None = None, *, show_progress: bool = False) -> tuple[list[str], list[str]]:
    """Read a document collection: ``(ids, texts)``, two lists of str in file order.

    `path` is a BEIR ``corpus.jsonl``, a ``.txt`` file with one document per line, or a
    ``.tsv`` / ``.csv`` table (see the module documentation); `fmt` overrides the suffix.
    A title, when present, is prepended to the text. O(file size) time and memory.
    `show_progress` counts the documents read on a progress bar (tqdm, when installed).
    """
    return _read(path, fmt, "document", with_title=True, show_progress=show_progress)


def read_queries(path: PathLike, fmt: str | None = None) -> tuple[list[str], list[str]]:
    """Read a query set: ``(query_ids, texts)``, two lists of str in file order.

    `path` is a BEIR ``queries.jsonl``, a ``.txt`` file with one query per line (ids are line
    numbers), or a ``.tsv`` / ``.csv`` table with id and text columns; `fmt` overrides the suffix.
    """
    return _read(path, fmt, "query", with_title=False)

