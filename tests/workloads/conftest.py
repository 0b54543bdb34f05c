"""Test doubles for choosing forms on a CPU: a scripted timer and a capture that replays eagerly."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pytest
import torch
from torch import Tensor

from moecluster.workloads.forms import Tools


class FakeGraph:
    """Stands in for a CUDA graph: `replay()` runs the captured call and writes `output`."""

    def __init__(self, fn: Callable[[], Tensor], keepalive: Sequence[Tensor]) -> None:
        self.fn = fn
        self.keepalive = tuple(keepalive)
        self.output = torch.full_like(fn(), float("nan"))  # like a real capture: nothing computed yet

    def replay(self) -> None:
        with torch.inference_mode():  # a real replay knows no autograd either
            self.output.copy_(self.fn())


@dataclass
class ScriptedTools:
    """A timer that answers from a script keyed by (the current form, graph or eager) and
    counts its calls; a capture that records what it captured, and can be told to fail."""

    current: Callable[[], str]
    times_s: dict[tuple[str, bool], float]
    fail_capture: set[str] = field(default_factory=set)
    corrupt_graph: set[str] = field(default_factory=set)
    timed: list[tuple[str, bool]] = field(default_factory=list)
    captured: list[str] = field(default_factory=list)

    def timer(self, fn: Callable[[], object], device: torch.device) -> float:
        graph = isinstance(getattr(fn, "__self__", None), FakeGraph)
        key = (self.current(), graph)
        self.timed.append(key)
        return self.times_s[key]

    def capture(self, fn: Callable[[], Tensor], keepalive: Sequence[Tensor]) -> FakeGraph:
        name = self.current()
        if name in self.fail_capture:
            raise RuntimeError(f"operation not permitted when stream is capturing ({name})")
        self.captured.append(name)
        if name in self.corrupt_graph:
            return FakeGraph(lambda: fn() + 1, keepalive)
        return FakeGraph(fn, keepalive)

    def tools(self) -> Tools:
        return Tools(timer=self.timer, capture=self.capture, sample=self.timer)


@pytest.fixture
def scripted() -> Callable[..., ScriptedTools]:
    return ScriptedTools
