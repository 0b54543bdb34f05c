"""The LLM workload behind the runner's interface: prepare on CPU, the record of how it ran, the choice of a
graph (a test double replays eagerly), and the specs it refuses."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import pytest
import torch
from torch import Tensor

pytest.importorskip("transformers")

from moecluster.spec.records import TaskSpec  # noqa: E402
from moecluster.workloads.workload import get_workload  # noqa: E402
from moecluster.workloads.graphs import GraphPolicy  # noqa: E402
from moecluster.workloads.forms import FormCache  # noqa: E402
from moecluster.workloads.llm.forms import LlmTools  # noqa: E402
from moecluster.spec.llm.presets import PRESETS  # noqa: E402
from moecluster.spec.llm.twins import match_dense  # noqa: E402
from moecluster.workloads.llm.workload import LlmWorkload  # noqa: E402

CPU = torch.device("cpu")
MOE = PRESETS["tiny-mixtral"].shape


def spec(**over: Any) -> TaskSpec:
    base = TaskSpec(task_id="t", pair_id="p", kind="moe", impl="grouped", model=MOE.as_model(), workload="llm",
                    architecture="mixtral", device="cpu", batch_size=2, phase="decode", prompt_len=5, gen_tokens=3,
                    path="fast", duration_s=0.1, warmup_s=0.0)
    return replace(base, **over)


class StepGraph:
    """A CUDA graph's stand-in: `replay()` runs the captured step eagerly into a static output."""

    def __init__(self, fn: Callable[[], Tensor], reset: Callable[[], None], keepalive: Sequence[Tensor]) -> None:
        reset()
        self.fn = fn
        self.output = torch.full_like(fn(), float("nan"))
        reset()

    def replay(self) -> None:
        with torch.inference_mode():
            self.output.copy_(self.fn())


def graphs_win() -> LlmTools:
    """Graph replays time at half the eager run (whatever ran), so a graph is chosen where one is tried."""
    def timer(fn: Callable[[], object], device: torch.device) -> float:
        fn()
        return 0.01 if "respond" in getattr(fn, "__qualname__", "") or "replay" in str(fn) else 0.02
    return LlmTools(timer=timer, capture=StepGraph)


@pytest.mark.parametrize("phase", ["decode", "prefill"])
def test_fast_path_prepares_checked_and_recorded(phase: str) -> None:
    s = spec(phase=phase, gen_tokens=3 if phase == "decode" else 0)
    prepared = LlmWorkload(choices=FormCache()).prepare(s, CPU, torch.float32)
    per_step = s.batch_size * (s.gen_tokens if phase == "decode" else s.prompt_len)
    assert prepared.items_per_batch == per_step
    assert prepared.params == MOE.params() and prepared.flops_per_item > 0 and prepared.bytes_per_batch > 0
    form = prepared.form
    assert form["path"] == "fast" and form["layout"].startswith("static KV cache")
    assert form["kernel"].startswith("moecluster ") and "grouped_mm" in form["candidates"]
    assert form["graph"] == "eager: device cpu has no CUDA graphs"
    assert "relative error" in form["check"] and "transformers generate" in form["reference"]
    layers = MOE.num_layers
    assert f"router choices pinned to the reference's in the first step ({layers} router calls)" in form["check"]
    assert f"top-k choices in the first step's {layers} router calls differ" in form["check"]
    assert "experts per layer per forward (realised" in form["experts_hit"]
    assert sum(prepared.expert_tokens) > 0
    with torch.inference_mode():
        prepared.step()


def test_decode_step_is_one_whole_response_from_the_same_start() -> None:
    twin = match_dense(MOE, "active")
    prepared = LlmWorkload(choices=FormCache()).prepare(
        spec(kind="dense", impl="dense", architecture=twin.architecture, model=twin.as_model()), CPU, torch.float32)
    engine = prepared.step.__self__.engine  # type: ignore[attr-defined]  # eager on CPU: DecodeRun.step
    with torch.inference_mode():
        prepared.step()
        first = engine.tokens.clone()
        prepared.step()
    assert torch.equal(first, engine.tokens) and int(engine.pos) == 5 - 1 + 3
    assert prepared.form["kernel"].startswith("dense")


