"""A node process imports no head code: the node side (`node`, `measure`, `devices` and each workload's
models) loads without `moecluster.head`, `report` or `cli`, and no import statement there names them."""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

NODE_MODULES = ("moecluster.node.task", "moecluster.node.gang", "moecluster.node.progress",
                "moecluster.node.exporter_actor", "moecluster.node.capability",
                "moecluster.node.binding", "moecluster.node.raycfg")
HEAD_ROOMS = ("moecluster.head", "moecluster.report", "moecluster.cli")
PACKAGE = Path(__file__).resolve().parents[2] / "moecluster"
# the head side of each workload folder: its plug-in, which the head asks (tests/test_architecture_workloads.py)
PLUGIN_MODULES = {"registry", "base", "plugin", "expand"}


def node_side_files() -> list[Path]:
    rooms = [PACKAGE / "node", PACKAGE / "measure", PACKAGE / "devices", PACKAGE / "workloads"]
    return sorted(p for room in rooms for p in room.rglob("*.py")
                  if not (room.name == "workloads" and p.stem in PLUGIN_MODULES))


def head_imports(path: Path) -> list[str]:
    """The import statements of `path`, wherever they stand (module level or in a function), that name head code."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        names = ([node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0
                 else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
        found += [f"{path.relative_to(PACKAGE.parent)}:{node.lineno} imports {n}" for n in names
                  if n.startswith(HEAD_ROOMS)]
    return found


def test_no_import_statement_on_the_node_side_names_head_code() -> None:
    files = node_side_files()
    assert len(files) > 60  # the whole node side is read
    assert [hit for path in files for hit in head_imports(path)] == []


def test_node_side_modules_load_no_head_module() -> None:
    code = ("import importlib, json, sys\n"
            f"for m in {list(NODE_MODULES)!r}: importlib.import_module(m)\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith('moecluster'))))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(NODE_MODULES) <= set(loaded)
    assert [m for m in loaded if m.startswith(HEAD_ROOMS)] == []


def test_a_pair_task_reports_its_start_before_it_imports_torch() -> None:
    """Ray imports the body's module before it runs; the start report must not wait for torch."""
    code = "import sys, moecluster.node.task\nprint('torch' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "False"
