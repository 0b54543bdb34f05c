"""Choosing a model's form by measurement: the fastest candidate, honestly recorded, cached per process.

The timer and the capture are doubles (tests/workloads/conftest.py): what is tested is
the decision and the record, not a clock.
"""
from __future__ import annotations

from contextlib import contextmanager
from collections.abc import Iterator

import pytest
import torch
from torch import Tensor

from moecluster.workloads.forms import (
    CACHED,
    FormCache,
    FormOption,
    GraphPlan,
    choose_form,
    output_tolerance,
    rel_err,
)
from moecluster.workloads.graphs import GraphPolicy

CPU = torch.device("cpu")
EAGER_ONLY = GraphPolicy(wanted=None, blocker="device cpu has no CUDA graphs")
GRAPHS = GraphPolicy(wanted=None, blocker=None)
REQUIRED = GraphPolicy(wanted=True, blocker=None)


class Toy:
    """A 'model' with forms a, b, c (the same function) and `wrong` (another one)."""

    def __init__(self) -> None:
        gen = torch.Generator().manual_seed(0)
        self.w = torch.randn(8, 4, generator=gen, dtype=torch.float64)
        self.x = torch.randn(5, 8, generator=gen, dtype=torch.float64)
        self.form = "a"
        self.fixed = False

    def run(self) -> Tensor:
        if self.form == "wrong":
            return self.x @ self.w + 1
        if self.form == "b":
            return torch.mm(self.x, self.w.t().contiguous().t())
        return self.x @ self.w

    def option(self, name: str, graph: GraphPlan | None = None) -> FormOption:
        def use() -> None:
            self.form = name
        return FormOption(name=name, aspects=(("layout", f"layout {name}"), ("kernel", f"kernel {name}")), use=use,
                          graph=graph or GraphPlan())


def choose(toy: Toy, options: list[FormOption], tools, policy: GraphPolicy = EAGER_ONLY,
           cache: FormCache | None = None):
    cache = cache if cache is not None else FormCache()
    return choose_form(options, toy.run, device=CPU, policy=policy, tolerance=1e-9, cache=cache, key="k",
                       tools=tools.tools())


def test_the_fastest_eager_form_is_chosen_and_every_candidate_recorded(scripted) -> None:
    toy = Toy()
    tools = scripted(lambda: toy.form, {("a", False): 3e-3, ("b", False): 1e-3, ("c", False): 2e-3})
    chosen = choose(toy, [toy.option("a"), toy.option("b"), toy.option("c")], tools)
    assert toy.form == "b"
    assert chosen.form["layout"] == "layout b" and chosen.form["kernel"] == "kernel b"
    assert chosen.form["graph"] == "eager: device cpu has no CUDA graphs"
    assert chosen.form["candidates"] == "a eager 3.000 ms; b eager 1.000 ms; c eager 2.000 ms"
    assert chosen.form["choice"] == ("by measurement at prepare (perf_counter): b eager ahead of c eager by 100.0 %"
                                     " at screening (one median each; not raced)")
    assert chosen.choice.margin is not None and chosen.choice.margin.margin == pytest.approx(1.0)
    assert tools.captured == []
    assert rel_err(chosen.step(), toy.x @ toy.w) < 1e-12


def test_a_faster_graph_is_chosen_captured_again_and_replayed(scripted) -> None:
    toy = Toy()
    times = {("a", False): 3e-3, ("a", True): 2e-3, ("b", False): 2.5e-3, ("b", True): 1e-3}
    tools = scripted(lambda: toy.form, times)
    chosen = choose(toy, [toy.option("a"), toy.option("b", GraphPlan(note="captured here"))], tools, GRAPHS)
    assert chosen.form["graph"] == "captured here"
    assert tools.captured == ["a", "b", "b"]  # each candidate once, the chosen one again for the step
    assert chosen.graph is not None
    chosen.step()
    assert rel_err(chosen.graph.output, toy.x @ toy.w) < 1e-12
    assert "b graph 1.000 ms" in chosen.form["candidates"] and "a graph 2.000 ms" in chosen.form["candidates"]


