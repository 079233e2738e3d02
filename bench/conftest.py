"""Shared bench settings.

BENCH_THREADS (default 2) is the thread count of a whole run: ours (`n_threads`), the BLAS
pool (threadpoolctl) and anchors that size a global pool at first use (maxsim-cpu's rayon,
through RAYON_NUM_THREADS, set here before any bench module imports it). Run once per thread
count; compare ratios within one run only.

With --benchmark-disable (the default in CI) every bench runs once on a tiny workload, as a
smoke test that it still executes.

Every bench names its group and records its figures with `_bench.label` (what summary.py
reads); helpers shared with the tests (corpora, model builders) are in tests/_helpers.py. Both
directories are put on sys.path here, so ``from _bench import label`` and
``from _helpers import ...`` resolve under every pytest import mode.
"""
import os
import sys
from pathlib import Path

import pytest

_HERE = Path(__file__).resolve().parent
for _dir in (str(_HERE.parent / "tests"), str(_HERE)):
    if _dir not in sys.path:
        sys.path.insert(0, _dir)

THREADS = int(os.environ.get("BENCH_THREADS", "2"))
os.environ.setdefault("RAYON_NUM_THREADS", str(THREADS))


@pytest.fixture(scope="session")
def threads():
    return THREADS


@pytest.fixture(scope="session")
def smoke(request):
    """True when benchmarks are disabled: use tiny workloads."""
    opt = request.config.getoption
    return bool(opt("benchmark_disable", False)) and not opt("benchmark_enable", False)


@pytest.fixture(autouse=True)
def _blas_threads(threads):
    """NumPy's BLAS uses the same number of threads as we do."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(limits=threads, user_api="blas"):
        yield
