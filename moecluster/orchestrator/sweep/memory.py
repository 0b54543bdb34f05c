"""Refuse a task whose memory cannot fit anywhere, before the run starts.

A model of 1e17 parameters used to pass the dry run (with an estimate of 1.7 M hours per
task) and fail on the node; so did an LLM at `prompt_len: 1000000000`, whose KV cache alone is
petabytes. A task needs its weights (parameters × bytes per element) and, beside them, the
tensors of one batch: an MLP's inputs, its hidden activations (one per routed copy of a token)
and outputs; an LLM's KV cache and activations (`spec.llm.memory`, the figure the node
itself checks against its free memory). Above a bound no task can hold, the sweep is refused at
load with the memory it needs; the node refines this against the GPU's free memory before it
allocates anything.
"""
from __future__ import annotations

from moecluster.spec.records import TaskSpec
from moecluster.spec.llm.memory import memory_need
from moecluster.spec.llm.shapes import LlmShape
from moecluster.spec.mlp.shapes import ShapeError
from .loader import SweepError

# Bytes per element of the sweep's dtypes (the benchmark core's three).
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
# Memory one task may need, all its GPUs together: 1 TiB, far above any single GPU and about an
# 8 × H200 node's whole memory.
MAX_TASK_WEIGHT_BYTES = 2**40
GIB = 2**30


def weight_bytes(params_total: int, dtype: str) -> int:
    """Bytes of a model's weights: its parameters × the dtype's bytes per element."""
    return params_total * DTYPE_BYTES.get(dtype, 4)


def _gib(n_bytes: float) -> str:
    """`174 GiB`, or `3.05e+13 GiB` for a figure too long to read digit by digit."""
    gib = n_bytes / GIB
    return f"{gib:,.0f} GiB" if gib < 1e7 else f"{gib:.3g} GiB"


def batch_bytes(spec: TaskSpec) -> tuple[float, str]:
    """Bytes of one batch's tensors beside the weights, and what they are (for the message).

    MLP: the inputs and outputs, and one hidden layer's activations per routed copy of every
    token (batch × top_k rows of the expert's width; batch rows of a dense twin's): a lower bound,
    as the kernels' buffers come on top. LLM: the KV cache and activations the node checks
    (`llm.memory.memory_need`, less the weights).
    """
    size = DTYPE_BYTES.get(spec.dtype, 4)
    m = spec.model
    if spec.workload == "llm":
        try:
            shape = LlmShape.from_model(spec.architecture or "", m)
        except (ShapeError, TypeError, KeyError):
            return 0.0, ""
        need = memory_need(shape, spec.dtype, spec.phase or "decode", spec.batch_size, spec.prompt_len,
                           spec.gen_tokens)
        extra = need.total_bytes - need.weights_bytes
        return extra, f"KV cache {_gib(need.kv_cache_bytes)}, activations {_gib(extra - need.kv_cache_bytes)}"
    rows = spec.batch_size * int(m.get("top_k", 1))
    width = int(m.get("expert_hidden_dim", m.get("hidden_dim", 0)))
    elements = spec.batch_size * (int(m.get("input_dim", 0)) + int(m.get("output_dim", 0))) + rows * width
    return float(elements * size), f"activations {_gib(elements * size)} for {rows:,} rows × {width:,}"


def check_task_memory(spec: TaskSpec, params_total: int, bound: int = MAX_TASK_WEIGHT_BYTES) -> None:
    """SweepError naming the task, the memory it needs and the bound, when above it.

    Dense twins are checked like the MoE task: a twin matched to the total parameters is as big.
    """
    needed = weight_bytes(params_total, spec.dtype)
    if needed > bound:
        raise SweepError(f"task {spec.task_id}: {params_total:.3g} parameters × {DTYPE_BYTES.get(spec.dtype, 4)}"
                         f" bytes ({spec.dtype}) need {_gib(needed)} for the weights alone, more than"
                         f" the {_gib(bound)} any task can hold; use a smaller model")
    extra, what = batch_bytes(spec)
    if needed + extra > bound:
        knobs = "batch_size or prompt_len" if spec.workload == "llm" else "batch_size"
        raise SweepError(f"task {spec.task_id}: needs {_gib(needed + extra)} (weights {_gib(needed)}, {what}),"
                         f" more than the {_gib(bound)} any task can hold; lower {knobs}")
