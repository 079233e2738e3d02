"""Start-up cost of `import rank`, against a bare interpreter and against `import numpy`.

Each sample is a fresh interpreter (`python -c ...`) so nothing is cached in the process; the
three commands are interleaved so that load on a shared host hits them alike. Reported, as
medians over the rounds (wall clock and the children's CPU time):

- ``import rank`` minus ``pass``: the whole import cost a user sees (target < 150 ms);
- ``import rank`` minus ``import numpy``: what rank-kernels adds to NumPy, its one core
  dependency.

Heavy optional dependencies (torch, jax, onnxruntime, ...) must not be imported by
`import rank`; tests/test_typing_and_import.py asserts that. Run standalone for a table:
``python bench/bench_import.py [rounds]``. Under --benchmark-disable (CI) one interpreter runs.
"""
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

COMMANDS = {"pass": "pass", "numpy": "import numpy", "rank": "import rank"}
_ENV = {}


def _env():
    """The environment of the children: they import the `rank` this process imports."""
    if not _ENV:
        if __name__ == "__main__":  # run as a script from a source checkout
            sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        import rank

        _ENV.update(os.environ, PYTHONPATH=str(Path(rank.__file__).resolve().parent.parent))
    return _ENV


def _child_cpu():
    """CPU seconds used by finished children so far (NaN where unknown, e.g. on Windows)."""
    try:
        import resource
    except ImportError:
        return float("nan")
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _time(code):
    """(wall seconds, CPU seconds) of one fresh `python -c code`."""
    cpu0, t0 = _child_cpu(), time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, env=_env())
    return time.perf_counter() - t0, _child_cpu() - cpu0


def measure(rounds):
    """Median (and min_) wall/CPU milliseconds of each command and the differences, over `rounds`."""
    samples = {name: [] for name in COMMANDS}
    for _ in range(rounds):
        for name, code in COMMANDS.items():
            samples[name].append(_time(code))
    med = {}
    for stat, reduce in (("", statistics.median), ("min_", min)):
        for name, values in samples.items():
            med[f"{stat}{name}_wall_ms"] = 1e3 * reduce(v[0] for v in values)
            med[f"{stat}{name}_cpu_ms"] = 1e3 * reduce(v[1] for v in values)
        for kind in ("wall", "cpu"):
            med[f"{stat}import_rank_{kind}_ms"] = med[f"{stat}rank_{kind}_ms"] - med[f"{stat}pass_{kind}_ms"]
            med[f"{stat}rank_over_numpy_{kind}_ms"] = med[f"{stat}rank_{kind}_ms"] - med[f"{stat}numpy_{kind}_ms"]
    return med


def test_import_rank(benchmark, smoke):
    """Times fresh `import rank` interpreters; extra_info holds the interleaved medians."""
    rounds = 1 if smoke else 15
    if not smoke:
        for _ in range(2):  # warm the file system cache
            _time("import rank")
        benchmark.extra_info.update(measure(rounds))
        benchmark.extra_info["rounds"] = rounds
    benchmark.pedantic(_time, args=("import rank",), rounds=rounds, iterations=1)


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    _time("import rank")
    med = measure(rounds)
    print(f"over {rounds} rounds (fresh interpreters, interleaved): median (min) milliseconds")
    print(f"{'':28} {'wall':>15} {'cpu':>15}")
    rows = [("python -c pass", "pass"), ("python -c 'import numpy'", "numpy"), ("python -c 'import rank'", "rank"),
            ("import rank - pass", "import_rank"), ("import rank - import numpy", "rank_over_numpy")]
    for label, key in rows:
        wall = f"{med[key + '_wall_ms']:.1f} ({med['min_' + key + '_wall_ms']:.1f})"
        cpu = f"{med[key + '_cpu_ms']:.1f} ({med['min_' + key + '_cpu_ms']:.1f})"
        print(f"{label:28} {wall:>15} {cpu:>15}")


if __name__ == "__main__":
    main()
