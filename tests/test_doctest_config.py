"""The one doctest configuration: pytest runs every docstring example of `rank`
(--doctest-modules over the package, from pyproject.toml), and the root conftest skips an
example only when an optional dependency is missing, with the "could not import" reason that
CI's RANK_KERNELS_REQUIRE_OPTIONAL=1 turns into a failure."""
import importlib.util
from pathlib import Path

import pytest

try:
    import tomllib
except ImportError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parent.parent


def _root_conftest():
    path = ROOT / "conftest.py"
    spec = importlib.util.spec_from_file_location("_rank_root_conftest", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pytest_runs_the_examples_of_the_whole_package():
    options = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert "--doctest-modules" in options["addopts"].split()
    assert "rank" in options["testpaths"]
    assert "ELLIPSIS" in options["doctest_optionflags"] and "NORMALIZE_WHITESPACE" in options["doctest_optionflags"]
    ignored = _root_conftest().collect_ignore
    assert "setup.py" in ignored  # importing it would run setup()


def test_only_a_missing_optional_dependency_skips_an_example():
    from rank.errors import MissingDependencyError

    reason = _root_conftest()._missing_dependency
    assert "could not import" in reason(MissingDependencyError("rank.soft.torch needs PyTorch"))
    third_party = ModuleNotFoundError("No module named 'faiss'", name="faiss")
    assert "could not import 'faiss'" in reason(third_party)
    try:  # the way a module re-raises: the cause is what counts
        try:
            raise third_party
        except ImportError as e:
            raise RuntimeError("collecting failed") from e
    except RuntimeError as wrapped:
        assert "could not import 'faiss'" in reason(wrapped)
    # A broken module of our own, or any other error, is reported, never skipped.
    assert reason(ModuleNotFoundError("No module named 'rank_kernels.nope'", name="rank_kernels.nope")) is None
    assert reason(ModuleNotFoundError("No module named 'rank.nope'", name="rank.nope")) is None
    assert reason(ValueError("wrong answer")) is None
    assert reason(ImportError("cannot import name 'x'")) is None  # no module name: not a missing package


def test_shared_helpers_import_under_every_import_mode():
    """tests/conftest.py puts tests/ on sys.path: `import _helpers` works here whichever
    --import-mode this run uses (the installed-wheel run uses importlib)."""
    module = importlib.import_module("_helpers")
    assert Path(module.__file__).resolve().parent == Path(__file__).resolve().parent
