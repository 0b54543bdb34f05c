"""The energy meter over the fake device's known power model, and its honesty when blind.

Time is a fake clock that the meter's injected `sleep` (and each test's work) advances, so
windows of seconds take no real time and every reading is predictable.
"""
import math
import time
from typing import Callable

import pytest

from fake_clock import Clock

from moecluster.devices import DeviceError, FakeDevices, NoDevices, Unsupported
from moecluster.measure.meters.energy import (SOURCE_FAKE, SOURCE_SAMPLED, Alignment, CounterWatch, EnergyMeter,
                                             PowerTrace, min_window_s)


def fake(clock: Clock, count: int = 1, **kw: float) -> tuple[FakeDevices, EnergyMeter]:
    devices = FakeDevices(count=count, idle_w=50.0, busy_w=250.0, clock=clock, **kw)
    return devices, EnergyMeter(devices, devices.gpus, sample_interval_s=None, clock=clock, sleep=clock.sleep)


def busy_for(devices: FakeDevices, clock: Clock, seconds: float, step_s: float = 0.001) -> Callable[[], int]:
    """Work of `seconds` at full load, in steps of `step_s` (the fake's time passes only in steps)."""
    def work() -> int:
        for g in devices.gpus:
            g.set_load(1.0)
        steps = 0
        while steps * step_s < seconds - 1e-12:
            clock.t += step_s
            steps += 1
        return steps
    return work


def test_counter_energy_is_the_exact_integral_of_the_power_model():
    clock = Clock()
    devices, meter = fake(clock, count=2)

    def work():
        for g in devices.gpus:
            g.set_load(1.0)
        clock.t += 4.0
        devices.gpus[1].set_load(0.5)
        clock.t += 2.0

    _, reading = meter.measure(work)
    assert reading.source == SOURCE_FAKE
    assert reading.duration_s == pytest.approx(6.0)
    assert reading.energy_j == pytest.approx(2 * 250 * 4 + 250 * 2 + 150 * 2)
    assert reading.avg_power_w == pytest.approx(reading.energy_j / 6.0)
    assert not reading.aligned and "2 GPUs" in reading.note  # two counters update independently


def test_min_window_s_is_one_update_period_over_the_tolerance():
    assert min_window_s(0.1) == pytest.approx(10.0)
    assert min_window_s(0.1, tolerance=0.05) == pytest.approx(2.0)
    assert min_window_s(0.0) == 0.0
    for bad in (dict(update_period_s=-0.1), dict(update_period_s=float("nan")),
                dict(update_period_s=0.1, tolerance=0.0), dict(update_period_s=0.1, tolerance=1.5)):
        with pytest.raises(ValueError):
            min_window_s(**bad)


def test_update_period_is_measured_once_from_counter_changes():
    clock = Clock()
    _, meter = fake(clock, counter_period_s=0.1)
    assert meter.update_period_s() == pytest.approx(0.1, abs=1e-3)
    t = clock.t
    assert meter.update_period_s() == pytest.approx(0.1, abs=1e-3) and clock.t == t  # cached: no more polling


def test_aligned_window_with_keep_busy_is_exact_where_a_plain_one_is_not():
    clock = Clock()
    devices, meter = fake(clock, counter_period_s=0.1)
    plain_meter = EnergyMeter(devices, devices.gpus, sample_interval_s=None, clock=clock, sleep=clock.sleep,
                              alignment=Alignment(enabled=False))
    assert plain_meter.update_period_s() == pytest.approx(0.1, abs=1e-3)
    clock.t += 0.03  # mid-period: a plain window's edges miss parts of periods
    _, plain = plain_meter.measure(busy_for(devices, clock, 1.05))
    assert not plain.aligned and plain.note is None  # switched off: nothing to warn about
    truth = 250.0 * plain.duration_s
    assert abs(plain.energy_j - truth) > 0.02 * truth  # stale edges: off by a share of a period
    devices.gpus[0].set_load(0.0)

    def keep_busy(until: Callable[[], bool]) -> None:
        while not until():
            clock.t += 0.001

    _, aligned = meter.measure(busy_for(devices, clock, 1.05), keep_busy=keep_busy)
    assert aligned.aligned and aligned.note is None
    assert aligned.duration_s == pytest.approx(1.05, abs=1e-3)
    truth = 250.0 * aligned.duration_s
    assert aligned.energy_j == pytest.approx(truth, rel=2e-3)
    assert abs(aligned.energy_j - truth) <= aligned.energy_resolution_j < 0.005 * truth
    assert abs(plain.energy_j - 250.0 * plain.duration_s) <= plain.energy_resolution_j  # the plain bound holds too
    assert aligned.update_period_s == pytest.approx(0.1, abs=1e-3)


