"""Transformer LLMs (`workload: llm`), head side: sweep checks, expansion, accounting, labels.

Its node side (models, the fast and reference paths, prefill and decode) is the rest of this folder;
its report section is `report.llm` over
`report.aggregate.llm`'s series (drawn because `series_over_batch` is set).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from moecluster.head.estimate.models import ModelShape, from_llm
from moecluster.head.sweep.pairs import Plan
from moecluster.head.sweep.schema import LLM_AXES, LLM_IMPLS, MLP_MODEL_FIELDS, MLP_ONLY, FieldProblem, \
    ModelEntry, SweepFile
from moecluster.spec.llm.memory import memory_need
from moecluster.spec.llm.shapes import LlmShape
from moecluster.spec.mlp.shapes import ShapeError
from moecluster.spec.records import TaskSpec

from moecluster.workloads.base import ItemNames, gib_text
from moecluster.workloads.llm.expand import expand_llm


class LlmWorkload:
    """Transformer MoE LLMs and their dense siblings, measured by phase; an item is a token."""

    name = "llm"
    counts: ItemNames = ("token", "tokens", "tok")
    tokens_per_item = 1
    grid_axes = LLM_AXES
    own_report_section = True
    series_over_batch = True
    refines_break_even = False
    setting_prefix = "llm"
    report_rank = 1
    memory_knobs: str | None = "batch_size or prompt_len"
    estimate_refusal: str | None = None

    def check_model(self, entry: ModelEntry) -> None:
        entry.foreign_fields(MLP_MODEL_FIELDS, "mlp", self.name)
        entry.llm_shape()  # raises FieldProblem naming the field

    def check_sweep(self, sweep: SweepFile) -> None:
        sweep.check_models()
        sweep.unimplemented_keys(MLP_ONLY)
        # the transformer MoE splits its experts over the gang and every grid's batch over its ranks
        sweep.check_expert_parallel([m.llm_shape().num_experts for m in sweep.models],
                                    {b for g in sweep.llm_grids() for b in g["batch_size"]})
        parts: list[tuple[tuple[str | int, ...], list[Any] | None, list[Any] | None]] = [((), sweep.impl, None)]
        parts += [(("grids", i), g.impl, g.cuda_graphs) for i, g in enumerate(sweep.grids or ())]
        for loc, impls, graphs in parts:
            bad = [i for i in (impls or ()) if i not in LLM_IMPLS]
            if bad:
                raise FieldProblem((*loc, "impl"), f"{bad[0]!r} is an mlp implementation; llm takes"
                                   f" {', '.join(LLM_IMPLS)} (library: transformers' own experts; grouped:"
                                   " moecluster's kernels)")
            if sweep.device == "cpu" and True in (graphs or ()):
                raise FieldProblem((*loc, "cuda_graphs"), "CUDA graphs need device cuda")
        if "seed" in sweep.match:
            raise FieldProblem(("match",), "'seed' is the MLP seed's own width; llm twins match total or active")

    def varying(self, sweep: SweepFile) -> list[str]:
        grids = sweep.llm_grids()
        return [a for a in LLM_AXES if len({v for g in grids for v in g[a]}) > 1]

    def task_count(self, sweep: SweepFile) -> tuple[int, str]:
        if not sweep.grids:
            return sweep.grid_count({a: getattr(sweep, a) for a in LLM_AXES})
        parts = [sweep.grid_count(grid) for grid in sweep.llm_grids()]
        return sum(n for n, _ in parts), " + ".join(f"({t})" for _, t in parts)

    def expand(self, sweep: SweepFile, run_id: str) -> Plan:
        return expand_llm(sweep, run_id)

    def with_run_dir(self, plan: Plan, run_dir: Path) -> Plan:
        return plan

    def batch_bytes(self, spec: TaskSpec) -> tuple[float, str]:
        """The KV cache and activations the node checks (`llm.memory.memory_need`, less the weights)."""
        try:
            shape = LlmShape.from_model(spec.architecture or "", spec.model)
        except (ShapeError, TypeError, KeyError):
            return 0.0, ""
        need = memory_need(shape, spec.dtype, spec.phase or "decode", spec.batch_size, spec.prompt_len,
                           spec.gen_tokens)
        extra = need.total_bytes - need.weights_bytes
        return extra, f"KV cache {gib_text(need.kv_cache_bytes)}, activations {gib_text(extra - need.kv_cache_bytes)}"

    def analytic_shape(self, spec: TaskSpec, name: str) -> ModelShape:
        return from_llm(LlmShape.from_model(spec.architecture or "", spec.model), name)

    def ep_comm_shape(self, spec: TaskSpec) -> ModelShape | None:
        return None  # the seed-004 all-to-all prediction covers the MLP's shapes only

    def setting_parts(self, spec: TaskSpec, parts: list[str]) -> list[str]:
        phase = f"{spec.phase} p{spec.prompt_len}" + (f" g{spec.gen_tokens}" if spec.phase == "decode" else "")
        ep = [parts[2]] if spec.expert_parallel > 1 else []  # the EP degree where the MoE runs on a gang
        return [*parts[:2], phase, f"path {spec.path}", *ep, *parts[3:]]

    def model_label(self, spec: TaskSpec) -> str | None:
        m = dict(spec.model)
        arch = spec.architecture or "llm"
        return f"{arch} L{m.get('num_layers')} d{m.get('hidden_size')}" + (
            f" E{m['num_experts']} k{m['top_k']}" if m.get("num_experts") else f" ff{m.get('intermediate_size')}")

    def describe(self, spec: TaskSpec) -> str:
        return LlmShape.from_model(spec.architecture or "", spec.model).describe()
