"""Head code never branches on a workload's name: it asks the workload's plug-in (`moecluster.workloads`),
and the plug-ins' imports point one way.

Every comparison in the head (`moecluster/head`, `moecluster/report`, `moecluster/cli`) is read with `ast`; one
that sets a workload's name written as a string ("mlp", "llm", "serve", or any registered name) against a
`.workload` attribute or a `workload` variable fails, naming the file and line. A property that differs
between workloads belongs on `WorkloadPlugin` instead. The package's static import graph (every `import`,
at module level or inside a function) has no cycle through a plug-in or the registry.
"""
from __future__ import annotations

import ast
from pathlib import Path

from moecluster.workloads.registry import WORKLOADS

ROOT = Path(__file__).resolve().parents[1]
HEAD = (ROOT / "moecluster" / "head", ROOT / "moecluster" / "report", ROOT / "moecluster" / "cli")
PACKAGE = ROOT / "moecluster"
NAMES = frozenset({"mlp", "llm", "serve", *WORKLOADS})


def _is_workload(node: ast.expr) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "workload") or \
        (isinstance(node, ast.Name) and node.id == "workload")


def _names_a_workload(node: ast.expr) -> bool:
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str) and node.value in NAMES
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return any(_names_a_workload(e) for e in node.elts)
    return False


def name_branches(source: str, filename: str) -> list[str]:
    """`file:line: code` of every comparison of a workload name literal with a workload value."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            if any(_is_workload(o) for o in operands) and any(_names_a_workload(o) for o in operands):
                found.append(f"{filename}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_the_checker_finds_each_form_of_name_branch() -> None:
    source = ("if spec.workload == 'llm': pass\n"
              "x = p.moe.spec.workload != \"mlp\"\n"
              "y = s.workload not in ('llm', 'serve')\n"
              "z = 'serve' == workload\n"
              "ok = plugin.name == spec.workload or spec.kind == 'moe' or spec.workload in WORKLOADS\n")
    assert [f.split(":")[1] for f in name_branches(source, "f.py")] == ["1", "2", "3", "4"]


def test_head_code_has_no_branch_on_a_workload_name() -> None:
    files = sorted(p for root in HEAD for p in root.rglob("*.py"))
    assert len(files) > 50  # the whole head is read, not an empty folder
    found = [hit for path in files for hit in name_branches(path.read_text(), str(path.relative_to(ROOT)))]
    assert found == [], "ask the workload's plug-in (moecluster.workloads) instead:\n" + "\n".join(found)


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module → the package's modules it imports (static: every import statement, wherever it stands)."""
    paths = {_module(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in paths}
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in paths else base for a in node.names]
            for target in targets:
                while target and target not in paths:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def reaches(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = list(graph[start])
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo += graph[m]
    return seen


def test_no_import_cycle_runs_through_a_plugin_or_the_registry() -> None:
    graph = import_graph()
    # the head side of each workload folder (its node side, models and forms, is checked by tests/node/)
    plugins = [m for m in graph if m.startswith("moecluster.workloads")
               and m.rpartition(".")[2] in {"registry", "base", "plugin", "expand"}]
    assert "moecluster.workloads.registry" in plugins and len(plugins) >= 8
    cycles = [m for m in plugins if m in reaches(graph, m)]
    assert cycles == [], f"these import themselves back through the head: {cycles}"