def test_aligned_window_without_keep_busy_bounds_the_idle_tail():
    clock = Clock()
    devices, meter = fake(clock, counter_period_s=0.1)

    def work() -> None:
        busy_for(devices, clock, 1.04)()
        devices.gpus[0].set_load(0.0)  # the device idles after the work, until the closing update

    _, reading = meter.measure(work)
    truth = 250.0 * reading.duration_s
    assert reading.aligned
    assert reading.energy_j > truth  # the tail is in, not subtracted
    assert reading.energy_j - truth <= reading.energy_resolution_j


def test_a_keep_busy_that_stops_early_is_not_scaled_as_if_busy():
    clock = Clock()
    devices, meter = fake(clock, counter_period_s=0.1)

    def work() -> None:
        busy_for(devices, clock, 1.04)()
        devices.gpus[0].set_load(0.0)

    _, reading = meter.measure(work, keep_busy=lambda until: None)  # never asks `until`: the device idles
    truth = 250.0 * reading.duration_s
    assert reading.aligned and 0 < reading.energy_j - truth <= reading.energy_resolution_j


def test_polling_never_hangs_when_the_counter_does_not_change():
    clock = Clock()
    devices = FakeDevices(count=1, clock=clock)
    stuck = EnergyMeter(devices, devices.gpus, sample_interval_s=None, clock=clock, sleep=lambda s: None,
                        alignment=Alignment(timeout_s=0.01))  # the clock never moves: only the poll bound ends it
    _, reading = stuck.measure(lambda: None)
    assert not reading.aligned and "did not change" in reading.note
    assert reading.energy_j == 0.0 and reading.energy_resolution_j is None  # period unknown: no bound claimed


def test_counter_watch_names_the_interval_of_an_update():
    values = iter([1.0, 1.0, 1.0, 2.0])
    times = iter(range(100))
    watch = CounterWatch(lambda: next(values), lambda: float(next(times)), timeout_s=100.0, max_polls=10)
    assert not watch.changed()
    assert not watch.changed()
    assert watch.changed() and watch.edge is not None
    assert (watch.edge.before_s, watch.edge.at_s, watch.edge.energy_j) == (4.0, 7.0, 2.0)


def test_idle_reading_is_whole_periods_of_idle_power():
    clock = Clock()
    _, meter = fake(clock, counter_period_s=0.1)
    reading = meter.idle_reading(0.5)
    assert reading.aligned and reading.avg_power_w == pytest.approx(50.0, rel=1e-9)
    assert meter.idle_power_w(0.25) == pytest.approx(50.0, rel=1e-9)


def test_no_devices_reports_unavailable_with_reason_never_zero():
    meter = EnergyMeter(NoDevices("no NVML here"), [])
    _, reading = meter.measure(lambda: None)
    assert reading.energy_j is None and reading.source is None
    assert reading.unavailable_reason == "no NVML here"
    assert meter.idle_power_w(0.01) is None


def test_sampled_power_is_the_labelled_fallback_without_a_counter():
    devices = FakeDevices(count=1, idle_w=100.0, busy_w=100.0)

    class NoCounter(type(devices.gpus[0])):
        def energy_j(self):
            raise Unsupported("no counter on this GPU")

    gpu = devices.gpus[0]
    gpu.__class__ = NoCounter
    devices.kind = "nvml"  # pretend: a real GPU lacking the counter
    meter = EnergyMeter(devices, [gpu], sample_interval_s=0.01)

    _, reading = meter.measure(lambda: time.sleep(0.3))
    assert reading.source == SOURCE_SAMPLED
    assert reading.energy_j == pytest.approx(100.0 * reading.duration_s, rel=0.2)
    assert reading.samples >= 5
    assert not reading.aligned and reading.energy_resolution_j is None


def test_power_sampler_integrates_within_bounds():
    clock = Clock()
    sampler = PowerTrace([], 1.0, clock)
    sampler.times, sampler.power_w = [0.0, 1.0, 2.0], [100.0, 200.0, 200.0]
    assert sampler.energy_j() == pytest.approx(150.0 + 200.0)
    assert sampler.energy_j(0.5, 1.5) == pytest.approx(0.5 * (150 + 200) / 2 + 0.5 * 200)
    assert sampler.max_power_w(0.0, 0.5) == 100.0


