"""What a pair asks Ray for, and whether the cluster can ever give it.

A pair runs on GPUs when its device is `cuda`, or when its meter is `fake` and the cluster
advertises GPUs (a test cluster of fake GPUs: the model runs on the CPU, the energy comes
from fake GPUs numbered as Ray assigns them). Otherwise it is a CPU task. A pair of `n`
GPUs (expert parallelism) is a gang: a placement group of `n` one-GPU bundles, one rank
each, `STRICT_PACK` (one node) unless the sweep says otherwise. A GPU is held exclusively:
Ray never gives one GPU to two tasks that each ask for a whole one, so energy read on it is
the task's own.
"""
from __future__ import annotations

from dataclasses import dataclass

from moecluster.head.sweep import PairPlan

from moecluster.head.schedule.cluster import ACCELERATOR_PREFIX, ClusterError, Inventory, NodeInfo

# A sliver of the node's `accelerator_type:<model>` resource (each node has 1.0) pins a task
# to that GPU model without limiting how many tasks a node runs.
ACCELERATOR_SHARE = 0.001


@dataclass(frozen=True)
class PairResources:
    """Per rank: `gpus` (1 or 0) and `cpus`; `ranks` bundles in a group when more than one."""

    ranks: int
    gpus: int
    cpus: float
    accelerator_type: str | None
    strategy: str

    def bundle(self) -> dict[str, float]:
        b: dict[str, float] = {"CPU": self.cpus} if self.cpus else {}
        if self.gpus:
            b["GPU"] = float(self.gpus)
        if self.accelerator_type:
            b[ACCELERATOR_PREFIX + self.accelerator_type] = ACCELERATOR_SHARE
        return b


def uses_gpus(pair: PairPlan, cluster_gpus: float) -> bool:
    spec = pair.moe
    return spec.device == "cuda" or (spec.meter == "fake" and cluster_gpus > 0)


def pair_resources(pair: PairPlan, cluster_gpus: float, cpus_per_task: float) -> PairResources:
    gpu = uses_gpus(pair, cluster_gpus)
    return PairResources(ranks=pair.gpus, gpus=1 if gpu else 0, cpus=cpus_per_task,
                         accelerator_type=pair.accelerator_type, strategy=pair.placement_strategy)


def capacity(res: PairResources, inv: Inventory) -> int:
    """How many pairs asking `res` the alive nodes can run at once (ignoring other load)."""
    def slots(node: NodeInfo) -> int:
        if res.accelerator_type and node.accelerator_type != res.accelerator_type:
            return 0
        by_gpu = int(node.gpus // res.gpus) if res.gpus else res.ranks
        by_cpu = int(node.cpus // res.cpus) if res.cpus else res.ranks
        return min(by_gpu, by_cpu)

    per_node = [slots(n) for n in inv.nodes]
    if res.ranks == 1 or res.strategy == "STRICT_PACK":
        return sum(s // res.ranks for s in per_node)
    if res.strategy == "STRICT_SPREAD":
        return sum(1 for s in per_node if s >= 1) // res.ranks
    return sum(per_node) // res.ranks


def fits(res: PairResources, inv: Inventory) -> bool:
    """Whether some placement of the pair's ranks on the alive nodes exists (ignoring load)."""
    return capacity(res, inv) >= 1


def check_feasible(pairs: list[PairPlan], inv: Inventory, cpus_per_task: float) -> None:
    """ClusterError naming the first pair no node (or node set) of the cluster could ever run."""
    for pair in pairs:
        res = pair_resources(pair, inv.total_gpus, cpus_per_task)
        if pair.moe.device == "cuda" and inv.total_gpus == 0:
            raise ClusterError("the sweep runs on device cuda, but the Ray cluster has no GPU"
                             " (set `device: cpu` in the sweep, or join a GPU cluster with --address)")
        if res.accelerator_type and res.accelerator_type not in inv.accelerator_types:
            known = ", ".join(inv.accelerator_types) or "none advertised"
            raise ClusterError(f"pair {pair.pair_id}: no node has accelerator_type {res.accelerator_type!r}"
                             f" (cluster: {known})")
        if res.ranks > 1 and not res.bundle():
            raise ClusterError(f"pair {pair.pair_id} is a gang of {res.ranks} ranks with neither GPUs nor CPUs to"
                               " hold each rank in its placement group: give --cpus-per-task above 0")
        if not fits(res, inv):
            what = f"{res.ranks} x ({res.gpus} GPU, {res.cpus:g} CPU)"
            raise ClusterError(f"pair {pair.pair_id} needs {what} placed {res.strategy}; no node of the"
                             f" cluster ({len(inv.nodes)} nodes, {inv.total_gpus:g} GPUs) can hold it")


def parallel_slots(inv: Inventory, gpu_mode: bool, cpus_per_task: float) -> int:
    """How many one-GPU (or one-CPU-task) pairs the cluster runs at once."""
    total = 0
    for n in inv.nodes:
        by_cpu = int(n.cpus // cpus_per_task) if cpus_per_task else 1 << 30
        total += min(int(n.gpus), by_cpu) if gpu_mode else (by_cpu if cpus_per_task else 0)
    return max(total, 1)
