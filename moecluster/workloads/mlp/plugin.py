"""The seed's MLPs (`workload: mlp`, the default), head side: sweep checks, expansion, accounting, labels.

Its node side (models, forms, the measured step) is the rest of this folder (`workload.MlpWorkload`).
"""
from __future__ import annotations

from pathlib import Path

from moecluster.head.estimate.models import ModelShape, from_mlp
from moecluster.head.sweep.pairs import Plan
from moecluster.head.sweep.schema import AXES, LLM_MODEL_FIELDS, LLM_ONLY, MLP_IMPLS, FieldProblem, \
    ModelEntry, SweepFile
from moecluster.spec.mlp.shapes import MoEShape
from moecluster.spec.records import TaskSpec

from moecluster.workloads.base import DTYPE_BYTES, ItemNames, gib_text
from moecluster.workloads.mlp.expand import expand_mlp


class MlpWorkload:
    """The seed's MLP MoEs and their dense twins; one inference routes one row (token)."""

    name = "mlp"
    counts: ItemNames = ("inference", "inferences", "inf")
    tokens_per_item = 1
    grid_axes = AXES
    own_report_section = False
    series_over_batch = False
    refines_break_even = True
    setting_prefix = ""
    report_rank = 0
    memory_knobs: str | None = "batch_size"
    estimate_refusal: str | None = None

    def check_model(self, entry: ModelEntry) -> None:
        entry.foreign_fields(LLM_MODEL_FIELDS, "llm", self.name)
        entry.shape()  # raises FieldProblem naming the field

    def check_sweep(self, sweep: SweepFile) -> None:
        sweep.check_models()
        if sweep.grids is not None:
            raise FieldProblem(("grids",), "is a key of workload llm (this sweep's workload is mlp)")
        sweep.foreign_keys(LLM_ONLY, "llm")
        if "library" in sweep.impl:
            raise FieldProblem(("impl",), f"'library' is an llm implementation; mlp takes {', '.join(MLP_IMPLS)}")
        sweep.check_expert_parallel([m.shape().num_experts for m in sweep.models], set(sweep.batch_size))

    def varying(self, sweep: SweepFile) -> list[str]:
        return [a for a in AXES if len(getattr(sweep, a)) > 1]

    def task_count(self, sweep: SweepFile) -> tuple[int, str]:
        return sweep.grid_count({a: getattr(sweep, a) for a in AXES})

    def expand(self, sweep: SweepFile, run_id: str) -> Plan:
        return expand_mlp(sweep, run_id)

    def with_run_dir(self, plan: Plan, run_dir: Path) -> Plan:
        return plan

    def batch_bytes(self, spec: TaskSpec) -> tuple[float, str]:
        """The inputs and outputs, and one hidden layer's activations per routed copy of every token
        (batch × top_k rows of the expert's width; batch rows of a dense twin's): a lower bound, as the
        kernels' buffers come on top."""
        m = spec.model
        size = DTYPE_BYTES.get(spec.dtype, 4)
        rows = spec.batch_size * int(m.get("top_k", 1))
        width = int(m.get("expert_hidden_dim", m.get("hidden_dim", 0)))
        elements = spec.batch_size * (int(m.get("input_dim", 0)) + int(m.get("output_dim", 0))) + rows * width
        return float(elements * size), f"activations {gib_text(elements * size)} for {rows:,} rows × {width:,}"

    def analytic_shape(self, spec: TaskSpec, name: str) -> ModelShape:
        return from_mlp(MoEShape(**spec.model), name)

    def ep_comm_shape(self, spec: TaskSpec) -> ModelShape | None:
        return from_mlp(MoEShape(**spec.model))

    def setting_parts(self, spec: TaskSpec, parts: list[str]) -> list[str]:
        return parts

    def model_label(self, spec: TaskSpec) -> str | None:
        """E8 k2 h256×3 for an MoE, w4096×5 for a dense MLP."""
        m = dict(spec.model)
        if spec.kind == "moe" and {"num_experts", "top_k", "expert_hidden_dim", "expert_num_layers"} <= set(m):
            return f"E{m['num_experts']} k{m['top_k']} h{m['expert_hidden_dim']}×{m['expert_num_layers']}"
        if {"hidden_dim", "num_layers"} <= set(m):
            return f"w{m['hidden_dim']}×{m['num_layers']}"
        return None

    def describe(self, spec: TaskSpec) -> str:
        m = spec.model
        if spec.kind == "moe":
            return f"E={m['num_experts']} h={m['expert_hidden_dim']} L={m['expert_num_layers']} k={m['top_k']}"
        return f"w={m['hidden_dim']} L={m['num_layers']}"
