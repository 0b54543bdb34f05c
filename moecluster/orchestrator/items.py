"""What a task's throughput counts, by workload: an MLP inference routes one row, an LLM's item is a token.

The stores and the exports keep the generic `inferences_*` names for every workload; whatever a
person reads (the terminal, the report's tables and figures) says "tokens" for an LLM. Kept apart
from `aggregate` so the submit views can name units without importing numpy and scipy.
"""
from __future__ import annotations

from collections.abc import Iterable

ITEM_NAMES = {"mlp": ("inference", "inferences", "inf"), "llm": ("token", "tokens", "tok"),
              "serve": ("token", "tokens", "tok")}  # a served task's items are its output tokens


def item_names(workloads: Iterable[str]) -> tuple[str, str, str]:
    """What the `inferences_*` figures of tasks of these workloads count, as (singular, plural, short):
    ("token", "tokens", "tok") for LLM tasks, ("inference", "inferences", "inf") for the MLP's, and
    ("item", "items", "items") for a mix (the reader is told in words which is which)."""
    names = {ITEM_NAMES.get(w, ITEM_NAMES["mlp"]) for w in workloads} or {ITEM_NAMES["mlp"]}
    return names.pop() if len(names) == 1 else ("item", "items", "items")


MIXED_ITEMS = "items: inferences for MLP tasks, tokens for LLM tasks"
