"""The collector's metrics over fake devices: names, labels, values, faults, task series."""
from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from moecluster.devices import FakeDevices, FakeGpu, GpuInfo, NoDevices, Unsupported
from moecluster.node.agent.collector import GpuCollector
from moecluster.node.agent.sampler import PowerSampler
from moecluster.node.agent.task_labels import FileTaskObserver
from moecluster.spec.records import TaskResult, TaskSpec

GPU_METRICS = {
    "moecluster_gpu_power_watts", "moecluster_gpu_energy_joules_total", "moecluster_gpu_power_avg_watts",
    "moecluster_gpu_power_max_watts", "moecluster_gpu_utilization_ratio", "moecluster_gpu_sm_clock_hertz",
    "moecluster_gpu_temperature_celsius", "moecluster_gpu_memory_used_bytes", "moecluster_gpu_power_limit_watts",
    "moecluster_gpu_up",
}


def scrape(collector: GpuCollector) -> dict[str, list[tuple[dict[str, str], float]]]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def by_gpu(samples: dict, name: str) -> dict[str, float]:
    return {labels["gpu"]: value for labels, value in samples.get(name, [])}


def test_every_gpu_metric_with_its_labels_and_the_model_values(clock) -> None:
    devices = FakeDevices(2, node="n1", idle_w=100.0, busy_w=300.0, clock=clock)
    devices.gpus[1].set_load(0.5)
    sampler = PowerSampler(devices.gpus, 0.1, clock=clock)
    sampler.sample_once()
    clock.advance(10.0)
    sampler.sample_once()
    got = scrape(GpuCollector(devices, node="n1", sampler=sampler, state_dir=None))
    assert GPU_METRICS <= set(got)
    for labels, _ in got["moecluster_gpu_power_watts"]:
        assert set(labels) == {"node", "gpu", "uuid", "name"} and labels["node"] == "n1"
    assert by_gpu(got, "moecluster_gpu_power_watts") == {"0": 100.0, "1": 200.0}
    assert by_gpu(got, "moecluster_gpu_energy_joules_total") == pytest.approx({"0": 1000.0, "1": 2000.0})
    assert by_gpu(got, "moecluster_gpu_power_avg_watts") == pytest.approx({"0": 100.0, "1": 200.0})
    assert by_gpu(got, "moecluster_gpu_up") == {"0": 1.0, "1": 1.0}
    assert by_gpu(got, "moecluster_gpu_utilization_ratio") == {"0": 0.0, "1": 0.5}
    assert got["moecluster_agent_gpus"][0][1] == 2.0
    assert got["moecluster_agent_devices_up"][0][1] == 1.0


def test_faulty_gpu_is_down_and_the_others_go_on(clock, tmp_path: Path) -> None:
    faults = tmp_path / "faults"
    devices = FakeDevices(3, clock=clock, fault_file=faults)
    collector = GpuCollector(devices, node="n1", sampler=None, state_dir=None)
    faults.write_text("1\n")
    got = scrape(collector)
    assert by_gpu(got, "moecluster_gpu_up") == {"0": 1.0, "1": 0.0, "2": 1.0}
    assert set(by_gpu(got, "moecluster_gpu_energy_joules_total")) == {"0", "2"}
    faults.write_text("")
    assert by_gpu(scrape(collector), "moecluster_gpu_up") == {"0": 1.0, "1": 1.0, "2": 1.0}


class ResettingGpu(FakeGpu):
    """A GPU whose energy counter starts again from 0 once (a driver reload)."""

    def __init__(self, *a: object, **kw: object) -> None:
        super().__init__(*a, **kw)  # type: ignore[arg-type]
        self.base_j = 0.0

    def energy_j(self) -> float:
        return super().energy_j() - self.base_j


class NoCounterGpu(FakeGpu):
    def energy_j(self) -> float:
        raise Unsupported("no energy counter on this GPU")


class OneGpu(FakeDevices):
    def __init__(self, gpu: FakeGpu) -> None:
        self._gpus = [gpu]


def test_energy_counter_stays_monotonic_across_a_reset(clock) -> None:
    gpu = ResettingGpu(0, idle_w=100.0, clock=clock)
    collector = GpuCollector(OneGpu(gpu), node="n", sampler=None, state_dir=None)
    clock.advance(10)
    assert by_gpu(scrape(collector), "moecluster_gpu_energy_joules_total")["0"] == pytest.approx(1000.0)
    gpu.base_j = gpu.energy_j() + gpu.base_j  # the counter restarts at 0
    clock.advance(5)
    assert by_gpu(scrape(collector), "moecluster_gpu_energy_joules_total")["0"] == pytest.approx(1500.0)


def test_gpu_without_energy_counter_exports_the_sampled_integral(clock) -> None:
    gpu = NoCounterGpu(0, idle_w=80.0, clock=clock)
    sampler = PowerSampler([gpu], 0.1, clock=clock)
    sampler.sample_once()
    clock.advance(2.0)
    sampler.sample_once()
    got = scrape(GpuCollector(OneGpu(gpu), node="n", sampler=sampler, state_dir=None))
    assert by_gpu(got, "moecluster_gpu_energy_joules_total")["0"] == pytest.approx(160.0)
    assert by_gpu(got, "moecluster_gpu_up")["0"] == 1.0


