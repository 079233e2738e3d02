"""Typed public API (annotations, py.typed, kernel stubs) and a light `import rank`."""
import ast
import importlib
import inspect
import json
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import rank
import rank_kernels

#: Modules that `import rank` (and importing any public subpackage) must not load: optional
#: dependencies and other heavy libraries are imported on first use only.
HEAVY = [
    "onnxruntime", "onnx", "tokenizers", "torch", "jax", "jaxlib", "lightgbm", "xgboost",
    "scipy", "sklearn", "pandas", "transformers", "huggingface_hub", "sentence_transformers",
    "numba", "Stemmer", "tqdm", "rich", "matplotlib", "bm25s", "rank_bm25", "ranx",
    "pytrec_eval", "threadpoolctl", "pytest",
]

_PACKAGE_PARENT = str(Path(rank.__file__).resolve().parent.parent)


def _public_submodules():
    """rank.X for every public module or subpackage directly under rank/."""
    return sorted(f"rank.{m.name}" for m in pkgutil.iter_modules(rank.__path__) if not m.name.startswith("_"))


def _loaded_after(statement):
    """Heavy modules present in sys.modules after `statement` runs in a fresh interpreter."""
    code = f"import json, sys\n{statement}\nprint(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    env = dict(os.environ, PYTHONPATH=_PACKAGE_PARENT)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_rank_loads_no_heavy_module():
    assert _loaded_after("import rank") == []


def test_the_check_sees_heavy_modules():
    # The probe itself works: a module from the list is reported once it is imported.
    pytest.importorskip("scipy")
    assert _loaded_after("import rank, scipy") == ["scipy"]


@pytest.mark.parametrize("module", _public_submodules())
def test_public_subpackage_loads_no_heavy_module(module):
    # Adapter modules named after their dependency (rank.soft.torch, ...) live one level
    # deeper and are not imported here.
    assert _loaded_after(f"import {module}") == []


def test_py_typed_markers_ship():
    for package in (rank, rank_kernels):
        assert (Path(package.__file__).parent / "py.typed").is_file(), package.__name__


def _compiled_kernels():
    root = Path(rank_kernels.__file__).parent
    names = {p.name.split(".")[0] for p in root.iterdir()
             if p.suffix in (".so", ".pyd") and not p.name.startswith("_")}
    assert names, f"no compiled kernels found in {root}"
    return sorted(names)


@pytest.mark.parametrize("name", _compiled_kernels())
def test_kernel_stub_matches_module(name):
    stub = Path(rank_kernels.__file__).parent / f"{name}.pyi"
    assert stub.is_file(), f"rank_kernels/{name} has no .pyi stub"
    tree = ast.parse(stub.read_text())
    declared = {node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
    declared |= {t.id for node in tree.body if isinstance(node, ast.Assign) and isinstance(node.value, ast.Name)
                 and node.value.id in declared for t in node.targets if isinstance(t, ast.Name)}  # aliases
    module = importlib.import_module(f"rank_kernels.{name}")
    compiled = {n for n, obj in vars(module).items()
                if not n.startswith("_") and callable(obj) and getattr(obj, "__module__", None) == module.__name__}
    assert compiled <= declared, f"{stub.name} lacks {sorted(compiled - declared)}"
    assert declared <= set(vars(module)), f"{stub.name} declares names the module lacks: {sorted(declared - set(vars(module)))}"
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef):
            args = node.args.posonlyargs + node.args.args + node.args.kwonlyargs
            missing = [a.arg for a in args if a.annotation is None and a.arg not in ("self", "cls")]
            assert not missing and node.returns is not None, f"{stub.name}: {node.name} is not fully annotated"


def _public_objects():
    """(qualified name, object) of every public name exported through an `__all__` of rank."""
    seen = {}
    for modname in ["rank", *_public_submodules()]:
        try:
            module = importlib.import_module(modname)
        except ImportError as e:  # an adapter whose optional dependency is missing
            pytest.skip(f"{modname}: {e}")
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name)
            if inspect.isfunction(obj) or inspect.isclass(obj):
                seen.setdefault(f"{obj.__module__}.{obj.__qualname__}", obj)
    return sorted(seen.items())


def _unannotated(func):
    sig = inspect.signature(func)
    missing = [p.name for p in sig.parameters.values()
               if p.annotation is inspect.Parameter.empty and p.name not in ("self", "cls")]
    if sig.return_annotation is inspect.Signature.empty:
        missing.append("return")
    return missing


def test_public_api_is_annotated():
    problems = []
    objects = _public_objects()
    assert any(name.endswith(".maxsim_batch") for name, _ in objects)
    for qualname, obj in objects:
        if inspect.isfunction(obj):
            if _unannotated(obj):
                problems.append(f"{qualname}: {_unannotated(obj)}")
            continue
        if issubclass(obj, BaseException):
            continue
        for attr, member in vars(obj).items():
            if attr.startswith("_") and attr != "__init__":
                continue
            func = member.fget if isinstance(member, property) else getattr(member, "__func__", member)
            if inspect.isfunction(func) and _unannotated(func):
                problems.append(f"{qualname}.{attr}: {_unannotated(func)}")
    assert not problems, "unannotated public API:\n" + "\n".join(problems)


def test_annotation_check_detects_a_gap():
    def typed(x: int, *, y: str = "") -> int:
        return x

    def untyped(x, y: int = 0):
        return x

    assert _unannotated(typed) == []
    assert _unannotated(untyped) == ["x", "return"]
