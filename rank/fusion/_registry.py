"""The fusion method and normalisation registries.

A fusion method is one small function ``contribution(ctx, **params) -> (values, fill)`` in a
family module, registered with :func:`method`: `values` holds, for every entry of every
(query, run) segment, what that entry contributes; `fill` (or None) what a segment
contributes for a candidate of its query it did not retrieve. The registration names the
kernel's combination rule (``rank_kernels.fusion.COMBINE``), the method's parameters with
their defaults and checks, its optional trainer (methods learnt from qrels) and its grid for
:func:`rank.fusion.optimize_fusion`. Everything else (encoding, ranks, normalisation, the
merge, output, validation) is shared, so adding a method is one function in one module.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence, cast

import numpy as np

from rank._validate import check_int, check_real, choice_error
from rank.errors import DTypeError, InvalidValueError, ShapeError, UnknownMethodError
from rank_kernels import fusion as _kernel


def unknown(kind: str, name: object, valid: Sequence[Any]) -> UnknownMethodError:
    """An UnknownMethodError listing the valid names and suggesting the nearest one."""
    return choice_error(kind, name, valid)



# --- parameter checks -----------------------------------------------------------------------------

def real(lo: float = -math.inf, hi: float = math.inf, lo_open: bool = False) -> Callable[[str, object], float]:
    """A check for a finite real number in [lo, hi] (or (lo, hi] when `lo_open`)."""
    def check(name: str, v: object) -> float:
        return check_real(name, v, None if lo == -math.inf else lo, None if hi == math.inf else hi,
                          inclusive="right" if lo_open else "both")
    return check


def integer(lo: int = 1) -> Callable[[str, object], int]:
    """A check for an integer >= lo."""
    def check(name: str, v: object) -> int:
        return check_int(name, v, lo=lo)
    return check


def _finite_vector(name: str, v: object, what: str) -> np.ndarray:
    """`v` as a C-contiguous finite float64 1-D array; `what` says what was expected."""
    try:
        arr = np.asarray(v, dtype=np.float64)
    except (TypeError, ValueError):
        raise DTypeError(f"{name}: expected {what}, got {type(v).__name__}") from None
    if arr.ndim != 1:
        raise ShapeError(f"{name}: expected {what} (1-D), got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise InvalidValueError(f"{name}: expected finite numbers, got NaN or infinity")
    return np.ascontiguousarray(arr)


def per_run_arrays(name: str, v: object, n_runs: int) -> list[np.ndarray]:
    """Trained tables: one finite 1-D float array per run."""
    if isinstance(v, (str, bytes)) or not hasattr(v, "__len__"):
        raise DTypeError(f"{name}: expected one array per run, got {type(v).__name__}")
    seq = list(cast(Iterable[Any], v))
    if len(seq) != n_runs:
        raise ShapeError(f"{name}: expected one array per run ({n_runs}), got {len(seq)}")
    return [_finite_vector(f"{name}[{r}]", a, "an array of numbers") for r, a in enumerate(seq)]


def per_run_numbers(name: str, v: object, n_runs: int) -> np.ndarray:
    """One finite number per run (weights, MAP scores)."""
    if isinstance(v, (str, bytes, Mapping)):
        raise DTypeError(f"{name}: expected one number per run, got {type(v).__name__}")
    arr = _finite_vector(name, v, "one number per run")
    if arr.shape[0] != n_runs:
        raise ShapeError(f"{name}: expected one number per run ({n_runs}), got {arr.shape[0]}")
    return arr


@dataclass(frozen=True)
class Param:
    """A method parameter: its default (``REQUIRED``: none) and its check ``(name, value) -> value``."""
    default: Any
    check: Callable[..., Any]
    per_run: bool = False  # check takes (name, value, n_runs)
    doc: str = ""


REQUIRED = object()


@dataclass(frozen=True)
class Method:
    name: str
    contribution: Callable[..., Any]
    combine: str                      # a key of rank_kernels.fusion.COMBINE, or "condorcet"
    power: Callable[[Mapping[str, Any]], float] = lambda p: 0.0  # the kernel's p from the params
    params: Mapping[str, Param] = field(default_factory=dict)
    ranks: bool = False               # contributions use ranks (norm only reorders/rescales scores)
    scores: bool = False              # contributions use (normalised) scores
    trainer: Optional[Callable[..., dict]] = None   # (ctx, qrels, relevance_level, **params) -> params
    train_params: tuple[str, ...] = ()              # params the trainer produces
    train_inputs: tuple[str, ...] = ()              # params the trainer reads (its cache key)
    grid: Optional[Callable[..., list]] = None      # (n_runs, **options) -> list of param dicts
    aliases: tuple[str, ...] = ()
    summary: str = ""

    @property
    def rule(self) -> int:
        return -1 if self.combine == "condorcet" else _kernel.COMBINE[self.combine]


@dataclass(frozen=True)
class Norm:
    name: str
    apply: Callable[..., Any]     # (ctx) -> (normalised scores, fill or None)
    reorders: bool = False        # ranks follow the normalised scores (min-max-inverted)
    aliases: tuple[str, ...] = ()
    summary: str = ""


METHODS: dict[str, Method] = {}
NORMS: dict[Optional[str], Optional[Norm]] = {None: None}
_ALIASES: dict[str, str] = {}
_NORM_ALIASES: dict[str, Optional[str]] = {"none": None}


def method(name: str, combine: str, **kw: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register the decorated contribution function as fusion method `name`."""
    if combine != "condorcet" and combine not in _kernel.COMBINE:
        raise KeyError(f"unknown kernel combination rule {combine!r}")

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        m = Method(name=name, contribution=fn, combine=combine, summary=(fn.__doc__ or "").strip().split("\n")[0],
                   **kw)
        METHODS[name] = m
        for a in m.aliases:
            _ALIASES[a] = name
        return fn
    return deco


