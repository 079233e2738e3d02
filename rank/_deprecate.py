"""Deprecated aliases of renamed methods: they warn once per process, then call the new name."""
from __future__ import annotations

import functools
import threading
import warnings
from typing import Any, Callable, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

_warned: set[str] = set()
_lock = threading.Lock()


def warn_once(key: str, message: str, *, stacklevel: int = 3) -> None:
    """Emit ``DeprecationWarning(message)`` the first time `key` is seen in this process."""
    with _lock:
        if key in _warned:
            return
        _warned.add(key)
    warnings.warn(message, DeprecationWarning, stacklevel=stacklevel)


def alias(new: F, old_name: str) -> F:
    """A deprecated method `old_name` that warns once, then calls the method `new`.

    Used in a class body: ``retrieve = alias(search, "retrieve")``. The alias keeps the
    new method's signature and docstring (with a deprecation note), so help() and the reference
    show what to call instead; it looks the new method up on the instance, so subclasses that
    override it are honoured.
    """
    name = new.__name__

    @functools.wraps(new)
    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        warn_once(f"{type(self).__qualname__}.{old_name}",
                  f"{type(self).__name__}.{old_name}() is deprecated and will be removed in a later "
                  f"release; call {type(self).__name__}.{name}() (same arguments, same result)")
        return getattr(self, name)(*args, **kwargs)

    method.__name__ = old_name
    method.__qualname__ = new.__qualname__.rsplit(".", 1)[0] + "." + old_name
    method.__doc__ = f"Deprecated alias of :meth:`{name}`: warns once per process, then calls it."
    return method  # type: ignore[return-value]
