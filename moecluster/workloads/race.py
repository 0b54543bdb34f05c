"""Choose between candidate forms so that the choice is stable: interleaved rounds, a margin, a tie-break.

A form that flips between processes is noise the benchmark adds to itself: every replicate of a pair
chooses its forms afresh (an independent process), so two candidates that run equally fast would be
picked at random, and the replicates' figures would differ by the forms' difference and more (other
kernels, other graphs). The rule, the same for the MLP's forms, the LLM's kernels and expert-parallel
dispatch:

1. **Screen**: every candidate is timed once (median of a few samples, as before); those more than
   `RACE_RANGE` behind the fastest are out (a lead that large is no timing noise); at most `RACE_MAX`
   go on (their CUDA graphs are alive at once). The range is wide on purpose: which candidates race
   decides which ties are seen, and a narrow cut on one noisy median would move between processes
   (on a shared CPU, a 10 % cut let two replicates race different sets and tie-break differently).
2. **Race**: the finalists are timed in interleaved rounds, one sample each per round in a rotating
   order, so a slow drift of the device (clocks, temperature) falls on every candidate alike and each
   round gives a *paired* ratio. The race runs `max_rounds`, or fewer where the rounds have taken
   `budget_s` (at least `min_rounds`): how many depends on how long a round takes, not on what it
   measured, since stopping at the first look that shows a lead would call a lead by chance. It
   stops early only where the outcome is beyond doubt (`settled`): every other finalist behind the
   fastest by more than `EARLY` times its noise, or measured to within the floor.
3. **Decide**: the fastest is the finalist with the lowest geometric-mean time. Another finalist is
   *within noise* of it when its lead (geometric mean of the paired ratios − 1) is at most the noise:
   the 99 % t half-width of those ratios over the rounds (99 %, not 95 %: a flip between replicates
   costs every figure of the task, a tie at most the noise in speed), and at least `floor` (1 %: a
   window's energy reading resolves about that much, so a smaller lead cannot show in a result,
   while flipping on it would). The choice is the first of the fastest and those within noise of it **in the fixed
   tie-break order**, the order the candidates are offered in (see each caller), so replicates that
   measure the same tie choose the same form; the record (`records.ChoiceMargin`) says so.

Only the decision is pure (`decide`, `settled`); the caller supplies how one sample is taken.
"""
from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from moecluster.spec.records import ChoiceMargin

RACE_RANGE = 0.5  # screened more than 50 % behind the fastest: out, no race needed
RACE_MAX = 6  # the most finalists raced (eager forms cost nothing held; graphs hold their memory)
FLOOR = 0.01  # a lead under 1 % is never acted on
CONFIDENCE = 0.99
EARLY = 3.0  # a race stops before its rounds are done only for a lead this many times its noise


@dataclass(frozen=True)
class RaceRules:
    """How long a race runs: at least `min_rounds`, at most `max_rounds`, and no new round once the
    rounds have taken `budget_s` (wall clock); `floor`: the smallest lead acted on (relative)."""

    min_rounds: int
    max_rounds: int
    budget_s: float
    floor: float = FLOOR

    def __post_init__(self) -> None:
        if not 2 <= self.min_rounds <= self.max_rounds:
            raise ValueError(f"need 2 <= min_rounds <= max_rounds, got {self.min_rounds}, {self.max_rounds}")


GPU_RULES = RaceRules(min_rounds=5, max_rounds=20, budget_s=3.0)
CPU_RULES = RaceRules(min_rounds=3, max_rounds=8, budget_s=0.5)  # a CPU choice matters little: shorter


def rules_for(device: torch.device) -> RaceRules:
    """The race's rules on `device`."""
    return GPU_RULES if device.type == "cuda" else CPU_RULES


def finalists(times_s: Sequence[float | None], race_range: float = RACE_RANGE, most: int = RACE_MAX) -> list[int]:
    """Indexes of the candidates that go on to the race, in their (tie-break) order: those screened
    within `race_range` of the fastest, the `most` fastest of them; None: it did not run."""
    ran = [(t, i) for i, t in enumerate(times_s) if t is not None]
    if not ran:
        return []
    best = min(t for t, _ in ran)
    close = sorted((t, i) for t, i in ran if t <= best * (1 + race_range))[:most]
    return sorted(i for _, i in close)


def screened(labels: Sequence[str], times_s: Sequence[float | None], chosen: int) -> ChoiceMargin:
    """The record of a choice decided at screening (one finalist): the next fastest's lead, no noise."""
    others = [(t, i) for i, t in enumerate(times_s) if t is not None and i != chosen]
    mine = times_s[chosen]
    if not others or mine is None or mine <= 0:
        return ChoiceMargin(chosen=labels[chosen], floor=FLOOR)
    t, i = min(others)
    return ChoiceMargin(chosen=labels[chosen], runner_up=labels[i], margin=t / mine - 1, floor=FLOOR)


