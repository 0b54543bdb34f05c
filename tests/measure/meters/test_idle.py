"""Settled idle power on a fake GPU whose power decays after load, and its per-run cache.

The fake clock moves only through the meter's injected sleep, so a 60 s timeout costs no
real time.
"""
import json
import math

import pytest

from fake_clock import Clock

from moecluster.devices import FakeDevices, NoDevices
from moecluster.measure.meters.energy import EnergyMeter
from moecluster.measure.meters.idle import (IdleCache, IdleReading, SettlePolicy, check_run_id, idle_for_run,
                                           measure_settled)


def warm_gpu(tau_s: float, count: int = 1) -> tuple[Clock, FakeDevices, EnergyMeter]:
    """A fake GPU just after 15 s at full load, its power decaying to 60 W idle with time constant `tau_s`."""
    clock = Clock()
    devices = FakeDevices(count=count, idle_w=60.0, busy_w=300.0, clock=clock, power_tau_s=tau_s,
                          counter_period_s=0.1)
    for g in devices.gpus:
        g.set_load(1.0)
    clock.t = 15.0
    for g in devices.gpus:
        g.set_load(0.0)
    meter = EnergyMeter(devices, devices.gpus, sample_interval_s=None, clock=clock, sleep=clock.sleep)
    return clock, devices, meter


def test_idle_waits_until_the_power_has_settled():
    clock, _, meter = warm_gpu(tau_s=2.0)
    start = clock.t
    reading = measure_settled(meter)
    # 240 W of excess decaying with tau 2 s: blocks over 2 s agree within 2 % of 60 W from about 9-10 s on
    assert reading.settled and 7.0 <= reading.settle_s <= 12.0
    assert reading.power_w == pytest.approx(60.0, rel=0.02) and reading.power_w > 60.0
    assert reading.spread <= 0.02 and "settled after" in reading.note
    assert clock.t - start >= reading.settle_s + 2.0  # the accepted span is read after the wait
    _, _, fresh = warm_gpu(tau_s=2.0)
    assert fresh.idle_power_w(1.0) > 2 * reading.power_w  # what a 1 s reading right after load gives


def test_an_already_quiet_gpu_settles_at_once():
    _, _, meter = warm_gpu(tau_s=0.0)
    reading = measure_settled(meter, SettlePolicy(span_s=1.0, block_s=0.5))
    assert reading.settled and reading.settle_s == 0.0 and reading.power_w == pytest.approx(60.0, rel=1e-9)


def test_a_gpu_that_does_not_settle_times_out_and_says_so():
    _, _, meter = warm_gpu(tau_s=20.0)
    reading = measure_settled(meter, SettlePolicy(timeout_s=10.0))
    assert not reading.settled and reading.settle_s >= 10.0
    assert "did not settle within 10 s" in reading.note and reading.spread > 0.02
    assert reading.power_w > 60.0  # still warm: the last span's mean, labelled as such


def test_idle_is_measured_once_per_gpu_per_run_and_shared_through_a_file(tmp_path):
    clock, devices, meter = warm_gpu(tau_s=0.5)
    policy = SettlePolicy(span_s=1.0, block_s=0.5)
    first = idle_for_run(meter, "run-1", IdleCache(tmp_path, policy=policy))
    assert first is not None and first.settled and "cached" not in first.note
    uuid = devices.gpus[0].info.uuid
    path = tmp_path / "run-1" / f"{uuid}.json"
    assert json.loads(path.read_text())["power_w"] == first.power_w
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # written atomically: no temporary left

    t = clock.t
    other_process = IdleCache(tmp_path, policy=policy)
    again = idle_for_run(meter, "run-1", other_process)
    assert clock.t == t  # nothing measured
    assert again.power_w == first.power_w and again.settle_s == first.settle_s
    assert again.note.startswith("cached for run run-1")

    refreshed = idle_for_run(meter, "run-1", other_process, refresh=True)
    assert clock.t > t and "cached" not in refreshed.note
    assert idle_for_run(meter, "run-2", other_process).note.startswith("settled")  # another run measures anew


def test_the_local_run_id_stays_in_process(tmp_path):
    _, _, meter = warm_gpu(tau_s=0.0)
    cache = IdleCache(tmp_path, policy=SettlePolicy(span_s=1.0, block_s=0.5))
    idle_for_run(meter, "local", cache)
    assert not any(tmp_path.iterdir())
    assert idle_for_run(meter, "local", cache).note.startswith("cached for run local")


def test_stale_or_broken_files_are_measured_again(tmp_path):
    now = [1000.0]
    cache = IdleCache(tmp_path, max_age_s=60.0, now=lambda: now[0])
    reading = IdleReading(power_w=70.0, settle_s=1.0, settled=True, note="settled", measured_at=1000.0)
    cache.put("r", "GPU-1", reading)
    assert IdleCache(tmp_path, now=lambda: now[0]).get("r", "GPU-1") == reading
    now[0] = 1061.0
    assert cache.get("r", "GPU-1") is None
    (tmp_path / "r" / "GPU-2.json").write_text("{not json")
    assert cache.get("r", "GPU-2") is None


def test_several_gpus_sum_their_idle():
    _, _, meter = warm_gpu(tau_s=0.0, count=2)
    reading = idle_for_run(meter, "local", IdleCache(policy=SettlePolicy(span_s=1.0, block_s=0.5)))
    assert reading.power_w == pytest.approx(120.0, rel=1e-9) and reading.note.count("settled after") == 2


@pytest.mark.parametrize("bad", ["", "..", "a/b", "run id", "x\n"])
def test_run_ids_must_be_safe_names(bad):
    with pytest.raises(ValueError, match="run id"):
        check_run_id(bad)


def test_no_energy_no_idle():
    assert idle_for_run(EnergyMeter(NoDevices("cpu"), []), "run-1", IdleCache()) is None
    assert math.isfinite(SettlePolicy().blocks) and SettlePolicy().blocks == 4


def test_each_replicate_reads_its_own_idle() -> None:
    from moecluster.measure.meters.idle import idle_scope

    assert idle_scope("run1", 1) == "run1"  # replicate 1 and runs without replicates: as before
    assert idle_scope("run1", 2) == "run1.r2" and check_run_id(idle_scope("run1", 2))
    assert idle_scope("local", 3) == "local"  # `bench`: in process only, whatever the replicate