def test_an_eager_form_faster_than_its_graph_says_so(scripted) -> None:
    toy = Toy()
    tools = scripted(lambda: toy.form, {("a", False): 1e-3, ("a", True): 1.2e-3})
    chosen = choose(toy, [toy.option("a")], tools, GRAPHS)
    assert chosen.graph is None
    assert chosen.form["graph"] == "eager: its eager run measured faster than its graph (1.000 ms vs 1.200 ms)"


def test_within_noise_the_tie_break_order_chooses_and_the_close_ones_are_raced_with_graphs_held(scripted) -> None:
    toy = Toy()
    # b eager measures 0.5 % faster than a graph: within the 1 % floor; a is offered first, and of a form its graph
    times = {("a", False): 1.05e-3, ("a", True): 1.005e-3, ("b", False): 1.0e-3, ("b", True): 1.3e-3,
             ("c", False): 9e-3, ("c", True): 8e-3}
    tools = scripted(lambda: toy.form, times)
    chosen = choose(toy, [toy.option("a"), toy.option("b"), toy.option("c")], tools, GRAPHS)
    margin = chosen.choice.margin
    assert chosen.choice.option == "a" and chosen.choice.graph and chosen.graph is not None
    assert margin is not None and margin.within_noise and margin.chosen == "a graph" and margin.runner_up == "b eager"
    assert margin.tied == ("a graph", "b eager") and margin.rounds == 3  # the others > 3 × noise behind: ends early
    assert tools.captured == ["a", "b", "c", "a", "b", "a"]  # screened, raced (graphs within 50 %), then the step's
    assert not {("c", False), ("c", True)} & set(tools.timed[6:])  # 8× slower: out at screening, never raced
    assert chosen.form["choice"] == ("by measurement at prepare (perf_counter): a graph and b eager within noise"
                                     " (0.5 % < 1.0 % floor): chose a graph by tie-break order (3 rounds)")


def test_a_form_that_cannot_be_captured_runs_eagerly_with_the_reason(scripted) -> None:
    toy = Toy()
    tools = scripted(lambda: toy.form, {("a", False): 1e-3, ("b", False): 2e-3, ("b", True): 1.5e-3},
                     fail_capture={"b"})
    chosen = choose(toy, [toy.option("a", GraphPlan(blocker="a syncs with the host")), toy.option("b")], tools, GRAPHS)
    assert chosen.form["graph"] == "eager: a syncs with the host"
    assert "b graph: capture failed: RuntimeError: operation not permitted" in chosen.form["candidates"]
    assert ("b", True) not in tools.timed


def test_a_required_graph_takes_the_fastest_graph_even_if_an_eager_form_is_faster(scripted) -> None:
    toy = Toy()
    tools = scripted(lambda: toy.form, {("a", False): 1e-3, ("b", True): 4e-3})
    chosen = choose(toy, [toy.option("a", GraphPlan(blocker="a syncs")), toy.option("b")], tools, REQUIRED)
    assert toy.form == "b" and chosen.graph is not None
    assert ("a", False) not in tools.timed and ("b", False) not in tools.timed  # eager is not a candidate


def test_a_required_graph_that_no_form_allows_names_why(scripted) -> None:
    toy = Toy()
    tools = scripted(lambda: toy.form, {})
    with pytest.raises(ValueError, match="cuda_graphs: true, but no form can be captured: a: a syncs with the host"):
        choose(toy, [toy.option("a", GraphPlan(blocker="a syncs with the host"))], tools, REQUIRED)


def test_a_required_graph_whose_capture_fails_names_why(scripted) -> None:
    toy = Toy()
    tools = scripted(lambda: toy.form, {}, fail_capture={"a", "b"})
    with pytest.raises(ValueError, match="in a CUDA graph .*a graph: capture failed"):
        choose(toy, [toy.option("a"), toy.option("b")], tools, REQUIRED)


