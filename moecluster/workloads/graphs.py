"""CUDA graphs: capture one batch of a model once, then replay it with one launch.

A replay launches every kernel of the batch at once, so a window measures the GPU rather
than the Python loop that launches kernels one by one. A graph records raw device addresses:
the tensors it reads (inputs, weights, derived copies of weights) must outlive it, which is
why a `CapturedGraph` holds references to them.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

WARMUP_CALLS = 3  # on a side stream before capture, as torch's documentation asks


@dataclass(frozen=True)
class GraphPolicy:
    """Whether graphs may be tried here, from `TaskSpec.cuda_graphs` and the device.

    `wanted`: None captures wherever possible, True requires a graph, False runs eagerly.
    `blocker`: why no graph can be tried at all (the device, or eager asked), else None.
    """

    wanted: bool | None
    blocker: str | None


def require_graphs_possible(device: str, cuda_graphs: bool | None) -> None:
    """ValueError where `cuda_graphs: true` asks for graphs on a device (its type, e.g. "cpu") that has none."""
    if cuda_graphs and device != "cuda":
        raise ValueError(f"cuda_graphs: true needs device cuda; device {device} has no CUDA graphs")


def graph_policy(device: torch.device, cuda_graphs: bool | None) -> GraphPolicy:
    """The policy for a task: True on a device without CUDA graphs is an error naming why."""
    if cuda_graphs is False:
        return GraphPolicy(wanted=False, blocker="cuda_graphs false: eager, the seed's way")
    require_graphs_possible(device.type, cuda_graphs)
    if device.type != "cuda":
        return GraphPolicy(wanted=cuda_graphs, blocker=f"device {device.type} has no CUDA graphs")
    return GraphPolicy(wanted=cuda_graphs, blocker=None)


@dataclass(frozen=True)
class CapturedGraph:
    """A captured batch: `replay()` runs it; `output` is the static tensor it writes."""

    graph: torch.cuda.CUDAGraph
    output: Tensor
    keepalive: tuple[Tensor, ...]  # tensors the graph reads by address

    def replay(self) -> None:
        self.graph.replay()


class Replayable(Protocol):
    """What a step needs of a captured batch: replay it, and read what it wrote."""

    @property
    def output(self) -> Tensor: ...

    def replay(self) -> None: ...


Capture = Callable[[Callable[[], Tensor], Sequence[Tensor]], Replayable]


def capture_graph(fn: Callable[[], Tensor], keepalive: Sequence[Tensor]) -> CapturedGraph:
    """Capture one call of `fn` (warmed up on a side stream first) into a CUDA graph.

    Raises RuntimeError where `fn` cannot be captured (a host sync, a CPU-GPU copy).
    """
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.inference_mode(), torch.cuda.stream(stream):
        for _ in range(WARMUP_CALLS):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    # thread_local: a CUDA call from another thread (a sampler) does not invalidate this capture
    with torch.inference_mode(), torch.cuda.graph(graph, capture_error_mode="thread_local"):
        output = fn()
    return CapturedGraph(graph=graph, output=output, keepalive=tuple(keepalive))
