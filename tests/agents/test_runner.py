"""The runner end to end on the CPU: fixed windows, energy from the fake device, failures as data."""
import pytest

from moecluster.agents.devices import FakeDevices
from moecluster.agents.records import TaskResult, TaskSpec
from moecluster.agents.runner import run_task
from moecluster.agents.workloads.mlp.shapes import MoEShape

SHAPE = MoEShape(num_experts=4, expert_hidden_dim=16, expert_num_layers=2, top_k=2)


def spec(**kw) -> TaskSpec:
    base = dict(task_id="t1", pair_id="p1", kind="moe", impl="grouped", model=SHAPE.as_model(), device="cpu",
                duration_s=0.3, warmup_s=0.05, repeats=2, batch_size=16)
    return TaskSpec(**{**base, **kw})


class Recorder:
    def __init__(self):
        self.events = []

    def started(self, spec, gpus):
        self.events.append(("started", spec.task_id, [g.uuid for g in gpus]))

    def progress(self, inferences_total):
        self.events.append(("progress", inferences_total))

    def finished(self, result):
        self.events.append(("finished", result.status))


def test_cpu_task_measures_windows_and_reports_energy_unavailable():
    r = run_task(spec())
    assert r.status == "ok", r.error
    assert len(r.windows) == 2 and all(w.inferences > 0 and w.duration_s >= 0.3 for w in r.windows)
    assert r.energy_source is None and "cpu" in r.energy_unavailable_reason
    assert all(w.energy_j is None for w in r.windows) and r.inferences_per_j is None
    assert sum(r.expert_tokens) == 16 * 2
    assert 0 < r.roofline.fraction and r.roofline.bound in ("compute", "memory")
    assert r.params.total == SHAPE.params().total
    assert TaskResult.from_json(r.to_json()) == r


def test_fake_meter_energy_follows_the_power_model_and_observer_sees_it():
    devices = FakeDevices(count=2, idle_w=40.0, busy_w=200.0, node="n1")
    obs = Recorder()
    r = run_task(spec(meter="fake"), devices=devices, gpu_indices=[1], node="n1", observer=obs)
    assert r.status == "ok", r.error
    assert r.gpus[0].uuid == devices.gpus[1].info.uuid and r.gpus[0].node == "n1"
    assert r.energy_source == "fake-power-model"
    for w in r.windows:
        assert w.energy_j == pytest.approx(200.0 * w.duration_s, rel=1e-3)
    assert r.idle_power_w == pytest.approx(40.0, rel=1e-3)
    assert obs.events[0] == ("started", "t1", [devices.gpus[1].info.uuid])
    assert obs.events[-1] == ("finished", "ok")
    totals = [e[1] for e in obs.events if e[0] == "progress"]
    assert totals == sorted(totals) and totals[-1] == sum(w.inferences for w in r.windows)


@pytest.mark.parametrize("bad, message", [
    (dict(device="cuda"), "cuda"),
    (dict(impl="fancy"), "fancy"),
    (dict(model={"num_experts": 2, "expert_hidden_dim": 4, "expert_num_layers": 1, "top_k": 3}), "top_k"),
    (dict(dtype="float8"), "float8"),
])
def test_failures_are_returned_not_raised(bad, message):
    r = run_task(spec(**bad))
    assert r.status == "failed" and message in r.error