def test_a_form_computing_another_function_is_rejected(scripted) -> None:
    toy = Toy()
    tools = scripted(lambda: toy.form, {("a", False): 2e-3, ("wrong", False): 1e-3})
    chosen = choose(toy, [toy.option("a"), toy.option("wrong")], tools)
    assert toy.form == "a"
    assert "wrong eager: output differs from a (relative error" in chosen.form["candidates"]
    assert ("wrong", False) not in tools.timed


def test_a_graph_whose_replay_differs_from_eager_is_rejected(scripted) -> None:
    toy = Toy()
    tools = scripted(lambda: toy.form, {("a", False): 2e-3, ("a", True): 1e-3}, corrupt_graph={"a"})
    chosen = choose(toy, [toy.option("a")], tools, GRAPHS)
    assert chosen.graph is None
    assert "a graph: capture failed: _Mismatch: graph output differs from eager" in chosen.form["candidates"]


def test_the_graph_context_is_entered_around_the_capture_only(scripted) -> None:
    toy = Toy()
    seen: list[bool] = []

    @contextmanager
    def fixed() -> Iterator[None]:
        toy.fixed = True
        try:
            yield
        finally:
            toy.fixed = False

    tools = scripted(lambda: toy.form, {("a", False): 2e-3, ("a", True): 1e-3})
    capture = tools.capture

    def spying_capture(fn, keepalive):
        seen.append(toy.fixed)
        return capture(fn, keepalive)

    tools.capture = spying_capture
    choose(toy, [toy.option("a", GraphPlan(context=fixed))], tools, GRAPHS)
    assert seen == [True, True] and toy.fixed is False


def test_a_cached_choice_is_applied_without_measuring_again(scripted) -> None:
    toy = Toy()
    cache = FormCache()
    tools = scripted(lambda: toy.form, {("a", False): 2e-3, ("b", False): 1e-3})
    first = choose(toy, [toy.option("a"), toy.option("b")], tools, cache=cache)
    toy.form = "a"
    tools.timed.clear()
    again = choose(toy, [toy.option("a"), toy.option("b")], tools, cache=cache)
    assert tools.timed == [] and toy.form == "b" and len(cache) == 1
    assert again.form["choice"] == CACHED
    assert again.form["candidates"] == first.form["candidates"]


def test_a_single_candidate_is_not_measured(scripted) -> None:
    toy = Toy()
    tools = scripted(lambda: toy.form, {})
    chosen = choose(toy, [toy.option("a", GraphPlan(blocker="reference code syncs"))], tools, GRAPHS)
    assert tools.timed == []
    assert chosen.form["graph"] == "eager: reference code syncs"
    assert chosen.form["candidates"] == "only one: a eager"


def test_output_tolerance_is_looser_in_half_precision() -> None:
    assert output_tolerance(torch.bfloat16) > output_tolerance(torch.float32) > 0


def test_rel_err_compares_finite_entries_and_flags_overflow_in_one_form_only() -> None:
    ref = torch.tensor([1.0, float("inf"), 2.0])
    assert rel_err(torch.tensor([1.0, float("inf"), 2.0]), ref) == 0.0
    assert rel_err(torch.tensor([1.0, 3.0, 2.0]), ref) == float("inf")
    assert rel_err(torch.zeros(2), torch.zeros(3)) == float("inf")


def test_a_process_that_goes_on_to_another_replicate_chooses_afresh() -> None:
    from moecluster.workloads.forms import FormCache, FormChoice

    cache = FormCache()
    choice = FormChoice.__new__(FormChoice)  # any object: the cache does not look inside
    cache.put("k", choice)
    cache.for_replicate(1)
    assert cache.get("k") is choice  # the same replicate keeps its choices
    cache.for_replicate(2)
    assert cache.get("k") is None and len(cache) == 0
