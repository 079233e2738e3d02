"""Fixtures shared by tests/ and bench/.

`shared_data("scifact")` returns the directory of a real test collection kept beside the
repository (../shared/data/NAME, or $RANK_SHARED_DATA/NAME) and skips the test when it is
absent: the collections are never copied into the repository.
"""
import os
from pathlib import Path

import pytest

_DATA_ROOT = Path(os.environ.get("RANK_SHARED_DATA",
                                 Path(__file__).resolve().parent.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data():
    def get(name):
        path = _DATA_ROOT / name
        if not path.is_dir():
            pytest.skip(f"test collection {name!r} not found under {_DATA_ROOT}")
        return path

    return get


def pytest_sessionfinish(session, exitstatus):
    """With RANK_KERNELS_REQUIRE_OPTIONAL=1 (set by CI), a test skipped because an optional
    dependency could not be imported fails the run: CI installs every extra."""
    if os.environ.get("RANK_KERNELS_REQUIRE_OPTIONAL") != "1":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    missing = []
    for report in (reporter.stats.get("skipped", []) if reporter else []):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        if "could not import" in reason:
            missing.append(f"{report.nodeid}: {reason}")
    if missing:
        print("\nTests skipped for a missing optional dependency:\n  " + "\n  ".join(missing))
        session.exitstatus = 1
