"""The LLM workload behind the `Workload` interface: one phase (prefill or decode) of one model.

A task's spec names the family (`architecture`), the shape (`model`), `phase`, `batch_size`
sequences, `prompt_len` and (decode) `gen_tokens`, and the `path`:

- `fast`: moecluster's loop over the model's own modules with a static KV cache, a CUDA graph of
  the step where the device allows, and for an MoE (`impl: grouped`) moecluster's expert kernels
  instead of the library's own (`impl: library` keeps transformers' dispatch); the form is chosen
  by measurement after each candidate is checked against transformers (`llm.forms`), and the
  reference's own speed is timed at prepare too, so the record shows what the fast path saves;
- `reference`: transformers' `generate` as users call it (`llm.reference`), measured as it is.

An MoE task with `expert_parallel` N > 1 runs on a gang of N ranks: `prepare` builds the one-device
model on the global batch (its routing, accounting and checked form), and the gang then splits every
MoE layer's experts over its ranks (`llm.expert_parallel`).

An item is a token: a prefill step processes `batch × prompt_len` of them, a decode step (one whole
response) generates `batch × gen_tokens`. FLOPs per token and bytes per step (weights once, with the
experts the realised routing reached, and the KV cache written and read) come from `LlmShape`.
"""
from __future__ import annotations

import gc
from collections.abc import Hashable
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch import nn

from moecluster.spec.records import ParamCounts, TaskSpec
from moecluster.workloads.workload import Prepared
from moecluster.workloads.forms import PROCESS_FORM_CACHE, FormCache, output_tolerance
from moecluster.workloads.graphs import graph_policy, require_graphs_possible
from moecluster.workloads.timing import time_call_s
from moecluster.workloads.llm.build import build_model, transformers_version
from moecluster.workloads.llm.engine import StaticEngine
from moecluster.workloads.llm.experts import GATHER, GROUPED_MM, grouped_mm_problem, library_experts, use_experts
from moecluster.workloads.llm.forms import Candidate, DecodeRun, LlmTools, Outputs, PhaseRun, PrefillRun, choose
from moecluster.spec.llm.memory import GIB, host_memory_bytes, memory_need
from moecluster.workloads.llm.reference import ReferenceDecode, ReferencePrefill, dynamic_cache
from moecluster.workloads.llm.routing import RoutingCount, count_routing, pin_routing, record_routing
from moecluster.spec.llm.shapes import LlmShape

IMPLS = ("library", "grouped")  # an MoE's experts: transformers' own dispatch, or moecluster's kernels
PHASES = ("prefill", "decode")
PATHS = ("fast", "reference")
CHECK_TOKENS = 8  # decode steps of the reference that prepare checks against and times
COMPILE_NOTE = "not used: the fast path replays a CUDA graph of its step instead of torch.compile"


def shape_of(spec: TaskSpec) -> LlmShape:
    return LlmShape.from_model(spec.architecture or "", spec.model)


def check_device_memory(spec: TaskSpec, shape: LlmShape, device: torch.device) -> None:
    """ValueError with both numbers when the task cannot fit in the GPU's free memory, or on a CPU in the
    host's available memory, before anything is allocated (see `llm.memory`)."""
    need = memory_need(shape, spec.dtype, spec.phase or "decode", spec.batch_size, spec.prompt_len, spec.gen_tokens)
    if device.type == "cuda":
        free, capacity = torch.cuda.mem_get_info(device)
        where = f"{device} has"
    else:
        host = host_memory_bytes()
        if host is None:
            return
        (free, capacity), where = host, "this host has"
    if need.total_bytes > free:
        raise ValueError(f"task {spec.task_id}: {shape.describe()} in {spec.dtype} at batch {spec.batch_size} needs"
                         f" {need.describe()}, but {where} {free / GIB:,.2f} GiB free of {capacity / GIB:,.2f} GiB")


@dataclass(frozen=True)
class _Key:
    """What a form choice depends on."""

    architecture: str
    model: tuple[tuple[str, int], ...]
    kind: str
    impl: str
    dtype: str
    batch_size: int
    prompt_len: int
    gen_tokens: int
    phase: str
    device: str
    cuda_graphs: bool | None


