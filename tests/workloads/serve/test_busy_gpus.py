"""A server is not started on GPUs another process computes on (NVML's process list; here a stand-in GPU
that reports one, the NVML fake the tests allow)."""
from __future__ import annotations

import pytest

from moecluster.devices import FakeGpu
from moecluster.measure.serve import busy_gpus, gpus_placeholder


class BusyGpu(FakeGpu):
    """A fake GPU on which NVML would list the given compute processes."""

    def __init__(self, index: int, pids: tuple[int, ...]) -> None:
        super().__init__(index)
        self.pids = pids

    def process_ids(self) -> tuple[int, ...] | None:
        return self.pids


def test_another_process_on_the_tasks_gpu_is_named_and_our_own_is_not() -> None:
    assert busy_gpus([BusyGpu(0, (41,)), BusyGpu(1, (7, 99))], own={41}) == "GPU 1 is in use by process(es) [7, 99]"
    assert busy_gpus([BusyGpu(0, (41,))], own={41}) is None
    assert busy_gpus([FakeGpu(0)], own=set()) is None  # a device that cannot tell does not block


def test_the_gpus_placeholder_is_rays_visible_devices_else_the_indices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-abc,GPU-def")
    assert gpus_placeholder([FakeGpu(0)]) == "GPU-abc,GPU-def"
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert gpus_placeholder([FakeGpu(2), FakeGpu(3)]) == "2,3"
