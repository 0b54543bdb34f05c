"""Counting a sweep's tasks before expanding it, and the cap on a plan's size."""
from __future__ import annotations

import pytest

from moecluster.head.sweep import SweepError, expand, parse_sweep
from moecluster.head.sweep.size import check_task_count, task_count


@pytest.mark.parametrize("extra", ["",
                                   "impl: [naive, sorted, grouped]\nmatch: [total, active]\nbatch_size: [1, 2]\n",
                                   "impl: [naive, sorted]\nshare_twins: true\nmatch: [total, active]\n"
                                   "seed: [0, 1, 2]\n"])
def test_count_is_the_expanded_number_of_tasks(extra: str) -> None:
    sweep = parse_sweep("name: t\nmodels: [{preset: small}, {preset: medium}]\n" + extra)
    count, _ = task_count(sweep)
    assert count == len(expand(sweep).tasks)


def test_over_the_cap_names_the_product_of_the_axes() -> None:
    sweep = parse_sweep("name: t\nmodels: [{preset: small}]\nbatch_size: [1, 2, 3, 4, 5]\nseed: [0, 1, 2]\n")
    assert check_task_count(sweep, 90) == 90
    with pytest.raises(SweepError) as info:
        check_task_count(sweep, 89)
    assert ("plans 90 tasks (5 batch_size × 3 seed × 2 tasks per pair × 3 replicates), more than --max-tasks 89"
            in str(info.value))


def test_a_plan_over_max_hours_is_refused_naming_its_hours() -> None:
    from moecluster.head.sweep.size import check_plan_hours

    sweep = parse_sweep("name: t\nmodels: [{preset: small}]\ndevice: cpu\nrepeats: 100000\n")
    plan = expand(sweep)
    hours = plan.slot_s / 3600
    assert check_plan_hours(plan, sweep, hours + 1) == hours
    with pytest.raises(SweepError) as info:
        check_plan_hours(plan, sweep, 168)
    assert f"is estimated at {hours:,.0f} hours on one cpu task, more than --max-hours 168" in str(info.value)
    assert "repeats 100,000 ×" in str(info.value)


def test_a_gang_counts_once_per_gpu_in_the_plans_time() -> None:
    one = expand(parse_sweep("name: t\nmodels: [{preset: small}]\n"))
    gang = expand(parse_sweep("name: t\nmodels: [{preset: small}]\nexpert_parallel: 2\nbatch_size: 128\n"))
    assert gang.slot_s == pytest.approx(sum(p.total_estimated_s * 2 for p in gang.pairs))
    assert one.slot_s == pytest.approx(sum(p.total_estimated_s for p in one.pairs))
