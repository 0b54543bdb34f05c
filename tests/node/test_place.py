"""Fake devices for tasks metered `fake` on Ray GPUs: numbered like Ray's GPU ids, named by the node."""
from __future__ import annotations

from dataclasses import replace

from moecluster.node.place import Place, fake_devices, gpu_indices
from moecluster.spec.records import TaskSpec

SPEC = TaskSpec(task_id="t", pair_id="p", kind="moe", impl="sorted", model={}, meter="fake", device="cpu")


def test_fake_devices_cover_rays_gpu_ids_with_the_nodes_accelerator_type() -> None:
    place = Place(node_id="node-1", node="host", gpu_ids=(1, 3), accelerator_type="FAKE-A")
    devices = fake_devices([SPEC], place)
    assert devices is not None
    with devices:
        assert [g.info.index for g in devices.gpus] == [0, 1, 2, 3]
        assert {g.info.name for g in devices.gpus} == {"Fake FAKE-A"}
        other = fake_devices([SPEC], replace(place, node_id="node-2"))
        assert other is not None
        with other:  # GPUs of different nodes differ
            assert devices.gpus[1].info.uuid != other.gpus[1].info.uuid
        assert gpu_indices(devices, place) == [1, 3]


def test_no_fake_devices_without_ray_gpus_or_with_a_real_meter() -> None:
    place = Place(node_id="n", node="n", gpu_ids=(0,), accelerator_type=None)
    assert fake_devices([replace(SPEC, meter="nvml")], place) is None
    assert fake_devices([SPEC], replace(place, gpu_ids=())) is None
    assert gpu_indices(None, place) is None
