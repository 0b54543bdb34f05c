"""What one GPU and a gang share: set-up facts read once before any model, records' warnings and failures."""
from __future__ import annotations

import torch

from moecluster.measure.meters.energy import EnergyMeter
from moecluster.measure.meters.idle import IdleCache, IdleReading, SettlePolicy
from moecluster.measure.meters.peaks import GemmCase, PeakCache, PeakPlan, StreamCase
from moecluster.measure.session import (CPU_ENERGY_REASON, failed_result, open_task_devices, read_facts,
                                       record_warnings, select_gpus)
from moecluster.spec.records import TaskSpec

CPU = torch.device("cpu")
SPEC = TaskSpec(task_id="t", pair_id="p", kind="moe", impl="grouped", model={}, device="cpu", meter="fake",
                dtype="float32")
TINY_PEAKS = PeakPlan(gemms=(GemmCase(32, 32, 32),), streams=(StreamCase(1),), samples=1, sample_s=0.001,
                      max_call_s=0.05, warmup_s=0.01)
QUICK_IDLE = SettlePolicy(tolerance=0.5, span_s=0.1, block_s=0.05, timeout_s=1.0)


def test_facts_name_the_gpus_idle_and_peaks_of_every_dtype_and_a_failure_keeps_them() -> None:
    specs = [SPEC, TaskSpec(task_id="u", pair_id="p", kind="dense", impl="dense", model={}, device="cpu",
                            meter="fake", dtype="bfloat16")]
    with open_task_devices(SPEC, CPU, "node-x", fake_count=3) as devices:
        gpus = select_gpus(devices, CPU, [2])
        meter = EnergyMeter(devices, gpus)
        facts = read_facts(1, specs, devices, gpus, meter, CPU, "node-x", PeakCache(plan=TINY_PEAKS),
                           IdleCache(policy=QUICK_IDLE))
    assert len(devices.gpus) == 3 and [g.index for g in facts.gpus] == [2] and facts.rank == 1
    assert facts.idle is not None and facts.idle.power_w is not None and facts.idle.power_w > 0
    assert set(facts.peaks) == {"float32", "bfloat16"} and "torch" in facts.versions
    failed = failed_result(SPEC, "rank 1: boom", node="elsewhere", started_at=1.0, finished_at=2.0,
                           facts=[facts, facts], world_size=2)
    assert failed.status == "failed" and failed.error == "rank 1: boom" and failed.world_size == 2
    assert failed.node == "node-x" and len(failed.gpus) == 2
    alone = failed_result(SPEC, "boom", node="here", started_at=1.0, finished_at=2.0)
    assert alone.node == "here" and alone.gpus == () and alone.world_size == 1


def test_the_cpu_has_nothing_to_meter_and_says_why() -> None:
    plain = TaskSpec(task_id="t", pair_id="p", kind="moe", impl="grouped", model={}, device="cpu")
    with open_task_devices(plain, CPU, "node-x") as devices:
        assert devices.gpus == () and devices.unavailable_reason == CPU_ENERGY_REASON


def test_warnings_name_their_window_once_each_in_order() -> None:
    unsettled = IdleReading(power_w=60.0, settle_s=5.0, settled=False, note="did not settle within 5 s")
    out = record_warnings(unsettled, [("edge not aligned", None), ("edge not aligned",)], first=["compile: off"],
                          last=["GPU 0: capped", "compile: off"])
    assert out == ("compile: off", "idle power did not settle within 5 s", "window 1/2: edge not aligned",
                   "window 2/2: edge not aligned", "GPU 0: capped")
    settled = IdleReading(power_w=60.0, settle_s=1.0, settled=True, note="ok")
    assert record_warnings(settled, [("only window",)]) == ("only window",)
