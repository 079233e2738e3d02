"""Significance tests between runs: paired t-test and a seeded paired randomization test."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence, Union

import numpy as np

from rank._validate import check_positive_int, resolve_threads, check_choice
from rank.errors import InvalidValueError, ShapeError
from rank.evaluate.metrics import metric_columns, evaluate_arrays, plan_metrics

__all__ = ["compare", "Comparison", "TESTS"]

#: Valid `test` names.
TESTS = ("paired_t", "randomization")


def _betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b) by its continued fraction (modified Lentz)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    if x > (a + 1.0) / (a + b + 2.0):  # the fraction converges fast on this side only
        return 1.0 - _betainc(b, a, 1.0 - x)
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    f = d
    for m in range(1, 10000):
        for num in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                    -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            f *= c * d
        if abs(c * d - 1.0) < 1e-15:
            break
    return math.exp(log_front) * f / a


def paired_t_pvalue(diff: np.ndarray) -> float:
    """Two-sided p-value of Student's paired t-test on the differences `diff` (n >= 2)."""
    n = diff.shape[0]
    mean = float(diff.mean())
    sd = float(diff.std(ddof=1))
    if sd == 0.0:
        return 1.0 if mean == 0.0 else 0.0
    t = mean / (sd / math.sqrt(n))
    df = n - 1.0
    return _betainc(df / 2.0, 0.5, df / (df + t * t))


def randomization_pvalue(diff: np.ndarray, n_permutations: int, seed: Optional[int]) -> float:
    """Two-sided p-value of the paired randomization (sign-flip) test, (hits + 1) / (B + 1)."""
    n = diff.shape[0]
    observed = abs(float(diff.mean()))
    rng = np.random.default_rng(seed)
    hits = 0
    chunk = max(1, min(n_permutations, (1 << 22) // max(n, 1)))
    done = 0
    while done < n_permutations:
        b = min(chunk, n_permutations - done)
        signs = rng.integers(0, 2, size=(b, n), dtype=np.int8) * 2 - 1
        stats = np.abs(signs @ diff) / n
        hits += int(np.count_nonzero(stats >= observed - 1e-12 * max(1.0, observed)))
        done += b
    return (hits + 1) / (n_permutations + 1)


@dataclass
class Comparison:
    """Means of every run and metric, and p-values of each run against the first (baseline).

    ``means[run][metric]`` and ``p_values[run][metric]`` (NaN for the baseline itself).
    ``str(comparison)`` renders a text table of the means with each p-value beside it.
    """

    runs: list
    metrics: list
    test: str
    n_queries: int
    means: dict = field(default_factory=dict)
    p_values: dict = field(default_factory=dict)

    def __str__(self) -> str:
        width = max(len(str(r)) for r in self.runs)
        cols = [f"{m:>11}" + " " * 10 for m in self.metrics]
        lines = [f"{'run':<{width}}  " + "  ".join(cols) + f"   ({self.test} vs {self.runs[0]}, {self.n_queries} queries)"]
        for r in self.runs:
            cells = []
            for m in self.metrics:
                p = self.p_values[r][m]
                tail = " " * 10 if math.isnan(p) else f" (p={p:.3f})"
                cells.append(f"{self.means[r][m]:>11.4f}{tail}")
            lines.append(f"{str(r):<{width}}  " + "  ".join(cells))
        return "\n".join(lines)


def compare(qrels: Mapping[str, Mapping[str, int]],
            runs: Union[Mapping[str, Mapping[str, Mapping[str, float]]], Sequence[Mapping[str, Mapping[str, float]]]],
            metrics: Union[str, Sequence[str]], *, test: str = "paired_t", n_permutations: int = 10000,
            seed: Optional[int] = 0, relevance_level: int = 1, n_threads: Optional[int] = None) -> Comparison:
    """Compare runs on the same queries: mean of each metric and a p-value against the first run.

    Parameters
    ----------
    qrels : dict ``{qid: {docid: grade}}``
    runs : dict ``{name: run}`` or list of runs (named ``"run_0"``, ``"run_1"``, ...)
        At least two runs; the first is the baseline.
    metrics : str or list of str
        Metric names, as for :func:`rank.evaluate.evaluate`.
    test : str, default "paired_t"
        "paired_t" (Student's paired t-test, two-sided) or "randomization" (paired
        sign-flip randomization test, two-sided, `n_permutations` samples from `seed`).
    n_permutations : int, default 10000
    seed : int, default 0
        Seed of the randomization test, so p-values are reproducible.
    relevance_level, n_threads
        As for :func:`rank.evaluate.evaluate`.

    Returns
    -------
    Comparison: ``means[run][metric]``, ``p_values[run][metric]`` (NaN for the baseline).
    Every run is scored on the queries that all runs and the qrels share.

    Complexity: one evaluation per run, then O(n_queries) per (run, metric) for the t-test
    or O(n_permutations * n_queries) for the randomization test.

    Raises UnknownMethodError (unknown test or metric), ShapeError (fewer than two runs, or
    fewer than two shared queries), plus the errors of :func:`rank.evaluate.evaluate`.

    >>> qrels = {"q1": {"a": 1}, "q2": {"b": 1}, "q3": {"c": 1}}
    >>> base = {"q1": {"a": 1.0, "x": 2.0}, "q2": {"b": 1.0, "y": 2.0}, "q3": {"c": 1.0, "z": 2.0}}
    >>> better = {"q1": {"a": 3.0, "x": 2.0}, "q2": {"b": 3.0, "y": 2.0}, "q3": {"c": 1.0, "z": 2.0}}
    >>> result = compare(qrels, {"base": base, "better": better}, ["mrr"])
    >>> round(result.means["better"]["mrr"], 4), round(result.p_values["better"]["mrr"], 4)
    (0.8333, 0.1835)
    """
    check_choice("test", test, TESTS)
    n_permutations = check_positive_int(n_permutations, "n_permutations")
    if isinstance(runs, Mapping):
        named = list(runs.items())
    else:
        named = [(f"run_{i}", r) for i, r in enumerate(runs)]
    if len(named) < 2:
        raise ShapeError(f"runs: expected at least two runs to compare, got {len(named)}")
    plan = plan_metrics(metrics)
    names = [o[0] for o in plan.outputs]
    if isinstance(relevance_level, bool) or not isinstance(relevance_level, (int, np.integer)):
        raise InvalidValueError(f"relevance_level: expected an integer, got {relevance_level!r}")
    n_threads = resolve_threads(n_threads)
    tables = []
    for _, run in named:
        qids, values = evaluate_arrays(qrels, run, plan, int(relevance_level), n_threads)
        tables.append(dict(zip(qids, metric_columns(plan, values))))
    shared = [q for q in tables[0] if all(q in t for t in tables[1:])]
    if len(shared) < 2:
        raise ShapeError(f"runs: expected at least two queries shared by every run and the qrels, got {len(shared)}")
    mats = [np.stack([t[q] for q in shared]) for t in tables]
    result = Comparison(runs=[n for n, _ in named], metrics=names, test=test, n_queries=len(shared))
    for (name, _), mat in zip(named, mats):
        result.means[name] = dict(zip(names, mat.mean(axis=0).tolist()))
        pv = {}
        for j, metric in enumerate(names):
            if mat is mats[0]:
                pv[metric] = math.nan
                continue
            diff = mat[:, j] - mats[0][:, j]
            if test == "paired_t":
                pv[metric] = paired_t_pvalue(diff)
            else:
                pv[metric] = randomization_pvalue(diff, n_permutations, seed)
        result.p_values[name] = pv
    return result
