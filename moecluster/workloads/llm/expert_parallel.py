"""The transformer MoE expert parallel over the N ranks of a gang: the llm workload's EP option.

Built from the one-device model the workload prepared (the same weights, shared from rank 0 by
the gang beforehand), so it computes the same function: every rank keeps the whole model except
the experts, and runs B/N of the global batch's sequences through it (attention, norms, routers,
a shared expert and the head run data parallel, on its own sequences); every MoE layer keeps
experts [r·E/N, (r+1)·E/N) of its stacked weights on rank r, and its experts call (transformers'
`experts(hidden, top_k_index, top_k_weights)`, the same switch `experts.use_experts` uses) becomes
one step of `parallel.exchange`: the layer's token copies dispatched to their experts' ranks
(all-to-all), the local experts on what arrived, the outputs combined back. So per layer: route,
dispatch, experts, combine — the MLP's expert parallelism, with the same exchange.

The local experts run as the one-device `grouped_mm` kernel does (two ragged grouped GEMMs,
SwiGLU between, device offsets) where `torch._grouped_mm` runs, else a GEMM pair per expert (for
`ep-static`: every local expert on every row, masked). The step runs eagerly (`ep-hostsync` reads
its split sizes on the host; `ep-static` is capturable, but not captured here), on the fast path's
static-KV-cache loop (`engine`), a decode step being one whole response as on one device.

Phases of a timed pass: the exchange's `route`, `dispatch`, `experts` and `combine`, summed over
layers (route: the router and sorting the copies), and `other`: everything else of the step
(embedding, attention, norms, the head, the greedy token), so the phases add up to the step.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from moecluster.spec.llm.shapes import LlmShape
from moecluster.spec.records import TaskSpec
from moecluster.workloads.exchange import (
    DISPATCH_FORMS, HOSTSYNC, PHASES, STATIC, Exchange, ExpertParallelPart, StepMarks, experts_per_rank, shard_rows
)
from moecluster.workloads.workload import Prepared
from moecluster.workloads.llm.engine import StaticEngine
from moecluster.workloads.llm.experts import _grouped_mm, experts_modules, grouped_mm_problem, layout_problem
from moecluster.workloads.llm.forms import DecodeRun, PhaseRun, PrefillRun
from moecluster.workloads.llm.routing import routers

LLM_PHASES = ("other", *PHASES)


@dataclasses.dataclass
class MarksSlot:
    """Where the layers report phases during a timed pass (None otherwise); shared by every layer."""

    marks: StepMarks | None = None


class LayerExperts:
    """One MoE layer's local experts behind transformers' experts call (installed on the module's instance).

    Keeps experts [first, first + L) of the module's stacked weights (the others are freed).
    """

    def __init__(self, module: nn.Module, exchange: Exchange, dispatch: str, grouped: bool, slot: MarksSlot) -> None:
        problem = layout_problem(module)
        if problem:
            raise ValueError(f"expert parallelism cannot run this model: {problem}")
        local, first = exchange.local_experts, exchange.rank * exchange.local_experts
        m: Any = module
        with torch.no_grad():
            m.gate_up_proj = nn.Parameter(m.gate_up_proj[first:first + local].clone(), requires_grad=False)
            m.down_proj = nn.Parameter(m.down_proj[first:first + local].clone(), requires_grad=False)
        if hasattr(m, "num_experts"):
            m.num_experts = local
        self.module, self.exchange, self.dispatch, self.grouped, self.slot = m, exchange, dispatch, grouped, slot
        self.dropped = torch.zeros((), dtype=torch.int64, device=m.down_proj.device)

    def __call__(self, hidden: Tensor, top_k_index: Tensor, top_k_weights: Tensor) -> Tensor:
        marks = self.slot.marks
        if self.dispatch == STATIC:
            cap = self.exchange.capacity(hidden.shape[0], None)
            return self.exchange.static(hidden, top_k_weights, top_k_index, self._static, cap, self.dropped, marks)
        return self.exchange.hostsync(hidden, top_k_weights, top_k_index, self._hostsync, marks)

    def _swiglu(self, gate_up: Tensor) -> Tensor:
        gate, up = gate_up.chunk(2, dim=-1)
        out: Tensor = self.module.act_fn(gate) * up
        return out

    def _grouped(self, h: Tensor, counts: Tensor) -> Tensor:
        offs = torch.cumsum(counts, 0, dtype=torch.int32)
        gate_up = _grouped_mm(h, self.module.gate_up_proj.transpose(-2, -1), offs)
        return _grouped_mm(self._swiglu(gate_up), self.module.down_proj.transpose(-2, -1), offs)

    def _one(self, e: int, h: Tensor) -> Tensor:
        return F.linear(self._swiglu(F.linear(h, self.module.gate_up_proj[e])), self.module.down_proj[e])

    def _hostsync(self, h: Tensor, counts_host: list[int], counts: Tensor) -> Tensor:
        """The local experts on rows sorted by expert, `counts_host` rows each."""
        if h.shape[0] == 0:
            return h.new_empty(0, h.shape[1])
        if self.grouped:
            return self._grouped(h, counts)
        rows = torch.split(h, counts_host)
        return torch.cat([self._one(e, part) for e, part in enumerate(rows) if part.shape[0]])

    def _static(self, h: Tensor, eid: Tensor, counts: Tensor) -> Tensor:
        """The local experts on padded rows sorted by expert id `eid` (the exchange zeroes the padding)."""
        if self.grouped:
            return self._grouped(h, counts)
        out = torch.zeros_like(h)
        for e in range(self.exchange.local_experts):
            out = torch.where((eid == e).unsqueeze(1), self._one(e, h), out)
        return out


@contextmanager
def _phases(model: nn.Module, slot: MarksSlot, marks: StepMarks) -> Iterator[None]:
    """Within: the layers report to `marks`, and each router call first closes the `other` phase."""
    def before_router(_module: nn.Module, _inputs: Any) -> None:
        marks.mark("other")

    handles = [r.register_forward_pre_hook(before_router) for r in routers(model)]
    slot.marks = marks
    try:
        yield
    finally:
        slot.marks = None
        for h in handles:
            h.remove()


def _phased(run: PhaseRun, model: nn.Module, slot: MarksSlot) -> Callable[[StepMarks], None]:
    def phased(marks: StepMarks) -> None:
        with _phases(model, slot, marks):
            marks.start()
            run.step()
            marks.mark("other")
    return phased


def _run(model: nn.Module, spec: TaskSpec, prompt: Tensor, device: torch.device, dtype: torch.dtype) -> PhaseRun:
    """The fast path's step for this rank's sequences (a decode's cache filled here: a collective)."""
    decode = spec.phase == "decode"
    positions = spec.prompt_len - 1 + spec.gen_tokens if decode else spec.prompt_len
    engine = StaticEngine(model, prompt.shape[0], positions, spec.gen_tokens, device, dtype)
    if not decode:
        return PrefillRun(engine, prompt)
    engine.start_from(prompt)
    return DecodeRun(engine, spec.gen_tokens)


def expert_parallel(prepared: Prepared, spec: TaskSpec, rank: int, world_size: int,
                    dispatch: str = HOSTSYNC) -> ExpertParallelPart:
    """The prepared one-device MoE as rank `rank`'s part of a gang of `world_size` (see the module).

    A collective where the phase is decode (every rank fills its cache through the MoE layers);
    every rank must call it at once, with the same weights and prompts. ValueError where the split
    or the dispatch form cannot run.
    """
    if dispatch not in DISPATCH_FORMS:
        raise ValueError(f"dispatch {dispatch!r} is not one of {', '.join(DISPATCH_FORMS)} for workload llm")
    shape = LlmShape.from_model(spec.architecture or "", spec.model)
    model, device = prepared.model, prepared.inputs.device
    dtype = next(model.parameters()).dtype
    local = experts_per_rank(shape.num_experts, world_size)
    exchange = Exchange(rank, world_size, local, shape.top_k)
    grouped = grouped_mm_problem(device, dtype) is None
    slot = MarksSlot()
    for module in experts_modules(model):
        vars(module)["forward"] = LayerExperts(module, exchange, dispatch, grouped, slot)
    prompt = prepared.inputs[shard_rows(spec.batch_size, world_size, rank)].contiguous()
    with torch.inference_mode():
        run = _run(model, spec, prompt, device, dtype)
    tokens = prompt.shape[0] * (1 if spec.phase == "decode" else spec.prompt_len)
    elem = torch.empty((), dtype=dtype).element_size()
    copy_bytes = float(tokens * shape.top_k * shape.hidden_size * elem)
    params = shape.params()
    replicated = (world_size - 1) * (params.total - params.experts) * elem  # every other rank reads them too
    kernel = "moecluster grouped_mm (two ragged grouped GEMMs, device offsets)" if grouped else \
        "a GEMM pair per local expert (torch._grouped_mm unavailable here)"
    kept = {k: v for k, v in prepared.form.items() if k in ("transformers", "path", "experts_hit")}
    form = {**kept, "parallel": (f"expert over {world_size} ranks, {local} experts of every MoE layer each; attention,"
                                 f" routers and head data parallel, {prompt.shape[0]} sequences each"),
            "layout": f"static KV cache ({prompt.shape[0]} sequences per rank); moecluster's loop over transformers'"
                      " modules",
            "dispatch": dispatch, "experts": f"{dispatch}: {kernel}",
            "graph": "none: eager (an expert-parallel step's all-to-alls run outside any graph here)",
            "one_device": f"{prepared.form.get('kernel', '')}; {prepared.form.get('graph', '')}"}
    return ExpertParallelPart(step=run.step, phased=_phased(run, model, slot), phases=LLM_PHASES,
                              alltoall_bytes=(copy_bytes, copy_bytes),
                              bytes_per_batch=prepared.bytes_per_batch + replicated, form=form, local_experts=local,
                              rows=prompt.shape[0])
