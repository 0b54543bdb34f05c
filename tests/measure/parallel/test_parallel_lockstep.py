"""Step counts from a pace: they fill the wanted time within bounds."""
from __future__ import annotations

from moecluster.measure.parallel.lockstep import run_steps, steps_for


def test_steps_fill_the_duration_within_bounds() -> None:
    assert steps_for(30.0, 0.01) == 3000
    assert steps_for(0.001, 0.5) == 1
    assert steps_for(0.5, 1e-6, low=3, high=200) == 200
    assert steps_for(1.0, 0.0, low=3) == 3


def test_run_steps_runs_the_count_then_syncs() -> None:
    calls: list[str] = []
    assert run_steps(lambda: calls.append("step"), 4, lambda: calls.append("sync")) == 4
    assert calls == ["step"] * 4 + ["sync"]
