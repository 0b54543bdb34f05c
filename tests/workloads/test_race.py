"""The rule that keeps form choices stable between processes (`workloads.race`).

The decision is tested on given rounds of seconds (what it is: a function of numbers), the race and
`choose_form` on real CPU work timed by the real clock: candidates that do different amounts of work
against candidates that do the same.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import torch
from torch import Tensor

from moecluster.spec.records import ChoiceMargin, TaskResult, TaskSpec
from moecluster.workloads import race
from moecluster.workloads.forms import FormCache, FormOption, Tools, choose_form
from moecluster.workloads.graphs import GraphPolicy
from moecluster.workloads.timing import time_sample_s

CPU = torch.device("cpu")
EAGER_ONLY = GraphPolicy(wanted=None, blocker="device cpu has no CUDA graphs")
ROUNDS = race.RaceRules(min_rounds=6, max_rounds=12, budget_s=5.0)  # more than a CPU task's: a test must not flake


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """One intra-op thread while timing: on a shared CPU, threads that wait on each other spread samples 100×."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_a_clear_lead_chooses_the_fastest_and_records_its_margin_over_the_noise() -> None:
    a = [1.00, 1.01, 0.99, 1.00, 1.00]
    b = [1.10, 1.11, 1.09, 1.10, 1.10]
    chosen, m = race.decide(["b eager", "a eager"], [b, a])
    assert chosen == 1 and m.chosen == "a eager" and m.runner_up == "b eager"
    assert m.margin == pytest.approx(0.10, abs=1e-3) and m.noise is not None and m.margin > m.noise
    assert m.noise == race.FLOOR and m.measured_noise is not None and m.measured_noise < race.FLOOR
    assert not m.within_noise and m.tied == () and m.rounds == 5
    assert m.describe() == "a eager ahead of b eager by 10.0 % (noise 1.0 % floor, 5 rounds)"


def test_within_noise_the_first_in_tie_break_order_is_chosen_even_if_measured_slower() -> None:
    first = [1.004, 1.006, 1.003, 1.005, 1.004]  # 0.4 % slower: under the 1 % floor
    second = [1.000, 1.001, 0.999, 1.000, 1.001]
    chosen, m = race.decide(["sorted eager", "grouped eager"], [first, second])
    assert chosen == 0 and m.within_noise and m.tied == ("sorted eager", "grouped eager")
    assert m.runner_up == "grouped eager" and m.margin is not None and -0.01 < m.margin < 0
    assert m.describe() == ("sorted eager and grouped eager within noise (0.4 % < 1.0 % floor): chose sorted eager by"
                            " tie-break order (5 rounds)")
    again, m2 = race.decide(["sorted eager", "grouped eager"], [second, first])  # the other replicate's luck
    assert again == 0 and m2.chosen == "sorted eager" and m2.within_noise


def test_a_lead_smaller_than_the_measured_noise_is_a_tie_and_three_candidates_keep_their_order() -> None:
    noisy = [1.00, 1.08, 0.95, 1.10, 0.97]
    steady = [0.98, 0.98, 0.98, 0.98, 0.98]
    slow = [1.50, 1.52, 1.49, 1.51, 1.50]
    chosen, m = race.decide(["noisy graph", "slow graph", "steady eager"], [noisy, slow, steady])
    assert chosen == 0 and m.tied == ("noisy graph", "steady eager")
    assert m.noise is not None and m.noise > race.FLOOR and m.noise == m.measured_noise
    assert "slow graph" not in m.tied


def test_the_race_stops_early_only_when_the_outcome_is_beyond_doubt() -> None:
    rules = race.RaceRules(min_rounds=3, max_rounds=8, budget_s=float("inf"))
    far = [[1.0, 1.0, 1.01], [2.0, 2.01, 2.0]]
    assert not race.settled([row[:2] for row in far], rules)  # before min_rounds, never
    assert race.settled(far, rules)
    close = [[1.0, 1.02, 0.99], [1.03, 1.0, 1.04]]  # a lead of about 2 %, noise of the same order
    assert not race.settled(close, rules)
    seen: list[int] = []
    samples = race.race(2, lambda i: (seen.append(i), [1.0, 1.05][i])[1], rules)
    assert len(samples[0]) == 3 and seen[:4] == [0, 1, 1, 0]  # 5 % > 3 × the 1 % floor: settled; the order rotates
    steady = race.race(2, lambda i: [1.0, 1.02][i], rules)
    assert len(steady[0]) == 8  # 2 %: a real lead, but not beyond doubt: every round runs
    with pytest.raises(ValueError):
        race.RaceRules(min_rounds=1, max_rounds=3, budget_s=1.0)


