"""Fixtures of the test files. Plain helper functions shared by tests and benches are in
tests/_helpers.py: this directory is put on sys.path here, so ``from _helpers import ...``
resolves under every import mode (``--import-mode=importlib``, used by the installed-wheel run,
puts no test directory on sys.path itself)."""
import sys
import threading
from pathlib import Path

import pytest

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)


@pytest.fixture
def run_threads():
    """run(fn, n=4) calls fn(i) for i < n in n concurrent threads and returns their results."""

    def run(fn, n=4):
        results = [None] * n

        def work(i):
            results[i] = fn(i)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return results

    return run
