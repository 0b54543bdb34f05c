"""The null device set: no GPU to read. Energy is unavailable, with the reason, never zero."""
from __future__ import annotations

from typing import Sequence

from moecluster.devices.base import DeviceSet, Gpu


class NoDevices(DeviceSet):
    kind = "none"

    def __init__(self, reason: str = "no GPU energy source on this node") -> None:
        self._reason = reason

    @property
    def gpus(self) -> Sequence[Gpu]:
        return ()

    @property
    def unavailable_reason(self) -> str | None:
        return self._reason
