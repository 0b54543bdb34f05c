"""The transformer MoE expert parallel computes the one-device model's function (gloo gangs of 2 and 4 on the
CPU), and a pair of it with its dense twin is measured by the gang end to end."""
from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import torch
from gang_harness import run_ranks

pytest.importorskip("transformers")

from moecluster.measure.meters.idle import IdleCache, SettlePolicy  # noqa: E402
from moecluster.measure.meters.peaks import GemmCase, PeakCache, PeakPlan, StreamCase  # noqa: E402
from moecluster.workloads.exchange import DISPATCH_FORMS, HOSTSYNC  # noqa: E402
from moecluster.measure.parallel.gang import run_gang_rank  # noqa: E402
from moecluster.measure.parallel.group import GangContext, process_group  # noqa: E402
from moecluster.measure.parallel.phases import PhaseClock  # noqa: E402
from moecluster.workloads.workload import Prepared  # noqa: E402
from moecluster.workloads.llm.build import build_model  # noqa: E402
from moecluster.workloads.llm.engine import StaticEngine  # noqa: E402
from moecluster.workloads.llm.expert_parallel import LLM_PHASES, expert_parallel  # noqa: E402
from moecluster.spec.llm.presets import PRESETS  # noqa: E402
from moecluster.spec.llm.shapes import LlmShape  # noqa: E402
from moecluster.spec.llm.twins import match_dense  # noqa: E402
from moecluster.spec.records import TaskResult, TaskSpec  # noqa: E402

CPU = torch.device("cpu")
PROMPT, GEN = 5, 3
TINY_PEAKS = PeakPlan(gemms=(GemmCase(32, 32, 32),), streams=(StreamCase(1),), samples=1, sample_s=0.001,
                      max_call_s=0.05, warmup_s=0.01)
QUICK_IDLE = SettlePolicy(tolerance=0.5, span_s=0.1, block_s=0.05, timeout_s=1.0)


def shape_for(world: int, architecture: str = "mixtral") -> LlmShape:
    """A tiny MoE whose experts split over `world` ranks (8 experts for 4, the preset's 6 for 2)."""
    base = PRESETS[f"tiny-{architecture.replace('_', '-')}"].shape
    return base if base.num_experts % world == 0 else dataclasses.replace(base, num_experts=8)


def spec_for(shape: LlmShape, world: int, phase: str, batch: int, **over: Any) -> TaskSpec:
    return TaskSpec(task_id="moe", pair_id="p", kind="moe", impl="grouped", model=shape.as_model(), workload="llm",
                    architecture=shape.architecture, device="cpu", batch_size=batch, phase=phase, prompt_len=PROMPT,
                    gen_tokens=GEN if phase == "decode" else 0, path="fast", expert_parallel=world,
                    cuda_graphs=False, **over)


def _logits(engine: StaticEngine, prompt: torch.Tensor, phase: str) -> torch.Tensor:
    """A prefill's last-position logits, or a response's logits step after step (from the same cache)."""
    if phase == "prefill":
        return engine.prefill(prompt)
    engine.start_from(prompt)
    return torch.stack([engine.decode_step() for _ in range(GEN)])


def _one(gang: Any, architecture: str, phase: str, dispatch: str) -> dict[str, Any]:
    """This rank's EP logits against transformers' own one-device MoE (same weights, same prompts), one timed pass."""
    world = gang.world_size
    shape = shape_for(world, architecture)
    batch = 2 * world
    spec = spec_for(shape, world, phase, batch)
    positions = PROMPT - 1 + GEN
    model = build_model(shape, CPU, torch.float32, seed=7, max_positions=positions + 1)
    prompt = torch.randint(0, shape.vocab_size, (batch, PROMPT), generator=torch.Generator().manual_seed(7))
    ref = _logits(StaticEngine(model, batch, positions, GEN, CPU, torch.float32), prompt, phase)
    prepared = Prepared(model=model, inputs=prompt, items_per_batch=batch * PROMPT, step=lambda: None,
                        params=shape.params(), flops_per_item=1.0, bytes_per_batch=1.0)
    part = expert_parallel(prepared, spec, gang.rank, world, dispatch)
    rows = slice(gang.rank * 2, gang.rank * 2 + 2)
    out = _logits(StaticEngine(model, 2, positions, GEN, CPU, torch.float32), prompt[rows], phase)
    mine = ref[rows] if phase == "prefill" else ref[:, rows]
    clock = PhaseClock(gang.device)
    for _ in range(2):
        part.phased(clock)
    return {"err": float((out - mine).norm() / mine.norm()), "steps": clock.steps, "phases": clock.summary(),
            "held": [tuple(layer.mlp.experts.gate_up_proj.shape) for layer in model.model.layers],
            "part_phases": part.phases, "alltoall_bytes": part.alltoall_bytes, "form": part.form}


