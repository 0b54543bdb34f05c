"""Replicates pooled: tasks and comparisons measured by several processes are one, their intervals over the
replicates (`aggregate.replicates`); one process keeps its window interval; every figure says what it covers."""
from __future__ import annotations

import math
from dataclasses import replace

from moecluster.spec.records import TaskResult
from moecluster.report.aggregate import aggregate, replicate_ci
from moecluster.report.aggregate.replicates import base_pair_id
from moecluster.report.aggregate.tasks import covers

from synthetic import preset_pair


def replicated(results: list[TaskResult], factors: list[float], *, gpus: bool = True) -> list[TaskResult]:
    """`results` as `len(factors)` replicates (`-r<k>` ids), replicate k's MoE inferences/J times factors[k - 1],
    each on its own GPU index of node-a when `gpus`."""
    out = []
    n = len(factors)
    for k, f in enumerate(factors, 1):
        for r in results:
            pid = f"{r.spec.pair_id}-r{k}"
            spec = replace(r.spec, pair_id=pid, task_id=pid + r.spec.task_id[len(r.spec.pair_id):], replicate=k,
                           replicates=n)
            scale = f if r.spec.kind == "moe" else 1.0
            ws = tuple(replace(w, energy_j=w.energy_j / scale, sampled_energy_j=w.energy_j / scale,
                               avg_power_w=(w.avg_power_w or 0.0) / scale) if w.energy_j else w for w in r.windows)
            g = tuple(replace(x, index=k, uuid=f"GPU-node-a-{k}") for x in r.gpus) if gpus else r.gpus
            out.append(replace(r, spec=spec, windows=ws, gpus=g))
    return out


def test_replicates_pool_into_one_task_and_one_pair_with_a_t_over_replicates() -> None:
    one = preset_pair("small", 2.0, 1.0)
    agg = aggregate(replicated(one, [1.0, 1.1, 0.95]))
    assert [s.task_id for s in agg.tasks] == ["small-sorted-total-float32-b128-dense",
                                              "small-sorted-total-float32-b128-moe"]
    (pair,) = agg.pairs
    assert pair.pair_id == "small-sorted-total-float32-b128" and len(pair.replicates) == 3
    expected = replicate_ci([r.inferences_per_j for r in pair.replicates if r.inferences_per_j])
    assert pair.inferences_per_j == expected and expected.n == 3 and expected.df == 2.0
    assert math.isclose(pair.inferences_per_j.mean, 2.0 * (1.0 * 1.1 * 0.95) ** (1 / 3), rel_tol=1e-9)
    moe = agg.tasks[1]
    assert len(moe.replicates) == 3 and moe.n_windows == 9 and moe.inferences_per_j.n == 3
    assert pair.ci_covers == "3 replicates on 3 GPUs of 1 node, 3 windows each"
    assert moe.ci_covers == pair.ci_covers + "; t over the 3 GPUs"  # one replicate each: the same t
    assert moe.few() is None and not any("fewer than" in w for w in moe.warnings)


def test_a_tasks_figures_pool_over_gpus_and_its_ratios_over_replicates() -> None:
    """Two replicates on each of two GPUs: a task's inferences/J is a t over the two GPUs' geometric means
    (df 1), since processes on one GPU share its offset; the MoE/dense ratio stays a t over the four
    replicates, each measured on one GPU (its offset cancels)."""
    factors = [1.0, 1.02, 1.2, 1.22]
    results = replicated(preset_pair("small", 2.0, 1.0), factors)
    on_two = [replace(r, gpus=tuple(replace(g, uuid=f"GPU-{(r.spec.replicate + 1) // 2}") for g in r.gpus))
              for r in results]
    agg = aggregate(on_two)
    moe, (pair,) = agg.tasks[1], agg.pairs
    per_replicate = [p.inferences_per_j for p in moe.replicates]
    by_gpu = [replicate_ci([e for e in per_replicate[:2] if e]), replicate_ci([e for e in per_replicate[2:] if e])]
    assert moe.inferences_per_j is not None and moe.inferences_per_j.n == 2 and moe.inferences_per_j.df == 1.0
    assert math.isclose(moe.inferences_per_j.mean, math.sqrt(by_gpu[0].mean * by_gpu[1].mean), rel_tol=1e-9)
    assert moe.ci_covers == "4 replicates on 2 GPUs of 1 node, 3 windows each; t over the 2 GPUs"
    pooled_over_replicates = replicate_ci([e for e in per_replicate if e])
    assert moe.inferences_per_j.hi is not None and pooled_over_replicates.hi is not None
    assert moe.inferences_per_j.hi > pooled_over_replicates.hi  # 1 df between GPUs, not 3 between processes
    assert pair.inferences_per_j is not None and pair.inferences_per_j.n == 4 and pair.inferences_per_j.df == 3.0
    assert pair.ci_covers == "4 replicates on 2 GPUs of 1 node, 3 windows each"


