"""Seed 004's prediction of one expert-parallel task's communication, to set beside the measurement.

Seed 004 counts the network traffic of an MoE layer per token as the product of the model
width, the active experts and the depth, and times it as bytes over the link bandwidth
("ignoring latency"). For a task of the MLP workload at degree `d` that is
`formulas.all_to_all_bytes_per_token` (k × (dispatch + combine width) × activation bytes ×
MoE layers × (d − 1)/d) and, where the task's GPUs have a datasheet, `formulas.comm_share`
with no latency term: those bytes over the GPUs' aggregate link bandwidth, beside the compute
at its roofline. Nothing here is measured; the report labels it "predicted (seed 004)".
"""
from __future__ import annotations

from dataclasses import dataclass

from moecluster.spec.records import TaskResult
from moecluster.spec.mlp.shapes import ShapeError
from moecluster.workloads.registry import workload

from moecluster.head.estimate.formulas import all_to_all_bytes_per_token, comm_share, dtype_bytes
from moecluster.head.estimate.measured import datasheet_of


@dataclass(frozen=True)
class PredictedComm:
    """Seed 004's figures for one MoE task at its expert-parallel degree."""

    bytes_per_token: float  # all-to-all bytes per token (sent to the experts and back)
    time_share: float | None  # share of the step in all-to-all; None: no datasheet for the task's GPUs
    gpu: str | None  # the datasheet used for `time_share`


def predicted_comm(result: TaskResult) -> PredictedComm | None:
    """Seed 004's all-to-all bytes per token and time share for an MLP MoE task (None when the
    task is not one, or its shape or dtype is unknown to the estimator)."""
    spec = result.spec
    if spec.kind != "moe":
        return None
    try:
        shape = workload(spec.workload).ep_comm_shape(spec)  # None: the workload has no EP prediction
        if shape is None:
            return None
        per_token = all_to_all_bytes_per_token(shape, spec.expert_parallel, dtype_bytes(spec.dtype))
    except (ShapeError, TypeError, KeyError, ValueError):
        return None
    if per_token is None:
        return None
    gpu = datasheet_of(result)
    share = None
    if gpu is not None:
        try:
            share = comm_share(shape, gpu, spec.dtype, spec.batch_size, spec.expert_parallel)
        except KeyError:  # no datasheet peak for this dtype
            share = None
    return PredictedComm(bytes_per_token=per_token, time_share=share, gpu=gpu.key if gpu is not None else None)