def _noop() -> None:
    return None


class LlmWorkload:
    """LLM tasks. `choices`: where form choices are kept (the process's by default); `tools`: how forms
    are timed and captured."""

    name = "llm"

    def __init__(self, choices: FormCache | None = None, tools: LlmTools | None = None) -> None:
        self.choices = PROCESS_FORM_CACHE if choices is None else choices
        self.tools = tools or LlmTools()

    # -- checks ----------------------------------------------------------------------------
    def validate(self, spec: TaskSpec) -> None:
        """ValueError naming the field where the spec cannot run."""
        shape = shape_of(spec)
        if spec.kind == "moe":
            if not shape.is_moe:
                raise ValueError(f"a moe task needs an MoE architecture, got {shape.architecture}")
            if spec.impl not in IMPLS:
                raise ValueError(f"impl {spec.impl!r} is not an llm MoE implementation ({', '.join(IMPLS)})")
        else:
            if shape.is_moe:
                raise ValueError(f"a dense task needs a dense architecture, got {shape.architecture}")
            if spec.impl != "dense":
                raise ValueError(f"impl of a dense task must be 'dense', got {spec.impl!r}")
        if spec.phase not in PHASES:
            raise ValueError(f"phase {spec.phase!r} unknown ({', '.join(PHASES)})")
        if spec.path not in PATHS:
            raise ValueError(f"path {spec.path!r} unknown ({', '.join(PATHS)})")
        if spec.batch_size <= 0 or spec.prompt_len <= 0:
            raise ValueError(f"batch_size and prompt_len must be positive, got {spec.batch_size} and {spec.prompt_len}")
        if spec.phase == "decode" and spec.gen_tokens <= 0:
            raise ValueError(f"a decode task needs gen_tokens > 0, got {spec.gen_tokens}")
        for name, value, default, why in (
                ("compile", spec.compile, False, "the fast path replays CUDA graphs instead"),
                ("load", spec.load, "router", "the router's own choice is the only load"),
                ("train_epochs", spec.train_epochs, 0, "the weights stay random")):
            if value != default:
                raise ValueError(f"{name}: {value!r} is not implemented for workload llm ({why})")
        _validate_expert_parallel(spec, shape)
        if spec.cuda_graphs and spec.path == "reference":
            raise ValueError("cuda_graphs: true is impossible on path reference (transformers' generate runs eagerly)")
        require_graphs_possible(spec.device, spec.cuda_graphs)

    def params(self, spec: TaskSpec) -> ParamCounts:
        return shape_of(spec).params()

    # -- prepare -----------------------------------------------------------------------------
    def prepare(self, spec: TaskSpec, device: torch.device, dtype: torch.dtype) -> Prepared:
        self.validate(spec)
        shape = shape_of(spec)
        if device.type == "cuda":  # the previous task's model (a repeat's, or the other side's) is gone for good
            gc.collect()
            torch.cuda.empty_cache()
        check_device_memory(spec, shape, device)
        decode = spec.phase == "decode"
        positions = spec.prompt_len - 1 + spec.gen_tokens if decode else spec.prompt_len
        model = build_model(shape, device, dtype, spec.seed, positions + 1)
        gen = torch.Generator().manual_seed(spec.seed)
        prompt = torch.randint(0, shape.vocab_size, (spec.batch_size, spec.prompt_len), generator=gen).to(device)
        form = {"transformers": transformers_version(), "path": spec.path or ""}
        with torch.inference_mode():
            engine = StaticEngine(model, spec.batch_size, positions, spec.gen_tokens, device, dtype) \
                if decode or spec.path == "fast" else None
            ref = _reference(model, prompt, spec, engine)
            candidates, skipped = self._candidates(spec, shape, model, device, dtype)
            if skipped:
                form["skipped"] = "; ".join(skipped)
            candidates[0].use()
            with count_routing(model, shape.num_experts) as routing, record_routing(model) as recorded:
                reference = _reference_outputs(ref)
            if spec.path == "reference" or engine is None:
                del engine
                step: Any = ref.step
                busy = None
                margin = None
                form.update(layout="transformers generate, eager, DynamicCache (the familiar reference)",
                            kernel=candidates[0].kernel, graph="eager: the reference runs as transformers runs it",
                            compile="not used: the reference runs as transformers runs it")
            else:
                key = _key(spec, device)
                cached = self.choices.get(key)
                timed = dict(cached.form).get("reference") if cached is not None else None
                extra = {"layout": f"static KV cache ({spec.batch_size} × {positions} positions); moecluster's loop"
                                   " over transformers' modules",
                         "compile": COMPILE_NOTE, "reference": timed or _reference_timing(ref, spec, device)}
                del ref
                run: PhaseRun = DecodeRun(engine, spec.gen_tokens) if decode else PrefillRun(engine, prompt)
                chosen = choose(candidates, run, reference, device=device,
                                policy=graph_policy(device, spec.cuda_graphs), tolerance=output_tolerance(dtype),
                                tools=self.tools, cache=self.choices, key=key, extra=extra,
                                pin=partial(pin_routing, model, recorded) if recorded else None)
                step, busy, margin = chosen.step, chosen.busy, chosen.margin
                form.update(chosen.form)
        if device.type == "cuda":
            torch.cuda.empty_cache()  # the reference's cache and the candidates' graphs are gone
        form["experts_hit"] = _hits_text(shape, routing, decode)
        items = spec.batch_size * (spec.gen_tokens if decode else spec.prompt_len)
        dtype_bytes = torch.empty((), dtype=dtype).element_size()
        return Prepared(model=model, inputs=prompt, items_per_batch=items, step=step, busy_step=busy,
                        params=shape.params(),
                        flops_per_item=_flops(shape, spec),
                        bytes_per_batch=_bytes(shape, spec, dtype_bytes, routing.experts_hit),
                        expert_tokens=tuple(routing.per_expert), form=form, choice=margin)

    def _candidates(self, spec: TaskSpec, shape: LlmShape, model: nn.Module, device: torch.device,
                    dtype: torch.dtype) -> tuple[list[Candidate], list[str]]:
        """The forms to choose from, and those left out with why."""
        if not shape.is_moe:
            return [Candidate("dense", "dense SwiGLU FFN (transformers' module)", _noop)], []
        if spec.impl == "library":
            return [Candidate("library", f"library: {library_experts(model)}", partial(use_experts, model, None))], []
        candidates: list[Candidate] = []
        skipped: list[str] = []
        problem = grouped_mm_problem(device, dtype)
        if problem is None:
            candidates.append(Candidate(GROUPED_MM, "moecluster grouped_mm", partial(use_experts, model, GROUPED_MM)))
        else:
            skipped.append(f"{GROUPED_MM}: {problem}")
        copies = spec.batch_size * (1 if spec.phase == "decode" else spec.prompt_len) * shape.top_k
        if copies <= shape.num_experts or not candidates:
            candidates.append(Candidate(GATHER, "moecluster gather", partial(use_experts, model, GATHER)))
        else:
            skipped.append(f"{GATHER}: {copies} token copies per forward, more than the {shape.num_experts} experts"
                           " (it copies the weights it reads)")
        if spec.path == "reference":
            candidates = candidates[:1]  # the reference runs with one kernel: nothing is measured to choose
        return candidates, skipped