def test_one_process_keeps_its_window_interval_and_says_so() -> None:
    one = preset_pair("small", 2.0, 1.0)
    agg = aggregate(one)
    (pair,) = agg.pairs
    assert pair.replicates == () and pair.ci_covers == "3 windows, 1 process"
    assert agg.tasks[0].result is one[0]  # a store without replicates is read as before


def test_two_replicates_warn_of_a_wide_interval_and_cpu_replicates_say_so() -> None:
    agg = aggregate(replicated(preset_pair("small", 2.0, 1.0), [1.0, 1.2], gpus=False))
    moe = agg.tasks[1]
    assert moe.few() and "fewer than 3 replicates (2)" in moe.few()
    assert moe.ci_covers == "2 replicates on 1 GPU of 1 node, 3 windows each"
    cpu = [replace(r, gpus=()) for r in replicated(preset_pair("small", 2.0, 1.0), [1.0, 1.2])]
    assert aggregate(cpu).tasks[1].ci_covers == "2 replicates on the CPUs of 1 node, 3 windows each"
    two_nodes = [replace(r, node=f"node-{r.spec.replicate}") for r in cpu]  # pooled over the nodes, and says so
    assert aggregate(two_nodes).tasks[1].ci_covers == ("2 replicates on the CPUs of 2 nodes, 3 windows each;"
                                                       " t over the 2 nodes")


def test_base_pair_id_strips_only_its_own_suffix() -> None:
    (d, _) = replicated(preset_pair("small", 2.0, 1.0), [1.0, 1.0])[:2]
    assert base_pair_id(d.spec) == "small-sorted-total-float32-b128"
    lone = replace(d.spec, pair_id="m-r1", replicates=1)  # one replicate: no suffix was added, none is removed
    assert base_pair_id(lone) == "m-r1"


def test_runs_pooled_say_how_many_runs() -> None:
    a = replicated(preset_pair("small", 2.0, 1.0), [1.0, 1.1])
    b = [replace(r, spec=replace(r.spec, run_id="b"), node="node-b") for r in replicated(preset_pair("small", 2.0, 1.0),
                                                                                          [0.9, 1.05])]
    agg = aggregate(a + b)
    (pair,) = agg.pairs
    assert len(pair.replicates) == 4
    assert covers(agg.tasks[1].processes) == "4 replicates from 2 runs on 2 GPUs of 2 nodes, 3 windows each"


def test_break_even_resamples_the_replicates() -> None:
    from synthetic import seed_001_sweep

    agg = aggregate(replicated(seed_001_sweep(), [1.0, 1.03, 0.98]))
    (be, *_) = agg.break_evens
    assert all(len(p.pair_ids) == 3 for p in be.points)
    assert all(p.ratio.n == 3 for p in be.points)


def test_replicates_that_ran_different_forms_are_flagged_with_whether_they_chose_within_noise() -> None:
    from moecluster.spec.records import ChoiceMargin
    from moecluster.report.frames import tasks_frame

    tie = ChoiceMargin(chosen="addmm eager", runner_up="F.linear eager", margin=0.004, noise=0.011,
                       measured_noise=0.011, floor=0.01, tied=("addmm eager", "F.linear eager"), rounds=5)
    clear = ChoiceMargin(chosen="F.linear eager", runner_up="addmm eager", margin=0.05, noise=0.01,
                         measured_noise=0.004, floor=0.01, rounds=20)
    results = replicated(preset_pair("small", 2.0, 1.0), [1.0, 1.0, 1.0])
    choices = {1: tie, 2: clear, 3: clear}
    marked = [replace(r, choice=choices[r.spec.replicate]) if r.spec.kind == "dense" else r for r in results]
    agg = aggregate(marked)
    dense, moe = agg.tasks
    (flag,) = [w for w in dense.warnings if "different forms" in w]
    assert flag == ("replicates ran different forms (r1: addmm eager; r2, r3: F.linear eager) (r1 chose within"
                    " noise, by tie-break order): the interval holds the forms' difference too")
    assert not any("different forms" in w for w in moe.warnings)
    (pair,) = agg.pairs
    assert any("dense: replicates ran different forms" in w for w in pair.warnings)  # the pair's flag
    rows = tasks_frame(agg).set_index("label")
    row = rows.loc["dense/total"]
    assert bool(row["forms_differ"]) and bool(row["choice_within_noise"])
    assert row["choice_margin"] == 0.004 and row["choice_noise"] == 0.011 and row["choice_rounds"] == 5
    assert str(row["choice"]).startswith("r1: addmm eager and F.linear eager within noise (0.4 % < 1.1 %)")
    assert not bool(rows.loc["moe/sorted"]["forms_differ"])
