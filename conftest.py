"""Fixtures shared by tests/ and bench/.

`shared_data("scifact")` returns the directory of a real test collection kept beside the
repository (../shared/data/NAME, or $RANK_SHARED_DATA/NAME) and skips the test when it is
absent: the collections are never copied into the repository.

Docstring examples: pyproject.toml runs pytest with --doctest-modules over `rank`. A module
that cannot be imported, or an example that cannot run, because an optional dependency is
missing (rank.errors.MissingDependencyError, or an ImportError of a third-party module) is
skipped with a "could not import" reason, which a CI run with RANK_KERNELS_REQUIRE_OPTIONAL=1
turns into a failure. The helper copies shared by tests/ and bench/ are in tests/_helpers.py
(importable as `_helpers` in both import modes: see tests/conftest.py).
"""
import os
import sys
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


# Files beside the packages that are not tests: importing setup.py would run setup().
collect_ignore = ["setup.py", "build", "docs", "scripts"]
# conftest.py files are plugins, not modules with examples: --doctest-modules would import
# tests/conftest.py and bench/conftest.py under the one module name "conftest" and fail.
collect_ignore_glob = ["*/conftest.py"]

_OWN_PACKAGES = ("rank", "rank_kernels")


def _missing_dependency(exc):
    """The reason to skip when `exc` (or an exception it was raised from) says an optional
    dependency is missing, else None."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        reason = _missing_dependency_here(exc)
        if reason is not None:
            return reason
        exc = exc.__cause__ or exc.__context__
    return None


def _missing_dependency_here(exc):
    errors = sys.modules.get("rank.errors")
    if errors is not None and isinstance(exc, errors.MissingDependencyError):
        return f"could not import an optional dependency: {exc}"
    if isinstance(exc, ImportError):
        name = (getattr(exc, "name", None) or "").split(".")[0]
        if name and name not in _OWN_PACKAGES:
            return f"could not import {name!r}: {exc}"
    return None


def pytest_make_collect_report(collector):
    """A doctest module of `rank` whose import needs a missing optional dependency is skipped."""
    from _pytest.doctest import DoctestModule
    from _pytest.reports import CollectReport

    if not isinstance(collector, DoctestModule):
        return None
    try:
        collector.obj  # imports the module
    except Exception as exc:  # noqa: BLE001 - anything else is reported by pytest as usual
        reason = _missing_dependency(exc)
        if reason is not None:
            return CollectReport(collector.nodeid, "skipped", (str(collector.path), 0, f"Skipped: {reason}"), [])
    return None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """A docstring example that raised because an optional dependency is missing is skipped."""
    report = yield
    from _pytest.doctest import DoctestItem

    if isinstance(item, DoctestItem) and call.when == "call" and report.failed and call.excinfo is not None:
        exc = call.excinfo.value
        inner = getattr(exc, "exc_info", None)  # doctest.UnexpectedException carries the example's error
        for failure in getattr(exc, "failures", ()):  # MultipleDoctestFailures with --doctest-continue-on-failure
            inner = inner or getattr(failure, "exc_info", None)
        reason = _missing_dependency(inner[1]) if inner else None
        if reason is not None:
            report.outcome = "skipped"
            report.longrepr = (str(item.path), item.reportinfo()[1] or 0, f"Skipped: {reason}")
    return report


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