def normalization(name: str, **kw: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register the decorated function as score normalisation `name`."""
    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        n = Norm(name=name, apply=fn, summary=(fn.__doc__ or "").strip().split("\n")[0], **kw)
        NORMS[name] = n
        for a in n.aliases:
            _NORM_ALIASES[a] = name
        return fn
    return deco


def get_method(name: object) -> Method:
    if isinstance(name, str):
        key = name.strip().lower()
        key = _ALIASES.get(key, key)
        if key in METHODS:
            return METHODS[key]
    raise unknown("method", name, tuple(METHODS) + tuple(_ALIASES))


def get_norm(name: object) -> Optional[Norm]:
    if name is None:
        return None
    if isinstance(name, str):
        key = name.strip().lower()
        key = _NORM_ALIASES.get(key, key)  # type: ignore[assignment]
        if key is None:
            return None
        if key in NORMS:
            return NORMS[key]
    raise unknown("norm", name, tuple(NORMS) + tuple(_NORM_ALIASES))


def resolve_params(m: Method, params: Optional[Mapping[str, Any]], n_runs: int, *, need_trained: bool = True,
                   partial: bool = False) -> dict[str, Any]:
    """The method's parameters: `params` checked, defaults filled in; errors name the parameter.

    `need_trained=False` lets the trained tables be missing; `partial=True` any required one."""
    if params is None:
        params = {}
    if not isinstance(params, Mapping):
        raise DTypeError(f"params: expected a dict of method parameters, got {type(params).__name__}")
    extra = [k for k in params if k not in m.params]
    if extra:
        valid = ", ".join(repr(k) for k in m.params) or "none"
        raise InvalidValueError(f"params: method {m.name!r} takes no parameter {extra[0]!r}; its parameters: {valid}")
    out: dict[str, Any] = {}
    for key, spec in m.params.items():
        if key in params and params[key] is not None:
            v = params[key]
            out[key] = spec.check(key, v, n_runs) if spec.per_run else spec.check(key, v)
        elif spec.default is REQUIRED:
            if partial or (key in m.train_params and not need_trained):
                continue
            how = (" (train it with qrels=... or rank.fusion.train_fusion)" if key in m.train_params
                   else "")
            raise InvalidValueError(f"params: method {m.name!r} needs {key!r}{how}")
        elif spec.default is not None:
            out[key] = spec.default(n_runs) if callable(spec.default) else spec.default
        else:
            out[key] = None
    return out