def _compare(ctx: GangContext, architecture: str, phase: str) -> dict[str, dict[str, Any]]:
    """`_one` for every dispatch form on this rank."""
    with process_group(ctx) as gang, torch.inference_mode():
        return {dispatch: _one(gang, architecture, phase, dispatch) for dispatch in DISPATCH_FORMS}


@pytest.mark.parametrize("world, architecture, phase", [
    (2, "mixtral", "decode"), (2, "qwen3_moe", "prefill"), (4, "mixtral", "decode")])
def test_expert_parallel_matches_the_one_device_transformer_moe(world: int, architecture: str, phase: str) -> None:
    shape = shape_for(world, architecture)
    local = shape.num_experts // world
    for rank, per_form in enumerate(run_ranks(_compare, world, architecture, phase, timeout_s=300.0)):
        for dispatch, res in per_form.items():
            assert res["err"] < 1e-5, (rank, dispatch, res["err"])
            assert res["held"] == [(local, 2 * shape.intermediate_size, shape.hidden_size)] * shape.num_layers
            phases, form = res["phases"], res["form"]
            assert res["steps"] == 2 and list(phases) == list(LLM_PHASES) == list(res["part_phases"])
            assert all(p.time_s > 0 for p in phases.values())
            assert phases["dispatch"].bytes_sent > 0 and phases["combine"].bytes_sent > 0
            assert phases["other"].bytes_sent == 0 and phases["experts"].bytes_sent == 0
            tokens = 2 * (1 if phase == "decode" else PROMPT)
            assert res["alltoall_bytes"] == (tokens * shape.top_k * shape.hidden_size * 4.0,) * 2
            assert form["dispatch"] == dispatch and form["parallel"].startswith(f"expert over {world} ranks")


def test_expert_parallel_refuses_what_cannot_split() -> None:
    shape = PRESETS["tiny-mixtral"].shape
    prepared = Prepared(model=torch.nn.Linear(1, 1), inputs=torch.zeros(4, PROMPT, dtype=torch.long),
                        items_per_batch=1, step=lambda: None, params=shape.params(), flops_per_item=1.0,
                        bytes_per_batch=1.0)
    with pytest.raises(ValueError, match="num_experts 6 is not divisible by the world size 4"):
        expert_parallel(prepared, spec_for(shape, 4, "prefill", 4), 0, 4)
    with pytest.raises(ValueError, match="dispatch 'ep-fast' is not one of"):
        expert_parallel(prepared, spec_for(shape, 2, "prefill", 4), 0, 2, "ep-fast")


def _gang(ctx: GangContext, specs: list[TaskSpec]) -> list[TaskResult]:
    return run_gang_rank(specs, ctx, node="node-x", peaks=PeakCache(plan=TINY_PEAKS),
                         idle_cache=IdleCache(policy=QUICK_IDLE))


def test_a_gang_of_two_measures_an_llm_moe_pair_expert_parallel() -> None:
    shape = PRESETS["tiny-mixtral"].shape
    common: dict[str, Any] = dict(duration_s=0.3, warmup_s=0.02, repeats=2, meter="fake")
    moe = spec_for(shape, 2, "decode", 4, **common)
    twin = match_dense(shape, "total")
    dense = dataclasses.replace(moe, task_id="dense", kind="dense", impl="dense", match="total", expert_parallel=1,
                                model=twin.as_model(), architecture=twin.architecture)
    results, others = run_ranks(_gang, 2, [dense, moe], timeout_s=300.0)
    assert others == []
    dense_r, moe_r = results
    tokens_per_step = 4 * GEN  # the global batch's response
    for r in results:
        assert r.status == "ok", r.error
        assert r.world_size == 2 and len(r.windows) == 2 and len(r.gpus) == 2
        assert r.energy_source == "fake-power-model"
        assert all(w.inferences > 0 and w.inferences % tokens_per_step == 0 for w in r.windows)
    assert dense_r.form["parallel"].startswith("data over 2 ranks") and dense_r.phases == ()
    assert moe_r.form["parallel"].startswith("expert over 2 ranks") and moe_r.form["dispatch"] == HOSTSYNC
    assert [p.name for p in moe_r.phases] == list(LLM_PHASES)
    assert all(p.time_s > 0 for p in moe_r.phases)
    dispatch, combine = moe_r.alltoall
    assert dispatch.bytes_per_rank == 2 * shape.top_k * shape.hidden_size * 4 == combine.bytes_per_rank
    assert dispatch.energy_j is not None and dispatch.energy_j > 0
    assert sum(moe_r.expert_tokens) > 0
    assert TaskResult.from_json(moe_r.to_json()) == moe_r
