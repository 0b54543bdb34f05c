"""Expand a sweep into matched pairs: its workload's plug-in builds them (`moecluster.workloads`), the head
checks every task's memory and plans the replicates (`pairs.with_replicates`).

The plan's types and replicate helpers live in `pairs` (the plug-ins build them) and are re-exported here.
"""
from __future__ import annotations

from moecluster.workloads.registry import workload

from moecluster.head.sweep.memory import check_task_memory
from moecluster.head.sweep.pairs import DTYPE_SHORT, PairPlan, Plan, queue_order, replicate_id, with_replicates
from moecluster.head.sweep.schema import SweepFile

__all__ = ["DTYPE_SHORT", "PairPlan", "Plan", "expand", "queue_order", "replicate_id", "with_replicates"]


def expand(sweep: SweepFile, run_id: str = "local") -> Plan:
    """Every pair of the sweep, in file order (as its workload's plug-in orders them), each task's memory
    checked (`memory.check_task_memory`), replicate by replicate (`with_replicates`)."""
    plan = workload(sweep.workload).expand(sweep, run_id)
    for pair in plan.pairs:
        for task, total in zip(pair.tasks, pair.params_total):
            check_task_memory(task, total)
    return with_replicates(plan, sweep.replicates)
