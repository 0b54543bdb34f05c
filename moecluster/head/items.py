"""What a task's throughput counts, by workload (its plug-in's `counts`): an MLP inference routes one row, an
LLM's item is a token, a served model's an output token.

The stores and the exports keep the generic `inferences_*` names for every workload; whatever a
person reads (the terminal, the report's tables and figures) says "tokens" for an LLM. Kept apart
from `aggregate` so the submit views can name units without importing numpy and scipy.
"""
from __future__ import annotations

from collections.abc import Iterable

from moecluster.workloads.registry import workload


def item_names(workloads: Iterable[str]) -> tuple[str, str, str]:
    """What the `inferences_*` figures of tasks of these workloads count, as (singular, plural, short):
    ("token", "tokens", "tok") for LLM tasks, ("inference", "inferences", "inf") for the MLP's, and
    ("item", "items", "items") for a mix (the reader is told in words which is which)."""
    names = {workload(w).counts for w in workloads} or {workload("").counts}
    return names.pop() if len(names) == 1 else ("item", "items", "items")


MIXED_ITEMS = "items: inferences for MLP tasks, tokens for LLM tasks"
