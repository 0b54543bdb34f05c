"""Refuse a task whose weights cannot fit anywhere, before the run starts.

A model of 1e17 parameters used to pass the dry run (with an estimate of 1.7 M hours per
task) and fail on the node. The weights alone need parameters × bytes per element; above a
bound no single task can hold, the sweep is refused at load with the memory it needs.
"""
from __future__ import annotations

from moecluster.agents.records import TaskSpec
from .loader import SweepError

# Bytes per element of the sweep's dtypes (the benchmark core's three).
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
# Weights one task may need, all its GPUs together: 1 TiB, far above any single GPU and about an
# 8 × H200 node's whole memory; the node refines this against the GPU's free memory before it
# allocates anything.
MAX_TASK_WEIGHT_BYTES = 2**40


def weight_bytes(params_total: int, dtype: str) -> int:
    """Bytes of a model's weights: its parameters × the dtype's bytes per element."""
    return params_total * DTYPE_BYTES.get(dtype, 4)


def check_task_memory(spec: TaskSpec, params_total: int, bound: int = MAX_TASK_WEIGHT_BYTES) -> None:
    """SweepError naming the task, the memory its weights need and the bound, when above it.

    Dense twins are checked like the MoE task: a twin matched to the total parameters is as big.
    """
    needed = weight_bytes(params_total, spec.dtype)
    if needed > bound:
        raise SweepError(f"task {spec.task_id}: {params_total:.3g} parameters × {DTYPE_BYTES.get(spec.dtype, 4)}"
                         f" bytes ({spec.dtype}) need {needed / 2**30:,.0f} GiB for the weights alone, more than"
                         f" the {bound / 2**30:,.0f} GiB any task can hold; use a smaller model")
