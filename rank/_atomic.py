"""Atomic file and directory writes: the one way every saver of the package writes to disk.

A write goes to a temporary sibling of the target (same directory, so the final rename never
crosses a file system), is flushed and fsync'ed, gets its permission bits, and is renamed
into place; the directory holding it is then fsync'ed so the rename itself is durable. A
failure at any step (an exception, a full disk, an interrupt) leaves the target as it was and
removes the temporary.

Modes: a new file gets ``0o666 & ~umask`` (0644 under the usual umask 022) and a new
directory ``0o777 & ~umask`` (0755), as ``open`` and ``mkdir`` would give; a file or
directory that replaces an existing one keeps that one's permission bits.

Directories (:func:`atomic_dir`) replace the target in one atomic exchange where the OS has
one (Linux ``renameat2(RENAME_EXCHANGE)``): a concurrent reader always finds the old or the
new directory at the target, never nothing. Elsewhere (or on a file system without the
exchange) it takes two renames (old -> aside, new -> target); if the second fails, the old
directory is renamed back, and readers retry the brief moment the target is missing. A save killed between steps leaves
temporaries named ``.tmp-<name>-<pid>-<random>`` / ``.old-<name>-<pid>-<random>``; the next
save of the same target removes those of processes that are gone, and first puts a lone
``.old-`` directory back at the target if the target itself is missing (a save killed
between its two renames).

>>> import tempfile, os
>>> d = tempfile.mkdtemp()
>>> with atomic_open(os.path.join(d, "out.txt"), "w") as f:
...     _ = f.write("hello")
>>> open(os.path.join(d, "out.txt")).read()
'hello'
"""
from __future__ import annotations

import errno
import os
import secrets
import shutil
import stat
import sys
import threading
from contextlib import contextmanager
from typing import IO, Any, Callable, Iterator, Optional, Union

__all__ = ["atomic_open", "atomic_write", "atomic_dir", "fsync_dir", "clean_stale"]

PathLike = Union[str, "os.PathLike[str]"]


def fsync_dir(path: PathLike) -> None:
    """fsync directory `path` (makes renames and creations in it durable); a no-op where the OS
    cannot open directories (Windows)."""
    try:
        fd = os.open(os.fspath(path), os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


#: Temporaries of the saves running in this process (never cleaned as stale).
_ACTIVE: set[str] = set()
_ACTIVE_LOCK = threading.Lock()


def _sibling(target: str, kind: str) -> str:
    parent, base = os.path.split(os.path.abspath(target))
    path = os.path.join(parent, f".{kind}-{base}-{os.getpid()}-{secrets.token_hex(4)}")
    with _ACTIVE_LOCK:
        _ACTIVE.add(path)
    return path


def _release(*paths: str) -> None:
    with _ACTIVE_LOCK:
        for p in paths:
            _ACTIVE.discard(p)


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # our own leftovers are stale unless a running save owns them (_ACTIVE)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def _stale(parent: str, base: str) -> list[tuple[str, str]]:
    """(kind, path) of the temporaries of saves of `base` whose process is gone."""
    out: list[tuple[str, str]] = []
    try:
        names = os.listdir(parent)
    except OSError:
        return out
    for name in names:
        for kind in ("tmp", "old"):
            prefix = f".{kind}-{base}-"
            if not name.startswith(prefix):
                continue
            pid_text = name[len(prefix):].split("-", 1)[0]
            full = os.path.join(parent, name)
            with _ACTIVE_LOCK:
                active = full in _ACTIVE
            if pid_text.isdigit() and not active and not _pid_alive(int(pid_text)):
                out.append((kind, full))
    return out


_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100


def _load_renameat2() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2  # glibc >= 2.28
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_renameat2 = _load_renameat2()


def _exchange(a: str, b: str) -> bool:
    """Atomically swap the names `a` and `b` (both must exist); False where the OS or the file
    system has no such operation (the caller falls back to two renames)."""
    if _renameat2 is None:
        return False
    import ctypes
    if _renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM):
        return False
    raise OSError(err, os.strerror(err), a, None, b)


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            os.unlink(path)
        except OSError:
            pass


def clean_stale(target: PathLike) -> None:
    """Remove the leftovers of killed saves of `target` (see the module docstring); if the
    target is missing and a killed save left the previous version aside, put it back first."""
    target = os.path.abspath(os.fspath(target))
    parent, base = os.path.split(target)
    stale = _stale(parent, base)
    if not os.path.lexists(target):
        olds = sorted((p for k, p in stale if k == "old"), key=lambda p: os.stat(p).st_mtime, reverse=True)
        if olds:
            try:
                os.rename(olds[0], target)
                stale = [(k, p) for k, p in stale if p != olds[0]]
            except OSError:
                pass
    for _, p in stale:
        _remove(p)


