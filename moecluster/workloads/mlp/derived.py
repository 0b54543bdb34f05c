"""Tensors derived from a module's weights (a transposed or padded copy), rebuilt when they change.

A derived copy must never outlive the weights it was made from: after `load_state_dict`,
`.to(dtype)` or any in-place update, a stale copy would silently compute another function
(grouped disagreed with naive by a relative error of 1.04 once). So the copy is keyed on
every source's storage address, version counter, dtype, device and shape.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class SourceKey:
    """What a derived copy depends on: per source (address, version, dtype, device, shape)."""

    entries: tuple[tuple[int, int, torch.dtype, str, tuple[int, ...]], ...]


def _version(t: Tensor) -> int:
    """The tensor's version counter (bumped by every in-place write); -1 for an inference
    tensor, which has none (it can only change in place inside inference mode)."""
    try:
        return int(t._version)
    except RuntimeError:
        return -1


def source_key(sources: Sequence[Tensor]) -> SourceKey:
    """The key of `sources` as they are now."""
    return SourceKey(tuple((t.data_ptr(), _version(t), t.dtype, str(t.device), tuple(t.shape)) for t in sources))


class DerivedTensors:
    """One tuple of tensors derived from some source tensors, rebuilt when any source changes."""

    def __init__(self) -> None:
        self._key: SourceKey | None = None
        self._value: tuple[Tensor, ...] = ()

    def get(self, sources: Sequence[Tensor], build: Callable[[], tuple[Tensor, ...]]) -> tuple[Tensor, ...]:
        """The derived tensors of `sources`, built by `build()` unless already built from them as they are."""
        key = source_key(sources)
        if key != self._key:
            self._value = ()  # free the stale copy before building the new one
            self._value = build()
            self._key = key
        return self._value

    @property
    def tensors(self) -> tuple[Tensor, ...]:
        """What is held now (for a graph that reads it by address)."""
        return self._value

    def clear(self) -> None:
        """Drop the copy (its memory), e.g. when the form that reads it was not chosen."""
        self._key, self._value = None, ()
