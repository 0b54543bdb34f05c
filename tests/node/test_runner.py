"""The runner end to end on the CPU: fixed windows, energy from the fake device, failures as data."""
from typing import Any, Callable

import pytest
import torch

from moecluster.devices import FakeDevices
from moecluster.measure.meters.idle import IdleCache, SettlePolicy
from moecluster.measure.meters.idle import IdleReading
from moecluster.measure.meters.peaks import GemmCase, PeakCache, PeakPlan, Peaks, StreamCase
from moecluster.spec.records import ParamCounts, TaskResult, TaskSpec, Window
from moecluster.measure.runner import QUEUE_AHEAD_S, _run_for, _run_until, resolution_warning, run_task, window_drift
from moecluster.workloads.workload import Prepared
from moecluster.spec.mlp.shapes import MoEShape
from moecluster.workloads.mlp.workload import MlpWorkload

SHAPE = MoEShape(num_experts=4, expert_hidden_dim=16, expert_num_layers=2, top_k=2)
TINY_PEAKS = PeakPlan(gemms=(GemmCase(32, 32, 32),), streams=(StreamCase(1),), samples=1, sample_s=0.001,
                      min_calls=1, max_call_s=10.0, warmup_s=0.0)
QUICK_IDLE = SettlePolicy(span_s=0.2, block_s=0.1, timeout_s=5.0)


def spec(**kw) -> TaskSpec:
    base = dict(task_id="t1", pair_id="p1", kind="moe", impl="grouped", model=SHAPE.as_model(), device="cpu",
                duration_s=0.3, warmup_s=0.05, repeats=2, batch_size=16)
    return TaskSpec(**{**base, **kw})


def quick(**kw: Any) -> dict[str, Any]:
    """run_task's caches for tests: a tiny peak plan and a short idle span, nothing written to disk."""
    return dict(peaks=PeakCache(plan=TINY_PEAKS), idle_cache=IdleCache(policy=QUICK_IDLE), **kw)


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
    r = run_task(spec(), **quick())
    assert r.status == "ok", r.error
    assert len(r.windows) == 2 and all(w.inferences > 0 and w.duration_s >= 0.3 for w in r.windows)
    assert r.energy_source is None and "cpu" in r.energy_unavailable_reason
    assert all(w.energy_j is None and w.energy_resolution_j is None and not w.aligned for w in r.windows)
    assert r.inferences_per_j is None and r.idle_power_w is None and r.idle_note is None
    assert [w.position for w in r.windows] == [0, 1] and set(r.drift) == {"inferences_per_s"}
    assert sum(r.expert_tokens) == 16 * 2
    assert 0 < r.roofline.fraction and r.roofline.bound in ("compute", "memory")
    assert r.params.total == SHAPE.params().total
    assert TaskResult.from_json(r.to_json()) == r


def test_fake_meter_energy_follows_the_power_model_and_observer_sees_it():
    devices = FakeDevices(count=2, idle_w=40.0, busy_w=200.0, node="n1")
    obs = Recorder()
    r = run_task(spec(meter="fake"), devices=devices, gpu_indices=[1], node="n1", **quick(observer=obs))
    assert r.status == "ok", r.error
    assert r.gpus[0].uuid == devices.gpus[1].info.uuid and r.gpus[0].node == "n1"
    assert r.energy_source == "fake-power-model"
    for w in r.windows:
        assert w.aligned and w.energy_resolution_j is not None and w.energy_resolution_j < 0.01 * w.energy_j
        assert w.energy_j == pytest.approx(200.0 * w.duration_s, rel=1e-3)
    assert r.idle_power_w == pytest.approx(40.0, rel=1e-3)
    assert r.idle_settle_s == 0.0 and r.idle_note.startswith("settled after")
    assert set(r.drift) == {"inferences_per_s", "inferences_per_j"} and r.warnings == ()
    assert obs.events[0] == ("started", "t1", [devices.gpus[1].info.uuid])
    assert obs.events[-1] == ("finished", "ok")
    totals = [e[1] for e in obs.events if e[0] == "progress"]
    assert totals == sorted(totals) and totals[-1] == sum(w.inferences for w in r.windows)


