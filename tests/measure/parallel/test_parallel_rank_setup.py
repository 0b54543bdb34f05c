"""Each rank meters its own GPU: fake devices numbered by local rank, or the indices given."""
from __future__ import annotations

import torch

from moecluster.devices import FakeDevices
from moecluster.measure.parallel.rank_setup import open_rank_devices, rank_gpus
from moecluster.spec.records import TaskSpec

SPEC = TaskSpec(task_id="m", pair_id="p", kind="moe", impl="grouped", model={}, device="cpu", meter="fake")
CPU = torch.device("cpu")


def test_fake_devices_give_each_rank_its_own_gpu() -> None:
    with open_rank_devices(SPEC, CPU, "node-x", index=2) as devices:
        (gpu,) = rank_gpus(devices, CPU, None, index=2)
        assert gpu.info.index == 2
    with FakeDevices(4, node="n") as devices:
        assert [g.info.index for g in rank_gpus(devices, CPU, [3], index=0)] == [3]


def test_on_the_cpu_without_fake_meter_there_is_nothing_to_meter() -> None:
    with open_rank_devices(TaskSpec(task_id="m", pair_id="p", kind="moe", impl="grouped", model={}, device="cpu"),
                           CPU, "node-x", index=0) as devices:
        assert rank_gpus(devices, CPU, None, index=0) == []
        assert devices.unavailable_reason is not None and "cpu" in devices.unavailable_reason
