"""Input conversion and validation shared by the public API (never imported by kernels)."""
from __future__ import annotations

import difflib
import math
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

import numpy as np

from rank.errors import DTypeError, InvalidValueError, NonFiniteError, ShapeError, UnknownMethodError

if TYPE_CHECKING:
    import numpy.typing as npt

#: Float dtypes kernels accept directly; anything else numeric is converted to float32.
KERNEL_FLOATS = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))


def as_float_array(x: npt.ArrayLike, name: str, ndim: int | Iterable[int], *,
                   dtypes: Iterable[np.dtype[Any]] = KERNEL_FLOATS, default: npt.DTypeLike = np.float32,
                   check_finite: bool = True, allow_empty: bool = False) -> np.ndarray[Any, np.dtype[Any]]:
    """Return `x` as a C-contiguous array with ``x.ndim in ndim`` and a dtype from `dtypes`.

    No copy is made when `x` already qualifies. Integer and bool inputs become `default`;
    other dtypes in `dtypes` are kept. Raises DTypeError for non-numeric data, ShapeError for a
    wrong ndim or an empty array, NonFiniteError for NaN/inf when `check_finite`.
    """
    ndims = (ndim,) if isinstance(ndim, int) else tuple(ndim)
    if not isinstance(x, np.ndarray):
        try:
            x = np.asarray(x)
        except (ValueError, TypeError) as e:  # ragged nested lists, unconvertible objects
            raise DTypeError(f"{name}: expected a numeric array, could not convert ({e})") from None
    if x.dtype not in dtypes:
        if x.dtype.kind not in "biuf":
            raise DTypeError(f"{name}: expected a numeric array, got dtype {x.dtype}")
        x = x.astype(default)
    if x.ndim not in ndims:
        want = " or ".join(f"{d}-D" for d in ndims)
        raise ShapeError(f"{name}: expected a {want} array, got shape {x.shape} ({x.ndim}-D)")
    if not allow_empty and x.size == 0:
        raise ShapeError(f"{name}: expected a non-empty array, got shape {x.shape}")
    x = np.ascontiguousarray(x)
    if check_finite and x.dtype.kind == "f" and x.size and not np.isfinite(x).all():
        raise NonFiniteError(f"{name}: contains NaN or infinity (pass check_finite=False to skip this check)")
    return x


@overload
def check_positive_int(value: object, name: str, *, allow_none: Literal[False] = ...) -> int: ...
@overload
def check_positive_int(value: object, name: str, *, allow_none: bool) -> int | None: ...
def check_positive_int(value: object, name: str, *, allow_none: bool = False) -> int | None:
    """Return `value` as an int > 0 (or None when allowed): ``check_int(name, value, lo=1)``."""
    if value is None and allow_none:
        return None
    return check_int(name, value, lo=1)


T = TypeVar("T")

# --- scalar checks: one message format, "`name` must be ...; got ..." -----------------------------


def names(valid: Iterable[object]) -> str:
    """The valid values of a choice as the messages list them: ``'a', 'b', 'c'``."""
    return ", ".join(map(repr, valid))


def choice_error(name: str, value: object, choices: Iterable[object], *, hint: str = "",
                 shown: Iterable[object] | None = None) -> UnknownMethodError:
    """The UnknownMethodError of :func:`check_choice`, for callers that test membership themselves.

    The message lists `shown` (default: `choices`), adds `hint`, shows the value given and, for
    a string close to a valid name, suggests it: ``"method must be one of 'rrf', 'combsum';
    got 'combsun' (did you mean 'combsum'?)"``.
    """
    choices = tuple(choices)
    suggestion = ""
    if isinstance(value, str):
        words = [c for c in choices if isinstance(c, str)]
        near = difflib.get_close_matches(value.strip().lower(), words, n=1, cutoff=0.6)
        if near and near[0] != value:
            suggestion = f" (did you mean {near[0]!r}?)"
    listed = names(choices if shown is None else shown)
    return UnknownMethodError(f"{name} must be one of {listed}{hint}; got {value!r}{suggestion}")


def check_choice(name: str, value: T, choices: Iterable[object], *, hint: str = "") -> T:
    """Return `value` if it is one of `choices`; raise UnknownMethodError otherwise.

    The message names the argument, lists every valid value and shows what was given:
    ``"metric must be one of 'dot', 'cosine'; got 'l2'"``; `hint` is added after the list and
    a close misspelling gets a "did you mean" (:func:`choice_error`). A bool matches only a
    bool (``1`` is not ``True``); arrays and other incomparable values are simply not valid.
    Complexity O(len(choices)).

    >>> check_choice("metric", "dot", ("dot", "cosine"))
    'dot'
    >>> check_choice("metric", "l2", ("dot", "cosine"))
    Traceback (most recent call last):
      ...
    rank.errors.UnknownMethodError: metric must be one of 'dot', 'cosine'; got 'l2'
    """
    choices = tuple(choices)
    try:
        ok = any(value is c or (isinstance(value, (bool, np.bool_)) == isinstance(c, bool) and bool(value == c))
                 for c in choices)  # True is not 1, and 0 is not False
    except (TypeError, ValueError):  # arrays and other values without a truth value
        ok = False
    if not ok:
        raise choice_error(name, value, choices, hint=hint)
    return value


