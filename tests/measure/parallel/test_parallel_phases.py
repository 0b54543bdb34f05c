"""Phase marks on the CPU: each phase's mean time and bytes per step."""
from __future__ import annotations

import pytest
import torch

from moecluster.measure.parallel.phases import PhaseClock


def test_summary_averages_each_phase_over_steps() -> None:
    clock = PhaseClock(torch.device("cpu"))
    for sent in (100, 300):
        clock.start()
        clock.mark("route")
        clock.mark("dispatch", sent)
    summary = clock.summary()
    assert list(summary) == ["route", "dispatch"] and clock.steps == 2
    assert summary["dispatch"].bytes_sent == 200 and summary["route"].bytes_sent == 0
    assert all(s.time_s >= 0 for s in summary.values())


def test_a_mark_needs_a_step() -> None:
    with pytest.raises(RuntimeError, match="before start"):
        PhaseClock(torch.device("cpu")).mark("route")
