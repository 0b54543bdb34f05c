"""Scheduling on Ray: the only package that speaks Ray.

- `cluster`: a local instance or an existing cluster (`--address`), token auth, inventory;
- `resources`: what a pair asks for (GPUs or CPUs, gangs, accelerator type), feasibility;
- `scheduler`: the head's loop (submission, retries, watchdog, storing results);
- `remote` / `pair` / `gang`: what runs on the node (A B A B on one GPU, gang ranks);
- `tracker`: the actor running pairs report their start and progress to.
"""
from .cluster import ClusterError, ClusterOptions, Inventory, connect, disconnect, inventory, probe_nodes
from .resources import check_feasible, pair_resources, parallel_slots, uses_gpus
from .scheduler import Events, ScheduleOptions, Scheduler

__all__ = ["ClusterError", "ClusterOptions", "Events", "Inventory", "ScheduleOptions", "Scheduler", "check_feasible", "connect",
           "disconnect", "inventory", "pair_resources", "parallel_slots", "probe_nodes", "uses_gpus"]
