"""Expanding a sweep into matched pairs."""
from __future__ import annotations

from pathlib import Path

import pytest

from moecluster.spec.mlp.shapes import MATCH_TOLERANCE, PRESETS, DenseShape, MoEShape
from moecluster.head.sweep import SweepError, expand, load_sweep, parse_sweep
from moecluster.head.sweep.estimate import task_estimate_s, watchdog_s
from moecluster.head.sweep.schema import REPLICATES_DEFAULT


def test_issue_example_is_one_pair_per_grid_point(issue_example: str) -> None:
    plan = expand(parse_sweep(issue_example), run_id="r1")
    assert len(plan.pairs) == 2 * 3 * 2 * 2 * REPLICATES_DEFAULT  # models x impl x dtype x batch x replicates
    assert len(plan.tasks) == 2 * len(plan.pairs)
    ids = [t.task_id for t in plan.tasks]
    assert len(set(ids)) == len(ids)
    assert len({p.pair_id for p in plan.pairs}) == len(plan.pairs)
    assert {t.run_id for t in plan.tasks} == {"r1"}


def test_a_pair_is_dense_twins_then_the_moe_sharing_an_id() -> None:
    sweep = parse_sweep("name: x\nreplicates: 1\nmodels: [{preset: medium}]\nimpl: sorted\nmatch: [total, active]\n")
    (pair,) = expand(sweep).pairs
    kinds = [(t.kind, t.impl, t.match) for t in pair.tasks]
    assert kinds == [("dense", "dense", "total"), ("dense", "dense", "active"), ("moe", "sorted", None)]
    assert {t.pair_id for t in pair.tasks} == {pair.pair_id}
    moe = MoEShape(**pair.moe.model).params()
    for spec, target in ((pair.tasks[0], moe.total), (pair.tasks[1], moe.active_per_token)):
        dense = DenseShape(**spec.model).params().total
        assert abs(dense - target) <= MATCH_TOLERANCE * target
    assert pair.params_total[2] == moe.total and pair.params_active[2] == moe.active_per_token


def test_dense_twins_are_not_shared_between_impls() -> None:
    plan = expand(parse_sweep("name: x\nreplicates: 1\nmodels: [{preset: small}]\nimpl: [naive, sorted, grouped]\n"))
    dense = [t for t in plan.tasks if t.kind == "dense"]
    assert len(dense) == 3 and len({t.model["hidden_dim"] for t in dense}) == 1


def test_preset_label_only_for_unmodified_presets() -> None:
    sweep = parse_sweep("name: x\nreplicates: 1\n"
        "models:\n  - preset: small\n  - {preset: small, name: small4, top_k: 4}\n")
    plan = expand(sweep)
    assert [p.moe.preset for p in plan.pairs] == ["small", None]
    assert [p.moe.model_name for p in plan.pairs] == [None, "small4"]
    assert plan.pairs[1].moe.model["top_k"] == 4 and plan.pairs[1].pair_id.startswith("small4-")


def test_varying_axes_appear_in_pair_ids() -> None:
    sweep = parse_sweep("name: x\nreplicates: 1\n"
        "models: [{preset: small}]\ncompile: [false, true]\nexpert_parallel: [1, 2]\n")
    ids = [p.pair_id for p in expand(sweep).pairs]
    assert ids == ["small-grouped-fp32-b128-eager-ep1", "small-grouped-fp32-b128-eager-ep2",
                   "small-grouped-fp32-b128-compiled-ep1", "small-grouped-fp32-b128-compiled-ep2"]


def test_expert_parallel_sets_the_gang_size_of_the_moe_only() -> None:
    (pair,) = expand(parse_sweep("name: x\nreplicates: 1\nmodels: [{preset: small}]\nexpert_parallel: 2\n")).pairs
    assert pair.gpus == 2 and pair.moe.expert_parallel == 2
    assert all(t.expert_parallel == 1 for t in pair.tasks if t.kind == "dense")


def test_cuda_graphs_points_that_cannot_run_are_skipped_with_a_reason() -> None:
    plan = expand(parse_sweep("name: x\nreplicates: 1\n"
        "models: [{preset: small}]\nimpl: [naive, grouped]\ncuda_graphs: true\n"))
    assert [p.moe.impl for p in plan.pairs] == ["grouped"]
    assert len(plan.skipped) == 1 and "naive" in plan.skipped[0]
    with pytest.raises(SweepError, match="expands to no task"):
        expand(parse_sweep("name: x\nreplicates: 1\nmodels: [{preset: small}]\nimpl: naive\ncuda_graphs: true\n"))


def test_estimate_counts_every_repeat_build_warmup_and_window() -> None:
    (pair,) = expand(parse_sweep("name: x\nreplicates: 1\n"
        "models: [{preset: small}]\nrepeats: 3\nduration_s: 10\nwarmup_s: 2\n"
                                 "device: cpu\n")).pairs
    est = pair.estimated_s[1]
    assert est == task_estimate_s(pair.moe, pair.params_total[1])
    assert est > 3 * (10 + 2)
    assert watchdog_s(est) > 2 * est  # a hung pair is given up on only well past its estimate


def test_seed_scaling_example_is_the_seed_study(examples: Path) -> None:
    plan = expand(load_sweep(examples / "seed-scaling.yaml"))
    assert {p.moe.preset for p in plan.pairs} == set(PRESETS)
    assert all(t.dtype == "float32" and t.batch_size == 128 and t.duration_s == 30 for t in plan.tasks)


def test_quickstart_example_is_small_and_quick_on_cpu(examples: Path) -> None:
    plan = expand(load_sweep(examples / "quickstart.yaml"))
    assert all(t.device == "cpu" for t in plan.tasks)
    assert sum(p.total_estimated_s for p in plan.pairs) < 120


