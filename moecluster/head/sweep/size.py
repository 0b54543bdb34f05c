"""Count a sweep's tasks from its axes alone, and refuse a plan too big (or too long) to be meant.

A grid of 1.8 M tasks used to expand silently for minutes (and gigabytes) before anything was
printed. The count is a product of list lengths, known before a single task is built, so a
plan over the cap is one line naming the product, and `--max-tasks` raises the cap when meant.
Likewise a plan estimated at years of GPU time (`repeats: 100000000`, `train_epochs: 1e14`)
started anyway: its estimate, on one slot, is refused above `--max-hours`.
"""
from __future__ import annotations

import math

from moecluster.workloads.registry import workload

from moecluster.head.sweep.error import SweepError
from moecluster.head.sweep.pairs import Plan
from moecluster.head.sweep.schema import SweepFile


def task_count(sweep: SweepFile) -> tuple[int, str]:
    """The number of tasks `expand` builds at most, and the product that gives it.

    Grid points skipped as impossible are not subtracted: this is the upper bound, computed
    without expanding anything. The text reads e.g. `2 models × 3 impl × 4 batch_size × 2 tasks per pair ×
    3 replicates`.
    """
    count, text = workload(sweep.workload).task_count(sweep)
    if sweep.replicates > 1:
        return count * sweep.replicates, f"({text}) × {sweep.replicates} replicates" if "+" in text \
            else f"{text} × {sweep.replicates} replicates"
    return count, text


def check_task_count(sweep: SweepFile, max_tasks: int) -> int:
    """The sweep's task count; SweepError naming the product when it is above `max_tasks`."""
    count, product = task_count(sweep)
    if count > max_tasks:
        raise SweepError(f"sweep {sweep.name!r} plans {count:,} tasks ({product}), more than --max-tasks"
                         f" {max_tasks:,}: shorten a grid axis, or raise --max-tasks if it is meant")
    return count


def check_plan_hours(plan: Plan, sweep: SweepFile, max_hours: float) -> float:
    """The plan's estimated hours on one slot; SweepError naming them when above `max_hours`."""
    hours = plan.slot_s / 3600
    if not hours <= max_hours:  # an overflowing estimate is inf, refused as well
        shown = f"{hours:,.0f}" if math.isfinite(hours) else "an unbounded number of"
        years = f" ({hours / 8766:,.1f} years)" if math.isfinite(hours) and hours > 8766 else ""
        slot = "one GPU" if sweep.device == "cuda" else f"one {sweep.device} task"
        raise SweepError(f"sweep {sweep.name!r} is estimated at {shown} hours{years} on {slot}, more than --max-hours"
                         f" {max_hours:g} (repeats {sweep.repeats:,} × (build + warmup_s {sweep.warmup_s:g} +"
                         f" duration_s {sweep.duration_s:g}) per task, {len(plan.tasks):,} tasks): shorten the"
                         " sweep, or raise --max-hours if it is meant")
    return hours