def _t_quantile(df: int) -> float:
    from scipy.stats import t as student_t  # at prepare only: scipy is slow to import

    return float(student_t.ppf(0.5 + CONFIDENCE / 2, df))


@dataclass(frozen=True)
class _Lead:
    """One finalist against the fastest: its lead and the noise of it (both relative)."""

    index: int
    lead: float
    measured_noise: float
    noise: float


def _leads(samples_s: Sequence[Sequence[float]], floor: float) -> tuple[int, list[_Lead]]:
    """The fastest finalist (lowest mean log time; the earlier on a tie) and every other's lead on it."""
    logs = [[math.log(max(s, 1e-12)) for s in row] for row in samples_s]
    fastest = min(range(len(logs)), key=lambda i: (statistics.fmean(logs[i]), i))
    n = len(logs[fastest])
    quantile = _t_quantile(n - 1)
    out = []
    for i, row in enumerate(logs):
        if i == fastest:
            continue
        diffs = [a - b for a, b in zip(row, logs[fastest])]
        half = quantile * statistics.stdev(diffs) / math.sqrt(n)
        measured = math.expm1(half)
        out.append(_Lead(i, math.expm1(statistics.fmean(diffs)), measured, max(floor, measured)))
    return fastest, out


def settled(samples_s: Sequence[Sequence[float]], rules: RaceRules) -> bool:
    """Whether more rounds could not change the decision: every other finalist is behind the fastest by
    more than `EARLY` times its noise, or its lead and noise together are within the floor (a tie no
    further rounds can split into a lead that counts)."""
    if len(samples_s[0]) < rules.min_rounds:
        return False
    _, leads = _leads(samples_s, rules.floor)
    return all(x.lead > EARLY * x.noise or x.lead + x.measured_noise <= rules.floor for x in leads)


def decide(labels: Sequence[str], samples_s: Sequence[Sequence[float]],
           floor: float = FLOOR) -> tuple[int, ChoiceMargin]:
    """The chosen finalist (index into `labels`, which are in tie-break order) and the record of how
    clearly it won; `samples_s[i]` are finalist i's seconds per call, one per round (rounds >= 2)."""
    if len(labels) != len(samples_s) or not labels:
        raise ValueError("one row of samples per finalist, and at least one finalist")
    rounds = len(samples_s[0])
    if len(labels) == 1:
        return 0, ChoiceMargin(chosen=labels[0], floor=floor, rounds=rounds)
    if rounds < 2 or any(len(row) != rounds for row in samples_s):
        raise ValueError("every finalist needs the same number of rounds, at least 2")
    fastest, leads = _leads(samples_s, floor)
    tied = sorted([fastest] + [x.index for x in leads if x.lead <= x.noise])
    chosen = tied[0]
    by_index = {x.index: x for x in leads}
    if len(tied) == 1:
        nearest = min(leads, key=lambda x: x.lead)
        runner, margin, noise = nearest.index, nearest.lead, nearest
    elif chosen != fastest:  # the tie-break kept a candidate measured slower, within noise
        noise = by_index[chosen]
        runner, margin = fastest, -(noise.lead / (1 + noise.lead))
    else:
        noise = min((by_index[i] for i in tied if i != fastest), key=lambda x: x.lead)
        runner, margin = noise.index, noise.lead
    return chosen, ChoiceMargin(chosen=labels[chosen], runner_up=labels[runner], margin=margin, noise=noise.noise,
                                measured_noise=noise.measured_noise, floor=floor,
                                tied=tuple(labels[i] for i in tied) if len(tied) > 1 else (), rounds=rounds)


def race(count: int, sample: Callable[[int], float], rules: RaceRules,
         clock: Callable[[], float] = time.perf_counter) -> list[list[float]]:
    """Interleaved rounds of `count` finalists: `sample(i)` times one sample of finalist i (seconds per
    call); each round starts one finalist later than the last. Rounds go on until `settled`, `max_rounds`,
    or `budget_s` of `clock` spent after `min_rounds`. Returns each finalist's samples, in round order.

    A gang passes a `clock` every rank reads alike (or one that never runs out) so that every rank
    runs the same rounds."""
    samples: list[list[float]] = [[] for _ in range(count)]
    start = clock()
    for r in range(rules.max_rounds):
        for k in range(count):
            i = (r + k) % count
            samples[i].append(sample(i))
        if r + 1 >= rules.min_rounds and (settled(samples, rules) or clock() - start >= rules.budget_s):
            break
    return samples
