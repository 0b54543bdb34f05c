"""Step counts every rank of a gang agrees on, so every window holds the same steps on every rank.

An expert-parallel step is collective (its all-to-alls pair up across ranks), so every rank must
run exactly as many steps as the others: a window cannot end "when the time is up" on each rank.
Rank 0 therefore times the warm-up (between barriers, so its clock sees the gang's pace), turns
it into counts, and broadcasts them: the warm-up's remaining steps (to last ≈ `warmup_s`), then a
window's steps (to last ≈ `duration_s`) and a timed pass's steps (≈ `PHASE_PASS_S`). Data-parallel
steps need no partner, but follow the same rule, so both sides of a pair are windows of the same
kind.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from moecluster.measure.session import MIN_WARMUP_STEPS, PROGRESS_EVERY_S
from moecluster.measure.parallel.group import Gang

PHASE_PASS_S = 0.5  # a timed pass for per-phase times lasts about this long
MIN_PHASE_STEPS, MAX_PHASE_STEPS = 3, 200


@dataclass(frozen=True)
class StepPlan:
    """Agreed counts: steps per window and per timed pass; `step_s` is rank 0's warm-up pace (rank 0 only)."""

    window_steps: int
    phase_steps: int
    step_s: float


def run_steps(step: Callable[[], object], count: int, sync: Callable[[], None],
              on_progress: Callable[[int], None] | None = None) -> int:
    """`count` steps back to back (no host sync of their own), then `sync()`; `on_progress(done)` every ~0.5 s."""
    last = time.perf_counter()
    for i in range(count):
        step()
        if on_progress is not None and time.perf_counter() - last >= PROGRESS_EVERY_S:
            on_progress(i + 1)
            last = time.perf_counter()
    sync()
    return count


def timed_steps_s(gang: Gang, step: Callable[[], object], count: int, sync: Callable[[], None]) -> float:
    """Seconds `count` steps took from one barrier to the next, on this rank's clock (a collective)."""
    gang.barrier()
    t0 = time.perf_counter()
    run_steps(step, count, sync)
    gang.barrier()
    return time.perf_counter() - t0


def steps_for(duration_s: float, step_s: float, low: int = 1, high: int | None = None) -> int:
    """Steps of `step_s` that fill `duration_s`, within [low, high]."""
    n = max(low, round(duration_s / step_s)) if step_s > 0 else low
    return min(n, high) if high is not None else n


def warm_up(gang: Gang, step: Callable[[], object], sync: Callable[[], None], warmup_s: float,
            duration_s: float) -> StepPlan:
    """Warm the model up on every rank and agree on the window's and the timed pass's step counts (a collective).

    First `MIN_WARMUP_STEPS` steps (their pace, first calls included, sizes the rest), then as many
    more as fill `warmup_s` (at least one, so the window's count comes from steady-state steps).
    """
    first_s = timed_steps_s(gang, step, MIN_WARMUP_STEPS, sync)
    pace_s = first_s / MIN_WARMUP_STEPS
    (more,) = gang.from_rank0([steps_for(max(0.0, warmup_s - first_s), pace_s)])
    rest_s = timed_steps_s(gang, step, more, sync)
    step_s = rest_s / more
    window, phase = gang.from_rank0([steps_for(duration_s, step_s),
                                     steps_for(PHASE_PASS_S, step_s, MIN_PHASE_STEPS, MAX_PHASE_STEPS)])
    return StepPlan(window_steps=window, phase_steps=phase, step_s=step_s)
