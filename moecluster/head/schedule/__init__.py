"""Scheduling on Ray: the only head package that speaks Ray (the node side's is `moecluster.node`).

- `cluster`: a local instance or an existing cluster (`--address`), token auth, inventory;
- `raysettings`: the Ray settings that notice a lost node in seconds (set on local instances,
  asked of and checked on joined clusters);
- `resources`: what a pair asks for (GPUs or CPUs, gangs, accelerator type), feasibility;
- `queue`: the pairs waiting to start, a lost one first, and which may start now;
- `scheduler`: the head's loop (submission, retries at the front, watchdog, storing results);
- `remote`: the node side's bodies (`moecluster.node`) wrapped as Ray tasks and actors;
- `gang`: one attempt of an expert-parallel pair, a gang of actors in one placement group that
  fails (and is retried) as one.
"""
from moecluster.head.schedule.cluster import (
    ClusterError, ClusterOptions, Inventory, connect, disconnect, inventory, probe_nodes
)
from moecluster.head.schedule.resources import check_feasible, pair_resources, parallel_slots, uses_gpus
from moecluster.head.schedule.scheduler import Events, ScheduleOptions, Scheduler

__all__ = ["ClusterError", "ClusterOptions", "Events", "Inventory", "ScheduleOptions", "Scheduler", "check_feasible",
           "connect", "disconnect", "inventory", "pair_resources", "parallel_slots", "probe_nodes", "uses_gpus"]
