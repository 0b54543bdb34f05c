"""The body of a pair task: the tasks of one pair, alternately, on the one GPU Ray gave it.

A generator (Ray streams each item to the head as it is produced): first a `PairStarted` report
(node, Ray's GPUs, process, the attempt number the head gave), then the check that the process
computes on exactly Ray's GPUs (`binding`: a `GpuMismatch` fails the attempt loudly before
anything is measured), then the list of `TaskResult`s, one per spec. A failing task is data
(`status="failed"`), never raised. The head wraps this with `ray.remote(max_calls=1)` for GPU
tasks, so every pair gets a fresh worker process and the CUDA devices Ray gave it.

The measuring code (torch) is imported after the report, so the head hears of the start as soon
as the process runs.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence

from moecluster.spec.records import TaskResult, TaskSpec

from moecluster.node.device_lock import run_holding_devices
from moecluster.node.binding import check_task_gpus, prefer_pci_order
from moecluster.node.place import fake_devices, gpu_indices, here
from moecluster.node.progress import PairStarted, pair_observer


def pair_body(specs: Sequence[TaskSpec], attempt: int = 1) -> Iterator[PairStarted | list[TaskResult]]:
    """Report the start of `attempt`, check the GPUs, then run `specs` alternately on this task's
    GPU (see `pair.run_pair`) and yield one result per spec."""
    prefer_pci_order()  # before anything starts CUDA in this process
    place = here()
    yield PairStarted(pair_id=specs[0].pair_id, attempt=attempt, node_id=place.node_id, node=place.node,
                      gpus=place.assigned)
    check_task_gpus(specs[0].device, specs[0].meter, place.assigned, node_id=place.node_id,
                    node_gpus=place.node_gpus, where=place.node)
    from moecluster.measure.meters.peaks import PeakCache
    from moecluster.measure.pair import run_pair
    from moecluster.workloads.forms import PROCESS_FORM_CACHE

    PROCESS_FORM_CACHE.for_replicate(specs[0].replicate)  # a CPU worker runs several pairs: no choice carried over
    devices = fake_devices(specs, place)
    try:
        # Device locks: no other run on this node measures on this pair's devices meanwhile (device_lock.py).
        yield run_holding_devices(specs, lambda: run_pair(
            specs, devices=devices, gpu_indices=gpu_indices(devices, place), node=place.node,
            observer=pair_observer(), peaks=PeakCache()), node=place.node)
    finally:
        if devices is not None:
            devices.close()
