"""The open loop's arrival schedule: seeded gamma gaps (exponential at burstiness 1) whose rate and spread
match what was asked within a statistical bound, the same sequence for the same seed however it is read,
and bad rates refused."""
from __future__ import annotations

import math
import statistics

import pytest

from moecluster.workloads.serve.arrivals import BLOCK, Arrivals

N = 20_000


def gaps(arrivals: Arrivals, n: int = N) -> list[float]:
    offsets = arrivals.schedule_s(n + 1)
    return [b - a for a, b in zip(offsets, offsets[1:])]


@pytest.mark.parametrize("rate, burstiness", [(4.0, 1.0), (0.5, 1.0), (20.0, 0.25), (2.0, 4.0)])
def test_the_rate_and_spread_are_those_asked_for_within_a_statistical_bound(rate: float, burstiness: float) -> None:
    g = gaps(Arrivals(rate, burstiness, seed=7))
    mean, sd = 1 / rate, 1 / (rate * math.sqrt(burstiness))  # a gamma(k, 1/(rate k)) gap's mean and sd
    assert abs(statistics.fmean(g) - mean) < 5 * sd / math.sqrt(N)  # 5 standard errors: fails ~1 in 10^6
    cv = statistics.stdev(g) / statistics.fmean(g)
    assert cv == pytest.approx(1 / math.sqrt(burstiness), rel=0.06)  # Poisson (k = 1): CV 1; burstier: more
    assert min(g) >= 0  # a bursty gap may be shorter than a float can add to the time so far


def test_arrivals_start_at_once_and_only_grow() -> None:
    offsets = Arrivals(3.0, seed=1).schedule_s(500)
    assert offsets[0] == 0.0 and all(b > a for a, b in zip(offsets, offsets[1:]))


def test_the_same_seed_gives_the_same_sequence_however_far_it_is_read() -> None:
    a, b = Arrivals(2.5, 1.0, seed=11), Arrivals(2.5, 1.0, seed=11)
    long = a.schedule_s(3 * BLOCK + 5)
    assert b.schedule_s(7) == long[:7] and a.schedule_s(3 * BLOCK + 5) == long
    assert Arrivals(2.5, 1.0, seed=12).schedule_s(7) != long[:7]
    assert Arrivals(5.0, 1.0, seed=11).schedule_s(7) != long[:7]


@pytest.mark.parametrize("rate, burstiness", [(0.0, 1.0), (-1.0, 1.0), (math.inf, 1.0), (math.nan, 1.0),
                                              (1.0, 0.0), (1.0, math.inf)])
def test_a_rate_or_burstiness_that_is_not_finite_and_positive_is_refused(rate: float, burstiness: float) -> None:
    with pytest.raises(ValueError, match="finite number > 0"):
        Arrivals(rate, burstiness)
