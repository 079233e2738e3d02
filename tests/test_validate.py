"""The scalar checks of rank._validate: one message format, the existing error classes."""
import math
import re

import numpy as np
import pytest

from rank._validate import check_choice, check_int, check_real, choice_error
from rank.errors import DTypeError, InvalidValueError, UnknownMethodError

FORMAT = re.compile(r"^(\w+) must be .+; got .+$")


# --- check_choice ---------------------------------------------------------------------------------

def test_choice_returns_the_value_and_lists_every_valid_one():
    assert check_choice("metric", "cosine", ("dot", "cosine")) == "cosine"
    assert check_choice("metric", np.str_("dot"), ["dot", "cosine"]) == "dot"
    assert check_choice("quantize", None, (None, False, True, "int8")) is None
    with pytest.raises(UnknownMethodError) as info:
        check_choice("metric", "l2", ("dot", "cosine"))
    assert str(info.value) == "metric must be one of 'dot', 'cosine'; got 'l2'"
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("bad", [1, 0, 1.0, "INT8", np.ones(2), [None], {"a": 1}, b"int8"])
def test_choice_bools_match_only_bools_and_arrays_never_match(bad):
    with pytest.raises(UnknownMethodError, match=r"^quantize must be one of None, False, True, 'int8'; got "):
        check_choice("quantize", bad, (None, False, True, "int8"))


def test_choice_accepts_any_iterable_of_choices_and_suggests_a_near_name():
    assert check_choice("method", "rrf", {"rrf": 1, "combsum": 2}) == "rrf"
    with pytest.raises(UnknownMethodError, match=r"; got 'combsun' \(did you mean 'combsum'\?\)$"):
        check_choice("method", "combsun", ["rrf", "combsum"])
    with pytest.raises(UnknownMethodError, match=r"^name must be one of 'a' \(losses with a hessian\); got 'zzz'$"):
        check_choice("name", "zzz", ["a"], hint=" (losses with a hessian)")
    err = choice_error("dtype", "int8", ("float32", "float16"))
    assert isinstance(err, UnknownMethodError) and str(err) == "dtype must be one of 'float32', 'float16'; got 'int8'"


# --- check_int ------------------------------------------------------------------------------------

def test_int_bounds_and_types():
    assert check_int("k", 5) == 5 and type(check_int("k", np.int64(5), lo=1)) is int
    assert check_int("k", 1, lo=1, hi=1) == 1
    for bad, rng in [(0, ">= 1"), (-3, ">= 1")]:
        with pytest.raises(InvalidValueError, match=rf"^k must be an integer {rng}; got {bad}$"):
            check_int("k", bad, lo=1)
    with pytest.raises(InvalidValueError, match=r"^n must be an integer in \[0, 8\]; got 9$"):
        check_int("n", 9, lo=0, hi=8)
    with pytest.raises(InvalidValueError, match=r"^n must be an integer <= 8; got 9$"):
        check_int("n", 9, hi=8)
    for bad in (True, np.bool_(False), 2.0, "3", None):
        with pytest.raises(InvalidValueError, match="^n must be an integer"):
            check_int("n", bad)
    with pytest.raises(DTypeError):
        check_int("n", "3", error=DTypeError)


# --- check_real -----------------------------------------------------------------------------------

def test_real_inclusive_bounds():
    assert check_real("x", 0, 0, 1) == 0.0 and check_real("x", 1, 0, 1) == 1.0
    assert type(check_real("x", np.float32(0.5), 0, 1)) is float
    cases = [("neither", 0.0, r"in \(0, 1\)"), ("neither", 1.0, r"in \(0, 1\)"), ("left", 1.0, r"in \[0, 1\)"),
             ("right", 0.0, r"in \(0, 1\]")]
    for inclusive, bad, rng in cases:
        with pytest.raises(InvalidValueError, match=rf"^x must be a finite number {rng}; got {bad}$"):
            check_real("x", bad, 0, 1, inclusive=inclusive)
    assert check_real("x", 0.5, 0, 1, inclusive="neither") == 0.5
    with pytest.raises(InvalidValueError, match=r"^t must be a finite number > 0; got 0$"):
        check_real("t", 0, lo=0, inclusive="neither")
    with pytest.raises(InvalidValueError, match=r"^t must be a finite number < 2; got 2$"):
        check_real("t", 2, hi=2, inclusive="neither")


def test_real_finite_nan_and_types():
    for bad in (math.nan, math.inf, -math.inf, np.float64("nan")):
        with pytest.raises(InvalidValueError, match=r"^x must be a finite number; got "):
            check_real("x", bad)
    assert check_real("x", math.inf, lo=0, finite=False) == math.inf
    with pytest.raises(InvalidValueError, match=r"^x must be a number >= 0; got nan$"):
        check_real("x", math.nan, lo=0, finite=False)
    for bad in (True, "0.5", None, [1.0], 1 + 0j):
        with pytest.raises(InvalidValueError, match="^x must be a finite number"):
            check_real("x", bad)
    with pytest.raises(DTypeError, match=r"^k1 must be a finite number >= 0; got '1'$"):
        check_real("k1", "1", 0, type_error=DTypeError)
    with pytest.raises(InvalidValueError):  # out of range keeps `error`, not `type_error`
        check_real("k1", -1, 0, type_error=DTypeError)


# --- the public API speaks the same format --------------------------------------------------------

def test_public_entry_points_use_the_one_format():
    import rank
    from rank.fusion import fuse
    from rank.learn import losses
    from rank.soft import soft_rank

    calls = [
        (UnknownMethodError, lambda: rank.BM25(method="okapi")),
        (InvalidValueError, lambda: rank.BM25(b=1.5)),
        (DTypeError, lambda: rank.BM25(k1="1.2")),
        (UnknownMethodError, lambda: rank.DenseIndex(4, metric="l2")),
        (UnknownMethodError, lambda: rank.DenseIndex(4, dtype="int8")),
        (UnknownMethodError, lambda: rank.mmr(np.ones(3), np.ones((4, 3)), 2, metric="l2")),
        (InvalidValueError, lambda: rank.mmr(np.ones(3), np.ones((4, 3)), 2, lambda_=2.0)),
        (UnknownMethodError, lambda: soft_rank([1.0, 2.0], direction="up")),
        (InvalidValueError, lambda: soft_rank([1.0, 2.0], regularization_strength=0.0)),
        (UnknownMethodError, lambda: fuse([{"q": {"d": 1.0}}], "nope")),
        (InvalidValueError, lambda: fuse([{"q": {"d": 1.0}}], "rrf", params={"k": -1})),
        (UnknownMethodError, lambda: losses.lambdarank([1.0, 0.0], [1, 0], [2], gain="square")),
        (InvalidValueError, lambda: losses.ranknet([1.0, 0.0], [1, 0], [2], sigma=0.0)),
        (UnknownMethodError, lambda: rank.evaluate({"q": {"d": 1}}, {"q": {"d": 1.0}}, "ndgc")),
    ]
    for cls, call in calls:
        with pytest.raises(cls) as info:
            call()
        assert type(info.value) is cls, (cls, info.value)
        assert FORMAT.match(str(info.value)), str(info.value)
