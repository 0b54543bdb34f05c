"""One interface for every workload the runner measures.

A workload turns a `TaskSpec` into a ready model and its inputs, and accounts for it:
parameters, items (inferences, later tokens) per batch, FLOPs per item and the fewest bytes
a batch must move (for the roofline). The MLP pairs of the seed are one workload; the
transformer LLM pairs (prefill and decode) plug in beside it without touching the runner.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from collections.abc import Callable
from typing import Protocol

import torch
from torch import Tensor, nn

from moecluster.spec.records import ChoiceMargin, ParamCounts, TaskSpec


@dataclass
class Prepared:
    """A model ready to run: `step()` runs one batch (no host sync of its own).

    `form`: how it runs, chosen by measurement at prepare (`workloads.forms`): keys
    `layout`, `kernel`, `graph`, `candidates`, `choice`, and `skipped` where a form was left
    out; the runner copies it into `TaskResult.form`, and `choice` (how clearly that form won,
    `workloads.race`) into `TaskResult.choice`. `busy_step` (None: `step`) is what the runner
    launches, uncounted, between a window's work and its closing counter update.
    """

    model: nn.Module
    inputs: Tensor
    items_per_batch: int
    step: Callable[[], object]
    params: ParamCounts
    flops_per_item: float
    bytes_per_batch: float
    expert_tokens: tuple[int, ...] = ()
    notes: list[str] = field(default_factory=list)
    form: dict[str, str] = field(default_factory=dict)
    # a finer unit of the same work, for keeping the device busy until a window's closing counter
    # update (the runner polls the counter between launches): a decode response is 64 steps, and
    # polling only between responses left up to 21 % of a 2 s window's energy uncertain
    busy_step: Callable[[], object] | None = None
    choice: ChoiceMargin | None = None


class Workload(Protocol):
    name: str

    def validate(self, spec: TaskSpec) -> None:
        """Raise ValueError naming the field if the spec cannot run."""

    def params(self, spec: TaskSpec) -> ParamCounts: ...

    def prepare(self, spec: TaskSpec, device: torch.device, dtype: torch.dtype) -> Prepared: ...


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def torch_dtype(name: str) -> torch.dtype:
    try:
        return DTYPES[name]
    except KeyError:
        raise ValueError(f"unknown dtype {name!r} ({', '.join(DTYPES)})") from None


def registry() -> dict[str, Workload]:
    from moecluster.workloads.llm.workload import LlmWorkload
    from moecluster.workloads.mlp.workload import MlpWorkload

    return {"mlp": MlpWorkload(), "llm": LlmWorkload()}


def get_workload(name: str) -> Workload:
    workloads = registry()
    try:
        return workloads[name]
    except KeyError:
        raise ValueError(f"unknown workload {name!r} ({', '.join(workloads)})") from None
