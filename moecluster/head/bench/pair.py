"""Running a bench's tasks on this machine (a pair in counterbalanced windows, one served model alone, either
holding the devices against other runs as a scheduled pair holds them), and what a bench returns (`PairBench`)."""
from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from moecluster.spec.records import TaskResult, TaskSpec

#: `on_window(spec, r)` before window `r` of `spec`; `r` None: all of `spec`'s windows behind one start
OnWindow = Callable[[TaskSpec, "int | None"], None]

MoeShapeT = TypeVar("MoeShapeT")
DenseShapeT = TypeVar("DenseShapeT")


@dataclass(frozen=True)
class PairBench(Generic[MoeShapeT, DenseShapeT]):
    """A bench pair's shapes, and its results (dense first; none for a dry run)."""

    moe: MoeShapeT
    dense: DenseShapeT
    results: tuple[TaskResult, ...] = ()


def default_device() -> str:
    """`cuda` when torch sees a GPU here, else `cpu` (a bench's `--device` left out)."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def run_pair_alternating(specs: list[TaskSpec], on_window: OnWindow) -> list[TaskResult]:
    """Run dense and MoE windows in counterbalanced order (A B B A) so drift cancels; one merged
    result per model (all windows, one roofline over them), as a scheduled pair does. The device is
    held against runs of `submit` (and other benches) meanwhile, as a scheduled pair holds it."""
    from moecluster.node.device_lock import run_holding_devices
    from moecluster.measure.pair import run_pair

    return run_holding_devices(specs, lambda: run_pair(specs, on_window=on_window), node=socket.gethostname(),
                               run_id=f"bench-{os.getpid()}")


def run_bench(specs: list[TaskSpec], on_window: OnWindow) -> list[TaskResult]:
    """A pair in counterbalanced windows (`run_pair_alternating`); one task (a served model alone) all its
    windows behind one start, holding the devices the same way."""
    from moecluster.node.device_lock import run_holding_devices
    from moecluster.measure.runner import run_task

    if len(specs) == 2:
        return run_pair_alternating(specs, on_window)
    on_window(specs[0], None)
    return run_holding_devices(specs, lambda: [run_task(specs[0])], node=socket.gethostname(),
                               run_id=specs[0].run_id)
