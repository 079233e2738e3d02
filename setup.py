"""Cython extensions of rank-kernels and their compiler flags (metadata lives in pyproject.toml)."""
import glob
import os
import sys
import tempfile

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

# One extension per kernel family: every rank_kernels/NAME.pyx becomes rank_kernels.NAME.
KERNELS = sorted(os.path.splitext(os.path.basename(p))[0] for p in glob.glob("rank_kernels/*.pyx"))
# The shared C headers (simd.h: the instruction-set probe, mem.h: allocation failure, sort.h:
# the stable sort, and the kernel families' own): editing one rebuilds the modules.
HEADERS = sorted(glob.glob("rank_kernels/*.h"))


def _compiler_accepts(compiler, flags):
    """True if `compiler` compiles and links a tiny OpenMP program with `flags`."""
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "probe.c")
        with open(src, "w") as f:
            f.write("#include <omp.h>\nint main(void){return omp_get_max_threads() > 0 ? 0 : 1;}\n")
        try:
            objs = compiler.compile([src], output_dir=tmp, extra_postargs=flags)
            compiler.link_executable(objs, os.path.join(tmp, "probe"), extra_postargs=flags)
        except Exception:
            return False
    return True


class BuildExt(build_ext):
    """Adds optimisation flags, and OpenMP only where the compiler supports it."""

    def build_extensions(self):
        ctype = self.compiler.compiler_type
        if ctype == "msvc":
            opt, omp = ["/O2"], ["/openmp"]
        else:
            opt, omp = ["-O3", "-g0", "-fno-math-errno"], ["-fopenmp"]
            if sys.platform == "darwin":
                omp = ["-Xpreprocessor", "-fopenmp", "-lomp"]
        use_omp = os.environ.get("RANK_KERNELS_NO_OPENMP", "") == "" and _compiler_accepts(self.compiler, omp)
        if not use_omp:
            print("rank-kernels: OpenMP unavailable, building serial kernels")
        for ext in self.extensions:
            ext.extra_compile_args = opt + (omp if use_omp else [])
            ext.extra_link_args = (omp if use_omp else [])
        super().build_extensions()


extensions = [
    Extension(
        f"rank_kernels.{name}",
        [f"rank_kernels/{name}.pyx"],
        include_dirs=[np.get_include(), "rank_kernels"],
        depends=HEADERS,
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    )
    for name in KERNELS
]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives={
            "language_level": 3,
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
            "nonecheck": False,
        },
    ),
    cmdclass={"build_ext": BuildExt},
)
