"""The demo collection: documentation of the Python standard library, built on the spot.

Nothing is downloaded and no text is stored in the package: every document is a docstring
that the running interpreter already has: one per public module, class, function and method
of a fixed list of standard library modules. A document's id is the dotted name of what it
documents (``"datetime.datetime.strptime"``) and its text is that name with the call signature
when one is available (memory addresses in default values left out, so every process builds
the same texts), then the docstring. Modules absent from this interpreter are skipped, so the
collection (a few thousand documents) differs slightly between Python versions.

>>> ids, texts = stdlib_corpus(["json"])
>>> "json.loads" in ids
True
"""
from __future__ import annotations

import importlib
import inspect
import re
import warnings
from collections.abc import Callable, Iterable

__all__ = ["stdlib_corpus", "DEMO_MODULES", "DEMO_QUERIES"]

#: Modules whose documentation forms the demo collection (pure, portable, quick to import).
DEMO_MODULES = (
    "builtins", "abc", "argparse", "array", "base64", "binascii", "bisect", "calendar", "codecs",
    "collections", "collections.abc", "configparser", "contextlib", "copy", "csv", "dataclasses",
    "datetime", "decimal", "difflib", "email.utils", "enum", "fnmatch", "fractions", "functools",
    "getpass", "glob", "gzip", "hashlib", "heapq", "hmac", "html", "http.client", "inspect", "io",
    "ipaddress", "itertools", "json", "locale", "logging", "math", "mimetypes", "operator", "os",
    "os.path", "pathlib", "pickle", "platform", "pprint", "queue", "random", "re", "secrets",
    "shlex", "shutil", "socket", "sqlite3", "statistics", "string", "struct", "subprocess", "sys",
    "tarfile", "tempfile", "textwrap", "threading", "time", "timeit", "traceback", "typing",
    "unicodedata", "urllib.parse", "urllib.request", "uuid", "warnings", "weakref",
    "xml.etree.ElementTree", "zipfile", "zlib",
)

#: Example questions the demo answers when the user gives none.
DEMO_QUERIES = (
    "how do I parse a date from a string",
    "read rows from a csv file",
    "compress data with gzip",
    "generate a random password token",
    "copy a directory tree recursively",
    "run a shell command and capture its output",
)

_MAX_CHARS = 4000  # long module docstrings are cut: the head says what the module is about


def _doc(obj: object) -> str | None:
    try:
        doc = obj.__doc__
    except Exception:  # properties of exotic descriptors may raise
        return None
    if not isinstance(doc, str) or not doc.strip():
        return None
    return inspect.cleandoc(doc)[:_MAX_CHARS]


#: " at 0x7f..." in the repr of a default value (``<function copy2 at 0x7f...>``): an address
#: that changes from one process to the next, so it is dropped to keep the collection the same.
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def _signature(obj: object) -> str:
    """The call signature, without memory addresses; "" when there is none.

    >>> import shutil
    >>> "0x" in _signature(shutil.move)
    False
    """
    try:
        return _ADDRESS.sub("", str(inspect.signature(obj)))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return ""


def _is_documented_kind(obj: object) -> bool:
    return inspect.isroutine(obj) or inspect.isclass(obj) or isinstance(obj, property)


def stdlib_corpus(modules: Iterable[str] = DEMO_MODULES) -> tuple[list[str], list[str]]:
    """Build the demo collection: ``(ids, texts)``, two lists of str, deterministic order.

    `modules` are names of standard library modules; those that cannot be imported here are
    skipped. Each object is documented once, under the first name it is met with. Takes a few
    hundred milliseconds (mostly imports). Raises ValueError when no docstring is found (an
    interpreter run with ``-OO`` strips them).
    """
    ids: list[str] = []
    texts: list[str] = []
    seen: set[int] = set()

    def add(name: str, obj: object) -> None:
        doc = _doc(obj)
        if doc is None or id(obj) in seen:
            return
        seen.add(id(obj))
        sig = _signature(obj) if callable(obj) else ""
        ids.append(name)
        texts.append(f"{name}{sig}\n{doc}")

    with warnings.catch_warnings():  # deprecated aliases (typing.re, ...) warn when their docs are read
        warnings.simplefilter("ignore", DeprecationWarning)
        _collect(modules, add)
    if not ids:
        raise ValueError("no docstrings found: this interpreter strips them (python -OO?)")
    return ids, texts


def _collect(modules: Iterable[str], add: Callable[[str, object], None]) -> None:
    for module_name in modules:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        add(module_name, module)
        for attr in sorted(vars(module)):
            if attr.startswith("_"):
                continue
            obj = vars(module)[attr]
            if not _is_documented_kind(obj):
                continue
            owner = getattr(obj, "__module__", None)
            if inspect.isclass(obj) and isinstance(owner, str) and owner.split(".")[0] not in (
                    module_name.split(".")[0], "_" + module_name.split(".")[0], "builtins"):
                continue  # a class imported from elsewhere (documented in its own module)
            qual = f"{module_name}.{attr}" if module_name != "builtins" else attr
            add(qual, obj)
            if inspect.isclass(obj):
                for meth in sorted(vars(obj)):
                    if meth.startswith("_"):
                        continue
                    raw = vars(obj)[meth]
                    member = raw.__func__ if isinstance(raw, (classmethod, staticmethod)) else raw
                    if _is_documented_kind(member):
                        add(f"{qual}.{meth}", member)
