"""A task's process computes on exactly Ray's GPUs, or the task fails loudly before measuring."""
from __future__ import annotations

import pytest

from moecluster.node.binding import Binding, FakeCudaContext, GpuMismatch, check, check_task_gpus, \
    fake_binding, problems

A, B = "GPU-aaaaaaaa-0000-0000-0000-000000000000", "GPU-bbbbbbbb-0000-0000-0000-000000000000"


def test_a_process_on_the_assigned_gpu_passes() -> None:
    assert problems(Binding(assigned=("1",), visible_env="1", seen_uuids=(B,), expected_uuids=(B,))) == []
    # a node listing its GPUs by UUID prefix, as CUDA_VISIBLE_DEVICES allows
    assert problems(Binding(assigned=("GPU-bbbb",), visible_env="GPU-bbbb", seen_uuids=(B,),
                            expected_uuids=("GPU-bbbb",))) == []


def test_a_process_bound_to_an_earlier_gpu_fails_naming_node_ids_and_uuids() -> None:
    stale = Binding(assigned=("1",), visible_env="1", seen_uuids=(A,), expected_uuids=(B,))
    with pytest.raises(GpuMismatch) as info:
        check(stale, "node-a")
    message = str(info.value)
    assert message.startswith("node-a: Ray assigned GPU 1, but the process computes on")
    assert A in message and B in message and "not measured" in message


def test_visible_devices_not_set_by_ray_or_extra_devices_fail() -> None:
    unset = Binding(assigned=("0",), visible_env=None, seen_uuids=(A, B), expected_uuids=(A,))
    assert problems(unset) == ["CUDA_VISIBLE_DEVICES is unset", f"the process computes on {A}, {B} instead of {A}"]
    unknown = Binding(assigned=("0",), visible_env="0", seen_uuids=(A, B), expected_uuids=None)
    assert problems(unknown) == [f"the process sees 2 GPU(s): {A}, {B}"]


def test_a_fake_process_binds_at_first_use_like_cuda_and_keeps_its_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    context = FakeCudaContext()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    assert problems(fake_binding(["0"], "node-x", 2, context)) == []  # first task: GPU 0, bound to it
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")  # Ray gives the same process GPU 1 next
    second = fake_binding(["1"], "node-x", 2, context)
    assert second.seen_uuids != second.expected_uuids
    assert problems(second) and "instead of" in problems(second)[0]


def test_a_fake_process_bound_before_ray_assigned_a_gpu_sees_every_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    context = FakeCudaContext()
    context.bind(None)  # CUDA started at import, before Ray set CUDA_VISIBLE_DEVICES
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    binding = fake_binding(["0"], "node-x", 2, context)
    assert len(binding.seen_uuids) == 2 and problems(binding)


def test_nothing_is_checked_without_ray_gpus_or_on_the_cpu_with_a_real_meter() -> None:
    check_task_gpus("cpu", "fake", [], node_id="n", node_gpus=2, where="n")
    check_task_gpus("cpu", "nvml", ["0"], node_id="n", node_gpus=2, where="n")
