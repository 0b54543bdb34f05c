"""One rank of an expert-parallel gang: the body of a Ray actor holding one GPU of the gang.

The head places one actor per rank in the gang's placement group (bundle index = rank). Rank 0
picks the rendezvous — its node's address and a port free there — which also is the gang's start
report to the head (`PairStarted`), and Ray hands it to every rank as an argument of `run`, which
checks that the rank's process computes on the GPU Ray gave it (`binding`), joins the process
group and calls `measure.parallel.gang.run_gang_rank`. Rank 0 returns the gang's results (one record per task,
measured over all ranks); the other ranks return []. The process group is set up and torn
down by `run_gang_rank`; an actor that dies takes its rank with it, and the head then ends the
whole gang (every actor killed, the placement group removed) and retries it as one.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from moecluster.measure.meters.peaks import PeakCache
from moecluster.spec.records import TaskResult, TaskSpec

from moecluster.node.device_lock import run_holding_devices
from moecluster.node.binding import check_task_gpus, prefer_pci_order
from moecluster.node.place import fake_devices, gpu_indices, here
from moecluster.node.progress import PairStarted, pair_observer


@dataclass(frozen=True)
class Rendezvous:
    """Where the gang's ranks meet (rank 0's node address and a port that was free there), and
    rank 0's start report of this attempt."""

    address: str
    port: int
    started: PairStarted | None = None


def backend_for(specs: Sequence[TaskSpec]) -> tuple[str, str]:
    """The process group's backend and the ranks' device: NCCL between CUDA GPUs, gloo on the
    CPU (tests, laptops; said explicitly, so a CPU sweep on a GPU node stays on the CPU)."""
    return ("nccl", "cuda") if specs[0].device == "cuda" else ("gloo", "cpu")


class GangRank:
    """Rank `rank` of a gang of `world_size` (one Ray actor process, one GPU of the gang);
    `local_rank`: its index among the gang's ranks on its node (numbers its fake GPU where Ray
    gave it none, e.g. a gang of CPU slots)."""

    def __init__(self, rank: int, world_size: int, local_rank: int = 0) -> None:
        if not 0 <= rank < world_size or not 0 <= local_rank <= rank:
            raise ValueError(f"rank {rank} (local rank {local_rank}) outside a gang of {world_size}")
        self._rank, self._world_size, self._local_rank = rank, world_size, local_rank

    def rendezvous(self, pair_id: str = "", attempt: int = 1) -> Rendezvous:
        """This node's address and a port free on it, for the gang's process group, with the start
        report of `attempt` (rank 0)."""
        from moecluster.node.address import node_address
        from moecluster.measure.parallel.group import free_port

        prefer_pci_order()
        place = here()
        started = PairStarted(pair_id=pair_id, attempt=attempt, node_id=place.node_id, node=place.node,
                              gpus=place.assigned)
        return Rendezvous(address=node_address(), port=free_port(), started=started)

    def run(self, specs: Sequence[TaskSpec], rendezvous: Rendezvous) -> list[TaskResult]:
        """Join the gang at `rendezvous` and measure `specs` as this rank; rank 0 returns the
        gang's results, the others []. `GpuMismatch` if this rank's process is on another GPU."""
        from moecluster.measure.parallel.gang import run_gang_rank
        from moecluster.measure.parallel.group import GangContext

        prefer_pci_order()
        place = here()
        check_task_gpus(specs[0].device, specs[0].meter, place.assigned, node_id=place.node_id,
                        node_gpus=place.node_gpus, where=f"{place.node} (rank {self._rank})")
        backend, device = backend_for(specs)
        # Ray shows each rank's actor only its own GPU, so every rank computes on the one it sees.
        ctx = GangContext(rank=self._rank, world_size=self._world_size, master_addr=rendezvous.address,
                          master_port=rendezvous.port, backend=backend, device=device, local_rank=self._local_rank)
        devices = fake_devices(specs, place)
        try:
            # Each rank holds its own device against other runs (device_lock.py); busy: the gang fails as one.
            return run_holding_devices(specs, lambda: run_gang_rank(
                specs, ctx, devices=devices, gpu_indices=gpu_indices(devices, place), node=place.node,
                observer=pair_observer(), peaks=PeakCache()), node=place.node, raise_busy=True)
        finally:
            if devices is not None:
                devices.close()
