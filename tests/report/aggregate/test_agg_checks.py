"""The warnings beside a task's figures: few windows, a roofline above 1, and the node's own."""
from __future__ import annotations

from dataclasses import replace

import moecluster_synthetic as syn
from moecluster.report.aggregate import task_stats
from moecluster.report.aggregate.checks import few_windows, task_warnings


def test_three_windows_warn_of_nothing() -> None:
    r = syn.task("t", "p", "moe", rate=1000.0, eff=10.0, total=10, active=5)
    assert task_warnings(r) == () and task_stats(r).warnings == ()


def test_fewer_than_three_windows_are_named() -> None:
    two = syn.task("t", "p", "moe", rate=1000.0, eff=10.0, total=10, active=5, spread=(-0.01, 0.01))
    one = syn.task("t", "p", "moe", rate=1000.0, eff=10.0, total=10, active=5, spread=(0.0,))
    assert task_warnings(two) == ("fewer than 3 windows (2): a t interval with 1 degree of freedom, very wide",)
    assert task_warnings(one) == ("fewer than 3 windows (1): no interval",)
    assert few_windows(3) is None


def test_roofline_above_one_says_why() -> None:
    r = syn.task("t", "p", "moe", rate=1000.0, eff=10.0, total=10, active=5)
    assert r.roofline is not None
    fast = replace(r, roofline=replace(r.roofline, fraction=1.3, note="the peak GEMM ran in float32"))
    assert task_warnings(fast) == ("roofline fraction 1.30 above 1: the peak GEMM ran in float32",)
    unexplained = replace(r, roofline=replace(r.roofline, fraction=1.3))
    assert task_warnings(unexplained) == ("roofline fraction 1.30 above 1: faster than the peaks measured on the"
                                          " device allow",)


def test_the_nodes_warnings_come_first_and_once() -> None:
    r = syn.task("t", "p", "moe", rate=1000.0, eff=10.0, total=10, active=5, spread=(0.0,))
    node = ("energy resolution ±0.5 J is 2 % of the window's 25 J (above 1 %): use longer windows",
            "fewer than 3 windows (1): no interval")
    assert task_warnings(replace(r, warnings=node)) == node


def test_windows_that_overran_their_asked_length_are_counted() -> None:
    r = syn.task("t", "p", "moe", rate=1000.0, eff=10.0, total=10, active=5)
    asked_s = r.spec.duration_s
    on_time = replace(r, windows=tuple(replace(w, duration_s=asked_s * 1.04) for w in r.windows))
    assert task_warnings(on_time) == ()
    late = replace(r, windows=(replace(r.windows[0], duration_s=asked_s * 3.86), *r.windows[1:]))
    assert task_warnings(late) == (f"1 of 3 windows overran the asked {asked_s:g} s by more than one step"
                                   f" (longest {asked_s * 3.86:.2f} s, 3.86×)",)


def test_a_window_may_end_one_step_late() -> None:
    """A window ends after the step in flight at its deadline: 1.05 × asked plus one step is on time."""
    r = syn.task("t", "p", "moe", rate=1000.0, eff=10.0, total=10, active=5)
    asked_s = r.spec.duration_s
    steps = 4  # a long step: each window holds four of them
    long_steps = tuple(replace(w, duration_s=asked_s * 1.3, inferences=steps * r.spec.batch_size) for w in r.windows)
    assert task_warnings(replace(r, windows=long_steps)) == ()  # 1.3 × asked < 1.05 × asked + 1.3 / 4 × asked
    many_steps = tuple(replace(w, duration_s=asked_s * 1.3, inferences=1000 * r.spec.batch_size) for w in r.windows)
    assert "3 of 3 windows overran" in task_warnings(replace(r, windows=many_steps))[0]


def test_the_form_a_replicate_ran_is_its_choice_with_the_fused_tiles_but_not_their_times() -> None:
    from moecluster.spec.records import ChoiceMargin
    from moecluster.report.aggregate.checks import form_ran, forms_differ

    base = syn.demo_results()[0]
    tiles = "BLOCK_M 64; first N64 K64 G8 w4 s3; hidden N128 K64 G8 w4 s3; last N64 K64 G8 w4 s3"
    fused = ChoiceMargin(chosen="fused graph")
    one = replace(base, choice=fused, form={"tiles": f"{tiles} (tuned at prepare: 1.2 ms)"})
    two = replace(one, form={"tiles": f"{tiles} (tuned at prepare: 1.3 ms)"})
    assert form_ran(one) == form_ran(two) == f"fused graph [{tiles}]"
    assert forms_differ([("r1", one), ("r2", two)]) is None
    other = replace(two, form={"tiles": tiles.replace("hidden N128", "hidden N64") + " (tuned at prepare: 1.2 ms)"})
    assert forms_differ([("r1", one), ("r2", other)]) is not None
    old = replace(base, choice=None, form={"layout": "addmm [in,out]", "graph": "eager: device cpu has no CUDA graphs"})
    assert form_ran(old) == "addmm [in,out] · eager"