def test_what_a_gpu_says_of_its_power_readings_reaches_the_result():
    devices = FakeDevices(count=2, node="n1")
    gpu = devices.gpus[1]

    class FellBack(type(gpu)):
        @property
        def power_note(self):
            return "1 instantaneous power reading(s) failed and used NVML's averaged power usage instead"

    gpu.__class__ = FellBack
    r = run_task(spec(meter="fake", repeats=1), devices=devices, gpu_indices=[1], node="n1", **quick())
    assert r.status == "ok", r.error
    assert "GPU 1: 1 instantaneous power reading(s) failed and used NVML's averaged power usage instead" in r.warnings


def test_idle_and_peaks_are_measured_before_the_model_is_built_and_the_form_is_kept(monkeypatch):
    order: list[str] = []

    class RecordingPeaks(PeakCache):
        def get(self, device: torch.device, dtype: torch.dtype) -> Peaks:
            order.append("peaks")
            return super().get(device, dtype)

    class RecordingIdle(IdleCache):
        def get(self, run_id: str, uuid: str) -> IdleReading | None:
            order.append("idle")
            return super().get(run_id, uuid)

    prepare = MlpWorkload.prepare

    def recording_prepare(self: MlpWorkload, spec: TaskSpec, device: torch.device, dtype: torch.dtype) -> Prepared:
        order.append("prepare")
        prepared = prepare(self, spec, device, dtype)
        prepared.form = {**prepared.form, "layout": "test-layout"}
        return prepared

    monkeypatch.setattr(MlpWorkload, "prepare", recording_prepare)
    r = run_task(spec(meter="fake", repeats=1), devices=FakeDevices(1), peaks=RecordingPeaks(plan=TINY_PEAKS),
                 idle_cache=RecordingIdle(policy=QUICK_IDLE))
    assert r.status == "ok", r.error
    assert order == ["idle", "peaks", "prepare"]
    assert r.form["layout"] == "test-layout" and r.drift == {}


def test_drift_is_last_over_first_minus_one():
    a = Window(inferences=1000, duration_s=1.0, energy_j=100.0)
    b = Window(inferences=900, duration_s=1.0, energy_j=100.0)
    assert window_drift([a, b]) == pytest.approx({"inferences_per_s": -0.1, "inferences_per_j": -0.1})
    assert window_drift([a, Window(inferences=1100, duration_s=1.0)]) == pytest.approx({"inferences_per_s": 0.1})
    assert window_drift([a]) == {}


def test_a_window_coarser_than_one_percent_is_warned_about():
    assert resolution_warning(100.0, 0.5, 0.1) is None
    text = resolution_warning(100.0, 3.0, 0.1)
    assert "3 % of the window's 100 J" in text and "100 ms" in text and "10 s" in text
    assert resolution_warning(100.0, None, 0.1) is None and resolution_warning(None, 3.0, 0.1) is None


@pytest.mark.parametrize("bad, message", [
    (dict(device="cuda"), "cuda"),
    (dict(impl="fancy"), "fancy"),
    (dict(model={"num_experts": 2, "expert_hidden_dim": 4, "expert_num_layers": 1, "top_k": 3}), "top_k"),
    (dict(dtype="float8"), "float8"),
    (dict(meter="fake", run_id="../etc"), "run id"),
])
def test_failures_are_returned_not_raised(bad, message):
    r = run_task(spec(**bad), **quick())
    assert r.status == "failed" and message in r.error


