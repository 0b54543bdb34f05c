"""Background power sampling: per-scrape windows of mean and maximum power."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from moecluster.devices import FakeDevices
from moecluster.node.agent.sampler import PowerSampler


def test_window_mean_and_max_follow_the_power_model(clock) -> None:
    gpus = FakeDevices(2, idle_w=100.0, busy_w=300.0, clock=clock).gpus
    sampler = PowerSampler(gpus, 0.1, clock=clock)
    sampler.sample_once()  # t=0: 100 W
    for _ in range(10):  # 1 s at 100 W
        clock.advance(0.1)
        sampler.sample_once()
    gpus[0].set_load(1.0)  # 300 W from here
    for _ in range(10):  # 1 s at 300 W (the first trapezoid straddles the step)
        clock.advance(0.1)
        sampler.sample_once()
    w0, w1 = sampler.take_window(0), sampler.take_window(1)
    assert w0 is not None and w1 is not None
    assert w0.samples == 21 and w0.duration_s == pytest.approx(2.0)
    assert w0.max_power_w == 300.0 and w1.max_power_w == 100.0
    assert w0.avg_power_w == pytest.approx((100 * 1.05 + 300 * 0.95) / 2.0)
    assert w1.avg_power_w == pytest.approx(100.0)
    assert sampler.integrated_energy_j(0) == pytest.approx(100 * 1.05 + 300 * 0.95)


def test_a_window_restarts_after_each_take(clock) -> None:
    gpu = FakeDevices(1, idle_w=50.0, busy_w=250.0, clock=clock).gpus[0]
    sampler = PowerSampler([gpu], 0.1, clock=clock)
    sampler.sample_once()
    assert sampler.take_window(0).avg_power_w == 50.0  # type: ignore[union-attr]
    assert sampler.take_window(0) is None  # nothing sampled since
    gpu.set_load(0.5)
    clock.advance(0.1)
    sampler.sample_once()
    w = sampler.take_window(0)
    assert w is not None and w.samples == 1 and w.max_power_w == 150.0
    assert w.avg_power_w == pytest.approx(100.0)  # the trapezoid from the previous window's last sample


def test_faulty_gpu_is_skipped_not_fatal(clock, tmp_path: Path) -> None:
    faults = tmp_path / "faults"
    gpus = FakeDevices(2, clock=clock, fault_file=faults).gpus
    sampler = PowerSampler(gpus, 0.1, clock=clock)
    faults.write_text("1\n")
    sampler.sample_once()
    assert sampler.error(1) is not None and sampler.error(0) is None
    assert sampler.take_window(1) is None and sampler.take_window(0) is not None
    faults.write_text("")
    sampler.sample_once()
    assert sampler.error(1) is None and sampler.take_window(1) is not None


def test_thread_samples_and_stops(tmp_path: Path) -> None:
    sampler = PowerSampler(FakeDevices(1).gpus, 0.02).start()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        w = sampler.take_window(0)
        if w is not None and w.samples >= 1:
            break
        time.sleep(0.05)
    sampler.stop()
    assert not sampler.thread.is_alive()
    assert w is not None and w.avg_power_w == 60.0


def test_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="interval"):
        PowerSampler([], 0)