def _bounds(lo: float | None, hi: float | None, left: bool = True, right: bool = True) -> str:
    if lo is not None and hi is not None:
        return f"in {'[' if left else '('}{lo:g}, {hi:g}{']' if right else ')'}"
    if lo is not None:
        return f"{'>=' if left else '>'} {lo:g}"
    if hi is not None:
        return f"{'<=' if right else '<'} {hi:g}"
    return ""


def check_int(name: str, value: object, lo: int | None = None, hi: int | None = None, *,
              error: type[Exception] = InvalidValueError) -> int:
    """Return `value` as an int with ``lo <= value <= hi`` (either bound may be None).

    bool is not an integer here; NumPy integers are. Raises `error` (InvalidValueError unless
    the caller keeps another class) as ``"k must be an integer >= 1; got 0"``. O(1).

    >>> check_int("k", 3, lo=1)
    3
    >>> check_int("k", 0, lo=1)
    Traceback (most recent call last):
      ...
    rank.errors.InvalidValueError: k must be an integer >= 1; got 0
    """
    if (isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer))
            or (lo is not None and value < lo) or (hi is not None and value > hi)):
        rng = _bounds(lo, hi)
        raise error(f"{name} must be an integer{' ' + rng if rng else ''}; got {value!r}")
    return int(value)


Inclusive = Literal["both", "left", "right", "neither"]


def check_real(name: str, value: object, lo: float | None = None, hi: float | None = None, *,
               finite: bool = True, inclusive: Inclusive = "both",
               error: type[Exception] = InvalidValueError,
               type_error: type[Exception] | None = None) -> float:
    """Return `value` as a float in the range given by `lo`, `hi` and `inclusive`.

    Parameters
    ----------
    name : str
        The argument's name, as the message shows it.
    value : object
        A Python or NumPy int or float (bool is refused).
    lo, hi : float or None, default None
        Bounds; None leaves that side open to infinity.
    finite : bool, default True
        Refuse NaN and +-inf. With ``finite=False`` infinities in range pass (NaN never does).
    inclusive : {'both', 'left', 'right', 'neither'}, default 'both'
        Which bounds are allowed values.
    error, type_error : exception classes
        Raised for a value out of range, and for a value that is not a number at all (default:
        `error`); callers keep the class their argument raised before.

    Raises ``"temperature must be a finite number > 0; got 0.0"``. O(1).

    >>> check_real("lambda_", 0.5, 0, 1)
    0.5
    >>> check_real("temperature", 0.0, lo=0, inclusive="neither")
    Traceback (most recent call last):
      ...
    rank.errors.InvalidValueError: temperature must be a finite number > 0; got 0.0
    """
    left, right = inclusive in ("both", "left"), inclusive in ("both", "right")
    what = "a finite number" if finite else "a number"
    rng = _bounds(lo, hi, left, right)
    message = f"{name} must be {what}{' ' + rng if rng else ''}; got {value!r}"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise (type_error or error)(message)
    v = float(value)
    if (math.isnan(v) or (finite and math.isinf(v))
            or (lo is not None and (v < lo or (v == lo and not left)))
            or (hi is not None and (v > hi or (v == hi and not right)))):
        raise error(message)
    return v


#: Thread counts above this are refused: no machine runs that many threads in one process,
#: and OpenMP runtimes abort the process (not raise) when they cannot create them.
MAX_THREADS_HARD = 4096


def available_cores() -> int:
    """The number of cores this process may use (its CPU affinity where the OS tells it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def resolve_threads(n_threads: int | None) -> int:
    """`n_threads` as a thread count for a kernel: the one thread-count policy of the package.

    None means every core this process may use. A positive count is honoured up to four times
    the usable cores and clamped there (more threads than that only add scheduling cost, and
    a runaway value must not exhaust the OpenMP runtime); a count above `MAX_THREADS_HARD`
    (4096) is a mistake and raises InvalidValueError, as do zero, negatives and non-integers.

    >>> resolve_threads(1)
    1
    >>> resolve_threads(10**9)
    Traceback (most recent call last):
      ...
    rank.errors.InvalidValueError: n_threads must be an integer in [1, 4096]; got 1000000000
    """
    cores = available_cores()
    if n_threads is None:
        return cores
    return min(check_int("n_threads", n_threads, lo=1, hi=MAX_THREADS_HARD), 4 * cores)