class SimulatedQueue:
    """A device that runs queued batches of `step_s` one after another, on a host clock that moves
    `poll_s` at every read: what the launch loop sees of a GPU, without one."""

    def __init__(self, step_s: float, poll_s: float = 1e-4) -> None:
        self.step_s, self.poll_s = step_s, poll_s
        self.now_s = 0.0
        self.busy_until_s = 0.0
        self.busy_s = 0.0
        self.max_ahead_s = 0.0

    def clock(self) -> float:
        self.now_s += self.poll_s
        return self.now_s

    def enqueue(self, seconds: float) -> None:
        """The host launches a batch of `seconds`: the device runs it after what it already holds."""
        start = max(self.now_s, self.busy_until_s)
        self.busy_until_s = start + seconds
        self.busy_s += seconds
        self.max_ahead_s = max(self.max_ahead_s, self.busy_until_s - self.now_s)

    def step(self) -> None:
        self.enqueue(self.step_s)

    def mark(self) -> Callable[[], bool]:
        finish = self.busy_until_s
        return lambda: self.clock() >= finish

    def sync(self) -> None:
        self.now_s = max(self.now_s, self.busy_until_s)

    def blocking_step(self, seconds: float) -> Callable[[], None]:
        """A batch whose launches fill the device's queue: the host returns once the device has it all
        but its last `poll_s` (as 64 CUDA-graph replays of a decode response do)."""
        def step() -> None:
            self.enqueue(seconds)
            self.now_s = max(self.now_s, self.busy_until_s - self.poll_s)
        return step

    def queued_step(self, seconds: float) -> Callable[[], None]:
        return lambda: self.enqueue(seconds)

    def prepared(self, step: Callable[[], None] | None = None, busy_step: Callable[[], None] | None = None) -> Prepared:
        return Prepared(model=torch.nn.Identity(), inputs=torch.zeros(1), items_per_batch=1, step=step or self.step,
                        params=ParamCounts(total=1, active_per_token=1), flops_per_item=1.0, bytes_per_batch=1.0,
                        busy_step=busy_step)


@pytest.mark.parametrize("step_s", [1.0, 0.05, 1e-3])
def test_a_window_ends_within_a_batch_or_two_of_its_deadline_however_long_a_batch_is(step_s):
    """Batches of 1 s used to queue a thousand deep: a 3 s window drained for a quarter of an hour."""
    q = SimulatedQueue(step_s)
    steps = _run_for(q.prepared(), 3.0, q.sync, q.mark, clock=q.clock)
    assert q.now_s <= 3.0 + 2 * step_s + QUEUE_AHEAD_S + 0.01
    assert q.busy_s >= 3.0 - 2 * step_s  # and the device was never left waiting for the host
    assert steps == round(q.busy_s / step_s)


def test_small_batches_queue_about_the_allowed_work_ahead():
    q = SimulatedQueue(1e-3)
    _run_for(q.prepared(), 1.0, q.sync, q.mark, clock=q.clock)
    assert QUEUE_AHEAD_S / 2 <= q.max_ahead_s <= QUEUE_AHEAD_S + 3e-3


def test_keeping_busy_uses_the_workload_s_finer_unit_so_it_sees_the_update_within_one_unit():
    """A decode response blocks the host for its whole length: polled only between responses, the
    closing update was seen up to a response late (20 % of a 2 s window's energy uncertain)."""
    until_s = 2.2

    def polls_after_update(busy_step_s: float | None) -> float:
        q = SimulatedQueue(0.65)
        seen: list[float] = []

        def until() -> bool:
            if q.now_s >= until_s:
                seen.append(q.now_s)
            return bool(seen)
        busy = None if busy_step_s is None else q.queued_step(busy_step_s)
        _run_until(q.prepared(q.blocking_step(0.65), busy), until, q.sync, q.mark, clock=q.clock)
        return seen[0] - until_s

    assert polls_after_update(None) > 0.3
    assert polls_after_update(0.01) <= 0.01 + 1e-3


def test_keeping_busy_stops_promptly_on_the_update():
    q = SimulatedQueue(0.5)
    until_s = 2.2
    _run_until(q.prepared(), lambda: q.now_s >= until_s, q.sync, q.mark, clock=q.clock)
    assert until_s <= q.now_s <= until_s + 2 * 0.5  # at most the running batch and one queued behind it
