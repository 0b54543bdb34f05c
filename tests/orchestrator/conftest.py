"""Loads the shared synthetic-results builders (tests/orchestrator/aggregate/synthetic.py) as
`moecluster_synthetic`, so the aggregate, estimate and report tests can import them, and the
fake-GPU Ray cluster (tests/orchestrator/schedule/fakecluster.py) as `moecluster_fakecluster`
(one conftest for all of tests/orchestrator/: pytest loads it before any of them)."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path



def _load(name: str, relative: str) -> None:
    if name in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parent / relative)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)


_load("moecluster_synthetic", "aggregate/synthetic.py")
_load("moecluster_fakecluster", "schedule/fakecluster.py")
