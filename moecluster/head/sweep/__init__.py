"""Sweeps: the YAML schema, loading with one-line errors, expansion into matched pairs.

Pure head-side code: no Ray, no torch. `load_sweep(path)` validates a file once;
`expand(sweep)` turns it into `PairPlan`s of `TaskSpec`s.

The names below are loaded when first used (PEP 562), not when the package is: the workload plug-ins
(`moecluster.workloads`) import this package's leaf modules (schema, pairs, error), and the loader and
`expand` import the plug-ins' registry, so importing the package must not load those two.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from moecluster.head.sweep.error import SweepError
    from moecluster.head.sweep.expansion import expand
    from moecluster.head.sweep.loader import load_sweep, parse_sweep
    from moecluster.head.sweep.pairs import PairPlan, Plan
    from moecluster.head.sweep.schema import AXES, LLM_AXES, ModelEntry, SweepFile

_HOME = {"AXES": "schema", "LLM_AXES": "schema", "ModelEntry": "schema", "SweepFile": "schema",
         "PairPlan": "pairs", "Plan": "pairs", "SweepError": "error", "expand": "expansion", "load_sweep": "loader",
         "parse_sweep": "loader"}

__all__ = ["AXES", "LLM_AXES", "ModelEntry", "PairPlan", "Plan", "SweepError", "SweepFile", "expand", "load_sweep",
           "parse_sweep"]


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_HOME[name]}", __name__), name)
