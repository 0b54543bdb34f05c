"""The realised routing of an MoE, counted at prepare: how many distinct experts each layer's forward
reached (the experts whose weights it had to read, for the roofline's bytes) and how many token
copies each expert received.

Counted with forward hooks on every layer's router (`layer.mlp.gate`, whose output ends with the
top-k expert indices), around one run at prepare; the hooks read the indices on the host, so they
are removed before anything is timed or captured.

The same hooks *pin* a check's routing: a fast form is checked against transformers' reference by
their first-step logits, but in half precision a near tie between two experts' router scores flips
under the rounding of a different attention or GEMM kernel, and one flipped choice moves that
token's logits by far more than rounding (on the H100, Mixtral-shaped in bf16: 8-12 % relative error
at every batch size, against 1-2 % for the dense twins; at batch 1 one flipped choice of 16, in the
last layer, made 12 %). `record_routing` keeps the reference's first-forward choices (top-k weights
and indices per router); `pin_routing` replays them into the candidate's first forward, or, in a free
run, counts how many choices its router made differently. The check compares the same function of
the same weights at the same routing, at the dtype's tolerance; the record also gives the free
run's error and flips.
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


def routers(model: nn.Module) -> list[nn.Module]:
    """Every MoE layer's router (`layer.mlp.gate`), in layer order."""
    m: Any = model
    return [layer.mlp.gate for layer in m.model.layers if hasattr(layer.mlp, "gate") and hasattr(layer.mlp, "experts")]


@contextmanager
def count_routing(model: nn.Module, num_experts: int) -> Iterator[RoutingCount]:
    """Within: every router call of `model` is counted into the yielded `RoutingCount`."""
    count = RoutingCount(num_experts)

    def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
        idx = _indices(output)
        if idx is not None:
            count.add(idx)

    handles = [r.register_forward_hook(hook) for r in routers(model)]
    try:
        yield count
    finally:
        for h in handles:
            h.remove()


@dataclass(frozen=True)
class RouterChoice:
    """One router call's top-k weights and indices [tokens, k]."""

    weights: Tensor
    indices: Tensor


def _choice(output: Any) -> RouterChoice | None:
    """A router output's (…, top-k weights, top-k indices), as transformers' v5 routers return them."""
    if not isinstance(output, tuple) or len(output) < 2:
        return None
    weights, indices = output[-2], output[-1]
    if not (isinstance(weights, Tensor) and isinstance(indices, Tensor)) or indices.is_floating_point() \
            or weights.shape != indices.shape:
        return None
    return RouterChoice(weights, indices)


@contextmanager
def record_routing(model: nn.Module) -> Iterator[list[RouterChoice]]:
    """Within: the yielded list receives a copy of the choices of the first forward's router calls
    (one per MoE layer, in call order); later forwards are not kept."""
    gates = routers(model)
    recorded: list[RouterChoice] = []

    def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
        choice = _choice(output)
        if choice is not None and len(recorded) < len(gates):
            recorded.append(RouterChoice(choice.weights.clone(), choice.indices.clone()))

    handles = [r.register_forward_hook(hook) for r in gates]
    try:
        yield recorded
    finally:
        for h in handles:
            h.remove()


@dataclass
class PinReport:
    """What pinning saw: router calls compared (and pinned, where `replace`), top-k choices (token × k)
    compared, and how many of those the router chose differently from the reference."""

    replace: bool
    calls: int = 0
    choices: int = 0
    flipped: int = 0

    def describe(self) -> str:
        if not self.calls:
            return ""
        if self.replace:
            return f"router choices pinned to the reference's in the first step ({self.calls} router calls)"
        return (f"{self.flipped} of {self.choices} top-k choices in the first step's {self.calls} router calls"
                " differ from the reference's (near ties that rounding flipped)")


@contextmanager
def pin_routing(model: nn.Module, recorded: list[RouterChoice], replace: bool = True) -> Iterator[PinReport]:
    """Within: each of the first `len(recorded)` router calls (where the shapes agree) is compared with
    the recorded choice and, where `replace`, returns the recorded weights and indices instead of its
    own; later calls run free. `replace=False` only counts the flips of a free run."""
    report = PinReport(replace)
    calls = [0]

    def hook(_module: nn.Module, _inputs: Any, output: Any) -> Any:
        n = calls[0]
        calls[0] += 1
        own = _choice(output)
        if n >= len(recorded) or own is None or own.indices.shape != recorded[n].indices.shape:
            return None
        pin = recorded[n]
        report.calls += 1
        report.choices += own.indices.numel()
        theirs = pin.indices.to(own.indices.device)
        report.flipped += int((own.indices.unsqueeze(-1) != theirs.unsqueeze(-2)).all(dim=-1).sum())
        if not replace:
            return None
        return (*output[:-2], pin.weights.to(own.weights.device, own.weights.dtype),
                pin.indices.to(own.indices.device, own.indices.dtype))

    handles = [r.register_forward_hook(hook) for r in routers(model)] if recorded else []
    try:
        yield report
    finally:
        for h in handles:
            h.remove()
