"""Run the test suite against the installed rank-kernels, not the source tree.

    python scripts/test_installed.py SOURCE_DIR [extra pytest arguments]

Copies tests/, bench/, the root conftest.py and the files the tests read (pyproject.toml for
the pytest options, README.md, CHANGELOG.md, .ci/run) from SOURCE_DIR into a temporary
directory, runs pytest there with ``--import-mode=importlib`` (so no source directory is put on
sys.path), then runs the docstring examples of the installed `rank` package
(--doctest-modules over its directory in site-packages), and checks that the `rank` and
`rank_kernels` modules the tests imported came from site-packages. Real test collections beside SOURCE_DIR (../shared/data) stay reachable
through RANK_SHARED_DATA. Used by scripts/check_wheel.sh and by cibuildwheel's test-command.
"""
import os
import shutil
import sys
import sysconfig
import tempfile
from pathlib import Path

COPIED = ["tests", "bench", "conftest.py", "pyproject.toml", "README.md", "CHANGELOG.md", ".ci/run"]


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    src = Path(argv[0]).resolve()
    site = {str(Path(sysconfig.get_paths()[k]).resolve()) for k in ("purelib", "platlib")}
    data = src.parent / "shared" / "data"
    if "RANK_SHARED_DATA" not in os.environ and data.is_dir():
        os.environ["RANK_SHARED_DATA"] = str(data)
    with tempfile.TemporaryDirectory(prefix="rank-installed-tests-") as tmp:
        root = Path(tmp)
        for name in COPIED:
            path = src / name
            if path.is_dir():
                shutil.copytree(path, root / name, ignore=shutil.ignore_patterns("__pycache__"))
            elif path.is_file():
                (root / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, root / name)
        os.chdir(root)
        sys.path[:] = [p for p in sys.path if p not in ("", ".", str(src)) and Path(p or ".").resolve() != src]
        import pytest

        status = pytest.main(["-p", "no:cacheprovider", "--import-mode=importlib", "--rootdir", str(root),
                              *argv[1:]])
        # The docstring examples of the installed package (the source run collects them from
        # rank/ through testpaths; here that directory is site-packages/rank).
        import rank

        # -c: the project's pytest settings (doctest option flags) apply to this directory too.
        examples = pytest.main(["-p", "no:cacheprovider", "--import-mode=importlib", "--rootdir", str(root),
                                "-c", str(root / "pyproject.toml"), "--doctest-modules",
                                str(Path(rank.__file__).resolve().parent)])
        status = examples if status == 0 else status
        for name in ("rank", "rank_kernels.maxsim"):
            module = sys.modules.get(name)
            if module is None or module.__file__ is None:
                print(f"test_installed: the tests never imported {name}", file=sys.stderr)
                return 1
            where = str(Path(module.__file__).resolve())
            if not any(where.startswith(s + os.sep) for s in site):
                print(f"test_installed: {name} was imported from {where}, not from site-packages "
                      f"({', '.join(sorted(site))})", file=sys.stderr)
                return 1
            print(f"test_installed: {name} imported from {where}")
    if status == 5:
        print("test_installed: pytest collected no tests", file=sys.stderr)
        return 1
    return int(status)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
