"""The energy meter over the fake device's known power model, and its honesty when blind."""
import pytest

from moecluster.agents.devices import FakeDevices, NoDevices, Unsupported
from moecluster.agents.meters.energy import SOURCE_FAKE, SOURCE_SAMPLED, EnergyMeter


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_counter_energy_is_the_exact_integral_of_the_power_model():
    clock = Clock()
    devices = FakeDevices(count=2, idle_w=50.0, busy_w=250.0, clock=clock)
    meter = EnergyMeter(devices, devices.gpus, sample_interval_s=None, clock=clock)

    def work():
        for g in devices.gpus:
            g.set_load(1.0)
        clock.t += 4.0
        devices.gpus[1].set_load(0.5)
        clock.t += 2.0

    _, reading = meter.measure(work)
    assert reading.source == SOURCE_FAKE
    assert reading.duration_s == 6.0
    assert reading.energy_j == pytest.approx(2 * 250 * 4 + 250 * 2 + 150 * 2)
    assert reading.avg_power_w == pytest.approx(reading.energy_j / 6.0)


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
    import time

    _, reading = meter.measure(lambda: time.sleep(0.3))
    assert reading.source == SOURCE_SAMPLED
    assert reading.energy_j == pytest.approx(100.0 * reading.duration_s, rel=0.2)
    assert reading.samples >= 5


def test_a_faulty_gpu_fails_loudly(tmp_path):
    fault = tmp_path / "faults"
    devices = FakeDevices(count=2, fault_file=fault)
    fault.write_text("1\n")
    assert devices.gpus[0].power_w() >= 0
    with pytest.raises(Exception, match="faulty"):
        devices.gpus[1].energy_j()