def test_no_devices_serves_agent_health_only() -> None:
    got = scrape(GpuCollector(NoDevices("NVML Shared Library Not Found"), node="n", sampler=None, state_dir=None))
    assert got["moecluster_agent_devices_up"][0][1] == 0.0
    assert got["moecluster_agent_gpus"][0][1] == 0.0
    assert "moecluster_gpu_up" not in got


def test_task_series_for_the_gpus_a_task_owns(clock, tmp_path: Path) -> None:
    devices = FakeDevices(2, node="n1", clock=clock)
    spec = TaskSpec(task_id="t9", pair_id="p3", kind="dense", impl="dense", model={}, preset="medium",
                    run_id="r1", match="total")
    obs = FileTaskObserver(tmp_path)
    other = GpuInfo(0, "GPU-of-another-node", "x")
    obs.started(spec, [devices.gpus[1].info, other])
    obs.progress(4096)
    collector = GpuCollector(devices, node="n1", sampler=None, state_dir=tmp_path)
    got = scrape(collector)
    (info_labels, info_value), = got["moecluster_task_info"]
    assert info_value == 1.0
    assert info_labels == {"node": "n1", "gpu": "1", "uuid": devices.gpus[1].info.uuid, "run": "r1",
                           "task": "t9", "pair": "p3", "kind": "dense", "impl": "dense", "preset": "medium"}
    (done_labels, done), = got["moecluster_task_inferences_total"]
    assert done == 4096.0 and done_labels["task"] == "t9" and done_labels["gpu"] == "1"
    obs.finished(TaskResult(spec=spec, status="ok"))
    got = scrape(collector)
    assert "moecluster_task_info" not in got and "moecluster_task_inferences_total" not in got


def test_task_energy_counts_only_the_intervals_the_task_held_the_gpu(clock, tmp_path: Path) -> None:
    """A and B alternate on one GPU (a pair's windows): each task's counter holds the GPU's energy
    over the scrape intervals it held the GPU at both ends, never its neighbour's."""
    devices = FakeDevices(1, node="n1", idle_w=100.0, busy_w=300.0, clock=clock)
    gpu = devices.gpus[0]
    collector = GpuCollector(devices, node="n1", sampler=None, state_dir=tmp_path)
    spec = {k: TaskSpec(task_id=k, pair_id="p", kind=kind, impl="grouped", model={}, run_id="r")
            for k, kind in (("A", "moe"), ("B", "dense"))}
    obs = FileTaskObserver(tmp_path)

    def task_energy() -> dict[str, float]:
        return {labels["task"]: v for labels, v in scrape(collector).get("moecluster_task_energy_joules_total", [])}

    obs.started(spec["A"], [gpu.info])
    gpu.set_load(1.0)
    assert task_energy() == {"A": 0.0}  # first seen: nothing charged yet
    clock.advance(10.0)
    assert task_energy() == {"A": pytest.approx(3000.0)}  # 10 s at 300 W
    obs.finished(TaskResult(spec=spec["A"], status="ok"))
    obs.started(spec["B"], [gpu.info])
    gpu.set_load(0.5)
    clock.advance(5.0)
    assert task_energy() == {"B": 0.0}  # the interval across the change is charged to nobody
    clock.advance(10.0)
    assert task_energy() == {"B": pytest.approx(2000.0)}  # 10 s at 200 W
    obs.finished(TaskResult(spec=spec["B"], status="ok"))
    assert task_energy() == {}  # no task: no series
    obs.started(spec["A"], [gpu.info])  # A's next window
    gpu.set_load(1.0)
    clock.advance(2.0)
    assert task_energy() == {"A": pytest.approx(3000.0)}  # continues its own total
    clock.advance(4.0)
    assert task_energy() == {"A": pytest.approx(4200.0)}
    gpu_total = by_gpu(scrape(collector), "moecluster_gpu_energy_joules_total")["0"]
    assert gpu_total == pytest.approx(10 * 300 + 5 * 200 + 10 * 200 + 2 * 300 + 4 * 300)


def test_task_energy_stops_while_the_gpu_is_down(clock, tmp_path: Path) -> None:
    faults = tmp_path / "faults"
    devices = FakeDevices(1, node="n1", idle_w=100.0, clock=clock, fault_file=faults)
    collector = GpuCollector(devices, node="n1", sampler=None, state_dir=tmp_path / "tasks")
    spec = TaskSpec(task_id="A", pair_id="p", kind="moe", impl="grouped", model={}, run_id="r")
    FileTaskObserver(tmp_path / "tasks").started(spec, [devices.gpus[0].info])
    scrape(collector)
    clock.advance(10.0)
    faults.write_text("0\n")
    got = scrape(collector)
    assert "moecluster_task_energy_joules_total" not in got and "moecluster_task_info" in got
    faults.write_text("")
    clock.advance(10.0)
    assert [v for _, v in scrape(collector)["moecluster_task_energy_joules_total"]] == [0.0]
    clock.advance(10.0)
    assert [v for _, v in scrape(collector)["moecluster_task_energy_joules_total"]] == [pytest.approx(1000.0)]