def _validate_expert_parallel(spec: TaskSpec, shape: LlmShape) -> None:
    """ValueError where `expert_parallel` (experts over that many GPUs, `expert_parallel.py`) cannot run:
    only an MoE on the fast path, its experts and sequences split evenly, without CUDA graphs."""
    ep = spec.expert_parallel
    if ep == 1:
        return
    if ep < 1:
        raise ValueError(f"expert_parallel must be >= 1, got {ep}")
    if spec.kind != "moe":
        raise ValueError(f"expert_parallel: {ep} is for the MoE side; a dense twin runs data parallel with 1")
    if spec.path != "fast":
        raise ValueError(f"expert_parallel: {ep} needs path fast (transformers' generate runs on one device)")
    if shape.num_experts % ep or spec.batch_size % ep:
        raise ValueError(f"expert_parallel {ep} must divide num_experts ({shape.num_experts}) and batch_size"
                         f" ({spec.batch_size})")
    if spec.cuda_graphs:
        raise ValueError(f"cuda_graphs: true is impossible with expert_parallel {ep} (the step runs eagerly)")


def _key(spec: TaskSpec, device: torch.device) -> Hashable:
    return _Key(architecture=spec.architecture or "", model=tuple(sorted(spec.model.items())), kind=spec.kind,
                impl=spec.impl, dtype=spec.dtype, batch_size=spec.batch_size, prompt_len=spec.prompt_len,
                gen_tokens=spec.gen_tokens, phase=spec.phase or "", device=str(device), cuda_graphs=spec.cuda_graphs)


