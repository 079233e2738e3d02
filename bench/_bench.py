"""What every bench records, in one place, and what `bench/summary.py` reads back.

``label(benchmark, group, threads, items=..., unit=..., flops=..., **figures)`` names the group
(entries of one group are compared side by side; the thread count is part of the name, so runs
at different counts never share a group) and stores in the benchmark's ``extra_info``:

========== ==============================================================================
key        meaning
========== ==============================================================================
threads    the thread count of the entry (ours ``n_threads``, the anchor's pool size)
items      the work one call does, counted in ``unit`` (summary: ``items / mean`` per s)
unit       what ``items`` counts: docs, queries, pairs, elements, ...
flops      floating-point operations of one call (summary: GFLOP/s)
(others)   any other figure of the entry: sizes, accuracy against an anchor, first-call
           time; summary.py prints each as ``key=value``
========== ==============================================================================

Import with ``from _bench import label`` (bench/conftest.py puts this directory on sys.path,
for every pytest import mode).
"""

# The keys label() writes that summary.py turns into rates; every other key is printed as is.
ITEMS, UNIT, FLOPS, THREADS = "items", "unit", "flops", "threads"
RATE_KEYS = (ITEMS, UNIT, FLOPS)
# Keys that older result files used for the work of one call (before `items` / `unit`).
LEGACY_UNITS = ("docs", "queries")


def label(benchmark, group, threads=None, *, items=None, unit="docs", flops=None, **figures):
    """Name `benchmark`'s group and record its figures for summary.py.

    Parameters: ``group`` (str) names what is compared; ``threads`` (int or None) is appended
    as ``-t{threads}`` and recorded; ``items`` (int) is the work of one call counted in
    ``unit`` (default "docs"); ``flops`` (number) the floating-point operations of one call;
    ``figures``: any other values to keep (JSON-serialisable). Returns None.

    Example::

        label(benchmark, "bm25-scifact-query-k10", threads, items=300, unit="queries")
    """
    benchmark.group = group if threads is None else f"{group}-t{threads}"
    info = benchmark.extra_info
    if threads is not None:
        info[THREADS] = threads
    if items is not None:
        info[ITEMS] = int(items)
        info[UNIT] = unit
    if flops is not None:
        info[FLOPS] = float(flops)
    info.update(figures)


def ranx_with_threads(threads, smoke):
    """The ranx module with numba's pool set to `threads`; skips in smoke runs (its numba
    compilation alone takes minutes) and when ranx is not installed."""
    import pytest

    if smoke:
        pytest.skip("ranx compiles its kernels on first use; run with --benchmark-enable")
    ranx = pytest.importorskip("ranx")
    import numba

    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    return ranx