def test_cuda_graphs_default_captures_where_possible_for_every_impl() -> None:
    plan = expand(parse_sweep("name: x\nreplicates: 1\nmodels: [{preset: small}]\nimpl: [naive, sorted, grouped]\n"))
    assert not plan.skipped and len(plan.pairs) == 3
    assert {t.cuda_graphs for t in plan.tasks} == {None}


def test_shared_twins_put_every_impl_beside_one_set_of_twins() -> None:
    plan = expand(parse_sweep("name: x\nreplicates: 1\nmodels: [{preset: small}]\nimpl: [naive, sorted, grouped]\n"
                              "match: [total, active]\nbatch_size: [128, 256]\nshare_twins: true\n"))
    assert [p.pair_id for p in plan.pairs] == ["small-fp32-b128", "small-fp32-b256"]
    pair = plan.pairs[0]
    assert [(t.kind, t.impl, t.match) for t in pair.tasks] == [
        ("dense", "dense", "total"), ("dense", "dense", "active"),
        ("moe", "naive", None), ("moe", "sorted", None), ("moe", "grouped", None)]
    assert [t.task_id for t in pair.moes] == ["small-fp32-b128-moe-naive", "small-fp32-b128-moe-sorted",
                                               "small-fp32-b128-moe-grouped"]
    assert len(pair.estimated_s) == len(pair.tasks) == len(pair.params_total)


def test_shared_twins_skip_only_the_impls_that_cannot_meet_required_graphs() -> None:
    plan = expand(parse_sweep("name: x\nreplicates: 1\n"
        "models: [{preset: small}]\nimpl: [naive, grouped]\nshare_twins: true\n"
                              "cuda_graphs: true\n"))
    assert [t.impl for t in plan.pairs[0].moes] == ["grouped"]
    assert plan.skipped == ("small-fp32-b128/naive: cuda_graphs: true needs impl grouped (naive syncs with the"
                            " host); leave cuda_graphs unset to capture where possible",)


def test_pairs_alternate_which_side_starts() -> None:
    plan = expand(parse_sweep("name: x\nreplicates: 1\nmodels: [{preset: small}]\nbatch_size: [1, 2, 3, 4]\n"))
    assert [p.tasks[0].reverse_order for p in plan.pairs] == [False, True, False, True]
    assert all(len({t.reverse_order for t in p.tasks}) == 1 for p in plan.pairs)


def test_model_names_may_hold_dashes() -> None:
    plan = expand(parse_sweep("name: x\nreplicates: 1\nmodels: [{preset: small, name: mixtral-8x7b}]\n"))
    assert plan.pairs[0].pair_id.startswith("mixtral-8x7b-")


def test_short_gpu_windows_get_a_warning_naming_the_bound() -> None:
    from moecluster.head.sweep.estimate import short_window_warning

    warning = short_window_warning(3.0, "cuda", "auto")
    assert warning is not None and "duration_s 3" in warning and "10 s" in warning
    assert short_window_warning(10.0, "cuda", "auto") is None
    assert short_window_warning(3.0, "cpu", "auto") is None and short_window_warning(3.0, "cuda", "fake") is None


def test_replicates_are_independent_pairs_with_suffixed_ids_in_rounds() -> None:
    plan = expand(parse_sweep("name: x\nmodels: [{preset: small}]\nimpl: [naive, sorted]\nreplicates: 3\n"))
    ids = [p.pair_id for p in plan.pairs]
    assert ids == [f"small-{impl}-fp32-b128-r{k}" for k in (1, 2, 3) for impl in ("naive", "sorted")]
    for pair in plan.pairs:
        assert all(t.pair_id == pair.pair_id and t.task_id.startswith(pair.pair_id + "-") for t in pair.tasks)
        assert {(t.replicate, t.replicates) for t in pair.tasks} == {(pair.replicate, 3)}
    # every other replicate of a pair starts from the other side
    naive = [p.tasks[0].reverse_order for p in plan.pairs if "-naive-" in p.pair_id]
    assert naive == [False, True, False]
    assert len({t.task_id for t in plan.tasks}) == len(plan.tasks)


def test_one_replicate_keeps_the_ids_of_stores_written_before_replicates() -> None:
    (pair,) = expand(parse_sweep("name: x\nreplicates: 1\nmodels: [{preset: small}]\n")).pairs
    assert pair.pair_id == "small-grouped-fp32-b128" and pair.moe.task_id == "small-grouped-fp32-b128-moe"
    assert (pair.moe.replicate, pair.moe.replicates) == (1, 1)


def test_default_replicates_and_queue_order_interleave_a_pairs_replicates() -> None:
    from moecluster.head.sweep.pairs import queue_order

    sweep = parse_sweep("name: x\nmodels: [{preset: small}, {preset: medium}]\n")
    assert sweep.replicates == REPLICATES_DEFAULT == 3
    order = queue_order(list(reversed(expand(sweep).pairs)))
    assert [p.replicate for p in order] == [1, 1, 2, 2, 3, 3]
    assert [p.model for p in order[:2]] == ["medium", "small"]  # longest first inside a round


@pytest.mark.parametrize("value, says", [("0", "must be greater than 0"), ("65", "is more than 64, the most it may be"),
                                         ("2.5", "expected"), ('"3"', "expected")])
def test_bad_replicates_are_one_line_naming_the_key(value: str, says: str) -> None:
    with pytest.raises(SweepError) as info:
        parse_sweep(f"name: x\nmodels: [{{preset: small}}]\nreplicates: {value}\n", Path("s.yaml"))
    text = str(info.value)
    assert "replicates" in text and says in text and "\n" not in text
