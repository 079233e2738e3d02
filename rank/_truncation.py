"""Visible truncation for the model encoders: what was cut, a warning or an error, and the record.

The encoders (:class:`rank.rerank.CrossEncoder`, :class:`rank.rerank.ColBERTEncoder`) cut
texts longer than their length limit. Each call counts the inputs it cut and then, by its
``truncation`` setting:

- ``"warn"`` (default): one :class:`rank.errors.TruncationWarning` per call giving the count
  (nothing when nothing was cut);
- ``"error"``: :class:`rank.errors.TruncationError` naming the first input cut, raised before
  the model runs;
- ``"ignore"``: neither.

With ``return_info=True`` a call also returns a :class:`TruncationInfo`, the record of that
call alone. The record is returned rather than kept on the encoder (say as a
``last_truncated`` attribute) because one encoder serves many threads at once: an attribute
would hold whichever call finished last, not the caller's own.

>>> info = TruncationInfo("documents", "doc_maxlen", 180, 3, np.array([2]), np.array([250]))
>>> info.n_truncated, bool(info)
(1, True)
>>> info.message()
'1 of 3 documents longer than doc_maxlen=180 tokens were truncated (the longest had 250 tokens); the model did not read their end'
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import numpy as np

from rank.errors import TruncationError, TruncationWarning, UnknownMethodError

__all__ = ["MODES", "TruncationInfo", "check_mode", "report"]

MODES = ("warn", "error", "ignore")


def check_mode(mode: Any, name: str = "truncation") -> str:
    """`mode` if it is one of :data:`MODES`; UnknownMethodError otherwise."""
    if not isinstance(mode, str) or mode not in MODES:
        raise UnknownMethodError(f"{name}: expected one of {', '.join(map(repr, MODES))}, got {mode!r}")
    return mode


@dataclass(frozen=True)
class TruncationInfo:
    """What one encoder call cut at its length limit.

    Attributes
    ----------
    what : str
        The inputs counted: ``"pairs"`` (cross-encoder), ``"documents"`` or ``"queries"``.
    limit_name : str
        The setting that limits them (``"max_length"``, ``"doc_maxlen"``, ``"query_maxlen"``).
    limit : int
        Its value, in tokens including the special tokens.
    n_inputs : int
        How many inputs the call encoded.
    truncated : int64 array (n_truncated,)
        Positions (in the call's input order) of the inputs that were cut, ascending.
    lengths : int64 array (n_truncated,)
        Their full lengths in tokens, special tokens included, before the cut.

    ``bool(info)`` is True when something was cut. Immutable; safe to keep and share.
    """

    what: str
    limit_name: str
    limit: int
    n_inputs: int
    truncated: np.ndarray = field(repr=False)
    lengths: np.ndarray = field(repr=False)

    @property
    def n_truncated(self) -> int:
        """Number of inputs that were cut."""
        return int(self.truncated.shape[0])

    def __bool__(self) -> bool:
        return self.n_truncated > 0

    def __repr__(self) -> str:
        return (f"TruncationInfo({self.what}: {self.n_truncated} of {self.n_inputs} cut at "
                f"{self.limit_name}={self.limit})")

    def message(self) -> str:
        """One line for a log or a warning (the count, the limit and the longest input)."""
        return (f"{self.n_truncated} of {self.n_inputs} {self.what} longer than {self.limit_name}={self.limit} "
                f"tokens were truncated (the longest had {int(self.lengths.max()) if self.n_truncated else 0} "
                f"tokens); the model did not read their end")


def report(mode: str, what: str, limit_name: str, limit: int, n_inputs: int, cut: Sequence[tuple[int, int]],
           *, item: str, stacklevel: int = 3, hint: Optional[str] = None) -> TruncationInfo:
    """The :class:`TruncationInfo` of a call from its ``(position, full length)`` cuts, after
    warning (mode "warn") or raising TruncationError (mode "error") when there are any.

    `item` names one input in an error message (``"documents[{i}]"``); `stacklevel` points the
    warning at the caller of the public method.
    """
    pairs = sorted(cut)
    info = TruncationInfo(what, limit_name, int(limit), int(n_inputs),
                          np.fromiter((p for p, _ in pairs), np.int64, len(pairs)),
                          np.fromiter((n for _, n in pairs), np.int64, len(pairs)))
    if info and mode == "error":
        first, n = pairs[0]
        raise TruncationError(
            f"{item.format(i=first)}: {n} tokens, more than {limit_name}={limit} (with truncation='error'; "
            f"{info.n_truncated} of {n_inputs} {what} are too long). Shorten or split the text, raise "
            f"{limit_name}, or pass truncation='warn' to cut it" + (f" ({hint})" if hint else ""))
    if info and mode == "warn":
        warnings.warn(info.message() + " (pass truncation='ignore' or filter rank.errors.TruncationWarning to "
                      "silence this)", TruncationWarning, stacklevel=stacklevel + 1)
    return info
