"""Default search grids of :func:`rank.fusion.optimize_fusion` (ranx's optimize_fusion defaults).

- weights (wsum, wmnz, mixed, wborda, wcondorcet): every vector of multiples of `step`
  (default 0.1) in [0, 1] summing to 1, in lexicographic order (66 vectors for 3 runs). The
  sum is tested exactly on integer multiples of `step`; ranx tests the float sum and so drops
  a few vectors (0.1 + 0.2 + 0.7 != 1.0 in binary floating point: 62 of the 66 for 3 runs).
- k of RRF: 10, 20, ..., 100; phi of RBC, gamma of CombGMNZ, sigma of logn_ISR: 0.01, 0.02,
  ..., 1.0 (ranx's float arange can step past the maximum, e.g. phi = 1.01 with step 0.05;
  ours stops at it); n_segments of ProbFuse and w of SlideFuse: 1, 2, ..., 100.
"""
from __future__ import annotations

import itertools
import math
from decimal import Decimal

import numpy as np

from rank._validate import check_real
from rank.errors import InvalidValueError

__all__ = ["weight_grid", "linear", "int_range"]


def _digits(step: float) -> int:
    exp = Decimal(repr(float(step))).normalize().as_tuple().exponent
    return max(0, -int(exp))


def _check_step(step: object, name: str = "step") -> float:
    return check_real(name, step, 0.0, inclusive="neither")


def weight_grid(n_runs: int, step: float = 0.1) -> list[dict]:
    """Every weight vector of multiples of `step` summing to 1 (`step` must divide 1)."""
    step = _check_step(step)
    units = round(1.0 / step)
    if units < 1 or abs(units * step - 1.0) > 1e-9:
        raise InvalidValueError(f"step: expected a step that divides 1 (0.1, 0.05, 0.25, ...), got {step!r}")
    if math.comb(units + n_runs - 1, n_runs - 1) > 1_000_000:
        raise InvalidValueError(f"step: {step!r} with {n_runs} runs gives more than 1,000,000 weight vectors; "
                                "use a larger step")
    digits = _digits(step)
    out = []
    for combo in itertools.product(range(units + 1), repeat=n_runs):
        if sum(combo) == units:
            out.append({"weights": tuple(round(c / units, digits + 1) if digits else c / units for c in combo)})
    return out


def linear(lo: float, hi: float, step: float) -> list[float]:
    """ranx's float grid: lo, lo + step, ... up to hi + step, each rounded to the step's
    decimals, keeping the values <= hi (so that a parameter never leaves its range)."""
    step = _check_step(step)
    for name, v in (("min", lo), ("max", hi)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise InvalidValueError(f"grid {name}: expected a finite number, got {v!r}")
    if lo > hi:
        raise InvalidValueError(f"grid: expected min <= max, got {lo!r} > {hi!r}")
    if (hi - lo) / step > 1_000_000:
        raise InvalidValueError(f"step: {step!r} gives more than 1,000,000 values; use a larger step")
    digits = _digits(step)
    values = [round(float(x), digits) for x in np.arange(lo, hi + step, step)]
    return [v for v in values if v <= hi]


def int_range(lo: int, hi: int, step: int = 1) -> list[int]:
    """lo, lo + step, ..., up to hi (included)."""
    for name, v in (("min", lo), ("max", hi), ("step", step)):
        if isinstance(v, bool) or not isinstance(v, int):
            raise InvalidValueError(f"grid {name}: expected an integer, got {v!r}")
    if step <= 0 or lo > hi:
        raise InvalidValueError(f"grid: expected min <= max and step > 0, got {lo}, {hi}, {step}")
    return list(range(lo, hi + 1, step))