def test_keeping_busy_runs_single_decode_steps_that_never_pass_the_cache_s_end() -> None:
    """The runner launches `busy_step` between a window's work and its closing counter update: one decode
    step at a time, a response's steps in order, whatever whole responses ran in between."""
    twin = match_dense(MOE, "active")
    prepared = LlmWorkload(choices=FormCache()).prepare(
        spec(kind="dense", impl="dense", architecture=twin.architecture, model=twin.as_model()), CPU, torch.float32)
    assert prepared.busy_step is not None
    engine = prepared.step.__self__.engine  # type: ignore[attr-defined]  # eager on CPU: DecodeRun.step
    start, gen = 5 - 1, 3
    with torch.inference_mode():
        prepared.step()
        response = engine.tokens.clone()
        for _ in range(gen):
            prepared.busy_step()
        assert torch.equal(engine.tokens, response) and int(engine.pos) == start + gen
        prepared.busy_step()  # a new response begins
        assert int(engine.pos) == start + 1
        prepared.step()  # a whole response in between leaves the engine at its end ...
        prepared.busy_step()  # ... so the next busy step starts another
        assert int(engine.pos) == start + 1
        for _ in range(2 * gen + 1):
            prepared.busy_step()
            assert start < int(engine.pos) <= start + gen


def test_a_prefill_has_no_finer_unit_to_keep_busy_with() -> None:
    prepared = LlmWorkload(choices=FormCache()).prepare(spec(phase="prefill", gen_tokens=0), CPU, torch.float32)
    assert prepared.busy_step is None


def test_a_graph_is_chosen_where_it_runs_faster_and_checked_against_eager(monkeypatch: pytest.MonkeyPatch) -> None:
    import moecluster.workloads.llm.workload as module

    monkeypatch.setattr(module, "graph_policy", lambda device, wanted: GraphPolicy(wanted=wanted, blocker=None))
    workload = LlmWorkload(choices=FormCache(), tools=graphs_win())
    prepared = workload.prepare(spec(), CPU, torch.float32)
    again = workload.prepare(spec(), CPU, torch.float32)
    assert prepared.form["graph"].startswith("captured: one CUDA graph per decode step")
    assert "graph" in prepared.form["candidates"]
    assert again.form["choice"].startswith("cached") and again.form["graph"] == prepared.form["graph"]
    with torch.inference_mode():
        prepared.step()


def test_reference_path_runs_transformers_generate() -> None:
    prepared = LlmWorkload(choices=FormCache()).prepare(spec(path="reference", impl="library"), CPU, torch.float32)
    assert prepared.form["layout"].startswith("transformers generate")
    assert prepared.form["kernel"].startswith("library: transformers experts_implementation=")
    with torch.inference_mode():
        prepared.step()


@pytest.mark.parametrize("over, message", [
    (dict(compile=True), "compile: True is not implemented for workload llm"),
    (dict(load="zipf"), "load: 'zipf' is not implemented"),
    (dict(expert_parallel=4), "expert_parallel 4 must divide num_experts (6) and batch_size (2)"),
    (dict(expert_parallel=2, path="reference", impl="library"), "expert_parallel: 2 needs path fast"),
    (dict(expert_parallel=2, cuda_graphs=True), "impossible with expert_parallel 2"),
    (dict(path="reference", cuda_graphs=True), "impossible on path reference"),
    (dict(impl="naive"), "not an llm MoE implementation"),
    (dict(phase="decode", gen_tokens=0), "needs gen_tokens > 0"),
    (dict(kind="dense", impl="dense"), "a dense task needs a dense architecture"),
    (dict(architecture="mixtrall"), "unknown architecture 'mixtrall' (did you mean 'mixtral'"),
])
def test_specs_that_cannot_run_are_refused_naming_the_field(over: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError) as info:
        get_workload("llm").validate(spec(**over))
    assert message in str(info.value)


def test_a_model_too_big_for_the_host_is_refused_before_allocation() -> None:
    big = PRESETS["mixtral-8x22b"].shape
    need = r"needs [\d,.]+ GiB \(weights [\d,.]+ GiB.*but this host has [\d,.]+ GiB free"
    with pytest.raises(ValueError, match=need):
        LlmWorkload(choices=FormCache()).prepare(spec(model=big.as_model()), CPU, torch.float32)
