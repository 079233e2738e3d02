"""One instruction-set probe (rank_kernels/simd.h) for every SIMD kernel family.

Each family (tile_f32.h: MaxSim and dense scoring; ltr_kernels.h: lambdarank; relax_simd.h:
the soft relaxations) is run in a fresh interpreter under every ``RANK_KERNELS_ISA`` cap this
CPU can honour, and its results are compared with a run under ``portable``: equal to the
documented rounding (the vectorised paths sum in other orders, and the AVX2/AVX-512 lambdarank
loops compute exp and log1p by their own polynomials). The probe itself is checked too: a cap
never raises the level above what the CPU has, and every family reports the same level.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Per family: the code computing its outputs (as a dict `res` of arrays), and the rtol/atol
# within which two caps must agree (atol relative to the largest magnitude of each output:
# the VJPs sum terms of both signs, so small entries carry the rounding of large ones).
FAMILIES = {
    "tile": (
        "import rank\n"
        "q = rng.standard_normal((37, 70)).astype(np.float32)\n"
        "docs = [rng.standard_normal((n, 70)).astype(np.float32) for n in (1, 6, 13, 100)]\n"
        "m = rng.standard_normal((300, 70)).astype(np.float32)\n"
        "res['maxsim'] = np.asarray(rank.maxsim_batch(q, docs), dtype=np.float64)\n"
        "res['dot'] = rank.rerank.dot_scores(q, m).astype(np.float64)\n"
        "res['cosine'] = rank.rerank.cosine_scores(q[:3], m).astype(np.float64)\n",
        1e-5, 1e-4,
    ),
    "ltr": (
        "import rank.learn as L\n"
        "sizes = np.array([1, 2, 5, 9, 17, 31, 64, 129, 199])\n"
        "s = rng.standard_normal(sizes.sum()) * 3\n"
        "s[:30] = 40 * rng.standard_normal(30)\n"
        "y = rng.integers(0, 5, sizes.sum())\n"
        "for exact in (False, True):\n"
        "    r = L.lambdarank(s, y, group=sizes, exact_sigmoid=exact)\n"
        "    res[f'grad{exact}'], res[f'hess{exact}'] = r.grad, r.hess\n"
        "    res[f'loss{exact}'] = np.asarray(r.loss, dtype=np.float64)\n",
        1e-11, 1e-13,
    ),
    "relax": (
        "from rank.soft import relaxations as R\n"
        "x = rng.standard_normal((5, 700))\n"
        "x[:, :50] = np.round(x[:, :50])  # ties\n"
        "c = rng.standard_normal((5, 700))\n"
        "for name, (fwd, vjp) in sorted(R.RELAXATIONS.items()):\n"
        "    if name in ('sigmoid', 'neuralsort', 'softrank'):\n"
        "        res[name] = fwd(x, temperature=0.7)\n"
        "        res[name + '_vjp'] = vjp(x, c, temperature=0.7)\n"
        "res['perm'] = R.soft_permutation(x[:2, :300], 0.5)\n",
        1e-12, 1e-12,
    ),
}

PROBE = {
    "tile": "import rank_kernels.maxsim as k; lv = {'portable': 0, 'avx2+fma': 1, 'avx512f': 2}[k.isa()]",
    "ltr": "import rank_kernels.ltr as k; lv = k.simd_level()",
    "relax": "import rank_kernels.relax as k; lv = k.simd_level()",
}


def _run(family, isa, tmp_path):
    """Run FAMILIES[family] in a fresh interpreter under RANK_KERNELS_ISA=isa; (level, results)."""
    out = tmp_path / f"{family}-{isa}.npz"
    code = (
        "import sys, numpy as np\n"
        f"{PROBE[family]}\n"
        "rng = np.random.default_rng(3)\nres = {}\n"
        f"{FAMILIES[family][0]}"
        f"np.savez({str(out)!r}, level=lv, **res)\n"
    )
    env = dict(os.environ, RANK_KERNELS_ISA=isa)
    proc = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    with np.load(out) as z:
        return int(z["level"]), {k: z[k] for k in z.files if k != "level"}


@pytest.fixture(scope="module")
def best_level():
    """The level the CPU has (no cap), as the probe reports it through the ltr kernels."""
    from rank_kernels import ltr

    if os.environ.get("RANK_KERNELS_ISA") not in (None, "", "avx512"):
        pytest.skip("the CPU's own level is only visible without a cap")
    return ltr.simd_level()


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_cap_gives_the_portable_results(family, tmp_path, best_level):
    """Under each cap the CPU can run, results equal the portable path's to the family's
    rounding tolerance, and the level is min(cap, CPU)."""
    rtol, atol = FAMILIES[family][1:]
    level0, ref = _run(family, "portable", tmp_path)
    assert level0 == 0
    for isa, cap in (("avx2", 1), ("avx512", 2)):
        level, res = _run(family, isa, tmp_path)
        assert level == min(cap, best_level)
        assert res.keys() == ref.keys()
        for key in ref:
            scale = max(1.0, float(np.abs(ref[key]).max()))
            np.testing.assert_allclose(res[key], ref[key], rtol=rtol, atol=atol * scale,
                                       err_msg=f"{family}/{isa}/{key}")


def test_one_probe_for_every_family(tmp_path):
    """All families report the same level in one process, under an unknown cap (ignored)."""
    code = (
        "import rank_kernels.ltr as l, rank_kernels.relax as r, rank_kernels.maxsim as m, rank_kernels.dense as d\n"
        "print(l.simd_level(), r.simd_level(), {'portable': 0, 'avx2+fma': 1, 'avx512f': 2}[m.isa()],"
        " {'portable': 0, 'avx2+fma': 1, 'avx512f': 2}[d.isa()])\n"
    )
    levels = {}
    for isa in ("portable", "avx2", "bogus"):
        proc = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, RANK_KERNELS_ISA=isa), cwd=ROOT,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        levels[isa] = [int(v) for v in proc.stdout.split()]
        assert len(set(levels[isa])) == 1, levels
    assert levels["portable"][0] == 0
    assert levels["avx2"][0] == min(1, levels["bogus"][0])
