"""The exceptions rank-kernels raises.

Every error derives from :class:`RankError`, and also from the built-in exception a caller
would expect (``ValueError``, ``TypeError`` or ``ImportError``), so both
``except rank.errors.RankError`` and ``except ValueError`` work.

>>> import rank
>>> try:
...     rank.maxsim([[1.0, 2.0]], [[1.0, 2.0, 3.0]])
... except rank.errors.ShapeError as e:
...     print(type(e).__name__)
ShapeError
"""

__all__ = [
    "RankError",
    "ShapeError",
    "DTypeError",
    "InvalidValueError",
    "NonFiniteError",
    "UnknownMethodError",
    "CorruptFileError",
    "ModelNotFoundError",
    "MissingDependencyError",
    "TruncationError",
    "Int8SaturationWarning",
    "TruncationWarning",
    "LanguageWarning",
]


class RankError(Exception):
    """Base class of every error raised by rank-kernels."""


class ShapeError(RankError, ValueError):
    """An array has the wrong number of dimensions, a mismatched size, or is empty."""


class DTypeError(RankError, TypeError):
    """An input cannot be converted to a supported numeric dtype."""


class InvalidValueError(RankError, ValueError):
    """An argument is outside its valid range (k <= 0, offsets not monotone, ...)."""


class NonFiniteError(InvalidValueError):
    """A float input holds NaN or infinity while ``check_finite=True``."""


class UnknownMethodError(RankError, ValueError):
    """A method or variant name is not one of the valid names (the message lists them)."""


class CorruptFileError(RankError, ValueError):
    """A saved file is truncated, foreign, or of an unsupported format version."""


class ModelNotFoundError(RankError, FileNotFoundError):
    """A model directory or hub id does not hold the files a model needs."""


class MissingDependencyError(RankError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


class TruncationError(RankError, ValueError):
    """An input is longer than the model's length limit while ``truncation="error"`` (the
    message names the input, its length in tokens and the limit)."""


class Int8SaturationWarning(UserWarning):
    """A warning, not an error: an int8 model file whose integer products can overflow the
    16-bit sums of some CPUs (AVX2 without VNNI), so that its scores depend on the CPU; the
    message names the export command that writes a safe file."""


class LanguageWarning(UserWarning):
    """A warning, not an error: a tokenizer language has a stemmer but no stopword list, so
    its words are all kept."""


class TruncationWarning(UserWarning):
    """A warning, not an error: some texts were cut at an encoder's length limit
    (``max_length`` of a cross-encoder, ``doc_maxlen`` / ``query_maxlen`` of a ColBERT encoder),
    so the model did not read their end. Raised once per call with the count; filter it with
    ``warnings.filterwarnings("ignore", category=rank.errors.TruncationWarning)`` or pass
    ``truncation="ignore"``."""
