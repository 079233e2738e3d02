"""Shared bench settings.

BENCH_THREADS (default 2) is the thread count of a whole run: ours (`n_threads`), the BLAS
pool (threadpoolctl) and anchors that size a global pool at first use (maxsim-cpu's rayon,
through RAYON_NUM_THREADS, set here before any bench module imports it). Run once per thread
count; compare ratios within one run only.

With --benchmark-disable (the default in CI) every bench runs once on a tiny workload, as a
smoke test that it still executes.
"""
import os

import pytest

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