def test_screening_keeps_the_close_candidates_in_their_order_and_at_most_race_max() -> None:
    assert race.finalists([2.0, 1.0, 1.05, None, 1.6]) == [1, 2]
    assert race.finalists([1.0, 1.01, 1.02, 1.03, 1.04, 1.05, 1.06, 1.6]) == [0, 1, 2, 3, 4, 5]
    assert race.finalists([None, None]) == []
    m = race.screened(["a eager", "b eager"], [1.0, 1.35], 0)
    assert m.margin == pytest.approx(0.35) and m.noise is None and m.rounds == 0
    assert m.describe() == "a eager ahead of b eager by 35.0 % at screening (one median each; not raced)"


def _work(n: int) -> Callable[[], Tensor]:
    a, b = torch.randn(96, 96), torch.randn(96, 96) / 10

    def run() -> Tensor:
        x = a
        for _ in range(n):
            x = torch.tanh(x @ b)
        return x
    return run


def test_real_work_a_candidate_doing_far_less_wins_clearly() -> None:
    calls = [_work(64), _work(1)]
    samples = race.race(2, lambda i: time_sample_s(calls[i], CPU), ROUNDS)
    chosen, m = race.decide(["heavy eager", "light eager"], samples)
    assert chosen == 1 and not m.within_noise and m.margin is not None and m.noise is not None
    assert m.margin > m.noise and m.rounds >= ROUNDS.min_rounds


def test_real_work_the_same_work_is_within_noise_and_the_tie_break_chooses() -> None:
    """Two candidates doing the same work: each race calls a tie and chooses the first listed, whichever
    measured faster (a lead beyond 99 % noise by chance is possible, rare: two of three must tie)."""
    same = _work(4)
    outcomes = []
    for labels in (["x eager", "y eager"], ["y eager", "x eager"], ["x eager", "y eager"]):
        samples = race.race(2, lambda i: time_sample_s(same, CPU), ROUNDS)
        chosen, m = race.decide(labels, samples)
        if m.within_noise:
            assert chosen == 0 and m.chosen == labels[0] and m.tied == tuple(labels)
        outcomes.append(m.within_noise)
    assert sum(outcomes) >= 2


class Forms:
    """A 'model' whose forms do the same work (`same`, `same2`) or far more (`heavy`), really computed."""

    def __init__(self) -> None:
        gen = torch.Generator().manual_seed(0)
        self.x, self.w = torch.randn(64, 64, generator=gen), torch.randn(64, 64, generator=gen) / 8
        self.form = "same"

    def run(self) -> Tensor:
        y = self.x
        for _ in range(48 if self.form == "heavy" else 3):
            y = torch.tanh(y @ self.w)
        return y if self.form != "heavy" else y * 0 + self._light()

    def _light(self) -> Tensor:
        y = self.x
        for _ in range(3):
            y = torch.tanh(y @ self.w)
        return y

    def option(self, name: str) -> FormOption:
        def use() -> None:
            self.form = name
        return FormOption(name=name, aspects=(("kernel", name),), use=use)


def test_choose_form_on_real_timing_records_the_margin_and_keeps_the_tie_break() -> None:
    model = Forms()
    chosen = choose_form([model.option("heavy"), model.option("same")], model.run, device=CPU, policy=EAGER_ONLY,
                         tolerance=1e-5, cache=FormCache(), key="k", tools=Tools())
    margin = chosen.choice.margin
    assert model.form == "same" and margin is not None and margin.chosen == "same eager"
    assert margin.runner_up == "heavy eager" and margin.margin is not None and margin.margin > 0.5
    assert chosen.form["choice"].startswith("by measurement at prepare (perf_counter): same eager ahead of")
    # the same work twice: every tie keeps the first offered (on a loaded CPU a single screening median can
    # still put one more than 50 % behind, a choice then made at screening: hence at least one tie in five)
    ties = [choose_form([model.option("same"), model.option("same2")], model.run, device=CPU, policy=EAGER_ONLY,
                        tolerance=1e-5, cache=FormCache(), key="k", tools=Tools()) for _ in range(5)]
    kept = [t.choice.option for t in ties if t.choice.margin is not None and t.choice.margin.within_noise]
    assert kept and set(kept) == {"same"}


def test_the_margin_survives_the_record_round_trip() -> None:
    spec = TaskSpec(task_id="t", pair_id="p", kind="dense", impl="dense", model={}, match="total")
    margin = ChoiceMargin(chosen="a graph", runner_up="b graph", margin=-0.004, noise=0.011, measured_noise=0.011,
                          floor=0.01, tied=("a graph", "b graph"), rounds=7)
    back = TaskResult.from_json(TaskResult(spec=spec, status="ok", choice=margin).to_json())
    assert back.choice == margin and back.choice.within_noise
    assert TaskResult.from_json(TaskResult(spec=spec, status="ok").to_json()).choice is None
