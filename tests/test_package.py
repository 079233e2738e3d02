"""Packaging, public names, the error hierarchy, the README tour and the `rank` command."""
import importlib.metadata
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import rank
from rank import errors

ROOT = Path(__file__).resolve().parent.parent


def test_version_single_sourced():
    assert re.fullmatch(r"\d+\.\d+\.\d+(\S*)", rank.__version__)
    try:
        installed = importlib.metadata.version("rank-kernels")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("rank-kernels is not installed, only built in place")
    assert installed == rank.__version__


def test_public_names_reexported():
    import rank.rerank

    for name in rank.rerank.__all__:
        assert getattr(rank, name) is getattr(rank.rerank, name)
        assert callable(getattr(rank, name)) and getattr(rank, name).__doc__


def test_error_hierarchy():
    assert issubclass(errors.ShapeError, (errors.RankError, ValueError))
    assert issubclass(errors.DTypeError, TypeError)
    assert issubclass(errors.NonFiniteError, errors.InvalidValueError)
    assert issubclass(errors.UnknownMethodError, ValueError)
    assert issubclass(errors.CorruptFileError, ValueError)
    assert issubclass(errors.MissingDependencyError, ImportError)
    assert issubclass(errors.ModelNotFoundError, FileNotFoundError)
    assert issubclass(errors.Int8SaturationWarning, UserWarning)
    assert issubclass(errors.TruncationWarning, UserWarning)
    assert issubclass(errors.LanguageWarning, UserWarning)
    assert issubclass(errors.TruncationError, (errors.RankError, ValueError))
    for name in errors.__all__:  # exceptions derive from RankError; warning categories from Warning
        cls = getattr(errors, name)
        assert issubclass(cls, Warning if name.endswith("Warning") else errors.RankError), name


def test_kernels_never_import_rank():
    for src in (ROOT / "rank_kernels").glob("*.pyx"):
        assert not re.search(r"^\s*(from|import)\s+rank\b(?!_)", src.read_text(), re.M), src


def test_readme_tour_runs(tmp_path, monkeypatch):
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert blocks, "the README has no tour"
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {"__name__": "readme"})


def test_readme_commands_match_ci():
    text = (ROOT / "README.md").read_text()
    commands = re.findall(r"```bash\n(.*?)\n```", text, re.S)[:2]
    ci = (ROOT / ".ci" / "run").read_text()
    for command in commands:
        assert command in ci, f"CI does not run the README command {command!r}"


def run_rank(*args, timeout=120):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "rank", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=os.getcwd(), env=env)


def test_demo_command():
    out = run_rank("demo")
    assert out.returncode == 0, out.stderr
    assert "docstrings" in out.stdout and "queries/s" in out.stdout
    ranks = [line.split() for line in out.stdout.splitlines() if re.match(r"\s+\d+\s+[-\d.]+\s+[\w.]+\s", line)]
    assert len(ranks) >= 10
    ids = [r[2] for r in ranks]
    assert "shutil.copytree" in ids and any(i.startswith("gzip.") for i in ids)


def test_bench_maxsim_command():
    out = run_rank("bench-maxsim", "--docs", "50", "--top", "3", "--repeat", "1")
    assert out.returncode == 0, out.stderr
    assert "GFLOP/s" in out.stdout and "docs/s" in out.stdout
    ranks = [line.split() for line in out.stdout.splitlines() if re.match(r"\s+\d+\s+\d+\s+\d+\s+[-\d.]+$", line)]
    assert len(ranks) == 3
    scores = [float(r[3]) for r in ranks]
    assert scores == sorted(scores, reverse=True)


def test_demo_rejects_bad_arguments():
    out = run_rank("demo", "-k", "0", timeout=60)
    assert out.returncode == 2 and "-k" in out.stderr and "Traceback" not in out.stderr
    out = run_rank("bench-maxsim", "--docs", "0", timeout=60)
    assert out.returncode == 2 and "--docs" in out.stderr
    out = run_rank("bench-maxsim", "--min-tokens", "9", "--max-tokens", "8", timeout=60)
    assert out.returncode == 2 and "--max-tokens" in out.stderr


def test_moved_modules_keep_their_old_paths():
    """DenseIndex moved to rank.retrieve, ONNX export/runtime to rank.onnx: old paths still import."""
    import importlib

    import rank.onnx._calibration
    import rank.onnx._export
    import rank.onnx._runtime
    import rank.retrieve.dense

    pairs = {"rank.rerank.dense": rank.retrieve.dense, "rank.rerank._export": rank.onnx._export,
             "rank.rerank._onnx": rank.onnx._runtime, "rank.rerank._calibration": rank.onnx._calibration}
    for old, new in pairs.items():
        assert importlib.import_module(old) is new, old
    from rank.rerank import DenseIndex as old_class
    from rank.retrieve import DenseIndex
    from rank.rerank.dense import DenseIndex as old_path_class

    assert old_class is DenseIndex is old_path_class is rank.DenseIndex
    assert DenseIndex.__module__ == "rank.retrieve.dense"
    code = "import rank.rerank.dense as d, rank.retrieve.dense as r; assert d is r and d.DenseIndex"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0
