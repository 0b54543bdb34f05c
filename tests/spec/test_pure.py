"""The contract package imports nothing heavy: the head plans sweeps with it, and a node's
measurement code is the only place torch, Ray or transformers come in."""
from __future__ import annotations

import pkgutil
import subprocess
import sys

import moecluster.spec

HEAVY = ("torch", "ray", "transformers", "numpy", "pandas", "scipy", "pydantic")


def spec_modules() -> list[str]:
    """Every module of `moecluster.spec`, found by walking the package (a new one is covered)."""
    return sorted(m.name for m in pkgutil.walk_packages(moecluster.spec.__path__, "moecluster.spec."))


def test_every_spec_module_imports_without_heavy_libraries() -> None:
    modules = spec_modules()
    assert {"moecluster.spec.records", "moecluster.spec.mlp.shapes", "moecluster.spec.llm.presets"} <= set(modules)
    probe = ("import importlib, sys\n"
             f"for name in {modules!r}: importlib.import_module(name)\n"
             f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]", done.stdout


def test_spec_imports_nothing_from_the_rest_of_the_package() -> None:
    """Arrows point one way: everything may import the contract, the contract imports none of it."""
    modules = spec_modules()
    probe = ("import importlib, sys\n"
             f"for name in {modules!r}: importlib.import_module(name)\n"
             "print(sorted(m for m in sys.modules\n"
             "             if m.startswith('moecluster.') and not m.startswith('moecluster.spec')))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]", done.stdout
