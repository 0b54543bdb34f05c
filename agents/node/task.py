"""The body of a pair task: the tasks of one pair, alternately, on the one GPU Ray gave it.

It reports its start to the tracker, finds its place (node label, `ray.get_gpu_ids()`), builds
fake devices where the sweep meters `fake`, and hands the specs to `pair.run_pair`. It returns
plain `TaskResult`s and never raises for a failing task (a failure is data). The head wraps it
with `ray.remote(max_calls=1)` for GPU tasks, so every pair gets a fresh worker process and
the CUDA devices Ray gave it, not those a previous task's process first saw.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from moecluster.agents.meters.peaks import PeakCache
from moecluster.agents.pair import run_pair
from moecluster.agents.records import TaskResult, TaskSpec

from .device_lock import run_holding_devices
from .place import fake_devices, gpu_indices, here
from .progress import pair_observer


def pair_body(specs: Sequence[TaskSpec], tracker: Any) -> list[TaskResult]:
    """Run `specs` alternately on this task's GPU (see `pair.run_pair`); one result per spec.
    `tracker` (the head's `PairTracker` handle, or None) hears of the start and the progress."""
    place = here()
    pair_id = specs[0].pair_id
    if tracker is not None:
        tracker.started.remote(pair_id, 0, place.node, list(place.gpu_ids))
    devices = fake_devices(specs, place)
    try:
        # Device locks: no other run on this node measures on this pair's devices meanwhile (device_lock.py).
        return run_holding_devices(specs, lambda: run_pair(
            specs, devices=devices, gpu_indices=gpu_indices(devices, place), node=place.node,
            observer=pair_observer(tracker, pair_id), peaks=PeakCache()), node=place.node)
    finally:
        if devices is not None:
            devices.close()
