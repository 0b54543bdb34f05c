"""Crossings of 1 along a size sweep, by hand, for one curve and for many at once."""
from __future__ import annotations

import math

import numpy as np
import pytest

from moecluster.report.aggregate.crossing import ABOVE, BELOW, CROSSING, NEITHER, all_crossings, first_upward


def test_first_upward_crossing_by_hand_for_several_curves() -> None:
    xs = [6.0, 7.0, 8.0]
    curves = [[-1.0, 1.0, 2.0],   # crosses at 6.5
              [-1.0, -3.0, 1.0],  # crosses at 7 + 3/4
              [0.5, 1.0, 2.0],    # MoE ahead at every size
              [-0.5, -1.0, -2.0],  # dense ahead at every size
              [1.0, -1.0, -2.0]]  # falls behind: no upward crossing
    at, side = first_upward(xs, curves)
    assert at[:2] == pytest.approx([6.5, 7.75])
    assert np.isnan(at[2:]).all()
    assert side.tolist() == [CROSSING, CROSSING, BELOW, ABOVE, NEITHER]


def test_a_ratio_of_exactly_one_counts_as_moe_ahead() -> None:
    at, side = first_upward([1.0, 2.0], [[-1.0, 0.0]])
    assert at[0] == pytest.approx(2.0) and side[0] == CROSSING
    _, side = first_upward([1.0, 2.0], [[0.0, 0.0]])
    assert side[0] == BELOW


def test_all_crossings_in_order_with_their_direction() -> None:
    logs = [math.log(0.5), math.log(2.0), math.log(0.5)]
    assert all_crossings([0.0, 1.0, 2.0], logs) == [(pytest.approx(0.5), "up"), (pytest.approx(1.5), "down")]
    assert all_crossings([0.0, 1.0], [0.1, 0.2]) == []
