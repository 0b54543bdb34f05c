"""A node process imports no head code: the node side's modules load without `moecluster.orchestrator`."""
from __future__ import annotations

import json
import subprocess
import sys

NODE_MODULES = ("moecluster.agents.node.task", "moecluster.agents.node.gang", "moecluster.agents.node.progress",
                "moecluster.agents.node.exporter_actor", "moecluster.agents.node.capability",
                "moecluster.agents.node.binding", "moecluster.agents.node.raycfg")


def test_node_side_modules_load_no_orchestrator_module() -> None:
    code = ("import importlib, json, sys\n"
            f"for m in {list(NODE_MODULES)!r}: importlib.import_module(m)\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith('moecluster'))))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(NODE_MODULES) <= set(loaded)
    assert [m for m in loaded if m.startswith("moecluster.orchestrator")] == []


def test_a_pair_task_reports_its_start_before_it_imports_torch() -> None:
    """Ray imports the body's module before it runs; the start report must not wait for torch."""
    code = "import sys, moecluster.agents.node.task\nprint('torch' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "False"