def _mode_for(target: str) -> Optional[int]:
    """Permission bits for a new `target`: those of the file it replaces, else None (keep the
    umask-derived bits the creation gave)."""
    try:
        st = os.stat(target)
    except OSError:
        return None
    return stat.S_IMODE(st.st_mode)


@contextmanager
def atomic_open(path: PathLike, mode: str = "wb", *, encoding: Optional[str] = None,
                newline: Optional[str] = None) -> Iterator[IO[Any]]:
    """A file object writing a temporary sibling of `path`, renamed onto `path` when the
    block ends without an exception (after flush and fsync; the directory is fsync'ed too).

    `mode` is "w" (text; `encoding` defaults to UTF-8) or "wb". The file gets the permission
    bits of the file it replaces, else ``0o666 & ~umask``. On an exception the temporary is
    removed and `path` is untouched. Raises IsADirectoryError when `path` is a directory.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open: mode must be 'w' or 'wb', got {mode!r}")
    target = os.path.abspath(os.fspath(path))
    if os.path.isdir(target):
        raise IsADirectoryError(errno.EISDIR, "Is a directory (expected a file name)", os.fspath(path))
    parent = os.path.dirname(target)
    if not os.path.isdir(parent):
        raise FileNotFoundError(errno.ENOENT, "No such directory", parent)
    clean_stale(target)
    tmp = _sibling(target, "tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    except BaseException:
        _release(tmp)
        raise
    try:
        if mode == "w":
            f: IO[Any] = os.fdopen(fd, "w", encoding=encoding or "utf-8", newline=newline)
        else:
            f = os.fdopen(fd, "wb")
    except BaseException:
        os.close(fd)
        _remove(tmp)
        _release(tmp)
        raise
    try:
        with f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        keep = _mode_for(target)
        if keep is not None:
            os.chmod(tmp, keep)
        os.replace(tmp, target)
    except BaseException:
        _remove(tmp)
        raise
    finally:
        _release(tmp)
    fsync_dir(parent)


def atomic_write(path: PathLike, data: Union[bytes, str], *, encoding: str = "utf-8") -> None:
    """Write `data` (bytes, or str encoded with `encoding`) to `path` atomically (see :func:`atomic_open`)."""
    with atomic_open(path, "wb") as f:
        f.write(data.encode(encoding) if isinstance(data, str) else data)


def _fsync_tree(root: str) -> None:
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(dirpath)


@contextmanager
def atomic_dir(path: PathLike, *, check: Optional[Callable[[str], None]] = None) -> Iterator[str]:
    """A new temporary directory beside `path` to fill; when the block ends without an
    exception it replaces `path` (every file and the directory fsync'ed first).

    `check(path)` runs first (e.g. to refuse replacing something that is not a saved index).
    The directory gets ``0o777 & ~umask``, or the permission bits of the directory it
    replaces. Replacing is one atomic exchange where available, else two renames (old aside,
    new in place); if the second fails the old directory is put back, then the error
    propagates. Leftovers of killed saves are cleaned
    first (:func:`clean_stale`). Yields the temporary directory's path.
    """
    target = os.path.abspath(os.fspath(path))
    parent = os.path.dirname(target)
    os.makedirs(parent, exist_ok=True)
    clean_stale(target)
    if check is not None:
        check(os.fspath(path))
    tmp = _sibling(target, "tmp")
    old = _sibling(target, "old")
    try:
        os.mkdir(tmp, 0o777)
        yield tmp
        keep = _mode_for(target) if os.path.isdir(target) else None
        if keep is not None:
            os.chmod(tmp, keep)
        _fsync_tree(tmp)
        if os.path.lexists(target) and _exchange(tmp, target):
            try:
                fsync_dir(parent)
            finally:
                _remove(tmp)  # now the old index: the new one is in place, whatever happens
        elif os.path.lexists(target):
            os.rename(target, old)
            try:
                os.rename(tmp, target)
            except BaseException:
                os.rename(old, target)
                raise
            try:
                fsync_dir(parent)
            finally:
                _remove(old)  # the new index is in place: the old one goes, whatever happens
        else:
            os.rename(tmp, target)
    except BaseException:
        _remove(tmp)
        raise
    finally:
        _release(tmp, old)
    fsync_dir(parent)
