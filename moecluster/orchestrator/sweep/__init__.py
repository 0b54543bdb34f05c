"""Sweeps: the YAML schema, loading with one-line errors, expansion into matched pairs.

Pure head-side code: no Ray, no torch. `load_sweep(path)` validates a file once;
`expand(sweep)` turns it into `PairPlan`s of `TaskSpec`s.
"""
from .expand import Plan, PairPlan, expand
from .loader import SweepError, load_sweep, parse_sweep
from .schema import AXES, LLM_AXES, ModelEntry, SweepFile

__all__ = ["AXES", "LLM_AXES", "ModelEntry", "PairPlan", "Plan", "SweepError", "SweepFile", "expand", "load_sweep",
           "parse_sweep"]
