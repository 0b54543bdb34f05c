"""The realised routing of an MoE, counted at prepare: how many distinct experts each layer's forward
reached (the experts whose weights it had to read, for the roofline's bytes) and how many token
copies each expert received.

Counted with forward hooks on every layer's router (`layer.mlp.gate`, whose output ends with the
top-k expert indices), around one run at prepare; the hooks read the indices on the host, so they
are removed before anything is timed or captured.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn


@dataclass
class RoutingCount:
    num_experts: int
    forwards: int = 0  # router calls: layers × forwards
    distinct: int = 0  # distinct experts reached, summed over router calls
    per_expert: list[int] = field(default_factory=list)

    @property
    def experts_hit(self) -> float | None:
        """Distinct experts per layer per forward, None where no router ran."""
        return self.distinct / self.forwards if self.forwards else None

    def add(self, indices: Tensor) -> None:
        flat = indices.reshape(-1).to(torch.long)
        self.forwards += 1
        self.distinct += int(torch.unique(flat).numel())
        counts = torch.bincount(flat.cpu(), minlength=self.num_experts).tolist()
        self.per_expert = [a + b for a, b in zip(self.per_expert or [0] * len(counts), counts)]


def _indices(output: Any) -> Tensor | None:
    """The top-k indices in a router's output: its last integer tensor."""
    items = output if isinstance(output, tuple) else (output,)
    ints = [t for t in items if isinstance(t, Tensor) and not t.is_floating_point()]
    return ints[-1] if ints else None


@contextmanager
def count_routing(model: nn.Module, num_experts: int) -> Iterator[RoutingCount]:
    """Within: every router call of `model` is counted into the yielded `RoutingCount`."""
    count = RoutingCount(num_experts)
    m: Any = model
    routers = [layer.mlp.gate for layer in m.model.layers
               if hasattr(layer.mlp, "gate") and hasattr(layer.mlp, "experts")]

    def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
        idx = _indices(output)
        if idx is not None:
            count.add(idx)

    handles = [r.register_forward_hook(hook) for r in routers]
    try:
        yield count
    finally:
        for h in handles:
            h.remove()
