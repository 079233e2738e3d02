"""Shared test helpers."""
import threading

import pytest


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