def _reference(model: nn.Module, prompt: torch.Tensor, spec: TaskSpec,
               engine: StaticEngine | None) -> ReferenceDecode | ReferencePrefill:
    """transformers' generate for this phase; a decode's cache holds the prompts' first `prompt_len - 1`
    tokens, filled by the engine a few sequences at a time."""
    if engine is None or spec.phase != "decode":
        return ReferencePrefill(model, prompt)
    engine.start_from(prompt)
    filled = spec.prompt_len - 1
    cache = dynamic_cache(model, [k[:, :, :filled] for k in engine.keys], [v[:, :, :filled] for v in engine.values])
    return ReferenceDecode(model, prompt, spec.gen_tokens, cache)


def _reference_outputs(ref: ReferenceDecode | ReferencePrefill) -> Outputs:
    """What transformers computes: the whole prefill, or the first `CHECK_TOKENS` steps of a response."""
    if isinstance(ref, ReferenceDecode):
        return ref.outputs(min(ref.gen_tokens, CHECK_TOKENS))
    return ref.outputs()


def _reference_timing(ref: ReferenceDecode | ReferencePrefill, spec: TaskSpec, device: torch.device) -> str:
    """How fast transformers' own generate runs this step (timed at prepare, as the candidates are)."""
    try:
        if isinstance(ref, ReferenceDecode):
            steps = min(ref.gen_tokens, CHECK_TOKENS)
            per_step = time_call_s(lambda: ref.step(steps), device) / steps
            tokens = spec.batch_size
            return (f"transformers generate, eager, DynamicCache: {per_step * 1e3:,.3f} ms per decode step"
                    f" ({per_step / tokens * 1e6:,.2f} µs/token; timed over {steps} steps)")
        per_forward = time_call_s(ref.step, device)
        return (f"transformers generate, eager: {per_forward * 1e3:,.3f} ms per forward"
                f" ({per_forward / (spec.batch_size * spec.prompt_len) * 1e6:,.2f} µs/token)")
    except (RuntimeError, NotImplementedError, ValueError) as exc:  # e.g. out of memory: the reference's limit
        text = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
        return f"transformers generate failed: {type(exc).__name__}: {text}"


def _hits_text(shape: LlmShape, routing: RoutingCount, decode: bool) -> str:
    if not shape.is_moe:
        return "dense: every FFN weight read per forward"
    hit = routing.experts_hit
    if hit is None:
        return "not counted (no router output seen): the roofline assumes uniform routing"
    where = f"over the reference's first {CHECK_TOKENS} decode steps" if decode else "in the prefill"
    return (f"{hit:.2f} of {shape.num_experts} experts per layer per forward (realised, {where}); the roofline"
            " counts their weights")


def _flops(shape: LlmShape, spec: TaskSpec) -> float:
    if spec.phase == "decode":
        return shape.decode_flops_per_token(spec.prompt_len, spec.gen_tokens)
    return shape.prefill_flops_per_token(spec.prompt_len)


def _bytes(shape: LlmShape, spec: TaskSpec, dtype_bytes: int, hit: float | None) -> float:
    if spec.phase == "decode":
        return shape.decode_bytes(dtype_bytes, spec.batch_size, spec.prompt_len, spec.gen_tokens, hit)
    return shape.prefill_bytes(dtype_bytes, spec.batch_size, spec.prompt_len, hit)

