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
from moecluster.workloads.base import DTYPE_BYTES, GIB, gib_text
from moecluster.workloads.registry import workload

from moecluster.head.sweep.error import SweepError

__all__ = ["DTYPE_BYTES", "GIB", "MAX_TASK_WEIGHT_BYTES", "batch_bytes", "check_task_memory", "weight_bytes"]

# Memory one task may need, all its GPUs together: 1 TiB, far above any single GPU and about an
# 8 × H200 node's whole memory.
MAX_TASK_WEIGHT_BYTES = 2**40


def weight_bytes(params_total: int, dtype: str) -> int:
    """Bytes of a model's weights: its parameters × the dtype's bytes per element."""
    return params_total * DTYPE_BYTES.get(dtype, 4)


def batch_bytes(spec: TaskSpec) -> tuple[float, str]:
    """Bytes of one batch's tensors beside the weights, and what they are (for the message): the task's
    workload says (`WorkloadPlugin.batch_bytes`; MLP: inputs, outputs and hidden activations, a lower
    bound; LLM: the KV cache and activations the node checks)."""
    return workload(spec.workload).batch_bytes(spec)


def check_task_memory(spec: TaskSpec, params_total: int, bound: int = MAX_TASK_WEIGHT_BYTES) -> None:
    """SweepError naming the task, the memory it needs and the bound, when above it.

    Dense twins are checked like the MoE task: a twin matched to the total parameters is as big. A
    workload without `memory_knobs` (served models: their memory is their server's) is not checked.
    """
    knobs = workload(spec.workload).memory_knobs
    if knobs is None:
        return
    needed = weight_bytes(params_total, spec.dtype)
    if needed > bound:
        raise SweepError(f"task {spec.task_id}: {params_total:.3g} parameters × {DTYPE_BYTES.get(spec.dtype, 4)}"
                         f" bytes ({spec.dtype}) need {gib_text(needed)} for the weights alone, more than"
                         f" the {gib_text(bound)} any task can hold; use a smaller model")
    extra, what = batch_bytes(spec)
    if needed + extra > bound:
        raise SweepError(f"task {spec.task_id}: needs {gib_text(needed + extra)} (weights {gib_text(needed)}, {what}),"
                         f" more than the {gib_text(bound)} any task can hold; lower {knobs}")
