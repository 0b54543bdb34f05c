"""Loads the shared synthetic-results builders (tests/orchestrator/aggregate/synthetic.py) as
`moecluster_synthetic`, so the aggregate, estimate and report tests can import them (one
conftest for all of tests/orchestrator/: pytest loads it before any of them)."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

if "moecluster_synthetic" not in sys.modules:
    _path = Path(__file__).resolve().parent / "aggregate" / "synthetic.py"
    _spec = importlib.util.spec_from_file_location("moecluster_synthetic", _path)
    assert _spec is not None and _spec.loader is not None
    _module = importlib.util.module_from_spec(_spec)
    sys.modules["moecluster_synthetic"] = _module
    _spec.loader.exec_module(_module)