def test_fake_power_settles_and_its_counter_steps():
    clock = Clock()
    devices = FakeDevices(count=1, idle_w=60.0, busy_w=300.0, clock=clock, power_tau_s=2.0, counter_period_s=0.5)
    gpu = devices.gpus[0]
    gpu.set_load(1.0)
    clock.t = 10.0
    assert gpu.power_w() == pytest.approx(300.0 - 240.0 * math.exp(-5), rel=1e-9)
    clock.t = 10.2
    assert gpu.energy_j() == pytest.approx(300.0 * 10.0 - 240.0 * 2.0 * (1 - math.exp(-5)), rel=1e-9)  # at 10.0 s


def test_a_faulty_gpu_fails_loudly(tmp_path):
    fault = tmp_path / "faults"
    devices = FakeDevices(count=2, fault_file=fault)
    fault.write_text("1\n")
    assert devices.gpus[0].power_w() >= 0
    with pytest.raises(Exception, match="faulty"):
        devices.gpus[1].energy_j()


def _sampled_only(devices: FakeDevices, fail_after: int) -> None:
    """Make the fake's GPU 0 a GPU without an energy counter whose power reads fail after `fail_after` reads."""
    gpu = devices.gpus[0]
    reads = {"n": 0}

    class Failing(type(gpu)):
        def energy_j(self):
            raise Unsupported("no counter on this GPU")

        def power_w(self):
            reads["n"] += 1
            if reads["n"] > fail_after:
                raise DeviceError("GPU 0: nvmlDeviceGetPowerUsage: Unknown Error")
            return super().power_w()

    gpu.__class__ = Failing
    devices.kind = "nvml"  # pretend: a real GPU lacking the counter


def test_samples_covering_part_of_a_window_are_not_its_energy():
    devices = FakeDevices(count=1, idle_w=100.0, busy_w=100.0)
    _sampled_only(devices, fail_after=3)  # the sampler dies about 0.02 s into a 0.3 s window
    meter = EnergyMeter(devices, devices.gpus, sample_interval_s=0.01)
    _, reading = meter.measure(lambda: time.sleep(0.3))
    assert reading.energy_j is None and reading.source is None and reading.sampled_energy_j is None
    assert reading.avg_power_w is None and reading.max_power_w is None
    assert reading.unavailable_reason.startswith("power sampling failed part-way (GPU 0: nvmlDeviceGetPowerUsage")
    assert "the samples cover" in reading.unavailable_reason and "of the window" in reading.unavailable_reason


def test_a_sampler_that_fails_from_the_start_says_so():
    devices = FakeDevices(count=1)
    _sampled_only(devices, fail_after=0)
    meter = EnergyMeter(devices, devices.gpus, sample_interval_s=0.01)
    _, reading = meter.measure(lambda: time.sleep(0.05))
    assert reading.energy_j is None
    assert reading.unavailable_reason == "too few power samples (GPU 0: nvmlDeviceGetPowerUsage: Unknown Error)"


def test_samples_that_stop_short_of_an_edge_are_named():
    sampler = PowerTrace([], 0.1, Clock())
    sampler.times, sampler.power_w = [0.0, 0.1, 0.2, 0.3], [100.0] * 4
    assert sampler.coverage_problem(0.05, 0.35) is None  # within one interval of each edge
    assert sampler.coverage_problem(0.0, 1.0) == "the power samples cover only 30 % of the window"
    assert sampler.coverage_problem(-0.5, 0.3) == "the power samples cover only 38 % of the window"


def test_a_counter_window_keeps_its_energy_and_drops_a_partial_sampled_cross_check():
    devices = FakeDevices(count=1, idle_w=100.0, busy_w=100.0)
    gpu = devices.gpus[0]
    reads = {"n": 0}

    class PowerFails(type(gpu)):  # the counter reads; the power field fails after a few samples
        def power_w(self):
            reads["n"] += 1
            if reads["n"] > 3:
                raise DeviceError("GPU 0: lost")
            return super().power_w()

    gpu.__class__ = PowerFails
    meter = EnergyMeter(devices, devices.gpus, sample_interval_s=0.01)
    _, reading = meter.measure(lambda: time.sleep(0.3))
    assert reading.source == SOURCE_FAKE and reading.energy_j == pytest.approx(100.0 * reading.duration_s, rel=0.05)
    assert reading.sampled_energy_j is None and reading.max_power_w is None
    assert reading.note is not None and "sampled power left out: power sampling failed part-way (GPU 0: lost)" \
        in reading.note
